// Per-VM SSH key pairs (ed25519), made by Hatchery for the SSH bootstrap. The private key lives
// only here: `<state_dir>/keys/<vm>.key`, mode 0600 in a 0700 directory, written whole (temp file
// + rename) and removed with its VM. Nothing here logs a key or puts one in an error.
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { isVmName } from '../core/naming.ts';
import { RemoteError } from './port.ts';
import { loadSsh2 } from './ssh2-module.ts';

const SUFFIX = '.key';
const TMP_PREFIX = '.tmp-';
const STALE_TMP_MS = 3600_000;

export class VmKeys {
  readonly dir: string;

  constructor(stateDir: string) {
    this.dir = path.join(stateDir, 'keys');
  }

  file(vm: string): string {
    if (!isVmName(vm)) throw new RemoteError(`invalid VM name ${JSON.stringify(vm)}`, false);
    return path.join(this.dir, `${vm}${SUFFIX}`);
  }

  private async ensureDir(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    // An existing directory keeps its mode on mkdir: make sure nobody else can list or read it.
    await chmod(this.dir, 0o700);
  }

  /** The VM's public key as an authorized_keys line; the pair is made on first use. */
  async authorizedKey(vm: string): Promise<string> {
    const file = this.file(vm);
    let priv = await readFile(file, 'utf8').catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return null;
      throw e;
    });
    const ssh2 = await loadSsh2();
    if (priv === null) {
      await this.ensureDir();
      const pair = ssh2.utils.generateKeyPairSync('ed25519', { comment: `hatchery ${vm}` });
      const tmp = path.join(this.dir, `${TMP_PREFIX}${vm}-${randomBytes(4).toString('hex')}`);
      await writeFile(tmp, pair.private, { mode: 0o600, flag: 'wx' });
      await rename(tmp, file);
      priv = pair.private;
    }
    const parsed = ssh2.utils.parseKey(priv);
    if (parsed instanceof Error) throw new RemoteError(`the key of ${vm} (${file}) cannot be read`, false);
    return `${parsed.type} ${parsed.getPublicSSH().toString('base64')} hatchery-${vm}`;
  }

  async privateKey(vm: string): Promise<Buffer> {
    const file = this.file(vm);
    try {
      return await readFile(file);
    } catch (e) {
      throw new RemoteError(
        `no SSH key for ${vm} (${file}: ${(e as NodeJS.ErrnoException).code ?? 'unreadable'})`,
        false,
      );
    }
  }

  async remove(vm: string): Promise<void> {
    // unlink, not rm({ force }): rm goes through rimraf (stats, retries) for one file.
    await unlink(this.file(vm)).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw e;
    });
  }

  /** Names of the VMs that have a key pair. */
  async list(): Promise<string[]> {
    const files = await readdir(this.dir).catch(() => [] as string[]);
    return files
      .filter((f) => f.endsWith(SUFFIX))
      .map((f) => f.slice(0, -SUFFIX.length))
      .filter(isVmName);
  }

  /** Temp files of writes interrupted by a crash. */
  async removeStaleTemps(now = Date.now()): Promise<void> {
    for (const f of await readdir(this.dir).catch(() => [] as string[])) {
      if (!f.startsWith(TMP_PREFIX)) continue;
      const s = await stat(path.join(this.dir, f)).catch(() => null);
      if (s && now - s.mtimeMs > STALE_TMP_MS) await rm(path.join(this.dir, f), { force: true });
    }
  }
}
