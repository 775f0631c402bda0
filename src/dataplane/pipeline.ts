/**
 * The packet path. A received packet runs through these steps; each returns
 * the next step, TRANSMIT or a drop with its reason:
 *
 *   ethernet-input ─┬─ arp ──> arp-proxy ──> (reply out the ingress vif)
 *                   ├─ ipv6 ─> ipv6-input ─┬─ neighbour discovery ─> nd-proxy ─> (reply out the ingress vif)
 *                   │                      └─ from a pod ──> source-check ──────────────────────────────┤
 *                   └─ ipv4 ─> ipv4-input ─┬─ from a pod ──> source-check ──────────────────────────────┤
 *                                          └─ from fabric ─> tunnel-decap ─> mpls-input                 │
 *                          ─> inner-ipv4-input or inner-ipv6-input ─> tunnel-source-check ──────────────┤
 *   flow-lookup <───────────────────────────────────────────────────────────────────────────────────────┘
 *     ─(miss)─> flow-setup ─> flow-apply ─┬─ from a pod ──> ipv4-lookup ─> ttl-decrement ─> nat-rewrite ─> nexthop
 *     ─(hit)──────────────────┘           │   (IPv6:        ipv6-lookup ─> hop-limit-decrement ─> nat-rewrite)
 *                                         └─ from fabric ─> nat-rewrite ─> nexthop (the label's)
 *   nexthop ─┬─ encap / receive ─> encap-rewrite ─> (out the pod's or host's vif)
 *            ├─ tunnel ─────────> tunnel-encap ──> (out the fabric vif)
 *            └─ composite: the flow's ECMP member first
 *
 * Every step is declared once below with its name and trace formatter; the
 * untraced loop pays nothing for tracing. The pipeline never throws on
 * packet contents: each packet is transmitted or counted under one drop
 * reason, so received + generated = transmitted + dropped + held (fragments
 * waiting for their first fragment).
 */
import { FlowRevaluation } from './flow-revaluation';
import { Dataplane } from './dataplane';
import { DROP_REASONS, Drop } from './drop-reasons';
import { FlowKey, FlowKey6, FlowTable } from './flow-table';
import { CAPTURE_RX, CAPTURE_TX, Observers } from './observers';
import { FragmentTable } from './fragment-table';
import { NexthopTable } from './nexthop';
import { MplsLabelTable } from './mpls-labels';
import { PacketPool } from './packet-pool';
import { Vif } from './vif';
import { Vrf } from './vrf';
import { arpProxy, describeArpProxy } from './steps/arp-proxy';
import { describeEncapRewrite, encapRewrite } from './steps/encap-rewrite';
import { describeEthernetInput, ethernetInput } from './steps/ethernet-input';
import { describeIpv4Input, innerIpv4Input, ipv4Input } from './steps/ipv4-input';
import { describeIpv4Lookup, ipv4Lookup } from './steps/ipv4-lookup';
import { describeIpv6Input, innerIpv6Input, ipv6Input } from './steps/ipv6-input';
import { describeHopLimitDecrement, describeIpv6Lookup, hopLimitDecrement, ipv6Lookup } from './steps/ipv6-lookup';
import { ALL_NODES, ALL_NODES_MAC, describeNdProxy, ndProxy, writeRouterAdvertisement } from './steps/nd-proxy';
import { describeNexthop, nexthop } from './steps/nexthop';
import { describeFlowApply, describeFlowLookup, describeFlowSetup, flowApply, flowLookup, flowSetup } from './steps/flow';
import { describeNatRewrite, natRewrite } from './steps/nat-rewrite';
import { FLOW_APPLY, HELD, TRANSMIT, dropReasonOf, ETHERNET_INPUT } from './steps/next';
import { describeSourceCheck, describeTunnelSourceCheck, sourceCheck, tunnelSourceCheck } from './steps/source-check';
import { describeTtlDecrement, ttlDecrement } from './steps/ttl-decrement';
import { describeMplsInput, describeTunnelDecap, mplsInput, tunnelDecap } from './steps/tunnel-decap';
import { describeTunnelEncap, tunnelEncap } from './steps/tunnel-encap';

