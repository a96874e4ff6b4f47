// /api/v1 — list and inspect VMs (with a long-poll until ready), destroy one by hand.
// Bearer-token authenticated.
import { Router, type Request, type Response } from 'express';
import type { Intake } from '../../core/intake.ts';
import { STATES, type VmState } from '../../core/lifecycle.ts';
import { isVmName, parseRepository } from '../../core/naming.ts';
import type { Notifier } from '../../core/notifier.ts';
import { waitForReady } from '../../core/wait.ts';
import type { Store } from '../../store/store.ts';
import { bearerAuth } from '../auth.ts';
import { badRequest, RequestError } from '../errors.ts';
import { eventView, positionsOf, vmView, type QueueView } from '../views.ts';

const MAX_WAIT_S = 3600;
const DEFAULT_PAGE = 100;
const MAX_PAGE = 1000;

// A page cursor is opaque to clients: the id of the last VM listed, newest first.
const formatCursor = (id: number): string => Buffer.from(`v1:${id}`).toString('base64url');

function parseCursor(value: unknown): number {
  const m =
    typeof value === 'string'
      ? /^v1:([1-9][0-9]{0,15})$/.exec(Buffer.from(value, 'base64url').toString())
      : null;
  if (!m) throw badRequest('cursor', 'not a cursor from a previous page (next_cursor)');
  return Number(m[1]);
}

function vmNameParam(req: Request): string {
  const name = String(req.params.name);
  if (!isVmName(name))
    throw badRequest('name', 'not a Hatchery VM name (hatchery-…, lowercase letters, digits, "-")');
  return name;
}

export function apiRoutes(deps: {
  intake: Intake;
  store: Store;
  notifier: Notifier;
  token?: string;
  baseUrl: () => string;
  /** Queue positions of pending VMs (absent: not shown). */
  queue?: QueueView;
}) {
  const router = Router();
  router.use('/api/v1', bearerAuth(deps.token));

  router.get('/api/v1/vms', async (req: Request, res: Response) => {
    const states = typeof req.query.state === 'string' ? req.query.state.split(',') : undefined;
    for (const s of states ?? []) {
      if (!STATES.includes(s as VmState))
        throw badRequest('state', `unknown state ${JSON.stringify(s)} (one of ${STATES.join(', ')})`);
    }
    const repository =
      typeof req.query.repository === 'string' ? parseRepository(req.query.repository).full : undefined;
    const limit = req.query.limit === undefined ? DEFAULT_PAGE : Number(req.query.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE)
      throw badRequest('limit', `an integer between 1 and ${MAX_PAGE}`);
    const before = req.query.cursor === undefined ? undefined : parseCursor(req.query.cursor);
    // One more than asked: whether another page exists, without counting.
    const rows = await deps.store.listVms({
      states: states as VmState[] | undefined,
      repository,
      limit: limit + 1,
      ...(before === undefined ? {} : { before }),
    });
    const page = rows.slice(0, limit);
    const last = page.at(-1);
    const positions = await positionsOf(deps.queue, page);
    res.json({
      vms: page.map((vm) => vmView(vm, deps.baseUrl(), positions.get(vm.name))),
      next_cursor: rows.length > limit && last ? formatCursor(last.id) : null,
    });
  });

  router.get('/api/v1/vms/:name', async (req: Request, res: Response) => {
    const name = vmNameParam(req);
    const wait = req.query.wait;
    if (wait !== undefined && wait !== 'ready') throw badRequest('wait', 'only wait=ready is supported');
    let vm = await deps.store.getVm(name);
    if (!vm) throw new RequestError(404, 'not_found', `no VM named ${name}`);
    let status = 200;
    let outcome: string | undefined;
    if (wait === 'ready') {
      const timeoutS = req.query.timeout === undefined ? 300 : Number(req.query.timeout);
      if (!Number.isFinite(timeoutS) || timeoutS < 0 || timeoutS > MAX_WAIT_S) {
        throw badRequest('timeout', `seconds between 0 and ${MAX_WAIT_S}`);
      }
      const aborted = new AbortController();
      res.on('close', () => aborted.abort());
      const r = await waitForReady(deps, [name], timeoutS * 1000, aborted.signal);
      outcome = r.outcome;
      vm = r.vms[0] ?? vm;
      // 408: not ready within the timeout (curl --retry repeats it); 409: it will never be ready.
      status = r.outcome === 'ready' ? 200 : r.outcome === 'timeout' ? 408 : 409;
    }
    const events = (await deps.store.listEvents(vm.id)).map(eventView);
    const position = (await positionsOf(deps.queue, [vm])).get(vm.name);
    res
      .status(status)
      .json({ ...vmView(vm, deps.baseUrl(), position), ...(outcome ? { wait: outcome } : {}), events });
  });

  router.delete('/api/v1/vms/:name', async (req: Request, res: Response) => {
    const name = vmNameParam(req);
    const vm = await deps.intake.destroyByName(name, 'API');
    if (!vm) throw new RequestError(404, 'not_found', `no VM named ${name}`);
    res.status(202).json(vmView(vm, deps.baseUrl()));
  });
  return router;
}
