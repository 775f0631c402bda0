/**
 * Property-based fuzzing of the whole pipeline (fast-check, fixed seed):
 * random byte strings, then valid frames of every kind the node handles with
 * bits flipped, bytes overwritten, cut short, extended and header fields set
 * to edge values, in batches of 1-64 from every vif and one that does not
 * exist, with the clock sometimes moved on so flows and held fragments age.
 * After every batch: nothing threw, the counters balance (received +
 * generated = transmitted + dropped + held), and every transmitted frame is
 * well formed.
 *
 * test/corpus/ keeps frames that once broke the pipeline, one per file
 * (`<ingress-vif> <hex>`); they are replayed first. A failing run saves its
 * shrunk frames there. FUZZ_SEED=<n> runs another seed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { DROP_REASONS, DropReason } from '../src/dataplane/drop-reasons';
import { MAX_FRAME } from '../src/dataplane/packet-pool';
import { TraceSink } from '../src/dataplane/pipeline';
import * as f from './support/frames';
import { FABRIC_MAC, POD_A_MAC, POD_C_MAC, Scenario, UNDERLAY_GW_MAC, VROUTER_MAC, buildScenario } from './support/scenario';

const SEED = Number(process.env.FUZZ_SEED ?? 0x5eed);
/** Batches average about 32 frames. Random frames cost more to generate and go less deep. */
const RANDOM_BATCHES = 1_700;
const MUTATION_BATCHES = 5_000;
const MIN_RANDOM_FRAMES = 50_000;
const MIN_MUTATED_FRAMES = 150_000;
const MAX_BATCH = 64;
const MAX_FUZZ_FRAME = 1_600;
const FABRIC_VIF = 0;
/** The fabric, the three pods, and a vif id nothing is attached to. */
const INGRESS_VIFS = [FABRIC_VIF, 1, 2, 3, 9];
const CORPUS_DIR = path.resolve(__dirname, '..', '..', 'test', 'corpus');

const ETH_HEADER_LEN = 14;
const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_VLAN = 0x8100;

/** A frame fed in on a vif; prints how it was made and the corpus line that replays it. */
class FuzzFrame {
  constructor(
    readonly vif: number,
    readonly bytes: Uint8Array,
    readonly origin: string,
  ) {}

  get corpusLine(): string {
    return `${this.vif} ${Buffer.from(this.bytes).toString('hex')}`.trimEnd();
  }

  [fc.toStringMethod](): string {
    return `\n  ${this.origin}:\n  ${this.corpusLine}`;
  }
}

// ---------------------------------------------------------------------------
// What a batch must leave behind.

/** What the fuzzing reached, so a run that never gets past ethernet-input cannot pass as thorough. */
class Coverage {
  frames = 0;
  generated = 0;
  readonly dropReasons = new Set<string>();
  readonly transmittedOn = new Set<number>();
}

const ignoreTraceLine: TraceSink = () => {};

/** How a batch runs, besides its frames. */
interface BatchConditions {
  traced: boolean;
  /** Seconds the clock moves on before the batch (flow aging, fragment timeouts). */
  secondsBefore: number;
}

/** Runs one batch through the scenario and checks everything it did. */
function feedBatch(s: Scenario, frames: readonly FuzzFrame[], conditions: BatchConditions, coverage: Coverage): void {
  const { pipeline, dp } = s;
  const receivedBefore = pipeline.received;
  const transmittedBefore = pipeline.transmitted;
  const generatedBefore = dp.generated;
  const dropsBefore = Float64Array.from(dp.drops.counts);
  if (conditions.secondsBefore > 0) pipeline.advanceClock(pipeline.now + conditions.secondsBefore);
  pipeline.trace = conditions.traced ? ignoreTraceLine : null;

  s.run(frames.map((frame): [number, Buffer] => [frame.vif, Buffer.from(frame.bytes)]));

  assert.equal(pipeline.received - receivedBefore, frames.length, 'every frame received');
  assert.equal(
    pipeline.received + dp.generated,
    pipeline.transmitted + dp.drops.total() + pipeline.held,
    `received ${pipeline.received} + generated ${dp.generated} = ` +
      `transmitted ${pipeline.transmitted} + dropped ${dp.drops.total()} + held ${pipeline.held}`,
  );
  let captured = 0;
  s.ports.forEach((port, vif) => {
    for (const frame of port.frames) checkTransmittedFrame(vif, frame);
    captured += port.frames.length;
    if (port.frames.length > 0) coverage.transmittedOn.add(vif);
    port.frames.length = 0; // 100k frames would otherwise pile up
  });
  assert.equal(captured, pipeline.transmitted - transmittedBefore, 'frames on the ports = transmitted');

  coverage.frames += frames.length;
  coverage.generated += dp.generated - generatedBefore;
  dp.drops.counts.forEach((count, reason) => {
    if (count > dropsBefore[reason]) coverage.dropReasons.add(DROP_REASONS[reason]);
  });
}