export interface Step {
  readonly name: string;
  process(c: Pipeline, p: number): number;
  /** One line about what the step decided; only the trace calls it. */
  describe(c: Pipeline, p: number, next: number): string;
}

/** Indexed by the step ids of steps/next.ts. */
export const STEPS: readonly Step[] = [
  { name: 'ethernet-input', process: ethernetInput, describe: describeEthernetInput },
  { name: 'arp-proxy', process: arpProxy, describe: describeArpProxy },
  { name: 'ipv4-input', process: ipv4Input, describe: describeIpv4Input },
  { name: 'tunnel-decap', process: tunnelDecap, describe: describeTunnelDecap },
  { name: 'inner-ipv4-input', process: innerIpv4Input, describe: describeIpv4Input },
  { name: 'ipv4-lookup', process: ipv4Lookup, describe: describeIpv4Lookup },
  { name: 'ttl-decrement', process: ttlDecrement, describe: describeTtlDecrement },
  { name: 'nexthop', process: nexthop, describe: describeNexthop },
  { name: 'encap-rewrite', process: encapRewrite, describe: describeEncapRewrite },
  { name: 'tunnel-encap', process: tunnelEncap, describe: describeTunnelEncap },
  { name: 'source-check', process: sourceCheck, describe: describeSourceCheck },
  { name: 'tunnel-source-check', process: tunnelSourceCheck, describe: describeTunnelSourceCheck },
  { name: 'flow-lookup', process: flowLookup, describe: describeFlowLookup },
  { name: 'flow-setup', process: flowSetup, describe: describeFlowSetup },
  { name: 'flow-apply', process: flowApply, describe: describeFlowApply },
  { name: 'nat-rewrite', process: natRewrite, describe: describeNatRewrite },
  { name: 'mpls-input', process: mplsInput, describe: describeMplsInput },
  { name: 'ipv6-input', process: ipv6Input, describe: describeIpv6Input },
  { name: 'inner-ipv6-input', process: innerIpv6Input, describe: describeIpv6Input },
  { name: 'nd-proxy', process: ndProxy, describe: describeNdProxy },
  { name: 'ipv6-lookup', process: ipv6Lookup, describe: describeIpv6Lookup },
  { name: 'hop-limit-decrement', process: hopLimitDecrement, describe: describeHopLimitDecrement },
];

/** Receives the lines of a packet trace. */
export type TraceSink = (line: string) => void;

export class Pipeline {
  readonly dp: Dataplane;
  readonly pool: PacketPool;
  /** Views of the dataplane tables the steps read (their arrays are live). */
  readonly vifs: (Vif | null)[];
  readonly vrfs: (Vrf | null)[];
  readonly labels: MplsLabelTable;
  readonly underlayIp: number;
  readonly flows: FlowTable;
  readonly fragments = new FragmentTable();
  /** Re-evaluates existing flows after a policy change, a slice after each batch (and when idle: the driver's call). */
  readonly revaluation: FlowRevaluation;
  readonly observers = new Observers();
  /** Drops per VRF (the VRF the packet was in when dropped), for per-VN reporting. */
  readonly vrfDrops = new Float64Array(4096);
  /** Set while `traceOnly` runs a synthetic packet: steps then change no shared state. */
  dryRun = false;
  /** When set, every packet's path is described step by step. */
  trace: TraceSink | null = null;
  received = 0;
  transmitted = 0;
  /** Coarse clock in seconds, set by the driver: flow aging and fragment timeouts. */
  now = 0;
  /** Scratch keys for flow setup, reused so creating a flow allocates nothing. */
  readonly forwardKey: FlowKey = { vrf: 0, protocol: 0, src: 0, dst: 0, srcPort: 0, dstPort: 0 };
  readonly reverseKey: FlowKey = { vrf: 0, protocol: 0, src: 0, dst: 0, srcPort: 0, dstPort: 0 };
  readonly forwardKey6: FlowKey6 = { vrf: 0, protocol: 0, addresses: new Uint8Array(32), srcPort: 0, dstPort: 0 };
  readonly reverseKey6: FlowKey6 = { vrf: 0, protocol: 0, addresses: new Uint8Array(32), srcPort: 0, dstPort: 0 };

