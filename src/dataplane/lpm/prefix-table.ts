/**
 * The contract every IPv4 longest-prefix-match table keeps (the fast one and
 * the plain reference it is checked against). Addresses and prefixes are
 * unsigned 32-bit numbers; values are route ids, integers in [0, 2^31).
 */
export interface PrefixTable {
  /** Adds the route for prefix/length, or replaces its value; returns the value replaced, -1 for a new route. Host bits of prefix are ignored. */
  insert(prefix: number, length: number, value: number): number;
  /** Removes prefix/length; false when it was not there. */
  remove(prefix: number, length: number): boolean;
  /** Value of the longest prefix that contains address, or -1. */
  lookup(address: number): number;
  /** Value stored for exactly prefix/length, or -1. */
  get(prefix: number, length: number): number;
  /** Number of prefixes stored. */
  readonly size: number;
  /** Every route, ordered by prefix then length. */
  entries(): Array<{ prefix: number; length: number; value: number }>;
}

/** Network mask of a prefix length as an unsigned 32-bit number. */
export function prefixMask(length: number): number {
  return length === 0 ? 0 : (0xffffffff << (32 - length)) >>> 0;
}
