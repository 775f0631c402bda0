/**
 * nat-rewrite: applies a NAT flow's translation, taking the new address and
 * port from the partner entry's key (as OpenContrail does): SNAT sets the
 * source to the partner's destination, DNAT the destination to the
 * partner's source, SPAT/DPAT likewise for ports. Checksums are updated
 * incrementally (RFC 1624): the IPv4 header, and the TCP/UDP checksum whose
 * pseudo-header covers the addresses (a zero UDP checksum stays zero).
 *
 * An ICMP error is translated as its flow: the outer addresses as above and
 * the quoted packet the other way round, so the pod behind a ClusterIP
 * reports errors as the ClusterIP.
 */
import type { Pipeline } from '../pipeline';
import { NAT_DNAT, NAT_DPAT, NAT_SNAT, NAT_SPAT } from '../flow-table';
import { checksum, checksumUpdate16, checksumUpdate32 } from '../protocols/checksum';
import { ICMP_HEADER_LEN, isIcmpError } from '../protocols/icmp';
import { PROTO_ICMP, PROTO_TCP, PROTO_UDP, ipToString, readU16, readU32, writeU16, writeU32 } from '../protocols/ipv4';
import { IP6_DST, IP6_SRC, ip6ToString } from '../protocols/ipv6';
import { VIF_FABRIC } from '../vif';
import { natRewrite6 } from './nat-rewrite6';
import { NEXTHOP } from './next';

/** Offset of the L4 checksum from the L4 header, -1 when the protocol has none to fix. */
function l4ChecksumOffset(protocol: number): number {
  return protocol === PROTO_TCP ? 16 : protocol === PROTO_UDP ? 6 : -1;
}

/** Rewrites the 32-bit address at `at` in the IPv4 header `ip`, fixing the header and L4 checksums. */
function rewriteAddress(d: Buffer, ip: number, at: number, l4Checksum: number, value: number): void {
  const old = readU32(d, at);
  if (old === value) return;
  writeU32(d, at, value);
  writeU16(d, ip + 10, checksumUpdate32(readU16(d, ip + 10), old, value));
  if (l4Checksum >= 0) {
    const sum = readU16(d, l4Checksum);
    // UDP over IPv4 may carry no checksum (0): it stays without one.
    if (sum !== 0 || d[ip + 9] === PROTO_TCP) writeU16(d, l4Checksum, checksumUpdate32(sum, old, value) || (d[ip + 9] === PROTO_UDP ? 0xffff : 0));
  }
}

export function rewritePort(d: Uint8Array, at: number, l4Checksum: number, protocol: number, value: number): void {
  const old = readU16(d, at);
  if (old === value) return;
  writeU16(d, at, value);
  if (l4Checksum >= 0) {
    const sum = readU16(d, l4Checksum);
    if (sum !== 0 || protocol === PROTO_TCP) writeU16(d, l4Checksum, checksumUpdate16(sum, old, value) || (protocol === PROTO_UDP ? 0xffff : 0));
  }
}

export function natRewrite(c: Pipeline, p: number): number {
  const pool = c.pool;
  const entry = pool.flowEntry[p];
  if (entry < 0) return NEXTHOP;
  const flows = c.flows;
  const flags = flows.natFlags[entry];
  if (flags === 0) return NEXTHOP;
  const d = pool.data;
  const l3 = pool.l3[p];
  if (d[l3] >>> 4 === 6) {
    natRewrite6(c, p, entry, flags);
    return NEXTHOP;
  }
  const l4 = pool.l4[p];
  const protocol = d[l3 + 9];
  if (protocol === PROTO_ICMP && l4 >= 0 && isIcmpError(d[l4])) {
    translateIcmpError(c, p, entry, flags);
    return NEXTHOP;
  }
  const partner = entry ^ 1;
  // A later fragment has no L4 header: only its addresses change.
  const l4Checksum = l4 >= 0 && l4ChecksumOffset(protocol) >= 0 ? l4 + l4ChecksumOffset(protocol) : -1;
  if (flags & NAT_SNAT) rewriteAddress(d, l3, l3 + 12, l4Checksum, flows.keyDst[partner]);
  if (flags & NAT_DNAT) rewriteAddress(d, l3, l3 + 16, l4Checksum, flows.keySrc[partner]);
  if (l4Checksum >= 0) {
    if (flags & NAT_SPAT) rewritePort(d, l4, l4Checksum, protocol, flows.keyPorts[partner] & 0xffff);
    if (flags & NAT_DPAT) rewritePort(d, l4 + 2, l4Checksum, protocol, flows.keyPorts[partner] >>> 16);
  }
  return NEXTHOP;
}

