/**
 * UDP (RFC 768).
 *
 *   0            2            4            6            8
 *   +------------+------------+------------+------------+
 *   | src port   | dst port   | length     | checksum   |
 *   +------------+------------+------------+------------+
 */
export const UDP_SRC_PORT = 0;
export const UDP_DST_PORT = 2;
export const UDP_LENGTH = 4;
export const UDP_CHECKSUM = 6;
export const UDP_HEADER_LEN = 8;

/** MPLS over UDP (RFC 7510) destination port, and the receive-only legacy one. */
export const MPLS_OVER_UDP_PORT = 6635;
export const MPLS_OVER_UDP_LEGACY_PORT = 51234;
/** RFC 7510 entropy source ports come from the dynamic range. */
export const ENTROPY_PORT_BASE = 49152;
