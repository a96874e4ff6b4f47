// POST /hooks/control — explicit create/destroy from a workflow (the three-job shape).
// Verify the HMAC over the raw body, parse, record the intent, answer 202. No VM work here.
import { Router, type Request, type Response } from 'express';
import { z } from 'zod';
import type { Intake } from '../../core/intake.ts';
import { parseLabel, parsePositiveInt, parseRepository } from '../../core/naming.ts';
import type { Store } from '../../store/store.ts';
import { hasValidSignature, rawBody } from '../auth.ts';
import { badRequest, parseJson } from '../errors.ts';
import { vmView } from '../views.ts';

const bodySchema = z.object({
  action: z.string({ error: 'required: "create" or "destroy"' }),
  repository: z.unknown(),
  run_id: z.unknown(),
  run_attempt: z.unknown(),
  labels: z.array(z.unknown(), { error: 'required: a list of pool labels, e.g. ["linux"]' }).min(1).max(20),
});

export interface ControlRequest {
  action: 'create' | 'destroy';
  repository: string;
  runId: string;
  runAttempt: number;
  labels: string[];
}

export function parseControlBody(json: unknown): ControlRequest {
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw badRequest('body', 'expected a JSON object');
  const b = bodySchema.parse(json);
  if (b.action !== 'create' && b.action !== 'destroy') {
    throw badRequest('action', `unknown action ${JSON.stringify(b.action)}: expected "create" or "destroy"`);
  }
  const repository = parseRepository(b.repository).full;
  const runId = String(parsePositiveInt(b.run_id, 'run_id'));
  const runAttempt = parsePositiveInt(b.run_attempt, 'run_attempt', 10_000);
  const labels = b.labels.map((l, i) => parseLabel(l, `labels.${i}`));
  return { action: b.action, repository, runId, runAttempt, labels };
}

export function controlRoutes(deps: {
  intake: Intake;
  store: Store;
  secret?: string;
  baseUrl: () => string;
  clock: () => number;
}) {
  const router = Router();
  router.post('/hooks/control', async (req: Request, res: Response) => {
    if (!deps.secret) {
      res.status(503).json({
        error: 'control_disabled',
        message: 'set control.secret (HATCHERY_CONTROL_SECRET) to enable',
      });
      return;
    }
    if (!hasValidSignature(req, deps.secret, [{ header: 'x-hatchery-signature-256', algorithm: 'sha256' }])) {
      res.status(401).json({
        error: 'bad_signature',
        message: 'X-Hatchery-Signature-256 is missing or does not match the body',
      });
      return;
    }
    const body = parseControlBody(parseJson(rawBody(req)));
    const common = {
      source: 'control' as const,
      repository: body.repository,
      runId: body.runId,
      runAttempt: body.runAttempt,
      labels: body.labels,
    };
    const base = deps.baseUrl();
    // The delivery is recorded only once the intent is: a request refused for a bad label
    // changes nothing, and its corrected redelivery is not mistaken for a duplicate.
    const deliveryId = req.get('x-hatchery-delivery') ?? req.get('x-github-delivery');
    if (deliveryId !== undefined && !/^[A-Za-z0-9._:-]{1,128}$/.test(deliveryId)) {
      throw badRequest('X-Hatchery-Delivery', 'at most 128 letters, digits, ".", "_", ":", "-"');
    }
    if (body.action === 'create') {
      const { results, duplicate } = await deps.intake.create(
        common,
        deliveryId ? { source: 'control', id: deliveryId } : undefined,
      );
      res.status(202).json({
        action: 'create',
        duplicate,
        vms: results.map(({ vm, created }) => ({
          ...vmView(vm, base),
          created,
          wait_url: `${base}/api/v1/vms/${vm.name}?wait=ready&timeout=600`,
        })),
      });
    } else {
      const vms = await deps.intake.destroy({ ...common, by: 'control request' });
      const duplicate = deliveryId
        ? !(await deps.store.recordDelivery('control', deliveryId, deps.clock()))
        : false;
      res.status(202).json({
        action: 'destroy',
        duplicate,
        vms: vms.map((vm) => vmView(vm, base)),
      });
    }
  });
  return router;
}
