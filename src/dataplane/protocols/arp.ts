/**
 * ARP for IPv4 over Ethernet (RFC 826).
 *
 *   0       2       4    5    6       8              14       18             24       28
 *   +-------+-------+----+----+-------+--------------+--------+--------------+--------+
 *   | htype | ptype |hlen|plen| oper  | sender MAC   | sender | target MAC   | target |
 *   |   1   |0x0800 | 6  | 4  | 1/2   |              |  IP    |              |  IP    |
 *   +-------+-------+----+----+-------+--------------+--------+--------------+--------+
 */
export const ARP_HTYPE = 0;
export const ARP_PTYPE = 2;
export const ARP_HLEN = 4;
export const ARP_PLEN = 5;
export const ARP_OPER = 6;
export const ARP_SHA = 8;
export const ARP_SPA = 14;
export const ARP_THA = 18;
export const ARP_TPA = 24;
export const ARP_LEN = 28;

export const ARP_REQUEST = 1;
export const ARP_REPLY = 2;
