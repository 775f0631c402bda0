/**
 * pcap-fixtures: a suite of `vrouter test` scenarios in the plain layout
 * (`state.yaml`, `in/<vif>.pcap` fed into that vif, `expected/` with the
 * egress pcaps, summary.json and flows.json replay must reproduce), some
 * with a scenario.yaml.
 */
import { spawnSync, SpawnSyncReturns } from 'node:child_process';
import * as path from 'node:path';

export const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
export const FIXTURES_DIR = path.join(REPO_ROOT, 'pcap-fixtures');
export const VROUTER_BIN = path.join(REPO_ROOT, 'bin', 'vrouter.js');

/** Runs the real CLI, `vrouter <args>`, from the repository root. */
export function vrouter(args: string[], options: { cwd?: string } = {}): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [VROUTER_BIN, ...args], { encoding: 'utf8', cwd: options.cwd ?? REPO_ROOT, maxBuffer: 64 * 1024 * 1024 });
}
