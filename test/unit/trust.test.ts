// A pool's trust rules (core/trust.ts), one test per rule.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { needsOrigin, originRefusal, repositoryRefusal, trustSchema } from '../../src/core/trust.ts';

const rules = (r: Record<string, unknown>) => trustSchema.parse(r);

describe('trust rules', () => {
  it('no rules: every repository, event and origin', () => {
    assert.equal(repositoryRefusal('p', undefined, 'any/repo'), null);
    assert.equal(needsOrigin(undefined), false);
    assert.equal(
      originRefusal('p', undefined, 'a/b', { event: 'pull_request', headRepository: 'fork/b' }),
      null,
    );
  });
  it('repositories: exact names and globs within a part, case-insensitively', () => {
    const r = rules({ repositories: ['octo-org/*', 'Friends/App', 'x/lib-*'] });
    for (const ok of ['octo-org/app', 'OCTO-ORG/x', 'friends/app', 'x/lib-core'])
      assert.equal(repositoryRefusal('p', r, ok), null, ok);
    for (const no of ['octo-orgs/app', 'friends/app2', 'x/core', 'octo/org/app'])
      assert.match(
        repositoryRefusal('p', r, no) ?? '',
        /^pool p serves only octo-org\/\*, Friends\/App, x\/lib-\*: not /,
        no,
      );
    assert.equal(needsOrigin(r), false, 'the repository rule needs no call to GitHub');
  });
  it('events: only runs triggered by those', () => {
    const r = rules({ events: ['push'] });
    assert.equal(needsOrigin(r), true);
    assert.equal(originRefusal('p', r, 'a/b', { event: 'push', headRepository: 'a/b' }), null);
    assert.match(
      originRefusal('p', r, 'a/b', { event: 'pull_request', headRepository: 'a/b' }) ?? '',
      /triggered by pull_request$/,
    );
  });
  it('forks = false: the head repository must be the repository (a missing one is refused)', () => {
    const r = rules({ forks: false });
    assert.equal(needsOrigin(r), true);
    assert.equal(originRefusal('p', r, 'a/b', { event: 'pull_request', headRepository: 'A/B' }), null);
    assert.match(
      originRefusal('p', r, 'a/b', { event: 'pull_request', headRepository: 'f/b' }) ?? '',
      /from f\/b$/,
    );
    assert.match(
      originRefusal('p', r, 'a/b', { event: 'push', headRepository: null }) ?? '',
      /unknown repository$/,
    );
  });
  it('refuses malformed rules with clear messages', () => {
    const why = (r: Record<string, unknown>) =>
      trustSchema
        .safeParse(r)
        .error?.issues.map((i) => i.message)
        .join('; ');
    assert.equal(
      why({ repositories: ['octo-org'] }),
      'owner/repo, "*" matching within a part (e.g. "octo-org/*")',
    );
    assert.equal(
      why({ events: ['Push!'] }),
      'a GitHub event name, e.g. push, pull_request, workflow_dispatch',
    );
    assert.equal(why({ allow: [] }), 'Unrecognized key: "allow"');
  });
});
