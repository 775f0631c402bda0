/**
 * The flow steps for IPv6 packets, called by flow-lookup and flow-setup
 * (steps/flow.ts) when the header is version 6; flow-apply serves both.
 * The same decisions as for IPv4 on 128-bit keys: ICMPv6 echo keyed by its
 * identifier, an ICMPv6 error matched through the packet it quotes, the
 * destination from the route (ECMP member) or the MPLS label, an IPv6
 * floating IP translated to the pod's IPv6 address and port, policy. The
 * protocol is the upper-layer one behind the extension headers; a later
 * fragment follows its first fragment's flow through the fragment table, and
 * an error quoting a first fragment belongs to that fragment's flow.
 */
import type { Pipeline } from '../pipeline';
import { Drop } from '../drop-reasons';
import { flowHash6 } from '../flow-hash';
import { NH_COMPOSITE, NH_ENCAP } from '../nexthop';
import {
  ICMPV6_DEST_UNREACHABLE,
  ICMPV6_ECHO_REPLY,
  ICMPV6_ECHO_REQUEST,
  ICMPV6_HEADER_LEN,
  ICMPV6_NO_ROUTE,
  isIcmpv6Error,
} from '../protocols/icmpv6';
import { IP6_DST, IP6_HEADER_LEN, IP6_SRC, PROTO_ICMPV6 } from '../protocols/ipv6';
import { PROTO_TCP, PROTO_UDP } from '../protocols/ipv4';
import { VIF_FABRIC, Vif } from '../vif';
import { nexthopVn, setPairActions } from './flow';
import { icmp6ErrorInPlace } from './icmp6-error';
import { FLOW_APPLY, FLOW_SETUP, drop } from './next';

export function flowLookup6(c: Pipeline, p: number): number {
  const pool = c.pool;
  const d = pool.data;
  const l3 = pool.l3[p];
  const l4 = pool.l4[p];
  if (l4 < 0) return c.fragments.follow(c, p);
  const protocol = pool.upperProtocol[p];
  if (protocol === PROTO_ICMPV6 && isIcmpv6Error(d[l4])) return lookupIcmp6Error(c, p, l4);
  const entry = c.flows.lookup6(pool.vrf[p], protocol, d, l3 + IP6_SRC, l3 + IP6_DST, pool.ports[p], pool.hash[p]);
  if (entry < 0) return FLOW_SETUP;
  pool.flowEntry[p] = entry;
  return FLOW_APPLY;
}

const FRAGMENT = 44;

/**
 * The upper-layer header of the packet an ICMPv6 error quotes at `quoted`:
 * behind its fixed header, or behind its fragment header when it is a first
 * fragment (as the reference reads a quoted packet: tungstenfabric/tf-vrouter@432a8e0c
 * dp-core/vr_proto_ip6.c vr_inet6_proto_flow); -1 for a later fragment, which
 * quotes no ports.
 */
export function quotedUpperLayer6(d: Uint8Array, quoted: number): number {
  if (d[quoted + 6] !== FRAGMENT) return quoted + IP6_HEADER_LEN;
  return (((d[quoted + 42] << 8) | d[quoted + 43]) & 0xfff8) === 0 ? quoted + IP6_HEADER_LEN + 8 : -1;
}

/** The upper-layer protocol of the quoted packet (a fragment's: its fragment header's next header). */
export function quotedProtocol6(d: Uint8Array, quoted: number): number {
  return d[quoted + 6] === FRAGMENT ? d[quoted + IP6_HEADER_LEN] : d[quoted + 6];
}

/** The entry whose key is the quoted packet's with the ends swapped; errors create no flow. */
function lookupIcmp6Error(c: Pipeline, p: number, l4: number): number {
  const pool = c.pool;
  const d = pool.data;
  const end = pool.start[p] + pool.length[p];
  const quoted = l4 + ICMPV6_HEADER_LEN;
  if (end - quoted < IP6_HEADER_LEN + 8) return drop(Drop.truncated);
  const quotedL4 = quotedUpperLayer6(d, quoted);
  if (quotedL4 < 0) return drop(Drop['icmp-error-no-flow']);
  if (end - quotedL4 < 8) return drop(Drop.truncated);
  const protocol = quotedProtocol6(d, quoted);
  let srcPort = 0;
  let dstPort = 0;
  if (protocol === PROTO_TCP || protocol === PROTO_UDP) {
    srcPort = (d[quotedL4] << 8) | d[quotedL4 + 1];
    dstPort = (d[quotedL4 + 2] << 8) | d[quotedL4 + 3];
  } else if (protocol === PROTO_ICMPV6 && (d[quotedL4] === ICMPV6_ECHO_REQUEST || d[quotedL4] === ICMPV6_ECHO_REPLY)) {
    srcPort = (d[quotedL4 + 4] << 8) | d[quotedL4 + 5];
    dstPort = srcPort;
  }
  const vrf = pool.vrf[p];
  const hash = flowHash6(vrf, d, quoted + IP6_DST, quoted + IP6_SRC, protocol, dstPort, srcPort);
  const entry = c.flows.lookup6(vrf, protocol, d, quoted + IP6_DST, quoted + IP6_SRC, (dstPort << 16) | srcPort, hash);
  if (entry < 0) return drop(Drop['icmp-error-no-flow']);
  pool.flowEntry[p] = entry;
  return FLOW_APPLY;
}

