/**
 * IPv6 extension headers and fragments through the pipeline: real frames
 * in, the exact frames out. The chain is walked to the upper-layer header
 * for the flow key; fragments follow their first fragment's flow (member,
 * entropy port, NAT, policy) in and out of order, as the reference's cases
 * in tungstenfabric/tf-vrouter@432a8e0c tests/test_fragmentation.py do for
 * IPv4, with the IPv6 key of dp-core/vr_fragment.c vr_v6_fragment_add
 * (VRF, source, destination, identification).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FABRIC_MAC, POD_A_MAC, POD_B_MAC, UNDERLAY_GW_MAC, VROUTER_MAC } from './support/scenario';
import * as f from './support/frames';
import * as f6 from './support/frames6';
import { Drop } from '../src/dataplane/drop-reasons';
import { flowHash6 } from '../src/dataplane/flow-hash';
import { ip6FromString } from '../src/dataplane/protocols/ipv6';
import { MAX_EXTENSION_HEADERS } from '../src/dataplane/steps/ipv6-input';
import { FRAGMENT_RECORDS_PER_VIF, HELD_FRAGMENTS_PER_VIF } from '../src/dataplane/fragment-table';
import { CLUSTER6, POD_A6, POD_B6, POD_C6, REMOTE6, SERVICE6, buildScenario6 } from './support/scenario6';

const HOP_BY_HOP = 0;
const ROUTING = 43;
const FRAGMENT = 44;
const DESTINATION_OPTIONS = 60;
const UDP = 17;
const ICMPV6 = 58;

type Scenario = ReturnType<typeof buildScenario6>;

function assertBalanced(s: Scenario) {
  assert.equal(s.pipeline.received + s.dp.generated, s.pipeline.transmitted + s.dp.drops.total() + s.pipeline.held);
}

const fromPod = (mac: string, packet: Buffer) => f6.frame6(mac, VROUTER_MAC, packet);
const fromNode2 = (inner: Buffer) =>
  f.mplsOverUdp({ dstMac: FABRIC_MAC, srcMac: UNDERLAY_GW_MAC, src: '192.168.0.12', dst: '192.168.0.11', label: 18, inner });

/** The input packet as it leaves after one routed hop (hop limit 63). */
function afterHop(frame: Buffer): Buffer {
  const packet = Buffer.from(frame.subarray(14));
  packet[7]--;
  return packet;
}

/** An inner IPv6 packet out of an MPLS-over-UDP or -GRE frame, with its tunnel (node, entropy port or -1 for GRE, label). */
function tunnelled(frame: Buffer): { node: string; port: number; label: number; inner: Buffer } {
  const gre = frame[14 + 9] === 47;
  const mpls = gre ? 38 : 42;
  return {
    node: [...frame.subarray(30, 34)].join('.'),
    port: gre ? -1 : frame.readUInt16BE(34),
    label: frame.readUInt32BE(mpls) >>> 12,
    inner: frame.subarray(mpls + 4),
  };
}

/** The fragment's identification and data of an IPv6 packet whose first header is a fragment header. */
function fragmentOf(packet: Buffer): { id: number; offset: number; data: Buffer } {
  assert.equal(packet[6], FRAGMENT);
  return { id: packet.readUInt32BE(44), offset: packet.readUInt16BE(42) & 0xfff8, data: packet.subarray(48, 40 + packet.readUInt16BE(4)) };
}

/** Reassembles fragments (any order) and checks the upper-layer checksum of the datagram over its addresses. */
function assertReassembledChecksum(packets: Buffer[]) {
  const sorted = [...packets].sort((a, b) => fragmentOf(a).offset - fragmentOf(b).offset);
  const segment = Buffer.concat(sorted.map((packet) => fragmentOf(packet).data));
  const first = sorted[0];
  assert.equal(f6.upperChecksum6(first.subarray(8, 24), first.subarray(24, 40), first[40], segment), 0, 'the reassembled datagram checksum');
}

