/**
 * Frame builders for tests: plain, allocation-happy code written apart from
 * the packet path, computing every checksum from scratch.
 */
export function mac(text: string): Buffer {
  return Buffer.from(text.split(':').map((part) => parseInt(part, 16)));
}

export function ip(text: string): Buffer {
  return Buffer.from(text.split('.').map(Number));
}

export function internetChecksum(bytes: Buffer): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i += 2) sum += (bytes[i] << 8) | (i + 1 < bytes.length ? bytes[i + 1] : 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

export function ethernet(dst: string, src: string, etherType: number, payload: Buffer, vlan?: number): Buffer {
  const tag = vlan === undefined ? Buffer.alloc(0) : Buffer.from([0x81, 0x00, vlan >> 8, vlan & 0xff]);
  const type = Buffer.from([etherType >> 8, etherType & 0xff]);
  return Buffer.concat([mac(dst), mac(src), tag, type, payload]);
}

export interface Ipv4Options {
  src: string;
  dst: string;
  protocol: number;
  payload: Buffer;
  ttl?: number;
  id?: number;
  flags?: number; // DF 0x4000, MF 0x2000 (plus the offset in 8-byte units)
  tos?: number;
  options?: Buffer;
}

export function ipv4(o: Ipv4Options): Buffer {
  const options = o.options ?? Buffer.alloc(0);
  const header = Buffer.alloc(20 + options.length);
  header[0] = 0x40 | (header.length / 4);
  header[1] = o.tos ?? 0;
  header.writeUInt16BE(header.length + o.payload.length, 2);
  header.writeUInt16BE(o.id ?? 1, 4);
  header.writeUInt16BE(o.flags ?? 0, 6);
  header[8] = o.ttl ?? 64;
  header[9] = o.protocol;
  ip(o.src).copy(header, 12);
  ip(o.dst).copy(header, 16);
  options.copy(header, 20);
  header.writeUInt16BE(internetChecksum(header), 10);
  return Buffer.concat([header, o.payload]);
}

function pseudoHeaderSum(src: string, dst: string, protocol: number, segment: Buffer): number {
  const pseudo = Buffer.concat([ip(src), ip(dst), Buffer.from([0, protocol, segment.length >> 8, segment.length & 0xff]), segment]);
  return internetChecksum(pseudo);
}

export function udp(src: string, dst: string, srcPort: number, dstPort: number, payload: Buffer): Buffer {
  const segment = Buffer.alloc(8 + payload.length);
  segment.writeUInt16BE(srcPort, 0);
  segment.writeUInt16BE(dstPort, 2);
  segment.writeUInt16BE(segment.length, 4);
  payload.copy(segment, 8);
  segment.writeUInt16BE(pseudoHeaderSum(src, dst, 17, segment) || 0xffff, 6);
  return segment;
}

export function tcp(src: string, dst: string, srcPort: number, dstPort: number, flags: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const segment = Buffer.alloc(20 + payload.length);
  segment.writeUInt16BE(srcPort, 0);
  segment.writeUInt16BE(dstPort, 2);
  segment.writeUInt32BE(1000, 4);
  segment[12] = 5 << 4;
  segment[13] = flags;
  segment.writeUInt16BE(65535, 14);
  payload.copy(segment, 20);
  segment.writeUInt16BE(pseudoHeaderSum(src, dst, 6, segment), 16);
  return segment;
}

export function icmpEcho(type: 0 | 8, id: number, sequence: number, payload = Buffer.alloc(16, 0xab)): Buffer {
  const message = Buffer.alloc(8 + payload.length);
  message[0] = type;
  message.writeUInt16BE(id, 4);
  message.writeUInt16BE(sequence, 6);
  payload.copy(message, 8);
  message.writeUInt16BE(internetChecksum(message), 2);
  return message;
}

export function arpRequest(senderMac: string, senderIp: string, targetIp: string): Buffer {
  const arp = Buffer.alloc(28);
  arp.writeUInt16BE(1, 0);
  arp.writeUInt16BE(0x0800, 2);
  arp[4] = 6;
  arp[5] = 4;
  arp.writeUInt16BE(1, 6);
  mac(senderMac).copy(arp, 8);
  ip(senderIp).copy(arp, 14);
  ip(targetIp).copy(arp, 24);
  return ethernet('ff:ff:ff:ff:ff:ff', senderMac, 0x0806, arp);
}

export function mplsEntry(label: number, ttl: number, bottom = true): Buffer {
  const entry = Buffer.alloc(4);
  entry.writeUInt32BE(((label << 12) | (bottom ? 0x100 : 0) | ttl) >>> 0);
  return entry;
}

/** A fabric frame carrying `inner` (an IPv4 packet) as MPLS over UDP. */
export function mplsOverUdp(o: {
  dstMac: string;
  srcMac: string;
  src: string;
  dst: string;
  srcPort?: number;
  dstPort?: number;
  label: number;
  mplsTtl?: number;
  bottom?: boolean;
  inner: Buffer;
}): Buffer {
  const payload = Buffer.concat([mplsEntry(o.label, o.mplsTtl ?? 63, o.bottom ?? true), o.inner]);
  const datagram = Buffer.alloc(8 + payload.length);
  datagram.writeUInt16BE(o.srcPort ?? 50000, 0);
  datagram.writeUInt16BE(o.dstPort ?? 6635, 2);
  datagram.writeUInt16BE(datagram.length, 4);
  payload.copy(datagram, 8);
  return ethernet(o.dstMac, o.srcMac, 0x0800, ipv4({ src: o.src, dst: o.dst, protocol: 17, payload: datagram }));
}

/** A fabric frame carrying `inner` as MPLS over GRE. */
export function mplsOverGre(o: { dstMac: string; srcMac: string; src: string; dst: string; label: number; mplsTtl?: number; inner: Buffer }): Buffer {
  const payload = Buffer.concat([Buffer.from([0, 0, 0x88, 0x47]), mplsEntry(o.label, o.mplsTtl ?? 63), o.inner]);
  return ethernet(o.dstMac, o.srcMac, 0x0800, ipv4({ src: o.src, dst: o.dst, protocol: 47, payload }));
}
