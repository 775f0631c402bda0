/**
 * The packet-path IPv4 longest-prefix-match table: a multibit trie with
 * strides 16, 8 and 8 (DIR-16-8-8) in one Int32Array.
 *
 *   slots[0 .. 65535]         first level, indexed by address bits 31..16
 *   slots[65536 + 256k ..]    chunk k: 256 slots for the next 8 address bits
 *
 * A slot holds a route value (>= 0), NO_ROUTE (-1), or a pointer to a child
 * chunk (-2 - base, so always <= -2). Prefixes are expanded: a /12 writes 16
 * first-level slots, a /20 writes 16 slots of a second-level chunk, a /30
 * 4 slots of a third-level chunk, and a chunk starts as 256 copies of the
 * slot it replaces. So lookup is one read for an address resolved by a
 * <= /16, two for <= /24, three for longer: no branching on prefix length,
 * no allocation, no Map, on a single monomorphic typed array. /32 host
 * routes (the bulk of an overlay's table) and short prefixes are both cheap.
 *
 * A parallel Uint8Array keeps the length of the prefix that owns each slot:
 * inserting a prefix only overwrites slots owned by a length <= its own, so
 * a shorter prefix never hides a longer one, and removing a prefix rewrites
 * only the slots it owns with the next covering prefix, found in the
 * per-length Maps of stored routes (which also serve get/size/entries). A
 * chunk whose 256 slots end up identical (same value and owner length) is
 * folded back into its parent slot and put on a free list threaded through
 * the chunks themselves, so removing routes gives chunks back and the trie
 * stays the same whatever order the routes came in.
 *
 * Memory: 256 KiB (+64 KiB of owner lengths) per table, empty or not, plus
 * 1 KiB (+256 B) per chunk in use; the pool doubles as it fills and never
 * shrinks. Routes that cluster are cheap: 100,000 /32s in 400 /24s need 400
 * third-level chunks and at most 400 second-level ones (~1 MiB). The worst
 * case is /32s scattered at random: each takes its own third-level chunk and
 * usually its own second-level one, so 100,000 random /32s cost ~150,000
 * chunks (~185 MiB).
 */
import { PrefixTable, prefixMask } from './prefix-table';

const NO_ROUTE = -1;
const FIRST_LEVEL_SLOTS = 1 << 16;
const CHUNK_SLOTS = 256;
const INITIAL_CHUNK_CAPACITY = 8;
/** The most chunks a pointer (-2 - base) can address in an int32. */
const MAX_CHUNKS = (2 ** 31 - FIRST_LEVEL_SLOTS) / CHUNK_SLOTS;
/** Ends the free list of chunks. */
const NO_CHUNK = -1;
const MAX_VALUE = 0x7fffffff;

export class Dir1688Table implements PrefixTable {
  /** First level, then the chunks; see the header. Replaced when the pool grows. */
  private slots = new Int32Array(FIRST_LEVEL_SLOTS + INITIAL_CHUNK_CAPACITY * CHUNK_SLOTS);
  /** Length of the prefix owning each slot (0 for NO_ROUTE); stale in pointer slots. */
  private slotOwners = new Uint8Array(this.slots.length);
  /** Start of the never-used part of the pool. */
  private unusedBase = FIRST_LEVEL_SLOTS;
  /** Base of the first free chunk; each free chunk's slot 0 holds the next base. */
  private freeChunkBase = NO_CHUNK;
  private liveChunks = 0;
  /** routesByLength[length] maps the network address to its value. */
  private readonly routesByLength: Array<Map<number, number>> = Array.from({ length: 33 }, () => new Map());
  private routeCount = 0;

  constructor() {
    this.slots.fill(NO_ROUTE, 0, FIRST_LEVEL_SLOTS);
  }

  get size(): number {
    return this.routeCount;
  }

  /** Second- and third-level chunks in use (for tests and memory accounting). */
  get chunkCount(): number {
    return this.liveChunks;
  }

  lookup(address: number): number {
    const slots = this.slots;
    const first = slots[address >>> 16];
    if (first >= NO_ROUTE) return first;
    const second = slots[-2 - first + ((address >>> 8) & 0xff)];
    if (second >= NO_ROUTE) return second;
    return slots[-2 - second + (address & 0xff)];
  }

  insert(prefix: number, length: number, value: number): number {
    checkLength(length);
    if (!Number.isInteger(value) || value < 0 || value > MAX_VALUE) {
      throw new RangeError(`route value must be an integer in [0, 2^31): ${value}`);
    }
    const network = (prefix & prefixMask(length)) >>> 0;
    const routes = this.routesByLength[length];
    const previous = routes.get(network);
    if (previous === undefined) this.routeCount++;
    routes.set(network, value);
    // Slots owned by a length <= this one belong to a covering prefix or to this one: take them.
    this.paint(network, length, value, length);
    return previous ?? NO_ROUTE;
  }

  remove(prefix: number, length: number): boolean {
    checkLength(length);
    const network = (prefix & prefixMask(length)) >>> 0;
    if (!this.routesByLength[length].delete(network)) return false;
    this.routeCount--;
    let coverValue = NO_ROUTE;
    let coverLength = 0;
    for (let shorter = length - 1; shorter >= 0; shorter--) {
      const value = this.routesByLength[shorter].get((network & prefixMask(shorter)) >>> 0);
      if (value !== undefined) {
        coverValue = value;
        coverLength = shorter;
        break;
      }
    }
    // Slots owned by a length <= this one are this prefix's (or already the cover's): hand them over.
    this.paint(network, length, coverValue, coverLength);
    return true;
  }

