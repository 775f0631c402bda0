/**
 * arp-proxy: answers a pod's ARP request for any address in its VN's subnets
 * (or the gateway) with the vrouter MAC, turning the request into the reply
 * in place. ARP is never forwarded, least of all across nodes.
 */
import type { Pipeline } from '../pipeline';
import { Drop } from '../drop-reasons';
import { ARP_LEN, ARP_OPER, ARP_REPLY, ARP_REQUEST, ARP_SHA, ARP_SPA, ARP_THA, ARP_TPA } from '../protocols/arp';
import { ETH_DST, ETH_SRC, VROUTER_MAC } from '../protocols/ethernet';
import { ipToString, readU32, writeU32 } from '../protocols/ipv4';
import { VIF_VIRTUAL } from '../vif';
import { TRANSMIT, drop } from './next';

export function arpProxy(c: Pipeline, p: number): number {
  const pool = c.pool;
  const d = pool.data;
  const start = pool.start[p];
  const arp = pool.l3[p];
  if (start + pool.length[p] - arp < ARP_LEN) return drop(Drop.truncated);
  const vif = c.vifs[pool.ingressVif[p]]!;
  if (vif.kind !== VIF_VIRTUAL) return drop(Drop['arp-not-proxied']);
  // Ethernet/IPv4 request only: htype 1, ptype 0x0800, hlen 6, plen 4, oper 1.
  if (d[arp] !== 0 || d[arp + 1] !== 1 || d[arp + 2] !== 0x08 || d[arp + 3] !== 0 || d[arp + 4] !== 6 || d[arp + 5] !== 4)
    return drop(Drop['arp-not-proxied']);
  if (d[arp + ARP_OPER] !== 0 || d[arp + ARP_OPER + 1] !== ARP_REQUEST) return drop(Drop['arp-not-proxied']);
  const target = readU32(d, arp + ARP_TPA);
  const sender = readU32(d, arp + ARP_SPA);
  const vrf = c.vrfs[vif.vrf];
  // A pod asking for its own address, or asking from 0.0.0.0, is probing for
  // duplicates (RFC 5227): an answer would make it give its address up.
  if (vrf === null || sender === 0 || target === sender || (target !== vrf.gateway && !vrf.inSubnets(target)))
    return drop(Drop['arp-not-proxied']);

  for (let i = 0; i < 6; i++) {
    const requesterMac = d[arp + ARP_SHA + i];
    d[start + ETH_DST + i] = requesterMac;
    d[start + ETH_SRC + i] = VROUTER_MAC[i];
    d[arp + ARP_THA + i] = requesterMac;
    d[arp + ARP_SHA + i] = VROUTER_MAC[i];
  }
  d[arp + ARP_OPER + 1] = ARP_REPLY;
  writeU32(d, arp + ARP_TPA, sender);
  writeU32(d, arp + ARP_SPA, target);
  pool.length[p] = arp + ARP_LEN - start;
  pool.egressVif[p] = vif.id;
  return TRANSMIT;
}

export function describeArpProxy(c: Pipeline, p: number, next: number): string {
  const d = c.pool.data;
  const arp = c.pool.l3[p];
  if (c.pool.start[p] + c.pool.length[p] - arp < ARP_LEN) return 'truncated';
  // After a reply the addresses have swapped places: the sender is the answer.
  return next === TRANSMIT
    ? `${ipToString(readU32(d, arp + ARP_SPA))} is-at 00:00:5e:00:01:00, told ${ipToString(readU32(d, arp + ARP_TPA))}`
    : `who-has ${ipToString(readU32(d, arp + ARP_TPA))} tell ${ipToString(readU32(d, arp + ARP_SPA))}: not answered`;
}
