// The fetch Octokit is given (src/github/http-fetch.ts), against real loopback servers: what it
// sends, what it answers, redirects as fetch follows them, aborts and network failures.
import assert from 'node:assert/strict';
import http, { type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { httpFetch } from '../../src/github/http-fetch.ts';

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

async function server(
  answer: (seen: Seen, res: http.ServerResponse) => void,
): Promise<{ url: string; seen: Seen[]; close(): void }> {
  const seen: Seen[] = [];
  const srv = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      const s = { method: req.method!, url: req.url!, headers: req.headers, body };
      seen.push(s);
      answer(s, res);
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`,
    seen,
    close: () => srv.close(),
  };
}

describe('httpFetch (node:http for Octokit)', () => {
  let other: Awaited<ReturnType<typeof server>>;
  let main: Awaited<ReturnType<typeof server>>;
  before(async () => {
    other = await server((_s, res) => res.writeHead(200, { 'content-type': 'text/plain' }).end('elsewhere'));
    main = await server((s, res) => {
      if (s.url === '/moved') res.writeHead(301, { location: '/repos/new' }).end();
      else if (s.url === '/see-other') res.writeHead(303, { location: '/done' }).end();
      else if (s.url === '/away') res.writeHead(302, { location: `${other.url}/x` }).end();
      else if (s.url === '/empty') res.writeHead(204).end();
      else if (s.url === '/hang')
        return; // never answers
      else
        res
          .writeHead(201, { 'content-type': 'application/json', 'x-many': ['a', 'b'] })
          .end(JSON.stringify({ got: s.body, method: s.method }));
    });
  });
  after(() => {
    main.close();
    other.close();
  });

  it('sends method, headers and body, and answers status, headers and body', async () => {
    const res = await httpFetch(`${main.url}/echo`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'token t' },
      body: '{"a":1}',
    });
    assert.equal(res.status, 201);
    assert.equal(res.url, `${main.url}/echo`);
    assert.equal(main.seen.at(-1)!.headers.authorization, 'token t');
    assert.equal(res.headers.get('x-many'), 'a, b');
    assert.equal(res.headers.get('Content-Type'), 'application/json', 'names are case-insensitive');
    // Iterated as a WHATWG Headers is (Octokit copies them so): lower-case names, sorted.
    const names = [...res.headers].map(([k]) => k);
    assert.deepEqual(names, [...names].sort());
    assert.ok(names.includes('x-many') && names.includes('content-type'));
    assert.deepEqual(await res.json(), { got: '{"a":1}', method: 'POST' });
    assert.equal(res.bodyUsed, true);
    await assert.rejects(res.text(), TypeError, 'a body is read once');
    const bytes = await httpFetch(`${main.url}/echo`);
    assert.ok(bytes.body, 'a 201 has a body stream');
    const again = await httpFetch(`${main.url}/echo`);
    assert.deepEqual(JSON.parse(Buffer.from(await again.arrayBuffer()).toString()), {
      got: '',
      method: 'GET',
    });
    const empty = await httpFetch(`${main.url}/empty`);
    assert.equal(empty.status, 204);
    assert.equal(empty.body, null);
  });

  it('follows redirects as fetch does, keeping credentials to the same origin only', async () => {
    const moved = await httpFetch(`${main.url}/moved`, { headers: { authorization: 'token t' } });
    assert.equal(moved.status, 201);
    assert.equal(moved.url, `${main.url}/repos/new`);
    assert.equal(main.seen.at(-1)!.headers.authorization, 'token t');

    const after303 = await httpFetch(`${main.url}/see-other`, { method: 'POST', body: 'x' });
    assert.deepEqual(await after303.json(), { got: '', method: 'GET' });

    const away = await httpFetch(`${main.url}/away`, { headers: { authorization: 'token t' } });
    assert.equal(await away.text(), 'elsewhere');
    assert.equal(other.seen.at(-1)!.headers.authorization, undefined, 'no credentials to another origin');

    const manual = await httpFetch(`${main.url}/moved`, { redirect: 'manual' });
    assert.equal(manual.status, 301);
  });

  it('rejects with the signal’s reason on abort, and a TypeError with the cause on network failure', async () => {
    await assert.rejects(httpFetch(`${main.url}/hang`, { signal: AbortSignal.timeout(200) }), {
      name: 'TimeoutError',
    });
    const refused = await server(() => undefined);
    refused.close();
    await new Promise((r) => setTimeout(r, 50));
    await assert.rejects(httpFetch(`${refused.url}/x`), (e: Error) => {
      assert.ok(e instanceof TypeError);
      assert.match((e.cause as Error).message, /ECONNREFUSED/);
      return true;
    });
  });
});
