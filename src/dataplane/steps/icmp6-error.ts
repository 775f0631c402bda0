/**
 * Turns a packet from a pod into the ICMPv6 error about it (RFC 4443), in
 * place: new IPv6 and ICMPv6 headers go in front of the offending packet
 * (into the headroom, so nothing moves), which is quoted up to the 1280
 * bytes every IPv6 link carries. Sourced from the VN's IPv6 gateway and sent
 * back out the ingress vif. Never about an ICMPv6 error, nor to or from
 * multicast or unspecified addresses (RFC 4443 2.4 (e)).
 */
import type { Pipeline } from '../pipeline';
import { SLOT_SIZE } from '../packet-pool';
import { ETH_HEADER_LEN, ETHERTYPE_IPV6, VROUTER_MAC, writeEthernet } from '../protocols/ethernet';
import { ICMPV6_HEADER_LEN, isIcmpv6Error, upperLayerChecksum6 } from '../protocols/icmpv6';
import { IP6_DST, IP6_HEADER_LEN, IP6_MIN_MTU, IP6_SRC, PROTO_ICMPV6, isMulticast6, isUnspecified6 } from '../protocols/ipv6';
import { writeU16, writeU32 } from '../protocols/ipv4';
import { TRANSMIT, drop } from './next';

const requesterMac = new Uint8Array(6);
const ERROR_HEADERS = IP6_HEADER_LEN + ICMPV6_HEADER_LEN;

/**
 * Prepends ICMPv6 type/code (with `rest` in bytes 4-7) to packet p and
 * returns TRANSMIT, counting `reason` as the original's drop; returns the
 * plain drop when no error may be sent.
 */
export function icmp6ErrorInPlace(c: Pipeline, p: number, type: number, code: number, rest: number, reason: number): number {
  const pool = c.pool;
  const d = pool.data;
  const l3 = pool.l3[p];
  const vrf = c.vrfs[pool.vrf[p]];
  if (vrf === null || vrf === undefined || vrf.gateway6 === null) return drop(reason);
  if (isMulticast6(d, l3 + IP6_DST) || isMulticast6(d, l3 + IP6_SRC) || isUnspecified6(d, l3 + IP6_SRC)) return drop(reason);
  const l4 = pool.l4[p];
  const packetLength = pool.start[p] + pool.length[p] - l3;
  // ipv6-input found the upper-layer header (l4 -1: a later fragment, whose type is not known).
  if (pool.upperProtocol[p] === PROTO_ICMPV6 && l4 >= 0 && isIcmpv6Error(d[l4])) return drop(reason);
  const ip = l3 - ERROR_HEADERS;
  const frameStart = ip - ETH_HEADER_LEN;
  if (frameStart < p * SLOT_SIZE) return drop(reason);

  const quoted = Math.min(packetLength, IP6_MIN_MTU - ERROR_HEADERS);
  const start = pool.start[p];
  for (let i = 0; i < 6; i++) requesterMac[i] = d[start + 6 + i];
  // The original source becomes the destination; the gateway the source.
  d.copyWithin(ip + IP6_DST, l3 + IP6_SRC, l3 + IP6_SRC + 16);
  d.set(vrf.gateway6, ip + IP6_SRC);
  writeU32(d, ip, 0x60000000);
  writeU16(d, ip + 4, ICMPV6_HEADER_LEN + quoted);
  d[ip + 6] = PROTO_ICMPV6;
  d[ip + 7] = 64;
  const icmp = ip + IP6_HEADER_LEN;
  d[icmp] = type;
  d[icmp + 1] = code;
  writeU16(d, icmp + 2, 0);
  writeU32(d, icmp + 4, rest);
  writeU16(d, icmp + 2, upperLayerChecksum6(d, ip, icmp, ICMPV6_HEADER_LEN + quoted, PROTO_ICMPV6));

  writeEthernet(d, frameStart, requesterMac, VROUTER_MAC, ETHERTYPE_IPV6);
  pool.start[p] = frameStart;
  pool.l3[p] = ip;
  pool.l4[p] = icmp;
  pool.upperProtocol[p] = PROTO_ICMPV6;
  pool.fragmentHeader[p] = -1;
  pool.length[p] = ETH_HEADER_LEN + ERROR_HEADERS + quoted;
  pool.egressVif[p] = pool.ingressVif[p];
  c.countGenerated(reason);
  return TRANSMIT;
}
