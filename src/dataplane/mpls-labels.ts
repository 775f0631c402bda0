/**
 * The MPLS incoming label map (ILM): label -> nexthop, normally the encap
 * nexthop of a local pod vif, which also fixes the VRF. Labels 0-15 are
 * reserved; a direct-indexed Int32Array keeps the lookup one read.
 */
import { MPLS_FIRST_UNICAST_LABEL } from './protocols/mpls';

export const DEFAULT_LABEL_TABLE_SIZE = 1 << 16;

export class MplsLabelTable {
  readonly nexthopOf: Int32Array;

  constructor(size = DEFAULT_LABEL_TABLE_SIZE) {
    this.nexthopOf = new Int32Array(size).fill(-1);
  }

  get size(): number {
    return this.nexthopOf.length;
  }

  set(label: number, nexthop: number): void {
    if (!Number.isInteger(label) || label < MPLS_FIRST_UNICAST_LABEL || label >= this.nexthopOf.length) {
      throw new Error(`label ${label} outside the unicast range ${MPLS_FIRST_UNICAST_LABEL}-${this.nexthopOf.length - 1}`);
    }
    this.nexthopOf[label] = nexthop;
  }

  delete(label: number): number {
    const previous = this.lookup(label);
    if (previous >= 0) this.nexthopOf[label] = -1;
    return previous;
  }

  /** Nexthop of a label, -1 for a reserved, out-of-range or unknown label. */
  lookup(label: number): number {
    return label >= MPLS_FIRST_UNICAST_LABEL && label < this.nexthopOf.length ? this.nexthopOf[label] : -1;
  }

  entries(): Array<{ label: number; nexthop: number }> {
    const out: Array<{ label: number; nexthop: number }> = [];
    this.nexthopOf.forEach((nexthop, label) => {
      if (nexthop >= 0) out.push({ label, nexthop });
    });
    return out;
  }
}
