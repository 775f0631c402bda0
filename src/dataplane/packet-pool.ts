/**
 * Packet pool: every packet lives in a fixed slot of one preallocated Buffer.
 *
 *   slot s: [ headroom (HEADROOM bytes) | frame ... | tailroom ]
 *           ^ s*SLOT_SIZE                ^ start[s]
 *
 * A packet is its slot number. Pushing an outer header only moves start[s]
 * back into the headroom and popping one moves it forward, so encapsulation
 * and decapsulation copy no payload. Per-packet metadata sits in typed arrays
 * indexed by slot (struct of arrays), so the packet path allocates nothing.
 */
export const HEADROOM = 128;
/**
 * Largest frame a slot carries (what a port may write into it): a 9000-byte
 * jumbo IP packet behind Ethernet and one 802.1Q tag fits, with room to spare.
 */
export const MAX_FRAME = 9088;
export const SLOT_SIZE = HEADROOM + MAX_FRAME;

export class PacketPool {
  readonly slots: number;
  readonly data: Buffer;
  /** Offset in `data` of the first byte of the frame. */
  readonly start: Int32Array;
  /** Frame length in bytes. */
  readonly length: Int32Array;
  /** Interface the packet arrived on. */
  readonly ingressVif: Int32Array;
  /** VRF the packet is being forwarded in (-1 before it is known). */
  readonly vrf: Int32Array;
  /** Offset of the (inner) IPv4 header relative to `data`. */
  readonly l3: Int32Array;
  /** Offset of the L4 header relative to `data` (-1 for a non-first fragment). */
  readonly l4: Int32Array;
  /** Flow hash of (VRF, src, dst, proto, sport, dport), computed once (signed, see flow-hash.ts). */
  readonly hash: Int32Array;
  /** The flow key's ports, src << 16 | dst as a signed 32-bit value (ICMP echo: the id twice; fragments: 0). */
  readonly ports: Int32Array;
  /** Nexthop chosen for the packet. */
  readonly nexthop: Int32Array;
  /** ECMP member slot chosen (-1 when no composite was crossed). */
  readonly ecmpSlot: Int32Array;
  /** Interface the packet leaves by, once decided. */
  readonly egressVif: Int32Array;
  /** Flow table entry the packet belongs to (-1 before the flow lookup). */
  readonly flowEntry: Int32Array;
  /** Outer source IPv4 of a decapsulated tunnel packet (the sending node). */
  readonly outerSrc: Uint32Array;
  /** IPv6: the upper-layer protocol behind the extension headers (a later fragment: its fragment header's next header). */
  readonly upperProtocol: Uint8Array;
  /** IPv6: offset of the fragment header relative to `data`, -1 when there is none. */
  readonly fragmentHeader: Int32Array;

  private readonly freeList: Int32Array;
  private freeCount: number;

  constructor(slots = 4096) {
    this.slots = slots;
    this.data = Buffer.alloc(slots * SLOT_SIZE);
    this.start = new Int32Array(slots);
    this.length = new Int32Array(slots);
    this.ingressVif = new Int32Array(slots);
    this.vrf = new Int32Array(slots);
    this.l3 = new Int32Array(slots);
    this.l4 = new Int32Array(slots);
    this.hash = new Int32Array(slots);
    this.ports = new Int32Array(slots);
    this.nexthop = new Int32Array(slots);
    this.ecmpSlot = new Int32Array(slots);
    this.egressVif = new Int32Array(slots);
    this.flowEntry = new Int32Array(slots);
    this.outerSrc = new Uint32Array(slots);
    this.upperProtocol = new Uint8Array(slots);
    this.fragmentHeader = new Int32Array(slots);
    this.freeList = new Int32Array(slots);
    for (let i = 0; i < slots; i++) this.freeList[i] = slots - 1 - i;
    this.freeCount = slots;
  }

  /** Takes a free slot, ready for a frame at the default offset; -1 when exhausted. */
  alloc(): number {
    if (this.freeCount === 0) return -1;
    const slot = this.freeList[--this.freeCount];
    this.reset(slot);
    return slot;
  }

  free(slot: number): void {
    this.freeList[this.freeCount++] = slot;
  }

  get available(): number {
    return this.freeCount;
  }

  /** Puts the slot's frame back at the default offset with empty metadata. */
  reset(slot: number): void {
    this.start[slot] = slot * SLOT_SIZE + HEADROOM;
    this.length[slot] = 0;
    this.ingressVif[slot] = -1;
    this.vrf[slot] = -1;
    this.l3[slot] = -1;
    this.l4[slot] = -1;
    this.hash[slot] = 0;
    this.ports[slot] = 0;
    this.nexthop[slot] = -1;
    this.ecmpSlot[slot] = -1;
    this.egressVif[slot] = -1;
    this.flowEntry[slot] = -1;
    this.outerSrc[slot] = 0;
    this.upperProtocol[slot] = 0;
    this.fragmentHeader[slot] = -1;
  }

  /** Copies a frame into a slot (for ports that cannot read into the pool directly). */
  write(slot: number, frame: Uint8Array, offset = 0, length = frame.length - offset): boolean {
    if (length > MAX_FRAME || length < 0) return false;
    const at = this.start[slot];
    this.data.set(frame.subarray(offset, offset + length), at);
    this.length[slot] = length;
    return true;
  }

  /** Room in front of the frame, for headers to push. */
  headroom(slot: number): number {
    return this.start[slot] - slot * SLOT_SIZE;
  }

  /** Room behind the frame. */
  tailroom(slot: number): number {
    return (slot + 1) * SLOT_SIZE - (this.start[slot] + this.length[slot]);
  }

  /** A copy of the frame's bytes (tests and tools only, never the packet path). */
  copyOut(slot: number): Buffer {
    const at = this.start[slot];
    return Buffer.from(this.data.subarray(at, at + this.length[slot]));
  }
}
