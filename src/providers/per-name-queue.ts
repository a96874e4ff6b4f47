// One operation at a time per VM name, in the order asked, different names in parallel: a
// create racing a destroy of the same VM would orphan it (a server, a Vagrant project). Queues
// of names with nothing pending are dropped.
export class PerNameQueue {
  private readonly tails = new Map<string, Promise<unknown>>();

  /** Runs `fn` after every earlier operation for `name` has settled; its result or error. */
  run<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const run = (this.tails.get(name) ?? Promise.resolve()).then(fn);
    const tail = run.catch(() => undefined);
    this.tails.set(name, tail);
    void tail.then(() => {
      if (this.tails.get(name) === tail) this.tails.delete(name);
    });
    return run;
  }
}
