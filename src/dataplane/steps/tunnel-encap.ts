/**
 * tunnel-encap: pushes the outer headers for a tunnel nexthop into the
 * packet's headroom, in front of the inner IPv4 header (the pod's Ethernet
 * header is dropped):
 *
 *   MPLS over UDP (RFC 7510):  Ethernet | IPv4 (TTL 64, DF clear, proto 17) |
 *                              UDP (src 49152 + hash, dst 6635, checksum 0) | MPLS | inner IPv4
 *   MPLS over GRE (RFC 4023):  Ethernet | IPv4 (proto 47) | GRE (0x8847) | MPLS | inner IPv4
 *
 * One label, bottom of stack, TTL copied from the inner header (64 if 0).
 * The entropy source port comes from the flow hash, so a flow keeps one
 * port and flows spread.
 */
import type { Pipeline } from '../pipeline';
import { SLOT_SIZE } from '../packet-pool';
import { Drop } from '../drop-reasons';
import { checksum } from '../protocols/checksum';
import { ETH_HEADER_LEN, formatMac } from '../protocols/ethernet';
import { GRE_HEADER_LEN } from '../protocols/gre';
import { ICMP_DEST_UNREACHABLE } from '../protocols/icmp';
import { IP_FLAG_DF, IP_MIN_HEADER_LEN, PROTO_GRE, PROTO_UDP, ipToString } from '../protocols/ipv4';
import { MPLS_HEADER_LEN } from '../protocols/mpls';
import { ENTROPY_PORT_BASE, MPLS_OVER_UDP_PORT, UDP_HEADER_LEN } from '../protocols/udp';
import { ENCAP_MPLS_GRE, TUNNEL_ENCAP_NAMES } from '../nexthop';
import { icmpErrorInPlace } from './icmp-error';
import { fragmentInner } from './ipv4-fragment';
import { restoreReceivedHeader } from './nat-rewrite';
import { restoreReceivedHeader6 } from './nat-rewrite6';
import { icmp6ErrorInPlace } from './icmp6-error';
import { ICMPV6_PACKET_TOO_BIG } from '../protocols/icmpv6';
import { TRANSMIT, drop } from './next';

const ICMP_FRAGMENTATION_NEEDED = 4;

