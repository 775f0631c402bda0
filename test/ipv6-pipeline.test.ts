/**
 * IPv6 through the pipeline, packet by packet: real frames in, the exact
 * frames out, decoded here by hand (checksums recomputed independently in
 * test/support/frames6.ts) and checked field by field.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildScenario, FABRIC_MAC, POD_A_MAC, POD_B_MAC, POD_C_MAC, UNDERLAY_GW_MAC, VROUTER_MAC } from './support/scenario';
import * as f from './support/frames';
import * as f6 from './support/frames6';
import { Drop } from '../src/dataplane/drop-reasons';
import { flowHash6 } from '../src/dataplane/flow-hash';
import { ip6FromString } from '../src/dataplane/protocols/ipv6';
import { CLUSTER6, GATEWAY6, POD_A6, POD_B6, POD_C6, REMOTE6, REMOTE_GRE6, SERVICE6, buildScenario6 } from './support/scenario6';

const macText = (b: Buffer, at: number) => [...b.subarray(at, at + 6)].map((x) => x.toString(16).padStart(2, '0')).join(':');
const ipText = (b: Buffer, at: number) => [...b.subarray(at, at + 4)].join('.');
const ip6 = ip6FromString;

function assertBalanced(s: ReturnType<typeof buildScenario>) {
  assert.equal(s.pipeline.received + s.dp.generated, s.pipeline.transmitted + s.dp.drops.total());
}

/** The upper-layer checksum of the IPv6 packet at `ip` verifies (sum over pseudo-header and segment is 0). */
function assertChecksum6(frame: Buffer, ip: number) {
  const length = frame.readUInt16BE(ip + 4);
  const segment = Buffer.from(frame.subarray(ip + 40, ip + 40 + length));
  assert.equal(f6.upperChecksum6(frame.subarray(ip + 8, ip + 24), frame.subarray(ip + 24, ip + 40), frame[ip + 6], segment), 0, 'upper-layer checksum');
}

function udp6From(srcMac: string, src: string, dst: string, o: { hopLimit?: number; srcPort?: number; dstPort?: number; payload?: Buffer } = {}) {
  const payload = o.payload ?? Buffer.from('hello, v6 pod');
  return f6.frame6(srcMac, VROUTER_MAC, f6.ipv6({ src, dst, nextHeader: 17, hopLimit: o.hopLimit, payload: f6.udp6(src, dst, o.srcPort ?? 1234, o.dstPort ?? 80, payload) }));
}

test('neighbour solicitation for a VN address or the gateway is answered with the vrouter MAC', () => {
  const s = buildScenario6();
  for (const [target, router] of [
    [POD_B6, false],
    [GATEWAY6, true],
    ['fe80::5e00:100', true],
  ] as const) {
    s.run([[1, f6.neighborSolicitation({ srcMac: POD_A_MAC, src: POD_A6, target })]]);
    const out = s.out(1).at(-1)!;
    assert.equal(macText(out, 0), POD_A_MAC);
    assert.equal(macText(out, 6), VROUTER_MAC);
    assert.equal(out.readUInt16BE(12), 0x86dd);
    assert.equal(out[14 + 7], 255, 'hop limit 255');
    assert.equal(f6.ip6Text(out, 14 + 8), f6.ip6Text(f6.ip6(target), 0), 'from the target');
    assert.equal(f6.ip6Text(out, 14 + 24), f6.ip6Text(f6.ip6(POD_A6), 0), 'to the soliciting pod');
    const na = 54;
    assert.equal(out[na], 136);
    assert.equal(out[na + 4], (router ? 0x80 : 0) | 0x40 | 0x20, 'R (routers only), S, O');
    assert.equal(f6.ip6Text(out, na + 8), f6.ip6Text(f6.ip6(target), 0));
    assert.deepEqual([...out.subarray(na + 24, na + 32)], [2, 1, 0, 0, 0x5e, 0, 1, 0], 'target link-layer address option');
    assert.equal(out.length, 14 + 40 + 32);
    assertChecksum6(out, 14);
  }
  assertBalanced(s);
});

test('DAD probes, a pod asking for itself, other VNs and off-link hop limits are not answered', () => {
  const s = buildScenario6();
  s.run([
    [1, f6.neighborSolicitation({ srcMac: POD_A_MAC, src: '::', target: POD_A6 })],
    [1, f6.neighborSolicitation({ srcMac: POD_A_MAC, src: POD_A6, target: POD_A6 })],
    [1, f6.neighborSolicitation({ srcMac: POD_A_MAC, src: POD_A6, target: POD_C6 })],
    [1, f6.neighborSolicitation({ srcMac: POD_A_MAC, src: POD_A6, target: POD_B6, hopLimit: 64 })],
    [0, f6.neighborSolicitation({ srcMac: FABRIC_MAC, src: 'fe80::1', target: POD_B6 })],
  ]);
  assert.equal(s.out(1).length, 0);
  assert.equal(s.dp.drops.counts[Drop['nd-not-proxied']], 4);
  assert.equal(s.dp.drops.counts[Drop['not-for-vrouter']], 1);
  assertBalanced(s);
});

