/**
 * What `vrouter run` keeps so that a restart (SIGTERM or SIGKILL, then
 * start) loses no connection: the ports it made (the pods' veth pairs stay
 * in place across the restart and are re-attached), the routes it was given
 * (PUT /route) or learned from the control nodes, and the flows with their
 * NAT and ECMP decisions and TCP state (IPv4 and IPv6).
 *
 * When: every SNAPSHOT_INTERVAL_MS while running and once more on SIGTERM,
 * written atomically (a temporary file renamed over the old one), so a
 * SIGKILL leaves the last whole snapshot. Loaded once at start, before the
 * API listens and before the control channel is up. A snapshot of another
 * version or node, or one that does not parse, is ignored with the reason
 * logged: the daemon starts empty as before. Flows are restored only when
 * the state file is the one they were decided under (its digest): with a
 * changed configuration every flow is decided again from its next packet.
 *
 * The worker half (exportFlows, importFlows) runs in the dataplane worker on
 * its flow table; the rest runs in the main thread.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import type { PortAddRequest } from '../control/agent/port-api';
import type { LocalPort, PortConfig } from '../control/agent/agent-interface';
import type { RouteNexthop } from '../dataplane/route-programmer';
import type { Dataplane } from '../dataplane/dataplane';
import { FLOW_FAMILY_IPV6, FlowKey6 } from '../dataplane/flow-table';
import { flowHash, flowHash6 } from '../dataplane/flow-hash';
import { ip6FromString, ip6ToString } from '../dataplane/protocols/ipv6';

export const SNAPSHOT_VERSION = 1;
/** How often the running daemon saves its snapshot (what a SIGKILL can lose: flows newer than this). */
export const SNAPSHOT_INTERVAL_MS = 500;

/** A port the daemon made for a pod, with what it needs to be made again on the same devices. */
export interface SnapshotPort {
  request: PortAddRequest;
  vif: number;
  label: number;
  tapName: string;
  /** A port a control node configured: as reported to it, and its last configuration. */
  control?: { port: LocalPort; config: PortConfig };
}

export interface SnapshotRoute {
  vrf: string;
  prefix: string;
  nexthops: RouteNexthop[];
}

/** One side of a flow pair (the table's columns for that entry). */
export interface SnapshotFlowEntry {
  /** IPv4: the addresses; 0 in an IPv6 pair, which has src6 and dst6. */
  src: number;
  dst: number;
  /** IPv6 pairs: the addresses as text. */
  src6?: string;
  dst6?: string;
  /** src port << 16 | dst port. */
  ports: number;
  action: number;
  nat: number;
  ecmpSlot: number;
  tcpAck: number;
  tcpSeq: number;
}

export interface SnapshotFlowPair {
  /** By name: VRF ids are given out in order of use and may differ after a restart. */
  vrf: string;
  protocol: number;
  /** Pair state bits (replied, TCP SYN/ACK/FIN seen). */
  state: number;
  vif: number;
  forward: SnapshotFlowEntry;
  reverse: SnapshotFlowEntry;
  /** What the verdict was made from (VN names, the NAT wanted if allowed), for re-evaluating it after a policy change. */
  policy?: { sourceVn: string; destinationVn: string; nat: number };
}

export interface DaemonSnapshot {
  version: typeof SNAPSHOT_VERSION;
  node: string;
  savedAt: string;
  /** sha256 of the state file text the flows were decided under. */
  stateDigest: string;
  ports: SnapshotPort[];
  /** Routes given through the port API (PUT /route). */
  routes: SnapshotRoute[];
  /** Routes the control client programmed (restored as stale: the control nodes' End-of-RIB sweeps what they no longer have). */
  controlRoutes: SnapshotRoute[];
  flows: SnapshotFlowPair[];
}

/** `<state file>.snapshot.json`: next to the state file, as the ports directory. */
export function defaultSnapshotFile(stateFile: string): string {
  return `${stateFile}.snapshot.json`;
}

