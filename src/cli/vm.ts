// `hatchery vm …` — operate on the store and the VM files directly, so they work on the service's
// machine without an API token. `rm` records a destroy request; the running service's worker
// carries it out (within its poll interval).
import type { Command } from 'commander';
import type { Config } from '../config/schema.ts';
import { applyEvent } from '../core/apply.ts';
import { isTerminal, STATES, type VmState } from '../core/lifecycle.ts';
import { isVmName } from '../core/naming.ts';
import { Notifier } from '../core/notifier.ts';
import { silentLogger } from '../log.ts';
import { Providers } from '../providers/build.ts';
import { SqliteStore } from '../store/sqlite.ts';
import type { VmRecord } from '../store/store.ts';
import { configFrom } from './common.ts';

async function withStore<T>(config: Config, f: (store: SqliteStore) => Promise<T>): Promise<T> {
  const store = new SqliteStore(config.store.path);
  try {
    return await f(store);
  } finally {
    await store.close();
  }
}

function checkName(name: string): string {
  if (!isVmName(name)) throw new Error(`not a VM name: ${JSON.stringify(name)}`);
  return name;
}

const iso = (ms: number | null) => (ms === null ? '-' : new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z'));

function table(vms: VmRecord[]): string {
  const rows = [['NAME', 'STATE', 'POOL', 'REPOSITORY', 'CREATED', 'FAILURE']];
  for (const vm of vms)
    rows.push([vm.name, vm.state, vm.pool, vm.repository, iso(vm.createdAt), vm.failure ?? '']);
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return (
    rows
      .map((r) =>
        r
          .map((c, i) => c.padEnd(widths[i]!))
          .join('  ')
          .trimEnd(),
      )
      .join('\n') + '\n'
  );
}

export function registerVmCommands(program: Command): void {
  const vm = program.command('vm').description('list, inspect and remove VMs');

  vm.command('ls')
    .description('list VMs (live ones unless --all)')
    .option('-a, --all', 'include destroyed and failed VMs')
    .option('-s, --state <states>', `comma-separated states (${STATES.join(', ')})`)
    .option('--json', 'JSON output')
    .action(async (opts: { all?: boolean; state?: string; json?: boolean }, cmd: Command) => {
      const { config } = configFrom(cmd);
      const states = opts.state?.split(',') as VmState[] | undefined;
      for (const s of states ?? []) if (!STATES.includes(s)) throw new Error(`unknown state ${s}`);
      const vms = await withStore(config, async (store) => {
        const all = await store.listVms({ states });
        return opts.all || states ? all : all.filter((v) => !isTerminal(v.state));
      });
      process.stdout.write(opts.json ? `${JSON.stringify(vms, null, 2)}\n` : table(vms));
    });

  vm.command('show')
    .description('a VM with its full event history')
    .argument('<name>')
    .option('--json', 'JSON output')
    .action(async (name: string, opts: { json?: boolean }, cmd: Command) => {
      const { config } = configFrom(cmd);
      await withStore(config, async (store) => {
        const v = await store.getVm(checkName(name));
        if (!v) throw new Error(`no VM named ${name}`);
        const events = await store.listEvents(v.id);
        const registrations = await store.listRegistrations({ vmId: v.id });
        if (opts.json) {
          process.stdout.write(
            `${JSON.stringify({ ...v, credential: v.credential ? '[set]' : null, events, registrations }, null, 2)}\n`,
          );
          return;
        }
        const lines = [
          `name:        ${v.name}`,
          `state:       ${v.state}${v.failure ? ` (failed: ${v.failure})` : ''}`,
          `pool:        ${v.pool}   labels: ${v.runnerLabels.join(', ')}`,
          `repository:  ${v.repository}   run: ${v.runId ?? '-'} attempt ${v.runAttempt ?? '-'}   via ${v.source}`,
          `created:     ${iso(v.createdAt)}   updated: ${iso(v.updatedAt)}`,
          `runners:     ${registrations.map((r) => `#${r.runnerId}${r.removedAt ? ' (removed)' : ''}`).join(', ') || '-'}`,
          '',
          'events:',
          ...events.map(
            (e) =>
              `  ${iso(e.at)}  ${e.fromState.padEnd(12)} → ${e.toState.padEnd(12)} ${e.event.padEnd(18)} ${e.note}`,
          ),
        ];
        process.stdout.write(`${lines.join('\n')}\n`);
      });
    });

  vm.command('rm')
    .description('destroy a VM (the running service carries it out)')
    .argument('<name>')
    .action(async (name: string, _opts, cmd: Command) => {
      const { config } = configFrom(cmd);
      await withStore(config, async (store) => {
        const r = await applyEvent(
          { store, pools: config.pools, clock: Date.now, log: silentLogger(), notifier: new Notifier() },
          checkName(name),
          { type: 'destroy_requested', by: 'hatchery vm rm' },
        );
        if (!r.vm) throw new Error(`no VM named ${name}`);
        process.stdout.write(
          `${name}: ${r.applied ? `destroy requested (${r.vm.state})` : `already ${r.vm.state}`}\n`,
        );
      });
    });

  vm.command('logs')
    .description("a VM's console output (the guest's boot and the bootstrap's log)")
    .argument('<name>')
    .action(async (name: string, _opts, cmd: Command) => {
      const { config } = configFrom(cmd);
      const vm = await withStore(config, (store) => store.getVm(checkName(name)));
      if (!vm) throw new Error(`no VM named ${name}`);
      const providers = Providers.build(config, silentLogger());
      try {
        const provider = providers.forPool(vm.pool);
        if (!provider.console) throw new Error(`${name}: the ${provider.kind} provider keeps no console log`);
        const text = await provider.console(name);
        if (text === null) throw new Error(`no console log for ${name} (none kept)`);
        process.stdout.write(text);
      } finally {
        await providers.close();
      }
    });
}
