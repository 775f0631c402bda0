/**
 * MPLS label stack entry (RFC 3032).
 *
 *    0                   1                   2                   3
 *    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |                Label                  | EXP |S|      TTL      |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 */
export const MPLS_HEADER_LEN = 4;
/** Labels 0-15 are reserved; unicast labels start here. */
export const MPLS_FIRST_UNICAST_LABEL = 16;
export const MPLS_MAX_LABEL = 0xfffff;

export function mplsEntry(label: number, bottomOfStack: boolean, ttl: number): number {
  return ((label << 12) | (bottomOfStack ? 0x100 : 0) | (ttl & 0xff)) >>> 0;
}

export function mplsLabel(entry: number): number {
  return entry >>> 12;
}

export function mplsBottomOfStack(entry: number): boolean {
  return (entry & 0x100) !== 0;
}

export function mplsTtl(entry: number): number {
  return entry & 0xff;
}
