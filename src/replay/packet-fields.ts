/**
 * Names the header fields of a frame for diffs and masks: where each field
 * sits (byte offset, length, and a bit mask for fields that share bytes),
 * what it is called in a mask (Wireshark's display-filter names: ip.id,
 * udp.srcport) and in a sentence ("outer UDP source port"). Not the packet
 * path: this decodes a frame at a time for a person to read, with objects.
 *
 * Layers: Ethernet (one 802.1Q tag), ARP, IPv4 (options), IPv6 (fixed
 * header), UDP, TCP, ICMP, ICMPv6, GRE, MPLS (MPLS over UDP on 6635 and
 * 51234, over GRE 0x8847), and an MPLS payload's IPv4/IPv6 as the inner
 * packet. Headers up to the last label are "outer" when there is an inner
 * packet.
 */
import { checksum, onesSum } from '../dataplane/protocols/checksum';

export interface PacketField {
  /** Mask name, e.g. "udp.srcport"; with "outer."/"inner." before it, it names one layer only. */
  name: string;
  /** "outer", "inner" or "" (no tunnel). */
  layer: string;
  /** In a sentence, e.g. "UDP source port". */
  label: string;
  offset: number;
  length: number;
  /** Bits of the first and of the last byte that belong to the field (0xff: all of it); the bytes between are whole. */
  firstBits: number;
  lastBits: number;
  /** The value as a person reads it. */
  value: string;
  /** For checksum fields: whether the checksum the frame carries is right (null: cannot be told, e.g. a fragment). */
  valid?: boolean | null;
}

/** Every mask name the decoder knows, with what it is, for the documentation and for refusing typos. */
export const FIELD_NAMES: ReadonlyArray<readonly [name: string, label: string]> = [
  ['eth.dst', 'Ethernet destination'],
  ['eth.src', 'Ethernet source'],
  ['vlan.id', '802.1Q VLAN id'],
  ['eth.type', 'ethertype'],
  ['arp.opcode', 'ARP opcode'],
  ['arp.src.hw_mac', 'ARP sender MAC'],
  ['arp.src.proto_ipv4', 'ARP sender IPv4'],
  ['arp.dst.hw_mac', 'ARP target MAC'],
  ['arp.dst.proto_ipv4', 'ARP target IPv4'],
  ['ip.hdr_len', 'IPv4 header length'],
  ['ip.dsfield', 'IPv4 DS field'],
  ['ip.len', 'IPv4 total length'],
  ['ip.id', 'IPv4 identification'],
  ['ip.flags', 'IPv4 flags'],
  ['ip.frag_offset', 'IPv4 fragment offset'],
  ['ip.ttl', 'IPv4 TTL'],
  ['ip.proto', 'IPv4 protocol'],
  ['ip.checksum', 'IPv4 header checksum'],
  ['ip.src', 'IPv4 source'],
  ['ip.dst', 'IPv4 destination'],
  ['ip.options', 'IPv4 options'],
  ['ipv6.tclass', 'IPv6 traffic class'],
  ['ipv6.flow', 'IPv6 flow label'],
  ['ipv6.plen', 'IPv6 payload length'],
  ['ipv6.nxt', 'IPv6 next header'],
  ['ipv6.hlim', 'IPv6 hop limit'],
  ['ipv6.src', 'IPv6 source'],
  ['ipv6.dst', 'IPv6 destination'],
  ['udp.srcport', 'UDP source port'],
  ['udp.dstport', 'UDP destination port'],
  ['udp.length', 'UDP length'],
  ['udp.checksum', 'UDP checksum'],
  ['tcp.srcport', 'TCP source port'],
  ['tcp.dstport', 'TCP destination port'],
  ['tcp.seq', 'TCP sequence number'],
  ['tcp.ack', 'TCP acknowledgement number'],
  ['tcp.hdr_len', 'TCP header length'],
  ['tcp.flags', 'TCP flags'],
  ['tcp.window_size_value', 'TCP window'],
  ['tcp.checksum', 'TCP checksum'],
  ['tcp.urgent_pointer', 'TCP urgent pointer'],
  ['tcp.options', 'TCP options'],
  ['icmp.type', 'ICMP type'],
  ['icmp.code', 'ICMP code'],
  ['icmp.checksum', 'ICMP checksum'],
  ['icmp.rest', 'ICMP rest of header'],
  ['icmpv6.type', 'ICMPv6 type'],
  ['icmpv6.code', 'ICMPv6 code'],
  ['icmpv6.checksum', 'ICMPv6 checksum'],
  ['gre.flags', 'GRE flags and version'],
  ['gre.proto', 'GRE protocol'],
  ['mpls.label', 'MPLS label'],
  ['mpls.exp', 'MPLS traffic class'],
  ['mpls.bottom', 'MPLS bottom of stack'],
  ['mpls.ttl', 'MPLS TTL'],
  ['data', 'payload'],
];

