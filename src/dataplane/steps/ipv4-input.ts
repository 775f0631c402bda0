/**
 * ipv4-input: validates an IPv4 header (version, IHL, total length, header
 * checksum), trims Ethernet padding, finds the L4 header and computes the
 * flow hash once: (VRF, src, dst, protocol, src port, dst port). The hash
 * serves the flow table, the ECMP member and the tunnel entropy port.
 *
 * The same step runs on the header a pod sent, on the outer header of a
 * tunnel from the fabric, and on the inner header after decapsulation.
 */
import type { Pipeline } from '../pipeline';
import { Drop } from '../drop-reasons';
import { flowHash } from '../flow-hash';
import { onesSum } from '../protocols/checksum';
import { ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMP_HEADER_LEN } from '../protocols/icmp';
import {
  IP_MIN_HEADER_LEN,
  PROTO_ICMP,
  PROTO_TCP,
  PROTO_UDP,
  ipToString,
  readU32,
} from '../protocols/ipv4';
import { TCP_MIN_HEADER_LEN } from '../protocols/tcp';
import { UDP_HEADER_LEN } from '../protocols/udp';
import { VIF_FABRIC } from '../vif';
import { SOURCE_CHECK, TUNNEL_DECAP, TUNNEL_SOURCE_CHECK, drop } from './next';

/** Checks the header at pool.l3[p]; returns 0 when valid, else the step result for the drop. */
function validate(c: Pipeline, p: number): number {
  const pool = c.pool;
  const d = pool.data;
  const l3 = pool.l3[p];
  const end = pool.start[p] + pool.length[p];
  if (end - l3 < IP_MIN_HEADER_LEN) return drop(Drop.truncated);
  const versionIhl = d[l3];
  const headerLength = (versionIhl & 0x0f) << 2;
  if (versionIhl >>> 4 !== 4 || headerLength < IP_MIN_HEADER_LEN) return drop(Drop['bad-ip-header']);
  const totalLength = (d[l3 + 2] << 8) | d[l3 + 3];
  if (totalLength < headerLength) return drop(Drop['bad-ip-header']);
  if (l3 + totalLength > end) return drop(Drop.truncated);
  if (onesSum(d, l3, headerLength) !== 0xffff) return drop(Drop['bad-checksum']);
  // Frames shorter than 60 bytes arrive padded; the packet ends where IP says.
  pool.length[p] = l3 + totalLength - pool.start[p];
  return 0;
}

/**
 * Finds the L4 header and hashes the flow in `vrf`. Returns 0, or a drop
 * when a packet is too short for its L4 header (a first fragment must carry
 * at least 8 bytes of it, RFC 1858). Later fragments have no L4 header: they
 * hash without ports and follow their first fragment's flow.
 */
function classify(c: Pipeline, p: number, vrf: number): number {
  const pool = c.pool;
  const d = pool.data;
  const l3 = pool.l3[p];
  const headerLength = (d[l3] & 0x0f) << 2;
  const payloadLength = ((d[l3 + 2] << 8) | d[l3 + 3]) - headerLength;
  const protocol = d[l3 + 9];
  const fragmentField = ((d[l3 + 6] << 8) | d[l3 + 7]) & 0x3fff; // MF + offset
  const l4 = l3 + headerLength;
  let srcPort = 0;
  let dstPort = 0;
  const firstFragment = (fragmentField & 0x1fff) === 0;
  pool.l4[p] = firstFragment ? l4 : -1;
  if (firstFragment) {
    const fragmented = fragmentField !== 0;
    if (protocol === PROTO_UDP || protocol === PROTO_TCP) {
      const needed = fragmented ? 8 : protocol === PROTO_UDP ? UDP_HEADER_LEN : TCP_MIN_HEADER_LEN;
      if (payloadLength < needed) return drop(Drop.truncated);
      srcPort = (d[l4] << 8) | d[l4 + 1];
      dstPort = (d[l4 + 2] << 8) | d[l4 + 3];
    } else if (protocol === PROTO_ICMP) {
      if (payloadLength < ICMP_HEADER_LEN) return drop(Drop.truncated);
      const type = d[l4];
      // Echo flows are told apart by their identifier, used as both ports so
      // that a reply's key is its request's with the ends swapped.
      if (type === ICMP_ECHO_REQUEST || type === ICMP_ECHO_REPLY) {
        srcPort = (d[l4 + 4] << 8) | d[l4 + 5];
        dstPort = srcPort;
      }
    }
  }
  pool.hash[p] = flowHash(vrf, readU32(d, l3 + 12), readU32(d, l3 + 16), protocol, srcPort, dstPort);
  pool.ports[p] = (srcPort << 16) | dstPort;
  return 0;
}

/** From a pod (routed in its VRF) or from the fabric (a tunnel to decapsulate). */
export function ipv4Input(c: Pipeline, p: number): number {
  const invalid = validate(c, p);
  if (invalid !== 0) return invalid;
  const vif = c.vifs[c.pool.ingressVif[p]]!;
  if (vif.kind === VIF_FABRIC) return TUNNEL_DECAP;
  if (vif.vrf < 0) return drop(Drop['invalid-vif']);
  c.pool.vrf[p] = vif.vrf;
  const bad = classify(c, p, vif.vrf);
  return bad !== 0 ? bad : SOURCE_CHECK;
}

/** The packet inside a tunnel: its VRF and nexthop come from the MPLS label. */
export function innerIpv4Input(c: Pipeline, p: number): number {
  const invalid = validate(c, p);
  if (invalid !== 0) return invalid;
  const bad = classify(c, p, c.pool.vrf[p]);
  return bad !== 0 ? bad : TUNNEL_SOURCE_CHECK;
}

export function describeIpv4Input(c: Pipeline, p: number): string {
  const d = c.pool.data;
  const l3 = c.pool.l3[p];
  if (c.pool.start[p] + c.pool.length[p] - l3 < IP_MIN_HEADER_LEN) return 'truncated header';
  const fragment = ((d[l3 + 6] << 8) | d[l3 + 7]) & 0x3fff;
  return (
    `${ipToString(readU32(d, l3 + 12))} > ${ipToString(readU32(d, l3 + 16))} proto ${d[l3 + 9]} ttl ${d[l3 + 8]}` +
    ` len ${(d[l3 + 2] << 8) | d[l3 + 3]}${fragment !== 0 ? ' fragment' : ''} hash 0x${(c.pool.hash[p] >>> 0).toString(16)}`
  );
}
