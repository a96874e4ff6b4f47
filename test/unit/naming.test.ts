import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  isVmName,
  parseLabel,
  parseLegacyId,
  parsePositiveInt,
  parseRepository,
  vmName,
} from '../../src/core/naming.ts';

const HOSTILE = [
  '../etc',
  'a/../../b',
  'x;rm -rf /',
  '$(id)',
  '`id`',
  'a b',
  'a|b',
  'a&b',
  "a'b",
  'a"b',
  'a\nb',
  '',
  '..',
];

describe('identifier validation', () => {
  it('accepts GitHub repository names', () => {
    assert.deepEqual(parseRepository('SpinW/spinw'), { owner: 'SpinW', repo: 'spinw', full: 'SpinW/spinw' });
    assert.equal(parseRepository('a-b/c.d_e-f').full, 'a-b/c.d_e-f');
  });
  it('refuses traversal and shell metacharacters in repositories', () => {
    for (const bad of [...HOSTILE, 'o/..', 'o/.', 'o/r/x', '-o/r', 'o', 42, null]) {
      assert.throws(
        () => parseRepository(bad),
        /repository: must be "owner\/repo"|must be a string/,
        String(bad),
      );
    }
  });
  it('refuses hostile labels and legacy IDs', () => {
    for (const bad of HOSTILE) {
      assert.throws(() => parseLabel(bad), /label/);
      assert.throws(() => parseLegacyId(bad), /ID/);
    }
    assert.equal(parseLegacyId('123456789_42'), '123456789_42');
  });
  it('accepts run ids as numbers or digit strings, nothing else', () => {
    assert.equal(parsePositiveInt('12345678901', 'run_id'), 12345678901);
    assert.equal(parsePositiveInt(7, 'run_id'), 7);
    for (const bad of ['0', '-1', '1.5', '1e3', '12a', '', ' 1', 0, 1.5, null, '../1']) {
      assert.throws(() => parsePositiveInt(bad, 'run_id'), /run_id/);
    }
  });
});

describe('vmName', () => {
  it('is derived from the identity: the same request gives the same name', () => {
    const a = vmName({ repository: 'o/r', label: 'linux', key: '123-1' });
    assert.equal(a, vmName({ repository: 'o/r', label: 'linux', key: '123-1' }));
    assert.notEqual(a, vmName({ repository: 'o/r2', label: 'linux', key: '123-1' }));
    assert.notEqual(a, vmName({ repository: 'o/r', label: 'linux', key: '123-2' }));
    assert.match(a, /^hatchery-linux-123-1-[0-9a-f]{6}$/);
  });
  it('is a valid host, file and runner name even from long or odd input', () => {
    const n = vmName({
      repository: 'o/r',
      label: 'Very.Long_Label-Name-For-A-Pool',
      key: '123456789012345678901234567890_99',
      generation: 12,
    });
    assert.ok(isVmName(n), n);
    assert.ok(n.length <= 63);
    assert.match(n, /-g12$/);
  });
  it('isVmName refuses anything outside the allow-list', () => {
    for (const bad of [
      'hatchery-../x',
      'hatchery-a/b',
      'other-vm',
      'Hatchery-A',
      `hatchery-${'a'.repeat(60)}`,
    ]) {
      assert.equal(isVmName(bad), false, bad);
    }
  });
});
