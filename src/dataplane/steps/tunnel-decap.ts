/**
 * tunnel-decap: a packet from the fabric addressed to this node is MPLS over
 * UDP (RFC 7510, port 6635 or the legacy 51234) or MPLS over GRE (RFC 4023).
 * mpls-input then checks the label stack entry, takes the nexthop and VRF
 * from the label and moves on to the inner IPv4 header: nothing is copied.
 */
import type { Pipeline } from '../pipeline';
import { Drop } from '../drop-reasons';
import { ETHERTYPE_MPLS } from '../protocols/ethernet';
import { GRE_HEADER_LEN } from '../protocols/gre';
import { PROTO_GRE, PROTO_UDP, ipToString, readU32 } from '../protocols/ipv4';
import { MPLS_HEADER_LEN } from '../protocols/mpls';
import { MPLS_OVER_UDP_LEGACY_PORT, MPLS_OVER_UDP_PORT, UDP_HEADER_LEN } from '../protocols/udp';
import { NH_COMPOSITE, NH_ENCAP, NH_RECEIVE } from '../nexthop';
import { INNER_IPV4_INPUT, INNER_IPV6_INPUT, MPLS_INPUT, drop } from './next';

export function tunnelDecap(c: Pipeline, p: number): number {
  const pool = c.pool;
  const d = pool.data;
  const l3 = pool.l3[p];
  const end = pool.start[p] + pool.length[p];
  if (readU32(d, l3 + 16) !== c.underlayIp) return drop(Drop['not-for-vrouter']);
  const l4 = l3 + ((d[l3] & 0x0f) << 2);
  if ((((d[l3 + 6] << 8) | d[l3 + 7]) & 0x3fff) !== 0) return drop(Drop['fragmented-tunnel']);
  const protocol = d[l3 + 9];
  let mpls: number;
  if (protocol === PROTO_UDP) {
    if (end - l4 < UDP_HEADER_LEN) return drop(Drop.truncated);
    const dstPort = (d[l4 + 2] << 8) | d[l4 + 3];
    if (dstPort !== MPLS_OVER_UDP_PORT && dstPort !== MPLS_OVER_UDP_LEGACY_PORT) return drop(Drop['not-for-vrouter']);
    mpls = l4 + UDP_HEADER_LEN;
  } else if (protocol === PROTO_GRE) {
    if (end - l4 < GRE_HEADER_LEN) return drop(Drop.truncated);
    // No checksum, key or sequence number, version 0, and MPLS inside.
    if (d[l4] !== 0 || d[l4 + 1] !== 0 || ((d[l4 + 2] << 8) | d[l4 + 3]) !== ETHERTYPE_MPLS)
      return drop(Drop['bad-gre-header']);
    mpls = l4 + GRE_HEADER_LEN;
  } else {
    return drop(Drop['not-for-vrouter']);
  }
  pool.outerSrc[p] = readU32(d, l3 + 12);
  pool.l4[p] = mpls;
  return MPLS_INPUT;
}

/**
 * mpls-input: the label stack entry at pool.l4[p] (reached through
 * tunnel-decap, or directly when a UDP socket already removed the outer
 * headers): bottom of stack, a unicast label in the label table, TTL.
 */
export function mplsInput(c: Pipeline, p: number): number {
  const pool = c.pool;
  const d = pool.data;
  const mpls = pool.l4[p];
  const end = pool.start[p] + pool.length[p];
  if (end - mpls < MPLS_HEADER_LEN + 1) return drop(Drop.truncated);
  if ((d[mpls + 2] & 0x01) === 0) return drop(Drop['invalid-mpls-stack']);
  const label = (d[mpls] << 12) | (d[mpls + 1] << 4) | (d[mpls + 2] >>> 4);
  const nexthop = c.labels.lookup(label);
  if (nexthop < 0) return drop(Drop['invalid-label']);
  // Receiving is one MPLS hop: a label TTL of 1 or 0 expires here.
  if (d[mpls + 3] <= 1) return drop(Drop['mpls-ttl-expired']);
  const inner = mpls + MPLS_HEADER_LEN;
  // The label's nexthop decides where the packet goes; the version nibble what it is.
  const version = d[inner] >>> 4;
  if (version !== 4 && version !== 6) return drop(Drop['invalid-protocol']);
  const nexthops = c.nexthops;
  // A label leads to a local pod (or the vrouter itself), or to a composite of local pods (several behind
  // one prefix, the pod picked by flow in flow-setup), never back into the fabric.
  const local = nexthops.kind[nexthop] === NH_COMPOSITE ? firstLocalMember(c, nexthop) : nexthop;
  const kind = local < 0 ? -1 : nexthops.kind[local];
  const localVif = kind === NH_ENCAP || kind === NH_RECEIVE ? c.vifs[nexthops.vif[local]] : null;
  if (localVif === null || localVif === undefined) return drop(Drop['invalid-nexthop']);
  pool.nexthop[p] = nexthop;
  pool.vrf[p] = localVif.vrf;
  pool.l3[p] = inner;
  return version === 4 ? INNER_IPV4_INPUT : INNER_IPV6_INPUT;
}

/** A composite's first member when it is a local pod's encap nexthop, else -1. */
function firstLocalMember(c: Pipeline, composite: number): number {
  const nexthops = c.nexthops;
  const members = nexthops.members[composite]!;
  for (let slot = 0; slot < members.length; slot++) {
    if (members[slot] >= 0) return nexthops.kind[members[slot]] === NH_ENCAP ? members[slot] : -1;
  }
  return -1;
}

export function describeTunnelDecap(c: Pipeline, p: number, next: number): string {
  const d = c.pool.data;
  const l3 = c.pool.l3[p];
  const outer = `${ipToString(readU32(d, l3 + 12))} > ${ipToString(readU32(d, l3 + 16))}`;
  if (next !== MPLS_INPUT) return `outer ${outer} not decapsulated`;
  return `mpls-over-${d[l3 + 9] === PROTO_GRE ? 'gre' : 'udp'} ${outer}`;
}

export function describeMplsInput(c: Pipeline, p: number, next: number): string {
  const d = c.pool.data;
  const decapsulated = next === INNER_IPV4_INPUT || next === INNER_IPV6_INPUT;
  const mpls = decapsulated ? c.pool.l3[p] - MPLS_HEADER_LEN : c.pool.l4[p];
  const label = (d[mpls] << 12) | (d[mpls + 1] << 4) | (d[mpls + 2] >>> 4);
  return decapsulated
    ? `label ${label} ttl ${d[mpls + 3]} from node ${ipToString(c.pool.outerSrc[p])} -> nh ${c.pool.nexthop[p]} vrf ${c.pool.vrf[p]}`
    : `label ${label} not accepted`;
}
