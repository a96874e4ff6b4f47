// The external-command provider: every call runs the operator's executable once, with one JSON
// request on stdin and one JSON answer on stdout (garm's external provider protocol, spelt out in
// docs/providers/command.md). This class turns answers into VmInfo and failures into
// ProviderErrors; the executable owns the VMs and all of their state.
import type { Logger } from '../../log.ts';
import { checkVmName, ProviderError, type Provider, type VmInfo, type VmSpec } from '../provider.ts';
import {
  ANSWERS,
  createSpec,
  errorAnswer,
  PROTOCOL_VERSION,
  toVmInfo,
  type Answer,
  type AnsweredVm,
  type Operation,
  type Request,
} from './protocol.ts';
import { runOnce, type RunOutcome } from './run.ts';

export interface CommandProviderOptions {
  /** The `[providers.<name>]` instance name. */
  name: string;
  instanceId: string;
  /** argv: the executable and its arguments; run without a shell. */
  command: readonly string[];
  /** The executable's working directory. */
  cwd: string;
  /** Variables for the executable, on top of the few it inherits (see childEnv). */
  env: Record<string, string>;
  timeoutMs: number;
  prepareTimeoutMs: number;
  /** Each pool's free-form `options`, passed through to create. */
  poolOptions: (pool: string) => Record<string, unknown>;
  /** Already bound to the instance (its lines carry `provider`). */
  log: Logger;
  /** The executable gives each VM a unix socket channel (settings.guest_channel). */
  nativeChannel?: 'unix';
}

/** Lines of stderr an error message carries, and its length at most. */
const STDERR_LINES = 8;
const STDERR_CHARS = 1500;
const MESSAGE_CHARS = 500;

/** Guest config keys whose values are secrets: never echoed in an error or a log line. */
const SECRET_KEY = /JITCONFIG|TOKEN|SECRET|PASSWORD/;

/** The only variables of the service's environment the executable sees (the rest may hold its secrets). */
const INHERITED_ENV = ['PATH', 'HOME', 'USER', 'LOGNAME', 'LANG', 'LC_ALL', 'TZ', 'TMPDIR'];

interface CallOptions {
  name?: string;
  vm?: Request['vm'];
  image?: string;
  signal?: AbortSignal;
  /** Values to blank out of whatever the executable says (stderr, error messages). */
  secrets?: string[];
  onStderrLine?: (line: string) => void;
}

export class CommandProvider implements Provider {
  readonly kind = 'command';
  readonly nativeChannel?: 'unix';

  constructor(private readonly opts: CommandProviderOptions) {
    if (opts.command.length === 0) throw new Error('command: the executable is missing');
    if (opts.nativeChannel) this.nativeChannel = opts.nativeChannel;
  }

  async create(spec: VmSpec, signal?: AbortSignal): Promise<VmInfo> {
    checkVmName(spec.name);
    const secrets = Object.entries(spec.guestConfig)
      .filter(([k, v]) => SECRET_KEY.test(k) && v.length > 0)
      .map(([, v]) => v);
    const vm = createSpec(spec, this.opts.poolOptions(spec.pool));
    let foreign = false;
    try {
      const answer = await this.call('create', { name: spec.name, vm, signal, secrets });
      const info = this.ours('create', spec.name, answer.vm);
      if (!info) {
        foreign = true;
        throw new ProviderError(`create ${spec.name}: the name is taken by another installation's VM`, false);
      }
      if (info.status !== 'running')
        throw new ProviderError(`create ${spec.name}: the command answered a VM that is not running`, true);
      return info;
    } catch (e) {
      // Nothing may be left behind, and the executable may have been killed half-way (timeout,
      // abort) or have failed without cleaning up: remove whatever it got to create. Not when it
      // never ran (aborted before the start, not found), nor another installation's VM.
      if (!foreign && (!(e instanceof CommandError) || e.ran)) await this.cleanup(spec.name);
      throw e;
    }
  }

  async destroy(name: string, signal?: AbortSignal): Promise<void> {
    checkVmName(name);
    await this.call('destroy', { name, signal });
  }

