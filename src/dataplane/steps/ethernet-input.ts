/**
 * ethernet-input: finds the L3 header behind the Ethernet header (one 802.1Q
 * tag tolerated) and sends the packet on by ethertype.
 */
import type { Pipeline } from '../pipeline';
import { Drop } from '../drop-reasons';
import {
  ETH_HEADER_LEN,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  ETHERTYPE_VLAN,
  VLAN_TAG_LEN,
} from '../protocols/ethernet';
import { ARP_PROXY, IPV4_INPUT, IPV6_INPUT, drop } from './next';

export function ethernetInput(c: Pipeline, p: number): number {
  const pool = c.pool;
  const d = pool.data;
  const start = pool.start[p];
  const length = pool.length[p];
  if (length < ETH_HEADER_LEN) return drop(Drop.truncated);
  let etherType = (d[start + 12] << 8) | d[start + 13];
  let l3 = start + ETH_HEADER_LEN;
  if (etherType === ETHERTYPE_VLAN) {
    if (length < ETH_HEADER_LEN + VLAN_TAG_LEN) return drop(Drop.truncated);
    etherType = (d[start + 16] << 8) | d[start + 17];
    l3 += VLAN_TAG_LEN;
  }
  pool.l3[p] = l3;
  if (etherType === ETHERTYPE_IPV4) return IPV4_INPUT;
  if (etherType === ETHERTYPE_ARP) return ARP_PROXY;
  if (etherType === ETHERTYPE_IPV6) return IPV6_INPUT;
  return drop(Drop['unknown-ethertype']);
}

export function describeEthernetInput(c: Pipeline, p: number): string {
  const d = c.pool.data;
  const l3 = c.pool.l3[p];
  if (l3 < 0) return 'frame too short';
  const tagged = l3 - c.pool.start[p] > ETH_HEADER_LEN;
  return `ethertype 0x${((d[l3 - 2] << 8) | d[l3 - 1]).toString(16).padStart(4, '0')}${tagged ? ' (802.1Q tagged)' : ''}`;
}