function assertRouterAdvertisement(out: Buffer, dst: string, dstMac: string) {
  assert.equal(macText(out, 0), dstMac);
  assert.equal(macText(out, 6), VROUTER_MAC);
  assert.equal(out[14 + 7], 255);
  assert.equal(f6.ip6Text(out, 14 + 8), 'fe80:0:0:0:0:0:5e00:100', 'from the router link-local address');
  assert.equal(f6.ip6Text(out, 14 + 24), f6.ip6Text(f6.ip6(dst), 0));
  const ra = 54;
  assert.equal(out[ra], 134);
  assert.equal(out[ra + 4], 64, 'hop limit for the pod');
  assert.equal(out[ra + 5], 0, 'no DHCPv6');
  assert.equal(out.readUInt16BE(ra + 6), 9000, 'router lifetime: a default router');
  assert.deepEqual([...out.subarray(ra + 16, ra + 24)], [1, 1, 0, 0, 0x5e, 0, 1, 0], 'source link-layer address');
  assert.deepEqual([...out.subarray(ra + 24, ra + 32)], [5, 1, 0, 0, 0, 0, 0x05, 0xdc], 'MTU 1500');
  const pio = ra + 32;
  assert.deepEqual([...out.subarray(pio, pio + 4)], [3, 4, 64, 0x80], 'prefix information: /64, on-link');
  assert.equal(out.readUInt32BE(pio + 4), 0xffffffff);
  assert.equal(f6.ip6Text(out, pio + 16), 'fd00:1:1:0:0:0:0:0');
  assert.equal(out.length, 14 + 40 + 64);
  assertChecksum6(out, 14);
}

test('router solicitation is answered with a router advertisement; one goes out unsolicited when a port comes up', () => {
  const s = buildScenario6();
  s.run([[1, f6.routerSolicitation({ srcMac: POD_A_MAC, src: 'fe80::a' })]]);
  assertRouterAdvertisement(s.out(1)[0], 'fe80::a', POD_A_MAC);
  s.run([[1, f6.routerSolicitation({ srcMac: POD_A_MAC, src: '::' })]]);
  assertRouterAdvertisement(s.out(1)[1], 'ff02::1', '33:33:00:00:00:01');
  assert.equal(s.pipeline.advertiseRouter(1), true);
  assertRouterAdvertisement(s.out(1)[2], 'ff02::1', '33:33:00:00:00:01');
  s.dp.vifs.get(2)!.ip6 = null;
  assert.equal(s.pipeline.advertiseRouter(2), false, 'no IPv6 address, no advertisement');
  assertBalanced(s);
});

test('local IPv6 pod to pod: one routed hop, hop limit decremented, payload untouched', () => {
  const s = buildScenario6();
  const input = udp6From(POD_A_MAC, POD_A6, POD_B6);
  s.run([[1, input]]);
  const [out] = s.out(2);
  assert.equal(macText(out, 0), POD_B_MAC);
  assert.equal(macText(out, 6), VROUTER_MAC);
  assert.equal(out.readUInt16BE(12), 0x86dd);
  const expected = Buffer.from(input.subarray(14));
  expected[7] = 63;
  assert.deepEqual(out.subarray(14), expected, 'only the hop limit changes');
  assertChecksum6(out, 14);
  assertBalanced(s);
});

