// One real OpenStack for a whole test run: scripts/test.sh starts it once (`up DIR`) and hands it
// to the test files through HATCHERY_TEST_OPENSTACK, instead of each OpenStack file starting its
// own (a cloud start-up is 35–90 s on this machine). `down DIR` stops it and fails when anything
// is left: a server in Nova, a process, a listening port — the check each file makes of a cloud
// of its own.
//   node --import tsx test/helpers/openstack-cli.ts up|down DIR
import { existsSync } from 'node:fs';
import path from 'node:path';
import { TestCloud } from './openstack.ts';

async function main(command: string | undefined, dir: string | undefined): Promise<number> {
  if (!dir || (command !== 'up' && command !== 'down')) {
    console.error('usage: openstack-cli.ts up|down DIR');
    return 2;
  }
  if (command === 'up') {
    // A cloud of its own, whatever the environment says.
    delete process.env.HATCHERY_TEST_OPENSTACK;
    const cloud = await TestCloud.start(dir);
    console.log(`openstack: up in ${cloud.upSeconds.toFixed(1)} s (${dir})`);
    return 0;
  }
  // A failed `up` has stopped what it started (TestCloud.start).
  if (!existsSync(path.join(dir, 'cloud.json'))) {
    console.log(`openstack: no cloud in ${dir}`);
    return 0;
  }
  const cloud = TestCloud.open(dir, { shared: false });
  const servers = await cloud
    .allServers()
    .then((all) => all.map((s) => `server ${s.name} ${s.status}`))
    .catch((e: Error) => [`cannot list servers: ${e.message}`]);
  const left = [...servers, ...(await cloud.stop())];
  for (const l of left) console.error(`openstack: left after the tests: ${l}`);
  console.log(`openstack: down (${left.length} left)`);
  return left.length === 0 ? 0 : 1;
}

process.exitCode = await main(process.argv[2], process.argv[3]);