test('the extension-header chain is walked: UDP behind hop-by-hop, destination options and routing headers is a UDP flow', () => {
  const s = buildScenario6();
  const segment = f6.udp6(POD_A6, POD_B6, 1234, 80, Buffer.from('behind three headers'));
  const chain = Buffer.concat([f6.extensionHeader(DESTINATION_OPTIONS), f6.extensionHeader(ROUTING, 1), f6.extensionHeader(UDP, 0, true), segment]);
  const input = fromPod(POD_A_MAC, f6.ipv6({ src: POD_A6, dst: POD_B6, nextHeader: HOP_BY_HOP, payload: chain }));
  // The echo behind destination options is keyed by its id; the reply (no extension header) is the same pair.
  const echo = fromPod(POD_A_MAC, f6.ipv6({ src: POD_A6, dst: POD_B6, nextHeader: DESTINATION_OPTIONS, payload: Buffer.concat([f6.extensionHeader(ICMPV6, 2), f6.echo6(POD_A6, POD_B6, 128, 0x77, 1)]) }));
  const reply = fromPod(POD_B_MAC, f6.ipv6({ src: POD_B6, dst: POD_A6, nextHeader: ICMPV6, payload: f6.echo6(POD_B6, POD_A6, 129, 0x77, 1) }));
  s.run([[1, input], [1, echo], [2, reply]]);
  const out = s.out(2);
  assert.deepEqual(out[0].subarray(14), afterHop(input), 'the chain forwarded untouched, hop limit 63');
  assert.deepEqual(out[1].subarray(14), afterHop(echo));
  assert.deepEqual(s.out(1)[0].subarray(14), afterHop(reply));
  const [udpForward, , echoForward, echoReverse] = s.dp.flows.entries();
  assert.deepEqual([udpForward.protocol, udpForward.srcPort, udpForward.dstPort], [UDP, 1234, 80], 'the key: the upper-layer protocol and its ports');
  assert.deepEqual([echoForward.protocol, echoForward.srcPort, echoForward.dstPort, echoForward.packets, echoReverse.packets], [ICMPV6, 0x77, 0x77, 1, 1]);
  assert.equal(s.dp.flows.activePairs, 2);
  assertBalanced(s);
});

test('to a remote pod, a datagram behind destination options leaves with the entropy port of its 5-tuple', () => {
  const s = buildScenario6();
  const segment = f6.udp6(POD_A6, REMOTE6, 4321, 53, Buffer.from('options first'));
  const input = fromPod(POD_A_MAC, f6.ipv6({ src: POD_A6, dst: REMOTE6, nextHeader: DESTINATION_OPTIONS, payload: Buffer.concat([f6.extensionHeader(UDP), segment]) }));
  s.run([[1, input]]);
  const out = tunnelled(s.out(0)[0]);
  const hash = flowHash6(1, input, 14 + 8, 14 + 24, UDP, 4321, 53);
  assert.equal(out.port, 49152 | (hash & 0x3fff));
  assert.deepEqual(out.inner, afterHop(input));
  assertBalanced(s);
});

