/**
 * A scenario directory: a node's state file, the captures fed into its vifs,
 * what must come out, and an optional `scenario.yaml` saying more:
 *
 *   state: state.yaml                      # default
 *   inputs:                                # default: every in/<vif>.pcap or .pcapng, into the vif of its name
 *     - { file: in/client.pcap, vif: pod-a }
 *     - { file: in/node.pcapng, map: { eth1: pod-a, eth2: pod-b } }   # pcapng interfaces by if_name
 *   expected: expected                     # golden outputs compared (default: expected/ when it exists)
 *   ignore: [udp.srcport, ip.id, ip.checksum, timestamp]              # masks, as --ignore
 *   counters: { packets.transmitted: 5, drops.no-route: 1 }          # summary.json values by dotted path
 *   packets: { pod-b: 3, eth0: 2 }         # packets each vif sent
 *   expect:                                # assertions on flows.json
 *     - flows: 2                           # active pairs
 *     - evictions: 0
 *     - flow: { protocol: udp, dst: 10.96.0.10, dstPort: 53 }       # pairs whose forward entry has these
 *       count: 1                           # default: at least one; 0: no such pair
 *       forward: { action: nat, nat: [dnat, dpat], packets: 2 }
 *       reverse: { src: 10.1.2.6, srcPort: 5353 }
 *       replied: true
 *
 * A directory in the plain layout (state.yaml, in/, expected/) is a
 * scenario as it is.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Ajv from 'ajv';
import { describeSchemaError, formatConfigError, parseYamlText } from '../control/config/config-errors';
import { loadStateFile } from '../control/config/state-file';
import { replay, ReplayInput, ReplaySummary } from '../dataplane/io/replay';
import { compareOutputs, Masks, parseMasks, updateExpected } from './compare';

export const SCENARIO_FILE = 'scenario.yaml';
const DEFAULT_STATE = 'state.yaml';
const DEFAULT_EXPECTED = 'expected';

const flowKeySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    vrf: { type: 'integer' },
    protocol: { type: 'string' },
    src: { type: 'string' },
    dst: { type: 'string' },
    srcPort: { type: 'integer' },
    dstPort: { type: 'integer' },
  },
};
const entryFieldsSchema = { type: 'object' };

const scenarioSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    description: { type: 'string' },
    state: { type: 'string' },
    inputs: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['file'],
        properties: {
          file: { type: 'string' },
          vif: { type: ['string', 'integer'] },
          map: { type: 'object', additionalProperties: { type: ['string', 'integer'] } },
        },
      },
    },
    expected: { type: 'string' },
    ignore: { type: 'array', items: { type: 'string' } },
    counters: { type: 'object', additionalProperties: { type: 'integer' } },
    packets: { type: 'object', additionalProperties: { type: 'integer', minimum: 0 } },
    expect: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        properties: {
          flows: { type: 'integer', minimum: 0 },
          evictions: { type: 'integer', minimum: 0 },
          flow: flowKeySchema,
          count: { type: 'integer', minimum: 0 },
          forward: entryFieldsSchema,
          reverse: entryFieldsSchema,
          replied: { type: 'boolean' },
        },
      },
    },
  },
} as const;

type FlowFields = Record<string, unknown>;

interface FlowExpectation {
  flows?: number;
  evictions?: number;
  flow?: FlowFields;
  count?: number;
  forward?: FlowFields;
  reverse?: FlowFields;
  replied?: boolean;
}

interface ScenarioDocument {
  description?: string;
  state?: string;
  inputs?: Array<{ file: string; vif?: string | number; map?: Record<string, string | number> }>;
  expected?: string;
  ignore?: string[];
  counters?: Record<string, number>;
  packets?: Record<string, number>;
  expect?: FlowExpectation[];
}

const validateScenario = new Ajv({ verbose: true, allowUnionTypes: true }).compile<ScenarioDocument>(scenarioSchema);

/** A scenario that cannot run as written: names the file, the field and the value. */
export class ScenarioError extends Error {
  override name = 'ScenarioError';
}

export interface Scenario {
  name: string;
  dir: string;
  stateFile: string;
  inputs: Array<{ file: string; vif: string | null; map?: Record<string, string> }>;
  expectedDir: string | null;
  masks: Masks;
  counters: Record<string, number>;
  packets: Record<string, number>;
  expect: FlowExpectation[];
}

export function isScenarioDir(dir: string): boolean {
  return fs.existsSync(path.join(dir, SCENARIO_FILE)) || fs.existsSync(path.join(dir, DEFAULT_STATE));
}

