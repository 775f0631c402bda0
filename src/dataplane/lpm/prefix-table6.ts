/**
 * The contract every IPv6 longest-prefix-match table keeps (the fast one
 * and the plain reference it is checked against). Prefixes are 16-byte
 * arrays (host bits ignored), lengths 0-128; lookups read the address where
 * it lies, 16 bytes at data[offset], so the packet path passes the packet
 * itself. Values are route ids, integers in [0, 2^31).
 */
export interface PrefixTable6 {
  /** Adds the route for prefix/length, or replaces its value. */
  insert(prefix: Uint8Array, length: number, value: number): void;
  /** Removes prefix/length; false when it was not there. */
  remove(prefix: Uint8Array, length: number): boolean;
  /** Value of the longest prefix that contains the address at data[offset], or -1. */
  lookup(data: Uint8Array, offset: number): number;
  /** Value stored for exactly prefix/length, or -1. */
  get(prefix: Uint8Array, length: number): number;
  /** Number of prefixes stored. */
  readonly size: number;
  /** Every route, ordered by prefix (bytewise) then length. */
  entries(): Array<{ prefix: Uint8Array; length: number; value: number }>;
}

export function checkLength6(length: number): void {
  if (!Number.isInteger(length) || length < 0 || length > 128) {
    throw new RangeError(`prefix length must be an integer in [0, 128]: ${length}`);
  }
}

export function checkValue(value: number): void {
  if (!Number.isInteger(value) || value < 0 || value > 0x7fffffff) {
    throw new RangeError(`route value must be an integer in [0, 2^31): ${value}`);
  }
}

/** The order entries() returns: by prefix bytes, then length. */
export function compareRoutes6(a: { prefix: Uint8Array; length: number }, b: { prefix: Uint8Array; length: number }): number {
  for (let i = 0; i < 16; i++) if (a.prefix[i] !== b.prefix[i]) return a.prefix[i] - b.prefix[i];
  return a.length - b.length;
}