function checkTransmittedFrame(vif: number, frame: Buffer): void {
  const where = `sent on vif ${vif}: ${frame.toString('hex')}`;
  assert.ok(frame.length >= ETH_HEADER_LEN, `frame shorter than an Ethernet header, ${where}`);
  assert.ok(frame.length <= MAX_FRAME, `frame larger than a slot carries, ${where}`);
  let l3 = ETH_HEADER_LEN;
  let etherType = frame.readUInt16BE(12);
  if (etherType === ETHERTYPE_VLAN && frame.length >= l3 + 4) {
    etherType = frame.readUInt16BE(16);
    l3 += 4;
  }
  if (vif === FABRIC_VIF) {
    assert.ok(etherType === ETHERTYPE_IPV4 && l3 === ETH_HEADER_LEN, `fabric frame not untagged IPv4, ${where}`);
    checkTunnel(frame, l3, where);
  } else if (etherType === ETHERTYPE_IPV4) {
    checkIpv4Header(frame, l3, where);
  }
}

/** The checksum, recomputed here, and a total length that ends exactly where the frame does. */
function checkIpv4Header(frame: Buffer, ip: number, where: string): void {
  assert.ok(frame.length - ip >= 20, `IPv4 header cut short at ${ip}, ${where}`);
  const headerLength = (frame[ip] & 0x0f) * 4;
  const versionAndIhlValid = frame[ip] >>> 4 === 4 && headerLength >= 20 && ip + headerLength <= frame.length;
  assert.ok(versionAndIhlValid, `bad IPv4 version/IHL at ${ip}, ${where}`);
  assert.equal(f.internetChecksum(frame.subarray(ip, ip + headerLength)), 0, `IPv4 header checksum at ${ip}, ${where}`);
  assert.equal(frame.readUInt16BE(ip + 2), frame.length - ip, `IPv4 total length at ${ip}, ${where}`);
}

/** MPLS over UDP to 6635 or over GRE (0x8847), one label with S=1, an IPv4 packet inside. */
function checkTunnel(frame: Buffer, ip: number, where: string): void {
  checkIpv4Header(frame, ip, where);
  const l4 = ip + (frame[ip] & 0x0f) * 4;
  const protocol = frame[ip + 9];
  let mpls: number;
  if (protocol === 17) {
    assert.ok(frame.length - l4 >= 8, `UDP header cut short, ${where}`);
    assert.equal(frame.readUInt16BE(l4 + 2), 6635, `MPLS over UDP destination port, ${where}`);
    assert.equal(frame.readUInt16BE(l4 + 4), frame.length - l4, `UDP length, ${where}`);
    mpls = l4 + 8;
  } else {
    assert.equal(protocol, 47, `outer protocol neither UDP nor GRE, ${where}`);
    assert.ok(frame.length - l4 >= 4 && frame.readUInt32BE(l4) === 0x8847, `GRE header not 0000 8847, ${where}`);
    mpls = l4 + 4;
  }
  assert.ok(frame.length - mpls >= 4, `MPLS label cut short, ${where}`);
  assert.equal(frame[mpls + 2] & 0x01, 1, `MPLS bottom-of-stack bit, ${where}`);
  checkIpv4Header(frame, mpls + 4, where);
}

// ---------------------------------------------------------------------------
// Valid frames to mutate, and where their headers are.

const POD_A = '10.1.1.3';
const POD_B = '10.1.1.4';
const REMOTE_OVER_UDP = '10.1.1.5';
const REMOTE_OVER_GRE = '10.1.1.6';
const ECMP_SERVICE = '10.96.0.10';
const POD_C = '10.2.2.3';
const THIS_NODE = '192.168.0.11';
/** The node behind REMOTE_OVER_UDP, where the fabric frames come from. */
const OTHER_NODE = '192.168.0.12';

function withVlanTag(frame: Buffer, vlan: number): Buffer {
  return Buffer.concat([frame.subarray(0, 12), Buffer.from([0x81, 0x00, vlan >> 8, vlan & 0xff]), frame.subarray(12)]);
}

