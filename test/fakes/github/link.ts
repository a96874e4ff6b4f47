// The `Link` pagination header (RFC 8288) as GitHub sends it, checked on every reply of the
// stand-in that carries one: GitHub's description only says "a string", but clients (Octokit's
// paginate, `gh`) parse it with `<url>; rel="next"` patterns, so its exact shape matters.
//
//   <https://api.github.com/…?per_page=2&page=3>; rel="next", <…&page=5>; rel="last"
//
// Each link points at the same listing (same origin, same path, the request's other query
// parameters) with `page` set; `prev`/`next` are the neighbouring pages (past the end, `prev`
// may be the last page), `first` is page 1, `last` is the last page; GitHub leaves out `prev`/`first` on the first page and
// `next`/`last` on the last one, and sends no header at all when there is a single page.

const RELS = ['prev', 'next', 'last', 'first'] as const;
type Rel = (typeof RELS)[number];
const LINK = /^<([^<>]+)>; rel="([a-z]+)"$/;

/** Problems with a Link header sent in reply to `requestUrl` (absolute); empty when it is right. */
export function checkLinkHeader(value: string, requestUrl: URL): string[] {
  const where = `Link header ${JSON.stringify(value)}`;
  const problems: string[] = [];
  const pages = new Map<Rel, number>();
  const parts = value.split(', ');
  for (const part of parts) {
    const m = LINK.exec(part);
    if (!m) {
      problems.push(`${where}: ${JSON.stringify(part)} is not <url>; rel="…"`);
      continue;
    }
    const rel = m[2] as Rel;
    if (!RELS.includes(rel)) {
      problems.push(`${where}: unknown rel "${m[2]}"`);
      continue;
    }
    if (pages.has(rel)) problems.push(`${where}: rel "${rel}" appears twice`);
    let url: URL;
    try {
      url = new URL(m[1]!);
    } catch {
      problems.push(`${where}: ${JSON.stringify(m[1])} is not an absolute URL`);
      continue;
    }
    if (url.origin !== requestUrl.origin || url.pathname !== requestUrl.pathname) {
      problems.push(`${where}: rel "${rel}" leads to ${url.origin}${url.pathname}, not to this listing`);
    }
    for (const [k, v] of requestUrl.searchParams) {
      if (k !== 'page' && url.searchParams.get(k) !== v) {
        problems.push(`${where}: rel "${rel}" drops or changes the query parameter ${k}=${v}`);
      }
    }
    const page = url.searchParams.get('page');
    if (page === null || !/^[1-9]\d*$/.test(page)) {
      problems.push(`${where}: rel "${rel}" has no valid page parameter`);
      continue;
    }
    pages.set(rel, Number(page));
  }
  if (problems.length) return problems;

  const current = Number(requestUrl.searchParams.get('page') ?? '1') || 1;
  const expect = (rel: Rel, page: number) => {
    const got = pages.get(rel);
    if (got !== undefined && got !== page)
      problems.push(`${where}: rel "${rel}" is page ${got}, expected ${page}`);
  };
  // Past the last page there is no `next`, and `prev` may lead back to the last page.
  const prev = pages.get('prev');
  if (prev !== undefined && (prev >= current || (pages.has('next') && prev !== current - 1)))
    problems.push(`${where}: rel "prev" is page ${prev} on page ${current}`);
  expect('next', current + 1);
  expect('first', 1);
  const last = pages.get('last');
  if (last !== undefined && last <= current)
    problems.push(`${where}: rel "last" is page ${last}, not after ${current}`);
  if (pages.has('next') !== pages.has('last')) problems.push(`${where}: "next" and "last" come together`);
  if (pages.has('prev') !== pages.has('first')) problems.push(`${where}: "prev" and "first" come together`);
  if (current > 1 && !pages.has('prev')) problems.push(`${where}: no rel "prev" on page ${current}`);
  if (pages.size === 0) problems.push(`${where}: no links`);
  // GitHub's order: prev, next, last, first.
  const order = parts.map((p) => LINK.exec(p)?.[2]);
  const sorted = [...order].sort((a, b) => RELS.indexOf(a as Rel) - RELS.indexOf(b as Rel));
  if (order.join() !== sorted.join())
    problems.push(`${where}: links not in GitHub's order prev, next, last, first`);
  return problems;
}
