// OpenStack: Hatchery's create webhook → runner online and destroy → server gone, against the
// raw API calls on the same cloud in the same run: POST /servers → ACTIVE and DELETE → 404 of a
// server of the same image, flavor and network (the member of project `hatchery`). The cloud is
// scripts/openstack.sh's (started for the run, or HATCHERY_TEST_OPENSTACK=DIR for one already up;
// Nova's fake driver, the hypervisor stand-in boots each server's user_data in a tiny QEMU
// guest). Rounds alternate the order of the two. What Hatchery adds is create → `created` (the
// server ACTIVE, as its provider sees it) against the raw create → ACTIVE, and destroy → gone
// against delete → 404; create → online adds the guest's boot (TCG) and the runner's start.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Compute } from '../src/providers/openstack/compute.ts';
import { OpenStackHttp } from '../src/providers/openstack/http.ts';
import { Keystone } from '../src/providers/openstack/keystone.ts';
import { Lookup } from '../src/providers/openstack/lookup.ts';
import { fastHttp, TestCloud } from '../test/helpers/openstack.ts';
import { cloudPool, OpenStackStack } from '../test/helpers/openstack-stack.ts';
import { fmtMs, fmtRatio, median, progress } from './stats.ts';

const REPO = 'bench/openstack';

export interface OpenStackResult {
  rounds: number;
  upSeconds: number;
  rawActiveMs: number[];
  rawGoneMs: number[];
  createdMs: number[];
  onlineMs: number[];
  goneMs: number[];
}

export async function until(what: string, probe: () => Promise<boolean>, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
    await sleep(100);
  }
}

async function raw(
  cloud: TestCloud,
  compute: Compute,
  ids: { image: string; flavor: string; network: string },
  round: number,
) {
  const t0 = performance.now();
  const id = await compute.create({
    name: `hatchery-raw-${round}`,
    imageRef: ids.image,
    flavorRef: ids.flavor,
    networks: [ids.network],
    userData: '#!/bin/sh\n',
    metadata: {},
    tags: [],
  });
  await until('raw ACTIVE', async () => (await compute.server(id))?.status === 'ACTIVE');
  const active = performance.now() - t0;
  const t1 = performance.now();
  await compute.delete(id);
  await until('raw 404', async () => (await compute.server(id)) === null);
  return { active, gone: performance.now() - t1 };
}

async function hatchery(os: OpenStackStack, cloud: TestCloud, round: number) {
  const body = {
    action: 'create',
    repository: REPO,
    run_id: 3000 + round,
    run_attempt: 1,
    labels: ['linux'],
  };
  const t0 = performance.now();
  const created = await os.stack.client.control(body);
  if (created.status !== 202) throw new Error(`create: ${created.status} ${JSON.stringify(created.json)}`);
  const name = created.json.vms[0]!.name;
  const ready = await os.stack.client.api('GET', `/api/v1/vms/${name}?wait=ready&timeout=240`);
  const online = performance.now() - t0;
  if (ready.status !== 200) throw new Error(`not ready: ${ready.status} ${JSON.stringify(ready.json)}`);
  const vm = await os.stack.vm(name);
  const ev = await os.stack.service.store.listEvents(vm.id);
  const at = (e: string) => ev.find((x) => x.event === e)?.at ?? Number.NaN;
  const t1 = performance.now();
  await os.stack.client.control({ ...body, action: 'destroy' });
  await os.stack.waitState(name, ['destroyed'], 120_000);
  await until('server gone', async () => (await cloud.serversNamed(name)).length === 0);
  return { created: at('created') - at('requested'), online, gone: performance.now() - t1 };
}

/**
 * Runs `f` on scripts/openstack.sh's cloud, started for it in a temporary directory and stopped
 * after it (or HATCHERY_TEST_OPENSTACK=DIR's, left up).
 */
export async function withCloud<T>(what: string, f: (cloud: TestCloud) => Promise<T>): Promise<T> {
  const root = mkdtempSync(path.join(tmpdir(), 'hatchery-bench-openstack-'));
  progress(`${what}: starting the cloud (scripts/openstack.sh up)`);
  const cloud = await TestCloud.start(path.join(root, 'cloud'));
  try {
    return await f(cloud);
  } finally {
    await cloud.stop();
    rmSync(root, { recursive: true, force: true });
  }
}

export function benchOpenStack(rounds: number): Promise<OpenStackResult> {
  return withCloud('openstack', (cloud) => roundsOn(cloud, rounds));
}

async function roundsOn(cloud: TestCloud, rounds: number): Promise<OpenStackResult> {
  const r: OpenStackResult = {
    rounds,
    upSeconds: cloud.upSeconds,
    rawActiveMs: [],
    rawGoneMs: [],
    createdMs: [],
    onlineMs: [],
    goneMs: [],
  };
  let os: OpenStackStack | undefined;
  try {
    const keystone = new Keystone(new OpenStackHttp(fastHttp), {
      authUrl: cloud.file.auth_url,
      credentials: cloud.memberCredentials(),
      region: cloud.file.region,
    });
    const compute = new Compute(keystone);
    const ids = {
      image: cloud.file.image_id,
      flavor: (await compute.flavorId(cloud.file.flavor))!,
      network: (await new Lookup(keystone).networkId(cloud.file.network))!,
    };
    os = await OpenStackStack.start(cloud, (more) => ({ ...more, pools: [cloudPool(cloud, 'linux')] }));
    progress('openstack: warm-up');
    await raw(cloud, compute, ids, 0);
    await hatchery(os, cloud, 0);
    for (let i = 1; i <= rounds; i++) {
      for (const which of i % 2 ? ['raw', 'hatchery'] : ['hatchery', 'raw']) {
        if (which === 'raw') {
          const x = await raw(cloud, compute, ids, i);
          r.rawActiveMs.push(x.active);
          r.rawGoneMs.push(x.gone);
        } else {
          const x = await hatchery(os, cloud, i);
          r.createdMs.push(x.created);
          r.onlineMs.push(x.online);
          r.goneMs.push(x.gone);
        }
      }
      progress(
        `openstack: round ${i}/${rounds}: raw ACTIVE ${fmtMs(r.rawActiveMs.at(-1)!)}, hatchery created ${fmtMs(r.createdMs.at(-1)!)}, online ${fmtMs(r.onlineMs.at(-1)!)}`,
      );
    }
    return r;
  } finally {
    await os?.stop();
  }
}

export function reportOpenStack(r: OpenStackResult): string {
  const m = (v: number[]) => median(v);
  return [
    `OpenStack (${r.rounds} rounds, medians; ${r.upSeconds ? `the cloud came up in ${r.upSeconds.toFixed(0)} s` : 'a cloud already up'})`,
    `  raw POST /servers → ACTIVE          ${fmtMs(m(r.rawActiveMs))}   (all: ${r.rawActiveMs.map(fmtMs).join(', ')})`,
    `  create webhook → server ACTIVE      ${fmtMs(m(r.createdMs))}   ratio ${fmtRatio(m(r.createdMs) / m(r.rawActiveMs))}`,
    `  create webhook → runner online      ${fmtMs(m(r.onlineMs))}   (adds the QEMU guest's boot, TCG)`,
    `  raw DELETE → 404                    ${fmtMs(m(r.rawGoneMs))}`,
    `  destroy → server gone               ${fmtMs(m(r.goneMs))}   ratio ${fmtRatio(m(r.goneMs) / m(r.rawGoneMs))}`,
  ].join('\n');
}