function fromPod(srcMac: string, packet: f.Ipv4Options): Buffer {
  return f.ethernet(VROUTER_MAC, srcMac, ETHERTYPE_IPV4, f.ipv4(packet));
}

const udpFrom = (src: string, dst: string, payload = Buffer.from('fuzz me')) => f.udp(src, dst, 40000, 5001, payload);
const tcpSyn = (src: string, dst: string) => f.tcp(src, dst, 40001, 80, 0x02);
const echo = () => f.icmpEcho(8, 7, 1);

/** What a remote pod behind 192.168.0.12 sends, its TTL already decremented there. */
const remoteUdpTo = (dst: string) => f.ipv4({ src: REMOTE_OVER_UDP, dst, protocol: 17, ttl: 63, payload: udpFrom(REMOTE_OVER_UDP, dst) });
const fabricUdp = (label: number, dstPort: number, inner: Buffer) =>
  f.mplsOverUdp({ dstMac: FABRIC_MAC, srcMac: UNDERLAY_GW_MAC, src: OTHER_NODE, dst: THIS_NODE, dstPort, label, inner });
const fabricGre = (label: number, inner: Buffer) =>
  f.mplsOverGre({ dstMac: FABRIC_MAC, srcMac: UNDERLAY_GW_MAC, src: OTHER_NODE, dst: THIS_NODE, label, inner });

/** Record route with room for one address, then end of options: 8 bytes. */
const RECORD_ROUTE_OPTION = Buffer.from([0x07, 0x07, 0x04, 0, 0, 0, 0, 0x00]);

interface BaseFrame {
  name: string;
  vif: number;
  frame: Buffer;
}

const BASE_FRAMES: BaseFrame[] = [
  {
    name: 'pod-a > pod-b udp',
    vif: 1,
    frame: fromPod(POD_A_MAC, { src: POD_A, dst: POD_B, protocol: 17, payload: udpFrom(POD_A, POD_B) }),
  },
  {
    name: 'pod-a > pod-b tcp syn',
    vif: 1,
    frame: fromPod(POD_A_MAC, { src: POD_A, dst: POD_B, protocol: 6, payload: tcpSyn(POD_A, POD_B) }),
  },
  { name: 'pod-a > pod-b icmp echo', vif: 1, frame: fromPod(POD_A_MAC, { src: POD_A, dst: POD_B, protocol: 1, payload: echo() }) },
  {
    name: 'pod-a > pod-b udp, 802.1Q',
    vif: 1,
    frame: withVlanTag(fromPod(POD_A_MAC, { src: POD_A, dst: POD_B, protocol: 17, payload: udpFrom(POD_A, POD_B) }), 100),
  },
  {
    name: 'pod-a > pod-b udp, ip options',
    vif: 1,
    frame: fromPod(POD_A_MAC, { src: POD_A, dst: POD_B, protocol: 17, options: RECORD_ROUTE_OPTION, payload: udpFrom(POD_A, POD_B) }),
  },
  {
    name: 'pod-a > remote udp (mpls over udp)',
    vif: 1,
    frame: fromPod(POD_A_MAC, { src: POD_A, dst: REMOTE_OVER_UDP, protocol: 17, payload: udpFrom(POD_A, REMOTE_OVER_UDP) }),
  },
  {
    name: 'pod-a > remote tcp syn (mpls over gre)',
    vif: 1,
    frame: fromPod(POD_A_MAC, { src: POD_A, dst: REMOTE_OVER_GRE, protocol: 6, payload: tcpSyn(POD_A, REMOTE_OVER_GRE) }),
  },
  {
    name: 'pod-a > ecmp service udp',
    vif: 1,
    frame: fromPod(POD_A_MAC, { src: POD_A, dst: ECMP_SERVICE, protocol: 17, payload: udpFrom(POD_A, ECMP_SERVICE) }),
  },
  {
    // With the tunnel headers it exceeds the fabric MTU: fragmentation needed.
    name: 'pod-a > remote udp, 1460-byte payload, DF',
    vif: 1,
    frame: fromPod(POD_A_MAC, {
      src: POD_A,
      dst: REMOTE_OVER_UDP,
      protocol: 17,
      flags: 0x4000,
      payload: udpFrom(POD_A, REMOTE_OVER_UDP, Buffer.alloc(1460, 0x5a)),
    }),
  },
  { name: 'pod-c > pod-c icmp echo (vn2)', vif: 3, frame: fromPod(POD_C_MAC, { src: POD_C, dst: POD_C, protocol: 1, payload: echo() }) },
  { name: 'pod-a arp who-has pod-b', vif: 1, frame: f.arpRequest(POD_A_MAC, POD_A, POD_B) },
  { name: 'pod-c arp who-has its gateway', vif: 3, frame: f.arpRequest(POD_C_MAC, POD_C, '10.2.2.1') },
  {
    name: 'fabric mpls over udp 6635, label 17 > pod-a udp',
    vif: FABRIC_VIF,
    frame: fabricUdp(17, 6635, remoteUdpTo(POD_A)),
  },
  {
    name: 'fabric mpls over udp 51234, label 18 > pod-b tcp syn',
    vif: FABRIC_VIF,
    frame: fabricUdp(
      18,
      51234,
      f.ipv4({ src: REMOTE_OVER_UDP, dst: POD_B, protocol: 6, ttl: 63, payload: tcpSyn(REMOTE_OVER_UDP, POD_B) }),
    ),
  },
  {
    name: 'fabric mpls over gre, label 17 > pod-a icmp echo',
    vif: FABRIC_VIF,
    frame: fabricGre(17, f.ipv4({ src: REMOTE_OVER_UDP, dst: POD_A, protocol: 1, ttl: 63, payload: echo() })),
  },
  {
    // vn2 has no remote pods: no node may tunnel into it.
    name: 'fabric mpls over gre, label 19 > pod-c icmp echo',
    vif: FABRIC_VIF,
    frame: fabricGre(19, f.ipv4({ src: '10.2.2.9', dst: POD_C, protocol: 1, ttl: 63, payload: echo() })),
  },
  {
    name: 'fabric mpls over udp 6635, 802.1Q, label 18 > pod-b udp',
    vif: FABRIC_VIF,
    frame: withVlanTag(fabricUdp(18, 6635, remoteUdpTo(POD_B)), 7),
  },
];

