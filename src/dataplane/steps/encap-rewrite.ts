/**
 * encap-rewrite: delivers to a local vif (a pod, or the host for a receive
 * nexthop) behind a fresh Ethernet header: destination MAC from the
 * nexthop, source MAC the vrouter's 00:00:5e:00:01:00.
 */
import type { Pipeline } from '../pipeline';
import { Drop } from '../drop-reasons';
import { ETH_HEADER_LEN, VROUTER_MAC, formatMac } from '../protocols/ethernet';
import { TRANSMIT, drop } from './next';

export function encapRewrite(c: Pipeline, p: number): number {
  const pool = c.pool;
  const d = pool.data;
  const id = pool.nexthop[p];
  const vif = c.vifs[c.nexthops.vif[id]];
  if (vif === null || vif === undefined) return drop(Drop['invalid-vif']);
  const end = pool.start[p] + pool.length[p];
  const start = pool.l3[p] - ETH_HEADER_LEN;
  const mac = c.nexthops.mac;
  const macAt = id * 6;
  for (let i = 0; i < 6; i++) {
    d[start + i] = mac[macAt + i];
    d[start + 6 + i] = VROUTER_MAC[i];
  }
  // The ethertype of what is delivered: IPv4 0x0800 or IPv6 0x86dd, by the version nibble.
  const ipv6 = d[pool.l3[p]] >>> 4 === 6;
  d[start + 12] = ipv6 ? 0x86 : 0x08;
  d[start + 13] = ipv6 ? 0xdd : 0x00;
  pool.start[p] = start;
  pool.length[p] = end - start;
  pool.egressVif[p] = vif.id;
  return TRANSMIT;
}

export function describeEncapRewrite(c: Pipeline, p: number, next: number): string {
  if (next !== TRANSMIT) return 'egress vif missing';
  const vif = c.vifs[c.pool.egressVif[p]]!;
  return `to vif ${vif.id} (${vif.name}) dmac ${formatMac(c.nexthops.mac, c.pool.nexthop[p] * 6)}`;
}
