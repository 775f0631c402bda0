/**
 * The packet-path IPv6 longest-prefix-match table: one open-addressing hash
 * of (prefix, length) -> value, and the list of the prefix lengths in use,
 * longest first (Waldvogel et al.'s "hash per length", searched linearly).
 * A lookup masks the address to each length in use and probes once per
 * length until one hits.
 *
 * Why not a trie as for IPv4 (dir-16-8-8.ts): a 128-bit address in 8-bit
 * strides is 16 levels, and an overlay's table is mostly /128 host routes
 * scattered over the VN's /64s, each needing its own chain of chunks below
 * the /64 (8 chunks of 1 KiB per host route). Here a route costs one bucket
 * whatever its length, a load is one insertion per route, and an overlay
 * VRF uses few lengths (/128 pods, the VN's /64 or /48, ::/0), so a lookup
 * is two or three probes. The worst case is one probe per length in use.
 *
 *   slots[8b .. 8b+7]: the masked prefix as four signed words, its length
 *                      (-1: empty bucket), its value, its hash, unused
 *
 * One bucket is 32 bytes of one Int32Array, so a probe touches one cache
 * line (separate columns cost a miss each once the table outgrows the cache).
 * In front of the buckets sits a one-hash Bloom filter of 16 bits per
 * bucket (at least 32 per route, 2 bytes per bucket, small enough to stay
 * cached): a length that holds no prefix of the address is rejected there
 * most of the time (about 3% false positives) without touching the
 * buckets, so a lookup that falls through several lengths costs about one
 * memory access. Removing a route leaves its bit set until the next growth
 * rebuilds the filter: a stale bit only costs a probe.
 * Linear probing at a load factor of at most 1/2; deletion shifts later
 * entries back (no tombstones). Growing rehashes into twice the buckets
 * (control plane only, never on the packet path). No allocation on lookup.
 */
import { finish, mixBlock } from '../flow-hash';
import { readWord } from '../protocols/ipv6';
import { PrefixTable6, checkLength6, checkValue, compareRoutes6 } from './prefix-table6';

const EMPTY = -1;
const NO_ROUTE = -1;
const INITIAL_BUCKETS = 64;
/** Int32 fields per bucket, and their places. */
const BUCKET = 8;
const LENGTH = 4;
const VALUE = 5;
const HASH = 6;
const FILTER_BITS_PER_BUCKET = 16;

/** MASKS[length * 4 + i]: the mask of word i for a prefix of that length. */
const MASKS = new Int32Array(129 * 4);
for (let length = 0; length <= 128; length++) {
  for (let word = 0; word < 4; word++) {
    const bits = Math.max(0, Math.min(32, length - word * 32));
    MASKS[length * 4 + word] = bits === 0 ? 0 : bits === 32 ? -1 : (0xffffffff << (32 - bits)) | 0;
  }
}

function hashKey(w0: number, w1: number, w2: number, w3: number, length: number): number {
  let h = 0x6a09e667 ^ length;
  h = mixBlock(h, w0);
  h = mixBlock(h, w1);
  h = mixBlock(h, w2);
  h = mixBlock(h, w3);
  return finish(h, 17);
}

function emptySlots(buckets: number): Int32Array {
  const slots = new Int32Array(buckets * BUCKET);
  for (let bucket = 0; bucket < buckets; bucket++) slots[bucket * BUCKET + LENGTH] = EMPTY;
  return slots;
}

export class HashedLengths6Table implements PrefixTable6 {
  private slots = emptySlots(INITIAL_BUCKETS);
  private mask = INITIAL_BUCKETS - 1;
  /** Bloom filter bits, FILTER_BITS_PER_BUCKET per bucket, indexed by the key hash's upper bits. */
  private filter = new Int32Array((INITIAL_BUCKETS * FILTER_BITS_PER_BUCKET) / 32);
  private filterMask = INITIAL_BUCKETS * FILTER_BITS_PER_BUCKET - 1;
  private routeCount = 0;
  /** Prefix lengths with at least one route, longest first. */
  private readonly lengthsInUse = new Int32Array(129);
  private lengthsInUseCount = 0;
  private readonly routesPerLength = new Int32Array(129);

  get size(): number {
    return this.routeCount;
  }

  /** Hash buckets allocated (32 bytes each). */
  get bucketCount(): number {
    return this.mask + 1;
  }

  lookup(data: Uint8Array, offset: number): number {
    const a0 = readWord(data, offset);
    const a1 = readWord(data, offset + 4);
    const a2 = readWord(data, offset + 8);
    const a3 = readWord(data, offset + 12);
    const slots = this.slots;
    const mask = this.mask;
    for (let i = 0; i < this.lengthsInUseCount; i++) {
      const length = this.lengthsInUse[i];
      const m = length * 4;
      const w0 = a0 & MASKS[m];
      const w1 = a1 & MASKS[m + 1];
      const w2 = a2 & MASKS[m + 2];
      const w3 = a3 & MASKS[m + 3];
      const hash = hashKey(w0, w1, w2, w3, length);
      const bit = (hash >>> 7) & this.filterMask;
      if ((this.filter[bit >>> 5] & (1 << (bit & 31))) === 0) continue;
      for (let bucket = hash & mask; ; bucket = (bucket + 1) & mask) {
        const at = bucket * BUCKET;
        const found = slots[at + LENGTH];
        if (found === EMPTY) break;
        if (found === length && slots[at] === w0 && slots[at + 1] === w1 && slots[at + 2] === w2 && slots[at + 3] === w3) return slots[at + VALUE];
      }
    }
    return NO_ROUTE;
  }

