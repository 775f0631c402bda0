/**
 * Fuzzing the IPv6 paths (fast-check, fixed seed): valid dual-stack frames of
 * every IPv6 kind the node handles (neighbour and router solicitations, UDP,
 * TCP and ICMPv6 echo locally, to tunnels and to the ClusterIP, ICMPv6
 * errors quoting a flow, MPLS over UDP and GRE carrying IPv6, UDP behind
 * extension headers, fragments of a datagram to a pod, a tunnel and the
 * ClusterIP and through the floating IP) with bytes
 * flipped or overwritten, cut short or extended, and the payload length and
 * next header set to edge values, in batches from every vif. After every
 * batch: nothing threw and the counters balance (received + generated =
 * transmitted + dropped + held); every IPv6 frame sent to a pod has a
 * payload length that fits it and a valid upper-layer checksum where the
 * vrouter wrote or rewrote one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import * as f from './support/frames';
import * as f6 from './support/frames6';
import { Drop } from '../src/dataplane/drop-reasons';
import { MAX_EXTENSION_HEADERS } from '../src/dataplane/steps/ipv6-input';
import { FABRIC_MAC, POD_A_MAC, POD_B_MAC, UNDERLAY_GW_MAC, VROUTER_MAC } from './support/scenario';
import { CLUSTER6, GATEWAY6, POD_A6, POD_B6, REMOTE6, REMOTE_GRE6, SERVICE6, buildScenario6 } from './support/scenario6';

const SEED = Number(process.env.FUZZ_SEED ?? 0x6eed);
const BATCHES = 1_500;

function udp6(srcMac: string, src: string, dst: string, sport: number, dport: number, hopLimit = 64): Buffer {
  return f6.frame6(srcMac, VROUTER_MAC, f6.ipv6({ src, dst, nextHeader: 17, hopLimit, payload: f6.udp6(src, dst, sport, dport, Buffer.from('fuzz me')) }));
}

function tunnelled(inner: Buffer, label: number, gre: boolean): Buffer {
  const outer = { dstMac: FABRIC_MAC, srcMac: UNDERLAY_GW_MAC, src: gre ? '192.168.0.13' : '192.168.0.12', dst: '192.168.0.11', label, inner };
  return gre ? f.mplsOverGre(outer) : f.mplsOverUdp(outer);
}

const inner = (src: string, dst: string, sport: number, dport: number) =>
  f6.ipv6({ src, dst, nextHeader: 17, hopLimit: 63, payload: f6.udp6(src, dst, sport, dport, Buffer.from('from afar')) });

const chain = (nextHeader: number, headers: number[], segment: Buffer) =>
  Buffer.concat([...headers.map((_, i) => f6.extensionHeader(headers[i + 1] ?? nextHeader, i % 2)), segment]);
const destinationOptions = (count: number) => new Array<number>(count).fill(60);
const fragmentsOf = (src: string, dst: string, sport: number, dport: number, id: number) =>
  f6.fragments6({ src, dst, nextHeader: 17, fragmentable: f6.udp6(src, dst, sport, dport, Buffer.alloc(60, id)), id, sizes: [32, 24, 12], hopLimit: 63 });
const fragmentTemplates = (vif: number, srcMac: string, src: string, dst: string, sport: number, dport: number, id: number): Array<[number, Buffer]> =>
  fragmentsOf(src, dst, sport, dport, id).map((packet) => [vif, f6.frame6(srcMac, VROUTER_MAC, packet)]);

/** [ingress vif, frame] templates. */
const TEMPLATES: Array<[number, Buffer]> = [
  [1, f6.neighborSolicitation({ srcMac: POD_A_MAC, src: POD_A6, target: POD_B6 })],
  [1, f6.neighborSolicitation({ srcMac: POD_A_MAC, src: 'fe80::a', target: 'fe80::5e00:100' })],
  [1, f6.routerSolicitation({ srcMac: POD_A_MAC, src: 'fe80::a' })],
  [1, udp6(POD_A_MAC, POD_A6, POD_B6, 1000, 80)],
  [1, udp6(POD_A_MAC, POD_A6, REMOTE6, 1001, 80)],
  [1, udp6(POD_A_MAC, POD_A6, REMOTE_GRE6, 1002, 80, 1)],
  [1, udp6(POD_A_MAC, POD_A6, CLUSTER6, 1003, 80)],
  [1, f6.frame6(POD_A_MAC, VROUTER_MAC, f6.ipv6({ src: POD_A6, dst: POD_B6, nextHeader: 6, payload: f6.tcp6(POD_A6, POD_B6, 1004, 80, 0x02) }))],
  [2, f6.frame6(POD_B_MAC, VROUTER_MAC, f6.ipv6({ src: POD_B6, dst: POD_A6, nextHeader: 6, payload: f6.tcp6(POD_B6, POD_A6, 80, 1004, 0x12) }))],
  [1, f6.frame6(POD_A_MAC, VROUTER_MAC, f6.ipv6({ src: POD_A6, dst: POD_B6, nextHeader: 58, payload: f6.echo6(POD_A6, POD_B6, 128, 9, 1) }))],
  [2, f6.frame6(POD_B_MAC, VROUTER_MAC, f6.ipv6({ src: POD_B6, dst: POD_A6, nextHeader: 58, payload: f6.icmp6(POD_B6, POD_A6, 1, 4, Buffer.concat([Buffer.alloc(4), inner(POD_A6, POD_B6, 1000, 80)])) }))],
  [0, tunnelled(inner(REMOTE6, POD_A6, 80, 1001), 17, false)],
  [0, tunnelled(inner(REMOTE_GRE6, POD_B6, 80, 1002), 18, true)],
  [0, tunnelled(inner(REMOTE6, SERVICE6, 4000, 5001), 18, false)],
  [2, udp6(POD_B_MAC, POD_B6, REMOTE6, 8080, 4000)],
  [1, udp6(POD_A_MAC, POD_A6, GATEWAY6, 1005, 80)],
  [1, f6.frame6(POD_A_MAC, VROUTER_MAC, f6.ipv6({ src: POD_A6, dst: POD_B6, nextHeader: 0, payload: chain(17, [0, 60, 43], f6.udp6(POD_A6, POD_B6, 1006, 80, Buffer.from('chained'))) }))],
  [1, f6.frame6(POD_A_MAC, VROUTER_MAC, f6.ipv6({ src: POD_A6, dst: REMOTE6, nextHeader: 60, payload: chain(17, destinationOptions(MAX_EXTENSION_HEADERS), f6.udp6(POD_A6, REMOTE6, 1007, 80, Buffer.from('longest'))) }))],
  [1, f6.frame6(POD_A_MAC, VROUTER_MAC, f6.ipv6({ src: POD_A6, dst: REMOTE6, nextHeader: 60, payload: chain(17, destinationOptions(MAX_EXTENSION_HEADERS + 1), f6.udp6(POD_A6, REMOTE6, 1007, 80, Buffer.from('too long'))) }))],
  ...fragmentTemplates(1, POD_A_MAC, POD_A6, POD_B6, 1008, 80, 0x1008),
  ...fragmentTemplates(1, POD_A_MAC, POD_A6, CLUSTER6, 1009, 80, 0x1009),
  ...fragmentTemplates(2, POD_B_MAC, POD_B6, REMOTE6, 8080, 4000, 0x100a),
  ...fragmentsOf(REMOTE6, SERVICE6, 4000, 5001, 0x100b).map((packet): [number, Buffer] => [0, tunnelled(packet, 18, false)]),
];

