/**
 * pcap-fixtures: each folder is a scenario with `state.yaml`, `in/<vif>.pcap`
 * (fed into that vif), and `expected/` (the egress pcaps and summary.json
 * that `vrouter replay` must reproduce byte for byte).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
export const FIXTURES_DIR = path.join(REPO_ROOT, 'pcap-fixtures');
const VROUTER_BIN = path.join(REPO_ROOT, 'bin', 'vrouter.js');

export function listFixtures(): string[] {
  return fs
    .readdirSync(FIXTURES_DIR, { withFileTypes: true })
    .filter((entry) => entry.isDirectory() && fs.existsSync(path.join(FIXTURES_DIR, entry.name, 'state.yaml')))
    .map((entry) => entry.name)
    .sort();
}

/** Runs the real CLI on a fixture's inputs, writing into outDir. */
export function replayFixture(name: string, outDir: string): void {
  const dir = path.join(FIXTURES_DIR, name);
  const inputs = fs
    .readdirSync(path.join(dir, 'in'))
    .filter((file) => /\.(pcap|pcapng)$/.test(file))
    .sort()
    .flatMap((file) => ['--in', `${file.replace(/\.(pcap|pcapng)$/, '')}=${path.join(dir, 'in', file)}`]);
  const result = spawnSync(process.execPath, [VROUTER_BIN, 'replay', '--state', path.join(dir, 'state.yaml'), ...inputs, '--out', outDir], {
    encoding: 'utf8',
  });
  if (result.status !== 0) throw new Error(`vrouter replay of ${name} failed (${result.status}): ${result.stderr}`);
}
