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

function mixBlock(h: number, k: number): number {
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
  h ^= 16;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h;
}
