// POST / — SpinW's legacy route (opt-in: legacy.enabled). Same body and answer shape as SpinW's
// receiver ({success: "true"|"false", info}), validated, and never blocking the event loop.
// Dedupe is by identity (repository, ID, server), never by X-GitHub-Delivery: the webhook action
// sends the run number there, the same for create and destroy and across re-runs.
//
// Its two clients read a refusal differently (docs/adr/2026-12-02-legacy-refusals.md):
// - SpinW's own step, unsigned: `curl --fail … | jq -e '.success == "true"'` reads only the body.
//   An error status leaves jq an empty input, which jq 1.6 accepts: the step would pass. So an
//   unsigned request's refusal is HTTP 200 with success "false".
// - The distributhor/workflow-webhook action always signs and runs `curl --fail`; nothing reads
//   the body. A signed request's refusal keeps its error status (same body), so its step fails.
//
// Authentication: with legacy.secret, X-Hub-Signature (sha1) or X-Hub-Signature-256 must sign
// the body. Without (legacy.allow_unsigned) a request is authenticated by its PAT alone: it must
// decrypt, and GitHub must accept it for the repository's runners, before anything is recorded;
// that holds for destroy too, and whether or not the service has a github.token of its own.
import { Router, type Request, type Response } from 'express';
import { UnknownLabelError } from '../../core/context.ts';
import type { Intake } from '../../core/intake.ts';
import { isTerminal } from '../../core/lifecycle.ts';
import type { Notifier } from '../../core/notifier.ts';
import { waitForReady } from '../../core/wait.ts';
import { decryptGitHubToken, DecryptError } from '../../crypto/openssl.ts';
import type { HmacAlgorithm } from '../../crypto/hmac.ts';
import { GitHubError } from '../../github/runners.ts';
import type { Logger } from '../../log.ts';
import type { Store, VmRecord } from '../../store/store.ts';
import { hasValidSignature, rawBody } from '../auth.ts';
import { parseJson, toRequestError } from '../errors.ts';
import { parseLegacyBody, type LegacyRequest } from '../legacy-body.ts';

export interface LegacyOptions {
  /** The webhook action's webhook_secret; absent: unsigned requests (legacy.allow_unsigned). */
  secret?: string;
  opensslPassword?: string;
  waitForReady: boolean;
  waitTimeoutS: number;
  /** A PAT is configured (github.token), so signed requests without PAT can still be served. */
  hasDefaultToken: boolean;
  /** Resolves if GitHub accepts `token` for the repository's runners; throws GitHubError if not. */
  checkToken(repository: string, token: string): Promise<void>;
}

const SIGNATURES: { header: string; algorithm: HmacAlgorithm }[] = [
  { header: 'x-hub-signature-256', algorithm: 'sha256' },
  { header: 'x-hub-signature', algorithm: 'sha1' },
];

/** A request the route will not serve: `status` for callers that sign, 200 for the others. */
class Refusal extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'Refusal';
  }
}

function asRefusal(e: unknown): Refusal | null {
  if (e instanceof Refusal) return e;
  // The legacy body names its server kinds `servers`, not `labels`.
  if (e instanceof UnknownLabelError) return new Refusal(400, `data.servers: ${e.message}`);
  const known = toRequestError(e);
  return known ? new Refusal(known.status, known.message) : null;
}

