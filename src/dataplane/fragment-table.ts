/**
 * Fragments follow their first fragment: only the first carries the ports
 * the flow key needs, so its flow decision is remembered here, keyed by
 * (VRF, src, dst, protocol, IP id) for IPv4 and (VRF, src, dst, fragment
 * header identification) for IPv6 (RFC 8200 4.5; the reference's key too:
 * tungstenfabric/tf-vrouter@432a8e0c dp-core/vr_fragment.c
 * vr_v6_fragment_add), and applied to the later fragments of the same
 * datagram. A later fragment that arrives before its first is held
 * (copied into a spare pool slot) until the first comes or the record times
 * out. A fragment overlapping one already seen is dropped, and so is
 * every fragment of its datagram still to come or held (the classic overlap
 * attacks on filters rely on them; RFC 5722 discards the whole datagram:
 * what already left cannot be recalled, but without the rest the receiver
 * never reassembles it).
 *
 * Fragments are rare, so the table is small and scanned linearly: a fixed
 * set of records in typed arrays, no allocation. Records and held fragments
 * are bounded per ingress vif as well as in total, so one pod sending
 * fragments that never complete cannot take the table from the others.
 */
import type { Pipeline } from './pipeline';
import { Drop } from './drop-reasons';
import { readU32 } from './protocols/ipv4';
import { IP6_HEADER_LEN, IP6_SRC } from './protocols/ipv6';
import { FLOW_APPLY, HELD, drop } from './steps/next';

export const FRAGMENT_RECORDS = 256;
export const FRAGMENT_TIMEOUT_SECONDS = 2;
const RANGES_PER_RECORD = 16;
const HELD_PER_RECORD = 8;
/** Fragments held at once across all records. */
export const MAX_HELD_FRAGMENTS = 64;
/** Records, and held fragments, one ingress vif may have at once. */
export const FRAGMENT_RECORDS_PER_VIF = 64;
export const HELD_FRAGMENTS_PER_VIF = 16;
const IP6_FRAGMENT_HEADER_LEN = 8;
/** find(): no record, because the table is full or because the vif holds its share. */
const TABLE_FULL = -1;
const VIF_FULL = -2;

export class FragmentTable {
  private readonly inUse = new Uint8Array(FRAGMENT_RECORDS);
  private readonly vrf = new Int32Array(FRAGMENT_RECORDS);
  /** The vif whose fragment made the record (its held fragments count against it too). */
  private readonly recordVif = new Int16Array(FRAGMENT_RECORDS);
  private readonly vifRecords = new Int32Array(4096);
  private readonly vifHeld = new Int32Array(4096);
  private readonly src = new Uint32Array(FRAGMENT_RECORDS);
  private readonly dst = new Uint32Array(FRAGMENT_RECORDS);
  private readonly protocol = new Uint8Array(FRAGMENT_RECORDS);
  /** IPv4's 16-bit IP id, or IPv6's 32-bit fragment identification. */
  private readonly id = new Uint32Array(FRAGMENT_RECORDS);
  /** 4 or 6; an IPv6 record keys its source and destination in `addresses6`. */
  private readonly version = new Uint8Array(FRAGMENT_RECORDS);
  private readonly addresses6 = new Uint8Array(FRAGMENT_RECORDS * 32);
  /** The flow entry of the datagram's first fragment, -1 until it is seen. */
  private readonly entry = new Int32Array(FRAGMENT_RECORDS);
  private readonly expires = new Uint32Array(FRAGMENT_RECORDS);
  /** Byte ranges [start, end) of the fragments seen, for overlap checks. */
  private readonly rangeStart = new Uint32Array(FRAGMENT_RECORDS * RANGES_PER_RECORD);
  private readonly rangeEnd = new Uint32Array(FRAGMENT_RECORDS * RANGES_PER_RECORD);
  private readonly rangeCount = new Uint8Array(FRAGMENT_RECORDS);
  /** 1 once a fragment of the datagram overlapped: the rest is dropped until the record expires. */
  private readonly overlapped = new Uint8Array(FRAGMENT_RECORDS);
  /** Pool slots of fragments held for their first fragment. */
  private readonly heldSlots = new Int32Array(FRAGMENT_RECORDS * HELD_PER_RECORD);
  private readonly heldCount = new Uint8Array(FRAGMENT_RECORDS);
  /** Fragments held now, across all records. */
  held = 0;