export function stateDigest(stateText: string): string {
  return createHash('sha256').update(stateText).digest('hex');
}

/** Writes the snapshot whole or not at all: a temporary file, fsynced, renamed over the old one. */
export function saveSnapshot(file: string, snapshot: DaemonSnapshot): void {
  const temporary = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(temporary, 'w', 0o600);
  try {
    fs.writeSync(fd, JSON.stringify(snapshot));
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(temporary, file);
}

export type LoadedSnapshot = { snapshot: DaemonSnapshot } | { snapshot: null; reason: string | null };

/** The snapshot in file, or null with why it is not used (reason null: there is none). */
export function loadSnapshot(file: string, node: string): LoadedSnapshot {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { snapshot: null, reason: null };
    return { snapshot: null, reason: `unreadable: ${(error as Error).message}` };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return { snapshot: null, reason: `not JSON: ${(error as Error).message}` };
  }
  const reason = snapshotProblem(value, node);
  return reason === null ? { snapshot: value as DaemonSnapshot } : { snapshot: null, reason };
}

function snapshotProblem(value: unknown, node: string): string | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'not an object';
  const candidate = value as Record<string, unknown>;
  if (candidate.version !== SNAPSHOT_VERSION) return `version ${JSON.stringify(candidate.version)}, this daemon reads ${SNAPSHOT_VERSION}`;
  if (candidate.node !== node) return `taken by node ${JSON.stringify(candidate.node)}, this is ${node}`;
  if (typeof candidate.stateDigest !== 'string') return 'field /stateDigest is not a string';
  for (const field of ['ports', 'routes', 'controlRoutes', 'flows']) {
    if (!Array.isArray(candidate[field])) return `field /${field} is not an array`;
  }
  for (const [index, port] of (candidate.ports as unknown[]).entries()) {
    const entry = port as Partial<SnapshotPort> | null;
    if (typeof entry !== 'object' || entry === null || typeof entry.request?.id !== 'string' || !Number.isInteger(entry.vif) || !Number.isInteger(entry.label) || typeof entry.tapName !== 'string')
      return `field /ports/${index}: not a port (request.id, vif, label, tapName)`;
  }
  for (const field of ['routes', 'controlRoutes']) {
    for (const [index, route] of (candidate[field] as unknown[]).entries()) {
      const entry = route as Partial<SnapshotRoute> | null;
      if (typeof entry !== 'object' || entry === null || typeof entry.vrf !== 'string' || typeof entry.prefix !== 'string' || !Array.isArray(entry.nexthops))
        return `field /${field}/${index}: not a route (vrf, prefix, nexthops)`;
    }
  }
  for (const [index, pair] of (candidate.flows as unknown[]).entries()) {
    const entry = pair as Partial<SnapshotFlowPair> | null;
    if (typeof entry !== 'object' || entry === null || typeof entry.vrf !== 'string' || !Number.isInteger(entry.protocol) || typeof entry.forward !== 'object' || typeof entry.reverse !== 'object')
      return `field /flows/${index}: not a flow pair (vrf, protocol, forward, reverse)`;
    const policy = entry.policy;
    if (policy !== undefined && (typeof policy !== 'object' || policy === null || typeof policy.sourceVn !== 'string' || typeof policy.destinationVn !== 'string' || !Number.isInteger(policy.nat) || policy.nat < 0 || policy.nat > 15))
      return `field /flows/${index}/policy: expected sourceVn and destinationVn (names) and nat (0..15)`;
    for (const side of [entry.forward, entry.reverse]) {
      const ipv6 = side?.src6 !== undefined || side?.dst6 !== undefined;
      if (ipv6 && (typeof side?.src6 !== 'string' || typeof side.dst6 !== 'string')) return `field /flows/${index}: an IPv6 side needs src6 and dst6 as text`;
    }
  }
  return null;
}