export function loadScenario(dir: string): Scenario {
  const file = path.join(dir, SCENARIO_FILE);
  let document: ScenarioDocument = {};
  if (fs.existsSync(file)) {
    const data = parseYamlText(fs.readFileSync(file, 'utf8'), file, (message) => new ScenarioError(message)) ?? {};
    if (!validateScenario(data)) throw new ScenarioError(describeSchemaError(validateScenario.errors![0], file));
    document = data;
  }
  const stateFile = path.join(dir, document.state ?? DEFAULT_STATE);
  if (!fs.existsSync(stateFile)) throw new ScenarioError(formatConfigError(file, '/state', `no such file ${stateFile}`, document.state ?? DEFAULT_STATE));
  let inputs: Scenario['inputs'];
  if (document.inputs !== undefined) {
    inputs = document.inputs.map((input, i) => {
      const inputFile = path.join(dir, input.file);
      if (!fs.existsSync(inputFile)) throw new ScenarioError(formatConfigError(file, `/inputs/${i}/file`, 'no such file', input.file));
      if (input.vif === undefined && input.map === undefined) throw new ScenarioError(formatConfigError(file, `/inputs/${i}`, 'give "vif" or "map"', input));
      const map = input.map === undefined ? undefined : Object.fromEntries(Object.entries(input.map).map(([name, vif]) => [name, String(vif)]));
      return { file: inputFile, vif: input.vif === undefined ? null : String(input.vif), map };
    });
  } else {
    const inDir = path.join(dir, 'in');
    inputs = fs.existsSync(inDir)
      ? fs
          .readdirSync(inDir)
          .filter((name) => /\.(pcap|pcapng)$/.test(name))
          .sort()
          .map((name) => ({ file: path.join(inDir, name), vif: name.replace(/\.(pcap|pcapng)$/, '') }))
      : [];
  }
  if (inputs.length === 0) throw new ScenarioError(`${dir}: no inputs (no in/<vif>.pcap files and no "inputs" in ${SCENARIO_FILE})`);
  const expectedDir = path.join(dir, document.expected ?? DEFAULT_EXPECTED);
  return {
    name: path.basename(path.resolve(dir)),
    dir,
    stateFile,
    inputs,
    expectedDir: document.expected !== undefined || fs.existsSync(expectedDir) ? expectedDir : null,
    masks: parseMasks(document.ignore ?? [], `${file}: /ignore`),
    counters: document.counters ?? {},
    packets: document.packets ?? {},
    expect: document.expect ?? [],
  };
}

export interface ScenarioResult {
  name: string;
  dir: string;
  /** passed; failed: an output differs or an assertion does not hold; error: the scenario could not run. */
  status: 'passed' | 'failed' | 'error';
  seconds: number;
  /** What differs or went wrong, one sentence each. */
  failures: string[];
  /** Checks made: compared files and assertions. */
  checks: number;
}

/** dotted path ("drops.no-route") into the summary; an absent counter is 0. */
function counterAt(summary: ReplaySummary, dotted: string): number | undefined {
  const [section, ...rest] = dotted.split('.');
  if (section === 'drops') return summary.drops[rest.join('.')] ?? 0;
  if (section === 'vifs' && rest.length >= 2) {
    const counters = summary.vifs[rest.slice(0, -1).join('.')] as Record<string, number> | undefined;
    return counters?.[rest[rest.length - 1]];
  }
  if (section === 'packets' && rest.length === 1) return (summary.packets as Record<string, number>)[rest[0]];
  return undefined;
}

interface FlowPairJson {
  forward: FlowFields;
  reverse: FlowFields;
  replied: boolean;
}

const matches = (entry: FlowFields, wanted: FlowFields): boolean =>
  Object.entries(wanted).every(([key, value]) => JSON.stringify(entry[key]) === JSON.stringify(value));

function checkFlows(flows: { activePairs: number; evictions: number; pairs: FlowPairJson[] }, expect: FlowExpectation[]): string[] {
  const failures: string[] = [];
  expect.forEach((expectation, i) => {
    const where = `expect[${i}]`;
    if (expectation.flows !== undefined && flows.activePairs !== expectation.flows) failures.push(`${where}: ${flows.activePairs} flow pairs, expected ${expectation.flows}`);
    if (expectation.evictions !== undefined && flows.evictions !== expectation.evictions) failures.push(`${where}: ${flows.evictions} evictions, expected ${expectation.evictions}`);
    if (expectation.flow === undefined) return;
    const key = JSON.stringify(expectation.flow);
    const found = flows.pairs.filter(
      (pair) =>
        matches(pair.forward, expectation.flow!) &&
        (expectation.forward === undefined || matches(pair.forward, expectation.forward)) &&
        (expectation.reverse === undefined || matches(pair.reverse, expectation.reverse)) &&
        (expectation.replied === undefined || pair.replied === expectation.replied),
    ).length;
    const keyed = flows.pairs.filter((pair) => matches(pair.forward, expectation.flow!));
    const ok = expectation.count === undefined ? found > 0 : found === expectation.count;
    if (ok) return;
    const wanted = expectation.count === undefined ? 'at least 1' : String(expectation.count);
    const near = keyed.length > 0 && found === 0 ? `; pairs with that key: ${keyed.slice(0, 2).map((pair) => JSON.stringify({ forward: pair.forward, reverse: pair.reverse, replied: pair.replied })).join(', ')}` : '';
    failures.push(`${where}: ${found} flow pairs match ${key}${expectation.forward || expectation.reverse || expectation.replied !== undefined ? ' with the fields asked' : ''}, expected ${wanted}${near}`);
  });
  return failures;
}

