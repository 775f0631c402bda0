/**
 * Per-vif limits through the real pipeline: a pod's flows (as OpenContrail's
 * max-flows per interface), its fragment records and its held fragments are
 * bounded, each with its own drop reason, so one pod flooding new flows or
 * fragments that never complete leaves room for the others.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildScenario, FABRIC_MAC, POD_A_MAC, POD_B_MAC, UNDERLAY_GW_MAC, VROUTER_MAC } from './support/scenario';
import * as f from './support/frames';
import { FRAGMENT_RECORDS_PER_VIF, HELD_FRAGMENTS_PER_VIF } from '../src/dataplane/fragment-table';
import { buildDataplane, parseStateText } from '../src/control/config/state-file';

const loadStateText = (text: string, file: string) => buildDataplane(parseStateText(text, file), file);

const POD_A = 1;
const POD_B = 2;
const FABRIC = 0;

function udpFrom(vif: number, srcPort: number, dstPort: number): [number, Buffer] {
  const [src, mac, dst] = vif === POD_A ? ['10.1.1.3', POD_A_MAC, '10.1.1.4'] : ['10.1.1.4', POD_B_MAC, '10.1.1.3'];
  return [vif, f.ethernet(VROUTER_MAC, mac, 0x0800, f.ipv4({ src, dst, protocol: 17, payload: f.udp(src, dst, srcPort, dstPort, Buffer.from('limit')) }))];
}

function synFrom(vif: number, srcPort: number): [number, Buffer] {
  const [src, mac, dst] = vif === POD_A ? ['10.1.1.3', POD_A_MAC, '10.1.1.4'] : ['10.1.1.4', POD_B_MAC, '10.1.1.3'];
  return [vif, f.ethernet(VROUTER_MAC, mac, 0x0800, f.ipv4({ src, dst, protocol: 6, payload: f.tcp(src, dst, srcPort, 80, 0x02) }))];
}

/** A fragment of datagram `id` from a pod: the head (offset 0, MF) or a later one (offset 8, MF). */
function fragmentFrom(vif: number, id: number, head: boolean): [number, Buffer] {
  const [src, mac, dst] = vif === POD_A ? ['10.1.1.3', POD_A_MAC, '10.1.1.4'] : ['10.1.1.4', POD_B_MAC, '10.1.1.3'];
  const payload = head ? f.udp(src, dst, 5000, 6000, Buffer.alloc(16)).subarray(0, 16) : Buffer.alloc(16, 7);
  return [vif, f.ethernet(VROUTER_MAC, mac, 0x0800, f.ipv4({ src, dst, protocol: 17, id, flags: 0x2000 | (head ? 0 : 2), payload }))];
}

function balanced(s: ReturnType<typeof buildScenario>) {
  assert.equal(s.pipeline.received + s.dp.generated, s.pipeline.transmitted + s.dp.drops.total() + s.pipeline.held);
}

test('a vif holds at most its flow limit; new flows beyond it are dropped as vif-flow-limit, others still set up', () => {
  const s = buildScenario({ vifFlowLimit: 3 });
  s.run([udpFrom(POD_A, 1000, 7), udpFrom(POD_A, 1001, 7), udpFrom(POD_A, 1002, 7), udpFrom(POD_A, 1003, 7), synFrom(POD_A, 1004)]);
  assert.equal(s.dp.flows.vifPairs[POD_A], 3);
  assert.deepEqual(s.dp.drops.toJSON(), { 'vif-flow-limit': 2 });
  // Its existing flows still forward, and so does the reply direction.
  s.run([udpFrom(POD_A, 1000, 7), udpFrom(POD_B, 7, 1001)]);
  assert.equal(s.out(POD_B).length, 4);
  assert.equal(s.out(POD_A).length, 1);
  // Another pod is not affected.
  s.run([udpFrom(POD_B, 2000, 9), udpFrom(POD_B, 2001, 9), udpFrom(POD_B, 2002, 9)]);
  assert.equal(s.dp.flows.vifPairs[POD_B], 3);
  assert.equal(s.dp.drops.toJSON()['vif-flow-limit'], 2);
  // A pair that goes gives its room back.
  s.dp.flows.removePair(s.dp.flows.entries()[0].index);
  assert.equal(s.dp.flows.vifPairs[POD_A], 2);
  s.run([udpFrom(POD_A, 1003, 7)]);
  assert.equal(s.dp.flows.vifPairs[POD_A], 3);
  balanced(s);
});

test('a flow from the fabric counts against the pod it reaches', () => {
  const s = buildScenario({ vifFlowLimit: 1 });
  const fromNode2 = (srcPort: number): [number, Buffer] => [
    FABRIC,
    f.mplsOverUdp({
      dstMac: FABRIC_MAC, srcMac: UNDERLAY_GW_MAC, src: '192.168.0.12', dst: '192.168.0.11', label: 17,
      inner: f.ipv4({ src: '10.1.1.5', dst: '10.1.1.3', protocol: 17, ttl: 63, payload: f.udp('10.1.1.5', '10.1.1.3', srcPort, 53, Buffer.from('in')) }),
    }),
  ];
  s.run([fromNode2(3000), fromNode2(3001)]);
  assert.equal(s.dp.flows.vifPairs[POD_A], 1);
  assert.equal(s.dp.flows.vifPairs[FABRIC], 0);
  assert.deepEqual(s.dp.drops.toJSON(), { 'vif-flow-limit': 1 });
  assert.equal(s.out(POD_A).length, 1);
});