/** Header offsets of a valid base frame; -1 where the frame has no such header. */
interface Layout {
  /** The IPv4 (or ARP) header behind the Ethernet header. */
  l3: number;
  ipv4: boolean;
  l4: number;
  gre: boolean;
  mpls: number;
  innerL3: number;
  innerL4: number;
}

function layoutOf(frame: Buffer): Layout {
  const l3 = frame.readUInt16BE(12) === ETHERTYPE_VLAN ? 18 : 14;
  const ipv4 = frame.readUInt16BE(l3 - 2) === ETHERTYPE_IPV4;
  const layout: Layout = { l3, ipv4, l4: -1, gre: false, mpls: -1, innerL3: -1, innerL4: -1 };
  if (!ipv4) return layout;
  layout.l4 = l3 + (frame[l3] & 0x0f) * 4;
  const protocol = frame[l3 + 9];
  const dstPort = frame.readUInt16BE(layout.l4 + 2);
  if (protocol === 17 && (dstPort === 6635 || dstPort === 51234)) layout.mpls = layout.l4 + 8;
  if (protocol === 47) {
    layout.gre = true;
    layout.mpls = layout.l4 + 4;
  }
  if (layout.mpls >= 0) {
    layout.innerL3 = layout.mpls + 4;
    layout.innerL4 = layout.innerL3 + (frame[layout.innerL3] & 0x0f) * 4;
  }
  return layout;
}

const BASE_LAYOUTS = BASE_FRAMES.map((base) => layoutOf(base.frame));

// ---------------------------------------------------------------------------
// Header fields and the edge values to set them to.

interface Field {
  name: string;
  width: 1 | 2 | 4;
  /** Offset in a frame of this layout, -1 when it has no such field. */
  at(layout: Layout): number;
  /** Edge values; some depend on how long the frame is now. */
  values(frame: Uint8Array, at: number): readonly number[];
}

const address = (text: string) => text.split('.').reduce((value, octet) => value * 256 + Number(octet), 0);

