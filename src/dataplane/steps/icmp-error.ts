/**
 * Turns a packet from a pod into the ICMP error about it, in place: the
 * offending IP header and its first 8 data bytes move behind new IP and ICMP
 * headers, sourced from the VN's gateway and sent back out the ingress vif.
 * RFC 1812 4.3.2.7: never about an ICMP error or a non-first fragment.
 */
import type { Pipeline } from '../pipeline';
import { checksum } from '../protocols/checksum';
import { ETH_HEADER_LEN, ETHERTYPE_IPV4, VROUTER_MAC, writeEthernet } from '../protocols/ethernet';
import { ICMP_HEADER_LEN, isIcmpError } from '../protocols/icmp';
import { IP_MIN_HEADER_LEN, PROTO_ICMP, readU32, setIpChecksum, writeU16, writeU32 } from '../protocols/ipv4';
import { TRANSMIT, drop } from './next';

const requesterMac = new Uint8Array(6);

/**
 * Rewrites packet p into ICMP type/code (with `rest` in bytes 4-7) and
 * returns TRANSMIT, counting `reason` as the original's drop; returns the
 * plain drop when no error may be sent.
 */
export function icmpErrorInPlace(c: Pipeline, p: number, type: number, code: number, rest: number, reason: number): number {
  const pool = c.pool;
  const d = pool.data;
  const l3 = pool.l3[p];
  const vrf = c.vrfs[pool.vrf[p]];
  const headerLength = (d[l3] & 0x0f) << 2;
  const totalLength = (d[l3 + 2] << 8) | d[l3 + 3];
  const protocol = d[l3 + 9];
  const fragmentOffset = ((d[l3 + 6] << 8) | d[l3 + 7]) & 0x1fff;
  const l4 = l3 + headerLength;
  if (vrf === null || vrf === undefined || vrf.gateway === 0 || fragmentOffset !== 0) return drop(reason);
  if (protocol === PROTO_ICMP && (totalLength - headerLength < 1 || isIcmpError(d[l4]))) return drop(reason);

  const quoted = Math.min(totalLength, headerLength + 8);
  const start = pool.start[p];
  for (let i = 0; i < 6; i++) requesterMac[i] = d[start + 6 + i];
  const originalSource = readU32(d, l3 + 12);
  const icmp = l3 + IP_MIN_HEADER_LEN;
  d.copyWithin(icmp + ICMP_HEADER_LEN, l3, l3 + quoted);

  d[l3] = 0x45;
  d[l3 + 1] = 0xc0; // internetwork control, as routers mark ICMP errors
  writeU16(d, l3 + 2, IP_MIN_HEADER_LEN + ICMP_HEADER_LEN + quoted);
  writeU16(d, l3 + 4, c.nextIpId());
  writeU16(d, l3 + 6, 0);
  d[l3 + 8] = 64;
  d[l3 + 9] = PROTO_ICMP;
  writeU32(d, l3 + 12, vrf.gateway);
  writeU32(d, l3 + 16, originalSource);
  setIpChecksum(d, l3);

  d[icmp] = type;
  d[icmp + 1] = code;
  writeU16(d, icmp + 2, 0);
  writeU32(d, icmp + 4, rest);
  writeU16(d, icmp + 2, checksum(d, icmp, ICMP_HEADER_LEN + quoted));

  const frameStart = l3 - ETH_HEADER_LEN;
  writeEthernet(d, frameStart, requesterMac, VROUTER_MAC, ETHERTYPE_IPV4);
  pool.start[p] = frameStart;
  pool.length[p] = ETH_HEADER_LEN + IP_MIN_HEADER_LEN + ICMP_HEADER_LEN + quoted;
  pool.egressVif[p] = pool.ingressVif[p];
  c.countGenerated(reason);
  return TRANSMIT;
}
