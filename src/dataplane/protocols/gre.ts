/**
 * GRE (RFC 2784) as used for MPLS over GRE (RFC 4023): no checksum, key or
 * sequence number, protocol 0x8847.
 *
 *   0                2                4
 *   +----------------+----------------+
 *   |C| flags | ver  | protocol type  |
 *   +----------------+----------------+
 */
export const GRE_FLAGS_VERSION = 0;
export const GRE_PROTOCOL = 2;
export const GRE_HEADER_LEN = 4;