const ETHERTYPES = [0x0800, 0x0806, 0x86dd, 0x8100, 0x8847, 0x0000, 0xffff];
const VERSION_IHL = [0x45, 0x46, 0x4f, 0x44, 0x40, 0x41, 0x35, 0x55, 0x65, 0x00, 0xff];
const FRAGMENT_FIELDS = [0x0000, 0x4000, 0x2000, 0x6000, 0x0001, 0x2001, 0x4001, 0x1fff, 0x3fff, 0x8000, 0xffff];
const TTLS = [0, 1, 2, 255];
const PROTOCOLS = [1, 6, 17, 47, 0, 4, 41, 255];
const ADDRESSES = [
  THIS_NODE,
  OTHER_NODE,
  '192.168.0.13',
  '192.168.0.14',
  '10.1.1.1',
  POD_A,
  POD_B,
  REMOTE_OVER_UDP,
  REMOTE_OVER_GRE,
  ECMP_SERVICE,
  POD_C,
  '10.2.2.1',
  '0.0.0.0',
  '255.255.255.255',
  '224.0.0.1',
].map(address);
const PORTS = [6635, 51234, 0, 1, 53, 80, 49152, 65535];
const ICMP_TYPES = [0, 3, 4, 5, 8, 11, 12, 255];
const GRE_FLAGS_VERSION = [0x0000, 0x8000, 0x2000, 0x1000, 0x0001, 0x0007, 0xffff];
const GRE_PROTOCOLS = [0x8847, 0x8848, 0x0800, 0x86dd, 0x6558, 0x0000];
/** Label stack entries: labels 0-20 and past the label table, with and without S, with edge TTLs. */
const MPLS_ENTRIES = [...Array.from({ length: 21 }, (_, label) => label), 0xffff, 0x10000, 0xfffff].flatMap((label) =>
  [0x100, 0].flatMap((bottomOfStack) => [...TTLS, 63].map((ttl) => ((label << 12) | bottomOfStack | ttl) >>> 0)),
);
const ARP_OPERATIONS = [1, 2, 0, 3];
const ARP_TYPES = [0x00010800, 0x00060800, 0x00010806, 0x00000000];
const ARP_SIZES = [0x0604, 0x0606, 0x0404];

/** The remaining length as a 16-bit length field would state it, plus its neighbours. */
const lengthsAround = (frame: Uint8Array, at: number, edges: number[]) => {
  const remaining = frame.length - at;
  return [...edges, remaining - 1, remaining, remaining + 1].map((value) => value & 0xffff);
};

function ipv4Fields(prefix: string, ip: (l: Layout) => number, l4: (l: Layout) => number): Field[] {
  const inIp = (offset: number) => (l: Layout) => (ip(l) < 0 ? -1 : ip(l) + offset);
  const inL4 = (offset: number) => (l: Layout) => (l4(l) < 0 ? -1 : l4(l) + offset);
  return [
    { name: `${prefix} version/ihl`, width: 1, at: inIp(0), values: () => VERSION_IHL },
    {
      name: `${prefix} total length`,
      width: 2,
      at: inIp(2),
      values: (frame, at) => lengthsAround(frame, at - 2, [0, 1, 19, 20, 59, 60, 576, 1500, 0xffff]),
    },
    { name: `${prefix} flags/fragment offset`, width: 2, at: inIp(6), values: () => FRAGMENT_FIELDS },
    { name: `${prefix} ttl`, width: 1, at: inIp(8), values: () => TTLS },
    { name: `${prefix} protocol`, width: 1, at: inIp(9), values: () => PROTOCOLS },
    { name: `${prefix} checksum`, width: 2, at: inIp(10), values: () => [0x0000, 0xffff] },
    { name: `${prefix} source`, width: 4, at: inIp(12), values: () => ADDRESSES },
    { name: `${prefix} destination`, width: 4, at: inIp(16), values: () => ADDRESSES },
    { name: `${prefix} l4 source port`, width: 2, at: inL4(0), values: () => PORTS },
    { name: `${prefix} l4 destination port`, width: 2, at: inL4(2), values: () => PORTS },
    {
      name: `${prefix} udp length`,
      width: 2,
      at: inL4(4),
      values: (frame, at) => lengthsAround(frame, at - 4, [0, 7, 8, 9, 0xffff]),
    },
    { name: `${prefix} icmp type`, width: 1, at: inL4(0), values: () => ICMP_TYPES },
  ];
}

