/**
 * nat-rewrite for IPv6 packets (called by nat-rewrite.ts for version 6):
 * the same translations from the partner entry's key, on 128-bit addresses.
 * IPv6 has no header checksum; the TCP, UDP and ICMPv6 checksums all cover
 * the addresses through the pseudo-header and are updated incrementally
 * (RFC 1624, word by word). An ICMPv6 error is translated as its flow, the
 * quoted packet the other way round, and its checksum recomputed.
 */
import type { Pipeline } from '../pipeline';
import { NAT_DNAT, NAT_DPAT, NAT_SNAT, NAT_SPAT } from '../flow-table';
import { readU16, writeU16, PROTO_TCP, PROTO_UDP } from '../protocols/ipv4';
import { ICMPV6_HEADER_LEN, isIcmpv6Error, upperLayerChecksum6 } from '../protocols/icmpv6';
import { IP6_DST, IP6_HOP_LIMIT, IP6_SRC, PROTO_ICMPV6 } from '../protocols/ipv6';
import { VIF_FABRIC } from '../vif';
import { quotedProtocol6, quotedUpperLayer6 } from './flow6';
import { rewritePort } from './nat-rewrite';

/** Offset of the upper-layer checksum from its header, -1 when there is none. */
function checksumOffset6(protocol: number): number {
  return protocol === PROTO_TCP ? 16 : protocol === PROTO_UDP ? 6 : protocol === PROTO_ICMPV6 ? 2 : -1;
}

/** Writes the 16 bytes at from[fromAt] over data[at], updating the checksum at data[l4Checksum] (-1: none). */
function rewriteAddress6(d: Uint8Array, at: number, l4Checksum: number, from: Uint8Array, fromAt: number): void {
  let sum = l4Checksum >= 0 ? ~readU16(d, l4Checksum) & 0xffff : 0;
  let changed = false;
  for (let i = 0; i < 16; i += 2) {
    const old = (d[at + i] << 8) | d[at + i + 1];
    const value = (from[fromAt + i] << 8) | from[fromAt + i + 1];
    if (old === value) continue;
    changed = true;
    sum += (~old & 0xffff) + value;
    d[at + i] = value >>> 8;
    d[at + i + 1] = value & 0xff;
  }
  if (!changed || l4Checksum < 0) return;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  writeU16(d, l4Checksum, ~sum & 0xffff);
}

export function natRewrite6(c: Pipeline, p: number, entry: number, flags: number): void {
  const pool = c.pool;
  const d = pool.data;
  const flows = c.flows;
  const l3 = pool.l3[p];
  const l4 = pool.l4[p];
  const protocol = pool.upperProtocol[p];
  if (protocol === PROTO_ICMPV6 && l4 >= 0 && isIcmpv6Error(d[l4])) {
    translateIcmp6Error(c, p, entry, flags);
    return;
  }
  const partner = flows.address6Offset(entry ^ 1);
  const ports = flows.keyPorts[entry ^ 1];
  // A later fragment has no upper-layer header: only its addresses change (the first fragment's checksum
  // update covers the pseudo-header for the whole datagram).
  const offset = l4 >= 0 ? checksumOffset6(protocol) : -1;
  const l4Checksum = offset >= 0 ? l4 + offset : -1;
  if (flags & NAT_SNAT) rewriteAddress6(d, l3 + IP6_SRC, l4Checksum, flows.keyAddress6, partner + 16);
  if (flags & NAT_DNAT) rewriteAddress6(d, l3 + IP6_DST, l4Checksum, flows.keyAddress6, partner);
  if (l4 >= 0 && (protocol === PROTO_TCP || protocol === PROTO_UDP)) {
    if (flags & NAT_SPAT) rewritePort(d, l4, l4Checksum, protocol, ports & 0xffff);
    if (flags & NAT_DPAT) rewritePort(d, l4 + 2, l4Checksum, protocol, ports >>> 16);
  }
}

