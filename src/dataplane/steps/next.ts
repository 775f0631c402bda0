/**
 * What a pipeline step returns: the id of the next step, TRANSMIT (the
 * packet leaves by pool.egressVif), or a drop with its reason. Plain
 * numbers, so deciding where a packet goes allocates nothing.
 */
export const ETHERNET_INPUT = 0;
export const ARP_PROXY = 1;
export const IPV4_INPUT = 2;
export const TUNNEL_DECAP = 3;
export const INNER_IPV4_INPUT = 4;
export const IPV4_LOOKUP = 5;
export const TTL_DECREMENT = 6;
export const NEXTHOP = 7;
export const ENCAP_REWRITE = 8;
export const TUNNEL_ENCAP = 9;
export const SOURCE_CHECK = 10;
export const TUNNEL_SOURCE_CHECK = 11;
export const FLOW_LOOKUP = 12;
export const FLOW_SETUP = 13;
export const FLOW_APPLY = 14;
export const NAT_REWRITE = 15;
export const MPLS_INPUT = 16;
export const IPV6_INPUT = 17;
export const INNER_IPV6_INPUT = 18;
export const ND_PROXY = 19;
export const IPV6_LOOKUP = 20;
export const HOP_LIMIT_DECREMENT = 21;

export const TRANSMIT = -1;
/** The packet was copied aside (a fragment waiting for its first fragment). */
export const HELD = -1_000_000;

/** Encodes a drop reason (from drop-reasons.ts) as a step result. */
export function drop(reason: number): number {
  return -2 - reason;
}

/** The drop reason of a step result that is a drop (not TRANSMIT or HELD). */
export function dropReasonOf(next: number): number {
  return -2 - next;
}
