/**
 * ipv6-input: validates an IPv6 header (version, payload length), trims
 * Ethernet padding, walks the extension headers to the upper-layer header
 * and computes the flow hash once, as ipv4-input does: (VRF, src, dst,
 * upper-layer protocol, src port, dst port), ICMPv6 echo keyed by its
 * identifier.
 *
 * The chain (RFC 8200 4): hop-by-hop options (first only), routing,
 * destination options and fragment headers are walked, at most
 * MAX_EXTENSION_HEADERS of them, each within the packet; the others (ESP,
 * AH, mobility, HIP, shim6, experimental) are ipv6-unsupported. A fragment
 * header with a non-zero offset ends the walk: what follows is fragment
 * data, and the fragment follows its first fragment's flow through the
 * fragment table (pool.l4 = -1, as for IPv4). A first fragment must carry
 * the whole chain and upper-layer header (RFC 7112 5).
 *
 * Neighbour discovery from a pod goes to nd-proxy. Any other multicast from
 * a pod (MLD reports behind their hop-by-hop header, mDNS) is dropped as
 * multicast-not-forwarded: the reference never routes it, it bridges it by
 * MAC to the VN's flood route and drops it as "L2 no route" without one
 * (tungstenfabric/tf-vrouter@432a8e0c dp-core/vr_bridge.c vr_bridge_input;
 * dp-core/vr_proto_ip6.c vr_ip6_well_known_packet singles out only ND,
 * router solicitations and DHCPv6), and vrouter-ts floods nothing. IPv6
 * from the fabric is not a tunnel (the underlay is IPv4): not-for-vrouter.
 * The same step serves the inner header of a tunnel after decapsulation
 * (its VRF from the MPLS label).
 */
import type { Pipeline } from '../pipeline';
import { Drop } from '../drop-reasons';
import { flowHash6 } from '../flow-hash';
import { ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST, ICMPV6_HEADER_LEN, isNeighborDiscovery } from '../protocols/icmpv6';
import { IP6_DST, IP6_HEADER_LEN, IP6_SRC, PROTO_ICMPV6, ip6ToString, isMulticast6 } from '../protocols/ipv6';
import { PROTO_TCP, PROTO_UDP, readU32 } from '../protocols/ipv4';
import { TCP_MIN_HEADER_LEN } from '../protocols/tcp';
import { UDP_HEADER_LEN } from '../protocols/udp';
import { VIF_FABRIC } from '../vif';
import { ND_PROXY, SOURCE_CHECK, TUNNEL_SOURCE_CHECK, drop } from './next';

const HOP_BY_HOP = 0;
const ROUTING = 43;
const FRAGMENT = 44;
const DESTINATION_OPTIONS = 60;
/** Every extension header is a multiple of 8 bytes; the fragment header is exactly 8. */
const MIN_EXTENSION_HEADER_LEN = 8;
const FRAGMENT_HEADER_LEN = 8;
/** Fragment header: offset (in 8-byte units) in the top 13 bits of bytes 2-3, M in the lowest bit. */
const FRAGMENT_OFFSET_MASK = 0xfff8;
const FRAGMENT_MORE = 1;
/**
 * RFC 8200 4.1's order has at most five of the walked headers (each once,
 * destination options twice); a longer chain is not a real sender's.
 */
export const MAX_EXTENSION_HEADERS = 8;

/** The extension headers the vrouter cannot look past (IANA IPv6 extension header types). */
function isUnsupportedExtension(nextHeader: number): boolean {
  return nextHeader === 50 || nextHeader === 51 || nextHeader === 135 || nextHeader === 139 || nextHeader === 140 || nextHeader === 253 || nextHeader === 254;
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
  return 0;
}

/** Bytes of the upper-layer header the flow key and the rewrites read. */
function upperHeaderLength(protocol: number): number {
  return protocol === PROTO_UDP ? UDP_HEADER_LEN : protocol === PROTO_TCP ? TCP_MIN_HEADER_LEN : protocol === PROTO_ICMPV6 ? ICMPV6_HEADER_LEN : 0;
}

/**
 * Walks the extension headers, finds the upper-layer header and hashes the
 * flow in `vrf`; sets pool.l4 (-1 for a later fragment), upperProtocol and
 * fragmentHeader. 0, or the drop for a chain that cannot be followed.
 */