const FIELDS: Field[] = [
  { name: 'ethertype', width: 2, at: () => 12, values: () => ETHERTYPES },
  { name: '802.1Q inner ethertype', width: 2, at: (l) => (l.l3 === 18 ? 16 : -1), values: () => ETHERTYPES },
  ...ipv4Fields('outer', (l) => (l.ipv4 ? l.l3 : -1), (l) => l.l4),
  ...ipv4Fields('inner', (l) => l.innerL3, (l) => l.innerL4),
  { name: 'gre flags/version', width: 2, at: (l) => (l.gre ? l.l4 : -1), values: () => GRE_FLAGS_VERSION },
  { name: 'gre protocol', width: 2, at: (l) => (l.gre ? l.l4 + 2 : -1), values: () => GRE_PROTOCOLS },
  { name: 'mpls label stack entry', width: 4, at: (l) => l.mpls, values: () => MPLS_ENTRIES },
  { name: 'arp htype/ptype', width: 4, at: (l) => (l.ipv4 ? -1 : l.l3), values: () => ARP_TYPES },
  { name: 'arp hlen/plen', width: 2, at: (l) => (l.ipv4 ? -1 : l.l3 + 4), values: () => ARP_SIZES },
  { name: 'arp operation', width: 2, at: (l) => (l.ipv4 ? -1 : l.l3 + 6), values: () => ARP_OPERATIONS },
  { name: 'arp sender ip', width: 4, at: (l) => (l.ipv4 ? -1 : l.l3 + 14), values: () => ADDRESSES },
  { name: 'arp target ip', width: 4, at: (l) => (l.ipv4 ? -1 : l.l3 + 24), values: () => ADDRESSES },
];

// ---------------------------------------------------------------------------
// Mutations.

type Mutation =
  | { kind: 'flip-bit'; position: number; bit: number }
  | { kind: 'overwrite-byte'; position: number; value: number }
  | { kind: 'truncate'; length: number }
  | { kind: 'extend'; garbage: Uint8Array }
  | { kind: 'set-field'; field: number; choice: number };

/** `usual` seven times in eight, else `other`; shrinks towards `usual`. */
function rarely<T>(usual: T, other: fc.Arbitrary<T>): fc.Arbitrary<T> {
  return fc.oneof({ withCrossShrink: true }, { weight: 7, arbitrary: fc.constant(usual) }, { weight: 1, arbitrary: other });
}

/** Mostly within the headers, where a change matters; anywhere in the frame otherwise. */
const positionArb = fc.oneof(
  { weight: 3, arbitrary: fc.nat({ max: 79 }) },
  { weight: 1, arbitrary: fc.nat({ max: MAX_FUZZ_FRAME - 1 }) },
);

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip-bit' as const), position: positionArb, bit: fc.nat({ max: 7 }) }),
  fc.record({ kind: fc.constant('overwrite-byte' as const), position: positionArb, value: fc.nat({ max: 255 }) }),
  fc.record({ kind: fc.constant('truncate' as const), length: positionArb }),
  fc.record({ kind: fc.constant('extend' as const), garbage: fc.uint8Array({ minLength: 1, maxLength: 256, size: 'max' }) }),
  {
    weight: 4,
    arbitrary: fc.record({ kind: fc.constant('set-field' as const), field: fc.nat({ max: FIELDS.length - 1 }), choice: fc.nat() }),
  },
);

const hex = (value: number) => value.toString(16);

function writeBigEndian(frame: Uint8Array, at: number, width: number, value: number): void {
  for (let i = 0; i < width; i++) frame[at + i] = (value >>> (8 * (width - 1 - i))) & 0xff;
}

/** Applies a mutation (in place when the length stays) and notes what it did, for the report. */
function applyMutation(frame: Uint8Array, layout: Layout, mutation: Mutation, notes: string[]): Uint8Array {
  switch (mutation.kind) {
    case 'flip-bit': {
      if (frame.length === 0) return frame;
      const at = mutation.position % frame.length;
      frame[at] ^= 1 << mutation.bit;
      notes.push(`flip bit ${mutation.bit} of byte ${at}`);
      return frame;
    }
    case 'overwrite-byte': {
      if (frame.length === 0) return frame;
      const at = mutation.position % frame.length;
      frame[at] = mutation.value;
      notes.push(`byte ${at} = 0x${hex(mutation.value)}`);
      return frame;
    }
    case 'truncate': {
      const length = mutation.length % (frame.length + 1);
      notes.push(`truncate to ${length}`);
      return frame.subarray(0, length);
    }
    case 'extend':
      notes.push(`extend by ${mutation.garbage.length}`);
      return Buffer.concat([frame, mutation.garbage]).subarray(0, MAX_FUZZ_FRAME);
    case 'set-field': {
      const field = FIELDS[mutation.field];
      const at = field.at(layout);
      if (at < 0 || at + field.width > frame.length) return frame;
      const values = field.values(frame, at);
      const value = values[mutation.choice % values.length];
      writeBigEndian(frame, at, field.width, value);
      notes.push(`${field.name} = 0x${hex(value)}`);
      return frame;
    }
  }
}