test('IPv6 to a remote pod: MPLS over UDP over the IPv4 underlay, label TTL from the hop limit, entropy from the flow', () => {
  const s = buildScenario6();
  const input = udp6From(POD_A_MAC, POD_A6, REMOTE6);
  s.run([[1, input]]);
  const [out] = s.out(0);
  assert.equal(macText(out, 0), UNDERLAY_GW_MAC);
  assert.equal(out.readUInt16BE(12), 0x0800, 'IPv4 underlay');
  assert.equal(ipText(out, 14 + 12), '192.168.0.11');
  assert.equal(ipText(out, 14 + 16), '192.168.0.12');
  assert.equal(f.internetChecksum(out.subarray(14, 34)), 0);
  const hash = flowHash6(1, input, 14 + 8, 14 + 24, 17, 1234, 80);
  assert.equal(out.readUInt16BE(34), 49152 | (hash & 0x3fff));
  assert.equal(out.readUInt16BE(36), 6635);
  assert.equal(out.readUInt32BE(42), ((25 << 12) | 0x100 | 63) >>> 0, 'label 25, S, TTL 63');
  const inner = Buffer.from(input.subarray(14));
  inner[7] = 63;
  assert.deepEqual(out.subarray(46), inner);
  assert.equal(out.readUInt16BE(14 + 2), 20 + 8 + 4 + inner.length);
  // Over GRE when the route says so.
  s.run([[1, udp6From(POD_A_MAC, POD_A6, REMOTE_GRE6)]]);
  const gre = s.out(0)[1];
  assert.equal(gre[14 + 9], 47);
  assert.equal(gre.readUInt32BE(34), 0x8847);
  assert.equal(gre.readUInt32BE(38) >>> 12, 26);
  assertBalanced(s);
});

test('MPLS over UDP and GRE carrying IPv6 are delivered by the label to the pod', () => {
  const s = buildScenario6();
  const inner = f6.ipv6({ src: REMOTE6, dst: POD_A6, nextHeader: 17, hopLimit: 63, payload: f6.udp6(REMOTE6, POD_A6, 80, 1234, Buffer.from('reply')) });
  s.run([
    [0, f.mplsOverUdp({ dstMac: FABRIC_MAC, srcMac: UNDERLAY_GW_MAC, src: '192.168.0.12', dst: '192.168.0.11', label: 17, inner })],
    [0, f.mplsOverGre({ dstMac: FABRIC_MAC, srcMac: UNDERLAY_GW_MAC, src: '192.168.0.12', dst: '192.168.0.11', label: 17, inner })],
    // Not a node the VRF routes the inner source to.
    [0, f.mplsOverUdp({ dstMac: FABRIC_MAC, srcMac: UNDERLAY_GW_MAC, src: '192.168.0.99', dst: '192.168.0.11', label: 17, inner })],
  ]);
  const out = s.out(1);
  assert.equal(out.length, 2);
  for (const frame of out) {
    assert.equal(macText(frame, 0), POD_A_MAC);
    assert.equal(frame.readUInt16BE(12), 0x86dd);
    assert.deepEqual(frame.subarray(14), inner, 'no hop consumed on the receiving node');
  }
  assert.equal(s.dp.drops.counts[Drop['invalid-tunnel-source']], 1);
  assertBalanced(s);
});

test('hop limit 1 expires with a time exceeded from the IPv6 gateway, quoting the packet', () => {
  const s = buildScenario6();
  const input = udp6From(POD_A_MAC, POD_A6, REMOTE6, { hopLimit: 1 });
  s.run([[1, input]]);
  const [out] = s.out(1);
  assert.equal(s.out(0).length, 0);
  assert.equal(macText(out, 0), POD_A_MAC);
  assert.equal(out.readUInt16BE(12), 0x86dd);
  assert.equal(f6.ip6Text(out, 14 + 8), f6.ip6Text(f6.ip6(GATEWAY6), 0));
  assert.equal(f6.ip6Text(out, 14 + 24), f6.ip6Text(f6.ip6(POD_A6), 0));
  assert.equal(out[54], 3, 'time exceeded');
  assert.equal(out[55], 0, 'hop limit exceeded in transit');
  assert.deepEqual(out.subarray(62), input.subarray(14), 'the whole packet quoted');
  assertChecksum6(out, 14);
  assert.equal(s.dp.drops.counts[Drop['ttl-expired']], 1);
  assert.equal(s.dp.generated, 1);
  assertBalanced(s);
});

test('no route: destination unreachable (no route) from the gateway; multicast is not forwarded, without an error', () => {
  const s = buildScenario6();
  s.run([[1, udp6From(POD_A_MAC, POD_A6, 'fd00:9::1')], [1, udp6From(POD_A_MAC, POD_A6, 'ff02::fb')]]);
  const out = s.out(1);
  assert.equal(out.length, 1);
  assert.equal(out[0][54], 1);
  assert.equal(out[0][55], 0);
  assertChecksum6(out[0], 14);
  assert.equal(s.dp.drops.counts[Drop['no-route']], 1);
  assert.equal(s.dp.drops.counts[Drop['multicast-not-forwarded']], 1);
  assertBalanced(s);
});

