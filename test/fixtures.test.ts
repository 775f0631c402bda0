/**
 * pcap-fixtures/ is a `vrouter test` suite: every fixture replays equal to
 * its expected outputs (no masks: every byte, timestamp and file header of
 * the pcaps, every value of summary.json and flows.json), and the
 * independent decoder (scapy, pcap-fixtures/checks.py) agrees with every
 * expected output.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ScenarioResult } from '../src/replay/scenario';
import { FIXTURES_DIR, vrouter } from './support/fixtures';

const fixtures = fs.readdirSync(FIXTURES_DIR, { withFileTypes: true }).filter((entry) => entry.isDirectory() && fs.existsSync(path.join(FIXTURES_DIR, entry.name, 'state.yaml')));

test('vrouter test pcap-fixtures: every fixture equal to its expected outputs', async (t) => {
  assert.ok(fixtures.length >= 22, `${fixtures.length} fixtures`);
  const run = vrouter(['test', 'pcap-fixtures', '--json', '-']);
  assert.ok(run.status === 0 || run.status === 1, `vrouter test exited ${run.status}: ${run.stderr}`);
  const report: { passed: number; failed: number; scenarios: ScenarioResult[] } = JSON.parse(run.stdout);
  assert.equal(report.scenarios.length, fixtures.length, 'one result per fixture');
  for (const result of report.scenarios) {
    await t.test(result.name, () => {
      assert.equal(result.status, 'passed', result.failures.join('\n'));
      assert.ok(result.checks >= 1);
    });
  }
  assert.equal(run.status, 0);
});

test('the independent decoder (scapy) agrees with every expected output', () => {
  const result = spawnSync('/usr/bin/python3', [path.join(FIXTURES_DIR, 'checks.py')], { encoding: 'utf8' });
  assert.equal(result.status, 0, `checks.py failed:\n${result.stdout}\n${result.stderr}`);
});
