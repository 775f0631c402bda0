/**
 * ttl-decrement: the vrouter is one IP hop between two pods, local or
 * remote, so a pod's packet loses one TTL here (and none at the receiving
 * node). TTL 1 or 0 expires: an ICMP time-exceeded goes back from the gateway.
 * A packet for the vrouter itself (a receive nexthop) is not forwarded, so
 * its TTL is neither checked nor decremented (RFC 1812 5.3.1).
 */
import type { Pipeline } from '../pipeline';
import { Drop } from '../drop-reasons';
import { checksumUpdate16 } from '../protocols/checksum';
import { ICMP_TIME_EXCEEDED } from '../protocols/icmp';
import { IP_CHECKSUM, IP_TTL } from '../protocols/ipv4';
import { NH_RECEIVE } from '../nexthop';
import { icmpErrorInPlace } from './icmp-error';
import { NAT_REWRITE } from './next';

export function ttlDecrement(c: Pipeline, p: number): number {
  const d = c.pool.data;
  const l3 = c.pool.l3[p];
  if (c.nexthops.kind[c.pool.nexthop[p]] === NH_RECEIVE) return NAT_REWRITE;
  const ttl = d[l3 + IP_TTL];
  if (ttl <= 1) return icmpErrorInPlace(c, p, ICMP_TIME_EXCEEDED, 0, 0, Drop['ttl-expired']);
  const protocol = d[l3 + IP_TTL + 1];
  d[l3 + IP_TTL] = ttl - 1;
  const sum = (d[l3 + IP_CHECKSUM] << 8) | d[l3 + IP_CHECKSUM + 1];
  const updated = checksumUpdate16(sum, (ttl << 8) | protocol, ((ttl - 1) << 8) | protocol);
  d[l3 + IP_CHECKSUM] = updated >>> 8;
  d[l3 + IP_CHECKSUM + 1] = updated & 0xff;
  return NAT_REWRITE;
}

export function describeTtlDecrement(c: Pipeline, p: number, next: number): string {
  if (next !== NAT_REWRITE) return 'ttl expired';
  const kept = c.nexthops.kind[c.pool.nexthop[p]] === NH_RECEIVE ? ' (for the vrouter itself: kept)' : '';
  return `ttl now ${c.pool.data[c.pool.l3[p] + IP_TTL]}${kept}`;
}