/** Recomputes an IPv4 header checksum in place, when the header (as its IHL now says) is all there. */
function repairIpv4Checksum(frame: Uint8Array, ip: number): void {
  if (ip < 0 || frame.length - ip < 20) return;
  const headerLength = (frame[ip] & 0x0f) * 4;
  if (headerLength < 20 || ip + headerLength > frame.length) return;
  const header = Buffer.from(frame.buffer, frame.byteOffset + ip, headerLength);
  header.writeUInt16BE(0, 10);
  header.writeUInt16BE(f.internetChecksum(header), 10);
}

const mutatedFrameArb: fc.Arbitrary<FuzzFrame> = fc
  .record({
    base: fc.nat({ max: BASE_FRAMES.length - 1 }),
    // Mostly the vif the frame belongs on (undefined); sometimes any other.
    vif: rarely<number | undefined>(undefined, fc.constantFrom(...INGRESS_VIFS)),
    mutations: fc.array(mutationArb, { maxLength: 4 }),
    // Without it, a changed IPv4 header mostly ends as bad-checksum and goes no deeper.
    repairChecksums: fc.boolean(),
  })
  .map(({ base, vif, mutations, repairChecksums }) => {
    const layout = BASE_LAYOUTS[base];
    const notes: string[] = [];
    let frame: Uint8Array = Buffer.from(BASE_FRAMES[base].frame);
    for (const mutation of mutations) frame = applyMutation(frame, layout, mutation, notes);
    if (repairChecksums) {
      repairIpv4Checksum(frame, layout.innerL3);
      if (layout.ipv4) repairIpv4Checksum(frame, layout.l3);
      notes.push('IPv4 checksums recomputed');
    }
    const origin = [BASE_FRAMES[base].name, ...(vif === undefined ? [] : [`fed to vif ${vif}`]), ...notes].join(', ');
    return new FuzzFrame(vif ?? BASE_FRAMES[base].vif, frame, origin);
  });

const randomFrameArb: fc.Arbitrary<FuzzFrame> = fc
  .tuple(fc.constantFrom(...INGRESS_VIFS), fc.uint8Array({ maxLength: MAX_FUZZ_FRAME, size: 'max' }))
  .map(([vif, bytes]) => new FuzzFrame(vif, bytes, `${bytes.length} random bytes`));

const batchOf = (frame: fc.Arbitrary<FuzzFrame>) => fc.array(frame, { minLength: 1, maxLength: MAX_BATCH, size: 'max' });
/** One batch in eight runs traced, so the trace's describers see the same frames; one in eight waits first. */
const conditionsArb: fc.Arbitrary<BatchConditions> = fc.record({
  traced: rarely(false, fc.constant(true)),
  // Up to past the flow idle timeout (180 s); fragments wait 2 s.
  secondsBefore: rarely(0, fc.integer({ min: 1, max: 200 })),
});

// ---------------------------------------------------------------------------
// Corpus.

interface CorpusEntry {
  name: string;
  frame: FuzzFrame;
}

function readCorpus(): CorpusEntry[] {
  return fs
    .readdirSync(CORPUS_DIR)
    .filter((name) => name.endsWith('.hex'))
    .sort()
    .map((name) => {
      const line = fs.readFileSync(path.join(CORPUS_DIR, name), 'utf8').trim();
      const match = /^(-?\d+)(?:\s+((?:[0-9a-fA-F]{2})*))?$/.exec(line);
      if (match === null) throw new Error(`${name}: expected "<ingress-vif> <hex bytes>"`);
      return { name, frame: new FuzzFrame(Number(match[1]), Buffer.from(match[2] ?? '', 'hex'), name) };
    });
}

/** Writes each frame of a counterexample to the corpus; returns the paths. */
function saveToCorpus(property: string, frames: readonly FuzzFrame[]): string[] {
  fs.mkdirSync(CORPUS_DIR, { recursive: true });
  return frames.map((frame) => {
    const digest = createHash('sha1').update(frame.corpusLine).digest('hex').slice(0, 10);
    const file = path.join(CORPUS_DIR, `${property}-seed${SEED}-${digest}.hex`);
    fs.writeFileSync(file, `${frame.corpusLine}\n`);
    return file;
  });
}

/**
 * The frames of a failing batch that fail on their own, in a fresh scenario;
 * all of them when none does (the failure needs the batch).
 */
