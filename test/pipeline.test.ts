/**
 * The pipeline, packet by packet: real frames in, the exact frames out,
 * decoded here by hand and checked field by field.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildScenario, FABRIC_MAC, POD_A_MAC, POD_B_MAC, UNDERLAY_GW_MAC, VROUTER_MAC } from './support/scenario';
import * as f from './support/frames';
import { Drop } from '../src/dataplane/drop-reasons';
import { flowHash } from '../src/dataplane/flow-hash';
import { ipFromString } from '../src/dataplane/protocols/ipv4';

const macText = (b: Buffer, at: number) => [...b.subarray(at, at + 6)].map((x) => x.toString(16).padStart(2, '0')).join(':');
const ipText = (b: Buffer, at: number) => [...b.subarray(at, at + 4)].join('.');

function udpFrom(src: string, dst: string, options: { ttl?: number; srcPort?: number; flags?: number; payload?: Buffer } = {}) {
  const payload = options.payload ?? Buffer.from('hello, pod');
  return f.ethernet(
    VROUTER_MAC,
    src === '10.1.1.3' ? POD_A_MAC : POD_B_MAC,
    0x0800,
    f.ipv4({ src, dst, protocol: 17, ttl: options.ttl, flags: options.flags, payload: f.udp(src, dst, options.srcPort ?? 1234, 80, payload) }),
  );
}

function assertIpChecksumValid(frame: Buffer, ip: number) {
  const headerLength = (frame[ip] & 0x0f) * 4;
  assert.equal(f.internetChecksum(frame.subarray(ip, ip + headerLength)), 0, 'IPv4 header checksum');
}

function assertBalanced(s: ReturnType<typeof buildScenario>) {
  assert.equal(s.pipeline.received + s.dp.generated, s.pipeline.transmitted + s.dp.drops.total());
}

test('local pod to pod: one routed hop, L2 rewritten, payload untouched', () => {
  const s = buildScenario();
  const input = udpFrom('10.1.1.3', '10.1.1.4');
  s.run([[1, input]]);
  const [out] = s.out(2);
  assert.equal(s.out(2).length, 1);
  assert.equal(macText(out, 0), POD_B_MAC);
  assert.equal(macText(out, 6), VROUTER_MAC);
  assert.equal(out[14 + 8], 63, 'TTL decremented once');
  assertIpChecksumValid(out, 14);
  const expected = Buffer.from(input.subarray(14));
  expected[8] = 63;
  expected.writeUInt16BE(out.readUInt16BE(14 + 10), 10);
  assert.deepEqual(out.subarray(14), expected, 'only TTL and header checksum change');
  assert.equal(s.dp.vifs.get(1)!.rxPackets, 1);
  assert.equal(s.dp.vifs.get(2)!.txPackets, 1);
  assert.equal(s.dp.vifs.get(2)!.txBytes, out.length);
  assertBalanced(s);
});

test('pod to remote pod: MPLS over UDP exactly as RFC 7510 and the reference say', () => {
  const s = buildScenario();
  const input = udpFrom('10.1.1.3', '10.1.1.5');
  s.run([[1, input], [1, input]]);
  const [first, second] = s.out(0);
  assert.equal(macText(first, 0), UNDERLAY_GW_MAC);
  assert.equal(macText(first, 6), FABRIC_MAC);
  assert.equal(first.readUInt16BE(12), 0x0800);
  const ip = 14;
  assert.equal(first[ip], 0x45);
  assert.equal(first.readUInt16BE(ip + 2), first.length - 14);
  assert.equal(first.readUInt16BE(ip + 6) & 0x4000, 0, 'DF clear');
  assert.equal(first[ip + 8], 64, 'outer TTL 64');
  assert.equal(first[ip + 9], 17);
  assert.equal(ipText(first, ip + 12), '192.168.0.11');
  assert.equal(ipText(first, ip + 16), '192.168.0.12');
  assertIpChecksumValid(first, ip);
  const udp = ip + 20;
  const srcPort = first.readUInt16BE(udp);
  assert.ok(srcPort >= 49152 && srcPort <= 65535, `entropy port ${srcPort}`);
  assert.equal(second.readUInt16BE(udp), srcPort, 'one flow, one source port');
  assert.equal(first.readUInt16BE(udp + 2), 6635);
  assert.equal(first.readUInt16BE(udp + 4), first.length - 14 - 20);
  assert.equal(first.readUInt16BE(udp + 6), 0, 'zero UDP checksum (RFC 7510)');
  const mpls = first.readUInt32BE(udp + 8);
  assert.equal(mpls >>> 12, 25, 'label');
  assert.equal((mpls >>> 9) & 7, 0, 'EXP');
  assert.equal((mpls >>> 8) & 1, 1, 'bottom of stack');
  const inner = udp + 12;
  assert.equal(mpls & 0xff, first[inner + 8], 'MPLS TTL = inner TTL');
  assert.equal(first[inner + 8], 63, 'inner TTL decremented once');
  assertIpChecksumValid(first, inner);
  assert.deepEqual(first.subarray(inner + 12), input.subarray(14 + 12), 'inner addresses, UDP and payload unchanged');
  assert.notEqual(first.readUInt16BE(ip + 4), second.readUInt16BE(ip + 4), 'outer IP ids differ');
  assertBalanced(s);
});

test('pod to remote pod over GRE: IPv4 proto 47, GRE 0x8847 without flags, then the label', () => {
  const s = buildScenario();
  s.run([[1, udpFrom('10.1.1.3', '10.1.1.6')]]);
  const [out] = s.out(0);
  assert.equal(out[14 + 9], 47);
  assert.equal(ipText(out, 14 + 16), '192.168.0.13');
  assertIpChecksumValid(out, 14);
  assert.equal(out.readUInt16BE(34), 0, 'GRE flags and version');
  assert.equal(out.readUInt16BE(36), 0x8847);
  const mpls = out.readUInt32BE(38);
  assert.equal(mpls >>> 12, 26);
  assert.equal((mpls >>> 8) & 1, 1);
  assert.equal(mpls & 0xff, 63);
  assert.equal(out.readUInt16BE(14 + 2), out.length - 14);
});

test('fabric to pod: decapsulated on 6635, on legacy 51234 and from GRE; inner TTL left alone', () => {
  const s = buildScenario();
  const inner = f.ipv4({ src: '10.1.1.5', dst: '10.1.1.4', protocol: 17, ttl: 63, payload: f.udp('10.1.1.5', '10.1.1.4', 999, 53, Buffer.from('dns?')) });
  const outer = { dstMac: FABRIC_MAC, srcMac: UNDERLAY_GW_MAC, src: '192.168.0.12', dst: '192.168.0.11', label: 18, inner };
  s.run([
    [0, f.mplsOverUdp(outer)],
    [0, f.mplsOverUdp({ ...outer, dstPort: 51234 })],
    [0, f.mplsOverGre(outer)],
  ]);
  assert.equal(s.out(2).length, 3);
  for (const out of s.out(2)) {
    assert.equal(macText(out, 0), POD_B_MAC);
    assert.equal(macText(out, 6), VROUTER_MAC);
    assert.deepEqual(out.subarray(14), inner, 'inner packet delivered byte for byte');
  }
  assertBalanced(s);
});

test('decapsulation checks: S bit, label range and table, MPLS TTL, destination, port', () => {
  const s = buildScenario();
  const inner = f.ipv4({ src: '10.1.1.5', dst: '10.1.1.4', protocol: 17, ttl: 63, payload: f.udp('10.1.1.5', '10.1.1.4', 1, 2, Buffer.alloc(8)) });
  const outer = { dstMac: FABRIC_MAC, srcMac: UNDERLAY_GW_MAC, src: '192.168.0.12', dst: '192.168.0.11', label: 18, inner };
  s.run([
    [0, f.mplsOverUdp({ ...outer, bottom: false })],
    [0, f.mplsOverUdp({ ...outer, label: 3 })],
    [0, f.mplsOverUdp({ ...outer, label: 4000 })],
    [0, f.mplsOverUdp({ ...outer, mplsTtl: 1 })],
    [0, f.mplsOverUdp({ ...outer, dst: '192.168.0.99' })],
    [0, f.mplsOverUdp({ ...outer, dstPort: 4789 })],
  ]);
  assert.deepEqual(s.dp.drops.toJSON(), {
    'not-for-vrouter': 2,
    'invalid-label': 2,
    'invalid-mpls-stack': 1,
    'mpls-ttl-expired': 1,
  });
  assert.equal(s.out(2).length, 0);
  assertBalanced(s);
});

test('ECMP: the same 5-tuple always takes the same member, flows spread evenly', () => {
  const s = buildScenario();
  const flows = 3000;
  const frames: Array<[number, Buffer]> = [];
  for (let i = 0; i < flows; i++) frames.push([1, udpFrom('10.1.1.3', '10.96.0.10', { srcPort: 1024 + i })]);
  for (let batch = 0; batch < flows; batch += 200) s.run(frames.slice(batch, batch + 200));
  for (let batch = 0; batch < flows; batch += 200) s.run(frames.slice(batch, batch + 200));
  const out = s.out(0);
  assert.equal(out.length, 2 * flows);
  const perMember = new Map<string, number>();
  for (let i = 0; i < flows; i++) {
    const first = out[i];
    const again = out[flows + i];
    const member = `${ipText(first, 30)} label ${first.readUInt32BE(42) >>> 12}`;
    assert.equal(`${ipText(again, 30)} label ${again.readUInt32BE(42) >>> 12}`, member, `flow ${i} moved`);
    perMember.set(member, (perMember.get(member) ?? 0) + 1);
  }
  assert.equal(perMember.size, 3);
  for (const [member, count] of perMember) {
    assert.ok(count > flows / 3 * 0.85 && count < flows / 3 * 1.15, `${member}: ${count} of ${flows} flows`);
  }
});

test('ECMP: a removed member leaves its slot empty; flows on other members keep theirs', () => {
  const s = buildScenario();
  const members = s.dp.nexthops.members[20]!;
  const slotOf = (srcPort: number) => s.dp.nexthops.selectSlot(20, flowHash(1, ipFromString('10.1.1.3'), ipFromString('10.96.0.10'), 17, srcPort, 80));
  const before = Array.from({ length: 2000 }, (_, i) => slotOf(1024 + i));
  s.dp.nexthops.removeMember(20, 1);
  assert.deepEqual([...members], [10, -1, 12], 'slot 1 left empty, not compacted');
  before.forEach((slot, i) => {
    const after = slotOf(1024 + i);
    if (slot !== 1) assert.equal(after, slot, `flow ${i} on a surviving member moved`);
    else assert.ok(after === 0 || after === 2, `flow ${i} from the removed member went to slot ${after}`);
  });
  s.dp.nexthops.removeMember(20, 0);
  s.dp.nexthops.removeMember(20, 2);
  s.run([[1, udpFrom('10.1.1.3', '10.96.0.10')]]);
  assert.deepEqual(s.dp.drops.toJSON(), { 'ecmp-no-member': 1 });
});

test('ARP proxy answers for the VN and the gateway, never for the asker or outside', () => {
  const s = buildScenario();
  s.run([
    [1, f.arpRequest(POD_A_MAC, '10.1.1.3', '10.1.1.4')],
    [1, f.arpRequest(POD_A_MAC, '10.1.1.3', '10.1.1.1')],
    [1, f.arpRequest(POD_A_MAC, '10.1.1.3', '10.1.1.3')],
    [1, f.arpRequest(POD_A_MAC, '10.1.1.3', '192.168.7.7')],
    [0, f.arpRequest(UNDERLAY_GW_MAC, '192.168.0.12', '192.168.0.11')],
  ]);
  const replies = s.out(1);
  assert.equal(replies.length, 2);
  replies.forEach((reply, i) => {
    assert.equal(reply.length, 42);
    assert.equal(macText(reply, 0), POD_A_MAC);
    assert.equal(macText(reply, 6), VROUTER_MAC);
    assert.equal(reply.readUInt16BE(12), 0x0806);
    assert.equal(reply.readUInt16BE(20), 2, 'reply');
    assert.equal(macText(reply, 22), VROUTER_MAC);
    assert.equal(ipText(reply, 28), ['10.1.1.4', '10.1.1.1'][i]);
    assert.equal(macText(reply, 32), POD_A_MAC);
    assert.equal(ipText(reply, 38), '10.1.1.3');
  });
  assert.equal(s.out(0).length, 0, 'ARP never crosses to the fabric');
  assert.deepEqual(s.dp.drops.toJSON(), { 'arp-not-proxied': 3 });
});

test('TTL 1 expires with an ICMP time-exceeded from the gateway quoting the packet', () => {
  const s = buildScenario();
  const input = udpFrom('10.1.1.3', '10.1.1.5', { ttl: 1 });
  s.run([[1, input], [1, udpFrom('10.1.1.3', '10.1.1.5', { ttl: 2 })]]);
  const [icmp] = s.out(1);
  assert.equal(macText(icmp, 0), POD_A_MAC);
  assert.equal(ipText(icmp, 14 + 12), '10.1.1.1');
  assert.equal(ipText(icmp, 14 + 16), '10.1.1.3');
  assert.equal(icmp[14 + 9], 1);
  assertIpChecksumValid(icmp, 14);
  assert.equal(icmp[34], 11);
  assert.equal(icmp[35], 0);
  assert.equal(f.internetChecksum(icmp.subarray(34)), 0, 'ICMP checksum');
  assert.deepEqual(icmp.subarray(42), input.subarray(14, 14 + 28), 'quotes the IP header and 8 bytes');
  const [forwarded] = s.out(0);
  assert.equal(forwarded[46 + 8], 1, 'TTL 2 leaves with TTL 1');
  assert.deepEqual(s.dp.drops.toJSON(), { 'ttl-expired': 1 });
  assert.equal(s.dp.generated, 1);
  assertBalanced(s);
});

test('too big for the underlay with DF set: ICMP fragmentation-needed with the inner MTU', () => {
  const s = buildScenario();
  const big = udpFrom('10.1.1.3', '10.1.1.5', { flags: 0x4000, payload: Buffer.alloc(1500 - 28, 7) });
  s.run([[1, big]]);
  const [icmp] = s.out(1);
  assert.equal(icmp[34], 3);
  assert.equal(icmp[35], 4);
  assert.equal(icmp.readUInt16BE(40), 1500 - 32, 'next-hop MTU leaves room for IP + UDP + MPLS');
  assert.equal(f.internetChecksum(icmp.subarray(34)), 0);
  assert.deepEqual(s.dp.drops.toJSON(), { 'fragment-needed': 1 });
});

test('malformed frames are dropped under their named reason, never thrown', () => {
  const s = buildScenario();
  const good = udpFrom('10.1.1.3', '10.1.1.4');
  const badIhl = Buffer.from(good);
  badIhl[14] = 0x44;
  const badChecksum = Buffer.from(good);
  badChecksum[14 + 10] ^= 0xff;
  const tooLong = Buffer.from(good);
  tooLong.writeUInt16BE(1400, 14 + 2);
  tooLong.writeUInt16BE(0, 14 + 10);
  tooLong.writeUInt16BE(f.internetChecksum(tooLong.subarray(14, 34)), 14 + 10);
  s.run([
    [1, good.subarray(0, 10)],
    [1, good.subarray(0, 30)],
    [1, badIhl],
    [1, badChecksum],
    [1, tooLong],
    // IPv6 with a hop-by-hop extension header cut short (version 6, payload 0, next header 0).
    [1, f.ethernet(VROUTER_MAC, POD_A_MAC, 0x86dd, Buffer.concat([Buffer.from([0x60]), Buffer.alloc(39)]))],
    [1, f.ethernet(VROUTER_MAC, POD_A_MAC, 0x88cc, Buffer.alloc(40))],
    [1, udpFrom('10.1.1.3', '172.16.0.1')],
    [7, good],
  ]);
  assert.deepEqual(s.dp.drops.toJSON(), {
    truncated: 3,
    'unknown-ethertype': 1,
    'ipv6-chain-truncated': 1,
    'bad-ip-header': 1,
    'bad-checksum': 1,
    'invalid-vif': 1,
    'no-route': 1,
  });
  assert.equal(s.pipeline.transmitted, 0);
  assertBalanced(s);
});

test('802.1Q-tagged frames and IPv4 options are forwarded', () => {
  const s = buildScenario();
  const tagged = f.ethernet(VROUTER_MAC, POD_A_MAC, 0x0800, f.ipv4({ src: '10.1.1.3', dst: '10.1.1.4', protocol: 17, payload: f.udp('10.1.1.3', '10.1.1.4', 1, 2, Buffer.alloc(4)) }), 100);
  const withOptions = f.ethernet(
    VROUTER_MAC,
    POD_A_MAC,
    0x0800,
    f.ipv4({ src: '10.1.1.3', dst: '10.1.1.5', protocol: 17, options: Buffer.from([0x94, 0x04, 0, 0]), payload: f.udp('10.1.1.3', '10.1.1.5', 1, 2, Buffer.alloc(4)) }),
  );
  s.run([[1, tagged], [1, withOptions]]);
  const [local] = s.out(2);
  assert.equal(local.readUInt16BE(12), 0x0800, 'tag removed towards the pod');
  assert.deepEqual(local.subarray(14 + 12), tagged.subarray(18 + 12), 'addresses, UDP and payload kept');
  assertIpChecksumValid(local, 14);
  const [remote] = s.out(0);
  assert.equal(remote[46] & 0x0f, 6, 'inner IHL 6 kept');
  assertIpChecksumValid(remote, 46);
});

test('Ethernet padding of short frames is not forwarded', () => {
  const s = buildScenario();
  const short = udpFrom('10.1.1.3', '10.1.1.4', { payload: Buffer.alloc(2) });
  const padded = Buffer.concat([short, Buffer.alloc(60 - short.length)]);
  s.run([[1, padded]]);
  assert.equal(s.out(2)[0].length, short.length);
});

test('packets are dropped by discard nexthops and counted', () => {
  const s = buildScenario();
  s.dp.setNexthop(5, { kind: 'discard' });
  s.dp.addRoute(1, ipFromString('10.1.1.0'), 24, 5);
  s.run([[1, udpFrom('10.1.1.3', '10.1.1.77')], [1, udpFrom('10.1.1.3', '10.1.1.4')]]);
  assert.equal(s.out(2).length, 1, 'the /32 still wins over the /24');
  assert.equal(s.dp.drops.counts[Drop.discard], 1);
});

test('trace describes every step of the real path', () => {
  const s = buildScenario();
  const lines: string[] = [];
  s.pipeline.trace = (line) => lines.push(line);
  s.run([[1, udpFrom('10.1.1.3', '10.96.0.10')]]);
  const text = lines.join('\n');
  for (const step of ['ethernet-input', 'ipv4-input', 'ipv4-lookup', 'ttl-decrement', 'nexthop', 'tunnel-encap', 'transmit']) {
    assert.match(text, new RegExp(`^  ${step}: `, 'm'));
  }
  assert.match(text, /matched 10\.96\.0\.10\/32 -> nh 20/);
  assert.match(text, /ecmp member slot \d/);
  assert.match(text, /mpls-over-(udp|gre) 192\.168\.0\.11 > 192\.168\.0\.1[234] label 2[567]/);
});

test('too big for the underlay with DF clear: the inner packet is fragmented, then each piece encapsulated', () => {
  const s = buildScenario();
  const payload = Buffer.alloc(1800); // a frame still fits a packet-pool slot
  for (let i = 0; i < payload.length; i++) payload[i] = i & 0xff;
  const big = udpFrom('10.1.1.3', '10.1.1.5', { payload });
  s.run([[1, big]]);
  const frames = s.out(0);
  assert.equal(frames.length, 2);
  const inner = 14 + 20 + 8 + 4;
  const pieces: Buffer[] = [];
  frames.forEach((frame, i) => {
    assert.ok(frame.readUInt16BE(14 + 2) <= 1500, `outer packet ${i} fits the underlay MTU`);
    assertIpChecksumValid(frame, 14);
    assertIpChecksumValid(frame, inner);
    const flags = frame.readUInt16BE(inner + 6);
    assert.equal((flags & 0x2000) !== 0, i < frames.length - 1, `MF on all but the last (fragment ${i})`);
    assert.equal((flags & 0x1fff) * 8, pieces.reduce((sum, piece) => sum + piece.length, 0), `offset of fragment ${i}`);
    assert.equal(frame.readUInt32BE(42) >>> 12, 25, 'each piece carries the label');
    pieces.push(frame.subarray(inner + 20, inner + frame.readUInt16BE(inner + 2)));
  });
  assert.deepEqual(Buffer.concat(pieces), big.subarray(14 + 20), 'the pieces reassemble to the UDP datagram');
  assert.equal(s.dp.generated, 1);
  assertBalanced(s);
});