export function tunnelEncap(c: Pipeline, p: number): number {
  const pool = c.pool;
  const d = pool.data;
  const nexthops = c.nexthops;
  const id = pool.nexthop[p];
  const fabric = c.vifs[nexthops.vif[id]];
  if (fabric === null || fabric === undefined) return drop(Drop['invalid-vif']);
  const inner = pool.l3[p];
  const innerLength = pool.start[p] + pool.length[p] - inner;
  const overGre = nexthops.encap[id] === ENCAP_MPLS_GRE;
  const tunnelLength = (overGre ? GRE_HEADER_LEN : UDP_HEADER_LEN) + MPLS_HEADER_LEN;
  const outerLength = IP_MIN_HEADER_LEN + tunnelLength + innerLength;
  const innerIpv6 = d[inner] >>> 4 === 6;
  if (outerLength > fabric.mtu) {
    const innerFlags = (d[inner + 6] << 8) | d[inner + 7];
    const innerMtu = fabric.mtu - IP_MIN_HEADER_LEN - tunnelLength;
    // IPv6 routers never fragment (RFC 8200 5): a packet too big, with the MTU the tunnel leaves.
    if (innerIpv6) {
      restoreReceivedHeader6(c, p);
      return icmp6ErrorInPlace(c, p, ICMPV6_PACKET_TOO_BIG, 0, innerMtu, Drop['fragment-needed']);
    }
    if ((innerFlags & IP_FLAG_DF) !== 0) {
      restoreReceivedHeader(c, p);
      return icmpErrorInPlace(c, p, ICMP_DEST_UNREACHABLE, ICMP_FRAGMENTATION_NEEDED, innerMtu, Drop['fragment-needed']);
    }
    // DF clear: fragment the inner packet, then encapsulate each piece.
    if (!fragmentInner(c, p, innerMtu)) return drop(Drop['fragment-needed']);
    return tunnelEncap(c, p);
  }
  const ip = inner - tunnelLength - IP_MIN_HEADER_LEN;
  const start = ip - ETH_HEADER_LEN;
  if (start < p * SLOT_SIZE) return drop(Drop['no-headroom']);

  // Ethernet: to the underlay next hop, from the fabric interface.
  const mac = nexthops.mac;
  const macAt = id * 6;
  const fabricMac = fabric.mac;
  for (let i = 0; i < 6; i++) {
    d[start + i] = mac[macAt + i];
    d[start + 6 + i] = fabricMac[i];
  }
  d[start + 12] = 0x08;
  d[start + 13] = 0x00;

  // Outer IPv4.
  const ipId = c.nextIpId();
  const sip = nexthops.sip[id];
  const dip = nexthops.dip[id];
  d[ip] = 0x45;
  d[ip + 1] = 0;
  d[ip + 2] = outerLength >>> 8;
  d[ip + 3] = outerLength & 0xff;
  d[ip + 4] = ipId >>> 8;
  d[ip + 5] = ipId & 0xff;
  d[ip + 6] = 0;
  d[ip + 7] = 0;
  d[ip + 8] = 64;
  d[ip + 9] = overGre ? PROTO_GRE : PROTO_UDP;
  d[ip + 10] = 0;
  d[ip + 11] = 0;
  d[ip + 12] = sip >>> 24;
  d[ip + 13] = (sip >>> 16) & 0xff;
  d[ip + 14] = (sip >>> 8) & 0xff;
  d[ip + 15] = sip & 0xff;
  d[ip + 16] = dip >>> 24;
  d[ip + 17] = (dip >>> 16) & 0xff;
  d[ip + 18] = (dip >>> 8) & 0xff;
  d[ip + 19] = dip & 0xff;
  const sum = checksum(d, ip, IP_MIN_HEADER_LEN);
  d[ip + 10] = sum >>> 8;
  d[ip + 11] = sum & 0xff;

  const l4 = ip + IP_MIN_HEADER_LEN;
  if (overGre) {
    d[l4] = 0;
    d[l4 + 1] = 0;
    d[l4 + 2] = 0x88;
    d[l4 + 3] = 0x47;
  } else {
    const srcPort = ENTROPY_PORT_BASE | (pool.hash[p] & 0x3fff);
    const udpLength = UDP_HEADER_LEN + MPLS_HEADER_LEN + innerLength;
    d[l4] = srcPort >>> 8;
    d[l4 + 1] = srcPort & 0xff;
    d[l4 + 2] = MPLS_OVER_UDP_PORT >>> 8;
    d[l4 + 3] = MPLS_OVER_UDP_PORT & 0xff;
    d[l4 + 4] = udpLength >>> 8;
    d[l4 + 5] = udpLength & 0xff;
    d[l4 + 6] = 0; // RFC 7510 3.2: zero UDP checksum over IPv4
    d[l4 + 7] = 0;
  }

  const mpls = inner - MPLS_HEADER_LEN;
  const label = nexthops.label[id];
  const innerTtl = innerIpv6 ? d[inner + 7] : d[inner + 8];
  d[mpls] = label >>> 12;
  d[mpls + 1] = (label >>> 4) & 0xff;
  d[mpls + 2] = ((label & 0x0f) << 4) | 0x01;
  d[mpls + 3] = innerTtl === 0 ? 64 : innerTtl;

  pool.start[p] = start;
  pool.length[p] = ETH_HEADER_LEN + outerLength;
  pool.egressVif[p] = fabric.id;
  return TRANSMIT;
}

export function describeTunnelEncap(c: Pipeline, p: number, next: number): string {
  const id = c.pool.nexthop[p];
  if (next !== TRANSMIT || c.pool.egressVif[p] !== c.nexthops.vif[id]) return 'not encapsulated';
  const n = c.nexthops;
  return (
    `mpls-over-${TUNNEL_ENCAP_NAMES[n.encap[id]]} ${ipToString(n.sip[id])} > ${ipToString(n.dip[id])}` +
    ` label ${n.label[id]} dmac ${formatMac(n.mac, id * 6)} out vif ${c.pool.egressVif[p]}`
  );
}