test('chains that cannot be followed are dropped under their reasons, never thrown; MLD is multicast, not forwarded', () => {
  const s = buildScenario6();
  const udp = f6.udp6(POD_A6, POD_B6, 1, 2, Buffer.from('x'));
  const packet = (nextHeader: number, payload: Buffer) => fromPod(POD_A_MAC, f6.ipv6({ src: POD_A6, dst: POD_B6, nextHeader, payload }));
  const cutShort = packet(DESTINATION_OPTIONS, Buffer.concat([f6.extensionHeader(UDP, 2)]).subarray(0, 16)); // says 24 bytes, has 16
  const tooLong = packet(DESTINATION_OPTIONS, Buffer.concat([
    ...Array.from({ length: MAX_EXTENSION_HEADERS }, () => f6.extensionHeader(DESTINATION_OPTIONS)),
    f6.extensionHeader(UDP),
    udp,
  ]));
  const longest = packet(DESTINATION_OPTIONS, Buffer.concat([
    ...Array.from({ length: MAX_EXTENSION_HEADERS - 1 }, () => f6.extensionHeader(DESTINATION_OPTIONS)),
    f6.extensionHeader(UDP),
    udp,
  ]));
  const hopByHopSecond = packet(DESTINATION_OPTIONS, Buffer.concat([f6.extensionHeader(HOP_BY_HOP), f6.extensionHeader(UDP), udp]));
  const fragmentHeader = (next: number, field: number) => Buffer.from([next, 0, field >>> 8, field & 0xff, 0, 0, 0, 9]);
  const twoFragmentHeaders = packet(FRAGMENT, Buffer.concat([fragmentHeader(FRAGMENT, 1), fragmentHeader(UDP, 1), udp, Buffer.alloc(7)]));
  const oddSizedFragment = packet(FRAGMENT, Buffer.concat([fragmentHeader(UDP, 1), udp])); // M set, 9 bytes
  const pastTheEnd = packet(FRAGMENT, Buffer.concat([fragmentHeader(UDP, 0xfff8), Buffer.alloc(16)])); // offset 65528 + 16
  // A first fragment whose UDP header is in the second fragment (RFC 7112 5).
  const headerInLater = packet(FRAGMENT, Buffer.concat([fragmentHeader(DESTINATION_OPTIONS, 1), f6.extensionHeader(UDP)]));
  const esp = packet(50, Buffer.alloc(16));
  const ah = packet(DESTINATION_OPTIONS, Buffer.concat([f6.extensionHeader(51), Buffer.alloc(16)]));
  // An MLDv2 report (RFC 3810 5.2): hop-by-hop with router alert, from the pod's link-local address, to ff02::16.
  const hopByHopAlert = Buffer.from([ICMPV6, 0, 5, 2, 0, 0, 1, 0]);
  const mld = fromPod(POD_A_MAC, f6.ipv6({ src: 'fe80::a', dst: 'ff02::16', hopLimit: 1, nextHeader: HOP_BY_HOP, payload: Buffer.concat([hopByHopAlert, f6.icmp6('fe80::a', 'ff02::16', 143, 0, Buffer.alloc(4))]) }));
  s.run([[1, cutShort], [1, tooLong], [1, longest], [1, hopByHopSecond], [1, twoFragmentHeaders], [1, oddSizedFragment], [1, pastTheEnd], [1, headerInLater], [1, esp], [1, ah], [1, mld]]);
  assert.deepEqual(s.dp.drops.toJSON(), {
    'ipv6-unsupported': 2,
    'ipv6-chain-truncated': 2,
    'ipv6-chain-too-long': 1,
    'ipv6-bad-extension-header': 4,
    'multicast-not-forwarded': 1,
  });
  assert.equal(s.out(2).length, 1, `a chain of ${MAX_EXTENSION_HEADERS} headers is forwarded`);
  assert.deepEqual(s.out(2)[0].subarray(14), afterHop(longest));
  assert.equal(s.out(1).length, 0, 'no error sent about any of them');
  assertBalanced(s);
});

/** A UDP datagram of `bytes` payload bytes cut into fragments of `sizes` (of the UDP segment). */
function datagram(src: string, dst: string, srcPort: number, dstPort: number, id: number, sizes: number[], hopLimit = 64): Buffer[] {
  const payload = Buffer.alloc(sizes.reduce((a, b) => a + b) - 8);
  for (let i = 0; i < payload.length; i++) payload[i] = (id + i) & 0xff;
  return f6.fragments6({ src, dst, nextHeader: UDP, fragmentable: f6.udp6(src, dst, srcPort, dstPort, payload), id, sizes, hopLimit });
}

