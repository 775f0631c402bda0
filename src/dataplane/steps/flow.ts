/**
 * The flow steps. Every IP packet from a pod or out of a tunnel belongs to
 * a flow pair, decided once on the flow's first packet (IPv6 lookup and
 * setup: flow6.ts; flow-apply serves both):
 *
 *   flow-lookup  key (VRF, protocol, src, dst, ports) -> entry; an ICMP error
 *                is matched through the packet it quotes, a later fragment
 *                through its datagram's first fragment
 *   flow-setup   on a miss: destination (route, ECMP member, or the MPLS
 *                label's pod), floating IP -> DNAT, policy verdict; creates
 *                the forward and reverse entries together
 *   flow-apply   per packet: counters, TCP life cycle, drop verdict, the
 *                flow's ECMP member for sticky load balancing
 */
import type { Pipeline } from '../pipeline';
import { Drop } from '../drop-reasons';
import { flowHash } from '../flow-hash';
import { FLOW_ACTION_NAMES, FLOW_DROP, NAT_DNAT, NAT_DPAT } from '../flow-table';
import { NH_COMPOSITE, NH_ENCAP, NH_KIND_NAMES, NH_NONE } from '../nexthop';
import { ICMP_HEADER_LEN, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, isIcmpError } from '../protocols/icmp';
import { IP_MIN_HEADER_LEN, PROTO_ICMP, PROTO_TCP, PROTO_UDP, ipToString, readU32 } from '../protocols/ipv4';
import { VIF_FABRIC, Vif } from '../vif';
import type { FlowTable } from '../flow-table';
import { ip6ToString } from '../protocols/ipv6';
import { flowLookup6, flowSetup6 } from './flow6';
import { FLOW_APPLY, FLOW_SETUP, IPV4_LOOKUP, IPV6_LOOKUP, NAT_REWRITE, drop } from './next';

export function flowLookup(c: Pipeline, p: number): number {
  const pool = c.pool;
  const d = pool.data;
  const l3 = pool.l3[p];
  if (d[l3] >>> 4 === 6) return flowLookup6(c, p);
  const l4 = pool.l4[p];
  if (l4 < 0) return c.fragments.follow(c, p);
  const protocol = d[l3 + 9];
  if (protocol === PROTO_ICMP && isIcmpError(d[l4])) return lookupIcmpError(c, p, l4);
  const entry = c.flows.lookup(pool.vrf[p], protocol, readU32(d, l3 + 12), readU32(d, l3 + 16), pool.ports[p], pool.hash[p]);
  if (entry < 0) return FLOW_SETUP;
  pool.flowEntry[p] = entry;
  return FLOW_APPLY;
}

/**
 * An ICMP error travels against the packet it quotes, so it belongs to the
 * entry whose key is the quoted packet's with the ends swapped. It never
 * creates a flow of its own.
 */
function lookupIcmpError(c: Pipeline, p: number, l4: number): number {
  const pool = c.pool;
  const d = pool.data;
  const end = pool.start[p] + pool.length[p];
  const quoted = l4 + ICMP_HEADER_LEN;
  if (end - quoted < IP_MIN_HEADER_LEN) return drop(Drop.truncated);
  const quotedL4 = quoted + ((d[quoted] & 0x0f) << 2);
  if (end - quotedL4 < 8) return drop(Drop.truncated);
  const protocol = d[quoted + 9];
  let srcPort = 0;
  let dstPort = 0;
  if (protocol === PROTO_TCP || protocol === PROTO_UDP) {
    srcPort = (d[quotedL4] << 8) | d[quotedL4 + 1];
    dstPort = (d[quotedL4 + 2] << 8) | d[quotedL4 + 3];
  } else if (protocol === PROTO_ICMP && (d[quotedL4] === ICMP_ECHO_REQUEST || d[quotedL4] === ICMP_ECHO_REPLY)) {
    srcPort = (d[quotedL4 + 4] << 8) | d[quotedL4 + 5];
    dstPort = srcPort;
  }
  const vrf = pool.vrf[p];
  const src = readU32(d, quoted + 16);
  const dst = readU32(d, quoted + 12);
  const hash = flowHash(vrf, src, dst, protocol, dstPort, srcPort);
  const entry = c.flows.lookup(vrf, protocol, src, dst, (dstPort << 16) | srcPort, hash);
  if (entry < 0) return drop(Drop['icmp-error-no-flow']);
  pool.flowEntry[p] = entry;
  return FLOW_APPLY;
}

