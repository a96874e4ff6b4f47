// The stand-in GitHub (test/fakes/github): its validator against GitHub's OpenAPI description,
// its REST behaviour, and its stand-in runner run for real under busybox on the host.
import assert from 'node:assert/strict';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import net from 'node:net';
import { checkLinkHeader } from '../fakes/github/link.ts';
import { GitHubOpenApi, githubOpenApi } from '../fakes/github/openapi.ts';
import { restHandlers, type RestHandler } from '../fakes/github/rest.ts';
import { killAll, pidsWithArg } from '../helpers/processes.ts';
import { DEFAULT_TOKEN, FakeGitHub, FakeGitHubViolations, decodeJitConfig } from '../fakes/github/server.ts';

const BUSYBOX = '/bin/busybox';
const DASH = '/bin/dash';
const JIT = '/repos/{owner}/{repo}/actions/runners/generate-jitconfig';

interface ApiAnswer {
  status: number;
  body: unknown;
  headers: Headers;
}

async function gh(
  fake: FakeGitHub,
  method: string,
  urlPath: string,
  body?: unknown,
  opts: { auth?: string | null; headers?: Record<string, string> } = {},
): Promise<ApiAnswer> {
  const headers: Record<string, string> = {
    accept: 'application/vnd.github+json',
    'x-github-api-version': '2022-11-28',
    ...opts.headers,
  };
  const auth = opts.auth === undefined ? `token ${DEFAULT_TOKEN}` : opts.auth;
  if (auth !== null) headers.authorization = auth;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(fake.url + urlPath, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined, headers: res.headers };
}

interface JitAnswer {
  runner: { id: number; name: string; status: string; busy: boolean; labels: { name: string }[] };
  encoded_jit_config: string;
}

async function generateJit(
  fake: FakeGitHub,
  repo: string,
  name: string,
  labels: string[],
): Promise<JitAnswer> {
  const r = await gh(fake, 'POST', `/repos/${repo}/actions/runners/generate-jitconfig`, {
    name,
    runner_group_id: 1,
    labels,
    work_folder: '_work',
  });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body as JitAnswer;
}