  /** A later fragment: apply its datagram's flow, hold it, or drop it. */
  follow(c: Pipeline, p: number): number {
    const record = this.find(c, p, true);
    if (record < 0) return noRecord(record);
    const overlap = this.addRange(c, p, record);
    if (overlap !== 0) return overlap;
    const entry = this.entry[record];
    if (entry >= 0 && c.flows.isActive(entry)) {
      c.pool.flowEntry[p] = entry;
      return FLOW_APPLY;
    }
    return this.hold(c, p, record);
  }

  /**
   * The first fragment passed its flow: remember the decision and release
   * what waited for it. Returns 0, or the drop for a first fragment that
   * overlaps what was seen of its datagram.
   */
  recordHead(c: Pipeline, p: number): number {
    const record = this.find(c, p, true);
    if (record < 0) return noRecord(record);
    const overlap = this.addRange(c, p, record);
    if (overlap !== 0) return overlap;
    const entry = c.pool.flowEntry[p];
    this.entry[record] = entry;
    for (let i = 0; i < this.heldCount[record]; i++) c.releaseHeld(this.heldSlots[record * HELD_PER_RECORD + i], entry);
    this.forgetHeld(record);
    return 0;
  }

  /** Expires records past their time; their held fragments are dropped. */
  age(c: Pipeline, now: number): void {
    for (let record = 0; record < FRAGMENT_RECORDS; record++) {
      if (this.inUse[record] === 0 || now < this.expires[record]) continue;
      for (let i = 0; i < this.heldCount[record]; i++) c.dropHeld(this.heldSlots[record * HELD_PER_RECORD + i], Drop['fragment-timeout']);
      this.forgetHeld(record);
      this.release(record);
    }
  }

  /** Records in use by a vif now (tools and tests). */
  recordsOf(vif: number): number {
    return this.vifRecords[vif];
  }

  /** Fragments held for a vif now. */
  heldOf(vif: number): number {
    return this.vifHeld[vif];
  }

  private forgetHeld(record: number): void {
    this.held -= this.heldCount[record];
    this.vifHeld[this.recordVif[record]] -= this.heldCount[record];
    this.heldCount[record] = 0;
  }

  private release(record: number): void {
    this.inUse[record] = 0;
    this.vifRecords[this.recordVif[record]]--;
  }

  private find(c: Pipeline, p: number, create: boolean): number {
    const d = c.pool.data;
    const l3 = c.pool.l3[p];
    const vrf = c.pool.vrf[p];
    const version = d[l3] >>> 4;
    const ipv6 = version === 6;
    const src = ipv6 ? 0 : readU32(d, l3 + 12);
    const dst = ipv6 ? 0 : readU32(d, l3 + 16);
    const protocol = ipv6 ? 0 : d[l3 + 9];
    const id = ipv6 ? readU32(d, c.pool.fragmentHeader[p] + 4) : (d[l3 + 4] << 8) | d[l3 + 5];
    let free = -1;
    for (let record = 0; record < FRAGMENT_RECORDS; record++) {
      if (this.inUse[record] === 0 || c.now >= this.expires[record]) {
        if (free < 0 && this.heldCount[record] === 0) free = record;
        continue;
      }
      if (this.id[record] !== id || this.vrf[record] !== vrf || this.version[record] !== version) continue;
      if (ipv6 ? this.sameAddresses6(record, d, l3 + IP6_SRC) : this.src[record] === src && this.dst[record] === dst && this.protocol[record] === protocol) return record;
    }
    if (!create || free < 0) return TABLE_FULL;
    const vif = c.pool.ingressVif[p];
    // An expired record is reused in place: it stops counting against its vif first.
    if (this.inUse[free] !== 0) this.release(free);
    if (this.vifRecords[vif] >= FRAGMENT_RECORDS_PER_VIF) return VIF_FULL;
    this.inUse[free] = 1;
    this.recordVif[free] = vif;
    this.vifRecords[vif]++;
    this.vrf[free] = vrf;
    this.version[free] = version;
    this.src[free] = src;
    this.dst[free] = dst;
    this.protocol[free] = protocol;
    if (ipv6) for (let i = 0; i < 32; i++) this.addresses6[free * 32 + i] = d[l3 + IP6_SRC + i];
    this.id[free] = id;
    this.entry[free] = -1;
    this.expires[free] = c.now + FRAGMENT_TIMEOUT_SECONDS;
    this.rangeCount[free] = 0;
    this.overlapped[free] = 0;
    this.heldCount[free] = 0;
    return free;
  }

