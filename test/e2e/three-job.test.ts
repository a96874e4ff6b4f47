// The three-job workflow end to end on real VMs: create → runners online → jobs → destroy, with
// the GitHub stand-in dispatching each job to its VM's unique label (flows/three-job.ts). Run once
// per guest channel: QEMU's own virtio-serial port, and the HTTP channel every network provider
// uses. The same workflow on Vagrant pools: vagrant.test.ts.
import { after, before, describe, it } from 'node:test';
import { Stack } from '../helpers/stack.ts';
import { threeJobWorkflow } from './flows/three-job.ts';

for (const channel of ['virtio', 'http'] as const) {
  describe(`three-job workflow (control route, two labels, real VMs, ${channel} channel)`, () => {
    let stack: Stack;
    before(async () => {
      const http = channel === 'http' ? { channel } : {};
      stack = await Stack.start({
        pools: [
          { name: 'linux', labels: ['linux'], ...http },
          { name: 'debian', labels: ['debian'], ...http },
        ],
      });
    });
    after(async () => {
      await stack?.stop();
    });

    it('boots a VM per label, runs a job on each, destroys both and leaves nothing', (t) =>
      threeJobWorkflow(stack, t, { runId: 9001, labels: ['linux', 'debian'] }));
  });
}
