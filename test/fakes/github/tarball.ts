// A deterministic .tar.gz of a few small files: ustar headers with fixed mtime, owner root:root
// (0:0), entries sorted by name, gzip without a file name or timestamp (like `gzip -n`), so the
// same inputs always give the same bytes (and sha256).
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';

export interface TarEntry {
  name: string;
  mode: number;
  data: Buffer;
}

export interface Tarball {
  data: Buffer;
  sha256: string;
  size: number;
}

/** 2024-01-01T00:00:00Z. */
const MTIME = 1704067200;

function octal(value: number, width: number): string {
  // width - 1 digits then NUL, as tar does.
  return value.toString(8).padStart(width - 1, '0') + '\0';
}

function header(entry: TarEntry): Buffer {
  const h = Buffer.alloc(512, 0);
  const put = (s: string, offset: number, len: number) => {
    const b = Buffer.from(s, 'utf8');
    if (b.length > len) throw new Error(`tar field too long: ${s}`);
    b.copy(h, offset);
  };
  put(entry.name, 0, 100);
  put(octal(entry.mode, 8), 100, 8);
  put(octal(0, 8), 108, 8); // uid
  put(octal(0, 8), 116, 8); // gid
  put(octal(entry.data.length, 12), 124, 12);
  put(octal(MTIME, 12), 136, 12);
  put('        ', 148, 8); // checksum placeholder: spaces
  put('0', 156, 1); // regular file
  put('ustar\0', 257, 6);
  put('00', 263, 2);
  put('root', 265, 32);
  put('root', 297, 32);
  let sum = 0;
  for (const byte of h) sum += byte;
  put(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8);
  return h;
}

export function buildTarball(entries: TarEntry[]): Tarball {
  const parts: Buffer[] = [];
  for (const e of [...entries].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    parts.push(header(e), e.data);
    const pad = (512 - (e.data.length % 512)) % 512;
    if (pad) parts.push(Buffer.alloc(pad, 0));
  }
  parts.push(Buffer.alloc(1024, 0)); // end of archive
  let tar = Buffer.concat(parts);
  const record = 10240; // tar's default record size (20 blocks)
  if (tar.length % record) tar = Buffer.concat([tar, Buffer.alloc(record - (tar.length % record), 0)]);
  // zlib writes no name and mtime 0 in the gzip header: the output depends on the input only.
  const data = gzipSync(tar, { level: 9 });
  return { data, sha256: createHash('sha256').update(data).digest('hex'), size: data.length };
}
