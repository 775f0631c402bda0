/**
 * nexthop: acts on the nexthop the route (or the MPLS label) chose. A
 * composite picks its ECMP member slot from the flow hash; the slot is kept
 * in pool.ecmpSlot so a flow table can record it.
 */
import type { Pipeline } from '../pipeline';
import { Drop } from '../drop-reasons';
import { NH_COMPOSITE, NH_DISCARD, NH_ENCAP, NH_KIND_NAMES, NH_RECEIVE, NH_TUNNEL } from '../nexthop';
import { ENCAP_REWRITE, TUNNEL_ENCAP, drop } from './next';

export function nexthop(c: Pipeline, p: number): number {
  const pool = c.pool;
  const nexthops = c.nexthops;
  let id = pool.nexthop[p];
  let kind = nexthops.kind[id];
  if (kind === NH_COMPOSITE) {
    const slot = nexthops.selectSlot(id, pool.hash[p]);
    if (slot < 0) return drop(Drop['ecmp-no-member']);
    pool.ecmpSlot[p] = slot;
    id = nexthops.members[id]![slot];
    pool.nexthop[p] = id;
    kind = nexthops.kind[id];
  }
  if (kind === NH_ENCAP || kind === NH_RECEIVE) return ENCAP_REWRITE;
  if (kind === NH_TUNNEL) return TUNNEL_ENCAP;
  if (kind === NH_DISCARD) return drop(Drop.discard);
  return drop(Drop['invalid-nexthop']);
}

export function describeNexthop(c: Pipeline, p: number): string {
  const id = c.pool.nexthop[p];
  const slot = c.pool.ecmpSlot[p];
  return `nh ${id} ${NH_KIND_NAMES[c.nexthops.kind[id]]}${slot >= 0 ? ` (ecmp member slot ${slot})` : ''}`;
}
