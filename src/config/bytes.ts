// Sizes as operators write them ("256kb", "1mb", "65536"), with the same 1024-based units as
// the `bytes` package Express's body parser used, so existing configs keep their meaning.
const UNITS: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 };
const SIZE = /^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?\s*$/i;

/** Bytes in `text`, or null when it is not a size such as "256kb", "1.5mb" or "65536". */
export function parseByteSize(text: string): number | null {
  const m = SIZE.exec(text);
  if (!m) return null;
  const n = Math.floor(Number(m[1]) * UNITS[(m[2] ?? 'b').toLowerCase()]!);
  return n >= 1 && Number.isSafeInteger(n) ? n : null;
}