const mutation = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('byte' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('extend' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }) }),
  fc.record({ kind: fc.constant('payload-length' as const), value: fc.constantFrom(0, 1, 7, 8, 23, 24, 0xffff) }),
  fc.record({ kind: fc.constant('next-header' as const), value: fc.constantFrom(0, 6, 17, 43, 44, 50, 51, 58, 59, 60, 255) }),
);

function mutate(template: Buffer, changes: Array<typeof mutation extends fc.Arbitrary<infer T> ? T : never>): Buffer {
  let frame = Buffer.from(template);
  // The IPv6 header of the frame: behind Ethernet, or behind the tunnel headers.
  const ip = frame.readUInt16BE(12) === 0x86dd ? 14 : frame[14 + 9] === 47 ? 14 + 20 + 4 + 4 : 14 + 20 + 8 + 4;
  for (const change of changes) {
    if (change.kind === 'flip') frame[change.at % frame.length] ^= 1 << change.bit;
    else if (change.kind === 'byte') frame[change.at % frame.length] = change.value;
    else if (change.kind === 'cut') frame = frame.subarray(0, change.at % frame.length);
    else if (change.kind === 'extend') frame = Buffer.concat([frame, change.bytes]);
    else if (change.kind === 'payload-length' && frame.length >= ip + 6) frame.writeUInt16BE(change.value, ip + 4);
    else if (change.kind === 'next-header' && frame.length >= ip + 7) frame[ip + 6] = change.value;
  }
  return frame;
}

