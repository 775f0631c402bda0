/**
 * ipv4-lookup: longest-prefix match of the destination in the packet's VRF.
 */
import type { Pipeline } from '../pipeline';
import { Drop } from '../drop-reasons';
import { prefixMask } from '../lpm/prefix-table';
import { ipToString, readU32 } from '../protocols/ipv4';
import { TTL_DECREMENT, drop } from './next';

export function ipv4Lookup(c: Pipeline, p: number): number {
  const pool = c.pool;
  const vrf = c.vrfs[pool.vrf[p]];
  if (vrf === null || vrf === undefined) return drop(Drop['no-route']);
  const nexthop = vrf.routes.lookup(readU32(pool.data, pool.l3[p] + 16));
  if (nexthop < 0) return drop(Drop['no-route']);
  pool.nexthop[p] = nexthop;
  return TTL_DECREMENT;
}

export function describeIpv4Lookup(c: Pipeline, p: number): string {
  const vrf = c.vrfs[c.pool.vrf[p]];
  const dst = readU32(c.pool.data, c.pool.l3[p] + 16);
  if (!vrf) return `vrf ${c.pool.vrf[p]} does not exist`;
  // Only the trace pays for finding which prefix matched.
  for (let length = 32; length >= 0; length--) {
    const prefix = (dst & prefixMask(length)) >>> 0;
    const nexthop = vrf.routes.get(prefix, length);
    if (nexthop >= 0) return `vrf ${vrf.id} (${vrf.name}) ${ipToString(dst)} matched ${ipToString(prefix)}/${length} -> nh ${nexthop}`;
  }
  return `vrf ${vrf.id} (${vrf.name}) ${ipToString(dst)}: no route`;
}
