/**
 * Ethernet II (IEEE 802.3), with one optional 802.1Q tag.
 *
 *   0                   6                  12        14
 *   +-------------------+-------------------+---------+
 *   | destination MAC   | source MAC        | type    |
 *   +-------------------+-------------------+---------+
 *   802.1Q: type 0x8100, then TCI (2 bytes), then the real type.
 */
export const ETH_DST = 0;
export const ETH_SRC = 6;
export const ETH_TYPE = 12;
export const ETH_HEADER_LEN = 14;
export const VLAN_TAG_LEN = 4;

export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
export const ETHERTYPE_VLAN = 0x8100;
export const ETHERTYPE_IPV6 = 0x86dd;
export const ETHERTYPE_MPLS = 0x8847;

/** The MAC the vrouter answers ARP with and sources frames to pods from. */
export const VROUTER_MAC = Uint8Array.of(0x00, 0x00, 0x5e, 0x00, 0x01, 0x00);

/** Writes a 14-byte Ethernet header at `offset`. */
export function writeEthernet(
  data: Uint8Array,
  offset: number,
  dst: Uint8Array,
  src: Uint8Array,
  etherType: number,
): void {
  for (let i = 0; i < 6; i++) {
    data[offset + i] = dst[i];
    data[offset + 6 + i] = src[i];
  }
  data[offset + 12] = etherType >>> 8;
  data[offset + 13] = etherType & 0xff;
}

export function parseMac(text: string): Uint8Array {
  const parts = text.split(':');
  const mac = new Uint8Array(6);
  if (parts.length !== 6) throw new Error(`not a MAC address: ${text}`);
  for (let i = 0; i < 6; i++) {
    if (!/^[0-9a-fA-F]{2}$/.test(parts[i])) throw new Error(`not a MAC address: ${text}`);
    mac[i] = parseInt(parts[i], 16);
  }
  return mac;
}

export function formatMac(data: Uint8Array, offset = 0): string {
  const parts: string[] = [];
  for (let i = 0; i < 6; i++) parts.push(data[offset + i].toString(16).padStart(2, '0'));
  return parts.join(':');
}
