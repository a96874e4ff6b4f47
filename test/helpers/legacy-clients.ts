// The legacy route's two real clients, run the way GitHub runs them, with real bash, curl, jq and
// openssl (notes: SpinW compatibility):
// - SpinW's own step: `curl --fail … | jq -e '.success == "true"'`, unsigned, as a script file
//   run by GitHub's default shell for `run:` on Linux, `bash -e {0}` (no pipefail);
// - the distributhor/workflow-webhook v1 action's request: its body, HMAC-SHA1 and -SHA256
//   signatures, the run number as X-GitHub-Delivery, and `curl --fail` (its step fails only
//   on an HTTP error status; nothing reads the body).
// What decides whether the workflow goes on is the step's exit code. To see what the service
// answered without touching the step's text, the steps talk to it through a relay that records
// each exchange (SpinW's receiver sat behind a relay too).
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** SpinW's create/destroy step (vagrantTests.yml), verbatim once its `${{ }}` are substituted. */
export const SPINW_STEP = String.raw`curl -k -v --fail -H "Content-Type: application/json" --data "{\"data\":$DATA, \"repository\":\"$GITHUB_REPOSITORY\"}" $WEBHOOK_URL | jq -e '.success == "true"'
`;

/**
 * The action's request (v1, webhook_type json): the run's fields, then `data` compacted by
 * `jq -c`; both signatures over the exact body; the run *number* as the delivery id.
 */
export const ACTION_STEP = String.raw`body="{\"event\":\"$GITHUB_EVENT_NAME\",\"repository\":\"$GITHUB_REPOSITORY\",\"commit\":\"$GITHUB_SHA\",\"ref\":\"$GITHUB_REF\",\"head\":\"$GITHUB_HEAD_REF\",\"workflow\":\"$GITHUB_WORKFLOW\",\"data\":$(printf '%s' "$data" | jq -c '')}"
sha1=$(printf '%s' "$body" | openssl dgst -sha1 -hmac "$webhook_secret" -r | cut -d' ' -f1)
sha256=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$webhook_secret" -r | cut -d' ' -f1)
curl -k -v --http1.1 --fail \
  -H "Content-Type: application/json" \
  -H "User-Agent: GitHub-Hookshot/760256b" \
  -H "X-Hub-Signature: sha1=$sha1" \
  -H "X-Hub-Signature-256: sha256=$sha256" \
  -H "X-GitHub-Delivery: $GITHUB_RUN_NUMBER" \
  -H "X-GitHub-Event: $GITHUB_EVENT_NAME" \
  --data "$body" $webhook_url
`;

/** curl's exit code for an HTTP status ≥ 400 under --fail. */
export const CURL_HTTP_ERROR = 22;

export interface LegacyAnswer {
  success?: string;
  info?: string;
  labels?: string[];
  vms?: unknown;
  raw?: string;
}

export interface StepResult {
  /** The step's exit code: non-zero fails the step, and the jobs that need it never run. */
  code: number;
  stdout: string;
  stderr: string;
  /** What the service answered, as the relay saw it. */
  status: number;
  answer: LegacyAnswer;
}

