// POST / — SpinW's legacy route (opt-in: legacy.enabled). Same body and answer shape as SpinW's
// receiver ({success: "true"|"false", info}), but signed (X-Hub-Signature HMAC-SHA1, as the
// webhook action sends it, or X-Hub-Signature-256), validated, and never blocking the event loop.
// Dedupe is by identity (repository, ID, server), never by X-GitHub-Delivery: that action sends
// the run number there, the same for create and destroy and across re-runs.
import { Router, type Request, type Response } from 'express';
import type { Intake } from '../../core/intake.ts';
import type { Notifier } from '../../core/notifier.ts';
import { waitForReady } from '../../core/wait.ts';
import { decryptGitHubToken, DecryptError } from '../../crypto/openssl.ts';
import type { Logger } from '../../log.ts';
import type { Store } from '../../store/store.ts';
import { hasValidSignature, rawBody } from '../auth.ts';
import { parseJson, toRequestError } from '../errors.ts';
import { parseLegacyBody } from '../legacy-body.ts';

export interface LegacyOptions {
  secret?: string;
  opensslPassword?: string;
  waitForReady: boolean;
  waitTimeoutS: number;
  /** A PAT is configured (github.token), so requests without PAT can still be served. */
  hasDefaultToken: boolean;
}

export function legacyRoutes(deps: {
  intake: Intake;
  store: Store;
  notifier: Notifier;
  log: Logger;
  opts: LegacyOptions;
}) {
  const router = Router();
  router.post('/', async (req: Request, res: Response) => {
    const reply = (
      status: number,
      success: boolean,
      info: string,
      extra: Record<string, unknown> = {},
    ): void => {
      res.status(status).json({ success: success ? 'true' : 'false', info, ...extra });
    };
    const { opts } = deps;
    if (
      opts.secret &&
      !hasValidSignature(req, opts.secret, [
        { header: 'x-hub-signature-256', algorithm: 'sha256' },
        { header: 'x-hub-signature', algorithm: 'sha1' },
      ])
    ) {
      reply(
        401,
        false,
        'invalid signature: X-Hub-Signature (sha1) or X-Hub-Signature-256 must sign the body with the webhook secret',
      );
      return;
    }
    let request;
    try {
      request = parseLegacyBody(parseJson(rawBody(req)), req.get('x-github-delivery'));
    } catch (e) {
      const err = toRequestError(e);
      if (!err) throw e;
      reply(err.status, false, err.message);
      return;
    }
    if (request.action === 'destroy') {
      const vms = await deps.intake.destroy({
        source: 'legacy',
        repository: request.repository,
        labels: request.servers,
        legacyId: request.key,
        by: 'legacy request',
      });
      const info = vms.length ? `destroying: ${vms.map((v) => v.name).join(', ')}` : 'nothing to destroy';
      reply(200, true, info, { vms: vms.map((v) => ({ name: v.name, state: v.state })) });
      return;
    }

    if (request.pat) {
      try {
        // Decrypt now only to check it: a wrong password answers at once and creates nothing.
        // The encrypted text is what we keep; workers decrypt it when they mint runner configs.
        decryptGitHubToken(request.pat, opts.opensslPassword ?? '');
      } catch (e) {
        if (!(e instanceof DecryptError)) throw e;
        reply(400, false, `data.PAT: ${e.message}`);
        return;
      }
    } else if (!opts.hasDefaultToken) {
      reply(400, false, 'data.PAT: required (this service has no github.token of its own)');
      return;
    }
    let results;
    try {
      ({ results } = await deps.intake.create({
        source: 'legacy',
        repository: request.repository,
        labels: request.servers,
        legacyId: request.key,
        credential: request.pat,
      }));
    } catch (e) {
      const err = toRequestError(e);
      if (!err) throw e;
      reply(err.status, false, err.message);
      return;
    }
    const names = results.map((r) => r.vm.name);
    const labels = results.map((r) => r.vm.runnerLabels[1] ?? r.vm.name);
    if (!opts.waitForReady) {
      reply(200, true, `creating ${names.join(', ')}; runs-on labels: ${labels.join(', ')}`, {
        labels,
        vms: names,
      });
      return;
    }
    const aborted = new AbortController();
    res.on('close', () => aborted.abort());
    const r = await waitForReady(deps, names, opts.waitTimeoutS * 1000, aborted.signal);
    if (r.outcome === 'ready') {
      reply(200, true, `runners ready: ${labels.join(', ')}`, { labels, vms: names });
    } else if (r.outcome === 'timeout') {
      reply(
        504,
        false,
        `runners not ready within ${opts.waitTimeoutS} s: ${r.vms.map((v) => `${v.name} is ${v.state}`).join(', ')}`,
        { labels, vms: names },
      );
    } else if (r.outcome !== 'aborted') {
      const why = r.vms.map((v) => `${v.name}: ${v.state}${v.failure ? ` (${v.failure})` : ''}`).join(', ');
      reply(502, false, `runners will not become ready: ${why}`, { labels, vms: names });
    }
  });
  return router;
}