test('fragments to an ECMP ClusterIP, in order and head last, leave with their flow: one member, label and entropy port', () => {
  const s = buildScenario6();
  const flows = 24;
  const sent = new Map<number, Buffer[]>();
  for (let i = 0; i < flows; i++) {
    const pieces = datagram(POD_A6, CLUSTER6, 3000 + i, 80, 0x60000 + i, [48, 48, 20]).map((packet) => fromPod(POD_A_MAC, packet));
    sent.set(0x60000 + i, pieces);
    // Even flows head first, odd ones head last: tail, middle, then the head releases both.
    s.run((i % 2 === 0 ? pieces : [pieces[2], pieces[1], pieces[0]]).map((frame) => [1, frame] as [number, Buffer]));
    assert.equal(s.out(0).length, (i + 1) * 3, `flow ${i}: every fragment out once its head came`);
  }
  assert.equal(s.pipeline.held, 0);
  const fragmentsOut = s.out(0).map(tunnelled);
  assert.equal(fragmentsOut.length, flows * 3);
  // A whole datagram of each flow afterwards: it hashes its ports, so it shows the flow's member and port.
  for (let i = 0; i < flows; i++) s.run([[1, fromPod(POD_A_MAC, f6.ipv6({ src: POD_A6, dst: CLUSTER6, nextHeader: UDP, payload: f6.udp6(POD_A6, CLUSTER6, 3000 + i, 80, Buffer.from('whole')) }))]]);
  const wholeOut = s.out(0).slice(flows * 3).map(tunnelled);
  const members = new Set<string>();
  for (let i = 0; i < flows; i++) {
    const id = 0x60000 + i;
    const ofFlow = fragmentsOut.filter((out) => fragmentOf(out.inner).id === id);
    const order = i % 2 === 0 ? [0, 1, 2] : [0, 2, 1];
    assert.deepEqual(ofFlow.map((out) => out.inner), order.map((k) => afterHop(sent.get(id)![k])), `flow ${i}: every fragment, head first then in arrival order`);
    for (const out of ofFlow) {
      assert.deepEqual([out.node, out.port, out.label], [wholeOut[i].node, wholeOut[i].port, wholeOut[i].label], `flow ${i}: the member and entropy port of its flow`);
    }
    members.add(wholeOut[i].node);
  }
  assert.ok(members.size >= 2, `flows spread over members (${[...members].join(', ')})`);
  assert.equal(s.dp.flows.activePairs, flows);
  assert.deepEqual(s.dp.drops.toJSON(), {});
  assertBalanced(s);
});

test('fragments to a remote pod without ECMP: the port of the flow, whichever fragment comes first', () => {
  const s = buildScenario6();
  const pieces = datagram(POD_A6, REMOTE6, 5555, 53, 0xabcdef01, [64, 64, 64, 9]).map((packet) => fromPod(POD_A_MAC, packet));
  s.run([[1, pieces[3]], [1, pieces[1]]]);
  assert.equal(s.out(0).length, 0);
  assert.equal(s.pipeline.held, 2);
  s.run([[1, pieces[0]], [1, pieces[2]]]);
  assert.equal(s.pipeline.held, 0);
  const hash = flowHash6(1, pieces[0], 14 + 8, 14 + 24, UDP, 5555, 53);
  const out = s.out(0).map(tunnelled);
  assert.deepEqual(out.map((o) => o.inner), [0, 3, 1, 2].map((k) => afterHop(pieces[k])));
  for (const o of out) assert.deepEqual([o.node, o.port, o.label], ['192.168.0.12', 49152 | (hash & 0x3fff), 25]);
  assertReassembledChecksum(out.map((o) => o.inner));
  assertBalanced(s);
});

test('through an IPv6 floating IP: the first fragment gets DNAT and DPAT, later ones the address only; the answer SNAT', () => {
  const s = buildScenario6();
  // From node2 to the service fd00:96::20:5001, backed by pod-b:8080; one datagram head first, one head last.
  const query = datagram(REMOTE6, SERVICE6, 4000, 5001, 7, [56, 56, 30], 63);
  const late = datagram(REMOTE6, SERVICE6, 4000, 5001, 8, [56, 40], 63);
  s.run([...query.map((inner) => [0, fromNode2(inner)] as [number, Buffer]), [0, fromNode2(late[1])], [0, fromNode2(late[0])]]);
  const delivered = s.out(2).map((frame) => Buffer.from(frame.subarray(14)));
  assert.equal(delivered.length, 5);
  for (const packet of delivered) {
    assert.equal(f6.ip6Text(packet, 8), f6.ip6Text(f6.ip6(REMOTE6), 0));
    assert.equal(f6.ip6Text(packet, 24), f6.ip6Text(f6.ip6(POD_B6), 0), 'DNAT on every fragment');
  }
  assert.equal(delivered[0].readUInt16BE(48 + 2), 8080, 'DPAT on the first fragment');
  for (const [out, sentPacket] of [[delivered[1], query[1]], [delivered[2], query[2]], [delivered[4], late[1]]]) {
    assert.deepEqual(fragmentOf(out).data, fragmentOf(sentPacket).data, 'a later fragment: its data untouched');
  }
  assertReassembledChecksum(delivered.slice(0, 3));
  assertReassembledChecksum(delivered.slice(3));
  assert.equal(s.dp.flows.activePairs, 1, 'both datagrams in the one NAT flow');

  // pod-b's answer, fragmented: every fragment leaves from the service address, the first from port 5001.
  const answer = datagram(POD_B6, REMOTE6, 8080, 4000, 9, [48, 48, 8]).map((packet) => fromPod(POD_B_MAC, packet));
  s.run([[2, answer[2]], [2, answer[0]], [2, answer[1]]]);
  const out = s.out(0).map(tunnelled);
  assert.equal(out.length, 3);
  for (const o of out) {
    assert.equal(f6.ip6Text(o.inner, 8), f6.ip6Text(f6.ip6(SERVICE6), 0), 'SNAT on every fragment');
    assert.deepEqual([o.node, o.label, o.port], [out[0].node, 25, out[0].port]);
  }
  assert.equal(firstFragmentSourcePort(out[0].inner), 5001, 'SPAT on the first fragment');
  assertReassembledChecksum(out.map((o) => o.inner));
  assert.deepEqual(s.dp.drops.toJSON(), {});
  assertBalanced(s);
});