  private ipId = 0;
  /** Vifs sent to during the current batch, flushed at its end. */
  private readonly touched: Int32Array;
  private touchedCount = 0;
  private readonly touchedMark: Uint8Array;
  /**
   * Packets to run after the current one, each from its own step: held
   * fragments released by their first fragment, fragments the vrouter cut.
   */
  private readonly released: Int32Array;
  private readonly releasedStep: Int32Array;
  private releasedCount = 0;
  /** A flow pair to remove once the current packet has left (TCP close). */
  private closingEntry = -1;

  constructor(dp: Dataplane, pool: PacketPool) {
    this.dp = dp;
    this.pool = pool;
    this.vifs = dp.vifs.byId;
    this.vrfs = dp.vrfs.byId;
    this.labels = dp.labels;
    this.underlayIp = dp.node.underlayIp;
    this.touched = new Int32Array(4096);
    this.touchedMark = new Uint8Array(4096);
    this.flows = dp.flows;
    this.revaluation = new FlowRevaluation(dp.flows, dp.policy);
    this.released = new Int32Array(pool.slots);
    this.releasedStep = new Int32Array(pool.slots);
  }

  /** The nexthop table can be regrown by the control plane, so read it through the dataplane. */
  get nexthops(): NexthopTable {
    return this.dp.nexthops;
  }

  /** Identification for IPv4 headers the vrouter writes (outer headers, ICMP errors). */
  nextIpId(): number {
    this.ipId = (this.ipId + 1) & 0xffff;
    return this.ipId;
  }

  /** Packets held aside (fragments waiting for their first fragment). */
  get held(): number {
    return this.fragments.held;
  }

  /** Sets the coarse clock and ages flows and fragments against it. */
  advanceClock(seconds: number): void {
    this.now = seconds >>> 0;
    this.flows.age(this.now);
    this.fragments.age(this, this.now);
    this.observers.tick(this.now);
  }

  /**
   * Runs a synthetic packet through the real steps from `entry` and
   * describes each decision, without sending it or counting it anywhere
   * (a flow it creates is removed again): `vrouter trace`.
   */
  traceOnly(p: number, entry: number, trace: TraceSink): void {
    const pairsBefore = this.flows.activePairs;
    this.dryRun = true;
    try {
      const next = this.runTraced(p, entry, trace);
      if (next === TRANSMIT) trace('  (not sent: trace only)');
    } finally {
      this.dryRun = false;
      const entryIndex = this.pool.flowEntry[p];
      if (entryIndex >= 0 && this.flows.activePairs > pairsBefore) this.flows.removePair(entryIndex);
      this.closingEntry = -1;
      for (let i = 0; i < this.releasedCount; i++) this.pool.free(this.released[i]);
      this.releasedCount = 0;
    }
  }