function classify(c: Pipeline, p: number, vrf: number): number {
  const pool = c.pool;
  const d = pool.data;
  const l3 = pool.l3[p];
  const end = l3 + IP6_HEADER_LEN + ((d[l3 + 4] << 8) | d[l3 + 5]);
  let protocol = d[l3 + 6];
  let at = l3 + IP6_HEADER_LEN;
  let headers = 0;
  let fragment = -1;
  let laterFragment = false;
  while (protocol === HOP_BY_HOP || protocol === ROUTING || protocol === DESTINATION_OPTIONS || protocol === FRAGMENT) {
    if (headers === MAX_EXTENSION_HEADERS) return drop(Drop['ipv6-chain-too-long']);
    if (protocol === HOP_BY_HOP && headers !== 0) return drop(Drop['ipv6-bad-extension-header']);
    if (end - at < MIN_EXTENSION_HEADER_LEN) return drop(Drop['ipv6-chain-truncated']);
    let length = (d[at + 1] + 1) * 8;
    if (protocol === FRAGMENT) {
      if (fragment >= 0) return drop(Drop['ipv6-bad-extension-header']);
      fragment = at;
      length = FRAGMENT_HEADER_LEN;
      const field = (d[at + 2] << 8) | d[at + 3];
      const offset = field & FRAGMENT_OFFSET_MASK;
      const fragmentBytes = end - at - FRAGMENT_HEADER_LEN;
      // RFC 8200 4.5: all fragments but the last are multiples of 8 bytes; none reaches past 65535.
      if (((field & FRAGMENT_MORE) !== 0 && (fragmentBytes & 7) !== 0) || offset + fragmentBytes > 0xffff) return drop(Drop['ipv6-bad-extension-header']);
      laterFragment = offset !== 0;
    }
    if (end - at < length) return drop(Drop['ipv6-chain-truncated']);
    protocol = d[at];
    at += length;
    headers++;
    if (laterFragment) break;
  }
  pool.upperProtocol[p] = protocol;
  pool.fragmentHeader[p] = fragment;
  let srcPort = 0;
  let dstPort = 0;
  if (laterFragment) {
    pool.l4[p] = -1;
  } else {
    if (isUnsupportedExtension(protocol)) return drop(Drop['ipv6-unsupported']);
    // A first fragment without its whole upper-layer header cannot be classified (RFC 7112 5).
    if (end - at < upperHeaderLength(protocol)) return drop(fragment >= 0 ? Drop['ipv6-chain-truncated'] : Drop.truncated);
    if (protocol === PROTO_UDP || protocol === PROTO_TCP) {
      srcPort = (d[at] << 8) | d[at + 1];
      dstPort = (d[at + 2] << 8) | d[at + 3];
    } else if (protocol === PROTO_ICMPV6) {
      const type = d[at];
      if (type === ICMPV6_ECHO_REQUEST || type === ICMPV6_ECHO_REPLY) {
        srcPort = (d[at + 4] << 8) | d[at + 5];
        dstPort = srcPort;
      }
    }
    pool.l4[p] = at;
  }
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
    pool.upperProtocol[p] = PROTO_ICMPV6;
    pool.fragmentHeader[p] = -1;
    return ND_PROXY;
  }
  if (isMulticast6(d, l3 + IP6_DST)) return drop(Drop['multicast-not-forwarded']);
  const bad = classify(c, p, vif.vrf);
  return bad !== 0 ? bad : SOURCE_CHECK;
}

export function innerIpv6Input(c: Pipeline, p: number): number {
  const invalid = validate(c, p);
  if (invalid !== 0) return invalid;
  const bad = classify(c, p, c.pool.vrf[p]);
  return bad !== 0 ? bad : TUNNEL_SOURCE_CHECK;
}

export function describeIpv6Input(c: Pipeline, p: number, next: number): string {
  const pool = c.pool;
  const d = pool.data;
  const l3 = pool.l3[p];
  if (pool.start[p] + pool.length[p] - l3 < IP6_HEADER_LEN) return 'truncated header';
  const fragment = pool.fragmentHeader[p];
  const walked = next >= 0 && d[l3 + 6] !== pool.upperProtocol[p];
  const chain = walked ? ` upper ${pool.upperProtocol[p]}${pool.l4[p] >= 0 ? ` at +${pool.l4[p] - l3}` : ''}` : '';
  const fragmentText = next >= 0 && fragment >= 0 ? ` fragment id 0x${readU32(d, fragment + 4).toString(16)} offset ${((d[fragment + 2] << 8) | d[fragment + 3]) & FRAGMENT_OFFSET_MASK}` : '';
  return (
    `${ip6ToString(d, l3 + IP6_SRC)} > ${ip6ToString(d, l3 + IP6_DST)} next header ${d[l3 + 6]}${chain}${fragmentText} hop limit ${d[l3 + 7]}` +
    ` len ${(d[l3 + 4] << 8) | d[l3 + 5]} hash 0x${(pool.hash[p] >>> 0).toString(16)}`
  );
}