export function flowSetup6(c: Pipeline, p: number): number {
  const pool = c.pool;
  const d = pool.data;
  const nexthops = c.nexthops;
  const l3 = pool.l3[p];
  const vrfId = pool.vrf[p];
  const vrf = c.vrfs[vrfId];
  if (vrf === null || vrf === undefined) return drop(Drop['no-route']);
  const protocol = pool.upperProtocol[p];
  const src = l3 + IP6_SRC;
  const dst = l3 + IP6_DST;
  const ports = pool.ports[p];
  const srcPort = ports >>> 16;
  const dstPort = ports & 0xffff;
  const fromFabric = c.vifs[pool.ingressVif[p]]!.kind === VIF_FABRIC;
  const owner = fromFabric ? nexthops.vif[pool.nexthop[p]] : pool.ingressVif[p];
  const limit = c.vifs[owner]?.maxFlows ?? 0;
  if (limit > 0 && c.flows.vifPairs[owner] >= limit) return drop(Drop['vif-flow-limit']);

  let sourceVn = vrfId;
  let destinationVn: number;
  let delivery = -1;
  let slot = -1;
  let route = -1;
  if (fromFabric) {
    delivery = pool.nexthop[p];
    const sourceRoute = vrf.routes6.lookup(d, src);
    if (sourceRoute >= 0) sourceVn = nexthopVn(c, sourceRoute, vrfId);
    destinationVn = nexthopVn(c, delivery, vrfId);
  } else {
    route = vrf.routes6.lookup(d, dst);
    if (route < 0) return icmp6ErrorInPlace(c, p, ICMPV6_DEST_UNREACHABLE, ICMPV6_NO_ROUTE, 0, Drop['no-route']);
    destinationVn = nexthopVn(c, route, vrfId);
    let member = route;
    if (nexthops.kind[route] === NH_COMPOSITE) {
      slot = nexthops.selectSlot(route, pool.hash[p]);
      if (slot < 0) return drop(Drop['ecmp-no-member']);
      member = nexthops.members[route]![slot];
    }
    if (nexthops.kind[member] === NH_ENCAP) delivery = member;
  }

  // An IPv6 floating IP of the pod the flow ends at: translate to the pod's own IPv6 address and port.
  const pod: Vif | null = delivery >= 0 ? c.vifs[nexthops.vif[delivery]] ?? null : null;
  const floatingIp = pod === null || pod.ip6 === null ? null : pod.floatingIp6(d, dst);
  let translatedPort = dstPort;
  if (floatingIp !== null) {
    for (const entry of floatingIp.portMap) {
      if (entry.protocol === protocol && entry.port === dstPort) translatedPort = entry.targetPort;
    }
  }

  const allowed = c.dp.policy.allows6(sourceVn, destinationVn, protocol, d, dst, dstPort);
  const forward = c.forwardKey6;
  forward.vrf = vrfId;
  forward.protocol = protocol;
  for (let i = 0; i < 32; i++) forward.addresses[i] = d[src + i];
  forward.srcPort = srcPort;
  forward.dstPort = dstPort;
  const reverse = c.reverseKey6;
  const addresses = reverse.addresses;
  reverse.vrf = pod !== null && !fromFabric ? pod.vrf : vrfId;
  reverse.protocol = protocol;
  for (let i = 0; i < 16; i++) {
    addresses[i] = floatingIp !== null ? pod!.ip6![i] : d[dst + i];
    addresses[16 + i] = d[src + i];
  }
  reverse.srcPort = translatedPort;
  reverse.dstPort = srcPort;
  // A stale entry holding the reply key (an old flow seen the other way round) gives way.
  const reversePorts = (translatedPort << 16) | srcPort;
  const stale = c.flows.lookup6(reverse.vrf, protocol, addresses, 0, 16, reversePorts, flowHash6(reverse.vrf, addresses, 0, 16, protocol, translatedPort, srcPort));
  if (stale >= 0) c.flows.removePair(stale);

  const entry = c.flows.create6(forward, reverse, c.now, c.vifs[owner] ? owner : -1);
  if (entry < 0) return drop(Drop['flow-table-full']);
  const flows = c.flows;
  setPairActions(flows, entry, allowed, floatingIp !== null, translatedPort !== dstPort, sourceVn, destinationVn);
  flows.nexthop[entry] = fromFabric ? delivery : route;
  flows.ecmpSlot[entry] = slot;
  flows.ecmpSlot[entry + 1] = slot;
  pool.flowEntry[p] = entry;
  return FLOW_APPLY;
}