/** Maps a scenario's inputs to the replay's, naming the scenario file in errors. */
function replayInputs(scenario: Scenario, findVif: (name: string) => number | undefined): ReplayInput[] {
  const vifNamed = (name: string, where: string): number => {
    const id = findVif(name);
    if (id === undefined) throw new ScenarioError(`${where}: ${scenario.stateFile} has no vif named or numbered ${name}`);
    return id;
  };
  return scenario.inputs.map((input) => {
    if (input.map === undefined) return { file: input.file, vif: vifNamed(input.vif!, input.file) };
    const interfaceVifs = new Map(Object.entries(input.map).map(([name, vif]) => [name, vifNamed(vif, `${input.file} map ${name}`)]));
    return { file: input.file, vif: input.vif === null ? null : vifNamed(input.vif, input.file), interfaceVifs };
  });
}

/** Replays a scenario into a temporary directory and checks everything it asks for. */
export function runScenario(scenario: Scenario, options: { update?: boolean } = {}): ScenarioResult {
  const started = process.hrtime.bigint();
  const out = fs.mkdtempSync(path.join(os.tmpdir(), `vrouter-test-${scenario.name}-`));
  const failures: string[] = [];
  let checks = 0;
  try {
    const dp = loadStateFile(scenario.stateFile);
    const summary = replay(dp, replayInputs(scenario, (name) => dp.vifs.find(name)?.id), out);
    for (const [file, cut] of Object.entries(summary.truncatedInput ?? {})) {
      failures.push(`${file}: ${cut.frames} frames cut short by the capture's snaplen were not replayed (frames ${cut.first.map((frame) => frame.frame).join(', ')})`);
    }
    if (options.update) updateExpected(out, scenario.expectedDir ?? path.join(scenario.dir, DEFAULT_EXPECTED));
    else if (scenario.expectedDir !== null) {
      checks++;
      failures.push(...compareOutputs(out, scenario.expectedDir, { masks: scenario.masks }).map((difference) => difference.message));
    }
    for (const [dotted, wanted] of Object.entries(scenario.counters)) {
      checks++;
      const got = counterAt(summary, dotted);
      if (got === undefined) failures.push(`counters: ${dotted} is no counter of summary.json`);
      else if (got !== wanted) failures.push(`${dotted}: ${got}, expected ${wanted}`);
    }
    for (const [vif, wanted] of Object.entries(scenario.packets)) {
      checks++;
      const counters = summary.vifs[vif] ?? Object.values(summary.vifs).find((candidate) => String(candidate.id) === vif);
      if (counters === undefined) failures.push(`packets: ${scenario.stateFile} has no vif ${vif}`);
      else if (counters.txPackets !== wanted) failures.push(`vif ${vif}: ${counters.txPackets} packets, expected ${wanted}`);
    }
    if (scenario.expect.length > 0) {
      checks += scenario.expect.length;
      failures.push(...checkFlows(JSON.parse(fs.readFileSync(path.join(out, 'flows.json'), 'utf8')), scenario.expect));
    }
    if (checks === 0 && !options.update) failures.push(`nothing to check: no ${DEFAULT_EXPECTED}/ directory and no counters, packets or expect in ${SCENARIO_FILE}`);
    return { name: scenario.name, dir: scenario.dir, status: failures.length === 0 ? 'passed' : 'failed', seconds: elapsed(started), failures, checks };
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
}

function elapsed(started: bigint): number {
  return Number(process.hrtime.bigint() - started) / 1e9;
}

/** Loads and runs a scenario; any error (a bad state file, a broken capture) is the scenario's error, not the suite's. */
export function runScenarioDir(dir: string, options: { update?: boolean } = {}): ScenarioResult {
  const started = process.hrtime.bigint();
  try {
    return runScenario(loadScenario(dir), options);
  } catch (error) {
    return { name: path.basename(path.resolve(dir)), dir, status: 'error', seconds: elapsed(started), failures: [error instanceof Error ? error.message : String(error)], checks: 0 };
  }
}
