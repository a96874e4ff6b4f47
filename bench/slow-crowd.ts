// A crowd of slow clients, in its own process (as an attacker would be: its sockets and timers
// must not slow the process that measures):
//   node --import tsx bench/slow-crowd.ts URL COUNT MS RAMP_MS
// holds COUNT connections open against URL, each sending one byte every MS and never finishing
// its request. Half trickle their headers (slowloris), half send complete headers of a POST and
// trickle its body (100 kB declared: within the default body_limit, so it is not refused at
// once). A connection the server closes is replaced at once, so COUNT stay open. The crowd
// opens evenly over RAMP_MS: with RAMP_MS = the server's headers timeout, its cut-offs (and
// reconnections) are spread over time too, a steady churn rather than synchronized waves.
// Prints one JSON line a second: {"open", "opened", "cutOff"}; exits on SIGTERM.
import net from 'node:net';

const [url, countArg, everyArg, rampArg] = process.argv.slice(2);
if (!url || !countArg) {
  process.stderr.write('usage: slow-crowd.ts URL COUNT [MS] [RAMP_MS]\n');
  process.exit(2);
}
const target = new URL(url);
const count = Number(countArg);
const everyMs = Number(everyArg ?? 1000);
const rampMs = Number(rampArg ?? 0);

const HEADERS_START = 'POST /hooks/control HTTP/1.1\r\nHost: localhost\r\n';
const HEADER_LINE = 'X-Slow: a\r\n'; // sent a byte at a time, over and over
const BODY_START = `${HEADERS_START}Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n`;

const stats = { open: 0, opened: 0, cutOff: 0 };
const sockets = new Set<net.Socket>();
let stopping = false;

function connect(k: number): void {
  const inHeaders = k % 2 === 0;
  const socket = net.connect(Number(target.port), target.hostname);
  sockets.add(socket);
  stats.opened++;
  let timer: NodeJS.Timeout | undefined;
  let connected = false;
  let sent = 0;
  socket.setNoDelay(true);
  socket.on('connect', () => {
    connected = true;
    stats.open++;
    socket.write(inHeaders ? HEADERS_START : BODY_START);
    const tick = () => {
      socket.write(inHeaders ? HEADER_LINE[sent++ % HEADER_LINE.length]! : 'a');
      timer = setTimeout(tick, everyMs);
    };
    timer = setTimeout(tick, Math.random() * everyMs); // spread the crowd's bytes over time
  });
  socket.on('data', () => {}); // the server's 408, if any
  socket.on('error', () => {});
  socket.on('close', () => {
    clearTimeout(timer);
    sockets.delete(socket);
    if (connected) stats.open--;
    if (stopping) return;
    stats.cutOff++;
    setTimeout(() => connect(k), connected ? 0 : 100); // a refused connect is retried, gently
  });
}

const report = setInterval(() => process.stdout.write(`${JSON.stringify(stats)}\n`), 1000);
process.on('SIGTERM', () => {
  stopping = true;
  clearInterval(report);
  for (const s of sockets) s.destroy();
  process.exit(0);
});

// Open in batches of 50 spread over the ramp (at least 10 ms apart: a SYN flood is not what
// this measures).
const batches = Math.ceil(count / 50);
for (let k = 0; k < count; k++) {
  connect(k);
  if (k % 50 === 49) await new Promise((r) => setTimeout(r, Math.max(10, rampMs / batches)));
}
