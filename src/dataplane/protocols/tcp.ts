/**
 * TCP (RFC 9293), the fields the vrouter reads.
 *
 *   0          2          4                  8                  12     13      14
 *   +----------+----------+------------------+------------------+------+-------+------
 *   | src port | dst port | sequence number  | ack number       | off. | flags | ...
 *   +----------+----------+------------------+------------------+------+-------+------
 *   checksum at 16.
 */
export const TCP_SRC_PORT = 0;
export const TCP_DST_PORT = 2;
export const TCP_SEQUENCE = 4;
export const TCP_ACK = 8;
export const TCP_DATA_OFFSET = 12;
export const TCP_FLAGS = 13;
export const TCP_CHECKSUM = 16;
export const TCP_MIN_HEADER_LEN = 20;