/** The VN a nexthop leads into (for a composite: its own, else its first member's), or `fallback`. */
export function nexthopVn(c: Pipeline, nexthop: number, fallback: number): number {
  const nexthops = c.nexthops;
  let vn = nexthops.vn[nexthop];
  if (vn < 0 && nexthops.kind[nexthop] === NH_COMPOSITE) {
    const members = nexthops.members[nexthop]!;
    for (let i = 0; i < members.length && vn < 0; i++) if (members[i] >= 0) vn = nexthops.vn[members[i]];
  }
  return vn < 0 ? fallback : vn;
}

export function flowSetup(c: Pipeline, p: number): number {
  const pool = c.pool;
  const d = pool.data;
  const nexthops = c.nexthops;
  const l3 = pool.l3[p];
  if (d[l3] >>> 4 === 6) return flowSetup6(c, p);
  const vrfId = pool.vrf[p];
  const vrf = c.vrfs[vrfId];
  if (vrf === null || vrf === undefined) return drop(Drop['no-route']);
  const protocol = d[l3 + 9];
  const src = readU32(d, l3 + 12);
  const dst = readU32(d, l3 + 16);
  const ports = pool.ports[p];
  const srcPort = ports >>> 16;
  const dstPort = ports & 0xffff;
  const fromFabric = c.vifs[pool.ingressVif[p]]!.kind === VIF_FABRIC;
  // From the fabric, the label's pod; a label of several local pods (a local composite) picks one by the
  // flow's hash, kept in the flow as its ECMP slot so the flow stays with that pod.
  let labelNexthop = fromFabric ? pool.nexthop[p] : -1;
  let slot = -1;
  if (fromFabric && nexthops.kind[labelNexthop] === NH_COMPOSITE) {
    slot = nexthops.selectSlot(labelNexthop, pool.hash[p]);
    if (slot < 0) return drop(Drop['ecmp-no-member']);
    labelNexthop = nexthops.members[labelNexthop]![slot];
  }
  // The pod a new flow counts against: its sender, or from the fabric its receiver (the label's). Checked
  // first, so a pod flooding new flows is refused at the least cost and cannot take others' room.
  const owner = fromFabric ? nexthops.vif[labelNexthop] : pool.ingressVif[p];
  const limit = c.vifs[owner]?.maxFlows ?? 0;
  if (limit > 0 && c.flows.vifPairs[owner] >= limit) return drop(Drop['vif-flow-limit']);

  // Where the flow goes: the label's pod, or the route's nexthop (an ECMP member for a composite).
  let sourceVn = vrfId;
  let destinationVn: number;
  let delivery = -1; // local encap nexthop, if the flow ends at a pod of this node
  if (fromFabric) {
    delivery = labelNexthop;
    const sourceRoute = vrf.routes.lookup(src);
    if (sourceRoute >= 0) sourceVn = nexthopVn(c, sourceRoute, vrfId);
    destinationVn = nexthopVn(c, delivery, vrfId);
  } else {
    const route = vrf.routes.lookup(dst);
    if (route < 0) return drop(Drop['no-route']);
    destinationVn = nexthopVn(c, route, vrfId);
    let member = route;
    if (nexthops.kind[route] === NH_COMPOSITE) {
      slot = nexthops.selectSlot(route, pool.hash[p]);
      if (slot < 0) return drop(Drop['ecmp-no-member']);
      member = nexthops.members[route]![slot];
    }
    if (nexthops.kind[member] === NH_ENCAP) delivery = member;
  }

  // A floating IP of the pod the flow ends at: translate to the pod's own address and port.
  const pod: Vif | null = delivery >= 0 ? c.vifs[nexthops.vif[delivery]] ?? null : null;
  const floatingIp = pod === null ? null : pod.floatingIp(dst);
  let translatedDst = dst;
  let translatedPort = dstPort;
  if (floatingIp !== null && pod !== null) {
    translatedDst = pod.ip;
    for (const entry of floatingIp.portMap) {
      if (entry.protocol === protocol && entry.port === dstPort) translatedPort = entry.targetPort;
    }
  }

  const allowed = c.dp.policy.allows(sourceVn, destinationVn, protocol, dst, dstPort);
  const forward = c.forwardKey;
  forward.vrf = vrfId;
  forward.protocol = protocol;
  forward.src = src;
  forward.dst = dst;
  forward.srcPort = srcPort;
  forward.dstPort = dstPort;
  const reverse = c.reverseKey;
  reverse.vrf = pod !== null && !fromFabric ? pod.vrf : vrfId;
  reverse.protocol = protocol;
  reverse.src = translatedDst;
  reverse.dst = src;
  reverse.srcPort = translatedPort;
  reverse.dstPort = srcPort;
  // A stale entry holding the reply key (an old flow seen the other way round) gives way.
  const stale = c.flows.lookup(reverse.vrf, protocol, reverse.src, reverse.dst, (reverse.srcPort << 16) | reverse.dstPort,
    flowHash(reverse.vrf, reverse.src, reverse.dst, protocol, reverse.srcPort, reverse.dstPort));
  if (stale >= 0) c.flows.removePair(stale);

  const entry = c.flows.create(forward, reverse, c.now, c.vifs[owner] ? owner : -1);
  if (entry < 0) return drop(Drop['flow-table-full']);
  const flows = c.flows;
  setPairActions(flows, entry, allowed, translatedDst !== dst, translatedPort !== dstPort, sourceVn, destinationVn);
  flows.nexthop[entry] = fromFabric ? delivery : vrf.routes.lookup(dst);
  flows.ecmpSlot[entry] = slot;
  // A local composite's slot is the forward direction's only: the reply is routed on its own.
  flows.ecmpSlot[entry + 1] = fromFabric ? -1 : slot;
  pool.flowEntry[p] = entry;
  return FLOW_APPLY;
}