/** `echo "$PAT" | openssl enc -e -aes-256-cbc -pbkdf2 -a -k "$PW" | tr "\n" "_"`, as the workflow does. */
export function encryptLikeTheWorkflow(pat: string, password: string): string {
  return execFileSync(
    'bash',
    ['-c', 'echo "$PAT" | openssl enc -e -aes-256-cbc -pbkdf2 -a -k "$PW" | tr "\\n" "_"'],
    // stdin not a socket: bash would take itself for an sshd session and read ~/.bashrc.
    {
      env: { PATH: process.env.PATH, PAT: pat, PW: password },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
}

/**
 * SpinW's DATA, built the way its step builds it: by string interpolation, no JSON escaping.
 * Its create sends ghcontrol, servers, PAT and ID; its destroy no PAT.
 */
export function spinwData(d: { ghcontrol: string; servers?: string; pat?: string; id?: string }): string {
  const fields: string[] = [`"ghcontrol":"${d.ghcontrol}"`];
  if (d.servers !== undefined) fields.push(`"servers":"${d.servers}"`);
  if (d.pat !== undefined) fields.push(`"PAT":"${d.pat}"`);
  if (d.id !== undefined) fields.push(`"ID":"${d.id}"`);
  return `{${fields.join(', ')}}`;
}

interface Exchange {
  status: number;
  body: string;
}

/** A transparent HTTP relay in front of the service that records each answer. */
export class Relay {
  private readonly exchanges: Exchange[] = [];

  private constructor(
    private readonly server: http.Server,
    private readonly target: () => string,
  ) {}

  static async start(target: () => string): Promise<Relay> {
    const server = http.createServer();
    const relay = new Relay(server, target);
    server.on('request', (req, res) => relay.forward(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return relay;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/`;
  }

  private forward(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const target = new URL(req.url ?? '/', this.target());
      const headers = { ...req.headers, host: target.host };
      const out = http.request(target, { method: req.method, headers }, (answer) => {
        const body: Buffer[] = [];
        answer.on('data', (c: Buffer) => body.push(c));
        answer.on('end', () => {
          const text = Buffer.concat(body);
          this.exchanges.push({ status: answer.statusCode ?? 0, body: text.toString('utf8') });
          const { 'transfer-encoding': _te, connection: _c, ...rest } = answer.headers;
          res.writeHead(answer.statusCode ?? 502, { ...rest, 'content-length': String(text.length) });
          res.end(text);
        });
      });
      out.on('error', (e) => {
        this.exchanges.push({ status: 0, body: `relay: ${e.message}` });
        res.destroy();
      });
      out.end(Buffer.concat(chunks));
    });
  }

  /** The exchanges recorded since the last call. */
  take(): Exchange[] {
    return this.exchanges.splice(0);
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

/** Writes `script` to a file and runs it as GitHub runs a `run:` step: `bash -e {0}`. */
async function runStep(relay: Relay, script: string, env: Record<string, string>): Promise<StepResult> {
  const dir = mkdtempSync(path.join(tmpdir(), 'hatchery-step-'));
  try {
    const file = path.join(dir, 'step.sh');
    writeFileSync(file, script);
    relay.take();
    const child = spawn('bash', ['-e', file], {
      cwd: dir,
      // A runner's environment, not this process's: no ~/.curlrc, no inherited proxies.
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: dir,
        CI: 'true',
        GITHUB_ACTIONS: 'true',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (c) => resolve(c ?? -1));
    });
    const exchanges = relay.take();
    if (exchanges.length !== 1) {
      throw new Error(`expected one request from the step, saw ${exchanges.length}; stderr:\n${stderr}`);
    }
    const { status, body } = exchanges[0]!;
    let answer: LegacyAnswer;
    try {
      answer = JSON.parse(body) as LegacyAnswer;
    } catch {
      answer = { raw: body };
    }
    return { code, stdout, stderr, status, answer };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface Run {
  repository: string;
  runId: string;
  runNumber: string;
}

/** SpinW's step with its DATA (see spinwData), as a job of the run `run`. */
export function spinwStep(relay: Relay, run: Run, data: string): Promise<StepResult> {
  return runStep(relay, SPINW_STEP, {
    DATA: data,
    GITHUB_REPOSITORY: run.repository,
    GITHUB_RUN_ID: run.runId,
    GITHUB_RUN_NUMBER: run.runNumber,
    WEBHOOK_URL: relay.url,
  });
}

/** The webhook action with inputs `data` and `webhook_secret`, as a step of the run `run`. */
export function actionStep(
  relay: Relay,
  run: Run,
  inputs: { data: Record<string, string>; secret: string },
): Promise<StepResult> {
  return runStep(relay, ACTION_STEP, {
    webhook_url: relay.url,
    webhook_secret: inputs.secret,
    // The workflow's `data:` input, as YAML hands it over: JSON text with spaces.
    data: JSON.stringify(inputs.data, null, 1),
    GITHUB_EVENT_NAME: 'push',
    GITHUB_REPOSITORY: run.repository,
    GITHUB_SHA: '4f2c1e0d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b',
    GITHUB_REF: 'refs/heads/main',
    GITHUB_HEAD_REF: '',
    GITHUB_WORKFLOW: 'CI',
    GITHUB_RUN_ID: run.runId,
    GITHUB_RUN_NUMBER: run.runNumber,
  });
}