  /**
   * Sends an unsolicited router advertisement to all nodes out a pod's vif
   * (its port just came up), so the pod learns its IPv6 default route
   * without waiting to solicit one. False when the vif has no IPv6 address,
   * its VN no IPv6 gateway, or the pool no free slot.
   */
  advertiseRouter(vifId: number): boolean {
    const vif = this.vifs[vifId];
    const vrf = vif === null || vif === undefined ? null : this.vrfs[vif.vrf];
    if (vif === null || vif === undefined || vif.ip6 === null || vrf === null || vrf === undefined || vrf.gateway6 === null) return false;
    const slot = this.pool.alloc();
    if (slot < 0) return false;
    const start = this.pool.start[slot];
    const length = writeRouterAdvertisement(this.pool.data, start, vif, vrf, ALL_NODES, ALL_NODES_MAC);
    this.pool.length[slot] = length;
    this.dp.generated++;
    this.transmitted++;
    vif.txPackets++;
    vif.txBytes += length;
    if (this.observers.capturing[vif.id] !== 0) this.observers.captureFrame(this.pool, slot, CAPTURE_TX, vif.id);
    vif.port.send(this.pool.data, start, length);
    vif.port.flush();
    this.pool.free(slot);
    return true;
  }

  /** Removes the packet's flow pair after the packet has been forwarded. */
  closeFlowAfter(p: number): void {
    this.closingEntry = this.pool.flowEntry[p];
  }

  /** Copies a packet into a slot of its own to hold it; -1 when the pool is exhausted. */
  copyToHeld(p: number): number {
    const pool = this.pool;
    const slot = pool.alloc();
    if (slot < 0) return -1;
    const from = pool.start[p];
    const to = pool.start[slot];
    pool.data.copyWithin(to, from, from + pool.length[p]);
    pool.length[slot] = pool.length[p];
    pool.ingressVif[slot] = pool.ingressVif[p];
    pool.vrf[slot] = pool.vrf[p];
    pool.l3[slot] = pool.l3[p] - from + to;
    pool.l4[slot] = -1;
    pool.hash[slot] = pool.hash[p];
    pool.ports[slot] = pool.ports[p];
    pool.nexthop[slot] = pool.nexthop[p];
    pool.outerSrc[slot] = pool.outerSrc[p];
    pool.upperProtocol[slot] = pool.upperProtocol[p];
    pool.fragmentHeader[slot] = pool.fragmentHeader[p] < 0 ? -1 : pool.fragmentHeader[p] - from + to;
    return slot;
  }

  /** A held fragment may go on, in its first fragment's flow. */
  releaseHeld(slot: number, entry: number): void {
    this.pool.flowEntry[slot] = entry;
    this.runAfter(slot, FLOW_APPLY);
  }

  /** Queues a packet the pipeline made (or held) to run from `step` once the current packet is done. */
  runAfter(slot: number, step: number): void {
    this.released[this.releasedCount] = slot;
    this.releasedStep[this.releasedCount] = step;
    this.releasedCount++;
  }

  dropHeld(slot: number, reason: number): void {
    this.dp.drops.count(reason);
    this.pool.free(slot);
  }

  /** An ICMP error replaced a packet dropped for `reason`. */
  countGenerated(reason: number): void {
    if (this.dryRun) return;
    this.dp.drops.count(reason);
    this.dp.generated++;
  }

  /**
   * Runs a batch of received packets (slots with ingressVif set) to
   * completion and flushes the ports sent to. The caller owns the slots.
   * `entry` is the first step: ethernet-input for frames; a port that
   * receives without link headers enters later (ipv4-input for an IP packet
   * at pool.l3, mpls-input for a label stack at pool.l4).
   */
  processBatch(slots: Int32Array, count: number, entry = ETHERNET_INPUT): void {
    if (this.trace !== null) {
      for (let i = 0; i < count; i++) this.processTraced(slots[i], this.trace, entry);
    } else {
      for (let i = 0; i < count; i++) this.process(slots[i], entry);
    }
    this.flush();
    if (this.revaluation.pending) this.revaluation.step();
  }

  /** Finishes a re-evaluation walk at once (tools and tests; the packet path takes it a slice at a time). */
  revaluateFlows(): void {
    while (this.revaluation.pending) this.revaluation.step();
  }

  private process(p: number, entry: number): void {
    if (!this.accept(p)) return;
    let next = entry;
    while (next >= 0) next = STEPS[next].process(this, p);
    this.finish(p, next);
    if (this.releasedCount > 0) this.runReleased(null);
  }