  insert(prefix: Uint8Array, length: number, value: number): void {
    checkLength6(length);
    checkValue(value);
    // Grow first, so the probe below finds the bucket to fill in the current array.
    if ((this.routeCount + 1) * 2 > this.mask + 1) this.grow();
    const m = length * 4;
    const w0 = readWord(prefix, 0) & MASKS[m];
    const w1 = readWord(prefix, 4) & MASKS[m + 1];
    const w2 = readWord(prefix, 8) & MASKS[m + 2];
    const w3 = readWord(prefix, 12) & MASKS[m + 3];
    const hash = hashKey(w0, w1, w2, w3, length);
    const slots = this.slots;
    for (let bucket = hash & this.mask; ; bucket = (bucket + 1) & this.mask) {
      const at = bucket * BUCKET;
      const found = slots[at + LENGTH];
      if (found === length && slots[at] === w0 && slots[at + 1] === w1 && slots[at + 2] === w2 && slots[at + 3] === w3) {
        slots[at + VALUE] = value;
        return;
      }
      if (found === EMPTY) break;
    }
    this.place(w0, w1, w2, w3, length, value, hash);
    this.routeCount++;
    if (this.routesPerLength[length]++ === 0) this.updateLengthsInUse();
  }

  remove(prefix: Uint8Array, length: number): boolean {
    checkLength6(length);
    const bucket = this.find(prefix, length);
    if (bucket < 0) return false;
    this.removeBucket(bucket);
    this.routeCount--;
    if (--this.routesPerLength[length] === 0) this.updateLengthsInUse();
    return true;
  }

  get(prefix: Uint8Array, length: number): number {
    checkLength6(length);
    const bucket = this.find(prefix, length);
    return bucket < 0 ? NO_ROUTE : this.slots[bucket * BUCKET + VALUE];
  }

  entries(): Array<{ prefix: Uint8Array; length: number; value: number }> {
    const all: Array<{ prefix: Uint8Array; length: number; value: number }> = [];
    const slots = this.slots;
    for (let at = 0; at < slots.length; at += BUCKET) {
      if (slots[at + LENGTH] === EMPTY) continue;
      const prefix = new Uint8Array(16);
      for (let i = 0; i < 4; i++) {
        const word = slots[at + i];
        prefix[i * 4] = word >>> 24;
        prefix[i * 4 + 1] = (word >>> 16) & 0xff;
        prefix[i * 4 + 2] = (word >>> 8) & 0xff;
        prefix[i * 4 + 3] = word & 0xff;
      }
      all.push({ prefix, length: slots[at + LENGTH], value: slots[at + VALUE] });
    }
    return all.sort(compareRoutes6);
  }

  /** The bucket holding prefix/length, or -1. */
  private find(prefix: Uint8Array, length: number): number {
    const m = length * 4;
    const w0 = readWord(prefix, 0) & MASKS[m];
    const w1 = readWord(prefix, 4) & MASKS[m + 1];
    const w2 = readWord(prefix, 8) & MASKS[m + 2];
    const w3 = readWord(prefix, 12) & MASKS[m + 3];
    const slots = this.slots;
    for (let bucket = hashKey(w0, w1, w2, w3, length) & this.mask; ; bucket = (bucket + 1) & this.mask) {
      const at = bucket * BUCKET;
      const found = slots[at + LENGTH];
      if (found === EMPTY) return -1;
      if (found === length && slots[at] === w0 && slots[at + 1] === w1 && slots[at + 2] === w2 && slots[at + 3] === w3) return bucket;
    }
  }

  private place(w0: number, w1: number, w2: number, w3: number, length: number, value: number, hash: number): void {
    const slots = this.slots;
    let bucket = hash & this.mask;
    while (slots[bucket * BUCKET + LENGTH] !== EMPTY) bucket = (bucket + 1) & this.mask;
    const at = bucket * BUCKET;
    slots[at] = w0;
    slots[at + 1] = w1;
    slots[at + 2] = w2;
    slots[at + 3] = w3;
    slots[at + LENGTH] = length;
    slots[at + VALUE] = value;
    slots[at + HASH] = hash;
    const bit = (hash >>> 7) & this.filterMask;
    this.filter[bit >>> 5] |= 1 << (bit & 31);
  }

  /** Linear-probing deletion by backward shift: later entries of the run move up. */
  private removeBucket(bucket: number): void {
    const slots = this.slots;
    const mask = this.mask;
    let hole = bucket;
    for (let next = (hole + 1) & mask; slots[next * BUCKET + LENGTH] !== EMPTY; next = (next + 1) & mask) {
      const home = slots[next * BUCKET + HASH] & mask;
      // Move it into the hole unless its home lies cyclically in (hole, next].
      if (((home - hole - 1) & mask) > ((next - hole - 1) & mask)) {
        slots.copyWithin(hole * BUCKET, next * BUCKET, next * BUCKET + BUCKET);
        hole = next;
      }
    }
    slots[hole * BUCKET + LENGTH] = EMPTY;
  }

  private grow(): void {
    const old = this.slots;
    const buckets = (this.mask + 1) * 2;
    this.slots = emptySlots(buckets);
    this.mask = buckets - 1;
    this.filter = new Int32Array((buckets * FILTER_BITS_PER_BUCKET) / 32);
    this.filterMask = buckets * FILTER_BITS_PER_BUCKET - 1;
    for (let at = 0; at < old.length; at += BUCKET) {
      if (old[at + LENGTH] !== EMPTY) this.place(old[at], old[at + 1], old[at + 2], old[at + 3], old[at + LENGTH], old[at + VALUE], old[at + HASH]);
    }
  }

  private updateLengthsInUse(): void {
    this.lengthsInUseCount = 0;
    for (let length = 128; length >= 0; length--) if (this.routesPerLength[length] > 0) this.lengthsInUse[this.lengthsInUseCount++] = length;
  }
}