  async list(): Promise<VmInfo[]> {
    const { vms } = await this.call('list', {});
    const out: VmInfo[] = [];
    const seen = new Set<string>();
    for (const v of vms) {
      // The executable must filter by instance_id; a VM it shows of another installation is
      // dropped (the reconciler destroys unknown VMs it lists: another installation's must never be one).
      const info = this.ours('list', v.name, v);
      if (!info) continue;
      if (seen.has(v.name)) throw this.protocolError('list', `VM ${v.name} is listed twice`);
      seen.add(v.name);
      out.push(info);
    }
    return out;
  }

  async get(name: string): Promise<VmInfo | null> {
    checkVmName(name);
    const { vm } = await this.call('get', { name });
    return vm ? this.ours('get', name, vm) : null;
  }

  async console(name: string): Promise<string | null> {
    checkVmName(name);
    const answer = await this.call('console', { name });
    return 'console' in answer ? answer.console : null;
  }

  async prepare(image: string, onProgress?: (message: string) => void): Promise<void> {
    const answer = await this.call('prepare', { image, onStderrLine: onProgress });
    if ('unsupported' in answer) onProgress?.('the command does not prepare images (prepare: unsupported)');
  }

  /**
   * The answered VM if it is the one asked for and ours; null for another installation's (which
   * the executable should not have shown). A VM of another name is a protocol error.
   */
  private ours(op: Operation, name: string, vm: AnsweredVm): VmInfo | null {
    if (vm.name !== name) throw this.protocolError(op, `asked for ${name}, answered ${vm.name}`);
    if (vm.instance_id === this.opts.instanceId) return toVmInfo(vm);
    this.opts.log.warn(
      { operation: op, vm: name, instanceId: vm.instance_id },
      "the command answered another installation's VM: ignored",
    );
    return null;
  }

  /** Best-effort removal after a failed create; its own failure is logged, not thrown. */
  private async cleanup(name: string): Promise<void> {
    try {
      await this.call('destroy', { name });
    } catch (e) {
      this.opts.log.warn(
        { vm: name, err: (e as Error).message },
        "cleanup after a failed create failed (the VM's destroy step will remove it)",
      );
    }
  }

  private async call<Op extends Operation>(op: Op, c: CallOptions): Promise<Answer<Op>> {
    const request: Request = {
      version: PROTOCOL_VERSION,
      operation: op,
      instance_id: this.opts.instanceId,
      provider: this.opts.name,
      ...(c.name !== undefined ? { name: c.name } : {}),
      ...(c.vm ? { vm: c.vm } : {}),
      ...(c.image !== undefined ? { image: c.image } : {}),
    };
    const started = Date.now();
    const outcome = await runOnce({
      argv: this.opts.command,
      cwd: this.opts.cwd,
      env: this.childEnv(op),
      stdin: JSON.stringify(request),
      timeoutMs: op === 'prepare' ? this.opts.prepareTimeoutMs : this.opts.timeoutMs,
      signal: c.signal,
      onStderrLine: c.onStderrLine && ((l) => c.onStderrLine!(redact(l, c.secrets))),
    });
    this.opts.log.debug(
      {
        operation: op,
        vm: c.name,
        ms: Date.now() - started,
        outcome: outcome.kind === 'exited' ? (outcome.code ?? outcome.signal) : outcome.kind,
      },
      'command call',
    );
    return this.interpret(op, c, outcome);
  }

