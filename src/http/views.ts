// The JSON shapes the HTTP API returns (snake_case, like GitHub's API).
import type { VmEventRecord, VmRecord } from '../store/store.ts';

export function vmView(vm: VmRecord, baseUrl: string) {
  return {
    name: vm.name,
    pool: vm.pool,
    label: vm.label,
    /** Use these in `runs-on`; the VM's name is its unique label. */
    runner_labels: vm.runnerLabels,
    repository: vm.repository,
    run_id: vm.runId,
    run_attempt: vm.runAttempt,
    source: vm.source,
    state: vm.state,
    failure: vm.failure,
    destroy_requested: vm.destroyRequested,
    created_at: new Date(vm.createdAt).toISOString(),
    updated_at: new Date(vm.updatedAt).toISOString(),
    status_url: `${baseUrl}/api/v1/vms/${vm.name}`,
  };
}

export function eventView(e: VmEventRecord) {
  return { at: new Date(e.at).toISOString(), event: e.event, from: e.fromState, to: e.toState, note: e.note };
}
