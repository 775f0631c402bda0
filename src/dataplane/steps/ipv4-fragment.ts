/**
 * Fragments an inner IPv4 packet (DF clear) that would make the tunnel
 * packet too big for the underlay, as a router does before it encapsulates
 * (RFC 791): the packet keeps the first fragment; each further fragment is
 * copied into a slot of its own and queued to be encapsulated right after
 * it. Every fragment carries the header, with only the options marked
 * "copied" after the first. The extra fragments count as generated.
 */
import type { Pipeline } from '../pipeline';
import { IP_FLAG_MF, IP_MIN_HEADER_LEN, setIpChecksum, writeU16 } from '../protocols/ipv4';
import { TUNNEL_ENCAP } from './next';

const OPTION_END = 0;
const OPTION_NOP = 1;
const OPTION_COPIED = 0x80;

/**
 * Cuts the packet at pool.l3[p] so each piece's IP length is at most
 * `maxLength`; returns false (nothing changed) when the pool has no room.
 */
export function fragmentInner(c: Pipeline, p: number, maxLength: number): boolean {
  const pool = c.pool;
  const d = pool.data;
  const l3 = pool.l3[p];
  const headerLength = (d[l3] & 0x0f) << 2;
  const totalLength = (d[l3 + 2] << 8) | d[l3 + 3];
  const flagsOffset = (d[l3 + 6] << 8) | d[l3 + 7];
  const baseOffset = (flagsOffset & 0x1fff) * 8;
  const lastIsFinal = (flagsOffset & IP_FLAG_MF) === 0;
  const firstChunk = (maxLength - headerLength) & ~7;
  const laterHeader = copiedOptionsLength(d, l3, headerLength);
  const laterChunk = (maxLength - laterHeader) & ~7;
  if (firstChunk <= 0 || laterChunk <= 0) return false;
  const payload = totalLength - headerLength;
  const pieces = 1 + Math.ceil((payload - firstChunk) / laterChunk);
  if (pool.available < pieces - 1) return false;

  for (let offset = firstChunk; offset < payload; offset += laterChunk) {
    const chunk = Math.min(laterChunk, payload - offset);
    const slot = pool.alloc();
    const to = pool.start[slot] + (l3 - pool.start[p]);
    writeLaterHeader(d, l3, headerLength, to);
    d.copyWithin(to + laterHeader, l3 + headerLength + offset, l3 + headerLength + offset + chunk);
    d[to] = 0x40 | (laterHeader >>> 2);
    writeU16(d, to + 2, laterHeader + chunk);
    const final = offset + chunk === payload && lastIsFinal;
    writeU16(d, to + 6, (flagsOffset & 0x4000) | (final ? 0 : IP_FLAG_MF) | ((baseOffset + offset) >>> 3));
    setIpChecksum(d, to);
    pool.length[slot] = to + laterHeader + chunk - pool.start[slot];
    pool.l3[slot] = to;
    pool.l4[slot] = -1;
    pool.ingressVif[slot] = pool.ingressVif[p];
    pool.vrf[slot] = pool.vrf[p];
    pool.hash[slot] = pool.hash[p];
    pool.nexthop[slot] = pool.nexthop[p];
    pool.flowEntry[slot] = pool.flowEntry[p];
    c.dp.generated++;
    c.runAfter(slot, TUNNEL_ENCAP);
  }
  writeU16(d, l3 + 2, headerLength + firstChunk);
  writeU16(d, l3 + 6, (flagsOffset & 0x4000) | IP_FLAG_MF | (flagsOffset & 0x1fff));
  setIpChecksum(d, l3);
  pool.length[p] = l3 + headerLength + firstChunk - pool.start[p];
  return true;
}

/** Header length of the later fragments: the base header plus the options marked copied, padded to 4. */
function copiedOptionsLength(d: Buffer, l3: number, headerLength: number): number {
  let length = IP_MIN_HEADER_LEN;
  forEachOption(d, l3, headerLength, (at, size) => {
    if (d[at] & OPTION_COPIED) length += size;
  });
  return (length + 3) & ~3;
}

function writeLaterHeader(d: Buffer, l3: number, headerLength: number, to: number): void {
  d.copyWithin(to, l3, l3 + IP_MIN_HEADER_LEN);
  let at = to + IP_MIN_HEADER_LEN;
  forEachOption(d, l3, headerLength, (option, size) => {
    if (d[option] & OPTION_COPIED) {
      d.copyWithin(at, option, option + size);
      at += size;
    }
  });
  while ((at - to) & 3) d[at++] = OPTION_END;
}

function forEachOption(d: Buffer, l3: number, headerLength: number, visit: (at: number, size: number) => void): void {
  let at = l3 + IP_MIN_HEADER_LEN;
  const end = l3 + headerLength;
  while (at < end) {
    const type = d[at];
    if (type === OPTION_END) return;
    if (type === OPTION_NOP) {
      at++;
      continue;
    }
    const size = at + 1 < end ? d[at + 1] : 0;
    if (size < 2 || at + size > end) return;
    visit(at, size);
    at += size;
  }
}