describe('validator against GitHub OpenAPI description', () => {
  const api = githubOpenApi();
  const params = { owner: 'octo', repo: 'hello' };

  it('accepts what GitHub documents and catches drifted requests', () => {
    assert.deepEqual(
      api.validateRequest('POST', JIT, { params, body: { name: 'vm-1', runner_group_id: 1, labels: ['x'] } }),
      [],
    );
    const noLabels = api.validateRequest('POST', JIT, { params, body: { name: 'vm-1', runner_group_id: 1 } });
    assert.ok(
      noLabels.some((e) => e.includes("required property 'labels'")),
      noLabels.join('\n'),
    );
    const emptyLabels = api.validateRequest('POST', JIT, {
      params,
      body: { name: 'vm-1', runner_group_id: 1, labels: [] },
    });
    assert.ok(
      emptyLabels.some((e) => e.includes('/labels: must NOT have fewer than 1 items')),
      emptyLabels.join('\n'),
    );
    const typo = api.validateRequest('POST', JIT, {
      params,
      body: { name: 'vm-1', runner_group_id: '1', labels: ['x'], workfolder: 'w' },
    });
    assert.ok(
      typo.some((e) => e.includes('runner_group_id: must be integer')),
      typo.join('\n'),
    );
    assert.ok(
      typo.some((e) => e.includes("unknown property 'workfolder'")),
      typo.join('\n'),
    );
    assert.ok(
      api
        .validateRequest('POST', JIT, { params })
        .some((e) => e.includes('missing required JSON request body')),
    );
    const list = '/repos/{owner}/{repo}/actions/runners';
    const q = api.validateRequest('GET', list, { params, query: { per_page: 'all', perpage: '5' } });
    assert.ok(
      q.some((e) => e.includes('query parameter per_page: must be integer')),
      q.join('\n'),
    );
    assert.ok(
      q.some((e) => e.includes('unknown query parameter perpage')),
      q.join('\n'),
    );
    const del = api.validateRequest('DELETE', `${list}/{runner_id}`, {
      params: { ...params, runner_id: 'vm-1' },
    });
    assert.ok(
      del.some((e) => e.includes('path parameter runner_id: must be integer')),
      del.join('\n'),
    );
    assert.ok(api.validateRequest('GET', '/repos/{owner}/{repo}/nope', {})[0]!.includes('no such operation'));
  });

  it('catches drifted responses', () => {
    const runner = {
      id: 7,
      name: 'vm-1',
      os: 'Linux',
      status: 'offline',
      busy: false,
      ephemeral: true,
      labels: [{ id: 1, name: 'self-hosted', type: 'read-only' }],
      runner_group_id: 1,
      version: null, // a `nullable` string: checks the nullable rewrite
    };
    assert.deepEqual(api.validateResponse('POST', JIT, 201, { runner, encoded_jit_config: 'e30=' }), []);
    const drifted = api.validateResponse('POST', JIT, 201, {
      runner: { ...runner, status: 1, labels: [{ name: 'x', type: 'builtin' }] },
    });
    assert.ok(
      drifted.some((e) => e.includes("required property 'encoded_jit_config'")),
      drifted.join('\n'),
    );
    assert.ok(
      drifted.some((e) => e.includes('/runner/status: must be string')),
      drifted.join('\n'),
    );
    assert.ok(
      drifted.some((e) => e.includes('/runner/labels/0/type: must be one of')),
      drifted.join('\n'),
    );
    assert.match(api.validateResponse('POST', JIT, 200, {})[0]!, /status 200 is not documented/);
    const del = '/repos/{owner}/{repo}/actions/runners/{runner_id}';
    assert.deepEqual(api.validateResponse('DELETE', del, 204, undefined), []);
    assert.match(api.validateResponse('DELETE', del, 204, { ok: true })[0]!, /must have no body/);
    assert.match(api.validateResponse('DELETE', del, 404, { message: 'Not Found' })[0]!, /not documented/);
    assert.deepEqual(
      api.validateResponse('DELETE', del, 404, { message: 'Not Found' }, { implicitStatuses: [404] }),
      [],
    );
    const token = '/repos/{owner}/{repo}/actions/runners/registration-token';
    assert.match(
      api.validateResponse('POST', token, 201, { token: 'T', expires_at: 'soon' })[0]!,
      /date-time/,
    );
  });

  it('checks the header parameters an operation declares', () => {
    // GitHub's own description declares none for the endpoints Hatchery uses: a minimal one that does.
    const doc = {
      paths: {
        '/things': {
          get: {
            operationId: 'things/list',
            parameters: [
              {
                name: 'X-Request-Id',
                in: 'header',
                required: true,
                schema: { type: 'string', pattern: '^[a-f0-9]{8}$' },
              },
              { name: 'X-Limit', in: 'header', schema: { type: 'integer', maximum: 10 } },
            ],
            responses: { '200': { description: 'ok' } },
          },
        },
      },
    };
    const small = new GitHubOpenApi(doc);
    assert.deepEqual(
      small.validateRequest('GET', '/things', { headers: { 'x-request-id': 'deadbeef' } }),
      [],
    );
    assert.deepEqual(small.validateRequest('GET', '/things', { headers: {} }), [
      'GET /things: missing required header parameter X-Request-Id',
    ]);
    const bad = small.validateRequest('GET', '/things', {
      headers: { 'x-request-id': 'nope', 'x-limit': '11' },
    });
    assert.equal(bad.length, 2, bad.join('\n'));
    assert.match(bad[0]!, /header parameter X-Request-Id: must match pattern/);
    assert.match(bad[1]!, /header parameter X-Limit: must be <= 10/);
  });

  it('checks documented response headers: the Link header of a listing, its format and pages', () => {
    const list = '/repos/{owner}/{repo}/actions/runners';
    const url = new URL('http://127.0.0.1:9/repos/o/r/actions/runners?per_page=2&page=2');
    const link = (page: number, rel: string) =>
      `<http://127.0.0.1:9/repos/o/r/actions/runners?per_page=2&page=${page}>; rel="${rel}"`;
    const body = { total_count: 5, runners: [] };
    const check = (value: string) =>
      api.validateResponse('GET', list, 200, body, { headers: { Link: value }, requestUrl: url });
    assert.deepEqual(
      check([link(1, 'prev'), link(3, 'next'), link(3, 'last'), link(1, 'first')].join(', ')),
      [],
    );
    const cases: [string, RegExp][] = [
      [`${link(1, 'prev')},${link(3, 'next')}`, /is not <url>; rel="…"/],
      [link(3, 'nexxt'), /unknown rel "nexxt"/],
      [
        [link(1, 'prev'), link(4, 'next'), link(4, 'last'), link(1, 'first')].join(', '),
        /rel "next" is page 4, expected 3/,
      ],
      [[link(3, 'next'), link(3, 'last')].join(', '), /no rel "prev" on page 2/],
      [
        [link(1, 'prev'), link(1, 'first'), link(3, 'next'), link(3, 'last')].join(', '),
        /not in GitHub's order/,
      ],
      [
        '<http://127.0.0.1:9/repos/o/r/actions/runners?page=3>; rel="next"',
        /drops or changes the query parameter per_page=2/,
      ],
      ['</repos/o/r/actions/runners?per_page=2&page=3>; rel="next"', /not an absolute URL/],
      ['<http://127.0.0.1:9/elsewhere?per_page=2&page=3>; rel="next"', /not to this listing/],
    ];
    for (const [value, re] of cases) {
      const problems = check(value);
      assert.ok(
        problems.some((p) => re.test(p)),
        `${value}\n→ ${problems.join('\n')}`,
      );
    }
    // Past the last page: no next, and prev may lead back to the last page.
    assert.deepEqual(
      checkLinkHeader(
        `${link(3, 'prev')}, ${link(1, 'first')}`,
        new URL('http://127.0.0.1:9/repos/o/r/actions/runners?per_page=2&page=9'),
      ),
      [],
    );
    assert.match(
      api.validateResponse('GET', list, 200, body, { headers: { Link: link(3, 'next') } })[0]!,
      /cannot be checked without the request URL/,
    );
    assert.match(
      api.validateResponse('GET', list, 200, body, { headers: { 'content-type': 'text/html' } })[0]!,
      /sent as text\/html, documented as application\/json/,
    );
  });

  it('checks error replies: implicit statuses and replies to no operation are basic-errors', () => {
    const list = '/repos/{owner}/{repo}/actions/runners';
    const ok = { message: 'Validation Failed', documentation_url: 'https://docs.github.com/rest' };
    assert.deepEqual(api.validateResponse('GET', list, 422, ok, { implicitStatuses: [422] }), []);
    assert.match(
      api.validateResponse('GET', list, 422, { message: 42 }, { implicitStatuses: [422] })[0]!,
      /error reply 422 body\/message: must be string/,
    );
    const jit = '/repos/{owner}/{repo}/actions/runners/generate-jitconfig';
    // A documented 422 has its own schema (validation-error-simple: message and documentation_url).
    assert.match(
      api.validateResponse('POST', jit, 422, { message: 'Validation Failed' })[0]!,
      /required property 'documentation_url'/,
    );
    assert.deepEqual(api.validateErrorReply(404, { message: 'Not Found', documentation_url: 'x' }), []);
    assert.match(api.validateErrorReply(404, 'Not Found')[0]!, /must be a basic-error object/);
    assert.match(api.validateErrorReply(404, { status: 404 })[0]!, /\/status: must be string/);
    assert.match(api.validateErrorReply(200, {})[0]!, /not 4xx\/5xx/);
  });

  it('maps concrete paths to operations, most specific first', () => {
    assert.equal(
      api.match('GET', '/repos/o/r/actions/runners/downloads')?.operationId,
      'actions/list-runner-applications-for-repo',
    );
    assert.deepEqual(api.match('DELETE', '/repos/o/r/actions/runners/42')?.params, {
      owner: 'o',
      repo: 'r',
      runner_id: '42',
    });
    assert.equal(api.match('PATCH', '/repos/o/r/actions/runners/42'), undefined);
  });
});