export function legacyRoutes(deps: {
  intake: Intake;
  store: Store;
  notifier: Notifier;
  log: Logger;
  opts: LegacyOptions;
}) {
  const { opts, log } = deps;

  function checkSignature(req: Request): void {
    if (!opts.secret) return;
    if (!SIGNATURES.some(({ header }) => req.get(header) !== undefined)) {
      throw new Refusal(
        401,
        'X-Hub-Signature: missing; this service serves only requests whose body is signed with its ' +
          'webhook secret (X-Hub-Signature: sha1=… or X-Hub-Signature-256: sha256=…)',
      );
    }
    if (!hasValidSignature(req, opts.secret, SIGNATURES)) {
      throw new Refusal(
        401,
        'X-Hub-Signature: does not match the body; sign the exact body with the webhook secret ' +
          '(HMAC-SHA1 in X-Hub-Signature or HMAC-SHA256 in X-Hub-Signature-256)',
      );
    }
  }

  /**
   * Checks the PAT where it is needed. Unsigned requests have no other credential: the PAT must
   * decrypt and GitHub must accept it for the repository. A signed create's PAT is checked the
   * same way (it is what will mint the runner); a signed destroy needs none.
   */
  async function checkPat(request: LegacyRequest): Promise<void> {
    const signed = Boolean(opts.secret);
    // The signature is enough; the PAT is not used to destroy (as before this check existed).
    if (signed && request.action === 'destroy') return;
    if (!request.pat) {
      if (!signed) {
        throw new Refusal(
          401,
          `data.PAT: required; an unsigned ${request.action} is authenticated by its PAT alone ` +
            `(encrypted as the workflow does, and accepted by GitHub for ${request.repository})`,
        );
      }
      if (!opts.hasDefaultToken)
        throw new Refusal(400, 'data.PAT: required (this service has no github.token of its own)');
      return;
    }
    let token: string;
    try {
      token = decryptGitHubToken(request.pat, opts.opensslPassword ?? '');
    } catch (e) {
      if (!(e instanceof DecryptError)) throw e;
      throw new Refusal(400, `data.PAT: ${e.message}`);
    }
    try {
      await opts.checkToken(request.repository, token);
    } catch (e) {
      if (!(e instanceof GitHubError)) throw e;
      if (e.status === 401 || e.status === 403 || e.status === 404) {
        throw new Refusal(
          403,
          `data.PAT: GitHub does not accept this token for ${request.repository} (${e.message})`,
        );
      }
      throw new Refusal(502, `data.PAT: could not check the token with GitHub (${e.message})`);
    }
  }

  /** A create answered "false" leaves nothing running that the workflow would not use. */
  async function withdraw(vms: VmRecord[], why: string): Promise<void> {
    for (const vm of vms) {
      if (!isTerminal(vm.state)) await deps.intake.destroyByName(vm.name, `legacy create refused: ${why}`);
    }
  }

  /** Answers with the created runners' labels, or throws a Refusal; null if the caller left. */
  async function create(request: LegacyRequest, res: Response): Promise<Record<string, unknown> | null> {
    const { results } = await deps.intake.create({
      source: 'legacy',
      repository: request.repository,
      labels: request.servers,
      legacyId: request.key,
      credential: request.pat,
    });
    const names = results.map((r) => r.vm.name);
    const labels = results.map((r) => r.vm.runnerLabels[1] ?? r.vm.name);
    if (!opts.waitForReady) {
      return {
        info: `creating ${names.join(', ')}; runs-on labels: ${labels.join(', ')}`,
        labels,
        vms: names,
      };
    }
    const aborted = new AbortController();
    res.on('close', () => aborted.abort());
    const r = await waitForReady(deps, names, opts.waitTimeoutS * 1000, aborted.signal);
    if (r.outcome === 'ready') return { info: `runners ready: ${labels.join(', ')}`, labels, vms: names };
    if (r.outcome === 'aborted') return null;
    const why =
      r.outcome === 'timeout'
        ? `runners not ready within ${opts.waitTimeoutS} s: ${r.vms.map((v) => `${v.name} is ${v.state}`).join(', ')}`
        : `runners will not become ready: ${
            r.vms.map((v) => `${v.name}: ${v.state}${v.failure ? ` (${v.failure})` : ''}`).join(', ') ||
            'a VM record vanished'
          }`;
    await withdraw(r.vms, why);
    throw new Refusal(r.outcome === 'timeout' ? 504 : 502, `${why}; destroying them`, { labels, vms: names });
  }

  const router = Router();
  router.post('/', async (req: Request, res: Response) => {
    // Callers that sign (the webhook action) read the status; the others (curl | jq) the body.
    const readsStatus = SIGNATURES.some(({ header }) => req.get(header) !== undefined);
    try {
      checkSignature(req);
      const request = parseLegacyBody(parseJson(rawBody(req)), req.get('x-github-delivery'));
      await checkPat(request);
      if (request.action === 'destroy') {
        const vms = await deps.intake.destroy({
          source: 'legacy',
          repository: request.repository,
          labels: request.servers,
          legacyId: request.key,
          by: 'legacy request',
        });
        const info = vms.length ? `destroying: ${vms.map((v) => v.name).join(', ')}` : 'nothing to destroy';
        res.json({ success: 'true', info, vms: vms.map((v) => ({ name: v.name, state: v.state })) });
        return;
      }
      const answer = await create(request, res);
      if (answer) res.json({ success: 'true', ...answer });
    } catch (e) {
      let refusal = asRefusal(e);
      if (!refusal) {
        log.error({ err: (e as Error).message, stack: (e as Error).stack }, 'legacy request failed');
        refusal = new Refusal(500, 'internal error (see the service log)');
      }
      log.info({ status: refusal.status, info: refusal.message }, 'legacy request refused');
      if (res.headersSent || res.destroyed) return;
      res
        .status(readsStatus ? refusal.status : 200)
        .json({ success: 'false', info: refusal.message, ...refusal.extra });
    }
  });
  return router;
}
