/**
 * npm run fixtures:update [fixture ...]: regenerates the expected/ outputs of
 * every fixture (or of those named) with the current dataplane, through
 * `vrouter test --update`. Review the diff and run the independent decoder
 * (pcap-fixtures/checks.py) before committing them.
 */
import * as path from 'node:path';
import { FIXTURES_DIR, vrouter } from './fixtures';

const only = process.argv.slice(2);
const result = vrouter(['test', '--update', ...(only.length > 0 ? only.map((name) => path.join(FIXTURES_DIR, name)) : [FIXTURES_DIR])]);
process.stdout.write(result.stdout);
process.stderr.write(result.stderr);
process.exitCode = result.status ?? 1;
