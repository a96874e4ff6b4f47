// A minimal QMP client: connect to a VM's control socket, negotiate capabilities, run commands.
// One connection per call site and short-lived: QEMU serves several QMP clients one at a time.
import net from 'node:net';

export class QmpError extends Error {
  override name = 'QmpError';
}

export interface QmpConnection {
  execute(command: string, args?: Record<string, unknown>): Promise<unknown>;
  close(): void;
}

export function connectQmp(socketPath: string, timeoutMs = 5000): Promise<QmpConnection> {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(socketPath);
    let buffer = '';
    const waiting: { resolve: (v: unknown) => void; reject: (e: Error) => void }[] = [];
    let greeted = false;
    const timer = setTimeout(
      () => fail(new QmpError(`QMP ${socketPath}: no greeting within ${timeoutMs} ms`)),
      timeoutMs,
    );

    function fail(e: Error): void {
      clearTimeout(timer);
      sock.destroy();
      for (const w of waiting.splice(0)) w.reject(e);
      reject(e);
    }

    sock.setEncoding('utf8');
    sock.on('error', (e) => fail(new QmpError(`QMP ${socketPath}: ${e.message}`)));
    sock.on('close', () => {
      for (const w of waiting.splice(0)) w.reject(new QmpError('QMP connection closed'));
    });
    sock.on('data', (chunk: string) => {
      buffer += chunk;
      let i;
      while ((i = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, i).trim();
        buffer = buffer.slice(i + 1);
        if (!line) continue;
        let msg: Record<string, unknown>;
        try {
          msg = JSON.parse(line) as Record<string, unknown>;
        } catch {
          continue;
        }
        if (!greeted && 'QMP' in msg) {
          greeted = true;
          send('qmp_capabilities').then(() => {
            clearTimeout(timer);
            resolve({ execute: send, close: () => sock.end() });
          }, fail);
          continue;
        }
        if ('event' in msg) continue;
        const w = waiting.shift();
        if (!w) continue;
        if ('error' in msg) {
          const err = msg.error as { desc?: string };
          w.reject(new QmpError(err.desc ?? 'QMP error'));
        } else w.resolve(msg.return);
      }
    });

    function send(command: string, args?: Record<string, unknown>): Promise<unknown> {
      return new Promise((res, rej) => {
        waiting.push({ resolve: res, reject: rej });
        sock.write(
          JSON.stringify(args ? { execute: command, arguments: args } : { execute: command }) + '\n',
        );
      });
    }
  });
}
