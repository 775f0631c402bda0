/**
 * IPv6 frame builders for tests, written apart from the packet path (plain,
 * allocating, every checksum computed from scratch over the RFC 8200 8.1
 * pseudo-header).
 */
import { ethernet, internetChecksum } from './frames';

export function ip6(text: string): Buffer {
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const words = (part: string) => (part === '' ? [] : part.split(':').map((group) => parseInt(group, 16)));
  const headWords = words(head);
  const tailWords = tail === undefined ? [] : words(tail);
  const all = [...headWords, ...new Array(8 - headWords.length - tailWords.length).fill(0), ...tailWords];
  const out = Buffer.alloc(16);
  all.forEach((word, i) => out.writeUInt16BE(word, i * 2));
  return out;
}

export function ip6Text(b: Buffer, at: number): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(at + i).toString(16));
  return groups.join(':');
}

export function upperChecksum6(src: Buffer, dst: Buffer, nextHeader: number, segment: Buffer): number {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(segment.length);
  return internetChecksum(Buffer.concat([src, dst, length, Buffer.from([0, 0, 0, nextHeader]), segment]));
}

export function ipv6(o: { src: string; dst: string; nextHeader: number; payload: Buffer; hopLimit?: number }): Buffer {
  const header = Buffer.alloc(40);
  header.writeUInt32BE(0x60000000, 0);
  header.writeUInt16BE(o.payload.length, 4);
  header[6] = o.nextHeader;
  header[7] = o.hopLimit ?? 64;
  ip6(o.src).copy(header, 8);
  ip6(o.dst).copy(header, 24);
  return Buffer.concat([header, o.payload]);
}

function withChecksum(src: string, dst: string, nextHeader: number, segment: Buffer, at: number): Buffer {
  segment.writeUInt16BE(0, at);
  segment.writeUInt16BE(upperChecksum6(ip6(src), ip6(dst), nextHeader, segment), at);
  return segment;
}

export function udp6(src: string, dst: string, srcPort: number, dstPort: number, payload: Buffer): Buffer {
  const segment = Buffer.alloc(8 + payload.length);
  segment.writeUInt16BE(srcPort, 0);
  segment.writeUInt16BE(dstPort, 2);
  segment.writeUInt16BE(segment.length, 4);
  payload.copy(segment, 8);
  return withChecksum(src, dst, 17, segment, 6);
}

export function tcp6(src: string, dst: string, srcPort: number, dstPort: number, flags: number, seq = 1000, ack = 0): Buffer {
  const segment = Buffer.alloc(20);
  segment.writeUInt16BE(srcPort, 0);
  segment.writeUInt16BE(dstPort, 2);
  segment.writeUInt32BE(seq, 4);
  segment.writeUInt32BE(ack, 8);
  segment[12] = 5 << 4;
  segment[13] = flags;
  segment.writeUInt16BE(65535, 14);
  return withChecksum(src, dst, 6, segment, 16);
}

export function icmp6(src: string, dst: string, type: number, code: number, body: Buffer): Buffer {
  return withChecksum(src, dst, 58, Buffer.concat([Buffer.from([type, code, 0, 0]), body]), 2);
}

export function echo6(src: string, dst: string, type: 128 | 129, id: number, sequence: number): Buffer {
  const body = Buffer.alloc(4 + 16, 0xab);
  body.writeUInt16BE(id, 0);
  body.writeUInt16BE(sequence, 2);
  return icmp6(src, dst, type, 0, body);
}

/** A pod's frame carrying an IPv6 packet to the vrouter MAC. */
export function frame6(srcMac: string, dstMac: string, packet: Buffer): Buffer {
  return ethernet(dstMac, srcMac, 0x86dd, packet);
}

/** Solicited-node multicast address and MAC of a target (RFC 4291 2.7.1, RFC 2464 7). */
export function solicitedNode(target: string): { address: string; mac: string } {
  const t = ip6(target);
  const address = `ff02::1:ff${t[13].toString(16).padStart(2, '0')}:${t.readUInt16BE(14).toString(16)}`;
  const mac = ['33', '33', 'ff', ...[...t.subarray(13, 16)].map((b) => b.toString(16).padStart(2, '0'))].join(':');
  return { address, mac };
}

export function neighborSolicitation(o: { srcMac: string; src: string; target: string; hopLimit?: number }): Buffer {
  const { address, mac } = solicitedNode(o.target);
  const body = Buffer.alloc(4 + 16 + 8);
  ip6(o.target).copy(body, 4);
  body[20] = 1; // source link-layer address option
  body[21] = 1;
  Buffer.from(o.srcMac.split(':').map((x) => parseInt(x, 16))).copy(body, 22);
  const message = icmp6(o.src, address, 135, 0, body);
  return ethernet(mac, o.srcMac, 0x86dd, ipv6({ src: o.src, dst: address, nextHeader: 58, hopLimit: o.hopLimit ?? 255, payload: message }));
}

export function routerSolicitation(o: { srcMac: string; src: string }): Buffer {
  const body = Buffer.alloc(4);
  const message = icmp6(o.src, 'ff02::2', 133, 0, body);
  return ethernet('33:33:00:00:00:02', o.srcMac, 0x86dd, ipv6({ src: o.src, dst: 'ff02::2', nextHeader: 58, hopLimit: 255, payload: message }));
}

/**
 * A hop-by-hop, routing or destination options header (RFC 8200 4.3-4.6) of
 * 8 * (1 + lengthUnits) bytes: its options a PadN filling it (a routing
 * header: type 0, segments left 0, which every node skips, RFC 5095 3).
 */
export function extensionHeader(nextHeader: number, lengthUnits = 0, routing = false): Buffer {
  const header = Buffer.alloc(8 * (lengthUnits + 1));
  header[0] = nextHeader;
  header[1] = lengthUnits;
  if (!routing) {
    header[2] = 1;
    header[3] = header.length - 4;
  }
  return header;
}

/**
 * The fragments of an IPv6 packet's fragmentable part (RFC 8200 4.5), each
 * `sizes[i]` bytes of it (multiples of 8 but the last) behind a fragment
 * header with `id`, in order.
 */
export function fragments6(o: { src: string; dst: string; nextHeader: number; fragmentable: Buffer; id: number; sizes: number[]; hopLimit?: number }): Buffer[] {
  const out: Buffer[] = [];
  let offset = 0;
  for (const size of o.sizes) {
    const header = Buffer.alloc(8);
    header[0] = o.nextHeader;
    const more = offset + size < o.fragmentable.length;
    header.writeUInt16BE(offset | (more ? 1 : 0), 2);
    header.writeUInt32BE(o.id, 4);
    out.push(ipv6({ src: o.src, dst: o.dst, nextHeader: 44, hopLimit: o.hopLimit, payload: Buffer.concat([header, o.fragmentable.subarray(offset, offset + size)]) }));
    offset += size;
  }
  if (offset !== o.fragmentable.length) throw new Error(`fragment sizes cover ${offset} of ${o.fragmentable.length} bytes`);
  return out;
}
