// The stand-in runner's own protocol (not GitHub's REST API, so not validated against the
// OpenAPI description). Plain HTTP under /_runner, every call a POST (busybox wget), answered
// 200 text/plain whose first line is a status word:
//
//   POST /_runner/register                 body: key=value lines (token, url, name, labels,
//                                          ephemeral, replace, work) → ok + runner config lines
//   POST /_runner/{id}/connect             → ok                       (runner becomes online)
//   POST /_runner/{id}/poll                long poll (held ~25 s) → none | job + key=value lines
//   POST /_runner/{id}/jobs/{job}/heartbeat → ok | gone               (every 5 s while a job runs)
//   POST /_runner/{id}/jobs/{job}/complete?result=Succeeded|Failed&exit_code=N
//                                          body: the job's output → ok
//   POST /_runner/{id}/disconnect          → ok          (ephemeral: removed; else offline)
//   POST /_runner/{id}/remove              body: token=<remove token> → ok  (config.sh remove)
//
// Calls for a runner carry `Authorization: Bearer <runner secret>` (from its config). Other
// answers: `gone` (no such runner: deleted, or ephemeral and done), `denied` (wrong secret),
// `error <message>`. Network errors and other statuses are the runner's cue to retry.
import express, { Router, type Request, type Response } from 'express';
import {
  type FakeJob,
  type FakeState,
  type PendingPoll,
  type RunnerRecord,
  type Scope,
  RUNNER_VERSION,
  hasControlChars,
  scopeKey,
} from './state.ts';

/** The decoded form of an encoded JIT config and of a `.runner` file: `KEY=VALUE` lines. */
export function runnerConfigText(r: RunnerRecord, serverUrl: string): string {
  return [
    'HATCHERY_FAKE_RUNNER=1',
    `RUNNER_ID=${r.id}`,
    `RUNNER_NAME=${r.name}`,
    `SERVER_URL=${serverUrl}`,
    `RUNNER_SECRET=${r.secret}`,
    `EPHEMERAL=${r.ephemeral ? 1 : 0}`,
    `WORK_FOLDER=${r.workFolder}`,
    '',
  ].join('\n');
}

/** encoded_jit_config: base64 (one line) of runnerConfigText. */
export function encodeJitConfig(r: RunnerRecord, serverUrl: string): string {
  return Buffer.from(runnerConfigText(r, serverUrl), 'utf8').toString('base64');
}

/** Parses an encoded JIT config of the stand-in (for tests). */
export function decodeJitConfig(encoded: string): Record<string, string> {
  return parseLines(Buffer.from(encoded, 'base64').toString('utf8'));
}

function parseLines(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) out[line.slice(0, i).trim()] = line.slice(i + 1).replace(/\r$/, '');
  }
  return out;
}

/** The poll answer that hands a job to a runner. */
export function formatJobAssignment(job: FakeJob, r: RunnerRecord): string {
  return [
    'job',
    `id=${job.id}`,
    `name=${job.name}`,
    `repository=${job.repository}`,
    `runner_name=${r.name}`,
    `script_b64=${Buffer.from(job.script, 'utf8').toString('base64')}`,
    '',
  ].join('\n');
}

export interface RunnerProtocolOptions {
  state: FakeState;
  longPollMs: number;
  violation(message: string): void;
  /** The runner config's SERVER_URL for a runner registered through config.sh. */
  serverUrlFor(req: Request): string;
}

export interface RunnerProtocol {
  router: Router;
  /** Answers every pending long poll (`none`), so that no connection stays open. */
  closeAll(): void;
}

function send(res: Response, body: string): boolean {
  if (res.headersSent || res.destroyed || res.socket?.destroyed) return false;
  res.status(200).type('text/plain').send(body);
  return true;
}

