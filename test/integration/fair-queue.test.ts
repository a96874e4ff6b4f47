// Fair admission through the service (limits.tenants): with room for one VM, the VM waiting for
// the repository that holds none is next, though another repository's request is older; the API
// shows each waiting VM's and job's queue position in that order.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { eventually } from '../helpers/stack.ts';
import { AppService } from '../helpers/app-service.ts';

const queued = (id: number, repository: string) => ({
  action: 'queued',
  workflow_job: {
    id,
    run_id: 9000 + id,
    run_attempt: 1,
    labels: ['self-hosted', 'linux'],
    runner_name: null,
  },
  repository: { full_name: repository },
  installation: { id: 77 },
});

interface VmRow {
  name: string;
  repository: string;
  state: string;
  queue_position?: number;
}
interface JobRow {
  job_id: number;
  vm: string | null;
  status: string;
  queue_position?: number;
}

type Event = Awaited<ReturnType<AppService['service']['store']['listEvents']>>[number];

/**
 * Queues one job per id for octo-org/app, waits until every VM is idle, and returns each VM's
 * span in the audit trail: from its admission to the first event `end` picks, as event ids (the
 * store's order of writes: compared, not clocks), oldest admission first.
 */
async function admissionSpans(
  app: AppService,
  ids: number[],
  end: (e: Event) => boolean,
): Promise<(readonly [number, number])[]> {
  for (const id of ids) {
    const r = await app.post('workflow_job', queued(id, 'octo-org/app'));
    assert.equal(r.json.result, 'vm_requested');
  }
  const vms = await eventually(async () => {
    const vms = await app.service.store.listVms();
    return vms.length === ids.length && vms.every((v) => v.state === 'idle') ? vms : undefined;
  }, 'every VM idle');
  const spans = await Promise.all(
    vms.map(async (vm) => {
      const ev = await app.service.store.listEvents(vm.id);
      return [ev.find((e) => e.event === 'admitted')!.id, ev.find(end)!.id] as const;
    }),
  );
  return spans.sort((a, b) => a[0] - b[0]);
}

describe('fair admission: queue positions across tenants', () => {
  let app: AppService;
  before(async () => {
    app = await AppService.start({
      pools: [{ name: 'linux', labels: ['linux'], max_vms: 1 }],
      installations: [{ id: 77, account: 'octo-org' }],
      limits: { max_vms: 1, tenants: { by: 'repository' } },
    });
  });
  after(async () => {
    await app?.stop();
  });

  it('puts the repository holding no VM first, and shows positions for VMs and jobs', async () => {
    for (const [id, repo] of [
      [1, 'octo-org/app'],
      [2, 'octo-org/app'],
      [3, 'octo-org/app'],
      [4, 'octo-org/lib'],
    ] as const) {
      const r = await app.post('workflow_job', queued(id, repo));
      assert.equal(r.json.result, 'vm_requested');
    }
    // The first (octo-org/app's) takes the only room; the others wait.
    const vms = await eventually(async () => {
      const { vms } = await app.api<{ vms: VmRow[] }>('/api/v1/vms');
      return vms.filter((v) => v.state === 'pending').length === 3 ? vms : undefined;
    }, 'one VM admitted, three waiting');
    const running = vms.filter((v) => v.state !== 'pending');
    assert.deepEqual(
      running.map((v) => [v.repository, v.queue_position]),
      [['octo-org/app', undefined]],
      'a VM past pending has no queue position',
    );
    // Oldest first would be app, app, lib; fair share puts lib (holding nothing) first.
    const waiting = vms
      .filter((v) => v.state === 'pending')
      .sort((a, b) => a.queue_position! - b.queue_position!);
    assert.deepEqual(
      waiting.map((v) => [v.repository, v.queue_position]),
      [
        ['octo-org/lib', 1],
        ['octo-org/app', 2],
        ['octo-org/app', 3],
      ],
    );
    const one = await app.api<VmRow>(`/api/v1/vms/${waiting[0]!.name}`);
    assert.equal(one.queue_position, 1);
    const { jobs } = await app.api<{ jobs: JobRow[] }>('/api/v1/jobs');
    const byId = Object.fromEntries(jobs.map((j) => [j.job_id, j.queue_position]));
    assert.deepEqual(byId, { 1: undefined, 2: 2, 3: 3, 4: 1 });
  });
});

describe('limits.max_provisioning: VMs starting at once', () => {
  let app: AppService;
  before(async () => {
    app = await AppService.start({
      pools: [{ name: 'linux', labels: ['linux'], max_vms: 8 }],
      installations: [{ id: 77, account: 'octo-org' }],
      limits: { max_vms: 8, max_provisioning: 1 },
    });
  });
  after(async () => {
    await app?.stop();
  });

  it('starts one VM at a time, the next as soon as the previous runner is online', async () => {
    // Admitted → idle (provisioning and booting) never overlap.
    const spans = await admissionSpans(app, [11, 12, 13, 14], (e) => e.toState === 'idle');
    for (let i = 1; i < spans.length; i++)
      assert.ok(spans[i]![0] > spans[i - 1]![1], `VM ${i + 1} was admitted before VM ${i} was online`);
  });
});

describe('VMs provisioning at once: twice the workers, the rest wait pending', () => {
  let app: AppService;
  before(async () => {
    app = await AppService.start({
      pools: [{ name: 'linux', labels: ['linux'], max_vms: 8 }],
      installations: [{ id: 77, account: 'octo-org' }],
      limits: { max_vms: 8 },
      workers: { concurrency: 1 },
    });
  });
  after(async () => {
    await app?.stop();
  });

  it('never has more than 2 × workers.concurrency VMs admitted and not yet created', async () => {
    // At each admission, how many VMs were admitted and not yet created, this one included.
    const spans = await admissionSpans(
      app,
      [21, 22, 23, 24, 25, 26],
      (e) => e.fromState === 'provisioning' && e.toState === 'booting',
    );
    const most = Math.max(...spans.map(([at]) => spans.filter(([a, c]) => a <= at && c > at).length));
    assert.equal(most, 2, `${most} VMs provisioning at once with one worker`);
  });
});