test('too big for the tunnel: packet too big with the MTU the tunnel leaves, quoting at most 1280 bytes', () => {
  const s = buildScenario6();
  const input = udp6From(POD_A_MAC, POD_A6, REMOTE6, { payload: Buffer.alloc(1460, 7) });
  s.run([[1, input]]);
  assert.equal(s.out(0).length, 0);
  const [out] = s.out(1);
  assert.equal(out[54], 2, 'packet too big');
  assert.equal(out.readUInt32BE(58), 1500 - 20 - 8 - 4);
  assert.equal(out.length, 14 + 1280);
  assert.deepEqual(out.subarray(62), input.subarray(14, 14 + 1280 - 48), 'quoted as the pod sent it (hop limit restored)');
  assertChecksum6(out, 14);
  assert.equal(s.dp.drops.counts[Drop['fragment-needed']], 1);
  assertBalanced(s);
});

test('IPv6 flows: echo keyed by its id, the reply on the same pair, an error matched through the quoted packet', () => {
  const s = buildScenario6();
  const request = f6.frame6(POD_A_MAC, VROUTER_MAC, f6.ipv6({ src: POD_A6, dst: POD_B6, nextHeader: 58, payload: f6.echo6(POD_A6, POD_B6, 128, 77, 1) }));
  const reply = f6.frame6(POD_B_MAC, VROUTER_MAC, f6.ipv6({ src: POD_B6, dst: POD_A6, nextHeader: 58, payload: f6.echo6(POD_B6, POD_A6, 129, 77, 1) }));
  s.run([[1, request], [2, reply]]);
  assert.equal(s.dp.flows.activePairs, 1);
  const [forward, reverse] = s.dp.flows.entries();
  assert.equal(forward.packets, 1);
  assert.equal(reverse.packets, 1);
  assert.equal(forward.srcPort, 77);
  // Pod B answers a UDP datagram with port unreachable: it belongs to the datagram's flow.
  const datagram = udp6From(POD_A_MAC, POD_A6, POD_B6, { dstPort: 9 });
  s.run([[1, datagram]]);
  const quoted = Buffer.from(s.out(2).at(-1)!.subarray(14));
  const unreachable = f6.frame6(POD_B_MAC, VROUTER_MAC, f6.ipv6({ src: POD_B6, dst: POD_A6, nextHeader: 58, payload: f6.icmp6(POD_B6, POD_A6, 1, 4, Buffer.concat([Buffer.alloc(4), quoted])) }));
  const stray = f6.frame6(POD_B_MAC, VROUTER_MAC, f6.ipv6({ src: POD_B6, dst: POD_A6, nextHeader: 58, payload: f6.icmp6(POD_B6, POD_A6, 1, 4, Buffer.concat([Buffer.alloc(4), f6.ipv6({ src: POD_A6, dst: POD_B6, nextHeader: 17, payload: f6.udp6(POD_A6, POD_B6, 1, 2, Buffer.alloc(4)) })])) }));
  s.run([[2, unreachable], [2, stray]]);
  assert.equal(s.dp.flows.activePairs, 2);
  assert.equal(s.dp.flows.entries()[3].packets, 1, 'the datagram flow reverse entry counted the error');
  assert.equal(s.dp.drops.counts[Drop['icmp-error-no-flow']], 1);
  assert.deepEqual(s.out(1).at(-1)!.subarray(14 + 8), unreachable.subarray(14 + 8), 'delivered unchanged but the hop limit');
  assertBalanced(s);
});

