/**
 * The flow hash: computed once per packet over (VRF, src IP, dst IP,
 * protocol, src port, dst port) and reused for the ECMP member and the
 * RFC 7510 entropy source port. MurmurHash3's 32-bit block and finaliser
 * steps on four words: no allocation, good spread on sequential addresses.
 * The result is a signed 32-bit integer: V8 passes those between functions
 * as small integers, where an unsigned value above 2^31 would be boxed (one
 * heap allocation per packet). Take `hash >>> 0` where a non-negative is needed.
 */
const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

export function mixBlock(h: number, k: number): number {
  k = Math.imul(k, C1);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, C2);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

export function flowHash(vrf: number, src: number, dst: number, protocol: number, srcPort: number, dstPort: number): number {
  let h = 0x2545f491;
  h = mixBlock(h, src);
  h = mixBlock(h, dst);
  h = mixBlock(h, (srcPort << 16) | dstPort);
  h = mixBlock(h, (protocol << 24) | (vrf & 0xffffff));
  return finish(h, 16);
}

/** The same over an IPv6 flow: the 128-bit addresses at data[src] and data[dst]. */
export function flowHash6(vrf: number, data: Uint8Array, src: number, dst: number, protocol: number, srcPort: number, dstPort: number): number {
  let h = 0x2545f491;
  for (let i = 0; i < 16; i += 4) h = mixBlock(h, (data[src + i] << 24) | (data[src + i + 1] << 16) | (data[src + i + 2] << 8) | data[src + i + 3]);
  for (let i = 0; i < 16; i += 4) h = mixBlock(h, (data[dst + i] << 24) | (data[dst + i + 1] << 16) | (data[dst + i + 2] << 8) | data[dst + i + 3]);
  h = mixBlock(h, (srcPort << 16) | dstPort);
  h = mixBlock(h, (protocol << 24) | (vrf & 0xffffff));
  return finish(h, 40);
}

/** MurmurHash3's finaliser over `length` bytes mixed in. */
export function finish(h: number, length: number): number {
  h ^= length;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h;
}