function translateIcmp6Error(c: Pipeline, p: number, entry: number, flags: number): void {
  const pool = c.pool;
  const d = pool.data;
  const flows = c.flows;
  const l3 = pool.l3[p];
  const icmp = pool.l4[p];
  const end = pool.start[p] + pool.length[p];
  const own = flows.address6Offset(entry);
  const partner = flows.address6Offset(entry ^ 1);
  const ports = flows.keyPorts[entry ^ 1];
  const quoted = icmp + ICMPV6_HEADER_LEN;
  // The flow matched through the quote (flow-lookup), so its upper-layer header is there.
  const quotedProtocol = quotedProtocol6(d, quoted);
  const quotedL4 = quotedUpperLayer6(d, quoted);
  const offset = checksumOffset6(quotedProtocol);
  const quotedChecksum = offset >= 0 && quotedL4 + offset + 2 <= end ? quotedL4 + offset : -1;
  if (flags & NAT_SNAT) {
    // The outer source is translated only when it is the flow's own end (not a router on the way).
    let ownSource = true;
    for (let i = 0; i < 16 && ownSource; i++) ownSource = d[l3 + IP6_SRC + i] === flows.keyAddress6[own + i];
    if (ownSource) rewriteAddress6(d, l3 + IP6_SRC, -1, flows.keyAddress6, partner + 16);
    rewriteAddress6(d, quoted + IP6_DST, quotedChecksum, flows.keyAddress6, partner + 16);
  }
  if (flags & NAT_DNAT) {
    rewriteAddress6(d, l3 + IP6_DST, -1, flows.keyAddress6, partner);
    rewriteAddress6(d, quoted + IP6_SRC, quotedChecksum, flows.keyAddress6, partner);
  }
  if (quotedProtocol === PROTO_TCP || quotedProtocol === PROTO_UDP) {
    if (flags & NAT_SPAT) rewritePort(d, quotedL4 + 2, quotedChecksum, quotedProtocol, ports & 0xffff);
    if (flags & NAT_DPAT) rewritePort(d, quotedL4, quotedChecksum, quotedProtocol, ports >>> 16);
  }
  writeU16(d, icmp + 2, 0);
  writeU16(d, icmp + 2, upperLayerChecksum6(d, l3, icmp, end - icmp, PROTO_ICMPV6));
}

/**
 * Puts back the header the packet arrived with (addresses and ports from
 * the flow key, the hop limit before its decrement), so a packet too big
 * quotes what the pod sent and goes back to the pod's own address.
 */
export function restoreReceivedHeader6(c: Pipeline, p: number): void {
  const pool = c.pool;
  const d = pool.data;
  const l3 = pool.l3[p];
  const l4 = pool.l4[p];
  const entry = pool.flowEntry[p];
  const protocol = pool.upperProtocol[p];
  if (entry >= 0 && c.flows.natFlags[entry] !== 0) {
    const flows = c.flows;
    const own = flows.address6Offset(entry);
    const offset = l4 >= 0 ? checksumOffset6(protocol) : -1;
    const l4Checksum = offset >= 0 ? l4 + offset : -1;
    rewriteAddress6(d, l3 + IP6_SRC, l4Checksum, flows.keyAddress6, own);
    rewriteAddress6(d, l3 + IP6_DST, l4Checksum, flows.keyAddress6, own + 16);
    if (l4 >= 0 && (protocol === PROTO_TCP || protocol === PROTO_UDP)) {
      rewritePort(d, l4, l4Checksum, protocol, flows.keyPorts[entry] >>> 16);
      rewritePort(d, l4 + 2, l4Checksum, protocol, flows.keyPorts[entry] & 0xffff);
    }
  }
  if (c.vifs[pool.ingressVif[p]]!.kind !== VIF_FABRIC) d[l3 + IP6_HOP_LIMIT]++;
}