test('a SYN flood and a UDP port scan from one pod leave the flow table to the others', () => {
  const s = buildScenario({ flowCapacity: 256, vifFlowLimit: 32 }); // 128 pairs
  for (let batch = 0; batch < 10; batch++) {
    const frames: Array<[number, Buffer]> = [];
    for (let i = 0; i < 100; i++) frames.push(i % 2 === 0 ? synFrom(POD_A, 10000 + batch * 100 + i) : udpFrom(POD_A, 4000, 20000 + batch * 100 + i));
    // The victim opens one flow per batch, and its peer answers it, while the flood goes on.
    frames.push(udpFrom(POD_B, 30000 + batch, 53));
    frames.push(udpFrom(POD_A, 53, 30000 + batch));
    s.run(frames);
  }
  assert.equal(s.dp.flows.vifPairs[POD_A], 32);
  assert.equal(s.dp.flows.vifPairs[POD_B], 10, "every one of the victim's flows was set up");
  assert.equal(s.dp.drops.toJSON()['vif-flow-limit'], 1000 - 32);
  assert.equal(s.dp.drops.toJSON()['flow-table-full'], undefined);
  assert.equal(s.out(POD_A).length, 10, "every answer reached the victim in its flow");
  balanced(s);
});

test(`fragment records are bounded per vif (${FRAGMENT_RECORDS_PER_VIF}) as well as in total: fragment-vif-limit`, () => {
  const s = buildScenario();
  const heads = Array.from({ length: FRAGMENT_RECORDS_PER_VIF + 5 }, (_, i) => fragmentFrom(POD_A, 0x100 + i, true));
  s.run(heads);
  assert.equal(s.pipeline.fragments.recordsOf(POD_A), FRAGMENT_RECORDS_PER_VIF);
  assert.equal(s.dp.drops.toJSON()['fragment-vif-limit'], 5);
  s.run([fragmentFrom(POD_B, 0x900, true)]);
  assert.equal(s.pipeline.fragments.recordsOf(POD_B), 1, 'another vif still gets a record');
  // Records expire with their fragment timeout and give the vif its room back.
  s.pipeline.advanceClock(s.pipeline.now + 3);
  assert.equal(s.pipeline.fragments.recordsOf(POD_A), 0);
  s.run([fragmentFrom(POD_A, 0x200, true)]);
  assert.equal(s.pipeline.fragments.recordsOf(POD_A), 1);
  assert.equal(s.dp.drops.toJSON()['fragment-vif-limit'], 5);
  balanced(s);
});

test(`fragments held for their head are bounded per vif (${HELD_FRAGMENTS_PER_VIF}) as well as in total: fragment-hold-vif-limit`, () => {
  const s = buildScenario();
  s.run(Array.from({ length: HELD_FRAGMENTS_PER_VIF + 3 }, (_, i) => fragmentFrom(POD_A, 0x300 + i, false)));
  assert.equal(s.pipeline.fragments.heldOf(POD_A), HELD_FRAGMENTS_PER_VIF);
  assert.equal(s.pipeline.held, HELD_FRAGMENTS_PER_VIF);
  assert.equal(s.dp.drops.toJSON()['fragment-hold-vif-limit'], 3);
  s.run([fragmentFrom(POD_B, 0x901, false)]);
  assert.equal(s.pipeline.fragments.heldOf(POD_B), 1, "another vif's fragment is still held");
  // A head releases what waited for it (its vif's count goes down); the timeout drops the rest.
  s.run([fragmentFrom(POD_A, 0x300, true)]);
  assert.equal(s.pipeline.fragments.heldOf(POD_A), HELD_FRAGMENTS_PER_VIF - 1);
  assert.equal(s.out(POD_B).length, 2, 'the head and its held fragment forwarded');
  s.pipeline.advanceClock(s.pipeline.now + 3);
  assert.equal(s.pipeline.fragments.heldOf(POD_A), 0);
  assert.equal(s.pipeline.fragments.heldOf(POD_B), 0);
  assert.equal(s.pipeline.held, 0);
  assert.equal(s.dp.drops.toJSON()['fragment-timeout'], HELD_FRAGMENTS_PER_VIF);
  balanced(s);
});

test('the state file sets the flow limit for every vif (flows.maxFlowsPerVif) and per vif (vifs[].maxFlows)', () => {
  const dp = loadStateText(
    `node: { name: n, underlayIp: 192.168.0.11 }
flows: { maxFlowsPerVif: 100 }
vrfs: [{ id: 1, name: vn1 }]
vifs:
  - { id: 1, kind: virtual, name: a, mac: "02:00:00:00:00:01", vrf: 1 }
  - { id: 2, kind: virtual, name: b, mac: "02:00:00:00:00:02", vrf: 1, maxFlows: 0 }
  - { id: 3, kind: virtual, name: c, mac: "02:00:00:00:00:03", vrf: 1, maxFlows: 7 }
`,
    'state.yaml',
  );
  assert.deepEqual([1, 2, 3].map((id) => dp.vifs.get(id)!.maxFlows), [100, 0, 7]);
  assert.throws(
    () => loadStateText(`node: { name: n, underlayIp: 192.168.0.11 }\nflows: { maxFlowsPerVif: -1 }\n`, 'state.yaml'),
    /state\.yaml: \/flows\/maxFlowsPerVif: must be >= 0 \(value: -1\)/,
  );
});
