/**
 * Golden comparison of a replay's output directory with an expected one:
 * every `<vif>.pcap` (packet counts, then packet by packet: the decoded
 * fields that differ, then the first differing bytes in hex), and
 * `summary.json` and `flows.json` when the expected directory has them.
 * Fields named in the masks are not compared; a masked checksum is still
 * recomputed and must be right.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CaptureReader } from '../dataplane/io/pcap';
import { FIELD_NAMES, PacketField, decodeFields, describeField, fieldBits } from './packet-fields';

export const TIMESTAMP_MASK = 'timestamp';
const LAYERS = ['outer', 'inner'];
const KNOWN_FIELDS = new Set(FIELD_NAMES.map(([name]) => name));
/** Packet differences listed per vif before the rest are only counted. */
const PACKETS_LISTED = 5;
/** Field differences listed per packet. */
const FIELDS_LISTED = 4;
const HEX_BYTES_SHOWN = 16;
/** Differences listed per JSON file before the rest are only counted. */
const JSON_DIFFERENCES_LISTED = 20;

export class MaskError extends Error {}

export interface Masks {
  /** Field names masked in every layer (udp.srcport) or in one ("outer.udp.srcport"). */
  fields: Set<string>;
  timestamp: boolean;
}

/** Parses mask names ("udp.srcport,ip.id", repeatable); an unknown name is an error naming it. */
export function parseMasks(lists: string[], where = '--ignore'): Masks {
  const masks: Masks = { fields: new Set(), timestamp: false };
  for (const name of lists.flatMap((list) => list.split(',')).map((name) => name.trim()).filter((name) => name !== '')) {
    if (name === TIMESTAMP_MASK) {
      masks.timestamp = true;
      continue;
    }
    const layer = LAYERS.find((prefix) => name.startsWith(`${prefix}.`));
    const field = layer === undefined ? name : name.slice(layer.length + 1);
    if (!KNOWN_FIELDS.has(field)) {
      const protocol = field.split('.')[0];
      const near = FIELD_NAMES.map(([known]) => known).filter((known) => known.startsWith(`${protocol}.`));
      throw new MaskError(`${where}: unknown field "${name}"${near.length > 0 ? ` (${protocol} fields: ${near.join(', ')})` : ''}; see \`vrouter replay --help\``);
    }
    masks.fields.add(name);
  }
  return masks;
}

function masked(masks: Masks, field: PacketField): boolean {
  return masks.fields.has(field.name) || (field.layer !== '' && masks.fields.has(`${field.layer}.${field.name}`));
}

export interface Difference {
  /** The file the difference is in: "eth0.pcap", "summary.json", "flows.json". */
  file: string;
  message: string;
}

export interface ComparisonOptions {
  masks: Masks;
}

const formatTime = (seconds: number, nanoseconds: number): string => `${seconds}.${String(nanoseconds).padStart(9, '0')}`;

interface Packet {
  seconds: number;
  nanoseconds: number;
  data: Buffer;
  originalLength: number;
}

/** Reads one packet at a time from each of two captures. */
function* packetPairs(actualFile: string | null, expectedFile: string | null): Generator<[Packet | null, Packet | null]> {
  const open = (file: string | null) => (file === null ? null : new CaptureReader(file));
  const actual = open(actualFile);
  const expected = open(expectedFile);
  const take = (reader: CaptureReader | null): Packet | null =>
    reader !== null && reader.next()
      ? {
          seconds: reader.seconds,
          nanoseconds: reader.nanoseconds,
          data: Buffer.from(reader.data.subarray(reader.dataOffset, reader.dataOffset + reader.capturedLength)),
          originalLength: reader.originalLength,
        }
      : null;
  try {
    for (;;) {
      const pair: [Packet | null, Packet | null] = [take(actual), take(expected)];
      if (pair[0] === null && pair[1] === null) return;
      yield pair;
    }
  } finally {
    actual?.close();
    expected?.close();
  }
}