function culprits(frames: readonly FuzzFrame[], conditions: BatchConditions): readonly FuzzFrame[] {
  const failsAlone = (frame: FuzzFrame) => {
    try {
      feedBatch(buildScenario(), [frame], conditions, new Coverage());
      return false;
    } catch {
      return true;
    }
  };
  const alone = frames.filter(failsAlone);
  return alone.length > 0 ? alone : frames;
}

/**
 * Checks the batch property for `batches` seeded runs on one scenario
 * (rebuilt after a failure, which may leave slots taken); on failure saves
 * the shrunk batch to the corpus and fails with fast-check's report.
 */
function fuzz(property: string, frameArb: fc.Arbitrary<FuzzFrame>, batches: number, minFrames: number): Coverage {
  let scenario = buildScenario();
  const coverage = new Coverage();
  const details = fc.check(
    fc.property(batchOf(frameArb), conditionsArb, (frames, conditions) => {
      try {
        feedBatch(scenario, frames, conditions, coverage);
      } catch (error) {
        scenario = buildScenario();
        throw error;
      }
    }),
    { seed: SEED, numRuns: batches },
  );
  if (details.failed) {
    const saved = details.counterexample === null ? [] : saveToCorpus(property, culprits(...details.counterexample));
    const error = details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance);
    assert.fail(`${fc.defaultReportMessage(details)}\n\n${error}\n\nSaved to the corpus:\n${saved.join('\n')}`);
  }
  assert.ok(coverage.frames >= minFrames, `only ${coverage.frames} frames fed`);
  return coverage;
}

// ---------------------------------------------------------------------------

test('corpus: every frame that once broke the pipeline passes, traced or not', async (t) => {
  const corpus = readCorpus();
  assert.ok(corpus.length > 0, `no corpus in ${CORPUS_DIR}`);
  for (const { name, frame } of corpus) {
    await t.test(name, () => {
      for (const traced of [false, true]) feedBatch(buildScenario(), [frame], { traced, secondsBefore: 0 }, new Coverage());
    });
  }
});

test(`random byte strings, 0-${MAX_FUZZ_FRAME} bytes (seed ${SEED})`, (t) => {
  const coverage = fuzz('random', randomFrameArb, RANDOM_BATCHES, MIN_RANDOM_FRAMES);
  t.diagnostic(`${coverage.frames} frames, drops: ${[...coverage.dropReasons].join(' ')}`);
  for (const reason of ['truncated', 'unknown-ethertype', 'invalid-vif'] satisfies DropReason[]) {
    assert.ok(coverage.dropReasons.has(reason), `never dropped as ${reason}`);
  }
});

/**
 * Drops the mutations must reach. Not listed: what this scenario cannot
 * produce (it has no discard nexthop, empty composite, label to a non-local
 * nexthop or route between its two VNs, and headroom always suffices) and
 * what needs several mutated frames to line up (a full flow table, fragments
 * past the hold limits, an ICMP error quoting a known flow).
 */
const REASONS_MUTATIONS_MUST_REACH: DropReason[] = [
  'truncated',
  'unknown-ethertype',
  'ipv6-chain-truncated', // an IPv4 frame retyped as IPv6: its flags byte reads as a hop-by-hop header
  'bad-ip-header',
  'bad-checksum',
  'invalid-vif',
  'arp-not-proxied',
  'no-route',
  'ttl-expired',
  'not-for-vrouter',
  'invalid-protocol',
  'invalid-label',
  'invalid-mpls-stack',
  'mpls-ttl-expired',
  'bad-gre-header',
  'fragmented-tunnel',
  'fragment-needed',
  'spoofed-source',
  'invalid-tunnel-source',
  'fragment-overlap',
  'fragment-timeout',
];

test(`mutations of valid frames (seed ${SEED})`, (t) => {
  const coverage = fuzz('mutation', mutatedFrameArb, MUTATION_BATCHES, MIN_MUTATED_FRAMES);
  t.diagnostic(`${coverage.frames} frames, ${coverage.generated} ICMP errors, drops: ${[...coverage.dropReasons].join(' ')}`);
  for (const reason of REASONS_MUTATIONS_MUST_REACH) {
    assert.ok(coverage.dropReasons.has(reason), `never dropped as ${reason}`);
  }
  assert.ok(coverage.generated > 0, 'no ICMP error generated');
  assert.deepEqual([...coverage.transmittedOn].sort(), [0, 1, 2, 3], 'something transmitted on every vif');
});
