/**
 * What the live tools see of the packet path, at no cost while nobody
 * watches (one comparison per packet):
 *
 *   drop monitor   each dropped packet as a 24-byte event (reason, vif, VRF,
 *                  5-tuple), rate-limited per second, into a shared ring;
 *   vif capture    every frame a chosen vif receives (before any rewrite) or
 *                  transmits (after encapsulation, for the fabric), with a
 *                  timestamp, into another shared ring.
 *
 * The main thread drains the rings; a full ring drops records, never packets.
 */
import type { FlowKey } from './flow-table';
import type { PacketPool } from './packet-pool';
import { SharedRing } from './io/shared-ring';

export const DROP_EVENT_BYTES = 24;
/** direction (1), seconds (4), microseconds (4), the sending node of a tunnel received without its outer header (4), vif (2). */
export const CAPTURE_HEADER_BYTES = 15;
/** Drop events recorded per second at most. */
export const DROP_EVENTS_PER_SECOND = 1000;

export const CAPTURE_RX = 0;
export const CAPTURE_TX = 1;

/** A dropped packet: its flow key (VRF -1 when not known yet), why, where and when (seconds). */
export interface DropEvent extends FlowKey {
  reason: number;
  vif: number;
  time: number;
}

export class Observers {
  dropRing: SharedRing | null = null;
  captureRing: SharedRing | null = null;
  /** 1 for each vif id being captured (one vif for vifdump, all of them for `vrouter capture`). */
  readonly capturing = new Uint8Array(4096);
  private dropBudget = DROP_EVENTS_PER_SECOND;
  private now = 0;

  /** A new second: the drop monitor may record again. */
  tick(now: number): void {
    this.now = now;
    this.dropBudget = DROP_EVENTS_PER_SECOND;
  }

  recordDrop(pool: PacketPool, p: number, reason: number): void {
    const ring = this.dropRing!;
    if (this.dropBudget === 0) return;
    this.dropBudget--;
    const at = ring.reserve(DROP_EVENT_BYTES);
    if (at < 0) return;
    const d = pool.data;
    const out = ring.data;
    const l3 = pool.l3[p];
    const haveHeader = l3 >= pool.start[p] && l3 + 20 <= pool.start[p] + pool.length[p];
    out[at] = reason;
    out[at + 1] = haveHeader ? d[l3 + 9] : 0;
    writeU16(out, at + 2, pool.ingressVif[p] & 0xffff);
    writeU16(out, at + 4, pool.vrf[p] & 0xffff);
    for (let i = 0; i < 8; i++) out[at + 6 + i] = haveHeader ? d[l3 + 12 + i] : 0;
    writeU32(out, at + 14, pool.l4[p] >= 0 ? pool.ports[p] : 0);
    writeU32(out, at + 18, this.now);
    ring.commit();
  }

  captureFrame(pool: PacketPool, p: number, direction: number, vif: number): void {
    const ring = this.captureRing!;
    const length = pool.length[p];
    const at = ring.reserve(CAPTURE_HEADER_BYTES + length);
    if (at < 0) return;
    const out = ring.data;
    const microseconds = Math.floor((performance.timeOrigin + performance.now()) * 1000);
    out[at] = direction;
    writeU32(out, at + 1, Math.floor(microseconds / 1e6));
    writeU32(out, at + 5, microseconds % 1e6);
    writeU32(out, at + 9, pool.outerSrc[p]);
    writeU16(out, at + 13, vif);
    const room = Math.min(length, ring.recordSize - 2 - CAPTURE_HEADER_BYTES);
    out.set(pool.data.subarray(pool.start[p], pool.start[p] + room), at + CAPTURE_HEADER_BYTES);
    ring.commit();
  }
}

export function decodeDropEvent(record: Uint8Array): DropEvent {
  const view = new DataView(record.buffer, record.byteOffset, record.byteLength);
  const ports = view.getUint32(14);
  return {
    reason: record[0],
    protocol: record[1],
    vif: view.getUint16(2),
    vrf: view.getUint16(4) === 0xffff ? -1 : view.getUint16(4),
    src: view.getUint32(6),
    dst: view.getUint32(10),
    srcPort: ports >>> 16,
    dstPort: ports & 0xffff,
    time: view.getUint32(18),
  };
}

function writeU16(out: Uint8Array, at: number, value: number): void {
  out[at] = value >>> 8;
  out[at + 1] = value & 0xff;
}

function writeU32(out: Uint8Array, at: number, value: number): void {
  out[at] = value >>> 24;
  out[at + 1] = (value >>> 16) & 0xff;
  out[at + 2] = (value >>> 8) & 0xff;
  out[at + 3] = value & 0xff;
}