export function createRunnerProtocol(opts: RunnerProtocolOptions): RunnerProtocol {
  const { state } = opts;
  const router = Router();
  const pending = new Set<() => void>();
  router.use(express.text({ type: () => true, limit: '2mb' }));

  const bodyText = (req: Request): string => (typeof req.body === 'string' ? req.body : '');

  /** The runner a call is about, or undefined after answering gone/denied. */
  function runnerOf(req: Request, res: Response): RunnerRecord | undefined {
    const id = Number(req.params.id);
    const r = Number.isSafeInteger(id) ? state.runnersById.get(id) : undefined;
    if (!r) {
      send(res, 'gone\n');
      return undefined;
    }
    if (req.get('authorization') !== `Bearer ${r.secret}`) {
      send(res, 'denied\n');
      return undefined;
    }
    r.lastContact = Date.now();
    return r;
  }

  router.post('/register', (req, res) => {
    const f = parseLines(bodyText(req));
    const token = f.token ? state.tokens.get(f.token) : undefined;
    if (!token || token.kind !== 'registration' || token.expiresAt.getTime() < Date.now()) {
      send(res, 'error Invalid or expired registration token\n');
      return;
    }
    let scope: Scope;
    try {
      const parts = new URL(f.url ?? '').pathname.split('/').filter(Boolean);
      if (parts.length === 2) scope = { kind: 'repo', owner: parts[0]!, repo: parts[1]! };
      else if (parts.length === 1) scope = { kind: 'org', org: parts[0]! };
      else throw new Error('bad path');
    } catch {
      send(res, `error Invalid --url ${f.url ?? ''}: expected <server>/<owner>/<repo> or <server>/<org>\n`);
      return;
    }
    if (scopeKey(scope) !== scopeKey(token.scope)) {
      send(res, 'error The registration token is not valid for this URL\n');
      return;
    }
    const name = (f.name ?? '').trim();
    if (!name || hasControlChars(name)) {
      send(res, 'error A runner name is required\n');
      return;
    }
    const existing = state.findRunnerByName(scope, name);
    if (existing) {
      if (f.replace !== '1') {
        send(res, `error A runner exists with the same name ${name}.\n`);
        return;
      }
      state.removeRunner(existing, `replaced by a new registration named ${name}`);
    }
    const labels = (f.labels ?? '')
      .split(',')
      .map((l) => l.trim())
      .filter(Boolean);
    const r = state.addRunner({
      scope,
      name,
      labels,
      runnerGroupId: 1,
      ephemeral: f.ephemeral === '1',
      workFolder: f.work || '_work',
      noDefaultLabels: f.no_default_labels === '1',
    });
    send(res, `ok\n${runnerConfigText(r, opts.serverUrlFor(req))}`);
  });

  router.post('/:id/connect', (req, res) => {
    const r = runnerOf(req, res);
    if (!r) return;
    if (r.busy) {
      send(res, 'error A session for this runner already exists.\n');
      return;
    }
    state.connect(r, parseLines(bodyText(req)).version || RUNNER_VERSION);
    send(res, 'ok\n');
  });

  router.post('/:id/poll', (req, res) => {
    const r = runnerOf(req, res);
    if (!r) return;
    if (r.busy) {
      send(res, `error busy with job ${r.jobId}\n`);
      return;
    }
    let done = false;
    const finish = (): void => {
      done = true;
      clearTimeout(timer);
      pending.delete(closeNow);
      state.endPoll(r, poll);
    };
    const poll: PendingPoll = {
      answer(body) {
        if (done) return false;
        finish();
        return send(res, body);
      },
    };
    const closeNow = (): void => void poll.answer('none\n');
    const timer = setTimeout(closeNow, opts.longPollMs);
    res.on('close', () => {
      if (!done) finish();
    });
    pending.add(closeNow);
    state.startPoll(r, poll);
  });

  router.post('/:id/jobs/:job/heartbeat', (req, res) => {
    const r = runnerOf(req, res);
    if (!r) return;
    send(res, r.jobId === Number(req.params.job) ? 'ok\n' : 'gone\n');
  });

  router.post('/:id/jobs/:job/complete', (req, res) => {
    const r = runnerOf(req, res);
    if (!r) return;
    const result = String(req.query.result ?? '');
    const code = Number(req.query.exit_code);
    state.finishJob(
      r,
      Number(req.params.job),
      result === 'Succeeded' ? 'success' : 'failure',
      Number.isInteger(code) ? code : null,
      bodyText(req),
    );
    send(res, 'ok\n');
  });

  router.post('/:id/disconnect', (req, res) => {
    const r = runnerOf(req, res);
    if (!r) return;
    state.runnerGone(r, 'the runner disconnected during its job');
    send(res, 'ok\n');
  });

  router.post('/:id/remove', (req, res) => {
    const r = runnerOf(req, res);
    if (!r) return;
    const f = parseLines(bodyText(req));
    const token = f.token ? state.tokens.get(f.token) : undefined;
    const tokenOk =
      token !== undefined &&
      token.expiresAt.getTime() >= Date.now() &&
      scopeKey(token.scope) === scopeKey(r.scope);
    if (!tokenOk) {
      send(res, 'error Invalid or expired token for this runner\n');
      return;
    }
    if (r.busy) {
      send(res, 'error The runner is running a job\n');
      return;
    }
    state.removeRunner(r, 'removed by config.sh remove');
    send(res, 'ok\n');
  });

  router.use((req, res) => {
    opts.violation(`stand-in runner protocol: unknown call ${req.method} ${req.originalUrl}`);
    res.status(404).type('text/plain').send('error unknown call\n');
  });

  return {
    router,
    closeAll() {
      for (const close of [...pending]) close();
    },
  };
}
