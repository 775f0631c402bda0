/**
 * Synthetic packets for `vrouter trace`: a header-only TCP, UDP or ICMP echo
 * packet as a pod would send it, or (on the fabric vif) the same wrapped in
 * MPLS over UDP from a given node and label, written into a pool slot so the
 * real steps can run on it. IPv6 addresses make an IPv6 packet (ICMPv6 echo
 * for icmp, the TTL as hop limit), upper-layer checksums set.
 */
import { Dataplane } from './dataplane';
import { PacketPool } from './packet-pool';
import { checksum } from './protocols/checksum';
import { ETHERTYPE_IPV4, ETHERTYPE_IPV6, VROUTER_MAC, writeEthernet } from './protocols/ethernet';
import { ICMPV6_ECHO_REQUEST, upperLayerChecksum6 } from './protocols/icmpv6';
import { IP6_HEADER_LEN, PROTO_ICMPV6, ip6FromString } from './protocols/ipv6';
import { PROTO_ICMP, PROTO_TCP, PROTO_UDP, ipFromString, writeU16, writeU32 } from './protocols/ipv4';
import { MPLS_OVER_UDP_PORT } from './protocols/udp';
import { VIF_FABRIC } from './vif';

export interface SyntheticPacket {
  /** Ingress vif, by name or number. */
  vif: string;
  protocol: 'tcp' | 'udp' | 'icmp';
  src: string;
  dst: string;
  srcPort?: number;
  dstPort?: number;
  ttl?: number;
  /** For the fabric vif: the sending node's underlay address and the label. */
  node?: string;
  label?: number;
}

const PROTOCOLS = { tcp: PROTO_TCP, udp: PROTO_UDP, icmp: PROTO_ICMP } as const;
const L4_LENGTH = { tcp: 20, udp: 8, icmp: 8 } as const;

/** Writes the packet into `slot`; returns its ingress vif id. Throws on a bad spec. */
export function writeSyntheticPacket(dp: Dataplane, pool: PacketPool, slot: number, spec: SyntheticPacket): number {
  const vif = dp.vifs.find(spec.vif);
  if (!vif) throw new Error(`no vif ${spec.vif}`);
  const fromFabric = vif.kind === VIF_FABRIC;
  if (fromFabric && (spec.node === undefined || spec.label === undefined)) throw new Error('a packet from the fabric needs node and label');
  pool.reset(slot);
  const d = pool.data;
  const start = pool.start[slot];
  const outer = fromFabric ? 20 + 8 + 4 : 0;
  const ip = start + 14 + outer;
  const ipv6 = spec.src.includes(':');
  if (ipv6 !== spec.dst.includes(':')) throw new Error(`source ${spec.src} and destination ${spec.dst} are of different address families`);
  const l4Length = L4_LENGTH[spec.protocol];
  const headerLength = ipv6 ? IP6_HEADER_LEN : 20;
  const totalLength = headerLength + l4Length;
  const protocol = ipv6 && spec.protocol === 'icmp' ? PROTO_ICMPV6 : PROTOCOLS[spec.protocol];
  d.fill(0, start, ip + totalLength);
  writeEthernet(d, start, fromFabric ? vif.mac : VROUTER_MAC, fromFabric ? VROUTER_MAC : vif.mac, ETHERTYPE_IPV4);
  if (ipv6) {
    if (!fromFabric) writeU16(d, start + 12, ETHERTYPE_IPV6);
    d[ip] = 0x60;
    writeU16(d, ip + 4, l4Length);
    d[ip + 6] = protocol;
    d[ip + 7] = spec.ttl ?? 64;
    d.set(ip6FromString(spec.src), ip + 8);
    d.set(ip6FromString(spec.dst), ip + 24);
  } else {
    d[ip] = 0x45;
    writeU16(d, ip + 2, totalLength);
    d[ip + 8] = spec.ttl ?? 64;
    d[ip + 9] = protocol;
    writeU32(d, ip + 12, ipFromString(spec.src));
    writeU32(d, ip + 16, ipFromString(spec.dst));
    writeU16(d, ip + 10, checksum(d, ip, 20));
  }
  const l4 = ip + headerLength;
  if (spec.protocol === 'icmp') {
    d[l4] = ipv6 ? ICMPV6_ECHO_REQUEST : 8; // echo request, id = srcPort
    writeU16(d, l4 + 4, spec.srcPort ?? 1);
    writeU16(d, l4 + 2, ipv6 ? upperLayerChecksum6(d, ip, l4, 8, PROTO_ICMPV6) : checksum(d, l4, 8));
  } else {
    writeU16(d, l4, spec.srcPort ?? 40000);
    writeU16(d, l4 + 2, spec.dstPort ?? 80);
    if (spec.protocol === 'udp') writeU16(d, l4 + 4, 8);
    else {
      d[l4 + 12] = 5 << 4;
      d[l4 + 13] = 0x02; // SYN
    }
    // IPv6 requires the UDP checksum (RFC 8200 8.1); IPv4's header-only packets keep 0.
    if (ipv6) writeU16(d, l4 + (spec.protocol === 'udp' ? 6 : 16), upperLayerChecksum6(d, ip, l4, l4Length, protocol));
  }
  if (fromFabric) {
    const outerIp = start + 14;
    d[outerIp] = 0x45;
    writeU16(d, outerIp + 2, outer + totalLength);
    d[outerIp + 8] = 64;
    d[outerIp + 9] = PROTO_UDP;
    writeU32(d, outerIp + 12, ipFromString(spec.node!));
    writeU32(d, outerIp + 16, dp.node.underlayIp);
    writeU16(d, outerIp + 10, checksum(d, outerIp, 20));
    writeU16(d, outerIp + 20, 49152);
    writeU16(d, outerIp + 22, MPLS_OVER_UDP_PORT);
    writeU16(d, outerIp + 24, 8 + 4 + totalLength);
    writeU32(d, outerIp + 28, ((spec.label! << 12) | 0x100 | (spec.ttl ?? 64)) >>> 0);
  }
  pool.length[slot] = 14 + outer + totalLength;
  pool.ingressVif[slot] = vif.id;
  return vif.id;
}
