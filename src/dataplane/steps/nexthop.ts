/**
 * nexthop: acts on the nexthop the route (or the MPLS label) chose. A
 * composite keeps the flow's recorded ECMP member while that slot holds one
 * (sticky load balancing across member changes), else picks by flow hash and
 * records the choice in the flow.
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
    const members = nexthops.members[id]!;
    let slot = pool.ecmpSlot[p];
    // Sticky: the flow's member while its slot holds one, else a new choice recorded in the flow.
    if (slot < 0 || slot >= members.length || members[slot] < 0) {
      slot = nexthops.selectSlot(id, pool.hash[p]);
      if (slot < 0) return drop(Drop['ecmp-no-member']);
      const entry = pool.flowEntry[p];
      if (entry >= 0 && c.flows.isActive(entry)) c.flows.ecmpSlot[entry] = slot;
    }
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
