/**
 * Every pcap fixture replays byte for byte through `vrouter replay`, and the
 * independent decoder (scapy, pcap-fixtures/checks.py) agrees with every
 * expected output.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FIXTURES_DIR, listFixtures, replayFixture } from './support/fixtures';

const fixtures = listFixtures();

test('there are at least ten fixtures', () => {
  assert.ok(fixtures.length >= 10, `${fixtures.length} fixtures`);
});

for (const name of fixtures) {
  test(`fixture ${name} replays byte for byte`, () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), `vrouter-fixture-${name}-`));
    try {
      replayFixture(name, out);
      const expectedDir = path.join(FIXTURES_DIR, name, 'expected');
      const expected = fs.readdirSync(expectedDir).sort();
      assert.deepEqual(fs.readdirSync(out).sort(), expected, 'the same output files');
      for (const file of expected) {
        const actual = fs.readFileSync(path.join(out, file));
        const wanted = fs.readFileSync(path.join(expectedDir, file));
        assert.ok(actual.equals(wanted), `${name}/${file} differs from expected`);
      }
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  });
}

test('the independent decoder (scapy) agrees with every expected output', () => {
  const result = spawnSync('/usr/bin/python3', [path.join(FIXTURES_DIR, 'checks.py')], { encoding: 'utf8' });
  assert.equal(result.status, 0, `checks.py failed:\n${result.stdout}\n${result.stderr}`);
});