const frameArb = fc
  .tuple(fc.integer({ min: 0, max: TEMPLATES.length - 1 }), fc.array(mutation, { maxLength: 3 }), fc.constantFrom(0, 1, 2, 3, 9))
  .map(([index, changes, strayVif]) => {
    const [vif, template] = TEMPLATES[index];
    // Mostly from the vif the template belongs to, sometimes from another one.
    return { vif: changes.length === 3 ? strayVif : vif, frame: mutate(template, changes) };
  });

function checkSentToPod(frame: Buffer): void {
  if (frame.length < 54 || frame.readUInt16BE(12) !== 0x86dd) return;
  const length = frame.readUInt16BE(18);
  assert.ok(54 + length <= frame.length, `IPv6 payload length ${length} beyond a ${frame.length}-byte frame`);
  const nextHeader = frame[20];
  // What the vrouter answered or generated itself (ND, RA, ICMPv6 errors from the gateway) must verify.
  const fromVrouter = frame.subarray(22, 38).equals(f6.ip6(GATEWAY6)) || frame.subarray(22, 38).equals(f6.ip6('fe80::5e00:100'));
  if (fromVrouter && nextHeader === 58) {
    assert.equal(f6.upperChecksum6(frame.subarray(22, 38), frame.subarray(38, 54), 58, Buffer.from(frame.subarray(54, 54 + length))), 0, 'ICMPv6 checksum of a frame the vrouter wrote');
  }
}

test(`IPv6 frames mutated, in batches from every vif: nothing throws, counters balance (seed ${SEED})`, (t) => {
  const s = buildScenario6({ flowCapacity: 64 });
  let frames = 0;
  fc.assert(
    fc.property(fc.array(frameArb, { minLength: 8, maxLength: 48 }), fc.boolean(), (batch, tick) => {
      const sentBefore = s.ports.map((port) => port.frames.length);
      if (tick) s.pipeline.advanceClock(s.pipeline.now + 30);
      s.run(batch.map(({ vif, frame }) => [vif, frame]));
      frames += batch.length;
      assert.equal(s.pipeline.received + s.dp.generated, s.pipeline.transmitted + s.dp.drops.total() + s.pipeline.held, 'received + generated = transmitted + dropped + held');
      for (const vif of [1, 2, 3]) for (const frame of s.ports[vif].frames.slice(sentBefore[vif])) checkSentToPod(frame);
      for (const port of s.ports) port.frames.length = 0;
    }),
    { seed: SEED, numRuns: BATCHES },
  );
  t.diagnostic(`${frames} frames, ${s.pipeline.transmitted} transmitted, ${s.dp.generated} generated, drops ${JSON.stringify(s.dp.drops.toJSON())}`);
  for (const reason of ['ipv6-unsupported', 'ipv6-chain-truncated', 'ipv6-chain-too-long', 'ipv6-bad-extension-header', 'fragment-overlap'] as const) {
    assert.ok(s.dp.drops.counts[Drop[reason]] > 0, `never dropped as ${reason}`);
  }
  assert.ok(frames > 20_000, `${frames} frames`);
  assert.ok(s.pipeline.transmitted > 1_000, `${s.pipeline.transmitted} forwarded: the mutations must leave many frames valid`);
});
