// The baseline of the throughput figures (throughput.ts): a bare Express app that reads a POST's
// body, whatever its path (/hooks/control, /hooks/github), and answers 202 with a small JSON,
// nothing else. Prints its URL on stdout.
import express from 'express';
import type { AddressInfo } from 'node:net';

const app = express();
app.use(express.raw({ type: () => true, limit: '256kb' }));
app.post(/.*/, (_req, res) => {
  res.status(202).json({ action: 'create', accepted: true });
});
const server = app.listen(0, '127.0.0.1', () => {
  process.stdout.write(`http://127.0.0.1:${(server.address() as AddressInfo).port}\n`);
});
server.keepAliveTimeout = 5000;