/** The UDP source port of a first fragment (behind its fragment header). */
function firstFragmentSourcePort(packet: Buffer): number {
  return packet.readUInt16BE(48);
}

test('fragments of a denied flow are dropped with their first fragment, held ones included; an overlap drops its datagram', () => {
  const s = buildScenario6();
  s.dp.addRoute6(1, ip6FromString(POD_C6), 128, 3);
  const first = datagram(POD_A6, POD_C6, 1000, 80, 21, [32, 32, 8]).map((packet) => fromPod(POD_A_MAC, packet));
  const second = datagram(POD_A6, POD_C6, 1001, 80, 22, [32, 32, 8]).map((packet) => fromPod(POD_A_MAC, packet));
  s.run([...first.map((frame) => [1, frame] as [number, Buffer]), [1, second[2]], [1, second[1]], [1, second[0]]]);
  assert.equal(s.dp.drops.counts[Drop['flow-action-drop']], 6);
  assert.equal(s.out(3).length, 0);
  assert.equal(s.pipeline.held, 0);
  // Allowed to pod-b: a fragment overlapping the head is dropped, and the rest of its datagram with it (RFC 5722).
  const pieces = datagram(POD_A6, POD_B6, 1002, 80, 23, [32, 32, 8]).map((packet) => fromPod(POD_A_MAC, packet));
  const overlapping = fromPod(POD_A_MAC, f6.fragments6({ src: POD_A6, dst: POD_B6, nextHeader: UDP, fragmentable: Buffer.alloc(24 + 16), id: 23, sizes: [24, 16] })[1]);
  s.run([[1, pieces[0]], [1, overlapping], [1, pieces[1]], [1, pieces[2]]]);
  assert.equal(s.dp.drops.counts[Drop['fragment-overlap']], 3);
  assert.deepEqual(s.out(2).map((frame) => frame.subarray(14)), [pieces[0]].map(afterHop), 'only the head, which left before the overlap');
  assertBalanced(s);
});

test('a later fragment whose head never comes is held, counted against its vif, and times out', () => {
  const s = buildScenario6();
  const pieces = datagram(POD_A6, POD_B6, 1003, 80, 31, [32, 8]).map((packet) => fromPod(POD_A_MAC, packet));
  s.run([[1, pieces[1]]]);
  assert.equal(s.pipeline.held, 1);
  assert.equal(s.pipeline.fragments.recordsOf(1), 1);
  s.pipeline.advanceClock(10);
  assert.equal(s.pipeline.held, 0);
  assert.equal(s.dp.drops.counts[Drop['fragment-timeout']], 1);
  assert.equal(s.out(2).length, 0);
  assertBalanced(s);
});