function hexBytes(data: Buffer, from: number): string {
  return data.toString('hex', from, Math.min(data.length, from + HEX_BYTES_SHOWN)).replace(/(..)(?!$)/g, '$1 ') || '(none)';
}

/** The differences between two frames, as sentences (without the "packet N on vif" in front). */
export function comparePackets(actual: Buffer, expected: Buffer, masks: Masks): string[] {
  const actualFields = decodeFields(actual);
  const expectedFields = decodeFields(expected);
  // Bits not compared: those of masked fields, as either frame's headers place them.
  const ignored = new Uint8Array(Math.max(actual.length, expected.length));
  for (const field of [...actualFields, ...expectedFields]) {
    if (!masked(masks, field)) continue;
    for (let i = 0; i < field.length; i++) ignored[field.offset + i] |= fieldBits(field, i);
  }
  const problems: string[] = [];
  // A masked checksum is not compared, but it must still be right.
  for (const field of actualFields) {
    if (field.valid === false && masked(masks, field)) problems.push(`${describeField(field)} ${field.value} is wrong (masked, but a checksum must still be valid)`);
  }
  if (actual.length !== expected.length) problems.push(`length ${actual.length} bytes, expected ${expected.length}`);

  let firstDiffering = -1;
  const common = Math.min(actual.length, expected.length);
  for (let i = 0; i < common; i++) {
    if (((actual[i] ^ expected[i]) & ~ignored[i] & 0xff) !== 0) {
      firstDiffering = i;
      break;
    }
  }
  if (firstDiffering < 0 && actual.length !== expected.length) firstDiffering = common;
  if (firstDiffering < 0) return problems;

  const fieldProblems: string[] = [];
  const byPlace = new Map(actualFields.map((field) => [`${field.layer} ${field.name} ${field.offset}`, field]));
  for (const wanted of expectedFields) {
    if (masked(masks, wanted) || wanted.name === 'data') continue;
    const got = byPlace.get(`${wanted.layer} ${wanted.name} ${wanted.offset}`);
    if (got === undefined) {
      fieldProblems.push(`no ${describeField(wanted)}, expected ${wanted.value}`);
      continue;
    }
    let differs = false;
    for (let i = 0; i < wanted.length && !differs; i++) {
      const at = wanted.offset + i;
      differs = ((actual[at] ^ expected[at]) & fieldBits(wanted, i) & ~ignored[at]) !== 0;
    }
    if (differs) fieldProblems.push(`${describeField(wanted)} ${got.value}, expected ${wanted.value}`);
  }
  if (fieldProblems.length === 0) {
    const payload = expectedFields.find((field) => field.name === 'data' && firstDiffering >= field.offset);
    fieldProblems.push(payload ? `${describeField(payload)} differs at byte ${firstDiffering - payload.offset} of it` : `bytes differ`);
  }
  problems.push(...fieldProblems.slice(0, FIELDS_LISTED));
  if (fieldProblems.length > FIELDS_LISTED) problems.push(`and ${fieldProblems.length - FIELDS_LISTED} more fields`);
  problems.push(`first difference at byte ${firstDiffering} (0x${firstDiffering.toString(16)}): ${hexBytes(actual, firstDiffering)}, expected ${hexBytes(expected, firstDiffering)}`);
  return problems;
}

interface CaptureShape {
  packets: number;
  /** Format, timestamp resolution, link type and snaplen: what the file header says. */
  header: string;
}

/** With timestamps masked, their resolution is not compared either. */
function captureShape(file: string | null, masks: Masks): CaptureShape | null {
  if (file === null) return null;
  const reader = new CaptureReader(file);
  try {
    let packets = 0;
    while (reader.next()) packets++;
    const first = reader.interfaces[0];
    const resolution = masks.timestamp ? '' : `${reader.finerThanMicroseconds ? 'nanosecond' : 'microsecond'} timestamps, `;
    const header = `${reader.format}, ${resolution}link type ${first?.linkType}, snaplen ${first?.snapLength}`;
    return { packets, header };
  } finally {
    reader.close();
  }
}

