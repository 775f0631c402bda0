/**
 * Internet checksum (RFC 1071) and its incremental update (RFC 1624).
 * All functions work by offset on a Buffer and allocate nothing.
 */

/** One's complement sum of `length` bytes at `offset`, folded to 16 bits, not inverted. */
export function onesSum(data: Uint8Array, offset: number, length: number, initial = 0): number {
  let sum = initial;
  const end = offset + (length & ~1);
  for (let i = offset; i < end; i += 2) sum += (data[i] << 8) | data[i + 1];
  if (length & 1) sum += data[offset + length - 1] << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/** The checksum to store: inverted one's complement sum. */
export function checksum(data: Uint8Array, offset: number, length: number, initial = 0): number {
  return ~onesSum(data, offset, length, initial) & 0xffff;
}

/**
 * RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), for a 16-bit field changing from
 * `oldWord` to `newWord`. Returns the new checksum.
 */
export function checksumUpdate16(oldChecksum: number, oldWord: number, newWord: number): number {
  let sum = (~oldChecksum & 0xffff) + (~oldWord & 0xffff) + (newWord & 0xffff);
  sum = (sum & 0xffff) + (sum >>> 16);
  sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** RFC 1624 update for a 32-bit field (an IPv4 address) changing value. */
export function checksumUpdate32(oldChecksum: number, oldValue: number, newValue: number): number {
  let sum =
    (~oldChecksum & 0xffff) +
    (~(oldValue >>> 16) & 0xffff) +
    (~oldValue & 0xffff) +
    ((newValue >>> 16) & 0xffff) +
    (newValue & 0xffff);
  sum = (sum & 0xffff) + (sum >>> 16);
  sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}
