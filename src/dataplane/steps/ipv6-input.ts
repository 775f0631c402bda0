/**
 * ipv6-input: validates an IPv6 header (version, payload length), trims
 * Ethernet padding, finds the upper-layer header and computes the flow hash
 * once, as ipv4-input does: (VRF, src, dst, next header, src port, dst
 * port), ICMPv6 echo keyed by its identifier.
 *
 * Neighbour discovery from a pod goes to nd-proxy. Packets with extension
 * headers (fragments included) are dropped as ipv6-unsupported: pods send
 * none on the paths the vrouter serves but MLD reports (hop-by-hop, to
 * multicast groups no route leads to). IPv6 from the fabric is not a tunnel
 * (the underlay is IPv4): not-for-vrouter. The same step serves the inner
 * header of a tunnel after decapsulation (its VRF from the MPLS label).
 */
import type { Pipeline } from '../pipeline';
import { Drop } from '../drop-reasons';
import { flowHash6 } from '../flow-hash';
import { ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST, ICMPV6_HEADER_LEN, isNeighborDiscovery } from '../protocols/icmpv6';
import { IP6_DST, IP6_HEADER_LEN, IP6_SRC, PROTO_ICMPV6, ip6ToString } from '../protocols/ipv6';
import { PROTO_TCP, PROTO_UDP } from '../protocols/ipv4';
import { TCP_MIN_HEADER_LEN } from '../protocols/tcp';
import { UDP_HEADER_LEN } from '../protocols/udp';
import { VIF_FABRIC } from '../vif';
import { ND_PROXY, SOURCE_CHECK, TUNNEL_SOURCE_CHECK, drop } from './next';

/** RFC 8200 4 and the IANA list of IPv6 extension header types. */
function isExtensionHeader(nextHeader: number): boolean {
  return (
    nextHeader === 0 || nextHeader === 43 || nextHeader === 44 || nextHeader === 50 || nextHeader === 51 ||
    nextHeader === 60 || nextHeader === 135 || nextHeader === 139 || nextHeader === 140 || nextHeader === 253 || nextHeader === 254
  );
}

function validate(c: Pipeline, p: number): number {
  const pool = c.pool;
  const d = pool.data;
  const l3 = pool.l3[p];
  const end = pool.start[p] + pool.length[p];
  if (end - l3 < IP6_HEADER_LEN) return drop(Drop.truncated);
  if (d[l3] >>> 4 !== 6) return drop(Drop['bad-ip-header']);
  const payloadLength = (d[l3 + 4] << 8) | d[l3 + 5];
  if (l3 + IP6_HEADER_LEN + payloadLength > end) return drop(Drop.truncated);
  // Frames shorter than 60 bytes arrive padded; the packet ends where IPv6 says.
  pool.length[p] = l3 + IP6_HEADER_LEN + payloadLength - pool.start[p];
  if (isExtensionHeader(d[l3 + 6])) return drop(Drop['ipv6-unsupported']);
  return 0;
}

/** Finds the upper-layer header and hashes the flow in `vrf`; 0, or the drop for a header cut short. */
function classify(c: Pipeline, p: number, vrf: number): number {
  const pool = c.pool;
  const d = pool.data;
  const l3 = pool.l3[p];
  const payloadLength = (d[l3 + 4] << 8) | d[l3 + 5];
  const protocol = d[l3 + 6];
  const l4 = l3 + IP6_HEADER_LEN;
  let srcPort = 0;
  let dstPort = 0;
  if (protocol === PROTO_UDP || protocol === PROTO_TCP) {
    if (payloadLength < (protocol === PROTO_UDP ? UDP_HEADER_LEN : TCP_MIN_HEADER_LEN)) return drop(Drop.truncated);
    srcPort = (d[l4] << 8) | d[l4 + 1];
    dstPort = (d[l4 + 2] << 8) | d[l4 + 3];
  } else if (protocol === PROTO_ICMPV6) {
    if (payloadLength < ICMPV6_HEADER_LEN) return drop(Drop.truncated);
    const type = d[l4];
    if (type === ICMPV6_ECHO_REQUEST || type === ICMPV6_ECHO_REPLY) {
      srcPort = (d[l4 + 4] << 8) | d[l4 + 5];
      dstPort = srcPort;
    }
  }
  pool.l4[p] = l4;
  pool.hash[p] = flowHash6(vrf, d, l3 + IP6_SRC, l3 + IP6_DST, protocol, srcPort, dstPort);
  pool.ports[p] = (srcPort << 16) | dstPort;
  return 0;
}

export function ipv6Input(c: Pipeline, p: number): number {
  const invalid = validate(c, p);
  if (invalid !== 0) return invalid;
  const pool = c.pool;
  const vif = c.vifs[pool.ingressVif[p]]!;
  if (vif.kind === VIF_FABRIC) return drop(Drop['not-for-vrouter']);
  if (vif.vrf < 0) return drop(Drop['invalid-vif']);
  pool.vrf[p] = vif.vrf;
  const d = pool.data;
  const l3 = pool.l3[p];
  if (d[l3 + 6] === PROTO_ICMPV6 && ((d[l3 + 4] << 8) | d[l3 + 5]) > 0 && isNeighborDiscovery(d[l3 + IP6_HEADER_LEN])) {
    pool.l4[p] = l3 + IP6_HEADER_LEN;
    return ND_PROXY;
  }
  const bad = classify(c, p, vif.vrf);
  return bad !== 0 ? bad : SOURCE_CHECK;
}

export function innerIpv6Input(c: Pipeline, p: number): number {
  const invalid = validate(c, p);
  if (invalid !== 0) return invalid;
  const bad = classify(c, p, c.pool.vrf[p]);
  return bad !== 0 ? bad : TUNNEL_SOURCE_CHECK;
}

export function describeIpv6Input(c: Pipeline, p: number): string {
  const d = c.pool.data;
  const l3 = c.pool.l3[p];
  if (c.pool.start[p] + c.pool.length[p] - l3 < IP6_HEADER_LEN) return 'truncated header';
  return (
    `${ip6ToString(d, l3 + IP6_SRC)} > ${ip6ToString(d, l3 + IP6_DST)} next header ${d[l3 + 6]} hop limit ${d[l3 + 7]}` +
    ` len ${(d[l3 + 4] << 8) | d[l3 + 5]} hash 0x${(c.pool.hash[p] >>> 0).toString(16)}`
  );
}