/**
 * The error travels in `entry`'s direction; the packet it quotes went the
 * other way, so the quoted source/destination get the opposite rewrite.
 */
function translateIcmpError(c: Pipeline, p: number, entry: number, flags: number): void {
  const pool = c.pool;
  const d = pool.data;
  const flows = c.flows;
  const partner = entry ^ 1;
  const l3 = pool.l3[p];
  const icmp = pool.l4[p];
  const end = pool.start[p] + pool.length[p];
  const quoted = icmp + ICMP_HEADER_LEN;
  const quotedProtocol = d[quoted + 9];
  const quotedL4 = quoted + ((d[quoted] & 0x0f) << 2);
  // The quoted UDP checksum is within the 8 bytes an error carries; TCP's is not.
  const quotedChecksum = quotedProtocol === PROTO_UDP && quotedL4 + 8 <= end ? quotedL4 + 6 : -1;
  if (flags & NAT_SNAT) {
    const newSource = flows.keyDst[partner];
    if (readU32(d, l3 + 12) === flows.keySrc[entry]) rewriteAddress(d, l3, l3 + 12, -1, newSource);
    rewriteAddress(d, quoted, quoted + 16, quotedChecksum, newSource);
  }
  if (flags & NAT_DNAT) {
    const newDestination = flows.keySrc[partner];
    rewriteAddress(d, l3, l3 + 16, -1, newDestination);
    rewriteAddress(d, quoted, quoted + 12, quotedChecksum, newDestination);
  }
  if (quotedProtocol === PROTO_TCP || quotedProtocol === PROTO_UDP) {
    if (flags & NAT_SPAT) rewritePort(d, quotedL4 + 2, quotedChecksum, quotedProtocol, flows.keyPorts[partner] & 0xffff);
    if (flags & NAT_DPAT) rewritePort(d, quotedL4, quotedChecksum, quotedProtocol, flows.keyPorts[partner] >>> 16);
  }
  // The ICMP checksum covers the quoted bytes that changed: recompute it (errors are small and rare).
  writeU16(d, icmp + 2, 0);
  writeU16(d, icmp + 2, checksum(d, icmp, end - icmp));
}

/**
 * Puts back the header the packet arrived with (the flow key holds the
 * addresses and ports from before NAT; the TTL loses its decrement), so an
 * ICMP error about it (fragmentation needed, after NAT) quotes what the
 * sender sent and goes back to the sender's real address.
 */
export function restoreReceivedHeader(c: Pipeline, p: number): void {
  const pool = c.pool;
  const d = pool.data;
  const l3 = pool.l3[p];
  const l4 = pool.l4[p];
  const protocol = d[l3 + 9];
  const entry = pool.flowEntry[p];
  if (entry >= 0 && c.flows.natFlags[entry] !== 0) {
    const flows = c.flows;
    const l4Checksum = l4 >= 0 && l4ChecksumOffset(protocol) >= 0 ? l4 + l4ChecksumOffset(protocol) : -1;
    rewriteAddress(d, l3, l3 + 12, l4Checksum, flows.keySrc[entry]);
    rewriteAddress(d, l3, l3 + 16, l4Checksum, flows.keyDst[entry]);
    if (l4Checksum >= 0) {
      rewritePort(d, l4, l4Checksum, protocol, flows.keyPorts[entry] >>> 16);
      rewritePort(d, l4 + 2, l4Checksum, protocol, flows.keyPorts[entry] & 0xffff);
    }
  }
  if (c.vifs[pool.ingressVif[p]]!.kind !== VIF_FABRIC) {
    const ttl = d[l3 + 8];
    d[l3 + 8] = ttl + 1;
    writeU16(d, l3 + 10, checksumUpdate16(readU16(d, l3 + 10), (ttl << 8) | protocol, ((ttl + 1) << 8) | protocol));
  }
}

export function describeNatRewrite(c: Pipeline, p: number): string {
  const entry = c.pool.flowEntry[p];
  if (entry < 0 || c.flows.natFlags[entry] === 0) return 'no translation';
  const d = c.pool.data;
  const l3 = c.pool.l3[p];
  const addresses =
    d[l3] >>> 4 === 6
      ? `${ip6ToString(d, l3 + IP6_SRC)} > ${ip6ToString(d, l3 + IP6_DST)}`
      : `${ipToString(readU32(d, l3 + 12))} > ${ipToString(readU32(d, l3 + 16))}`;
  return `${c.flows.view(entry).nat.join(',')}: now ${addresses}`;
}