/**
 * The routes given to the dataplane, by VRF and prefix, as they were last
 * set: what a restart programs again.
 */
export class RouteJournal {
  private readonly routes = new Map<string, SnapshotRoute>();

  set(vrf: string, prefix: string, nexthops: RouteNexthop[]): void {
    if (nexthops.length === 0) this.routes.delete(`${vrf} ${prefix}`);
    else this.routes.set(`${vrf} ${prefix}`, { vrf, prefix, nexthops });
  }

  delete(vrf: string, prefix: string): void {
    this.routes.delete(`${vrf} ${prefix}`);
  }

  list(): SnapshotRoute[] {
    return [...this.routes.values()];
  }
}

/**
 * Active pairs one export request gives at most: each becomes an object the
 * worker clones to the main thread, so the tens of thousands of flows of
 * bench:reconfig in one request kept the worker from its ports for 130-290
 * ms at each periodic snapshot.
 */
export const EXPORT_SLICE_PAIRS = 2048;

/**
 * Worker side: the active flow pairs, IPv4 and IPv6, from pair slot
 * `fromPair` on, at most `maxPairs` of them; `next` is the slot to go on
 * from, null at the end. Between slices the worker forwards: a pair made or
 * moved meanwhile may be missed or given twice (the import keeps the last).
 */
export function exportFlows(dp: Dataplane, fromPair = 0, maxPairs = Number.POSITIVE_INFINITY): { pairs: SnapshotFlowPair[]; next: number | null } {
  const flows = dp.flows;
  const pairs: SnapshotFlowPair[] = [];
  const side = (entry: number): SnapshotFlowEntry => {
    const decisions = {
      ports: flows.keyPorts[entry],
      action: flows.action[entry],
      nat: flows.natFlags[entry],
      ecmpSlot: flows.ecmpSlot[entry],
      tcpAck: flows.tcpAck[entry],
      tcpSeq: flows.tcpSeq[entry],
    };
    if (!flows.isIpv6(entry)) return { src: flows.keySrc[entry], dst: flows.keyDst[entry], ...decisions };
    const at = flows.address6Offset(entry);
    return { src: 0, dst: 0, src6: ip6ToString(flows.keyAddress6, at), dst6: ip6ToString(flows.keyAddress6, at + 16), ...decisions };
  };
  const end = flows.capacity / 2;
  for (let pair = fromPair; pair < end; pair++) {
    if (pairs.length >= maxPairs) return { pairs, next: pair };
    const entry = pair * 2;
    if (!flows.isActive(entry)) continue;
    const vrf = dp.vrfs.get(flows.keyVrf[entry] & ~FLOW_FAMILY_IPV6);
    if (!vrf) continue;
    const sourceVn = dp.vrfs.get(flows.policySourceVn[pair]);
    const destinationVn = dp.vrfs.get(flows.policyDestinationVn[pair]);
    const policy = sourceVn && destinationVn ? { policy: { sourceVn: sourceVn.name, destinationVn: destinationVn.name, nat: flows.natWanted[pair] } } : {};
    pairs.push({ vrf: vrf.name, protocol: flows.keyProtocol[entry], state: flows.pairState[pair], vif: flows.pairVif[pair], forward: side(entry), reverse: side(entry + 1), ...policy });
  }
  return { pairs, next: null };
}

/**
 * Worker side: creates the pairs again, decisions and TCP state as they
 * were; a pair whose VRF no longer exists, or whose IPv6 address does not
 * parse, is skipped. A pair the first packets after the restart made
 * already (on a port the state file opens, which forwards before the
 * snapshot is restored) gives way to the snapshot's: a reply seen first
 * would have made a pair the wrong way round, without the NAT. Returns how
 * many were restored.
 */