describe('FakeGitHub REST API', () => {
  let fake: FakeGitHub;
  before(async () => {
    fake = await FakeGitHub.start({ tokens: [DEFAULT_TOKEN, 'ghs_installation'] });
  });
  after(() => fake.close());

  it('authenticates like GitHub', async () => {
    const list = '/repos/octo/auth/actions/runners';
    const none = await gh(fake, 'GET', list, undefined, { auth: null });
    assert.equal(none.status, 401);
    assert.equal((none.body as { message: string }).message, 'Requires authentication');
    const bad = await gh(fake, 'GET', list, undefined, { auth: 'token ghp_wrong' });
    assert.equal(bad.status, 401);
    assert.deepEqual(Object.keys(bad.body as object).sort(), ['documentation_url', 'message', 'status']);
    assert.equal((bad.body as { message: string }).message, 'Bad credentials');
    assert.equal((await gh(fake, 'GET', list, undefined, { auth: 'Bearer ghs_installation' })).status, 200);
    assert.equal((await gh(fake, 'GET', list, undefined, { auth: `token ${DEFAULT_TOKEN}` })).status, 200);
    assert.deepEqual(fake.takeViolations(), []);
    const version = await gh(fake, 'GET', list, undefined, {
      headers: { 'x-github-api-version': '2021-01-01' },
    });
    assert.equal(version.status, 400);
    assert.match(fake.takeViolations().join('\n'), /unsupported X-GitHub-Api-Version "2021-01-01"/);
  });

  it('refuses requests without a User-Agent (403) or with an Accept that admits no JSON (415)', async () => {
    const list = '/repos/octo/headers/actions/runners';
    // fetch always sends a User-Agent: a bare HTTP request does not.
    const bare = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const sock = net.connect(Number(new URL(fake.url).port), '127.0.0.1');
      let text = '';
      sock.on('data', (d: Buffer) => (text += d.toString()));
      sock.on('end', () =>
        resolve({ status: Number(text.split(' ')[1]), body: text.split('\r\n\r\n')[1] ?? '' }),
      );
      sock.on('error', reject);
      sock.end(
        `GET ${list} HTTP/1.1\r\nHost: x\r\nAuthorization: token ${DEFAULT_TOKEN}\r\nConnection: close\r\n\r\n`,
      );
    });
    assert.equal(bare.status, 403);
    assert.match(bare.body, /User-Agent/);
    const html = await gh(fake, 'GET', list, undefined, { headers: { accept: 'text/html' } });
    assert.equal(html.status, 415);
    const v = fake.takeViolations();
    assert.equal(v.length, 2, v.join('\n'));
    assert.match(v[0]!, /no User-Agent header/);
    assert.match(v[1]!, /Accept "text\/html" admits no JSON/);
    // Octokit's default and GitHub's recommended media types are fine.
    for (const accept of ['application/vnd.github.v3+json', 'application/json, */*;q=0.5']) {
      assert.equal((await gh(fake, 'GET', list, undefined, { headers: { accept } })).status, 200);
    }
    assert.deepEqual(fake.takeViolations(), []);
  });

  it('validates every reply it sends, error replies included', async () => {
    const key = 'GET /repos/{owner}/{repo}/actions/runners';
    const original = restHandlers[key]!;
    const drifted: [string, RestHandler, RegExp][] = [
      [
        'a success body',
        () => ({ status: 200, body: { total_count: '1', runners: [] } }),
        /total_count: must be integer/,
      ],
      [
        'an error body',
        () => ({ status: 404, body: { message: ['Not Found'] } }),
        /error reply 404 body\/message: must be string/,
      ],
      [
        'an undocumented status',
        () => ({ status: 409, body: { message: 'x' } }),
        /status 409 is not documented/,
      ],
      [
        'a Link header',
        () => ({
          status: 200,
          body: { total_count: 3, runners: [] },
          headers: { Link: '<page=2>; rel=next' },
        }),
        /Link header "<page=2>; rel=next"/,
      ],
    ];
    try {
      for (const [what, handler, re] of drifted) {
        restHandlers[key] = handler;
        await gh(fake, 'GET', '/repos/octo/replies/actions/runners');
        const v = fake.takeViolations();
        assert.equal(v.length, 1, `${what}: ${v.join('\n')}`);
        assert.match(
          v[0]!,
          /^stand-in GitHub sent an invalid response to GET \/repos\/octo\/replies\/actions\/runners: /,
        );
        assert.match(v[0]!, re, what);
      }
    } finally {
      restHandlers[key] = original;
    }
    // Replies to no operation, and to a body the stand-in could not read, are checked too (and valid).
    assert.equal((await gh(fake, 'GET', '/not/github')).status, 404);
    const big = await gh(
      fake,
      'POST',
      '/repos/octo/replies/actions/runners/generate-jitconfig',
      'x'.repeat(6 << 20),
    );
    assert.equal(big.status, 413);
    const v = fake.takeViolations();
    assert.equal(v.length, 2, v.join('\n'));
    assert.match(v[0]!, /not a GitHub REST API endpoint/);
    assert.match(v[1]!, /request entity too large/);
  });

  it('lets a granted token use only its repositories (404 elsewhere, as GitHub hides them)', async () => {
    const limited = await FakeGitHub.start({
      tokens: [DEFAULT_TOKEN, 'ghp_limited'],
      grants: { ghp_limited: ['octo/Mine'] },
    });
    try {
      const as = (token: string, p: string) =>
        gh(limited, 'GET', p, undefined, { auth: `token ${token}` }).then((r) => r.status);
      assert.equal(await as('ghp_limited', '/repos/octo/mine/actions/runners?per_page=1'), 200);
      assert.equal(await as('ghp_limited', '/repos/octo/theirs/actions/runners'), 404);
      assert.equal(await as('ghp_limited', '/orgs/octo/actions/runners'), 404);
      const jit = await gh(
        limited,
        'POST',
        '/repos/octo/theirs/actions/runners/generate-jitconfig',
        { name: 'vm-x', runner_group_id: 1, labels: ['x'] },
        { auth: 'token ghp_limited' },
      );
      assert.equal(jit.status, 404);
      assert.deepEqual(limited.runners(), [], 'nothing registered for a token without the grant');
      assert.equal(await as(DEFAULT_TOKEN, '/repos/octo/theirs/actions/runners'), 200, 'ungranted: any');
      assert.deepEqual(limited.takeViolations(), []);
    } finally {
      await limited.close();
    }
  });

  it('answers 422 Validation Failed to a drifted request and records it', async () => {
    const noLabels = await gh(fake, 'POST', '/repos/octo/drift/actions/runners/generate-jitconfig', {
      name: 'vm-1',
      runner_group_id: 1,
    });
    assert.equal(noLabels.status, 422);
    const body = noLabels.body as { message: string; errors: string[] };
    assert.equal(body.message, 'Validation Failed');
    assert.match(body.errors.join('\n'), /required property 'labels'/);
    const emptyLabels = await gh(fake, 'POST', '/repos/octo/drift/actions/runners/generate-jitconfig', {
      name: 'vm-1',
      runner_group_id: 1,
      labels: [],
    });
    assert.equal(emptyLabels.status, 422);
    const v = fake.takeViolations();
    assert.equal(v.length, 2, v.join('\n'));
    assert.match(v[0]!, /invalid request POST \/repos\/octo\/drift\/.*required property 'labels'/);
    assert.match(v[1]!, /fewer than 1 items/);
    assert.equal(fake.runners('octo/drift').length, 0);
  });

  it('answers 404 to endpoints it does not stand in for, and records them', async () => {
    assert.equal((await gh(fake, 'GET', '/repos/octo/x/actions/workflows')).status, 404);
    assert.equal((await gh(fake, 'GET', '/definitely/not/github')).status, 404);
    assert.equal((await gh(fake, 'PATCH', '/repos/octo/x/actions/runners/1', {})).status, 404);
    const v = fake.takeViolations();
    assert.equal(v.length, 3, v.join('\n'));
    assert.match(v[0]!, /actions\/list-repo-workflows\) is not implemented/);
    assert.match(v[1]!, /not a GitHub REST API endpoint/);
    assert.match(v[2]!, /GitHub has no PATCH operation/);
  });

  it('generates JIT configs: labels, 409 on a duplicate name, scoped per repository', async () => {
    const jit = await generateJit(fake, 'octo/jit', 'vm-1', ['hatchery', 'vm-1']);
    assert.deepEqual(
      jit.runner.labels.map((l) => l.name),
      ['self-hosted', 'Linux', 'X64', 'hatchery', 'vm-1'],
    );
    assert.equal(jit.runner.status, 'offline');
    const cfg = decodeJitConfig(jit.encoded_jit_config);
    assert.equal(cfg.RUNNER_ID, String(jit.runner.id));
    assert.equal(cfg.SERVER_URL, fake.url);
    const dup = await gh(fake, 'POST', '/repos/octo/jit/actions/runners/generate-jitconfig', {
      name: 'VM-1',
      runner_group_id: 1,
      labels: ['x'],
    });
    assert.equal(dup.status, 409);
    assert.match(
      (dup.body as { message: string }).message,
      /^Already exists - A runner with the name VM-1 already exists/,
    );
    await generateJit(fake, 'octo/other', 'vm-1', ['x']); // another repository: no collision
    const org = await gh(fake, 'POST', '/orgs/octo/actions/runners/generate-jitconfig', {
      name: 'vm-1',
      runner_group_id: 1,
      labels: ['x'],
    });
    assert.equal(org.status, 201);
    assert.deepEqual(
      fake.runners('octo/jit').map((r) => [r.name, r.ephemeral, r.status]),
      [['vm-1', true, 'offline']],
    );
    assert.deepEqual(fake.takeViolations(), []);
  });

  it('lists runners with pagination, Link headers and a name filter', async () => {
    const repo = 'octo/many';
    for (let i = 1; i <= 5; i++) await generateJit(fake, repo, `vm-${i}`, ['x']);
    const base = `/repos/${repo}/actions/runners`;
    const p1 = await gh(fake, 'GET', `${base}?per_page=2`);
    const b1 = p1.body as { total_count: number; runners: { name: string }[] };
    assert.equal(b1.total_count, 5);
    assert.deepEqual(
      b1.runners.map((r) => r.name),
      ['vm-1', 'vm-2'],
    );
    assert.equal(
      p1.headers.get('link'),
      `<${fake.url}${base}?per_page=2&page=2>; rel="next", <${fake.url}${base}?per_page=2&page=3>; rel="last"`,
    );
    const p2 = await gh(fake, 'GET', `${base}?per_page=2&page=2`);
    assert.match(
      p2.headers.get('link')!,
      /page=1>; rel="prev", .*page=3>; rel="next", .*page=3>; rel="last", .*page=1>; rel="first"$/,
    );
    const p3 = await gh(fake, 'GET', `${base}?per_page=2&page=3`);
    assert.deepEqual(
      (p3.body as { runners: { name: string }[] }).runners.map((r) => r.name),
      ['vm-5'],
    );
    assert.doesNotMatch(p3.headers.get('link')!, /rel="next"/);
    const capped = await gh(fake, 'GET', `${base}?per_page=500`);
    assert.equal((capped.body as { runners: unknown[] }).runners.length, 5);
    assert.equal(capped.headers.get('link'), null);
    const byName = await gh(fake, 'GET', `${base}?name=vm-4`);
    assert.deepEqual(byName.body && (byName.body as { total_count: number }).total_count, 1);
    assert.deepEqual(fake.takeViolations(), []);
  });

  it('gets and deletes runners; 404 when absent; issues registration and remove tokens', async () => {
    const jit = await generateJit(fake, 'octo/del', 'vm-del', ['x']);
    const url = `/repos/octo/del/actions/runners/${jit.runner.id}`;
    assert.equal((await gh(fake, 'GET', url)).status, 200);
    assert.equal(
      (await gh(fake, 'GET', `/repos/octo/elsewhere/actions/runners/${jit.runner.id}`)).status,
      404,
    );
    assert.equal((await gh(fake, 'DELETE', url)).status, 204);
    assert.equal((await gh(fake, 'GET', url)).status, 404);
    assert.equal((await gh(fake, 'DELETE', url)).status, 404);
    for (const kind of ['registration-token', 'remove-token']) {
      const t = await gh(fake, 'POST', `/repos/octo/del/actions/runners/${kind}`);
      assert.equal(t.status, 201);
      const { token, expires_at } = t.body as { token: string; expires_at: string };
      assert.match(token, /^[A-Z0-9]{20,}$/);
      assert.ok(Date.parse(expires_at) > Date.now() + 3500_000);
    }
    assert.deepEqual(fake.takeViolations(), []);
  });
});