test('an IPv6 ClusterIP: ECMP member by flow hash, sticky; DNAT+port map and SNAT on the pod node', () => {
  const s = buildScenario6();
  const members = new Set<number>();
  for (let port = 1000; port < 1032; port++) s.run([[1, udp6From(POD_A_MAC, POD_A6, CLUSTER6, { srcPort: port })]]);
  for (const frame of s.out(0)) {
    members.add(frame[14 + 9] === 47 ? 11 : frame.readUInt32BE(14 + 16));
    assert.equal(f6.ip6Text(frame, frame[14 + 9] === 47 ? 42 + 24 : 46 + 24), f6.ip6Text(f6.ip6(CLUSTER6), 0), 'the ClusterIP stays the inner destination');
  }
  assert.ok(members.size >= 2, `flows spread over members (${members.size})`);
  const before = s.out(0).length;
  s.run([[1, udp6From(POD_A_MAC, POD_A6, CLUSTER6, { srcPort: 1000 })]]);
  const first = s.out(0)[0];
  const again = s.out(0)[before];
  assert.equal(ipText(again, 14 + 16), ipText(first, 14 + 16), 'the same member for the same flow');
  assert.deepEqual(again.subarray(34), first.subarray(34), 'the same entropy port, label and inner packet');

  // On the node of the backend: decapsulated to pod-b's label, DNAT to its address and target port.
  const inner = f6.ipv6({ src: REMOTE6, dst: SERVICE6, nextHeader: 17, hopLimit: 63, payload: f6.udp6(REMOTE6, SERVICE6, 4000, 5001, Buffer.from('to the service')) });
  s.run([[0, f.mplsOverUdp({ dstMac: FABRIC_MAC, srcMac: UNDERLAY_GW_MAC, src: '192.168.0.12', dst: '192.168.0.11', label: 18, inner })]]);
  const [delivered] = s.out(2);
  assert.equal(f6.ip6Text(delivered, 14 + 24), f6.ip6Text(f6.ip6(POD_B6), 0), 'DNAT');
  assert.equal(delivered.readUInt16BE(54 + 2), 8080, 'DPAT');
  assertChecksum6(delivered, 14);
  // The reply leaves as the ClusterIP and the service port.
  s.run([[2, udp6From(POD_B_MAC, POD_B6, REMOTE6, { srcPort: 8080, dstPort: 4000 })]]);
  const replied = s.out(0).at(-1)!;
  assert.equal(f6.ip6Text(replied, 46 + 8), f6.ip6Text(f6.ip6(SERVICE6), 0), 'SNAT');
  assert.equal(replied.readUInt16BE(86), 5001, 'SPAT');
  assertChecksum6(replied, 46);
  assertBalanced(s);
});

test('IPv6 source checks and policy: a spoofed source is dropped, another VN is denied by default', () => {
  const s = buildScenario6();
  s.run([
    [1, udp6From(POD_A_MAC, 'fd00:1:1::99', POD_B6)],
    [1, udp6From(POD_C_MAC, POD_A6, POD_B6)],
  ]);
  assert.equal(s.dp.drops.counts[Drop['spoofed-source']], 2);
  s.dp.addRoute6(1, ip6(POD_C6), 128, 3);
  s.run([[1, udp6From(POD_A_MAC, POD_A6, POD_C6)]]);
  assert.equal(s.dp.drops.counts[Drop['flow-action-drop']], 1);
  assert.equal(s.out(3).length, 0);
  assertBalanced(s);
});

test('IPv6 policy change: an allowed pair is dropped once its rule (an IPv6 prefix) goes, and forwarded once it is back', () => {
  const s = buildScenario6();
  s.dp.addRoute6(1, ip6(POD_C6), 128, 3);
  s.dp.addRoute6(2, ip6(POD_A6), 128, 1);
  const rule = { name: 'to-pod-c', sourceVn: 1, destinationVn: 2, protocol: 17, portFrom: 80, portTo: 80, destinationPrefix: 0, destinationLength: 128, destinationPrefix6: ip6(POD_C6), allow: true };
  const request = () => udp6From(POD_A_MAC, POD_A6, POD_C6, { srcPort: 7000 });
  const reply = () => udp6From(POD_C_MAC, POD_C6, POD_A6, { srcPort: 80, dstPort: 7000 });
  s.dp.policy.setRules([rule]);
  s.run([[1, request()], [3, reply()]]);
  assert.deepEqual([s.out(3).length, s.out(1).length], [1, 1], 'allowed both ways');
  s.dp.policy.setRules([]);
  s.pipeline.revaluateFlows();
  s.run([[1, request()], [3, reply()]]);
  assert.deepEqual([s.out(3).length, s.out(1).length], [1, 1], 'denied both ways once re-evaluated');
  assert.equal(s.dp.drops.counts[Drop['flow-action-drop']], 2);
  s.dp.policy.setRules([rule]);
  s.pipeline.revaluateFlows();
  s.run([[1, request()], [3, reply()]]);
  assert.deepEqual([s.out(3).length, s.out(1).length], [2, 2], 'allowed again');
  assertChecksum6(s.out(3)[1], 14);
  assert.equal(s.dp.flows.activePairs, 1);
  assertBalanced(s);
});

test('IPv6 headers cut short: the upper-layer header as truncated, an extension header as ipv6-chain-truncated', () => {
  const s = buildScenario6();
  const cutHopByHop = f6.frame6(POD_A_MAC, VROUTER_MAC, f6.ipv6({ src: POD_A6, dst: POD_B6, nextHeader: 0, payload: Buffer.alloc(4) }));
  const short = udp6From(POD_A_MAC, POD_A6, POD_B6).subarray(0, 50);
  s.run([[1, cutHopByHop], [1, short]]);
  assert.equal(s.dp.drops.counts[Drop['ipv6-chain-truncated']], 1);
  assert.equal(s.dp.drops.counts[Drop.truncated], 1);
  assertBalanced(s);
});