  private processTraced(p: number, trace: TraceSink, entry: number): void {
    const vif = this.vifs[this.pool.ingressVif[p]];
    trace(`packet ${this.received + 1}: in vif ${this.pool.ingressVif[p]}${vif ? ` (${vif.name})` : ''}, ${this.pool.length[p]} bytes`);
    if (!this.accept(p)) {
      trace('  drop: invalid-vif');
      return;
    }
    this.finish(p, this.runTraced(p, entry, trace));
    if (this.releasedCount > 0) this.runReleased(trace);
  }

  private runTraced(p: number, first: number, trace: TraceSink): number {
    let next = first;
    while (next >= 0) {
      const step = STEPS[next];
      next = step.process(this, p);
      trace(`  ${step.name}: ${step.describe(this, p, next)}`);
    }
    if (next === TRANSMIT) {
      const out = this.vifs[this.pool.egressVif[p]];
      trace(`  transmit: vif ${this.pool.egressVif[p]}${out ? ` (${out.name})` : ''}, ${this.pool.length[p]} bytes`);
    } else if (next === HELD) {
      trace('  held: waiting for the first fragment');
    } else {
      trace(`  drop: ${DROP_REASONS[dropReasonOf(next)]}`);
    }
    return next;
  }

  /** Runs the queued packets, then frees their slots. */
  private runReleased(trace: TraceSink | null): void {
    for (let i = 0; i < this.releasedCount; i++) {
      const slot = this.released[i];
      let next = this.releasedStep[i];
      if (trace !== null) {
        trace(`then fragment from vif ${this.pool.ingressVif[slot]}, ${this.pool.length[slot]} bytes, from ${STEPS[next].name}`);
        next = this.runTraced(slot, next, trace);
      } else {
        while (next >= 0) next = STEPS[next].process(this, slot);
      }
      this.finish(slot, next);
      this.pool.free(slot);
    }
    this.releasedCount = 0;
  }

  /** Counts the packet in; false (and counted as a drop) when its vif does not exist. */
  private accept(p: number): boolean {
    this.received++;
    const vif = this.vifs[this.pool.ingressVif[p]];
    if (vif === null || vif === undefined) {
      this.dp.drops.count(Drop['invalid-vif']);
      return false;
    }
    vif.rxPackets++;
    vif.rxBytes += this.pool.length[p];
    if (this.observers.capturing[vif.id] !== 0) this.observers.captureFrame(this.pool, p, CAPTURE_RX, vif.id);
    return true;
  }

  private finish(p: number, next: number): void {
    if (this.closingEntry >= 0) {
      this.flows.removePair(this.closingEntry);
      this.closingEntry = -1;
    }
    if (next === HELD) return;
    const pool = this.pool;
    if (next !== TRANSMIT) {
      const reason = dropReasonOf(next);
      this.dp.drops.count(reason);
      if (pool.vrf[p] >= 0) this.vrfDrops[pool.vrf[p]]++;
      if (this.observers.dropRing !== null) this.observers.recordDrop(pool, p, reason);
      return;
    }
    const vifId = pool.egressVif[p];
    const vif = this.vifs[vifId]!;
    const length = pool.length[p];
    vif.txPackets++;
    vif.txBytes += length;
    this.transmitted++;
    if (this.observers.capturing[vifId] !== 0) this.observers.captureFrame(pool, p, CAPTURE_TX, vifId);
    vif.port.send(pool.data, pool.start[p], length);
    if (this.touchedMark[vifId] === 0 && vifId < this.touchedMark.length) {
      this.touchedMark[vifId] = 1;
      this.touched[this.touchedCount++] = vifId;
    }
  }

  private flush(): void {
    for (let i = 0; i < this.touchedCount; i++) {
      const vifId = this.touched[i];
      this.touchedMark[vifId] = 0;
      this.vifs[vifId]?.port.flush();
    }
    this.touchedCount = 0;
  }
}
