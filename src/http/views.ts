// The JSON shapes the HTTP API returns (snake_case, like GitHub's API).
import type { VmEventRecord, VmRecord } from '../store/store.ts';

/** Where pending VMs stand in the admission queue (core/admission.ts): name → position, 1 = next. */
export interface QueueView {
  positions(): Promise<Map<string, number>>;
}

/** `position`: the VM's place in the queue, when it is pending and the caller looked it up. */
export function vmView(vm: VmRecord, baseUrl: string, position?: number) {
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
    ...(position !== undefined ? { queue_position: position } : {}),
  };
}

export function eventView(e: VmEventRecord) {
  return { at: new Date(e.at).toISOString(), event: e.event, from: e.fromState, to: e.toState, note: e.note };
}

/** The queue positions of those of `vms` that are pending (none asked when none is). */
export async function positionsOf(
  queue: QueueView | undefined,
  vms: readonly Pick<VmRecord, 'state'>[],
): Promise<Map<string, number>> {
  return queue && vms.some((vm) => vm.state === 'pending') ? queue.positions() : new Map();
}