  get(prefix: number, length: number): number {
    checkLength(length);
    return this.routesByLength[length].get((prefix & prefixMask(length)) >>> 0) ?? NO_ROUTE;
  }

  entries(): Array<{ prefix: number; length: number; value: number }> {
    const all: Array<{ prefix: number; length: number; value: number }> = [];
    this.routesByLength.forEach((routes, length) => {
      for (const [prefix, value] of routes) all.push({ prefix, length, value });
    });
    return all.sort((a, b) => a.prefix - b.prefix || a.length - b.length);
  }

  /**
   * Writes (value, ownerLength) into the slots network/length expands to
   * that are owned by a length <= length, creating the chunks on the way down
   * and folding back the ones on that path left uniform.
   */
  private paint(network: number, length: number, value: number, ownerLength: number): void {
    const firstSlot = network >>> 16;
    if (length <= 16) {
      this.rewrite(firstSlot, firstSlot + (1 << (16 - length)), length, value, ownerLength);
      return;
    }
    const secondSlot = this.childBase(firstSlot) + ((network >>> 8) & 0xff);
    if (length <= 24) {
      this.rewrite(secondSlot, secondSlot + (1 << (24 - length)), length, value, ownerLength);
    } else {
      const thirdSlot = this.childBase(secondSlot) + (network & 0xff);
      this.rewrite(thirdSlot, thirdSlot + (1 << (32 - length)), length, value, ownerLength);
      this.foldIfUniform(secondSlot);
    }
    this.foldIfUniform(firstSlot);
  }

  /**
   * Rewrites slots [start, end) as paint() says, descending into their chunks.
   * Those chunks never turn uniform: they were not before, and their slots
   * owned by lengths > length keep their routes.
   */
  private rewrite(start: number, end: number, length: number, value: number, ownerLength: number): void {
    // The pool does not grow while rewriting, so these stay current.
    const slots = this.slots;
    const slotOwners = this.slotOwners;
    for (let slot = start; slot < end; slot++) {
      const entry = slots[slot];
      if (entry < NO_ROUTE) {
        const base = -2 - entry;
        this.rewrite(base, base + CHUNK_SLOTS, length, value, ownerLength);
      } else if (slotOwners[slot] <= length) {
        slots[slot] = value;
        slotOwners[slot] = ownerLength;
      }
    }
  }

  /** Base of the chunk under slot, splitting the slot's route into a new chunk if it has none. */
  private childBase(slot: number): number {
    const entry = this.slots[slot];
    if (entry < NO_ROUTE) return -2 - entry;
    const base = this.allocateChunk(entry, this.slotOwners[slot]);
    this.slots[slot] = -2 - base;
    return base;
  }

  /** Replaces the chunk under slot by its one route when all its slots agree. */
  private foldIfUniform(slot: number): void {
    const slots = this.slots;
    const slotOwners = this.slotOwners;
    const pointer = slots[slot];
    if (pointer >= NO_ROUTE) return;
    const base = -2 - pointer;
    const value = slots[base];
    const ownerLength = slotOwners[base];
    // Every pointer is unique, so 256 equal slots hold a route (or NO_ROUTE).
    for (let child = base + 1; child < base + CHUNK_SLOTS; child++) {
      if (slots[child] !== value || slotOwners[child] !== ownerLength) return;
    }
    slots[slot] = value;
    slotOwners[slot] = ownerLength;
    slots[base] = this.freeChunkBase;
    this.freeChunkBase = base;
    this.liveChunks--;
  }

  /** Takes a chunk from the free list (or the pool, growing it) filled with one route. */
  private allocateChunk(value: number, ownerLength: number): number {
    let base: number;
    if (this.freeChunkBase !== NO_CHUNK) {
      base = this.freeChunkBase;
      this.freeChunkBase = this.slots[base];
    } else {
      if (this.unusedBase === this.slots.length) this.growPool();
      base = this.unusedBase;
      this.unusedBase += CHUNK_SLOTS;
    }
    this.slots.fill(value, base, base + CHUNK_SLOTS);
    this.slotOwners.fill(ownerLength, base, base + CHUNK_SLOTS);
    this.liveChunks++;
    return base;
  }

  private growPool(): void {
    const capacity = (this.slots.length - FIRST_LEVEL_SLOTS) / CHUNK_SLOTS;
    if (capacity >= MAX_CHUNKS) throw new RangeError(`prefix table is full (${MAX_CHUNKS} chunks)`);
    const slotCount = FIRST_LEVEL_SLOTS + Math.min(capacity * 2, MAX_CHUNKS) * CHUNK_SLOTS;
    const slots = new Int32Array(slotCount);
    slots.set(this.slots);
    const slotOwners = new Uint8Array(slotCount);
    slotOwners.set(this.slotOwners);
    this.slots = slots;
    this.slotOwners = slotOwners;
  }
}

function checkLength(length: number): void {
  if (!Number.isInteger(length) || length < 0 || length > 32) {
    throw new RangeError(`prefix length must be an integer in [0, 32]: ${length}`);
  }
}