const LABELS = new Map(FIELD_NAMES);
const MPLS_UDP_PORTS = new Set([6635, 51234]);
const IPPROTO_ICMP = 1;
const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;
const IPPROTO_GRE = 47;
const IPPROTO_ICMPV6 = 58;
const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_ARP = 0x0806;
const ETHERTYPE_VLAN = 0x8100;
const ETHERTYPE_IPV6 = 0x86dd;
const ETHERTYPE_MPLS = 0x8847;

const hex = (value: number, digits: number): string => `0x${value.toString(16).padStart(digits, '0')}`;
const mac = (d: Buffer, at: number): string => [...d.subarray(at, at + 6)].map((byte) => byte.toString(16).padStart(2, '0')).join(':');
const ipv4 = (d: Buffer, at: number): string => `${d[at]}.${d[at + 1]}.${d[at + 2]}.${d[at + 3]}`;
const ipv6 = (d: Buffer, at: number): string => {
  const words = Array.from({ length: 8 }, (_, i) => d.readUInt16BE(at + 2 * i).toString(16));
  return words.join(':').replace(/(^|:)0(:0)+(:|$)/, '::');
};
const TCP_FLAG_NAMES = ['FIN', 'SYN', 'RST', 'PSH', 'ACK', 'URG', 'ECE', 'CWR'];