export function importFlows(dp: Dataplane, pairs: SnapshotFlowPair[], now: number): number {
  const flows = dp.flows;
  const vrfByName = new Map([...dp.vrfs].map((vrf) => [vrf.name, vrf.id]));
  let restored = 0;
  for (const pair of pairs) {
    const vrf = vrfByName.get(pair.vrf);
    if (vrf === undefined) continue;
    const vif = pair.vif >= 0 && dp.vifs.get(pair.vif) ? pair.vif : -1;
    const entry = pair.forward.src6 === undefined ? createPair(dp, vrf, pair, now, vif) : createPair6(dp, vrf, pair, now, vif);
    if (entry === null) continue;
    if (entry < 0) break;
    for (const [at, side] of [[entry, pair.forward], [entry + 1, pair.reverse]] as const) {
      flows.action[at] = side.action;
      flows.natFlags[at] = side.nat;
      flows.ecmpSlot[at] = side.ecmpSlot;
      flows.tcpAck[at] = side.tcpAck;
      flows.tcpSeq[at] = side.tcpSeq;
    }
    flows.pairState[entry >>> 1] = pair.state;
    const sourceVn = pair.policy && vrfByName.get(pair.policy.sourceVn);
    const destinationVn = pair.policy && vrfByName.get(pair.policy.destinationVn);
    if (sourceVn !== undefined && destinationVn !== undefined) {
      flows.policySourceVn[entry >>> 1] = sourceVn;
      flows.policyDestinationVn[entry >>> 1] = destinationVn;
      flows.natWanted[entry >>> 1] = pair.policy!.nat;
    }
    restored++;
  }
  return restored;
}

/** The IPv4 pair made again (over any pair of the same keys); -1: the table is full. */
function createPair(dp: Dataplane, vrf: number, pair: SnapshotFlowPair, now: number, vif: number): number {
  const key = (entry: SnapshotFlowEntry) => ({ vrf, protocol: pair.protocol, src: entry.src, dst: entry.dst, srcPort: entry.ports >>> 16, dstPort: entry.ports & 0xffff });
  const forwardKey = key(pair.forward);
  const reverseKey = key(pair.reverse);
  for (const taken of [lookupKey(dp, forwardKey), lookupKey(dp, reverseKey)]) if (taken >= 0) dp.flows.removePair(taken);
  return dp.flows.create(forwardKey, reverseKey, now, vif);
}

/** The IPv6 pair made again (over any pair of the same keys); -1: the table is full; null: an address that does not parse. */
function createPair6(dp: Dataplane, vrf: number, pair: SnapshotFlowPair, now: number, vif: number): number | null {
  const key = (entry: SnapshotFlowEntry) => {
    const addresses = new Uint8Array(32);
    addresses.set(ip6FromString(entry.src6!), 0);
    addresses.set(ip6FromString(entry.dst6!), 16);
    return { vrf, protocol: pair.protocol, addresses, srcPort: entry.ports >>> 16, dstPort: entry.ports & 0xffff };
  };
  let forwardKey: FlowKey6;
  let reverseKey: FlowKey6;
  try {
    forwardKey = key(pair.forward);
    reverseKey = key(pair.reverse);
  } catch {
    return null;
  }
  for (const { addresses, protocol, srcPort, dstPort } of [forwardKey, reverseKey]) {
    const taken = dp.flows.lookup6(vrf, protocol, addresses, 0, 16, (srcPort << 16) | dstPort, flowHash6(vrf, addresses, 0, 16, protocol, srcPort, dstPort));
    if (taken >= 0) dp.flows.removePair(taken);
  }
  return dp.flows.create6(forwardKey, reverseKey, now, vif);
}

function lookupKey(dp: Dataplane, key: { vrf: number; protocol: number; src: number; dst: number; srcPort: number; dstPort: number }): number {
  const ports = (key.srcPort << 16) | key.dstPort;
  return dp.flows.lookup(key.vrf, key.protocol, key.src >>> 0, key.dst >>> 0, ports, flowHash(key.vrf, key.src, key.dst, key.protocol, key.srcPort, key.dstPort));
}