/**
 * A new pair's verdict: drop, or the NAT a translated destination (address,
 * port) needs, on both entries; with what it was made from, for
 * re-evaluating it when the policy changes.
 */
export function setPairActions(flows: FlowTable, entry: number, allowed: boolean, dnat: boolean, dpat: boolean, sourceVn: number, destinationVn: number): void {
  const pair = entry >>> 1;
  flows.policySourceVn[pair] = sourceVn;
  flows.policyDestinationVn[pair] = destinationVn;
  flows.natWanted[pair] = (dnat ? NAT_DNAT : 0) | (dpat ? NAT_DPAT : 0);
  flows.setVerdict(entry, allowed);
}

export function flowApply(c: Pipeline, p: number): number {
  const pool = c.pool;
  const d = pool.data;
  const flows = c.flows;
  const entry = pool.flowEntry[p];
  const l3 = pool.l3[p];
  const l4 = pool.l4[p];
  pool.ecmpSlot[p] = flows.ecmpSlot[entry];
  // The entropy port is the flow's (RFC 7510 3): later fragments and ICMP errors hash as their entry's key, as
  // the reference takes fe_udp_src_port from the flow (tungstenfabric/tf-vrouter@432a8e0c linux/vrouter_mod.c lh_get_udp_src_port).
  pool.hash[p] = flows.keyHash[entry];
  const ipv6 = d[l3] >>> 4 === 6;
  const next = c.vifs[pool.ingressVif[p]]!.kind === VIF_FABRIC ? NAT_REWRITE : ipv6 ? IPV6_LOOKUP : IPV4_LOOKUP;
  // A traced synthetic packet reads the flow, and changes nothing in it.
  if (c.dryRun) return flows.action[entry] === FLOW_DROP ? drop(Drop['flow-action-drop']) : next;
  // A pair translated to the member it chose (a ClusterIP's backend here) cannot follow a new member: once
  // that member is gone, the pair is made again from this packet, not yet translated (TCP and UDP only: an
  // ICMP error or a later fragment cannot start a flow).
  if ((flows.natFlags[entry] & (NAT_DNAT | NAT_DPAT)) !== 0 && l4 >= 0 && chosenMemberGone(c, entry)) {
    const protocol = ipv6 ? pool.upperProtocol[p] : d[l3 + 9];
    if ((protocol === PROTO_TCP || protocol === PROTO_UDP) && protocol === flows.keyProtocol[entry]) {
      flows.removePair(entry);
      pool.flowEntry[p] = -1;
      return FLOW_SETUP;
    }
  }
  flows.hit(entry, pool.length[p], c.now);
  // Later fragments follow the first one's verdict, a drop included. (An IPv6 first fragment: M set,
  // offset 0; an atomic fragment, M clear, stands alone: RFC 6946.)
  const fragment6 = pool.fragmentHeader[p];
  if (l4 >= 0 && (ipv6 ? fragment6 >= 0 && (d[fragment6 + 3] & 1) !== 0 : ((d[l3 + 6] << 8) | d[l3 + 7]) & 0x2000)) {
    const overlap = c.fragments.recordHead(c, p);
    if (overlap !== 0) return overlap;
  }
  if (flows.action[entry] === FLOW_DROP) return drop(Drop['flow-action-drop']);
  if ((ipv6 ? pool.upperProtocol[p] : d[l3 + 9]) === PROTO_TCP && l4 >= 0) {
    const totalLength = ipv6 ? 40 + ((d[l3 + 4] << 8) | d[l3 + 5]) : (d[l3 + 2] << 8) | d[l3 + 3];
    const segmentLength = totalLength - (l4 - l3) - ((d[l4 + 12] >>> 4) << 2);
    if (flows.trackTcp(entry, d[l4 + 13], readU32(d, l4 + 4), readU32(d, l4 + 8), segmentLength)) c.closeFlowAfter(p);
  }
  return next;
}