describe('FakeGitHub fails the test that caused a violation, at cleanup', () => {
  const drift = (fake: FakeGitHub) =>
    gh(fake, 'POST', '/repos/octo/late/actions/runners/generate-jitconfig', {
      name: 'vm-1',
      runner_group_id: 1,
    });

  it('close() rejects with every violation nobody took or expected', async () => {
    const fake = await FakeGitHub.start();
    assert.equal((await gh(fake, 'GET', '/repos/octo/late/actions/runners')).status, 200);
    // A test's last assertion passes…
    assert.deepEqual(fake.violations, []);
    // …and background work (a reconciler pass) drifts after it.
    await drift(fake);
    await gh(fake, 'GET', '/repos/octo/late/actions/workflows');
    const err = await fake.close().then(
      () => assert.fail('close() resolved despite violations'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof FakeGitHubViolations, String(err));
    assert.equal(err.violations.length, 2, err.message);
    assert.match(err.message, /saw 2 API violation\(s\) nobody acknowledged/);
    assert.match(
      err.message,
      /POST \/repos\/octo\/late\/actions\/runners\/generate-jitconfig.*required property 'labels'/,
    );
    assert.match(err.message, /actions\/list-repo-workflows\) is not implemented/);
    await assert.rejects(fake.close(), FakeGitHubViolations, 'a second close() says the same');
  });

  it('accepts violations a test expected or took, and fails when an expected one never happened', async () => {
    const fake = await FakeGitHub.start();
    fake.expectViolation(/required property 'labels'/);
    await drift(fake);
    await drift(fake); // one declaration covers every violation it matches
    await gh(fake, 'GET', '/definitely/not/github');
    const taken = fake.takeViolations(); // taken violations are the test's to assert, expected or not
    assert.equal(taken.length, 3, taken.join('\n'));
    assert.match(taken[2]!, /not a GitHub REST API endpoint/);
    await fake.close();

    const quiet = await FakeGitHub.start();
    quiet.expectViolation(/never happens/);
    await assert.rejects(quiet.close(), (e: unknown) => {
      assert.ok(e instanceof FakeGitHubViolations);
      assert.deepEqual(e.violations, []);
      assert.deepEqual(e.unmet, [/never happens/]);
      assert.match(e.message, /expected a violation matching \/never happens\/, but none happened/);
      return true;
    });
  });

  it('goes offline (connection refused) and comes back on the same port with its state', async () => {
    const fake = await FakeGitHub.start();
    try {
      const jit = await generateJit(fake, 'octo/outage', 'vm-out', ['x']);
      await fake.goOffline();
      await assert.rejects(fetch(`${fake.url}/repos/octo/outage/actions/runners`), (e: Error) => {
        assert.match(String((e.cause as Error)?.message), /^connect ECONNREFUSED 127\.0\.0\.1:\d+$/);
        return true;
      });
      await fake.goOnline();
      const again = await gh(fake, 'GET', `/repos/octo/outage/actions/runners/${jit.runner.id}`);
      assert.equal(again.status, 200);
      assert.equal((again.body as { name: string }).name, 'vm-out');
    } finally {
      await fake.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// The stand-in runner, run under busybox on the host.

interface RunnerProcess {
  proc: ChildProcess;
  output(): string;
  exited: Promise<number | null>;
}

async function waitForOutput(p: RunnerProcess, re: RegExp, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!re.test(p.output())) {
    if (Date.now() > deadline) assert.fail(`no ${re} in the runner's output:\n${p.output()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

// Two machines the stand-in must run on: the tiny guest (busybox alone, so the runner cannot lean
// on the host's GNU tools), and packer/debian-runner (Debian's own tools: dash as sh, coreutils,
// curl, and no wget). The Debian toolset is the host's /usr/bin without wget and busybox: busybox
// runs its own applets (wget too) whatever PATH holds, so it must not be there at all.
const TOOLSETS = [
  { name: 'busybox (the tiny guest)', sh: [BUSYBOX, 'sh'], debian: false },
  { name: "Debian's tools without wget: dash, coreutils, curl", sh: [DASH], debian: true },
] as const;
const NOT_ON_DEBIAN_IMAGE = new Set(['wget', 'busybox', 'sh']);

function linkToolset(bin: string, debian: boolean): void {
  execFileSync(BUSYBOX, ['mkdir', '-p', bin]);
  if (!debian) {
    for (const applet of execFileSync(BUSYBOX, ['--list']).toString().split('\n').filter(Boolean)) {
      symlinkSync(BUSYBOX, path.join(bin, applet));
    }
    return;
  }
  for (const dir of ['/usr/bin', '/usr/sbin']) {
    for (const f of readdirSync(dir)) {
      if (NOT_ON_DEBIAN_IMAGE.has(f) || existsSync(path.join(bin, f))) continue;
      symlinkSync(path.join(dir, f), path.join(bin, f));
    }
  }
  symlinkSync(DASH, path.join(bin, 'sh'));
}

type Toolset = (typeof TOOLSETS)[number];

function standInRunner(toolset: Toolset): void {
  let fake: FakeGitHub;
  let work: string;
  let bin: string;
  const started: ChildProcess[] = [];

  before(async () => {
    fake = await FakeGitHub.start({ repositories: ['octo/app', 'octo/cfg'] });
    work = mkdtempSync(path.join(tmpdir(), 'fake-github-test-'));
    bin = path.join(work, 'bin');
    linkToolset(bin, toolset.debian);
  });

  after(async () => {
    for (const p of started) {
      try {
        process.kill(-p.pid!, 'SIGKILL'); // its process group: the runner and whatever it started
      } catch {
        /* already gone */
      }
    }
    // busybox `timeout` daemonizes its watcher (own session): found by the temp dir in its argv.
    killAll(pidsWithArg(work));
    await fake.close();
    rmSync(work, { recursive: true, force: true });
  });

  /** Downloads the tarball from the fake, checks its sha256, unpacks it with busybox tar. */
  async function install(name: string): Promise<string> {
    const res = await fetch(fake.url + fake.runnerTarball.urlPath);
    assert.equal(res.status, 200);
    const data = Buffer.from(await res.arrayBuffer());
    assert.equal(data.length, fake.runnerTarball.size);
    assert.equal(createHash('sha256').update(data).digest('hex'), fake.runnerTarball.sha256);
    const dir = path.join(work, name);
    execFileSync(BUSYBOX, ['mkdir', '-p', dir]);
    writeFileSync(path.join(dir, 'runner.tar.gz'), data);
    execFileSync(BUSYBOX, ['tar', '-xzf', 'runner.tar.gz'], { cwd: dir });
    return dir;
  }

  function run(dir: string, script: string, args: string[]): RunnerProcess {
    const proc = spawn(toolset.sh[0], [...toolset.sh.slice(1), script, ...args], {
      cwd: dir,
      env: { PATH: bin, HOME: dir, TMPDIR: work },
      detached: true, // own process group, as the bootstrap starts it
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    started.push(proc);
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => proc.on('close', (code) => resolve(code)));
    return { proc, output: () => out, exited };
  }

  it('the tarball is deterministic and holds run.sh, config.sh, http.sh and VERSION', async () => {
    const again = await FakeGitHub.start();
    try {
      assert.equal(again.runnerTarball.sha256, fake.runnerTarball.sha256);
    } finally {
      await again.close();
    }
    const dir = await install('listing');
    const listing = execFileSync(BUSYBOX, ['tar', '-tvzf', 'runner.tar.gz'], { cwd: dir }).toString();
    assert.match(listing, /^-rw-r--r-- root\/root\s+8 2024-01-01 00:00:00 VERSION$/m);
    assert.match(listing, /^-rwxr-xr-x root\/root\s+\d+ 2024-01-01 00:00:00 config\.sh$/m);
    assert.match(listing, /^-rw-r--r-- root\/root\s+\d+ 2024-01-01 00:00:00 http\.sh$/m);
    assert.match(listing, /^-rwxr-xr-x root\/root\s+\d+ 2024-01-01 00:00:00 run\.sh$/m);
    assert.equal(readFileSync(path.join(dir, 'VERSION'), 'utf8'), '2.999.0\n');
  });

  it('run.sh --jitconfig: goes online, takes the matching job, reports it, is removed', async () => {
    const dir = await install('jit');
    const jit = await generateJit(fake, 'octo/app', 'vm-jit', ['hatchery-vm-jit']);
    const unmatched = fake.queueJob({
      repository: 'octo/app',
      labels: ['self-hosted', 'gpu'],
      name: 'needs a gpu',
    });
    const runner = run(dir, 'run.sh', ['--jitconfig', jit.encoded_jit_config]);
    const online = await fake.waitForRunner((r) => r.name === 'vm-jit' && r.status === 'online', {
      timeoutMs: 10_000,
    });
    assert.equal(online.version, '2.999.0');
    assert.equal(online.busy, false);

    const gate = path.join(work, 'jit-gate');
    const job = fake.queueJob({
      repository: 'octo/app',
      labels: ['self-hosted', 'Hatchery-VM-JIT'], // labels match case-insensitively
      name: 'build',
      script: `echo "hello from $GITHUB_REPOSITORY"; echo oops >&2; while [ ! -e '${gate}' ]; do sleep 0.05; done; pwd`,
    });
    await fake.waitForRunner((r) => r.name === 'vm-jit' && r.busy, { timeoutMs: 10_000 });
    // A runner that is running a job cannot be deleted.
    const busy = await gh(fake, 'DELETE', `/repos/octo/app/actions/runners/${jit.runner.id}`);
    assert.equal(busy.status, 422);
    assert.match((busy.body as { message: string }).message, /still running a job/);
    writeFileSync(gate, '');

    const done = await fake.waitForJob(job.id, { timeoutMs: 10_000 });
    assert.equal(await runner.exited, 0, runner.output());
    assert.equal(done.conclusion, 'success');
    assert.equal(done.exitCode, 0);
    assert.equal(done.runnerName, 'vm-jit');
    assert.equal(done.output, `hello from octo/app\noops\n${dir}/_work\n`);
    assert.ok(done.startedAt && done.completedAt && done.completedAt >= done.startedAt);

    const out = runner.output();
    const lines = [
      /^√ Connected to GitHub$/m,
      /^Current runner version: '2\.999\.0'$/m,
      /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ: Listening for Jobs$/m,
      /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ: Running job: build$/m,
      /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ: Job build completed with result: Succeeded$/m,
    ];
    for (const l of lines) assert.match(out, l);
    assert.ok(!out.includes(jit.encoded_jit_config), 'the runner never prints its JIT config');

    // Ephemeral: GitHub removes it after its job; the job nobody can take stays queued.
    assert.deepEqual(fake.runners('octo/app'), []);
    assert.equal(fake.jobs().find((j) => j.id === unmatched.id)?.status, 'queued');
    assert.equal(fake.jobs().find((j) => j.id === unmatched.id)?.runnerName, null);
    assert.deepEqual(fake.takeViolations(), []);
  });

  it('run.sh stops on SIGINT: disconnects (the ephemeral runner is removed) and exits 130', async () => {
    const dir = await install('sigint');
    const jit = await generateJit(fake, 'octo/app', 'vm-int', ['vm-int']);
    const runner = run(dir, 'run.sh', ['--jitconfig', jit.encoded_jit_config]);
    await fake.waitForRunner((r) => r.name === 'vm-int' && r.status === 'online', { timeoutMs: 10_000 });
    await new Promise((r) => setTimeout(r, 200)); // let it settle into its long poll
    process.kill(-runner.proc.pid!, 'SIGINT');
    assert.equal(await runner.exited, 130, runner.output());
    assert.match(runner.output(), /^Exiting\.\.\.$/m);
    assert.equal(fake.runners('octo/app').filter((r) => r.name === 'vm-int').length, 0);
    // Its JIT config is spent: a second start finds no registration.
    const again = run(dir, 'run.sh', ['--jitconfig', jit.encoded_jit_config]);
    assert.equal(await again.exited, 1);
    assert.match(again.output(), /registration has been deleted/);
    assert.deepEqual(fake.takeViolations(), []);
  });

  it('SIGINT during a job: the job is stopped and fails, the runner is removed', async () => {
    const dir = await install('midjob');
    const jit = await generateJit(fake, 'octo/app', 'vm-mid', ['vm-mid']);
    const runner = run(dir, 'run.sh', ['--jitconfig', jit.encoded_jit_config]);
    const marker = path.join(work, 'never-created');
    const job = fake.queueJob({
      repository: 'octo/app',
      labels: ['vm-mid'],
      name: 'forever',
      script: `echo started; while [ ! -e '${marker}' ]; do sleep 0.05; done`,
    });
    await fake.waitForRunner((r) => r.name === 'vm-mid' && r.busy, { timeoutMs: 10_000 });
    await new Promise((r) => setTimeout(r, 200));
    process.kill(-runner.proc.pid!, 'SIGINT');
    assert.equal(await runner.exited, 130, runner.output());
    const done = await fake.waitForJob(job.id, { timeoutMs: 5_000 });
    assert.equal(done.conclusion, 'failure');
    assert.match(done.output, /the runner disconnected during its job/);
    assert.equal(fake.runners('octo/app').filter((r) => r.name === 'vm-mid').length, 0);
    // The job ran in its own session and was stopped with the runner.
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(pidsWithArg(marker), []);
    assert.deepEqual(fake.takeViolations(), []);
  });

  it('a runner that vanishes (SIGKILL) is lost after runnerLostAfterMs and, being ephemeral, removed', async () => {
    const lossy = await FakeGitHub.start({ runnerLostAfterMs: 500 });
    try {
      const dir = await install('lost');
      const jit = await generateJit(lossy, 'octo/app', 'vm-lost', ['x']);
      const runner = run(dir, 'run.sh', ['--jitconfig', jit.encoded_jit_config]);
      await lossy.waitForRunner((r) => r.status === 'online', { timeoutMs: 10_000 });
      process.kill(-runner.proc.pid!, 'SIGKILL');
      await runner.exited;
      assert.equal(lossy.runners().length, 1);
      await lossy.waitUntil(() => lossy.runners().length === 0, { timeoutMs: 5_000 });
      assert.deepEqual(lossy.violations, []);
    } finally {
      await lossy.close();
    }
  });

  it('config.sh + run.sh: a persistent runner takes several jobs, then config.sh remove', async () => {
    const dir = await install('cfg');
    const reg = await gh(fake, 'POST', '/repos/octo/cfg/actions/runners/registration-token');
    const { token } = reg.body as { token: string };
    const cfg = run(dir, 'config.sh', [
      '--url',
      `${fake.url}/octo/cfg`,
      '--token',
      token,
      '--name',
      'persistent',
      '--labels',
      'big,fast',
      '--unattended',
    ]);
    assert.equal(await cfg.exited, 0, cfg.output());
    assert.match(cfg.output(), /√ Settings Saved\./);
    assert.ok(existsSync(path.join(dir, '.runner')));
    const dup = run(dir, 'config.sh', ['--url', `${fake.url}/octo/cfg`, '--token', token]);
    assert.equal(await dup.exited, 1, 'already configured');

    const runner = run(dir, 'run.sh', []);
    await fake.waitForRunner((r) => r.name === 'persistent' && r.status === 'online', { timeoutMs: 10_000 });
    const failing = fake.queueJob({
      repository: 'octo/cfg',
      labels: ['big'],
      name: 'lint',
      script: 'echo bad; exit 3',
    });
    assert.equal((await fake.waitForJob(failing.id, { timeoutMs: 10_000 })).conclusion, 'failure');
    const ok = fake.queueJob({ repository: 'octo/cfg', labels: ['fast', 'linux'], name: 'test' });
    const okDone = await fake.waitForJob(ok.id, { timeoutMs: 10_000 });
    assert.equal(okDone.conclusion, 'success');
    assert.equal(okDone.output, 'Hello from the stand-in runner\n');
    assert.equal(fake.job(failing.id)?.exitCode, 3);
    assert.equal(fake.job(failing.id)?.output, 'bad\n');
    const [still] = fake.runners('octo/cfg');
    assert.equal(still?.ephemeral, false);
    assert.match(runner.output(), /Job lint completed with result: Failed/);
    await waitForOutput(runner, /Job test completed with result: Succeeded/);
    assert.equal(fake.runners('octo/cfg')[0]?.busy, false);

    process.kill(-runner.proc.pid!, 'SIGTERM');
    assert.equal(await runner.exited, 143, runner.output());
    // Its long-poll ends with it; the stand-in may take that in after the process is gone.
    await fake.waitForRunner((r) => r.name === 'persistent' && r.status === 'offline', { timeoutMs: 10_000 });

    const rm = await gh(fake, 'POST', '/repos/octo/cfg/actions/runners/remove-token');
    const remove = run(dir, 'config.sh', ['remove', '--token', (rm.body as { token: string }).token]);
    assert.equal(await remove.exited, 0, remove.output());
    assert.deepEqual(fake.runners('octo/cfg'), []);
    assert.ok(!existsSync(path.join(dir, '.runner')));
    assert.deepEqual(fake.takeViolations(), []);
  });

  it('answers 404 for repositories that do not exist when a list is configured', async () => {
    const r = await gh(fake, 'GET', '/repos/octo/unknown/actions/runners');
    assert.equal(r.status, 404);
    assert.deepEqual(fake.takeViolations(), []);
  });
}

for (const toolset of TOOLSETS) {
  describe(`stand-in runner: ${toolset.name}`, () => standInRunner(toolset));
}
