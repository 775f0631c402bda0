/**
 * npm run fixtures:update: regenerates every fixture's expected/ outputs with
 * the current dataplane. Review the diff and run the independent decoder
 * (pcap-fixtures/checks.py) before committing them.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FIXTURES_DIR, listFixtures, replayFixture } from './fixtures';

const only = process.argv.slice(2);
for (const name of listFixtures()) {
  if (only.length > 0 && !only.includes(name)) continue;
  const expected = path.join(FIXTURES_DIR, name, 'expected');
  fs.rmSync(expected, { recursive: true, force: true });
  replayFixture(name, expected);
  console.log(`${name}: ${fs.readdirSync(expected).sort().join(' ')}`);
}