/** Whether the delivery a pair chose (its nexthop, or the member in its ECMP slot) no longer exists. */
function chosenMemberGone(c: Pipeline, entry: number): boolean {
  const nexthops = c.nexthops;
  const chosen = c.flows.nexthop[entry];
  if (chosen < 0) return false;
  const kind = nexthops.kind[chosen];
  if (kind === NH_NONE) return true;
  const slot = c.flows.ecmpSlot[entry];
  if (kind !== NH_COMPOSITE || slot < 0) return false;
  const members = nexthops.members[chosen]!;
  return slot >= members.length || members[slot] < 0;
}

export function describeFlowLookup(c: Pipeline, p: number, next: number): string {
  const entry = c.pool.flowEntry[p];
  if (next === FLOW_SETUP) return 'miss';
  if (entry < 0) return 'no flow';
  return `hit entry ${entry} (reverse ${entry ^ 1})`;
}

export function describeFlowSetup(c: Pipeline, p: number, next: number): string {
  const entry = c.pool.flowEntry[p];
  if (next !== FLOW_APPLY) return 'no flow created';
  const flows = c.flows;
  const forward = flows.view(entry);
  const reverse = flows.view(entry ^ 1);
  const nexthop = flows.nexthop[entry];
  return (
    `created ${entry}<=>${entry ^ 1} ${FLOW_ACTION_NAMES[flows.action[entry]]}${forward.nat.length ? ` (${forward.nat.join(',')})` : ''}` +
    ` reverse ${reverse.src6 ? ip6ToString(reverse.src6) : ipToString(reverse.src)}:${reverse.srcPort}` +
    ` > ${reverse.dst6 ? ip6ToString(reverse.dst6) : ipToString(reverse.dst)}:${reverse.dstPort} vrf ${reverse.vrf}` +
    `${nexthop >= 0 ? ` nh ${nexthop} ${NH_KIND_NAMES[c.nexthops.kind[nexthop]]}` : ''}`
  );
}

export function describeFlowApply(c: Pipeline, p: number, next: number): string {
  const entry = c.pool.flowEntry[p];
  const verdict = next >= 0 ? FLOW_ACTION_NAMES[c.flows.action[entry]] : 'drop';
  return `entry ${entry} ${verdict}, ${c.flows.packets[entry]} packets${c.pool.ecmpSlot[p] >= 0 ? `, ecmp slot ${c.pool.ecmpSlot[p]}` : ''}`;
}