  private interpret<Op extends Operation>(op: Op, c: CallOptions, outcome: RunOutcome): Answer<Op> {
    const timeoutMs = op === 'prepare' ? this.opts.prepareTimeoutMs : this.opts.timeoutMs;
    // Whole texts are redacted before anything cuts them, so that no part of a secret survives a cut.
    const stderr = outcome.kind === 'not-started' ? '' : redact(outcome.stderr, c.secrets);
    const fail = (message: string, retryable: boolean, ran = true): CommandError =>
      new CommandError(
        `${c.name ? `${op} ${c.name}` : op}: ${message}${stderrSuffix(stderr)}`,
        retryable,
        ran,
      );

    if (outcome.kind === 'not-started') {
      const e = outcome.error;
      if (!e) throw fail('aborted before the command started', true, false);
      throw fail(
        `cannot run ${this.opts.command[0]} (in ${this.opts.cwd}): ${e.code ?? e.message}`,
        false,
        false,
      );
    }
    if (outcome.kind === 'killed') {
      const why = {
        timeout: `timed out after ${timeoutMs / 1000} s`,
        aborted: 'aborted',
        'too-much-output': 'answered too much (over 16 MiB)',
      }[outcome.reason];
      throw fail(`${why}; the command and its process group were killed`, true);
    }

    const { code, signal } = outcome;
    const stdout = redact(outcome.stdout, c.secrets);
    let json: unknown;
    let parsed = false;
    try {
      json = JSON.parse(stdout);
      parsed = true;
    } catch {
      /* judged below */
    }
    const version = parsed && isObject(json) ? json.version : undefined;
    if (version !== undefined && version !== PROTOCOL_VERSION) {
      const v = JSON.stringify(version).slice(0, 20);
      throw fail(`the command speaks protocol version ${v}, Hatchery ${PROTOCOL_VERSION}`, false);
    }
    // An error answer is honoured whatever the exit status.
    const error = parsed ? errorAnswer.safeParse(json) : null;
    if (error?.success) {
      const { message, retryable } = error.data.error;
      throw fail(`${bounded(message)}${exitSuffix(code, signal)}`, retryable);
    }
    if (code !== 0) {
      throw fail(`failed (${signal ? `killed by ${signal}` : `exit ${code}`}, no error answer)`, true);
    }
    if (!parsed) {
      const excerpt = JSON.stringify(bounded(stdout.trim(), 80));
      throw fail(
        stdout.trim() === '' ? 'exit 0 but no answer' : `answered something that is not JSON: ${excerpt}`,
        true,
      );
    }
    const answer = ANSWERS[op].safeParse(json);
    if (!answer.success) {
      const issues = answer.error.issues
        .slice(0, 3)
        .map((i) => `${i.path.join('.') || '(answer)'}: ${i.message}`)
        .join('; ');
      throw fail(`answered JSON that does not match the protocol (${issues})`, true);
    }
    return answer.data as Answer<Op>;
  }

  private protocolError(op: Operation, message: string): ProviderError {
    return new ProviderError(`${op}: ${message}`, true);
  }

  /** A minimal environment: the service's own may hold its secrets (HATCHERY_GITHUB_TOKEN …). */
  private childEnv(op: Operation): Record<string, string> {
    const env: Record<string, string> = {};
    for (const k of INHERITED_ENV) {
      const v = process.env[k];
      if (v !== undefined) env[k] = v;
    }
    return {
      ...env,
      ...this.opts.env,
      HATCHERY_OPERATION: op,
      HATCHERY_PROTOCOL_VERSION: String(PROTOCOL_VERSION),
    };
  }
}

/** A failed call; `ran`: the executable was started (so it may have left something). */
export class CommandError extends ProviderError {
  constructor(
    message: string,
    retryable: boolean,
    readonly ran: boolean,
  ) {
    super(message, retryable);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function bounded(s: string, max = MESSAGE_CHARS): string {
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

function exitSuffix(code: number | null, signal: NodeJS.Signals | null): string {
  return signal ? ` (killed by ${signal})` : code ? ` (exit ${code})` : '';
}

/** The last lines of stderr, bounded: they land in the VM's audit trail with the error. */
function stderrSuffix(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((l) => l.trimEnd())
    .filter(Boolean)
    .slice(-STDERR_LINES);
  if (lines.length === 0) return '';
  let text = lines.join(' | ');
  if (text.length > STDERR_CHARS) text = `…${text.slice(-STDERR_CHARS)}`;
  return `; stderr: ${text}`;
}

/** Blanks out every occurrence of the request's secrets (an executable may echo its input). */
function redact(text: string, secrets: readonly string[] = []): string {
  let out = text;
  for (const s of secrets) out = out.split(s).join('[redacted]');
  return out;
}
