/**
 * ICMPv6 (RFC 4443) and the neighbour discovery messages (RFC 4861) the
 * vrouter answers for pods.
 *
 *   0        1        2                 4                                 8
 *   +--------+--------+-----------------+---------------------------------+
 *   | type   | code   | checksum        | echo: id, seq; errors: 0 or MTU |
 *   +--------+--------+-----------------+---------------------------------+
 *   Errors (types < 128) quote as much of the offending packet as fits in
 *   1280 bytes. The checksum covers a pseudo-header (source, destination,
 *   upper-layer length, next header 58), as TCP's and UDP's do over IPv6.
 *
 *   Neighbour solicitation (135) / advertisement (136):
 *   | type | code | checksum | flags (NA: R S O) + reserved (4) | target (16) | options |
 *   Router solicitation (133): | type | code | checksum | reserved (4) | options |
 *   Router advertisement (134):
 *   | type | code | checksum | hop limit | M O flags | router lifetime (2) |
 *   | reachable time (4) | retrans timer (4) | options |
 *   Options: | type | length in 8-byte units | ... |: 1 source and 2 target
 *   link-layer address (6 bytes MAC), 3 prefix information (32 bytes), 5 MTU.
 */
import { onesSum } from './checksum';
import { IP6_SRC } from './ipv6';

export const ICMPV6_HEADER_LEN = 8;

export const ICMPV6_DEST_UNREACHABLE = 1;
export const ICMPV6_PACKET_TOO_BIG = 2;
export const ICMPV6_TIME_EXCEEDED = 3;
export const ICMPV6_PARAMETER_PROBLEM = 4;
export const ICMPV6_ECHO_REQUEST = 128;
export const ICMPV6_ECHO_REPLY = 129;
export const ND_ROUTER_SOLICIT = 133;
export const ND_ROUTER_ADVERT = 134;
export const ND_NEIGHBOR_SOLICIT = 135;
export const ND_NEIGHBOR_ADVERT = 136;
export const ND_REDIRECT = 137;

/** Destination unreachable code 0: no route to destination. */
export const ICMPV6_NO_ROUTE = 0;

export const ND_NS_LEN = 24;
export const ND_NA_LEN = 24;
export const ND_RS_LEN = 8;
export const ND_RA_LEN = 16;
export const ND_OPT_SOURCE_LINKADDR = 1;
export const ND_OPT_TARGET_LINKADDR = 2;
export const ND_OPT_PREFIX_INFORMATION = 3;
export const ND_OPT_MTU = 5;
export const ND_OPT_LINKADDR_LEN = 8;
export const ND_OPT_PREFIX_INFORMATION_LEN = 32;
export const ND_OPT_MTU_LEN = 8;

export const ND_NA_FLAG_ROUTER = 0x80;
export const ND_NA_FLAG_SOLICITED = 0x40;
export const ND_NA_FLAG_OVERRIDE = 0x20;
export const ND_PI_FLAG_ONLINK = 0x80;
/** Neighbour discovery is link-local: sent with hop limit 255 and dropped when it arrives with less (RFC 4861 6.1, 7.1). */
export const ND_HOP_LIMIT = 255;

/** Types 0-127 report an error about another packet (RFC 4443 2.1). */
export function isIcmpv6Error(type: number): boolean {
  return type < 128;
}

/** The neighbour discovery messages (RFC 4861 section 4), which never leave their link. */
export function isNeighborDiscovery(type: number): boolean {
  return type >= ND_ROUTER_SOLICIT && type <= ND_REDIRECT;
}

/**
 * The checksum to store for the upper-layer message of `length` bytes at
 * `l4` behind the IPv6 header at `ip`: pseudo-header (RFC 8200 8.1) plus the
 * message, with its checksum field counted as it is (zero it first).
 */
export function upperLayerChecksum6(data: Uint8Array, ip: number, l4: number, length: number, nextHeader: number): number {
  let sum = onesSum(data, ip + IP6_SRC, 32);
  sum += (length >>> 16) + (length & 0xffff) + nextHeader;
  sum = onesSum(data, l4, length, sum);
  return ~sum & 0xffff;
}

/** True when the upper-layer checksum of the message at l4 verifies. */
export function upperLayerChecksumValid6(data: Uint8Array, ip: number, l4: number, length: number, nextHeader: number): boolean {
  return upperLayerChecksum6(data, ip, l4, length, nextHeader) === 0;
}