test('IPv6 fragments share the per-vif bounds of the fragment table: held fragments and records', () => {
  const s = buildScenario6();
  // Later fragments of 17 datagrams from pod-a whose heads never come: its 16 are held, the 17th dropped.
  const laterOf = (src: string, dst: string, mac: string, id: number) => fromPod(mac, datagram(src, dst, 2000, 80, id, [32, 8])[1]);
  s.run(Array.from({ length: HELD_FRAGMENTS_PER_VIF + 1 }, (_, i) => [1, laterOf(POD_A6, POD_B6, POD_A_MAC, 0x7000 + i)] as [number, Buffer]));
  assert.equal(s.pipeline.fragments.heldOf(1), HELD_FRAGMENTS_PER_VIF);
  assert.equal(s.dp.drops.counts[Drop['fragment-hold-vif-limit']], 1);
  // pod-b still has its own share.
  s.run([[2, laterOf(POD_B6, POD_A6, POD_B_MAC, 0x7100)]]);
  assert.equal(s.pipeline.fragments.heldOf(2), 1);
  // Heads of datagrams whose later fragments never come: pod-b's records stop at its share (one is its held fragment's).
  const headOf = (id: number) => fromPod(POD_B_MAC, datagram(POD_B6, POD_A6, 3000 + id, 80, id, [32, 8])[0]);
  s.run(Array.from({ length: FRAGMENT_RECORDS_PER_VIF + 1 }, (_, i) => [2, headOf(0x7200 + i)] as [number, Buffer]));
  assert.equal(s.pipeline.fragments.recordsOf(2), FRAGMENT_RECORDS_PER_VIF);
  assert.equal(s.dp.drops.counts[Drop['fragment-vif-limit']], 2, 'the two heads beyond the share');
  assertBalanced(s);
});

test('an ICMPv6 error quoting a first fragment belongs to its flow (through NAT too); quoting a later one, to none', () => {
  const s = buildScenario6();
  // pod-a's fragments to node2; node2 reports reassembly time exceeded (3/1), quoting the first fragment.
  const pieces = datagram(POD_A6, REMOTE6, 6001, 53, 41, [32, 16]);
  s.run(pieces.map((packet) => [1, fromPod(POD_A_MAC, packet)] as [number, Buffer]));
  const quote = (packet: Buffer) => Buffer.concat([Buffer.alloc(4), afterHop(fromPod(POD_A_MAC, packet))]);
  const error = (quoted: Buffer) => {
    const packet = f6.ipv6({ src: REMOTE6, dst: POD_A6, nextHeader: ICMPV6, hopLimit: 63, payload: f6.icmp6(REMOTE6, POD_A6, 3, 1, quoted) });
    return f.mplsOverUdp({ dstMac: FABRIC_MAC, srcMac: UNDERLAY_GW_MAC, src: '192.168.0.12', dst: '192.168.0.11', label: 17, inner: packet });
  };
  s.run([[0, error(quote(pieces[0]))], [0, error(quote(pieces[1]))]]);
  assert.equal(s.out(1).length, 1, 'the error about the first fragment reaches pod-a');
  assert.equal(s.dp.flows.entries()[1].packets, 1, "the flow's reverse entry counted it");
  assert.equal(s.dp.drops.counts[Drop['icmp-error-no-flow']], 1, 'a later fragment quotes no ports');

  // Through the floating IP: pod-b's error about a DNAT'd first fragment leaves as the service, its quote translated back.
  const query = datagram(REMOTE6, SERVICE6, 4001, 5001, 42, [32, 16], 63);
  s.run(query.map((inner) => [0, fromNode2(inner)] as [number, Buffer]));
  const delivered = s.out(2).at(-2)!.subarray(14);
  s.run([[2, fromPod(POD_B_MAC, f6.ipv6({ src: POD_B6, dst: REMOTE6, nextHeader: ICMPV6, payload: f6.icmp6(POD_B6, REMOTE6, 3, 1, Buffer.concat([Buffer.alloc(4), delivered])) }))]]);
  const out = tunnelled(s.out(0).at(-1)!);
  assert.equal(f6.ip6Text(out.inner, 8), f6.ip6Text(f6.ip6(SERVICE6), 0), 'from the service');
  const quoted = out.inner.subarray(48);
  assert.deepEqual(quoted, query[0], 'the quote is the first fragment as node2 sent it (address, port and checksum back)');
  assert.equal(f6.upperChecksum6(out.inner.subarray(8, 24), out.inner.subarray(24, 40), ICMPV6, Buffer.from(out.inner.subarray(40))), 0, 'ICMPv6 checksum');
  assertBalanced(s);
});
