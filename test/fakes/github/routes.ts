// Which path template (`/repos/{owner}/{repo}/actions/runners/{runner_id}`) a concrete request
// path is: the most specific template (most literal segments) first. GitHub's description
// (./openapi.ts) and the stand-in's own routes (./contract.ts, when the description is not
// installed) match by these same rules.

export interface RouteMatch {
  template: string;
  /** Path parameters, percent-decoded. */
  params: Record<string, string>;
}

interface Route {
  template: string;
  segments: (string | { param: string })[];
  literals: number;
}

export class RouteTable {
  private readonly templates = new Set<string>();
  private readonly bySegments = new Map<number, Route[]>();

  add(template: string): void {
    if (this.templates.has(template)) return;
    this.templates.add(template);
    const segments = template
      .split('/')
      .slice(1)
      .map((s) => (/^\{[^}]+\}$/.test(s) ? { param: s.slice(1, -1) } : s));
    const route: Route = {
      template,
      segments,
      literals: segments.filter((s) => typeof s === 'string').length,
    };
    const list = this.bySegments.get(segments.length) ?? [];
    // After every route at least as specific: among equals, the first added wins.
    const at = list.findIndex((r) => r.literals < route.literals);
    list.splice(at === -1 ? list.length : at, 0, route);
    this.bySegments.set(segments.length, list);
  }

  /** The first template matching `path` for which `accepts(template)` holds (e.g. has the method). */
  match(path: string, accepts: (template: string) => boolean): RouteMatch | undefined {
    const parts = path.split('?')[0]!.split('/').slice(1);
    for (const route of this.bySegments.get(parts.length) ?? []) {
      const params: Record<string, string> = {};
      let ok = true;
      for (let i = 0; ok && i < parts.length; i++) {
        const seg = route.segments[i]!;
        let part: string;
        try {
          part = decodeURIComponent(parts[i]!);
        } catch {
          part = parts[i]!;
        }
        if (typeof seg === 'string') ok = seg === parts[i];
        else if (part === '') ok = false;
        else params[seg.param] = part;
      }
      if (ok && accepts(route.template)) return { template: route.template, params };
    }
    return undefined;
  }
}
