/**
 * ipv6-lookup: longest-prefix match of the destination in the packet's
 * VRF; no route sends a destination unreachable back (RFC 4443 3.1, code 0).
 * hop-limit-decrement: the hop limit is the IPv6 TTL and is handled as
 * ttl-decrement does (one hop per vrouter, the sending node's): 1 or 0
 * expires with a time exceeded from the gateway. IPv6 has no header
 * checksum to fix.
 */
import type { Pipeline } from '../pipeline';
import { Drop } from '../drop-reasons';
import { ICMPV6_DEST_UNREACHABLE, ICMPV6_NO_ROUTE, ICMPV6_TIME_EXCEEDED } from '../protocols/icmpv6';
import { IP6_DST, IP6_HOP_LIMIT, ip6ToString, maskPrefix6 } from '../protocols/ipv6';
import { icmp6ErrorInPlace } from './icmp6-error';
import { HOP_LIMIT_DECREMENT, NAT_REWRITE, TRANSMIT } from './next';

export function ipv6Lookup(c: Pipeline, p: number): number {
  const pool = c.pool;
  const vrf = c.vrfs[pool.vrf[p]];
  const nexthop = vrf === null || vrf === undefined ? -1 : vrf.routes6.lookup(pool.data, pool.l3[p] + IP6_DST);
  if (nexthop < 0) return icmp6ErrorInPlace(c, p, ICMPV6_DEST_UNREACHABLE, ICMPV6_NO_ROUTE, 0, Drop['no-route']);
  pool.nexthop[p] = nexthop;
  return HOP_LIMIT_DECREMENT;
}

export function describeIpv6Lookup(c: Pipeline, p: number, next: number): string {
  const vrf = c.vrfs[c.pool.vrf[p]];
  if (!vrf) return `vrf ${c.pool.vrf[p]} does not exist`;
  if (next === TRANSMIT) return `vrf ${vrf.id} (${vrf.name}): no route, destination unreachable sent`;
  const dst = c.pool.data.subarray(c.pool.l3[p] + IP6_DST, c.pool.l3[p] + IP6_DST + 16);
  // Only the trace pays for finding which prefix matched.
  for (let length = 128; length >= 0; length--) {
    const prefix = maskPrefix6(Uint8Array.from(dst), length);
    const nexthop = vrf.routes6.get(prefix, length);
    if (nexthop >= 0) return `vrf ${vrf.id} (${vrf.name}) ${ip6ToString(dst)} matched ${ip6ToString(prefix)}/${length} -> nh ${nexthop}`;
  }
  return `vrf ${vrf.id} (${vrf.name}) ${ip6ToString(dst)}: no route`;
}

export function hopLimitDecrement(c: Pipeline, p: number): number {
  const d = c.pool.data;
  const at = c.pool.l3[p] + IP6_HOP_LIMIT;
  const hopLimit = d[at];
  if (hopLimit <= 1) return icmp6ErrorInPlace(c, p, ICMPV6_TIME_EXCEEDED, 0, 0, Drop['ttl-expired']);
  d[at] = hopLimit - 1;
  return NAT_REWRITE;
}

export function describeHopLimitDecrement(c: Pipeline, p: number, next: number): string {
  return next === NAT_REWRITE ? `hop limit now ${c.pool.data[c.pool.l3[p] + IP6_HOP_LIMIT]}` : 'hop limit expired';
}