  /** The record's IPv6 source and destination are the 32 bytes at d[at]. */
  private sameAddresses6(record: number, d: Uint8Array, at: number): boolean {
    const base = record * 32;
    for (let i = 0; i < 32; i++) if (this.addresses6[base + i] !== d[at + i]) return false;
    return true;
  }

  /**
   * Records the fragment's byte range; a drop result when its datagram
   * overlapped before or it overlaps one seen now (then the fragments held
   * for the datagram are dropped too).
   */
  private addRange(c: Pipeline, p: number, record: number): number {
    if (this.overlapped[record] !== 0) return drop(Drop['fragment-overlap']);
    const d = c.pool.data;
    const l3 = c.pool.l3[p];
    let start: number;
    let end: number;
    if (d[l3] >>> 4 === 6) {
      // The fragment's bytes are those behind its fragment header (RFC 8200 4.5).
      const fragment = c.pool.fragmentHeader[p];
      const packetEnd = l3 + IP6_HEADER_LEN + ((d[l3 + 4] << 8) | d[l3 + 5]);
      start = ((d[fragment + 2] << 8) | d[fragment + 3]) & 0xfff8;
      end = start + packetEnd - (fragment + IP6_FRAGMENT_HEADER_LEN);
    } else {
      const headerLength = (d[l3] & 0x0f) << 2;
      start = (((d[l3 + 6] << 8) | d[l3 + 7]) & 0x1fff) * 8;
      end = start + ((d[l3 + 2] << 8) | d[l3 + 3]) - headerLength;
    }
    const base = record * RANGES_PER_RECORD;
    const count = this.rangeCount[record];
    for (let i = 0; i < count; i++) {
      if (start < this.rangeEnd[base + i] && this.rangeStart[base + i] < end) {
        this.overlapped[record] = 1;
        for (let h = 0; h < this.heldCount[record]; h++) c.dropHeld(this.heldSlots[record * HELD_PER_RECORD + h], Drop['fragment-overlap']);
        this.forgetHeld(record);
        return drop(Drop['fragment-overlap']);
      }
    }
    if (count === RANGES_PER_RECORD) return drop(Drop['fragment-hold-full']);
    this.rangeStart[base + count] = start;
    this.rangeEnd[base + count] = end;
    this.rangeCount[record] = count + 1;
    return 0;
  }

  private hold(c: Pipeline, p: number, record: number): number {
    if (this.heldCount[record] === HELD_PER_RECORD || this.held === MAX_HELD_FRAGMENTS) return drop(Drop['fragment-hold-full']);
    if (this.vifHeld[this.recordVif[record]] >= HELD_FRAGMENTS_PER_VIF) return drop(Drop['fragment-hold-vif-limit']);
    const slot = c.copyToHeld(p);
    if (slot < 0) return drop(Drop['fragment-hold-full']);
    this.heldSlots[record * HELD_PER_RECORD + this.heldCount[record]] = slot;
    this.heldCount[record]++;
    this.held++;
    this.vifHeld[this.recordVif[record]]++;
    return HELD;
  }
}

function noRecord(found: number): number {
  return drop(found === VIF_FULL ? Drop['fragment-vif-limit'] : Drop['fragment-hold-full']);
}
