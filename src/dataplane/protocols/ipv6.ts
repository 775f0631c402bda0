/**
 * IPv6 header (RFC 8200 section 3).
 *
 *    0                   1                   2                   3
 *    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |Version| Traffic Class |           Flow Label                  |
 *   |         Payload Length        |  Next Header  |   Hop Limit   |
 *   |                                                               |
 *   +                         Source Address (128 bits)             +
 *   |                                                               |
 *   +                      Destination Address (128 bits)           +
 *   |                                                               |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * The packet path handles addresses as four big-endian 32-bit words read
 * straight from the Buffer (signed, see flow-hash.ts on why signed);
 * configuration and tools use 16-byte arrays and RFC 5952 text.
 */
export const IP6_PAYLOAD_LENGTH = 4;
export const IP6_NEXT_HEADER = 6;
export const IP6_HOP_LIMIT = 7;
export const IP6_SRC = 8;
export const IP6_DST = 24;
export const IP6_HEADER_LEN = 40;
/** Every IPv6 link carries packets of this size (RFC 8200 section 5); ICMPv6 errors fit in it. */
export const IP6_MIN_MTU = 1280;

export const PROTO_ICMPV6 = 58;

/** A big-endian 32-bit word of the buffer as a signed integer. */
export function readWord(data: Uint8Array, offset: number): number {
  return (data[offset] << 24) | (data[offset + 1] << 16) | (data[offset + 2] << 8) | data[offset + 3];
}

/** True when the 16 bytes at a and b are the same address. */
export function sameAddress6(a: Uint8Array, aOffset: number, b: Uint8Array, bOffset: number): boolean {
  for (let i = 0; i < 16; i++) if (a[aOffset + i] !== b[bOffset + i]) return false;
  return true;
}

/** The unspecified address :: (the source of duplicate address detection probes). */
export function isUnspecified6(data: Uint8Array, offset: number): boolean {
  for (let i = 0; i < 16; i++) if (data[offset + i] !== 0) return false;
  return true;
}

/** ff00::/8. */
export function isMulticast6(data: Uint8Array, offset: number): boolean {
  return data[offset] === 0xff;
}

/** fe80::/10: never routed off its link. */
export function isLinkLocal6(data: Uint8Array, offset: number): boolean {
  return data[offset] === 0xfe && (data[offset + 1] & 0xc0) === 0x80;
}

/** Parses IPv6 text (RFC 4291 2.2: "::" compression, a trailing dotted quad) into 16 bytes. */
export function ip6FromString(text: string): Uint8Array {
  const fail = (): never => {
    throw new Error(`not an IPv6 address: ${text}`);
  };
  const bytes = new Uint8Array(16);
  const halves = text.split('::');
  if (halves.length > 2) fail();
  const groups = (part: string): string[] => (part === '' ? [] : part.split(':'));
  const head = groups(halves[0]);
  const tail = halves.length === 2 ? groups(halves[1]) : [];
  const words: number[] = [];
  const parse = (list: string[], last: boolean): number[] => {
    const out: number[] = [];
    list.forEach((group, index) => {
      if (last && index === list.length - 1 && group.includes('.')) {
        const octets = group.split('.');
        if (octets.length !== 4 || octets.some((octet) => !/^\d{1,3}$/.test(octet) || Number(octet) > 255)) fail();
        out.push((Number(octets[0]) << 8) | Number(octets[1]), (Number(octets[2]) << 8) | Number(octets[3]));
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(group)) fail();
        out.push(parseInt(group, 16));
      }
    });
    return out;
  };
  const headWords = parse(head, halves.length === 1);
  const tailWords = parse(tail, true);
  if (halves.length === 1) {
    if (headWords.length !== 8) fail();
    words.push(...headWords);
  } else {
    const missing = 8 - headWords.length - tailWords.length;
    if (missing < 1) fail();
    words.push(...headWords, ...new Array<number>(missing).fill(0), ...tailWords);
  }
  words.forEach((word, index) => {
    bytes[index * 2] = word >>> 8;
    bytes[index * 2 + 1] = word & 0xff;
  });
  return bytes;
}

/** RFC 5952 text: lower case, no leading zeros, the longest run of two or more zero groups as "::". */
export function ip6ToString(data: Uint8Array, offset = 0): string {
  const words: number[] = [];
  for (let i = 0; i < 8; i++) words.push((data[offset + i * 2] << 8) | data[offset + i * 2 + 1]);
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (list: number[]) => list.map((word) => word.toString(16)).join(':');
  if (bestStart < 0) return hex(words);
  return `${hex(words.slice(0, bestStart))}::${hex(words.slice(bestStart + bestLength))}`;
}

/** Zeroes the bits of a 16-byte prefix beyond `length` (in place); returns it. */
export function maskPrefix6(prefix: Uint8Array, length: number): Uint8Array {
  for (let i = 0; i < 16; i++) {
    const keep = Math.max(0, Math.min(8, length - i * 8));
    prefix[i] &= (0xff00 >>> keep) & 0xff;
  }
  return prefix;
}

/** True when the address at data[offset] lies in prefix/length. */
export function inPrefix6(data: Uint8Array, offset: number, prefix: Uint8Array, length: number): boolean {
  let i = 0;
  for (; i * 8 + 8 <= length; i++) if (data[offset + i] !== prefix[i]) return false;
  const rest = length - i * 8;
  if (rest === 0) return true;
  const mask = (0xff00 >>> rest) & 0xff;
  return (data[offset + i] & mask) === prefix[i];
}
