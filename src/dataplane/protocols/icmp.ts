/**
 * ICMP for IPv4 (RFC 792).
 *
 *   0        1        2                 4                                 8
 *   +--------+--------+-----------------+---------------------------------+
 *   | type   | code   | checksum        | rest (echo: id, seq; errors: 0/ |
 *   |        |        |                 | next-hop MTU for frag-needed)   |
 *   +--------+--------+-----------------+---------------------------------+
 *   Errors carry the offending IP header plus its first 8 data bytes.
 */
export const ICMP_TYPE = 0;
export const ICMP_CODE = 1;
export const ICMP_CHECKSUM = 2;
export const ICMP_ID = 4;
export const ICMP_SEQUENCE = 6;
export const ICMP_HEADER_LEN = 8;

export const ICMP_ECHO_REPLY = 0;
export const ICMP_DEST_UNREACHABLE = 3;
export const ICMP_ECHO_REQUEST = 8;
export const ICMP_TIME_EXCEEDED = 11;
export const ICMP_PARAMETER_PROBLEM = 12;

/** True for the ICMP types that report an error about another packet. */
export function isIcmpError(type: number): boolean {
  return type === ICMP_DEST_UNREACHABLE || type === ICMP_TIME_EXCEEDED || type === ICMP_PARAMETER_PROBLEM || type === 4 || type === 5;
}
