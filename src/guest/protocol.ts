// The guest ↔ host line protocol (docs/guest-protocol.md), parsing and mapping to lifecycle events.
import type { LifecycleEvent } from '../core/lifecycle.ts';

export interface GuestMessage {
  seq: number;
  name: string;
  detail: string;
}

export const MAX_LINE = 8192;

/** Where a guest on the HTTP channel posts its messages (the service's base URL + this). */
export const GUEST_MESSAGES_PATH = '/guest/v1/messages';

/** Parses `event <seq> <name> [detail]`; anything else is null (ignored: forward compatibility). */
export function parseGuestLine(line: string): GuestMessage | null {
  const m = /^event (\d{1,9}) ([a-z][a-z-]{0,31})(?: (.*))?$/.exec(line.replace(/\r$/, ''));
  if (!m) return null;
  return { seq: Number(m[1]), name: m[2]!, detail: (m[3] ?? '').slice(0, 500) };
}

/** The lifecycle event a guest message stands for; null for informational messages. */
export function toLifecycleEvent(msg: GuestMessage): LifecycleEvent | null {
  switch (msg.name) {
    case 'booted':
      return { type: 'guest_booted' };
    case 'awaiting-jit':
      // Booted without a JIT config (a warm VM): the runner is ready to start once one comes.
      return { type: 'awaiting_jit' };
    case 'registered':
      return { type: 'runner_registered' };
    case 'job-started':
      return { type: 'job_started', job: msg.detail || undefined };
    case 'job-finished':
      return { type: 'job_finished', result: msg.detail || undefined };
    case 'runner-exited': {
      const code = Number.parseInt(msg.detail, 10);
      return { type: 'runner_exited', code: Number.isNaN(code) ? undefined : code };
    }
    case 'error':
      return { type: 'guest_error', message: msg.detail || 'unspecified error' };
    case 'poweroff':
      // The guest's last word before it powers off: on the HTTP channel nothing else tells the
      // service (a virtio link sees QEMU exit, and a second vm_exited is ignored).
      return { type: 'vm_exited' };
    default:
      return null; // e.g. `stopping`
  }
}