function compareCapture(vif: string, actualFile: string | null, expectedFile: string | null, masks: Masks): Difference[] {
  const file = `${vif}.pcap`;
  const differences: Difference[] = [];
  const actualShape = captureShape(actualFile, masks);
  const expectedShape = captureShape(expectedFile, masks);
  const actualCount = actualShape?.packets ?? 0;
  const expectedCount = expectedShape?.packets ?? 0;
  if (actualCount !== expectedCount) differences.push({ file, message: `vif ${vif}: ${actualCount} packets, expected ${expectedCount}` });
  if (actualShape !== null && expectedShape !== null && actualShape.header !== expectedShape.header) {
    differences.push({ file, message: `vif ${vif}: ${file} is ${actualShape.header}; expected ${expectedShape.header}` });
  }
  let index = 0;
  let differing = 0;
  for (const [actual, expected] of packetPairs(actualFile, expectedFile)) {
    index++;
    if (actual === null || expected === null) continue; // counted above
    const problems = comparePackets(actual.data, expected.data, masks);
    if (!masks.timestamp && (actual.seconds !== expected.seconds || actual.nanoseconds !== expected.nanoseconds)) {
      problems.unshift(`timestamp ${formatTime(actual.seconds, actual.nanoseconds)}, expected ${formatTime(expected.seconds, expected.nanoseconds)}`);
    }
    if (actual.originalLength !== expected.originalLength) problems.push(`original length ${actual.originalLength}, expected ${expected.originalLength}`);
    if (problems.length === 0) continue;
    differing++;
    if (differing > PACKETS_LISTED) continue;
    const at = formatTime(expected.seconds, expected.nanoseconds);
    differences.push({ file, message: `packet ${index} on ${vif} (${at}): ${problems.join('; ')}` });
  }
  if (differing > PACKETS_LISTED) differences.push({ file, message: `vif ${vif}: ${differing - PACKETS_LISTED} more packets differ (${differing} in all)` });
  return differences;
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function readJson(file: string): Json {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as Json;
  } catch (error) {
    throw new Error(`${file}: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/** "drops.no-route" -> value, for every leaf. */
function flatten(value: Json, prefix: string, into: Map<string, Json>): Map<string, Json> {
  if (value !== null && typeof value === 'object') {
    const entries = Array.isArray(value) ? value.map((item, i) => [`[${i}]`, item] as const) : Object.entries(value).map(([key, item]) => [`.${key}`, item] as const);
    if (entries.length === 0) into.set(prefix, value);
    for (const [key, item] of entries) flatten(item, prefix === '' ? key.replace(/^\./, '') : `${prefix}${key}`, into);
  } else {
    into.set(prefix, value);
  }
  return into;
}

const show = (value: Json | undefined): string => (value === undefined ? 'absent' : typeof value === 'string' ? value : JSON.stringify(value));

/** Counters: an absent counter is 0 (summary.json lists only the drop reasons seen). */
function compareSummary(actual: Json, expected: Json): Difference[] {
  const a = flatten(actual, '', new Map());
  const e = flatten(expected, '', new Map());
  const differences: Difference[] = [];
  // An empty object on one side ("drops": {}) is the same as the other side's children counted 0.
  const hasChildren = (map: Map<string, Json>, key: string) => [...map.keys()].some((other) => other.startsWith(`${key}.`) || other.startsWith(`${key}[`));
  for (const key of new Set([...e.keys(), ...a.keys()])) {
    if ((!e.has(key) && hasChildren(e, key)) || (!a.has(key) && hasChildren(a, key))) continue;
    const got = a.get(key) ?? (typeof e.get(key) === 'number' ? 0 : undefined);
    const wanted = e.get(key) ?? (typeof a.get(key) === 'number' ? 0 : undefined);
    if (JSON.stringify(got) !== JSON.stringify(wanted)) differences.push({ file: 'summary.json', message: `${key}: ${show(got)}, expected ${show(wanted)}` });
  }
  return differences;
}

interface FlowEntryJson {
  vrf: number;
  protocol: string;
  src: string;
  dst: string;
  srcPort: number;
  dstPort: number;
  [key: string]: Json;
}

const flowName = (entry: FlowEntryJson): string => `flow ${entry.protocol} ${entry.src}:${entry.srcPort} > ${entry.dst}:${entry.dstPort} vrf ${entry.vrf}`;

/** Flow pairs matched by their forward key, so a diff names the flow rather than a position. */
function compareFlows(actual: Json, expected: Json): Difference[] {
  const differences: Difference[] = [];
  const note = (message: string) => differences.push({ file: 'flows.json', message });
  const pairs = (flows: Json) => {
    const byKey = new Map<string, Json>();
    const list = flows !== null && typeof flows === 'object' && !Array.isArray(flows) && Array.isArray(flows.pairs) ? flows.pairs : [];
    for (const pair of list) {
      const forward = (pair as { forward: FlowEntryJson }).forward;
      byKey.set(flowName(forward), pair);
    }
    return byKey;
  };
  const top = (flows: Json) => (flows !== null && typeof flows === 'object' && !Array.isArray(flows) ? { ...flows, pairs: null } : flows);
  for (const { message } of compareSummary(top(actual), top(expected))) note(message);
  const a = pairs(actual);
  const e = pairs(expected);
  for (const [name, wanted] of e) {
    const got = a.get(name);
    if (got === undefined) {
      note(`${name}: missing`);
      continue;
    }
    for (const { message } of compareSummary(got, wanted)) note(`${name}: ${message}`);
  }
  for (const name of a.keys()) if (!e.has(name)) note(`${name}: not expected`);
  return differences;
}

const vifsWithCaptures = (dir: string): string[] =>
  fs.existsSync(dir) ? fs.readdirSync(dir).filter((file) => file.endsWith('.pcap')).map((file) => file.slice(0, -'.pcap'.length)) : [];

/** Compares a replay's output directory with the expected one. No differences: equal. */
export function compareOutputs(actualDir: string, expectedDir: string, options: ComparisonOptions): Difference[] {
  if (!fs.existsSync(expectedDir)) throw new Error(`${expectedDir}: no such directory (write it with --update)`);
  const differences: Difference[] = [];
  const vifs = [...new Set([...vifsWithCaptures(expectedDir), ...vifsWithCaptures(actualDir)])].sort();
  for (const vif of vifs) {
    const file = (dir: string) => (fs.existsSync(path.join(dir, `${vif}.pcap`)) ? path.join(dir, `${vif}.pcap`) : null);
    differences.push(...compareCapture(vif, file(actualDir), file(expectedDir), options.masks));
  }
  for (const [name, compare] of [
    ['summary.json', compareSummary],
    ['flows.json', compareFlows],
  ] as const) {
    const expectedFile = path.join(expectedDir, name);
    if (!fs.existsSync(expectedFile)) continue;
    const actualFile = path.join(actualDir, name);
    if (!fs.existsSync(actualFile)) differences.push({ file: name, message: `${name}: missing` });
    else {
      const found = compare(readJson(actualFile), readJson(expectedFile));
      differences.push(...found.slice(0, JSON_DIFFERENCES_LISTED));
      if (found.length > JSON_DIFFERENCES_LISTED) differences.push({ file: name, message: `${name}: ${found.length - JSON_DIFFERENCES_LISTED} more differences (${found.length} in all)` });
    }
  }
  return differences;
}

/** --update: the expected directory becomes a copy of the output (its pcaps and JSON files). */
export function updateExpected(actualDir: string, expectedDir: string): void {
  fs.mkdirSync(expectedDir, { recursive: true });
  for (const file of fs.readdirSync(expectedDir)) {
    if (/\.(pcap|json)$/.test(file)) fs.rmSync(path.join(expectedDir, file));
  }
  for (const file of fs.readdirSync(actualDir)) {
    if (/\.(pcap|json)$/.test(file)) fs.copyFileSync(path.join(actualDir, file), path.join(expectedDir, file));
  }
}
