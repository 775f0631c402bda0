/**
 * IPv4 header (RFC 791).
 *
 *    0                   1                   2                   3
 *    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |Version|  IHL  |Type of Service|          Total Length         |
 *   |         Identification        |Flags|      Fragment Offset    |
 *   |  Time to Live |    Protocol   |         Header Checksum       |
 *   |                       Source Address                          |
 *   |                    Destination Address                        |
 *   |                    Options (IHL > 5)                          |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 */
import { checksum } from './checksum';

export const IP_VERSION_IHL = 0;
export const IP_TOS = 1;
export const IP_TOTAL_LENGTH = 2;
export const IP_ID = 4;
export const IP_FLAGS_FRAGMENT = 6;
export const IP_TTL = 8;
export const IP_PROTOCOL = 9;
export const IP_CHECKSUM = 10;
export const IP_SRC = 12;
export const IP_DST = 16;
export const IP_MIN_HEADER_LEN = 20;

export const IP_FLAG_DF = 0x4000;
export const IP_FLAG_MF = 0x2000;
export const IP_FRAGMENT_OFFSET_MASK = 0x1fff;

export const PROTO_ICMP = 1;
export const PROTO_TCP = 6;
export const PROTO_UDP = 17;
export const PROTO_GRE = 47;

export function readU16(data: Uint8Array, offset: number): number {
  return (data[offset] << 8) | data[offset + 1];
}

export function writeU16(data: Uint8Array, offset: number, value: number): void {
  data[offset] = value >>> 8;
  data[offset + 1] = value & 0xff;
}

/** Reads a big-endian 32-bit value as an unsigned number. */
export function readU32(data: Uint8Array, offset: number): number {
  return ((data[offset] << 24) | (data[offset + 1] << 16) | (data[offset + 2] << 8) | data[offset + 3]) >>> 0;
}

export function writeU32(data: Uint8Array, offset: number, value: number): void {
  data[offset] = value >>> 24;
  data[offset + 1] = (value >>> 16) & 0xff;
  data[offset + 2] = (value >>> 8) & 0xff;
  data[offset + 3] = value & 0xff;
}

/** Header length in bytes from the IHL field. */
export function ipHeaderLength(data: Uint8Array, ip: number): number {
  return (data[ip] & 0x0f) << 2;
}

/** Recomputes and stores the header checksum. */
export function setIpChecksum(data: Uint8Array, ip: number): void {
  data[ip + IP_CHECKSUM] = 0;
  data[ip + IP_CHECKSUM + 1] = 0;
  writeU16(data, ip + IP_CHECKSUM, checksum(data, ip, ipHeaderLength(data, ip)));
}

/**
 * Parses dotted-quad text to a 32-bit unsigned number (configuration,
 * control messages and tests; character by character, since a table dump
 * from the control plane parses a few hundred thousand of them).
 */
export function ipFromString(text: string): number {
  let value = 0;
  let octet = 0;
  let digits = 0;
  let parts = 0;
  for (let i = 0; i <= text.length; i++) {
    const code = i < text.length ? text.charCodeAt(i) : 46; // a final '.' closes the last part
    if (code >= 48 && code <= 57 && digits < 3) {
      octet = octet * 10 + (code - 48);
      digits++;
    } else if (code === 46 && digits > 0 && octet <= 255 && parts < 4) {
      value = value * 256 + octet;
      parts++;
      octet = 0;
      digits = 0;
    } else {
      throw new Error(`not an IPv4 address: ${text}`);
    }
  }
  if (parts !== 4) throw new Error(`not an IPv4 address: ${text}`);
  return value >>> 0;
}

export function ipToString(address: number): string {
  return `${address >>> 24}.${(address >>> 16) & 0xff}.${(address >>> 8) & 0xff}.${address & 0xff}`;
}