/** Decodes a frame's headers into named fields, outermost first. A field cut by the frame's end is left out. */
export function decodeFields(frame: Buffer): PacketField[] {
  const fields: PacketField[] = [];
  let layer = '';
  const add = (name: string, offset: number, length: number, value: string, firstBits = 0xff, lastBits = length === 1 ? firstBits : 0xff): boolean => {
    if (offset + length > frame.length) return false;
    fields.push({ name, layer, label: LABELS.get(name)!, offset, length, firstBits, lastBits, value });
    return true;
  };
  const u8 = (at: number) => frame[at];
  const u16 = (at: number) => frame.readUInt16BE(at);
  const u32 = (at: number) => frame.readUInt32BE(at);

  const l4 = (protocol: number, at: number, end: number, pseudo: number | null): void => {
    if (protocol === IPPROTO_UDP) {
      if (!add('udp.srcport', at, 2, String(u16(at)))) return;
      add('udp.dstport', at + 2, 2, String(u16(at + 2)));
      add('udp.length', at + 4, 2, String(u16(at + 4)));
      if (!add('udp.checksum', at + 6, 2, hex(u16(at + 6), 4))) return;
      const sum = u16(at + 6);
      fields[fields.length - 1].valid = pseudo === null ? null : sum === 0 ? true : checksum(frame, at, end - at, pseudo + IPPROTO_UDP + (end - at)) === 0;
      data(at + 8, end, MPLS_UDP_PORTS.has(u16(at + 2)) ? 'mpls' : null);
    } else if (protocol === IPPROTO_TCP) {
      if (!add('tcp.srcport', at, 2, String(u16(at)))) return;
      add('tcp.dstport', at + 2, 2, String(u16(at + 2)));
      add('tcp.seq', at + 4, 4, String(u32(at + 4)));
      add('tcp.ack', at + 8, 4, String(u32(at + 8)));
      if (!add('tcp.hdr_len', at + 12, 1, String((u8(at + 12) >> 4) * 4), 0xf0)) return;
      const flags = u16(at + 12) & 0x0fff;
      add('tcp.flags', at + 12, 2, TCP_FLAG_NAMES.filter((_, bit) => flags & (1 << bit)).join(',') || 'none', 0x0f);
      add('tcp.window_size_value', at + 14, 2, String(u16(at + 14)));
      if (!add('tcp.checksum', at + 16, 2, hex(u16(at + 16), 4))) return;
      fields[fields.length - 1].valid = pseudo === null ? null : checksum(frame, at, end - at, pseudo + IPPROTO_TCP + (end - at)) === 0;
      add('tcp.urgent_pointer', at + 18, 2, String(u16(at + 18)));
      const headerEnd = at + (u8(at + 12) >> 4) * 4;
      if (headerEnd > at + 20) add('tcp.options', at + 20, headerEnd - at - 20, frame.toString('hex', at + 20, Math.min(headerEnd, end)));
      data(headerEnd, end, null);
    } else if (protocol === IPPROTO_ICMP || protocol === IPPROTO_ICMPV6) {
      const p = protocol === IPPROTO_ICMP ? 'icmp' : 'icmpv6';
      if (!add(`${p}.type`, at, 1, String(u8(at)))) return;
      add(`${p}.code`, at + 1, 1, String(u8(at + 1)));
      if (!add(`${p}.checksum`, at + 2, 2, hex(u16(at + 2), 4))) return;
      const initial = protocol === IPPROTO_ICMP ? 0 : pseudo === null ? null : pseudo + IPPROTO_ICMPV6 + (end - at);
      fields[fields.length - 1].valid = initial === null ? null : checksum(frame, at, end - at, initial) === 0;
      if (protocol === IPPROTO_ICMP) add('icmp.rest', at + 4, 4, hex(u32(at + 4), 8));
      data(at + 8, end, null);
    } else if (protocol === IPPROTO_GRE) {
      if (!add('gre.flags', at, 2, hex(u16(at), 4))) return;
      if (!add('gre.proto', at + 2, 2, hex(u16(at + 2), 4))) return;
      data(at + 4, end, u16(at + 2) === ETHERTYPE_MPLS && u16(at) === 0 ? 'mpls' : null);
    } else {
      data(at, end, null);
    }
  };

  const data = (at: number, end: number, next: 'mpls' | null): void => {
    if (next === 'mpls') return mpls(at, end);
    if (end > at) add('data', at, end - at, `${end - at} bytes`);
  };

  const mpls = (at: number, end: number): void => {
    for (;;) {
      if (at + 4 > end) return data(at, end, null);
      const word = u32(at);
      add('mpls.label', at, 3, String(word >>> 12), 0xff, 0xf0);
      add('mpls.exp', at + 2, 1, String((word >> 9) & 7), 0x0e);
      add('mpls.bottom', at + 2, 1, String((word >> 8) & 1), 0x01);
      add('mpls.ttl', at + 3, 1, String(word & 0xff));
      at += 4;
      if (word & 0x100) break;
    }
    const version = at < end ? frame[at] >> 4 : 0;
    for (const field of fields) if (field.layer === '') field.layer = 'outer';
    layer = 'inner';
    if (version === 4) ip4(at, end);
    else if (version === 6) ip6(at, end);
    else data(at, end, null);
  };

  const ip4 = (at: number, frameEnd: number): void => {
    if (!add('ip.hdr_len', at, 1, String((u8(at) & 0x0f) * 4), 0x0f)) return;
    const headerLength = (u8(at) & 0x0f) * 4;
    add('ip.dsfield', at + 1, 1, hex(u8(at + 1), 2));
    if (!add('ip.len', at + 2, 2, String(u16(at + 2)))) return;
    add('ip.id', at + 4, 2, hex(u16(at + 4), 4));
    if (!add('ip.flags', at + 6, 1, [u8(at + 6) & 0x40 ? 'DF' : '', u8(at + 6) & 0x20 ? 'MF' : ''].filter(Boolean).join(',') || 'none', 0xe0)) return;
    add('ip.frag_offset', at + 6, 2, String((u16(at + 6) & 0x1fff) * 8), 0x1f);
    add('ip.ttl', at + 8, 1, String(u8(at + 8)));
    add('ip.proto', at + 9, 1, String(u8(at + 9)));
    if (!add('ip.checksum', at + 10, 2, hex(u16(at + 10), 4))) return;
    fields[fields.length - 1].valid = headerLength >= 20 && at + headerLength <= frame.length ? checksum(frame, at, headerLength) === 0 : false;
    add('ip.src', at + 12, 4, ipv4(frame, at + 12));
    add('ip.dst', at + 16, 4, ipv4(frame, at + 16));
    if (headerLength > 20) add('ip.options', at + 20, headerLength - 20, frame.toString('hex', at + 20, Math.min(at + headerLength, frame.length)));
    const end = Math.min(frameEnd, at + u16(at + 2));
    const fragment = (u16(at + 6) & 0x3fff) !== 0;
    if (fragment && (u16(at + 6) & 0x1fff) !== 0) return data(at + headerLength, end, null);
    // A fragment's L4 checksum covers the whole datagram: it cannot be checked here.
    const pseudo = fragment ? null : onesSum(frame, at + 12, 8);
    l4(u8(at + 9), at + headerLength, end, pseudo);
  };

  const ip6 = (at: number, frameEnd: number): void => {
    if (at + 40 > frame.length) return data(at, frameEnd, null);
    add('ipv6.tclass', at, 2, hex((u16(at) >> 4) & 0xff, 2), 0x0f, 0xf0);
    add('ipv6.flow', at + 1, 3, hex(u32(at) & 0xfffff, 5), 0x0f);
    add('ipv6.plen', at + 4, 2, String(u16(at + 4)));
    add('ipv6.nxt', at + 6, 1, String(u8(at + 6)));
    add('ipv6.hlim', at + 7, 1, String(u8(at + 7)));
    add('ipv6.src', at + 8, 16, ipv6(frame, at + 8));
    add('ipv6.dst', at + 24, 16, ipv6(frame, at + 24));
    l4(u8(at + 6), at + 40, Math.min(frameEnd, at + 40 + u16(at + 4)), onesSum(frame, at + 8, 32));
  };

  if (!add('eth.dst', 0, 6, frame.length >= 6 ? mac(frame, 0) : '')) return fields;
  add('eth.src', 6, 6, frame.length >= 12 ? mac(frame, 6) : '');
  if (frame.length < 14) return fields;
  let typeAt = 12;
  if (u16(12) === ETHERTYPE_VLAN && frame.length >= 18) {
    add('vlan.id', 14, 2, String(u16(14) & 0x0fff), 0x0f);
    typeAt = 16;
  }
  const etherType = u16(typeAt);
  add('eth.type', typeAt, 2, hex(etherType, 4));
  const l3 = typeAt + 2;
  if (etherType === ETHERTYPE_IPV4) ip4(l3, frame.length);
  else if (etherType === ETHERTYPE_IPV6) ip6(l3, frame.length);
  else if (etherType === ETHERTYPE_ARP && frame.length >= l3 + 28) {
    add('arp.opcode', l3 + 6, 2, String(u16(l3 + 6)));
    add('arp.src.hw_mac', l3 + 8, 6, mac(frame, l3 + 8));
    add('arp.src.proto_ipv4', l3 + 14, 4, ipv4(frame, l3 + 14));
    add('arp.dst.hw_mac', l3 + 18, 6, mac(frame, l3 + 18));
    add('arp.dst.proto_ipv4', l3 + 24, 4, ipv4(frame, l3 + 24));
    data(l3 + 28, frame.length, null);
  } else data(l3, frame.length, null);
  return fields;
}

/** The bits of byte `index` (0-based within the field) that belong to it. */
export function fieldBits(field: PacketField, index: number): number {
  if (index === 0) return field.length === 1 ? field.firstBits & field.lastBits : field.firstBits;
  return index === field.length - 1 ? field.lastBits : 0xff;
}

/** "outer UDP source port", "IPv4 TTL". */
export function describeField(field: PacketField): string {
  return field.layer === '' ? field.label : `${field.layer} ${field.label}`;
}
