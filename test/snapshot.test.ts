/**
 * The restart snapshot (src/daemon/snapshot.ts): written whole, read back,
 * refused with a reason when it is not one this daemon wrote; flow pairs
 * carried over with their NAT, ECMP and TCP state, by VRF name, IPv4 and
 * IPv6; its routes
 * held as stale per control node (LearnedRoutes.restoreStale).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildDataplane } from '../src/control/config/state-file';
import { NAT_DNAT, NAT_DPAT, NAT_SNAT, NAT_SPAT, FLOW_NAT } from '../src/dataplane/flow-table';
import { flowHash6 } from '../src/dataplane/flow-hash';
import { FlowRevaluation } from '../src/dataplane/flow-revaluation';
import { ipFromString } from '../src/dataplane/protocols/ipv4';
import { ip6FromString, ip6ToString } from '../src/dataplane/protocols/ipv6';
import type { DataplaneAccess } from '../src/control/agent/agent-interface';
import { LearnedRoutes } from '../src/control/agent/learned-routes';
import { DaemonSnapshot, SNAPSHOT_VERSION, exportFlows, importFlows, loadSnapshot, saveSnapshot } from '../src/daemon/snapshot';

const SNAPSHOT: DaemonSnapshot = {
  version: SNAPSHOT_VERSION,
  node: 'node1',
  savedAt: '2026-12-04T19:00:00.000Z',
  stateDigest: 'ab',
  ports: [{ request: { id: 'b', vn: 'vn1', ip: '10.1.1.5' }, vif: 1, label: 21, tapName: 'vtap0' }],
  routes: [{ vrf: 'vn1', prefix: '10.1.1.3/32', nexthops: [{ address: '198.18.0.11', label: 20, encaps: ['udp'] }] }],
  controlRoutes: [],
  flows: [],
};

function directory(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'vrouter-snapshot-'));
}

test('a saved snapshot loads back as it was, and no temporary file is left', () => {
  const dir = directory();
  try {
    const file = path.join(dir, 'node1.json.snapshot.json');
    saveSnapshot(file, SNAPSHOT);
    assert.deepEqual(loadSnapshot(file, 'node1'), { snapshot: SNAPSHOT });
    assert.deepEqual(fs.readdirSync(dir), ['node1.json.snapshot.json']);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('no snapshot: none, without a reason; a bad one: none, with the reason', () => {
  const dir = directory();
  try {
    const file = path.join(dir, 's.json');
    assert.deepEqual(loadSnapshot(file, 'node1'), { snapshot: null, reason: null });
    const cases: Array<[string, RegExp]> = [
      ['{"version":1,"node":"node1"', /^not JSON: /],
      ['[]', /^not an object$/],
      [JSON.stringify({ ...SNAPSHOT, version: 2 }), /^version 2, this daemon reads 1$/],
      [JSON.stringify({ ...SNAPSHOT, node: 'node0' }), /^taken by node "node0", this is node1$/],
      [JSON.stringify({ ...SNAPSHOT, flows: {} }), /^field \/flows is not an array$/],
      [JSON.stringify({ ...SNAPSHOT, ports: [{ request: {}, vif: 1, label: 2, tapName: 'x' }] }), /^field \/ports\/0: not a port/],
      [JSON.stringify({ ...SNAPSHOT, routes: [{ vrf: 'vn1' }] }), /^field \/routes\/0: not a route/],
    ];
    for (const [text, reason] of cases) {
      fs.writeFileSync(file, text);
      const loaded = loadSnapshot(file, 'node1');
      assert.equal(loaded.snapshot, null, text);
      assert.match((loaded as { reason: string }).reason, reason, text);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('flow pairs come back in another dataplane with their decisions, by VRF name, over a pair the first packets made', () => {
  const document = (vrfs: Array<{ id: number; name: string }>) => ({ node: { name: 'node1', underlayIp: '198.18.0.12' }, vrfs, flows: { capacity: 1024 } });
  const before = buildDataplane(document([{ id: 1, name: 'vn1' }]), 'before.json');
  const client = ipFromString('10.1.1.3');
  const clusterIp = ipFromString('10.96.0.10');
  const backend = ipFromString('10.1.1.5');
  const forward = { vrf: 1, protocol: 6, src: client, dst: clusterIp, srcPort: 40000, dstPort: 80 };
  const reverse = { vrf: 1, protocol: 6, src: backend, dst: client, srcPort: 8080, dstPort: 40000 };
  const entry = before.flows.create(forward, reverse, 10);
  before.flows.action[entry] = FLOW_NAT;
  before.flows.action[entry + 1] = FLOW_NAT;
  before.flows.natFlags[entry] = NAT_DNAT;
  before.flows.natFlags[entry + 1] = NAT_SNAT;
  before.flows.ecmpSlot[entry] = 1;
  before.flows.trackTcp(entry, 0x02, 1000, 0, 0);
  before.flows.hit(entry + 1, 60, 10);
  before.flows.trackTcp(entry + 1, 0x12, 5000, 1001, 0);
  const pairs = exportFlows(before).pairs;
  assert.equal(pairs.length, 1);
  assert.equal(pairs[0].vrf, 'vn1');

  // After the restart vn1 has another id, and the backend's first reply made a pair of its own, without the NAT.
  const after = buildDataplane(document([{ id: 1, name: 'other' }, { id: 2, name: 'vn1' }]), 'after.json');
  after.flows.create({ ...reverse, vrf: 2 }, { vrf: 2, protocol: 6, src: client, dst: backend, srcPort: 40000, dstPort: 8080 }, 20);
  assert.equal(importFlows(after, pairs, 20), 1);
  const views = after.flows.entries();
  assert.equal(views.length, 2, JSON.stringify(views));
  const [restoredForward, restoredReverse] = views;
  assert.deepEqual(
    [restoredForward.vrf, restoredForward.src, restoredForward.dst, restoredForward.srcPort, restoredForward.dstPort, restoredForward.nat, restoredForward.ecmpSlot],
    [2, client, clusterIp, 40000, 80, ['dnat'], 1],
  );
  assert.deepEqual([restoredReverse.src, restoredReverse.srcPort, restoredReverse.nat, restoredReverse.replied], [backend, 8080, ['snat'], true]);
  // The TCP state came along: only an RST at the sequence number the other side acknowledged ends the pair.
  assert.equal(after.flows.trackTcp(restoredReverse.index, 0x04, 1001, 0, 0), false, 'no ACK from the client seen yet in this direction');
  assert.equal(after.flows.trackTcp(restoredForward.index, 0x04, 1001, 0, 0), true);
  // A pair of a VRF that is gone is not restored.
  const without = buildDataplane(document([{ id: 1, name: 'other' }]), 'without.json');
  assert.equal(importFlows(without, pairs, 20), 0);
});

test('flows export in slices: every pair once, in slot order, and next is null at the end', () => {
  const dp = buildDataplane({ node: { name: 'node1', underlayIp: '198.18.0.12' }, vrfs: [{ id: 1, name: 'vn1' }], flows: { capacity: 1024 } }, 'slices.json');
  const a = ipFromString('10.1.1.2');
  const b = ipFromString('10.1.1.3');
  for (let port = 1000; port < 1005; port++) {
    dp.flows.create({ vrf: 1, protocol: 17, src: a, dst: b, srcPort: port, dstPort: 53 }, { vrf: 1, protocol: 17, src: b, dst: a, srcPort: 53, dstPort: port }, 10);
  }
  const whole = exportFlows(dp);
  assert.equal(whole.next, null);
  assert.equal(whole.pairs.length, 5);
  const sliced = [];
  let requests = 0;
  for (let from: number | null = 0; from !== null; requests++) {
    const slice = exportFlows(dp, from, 2);
    assert.ok(slice.pairs.length <= 2);
    sliced.push(...slice.pairs);
    from = slice.next;
  }
  assert.equal(requests, 3);
  assert.deepEqual(sliced, whole.pairs);
});

test("a pair's policy inputs come back by VN name, so a policy change after the restart re-evaluates it", () => {
  const document = (vrfs: Array<{ id: number; name: string }>) => ({ node: { name: 'node1', underlayIp: '198.18.0.12' }, vrfs, flows: { capacity: 1024 } });
  const before = buildDataplane(document([{ id: 1, name: 'vn1' }, { id: 2, name: 'web' }]), 'before.json');
  const forward = { vrf: 1, protocol: 17, src: ipFromString('10.1.1.3'), dst: ipFromString('10.96.0.10'), srcPort: 40000, dstPort: 80 };
  const reverse = { vrf: 2, protocol: 17, src: ipFromString('10.2.2.5'), dst: forward.src, srcPort: 8080, dstPort: 40000 };
  const entry = before.flows.create(forward, reverse, 10);
  before.flows.policySourceVn[entry >>> 1] = 1;
  before.flows.policyDestinationVn[entry >>> 1] = 2;
  before.flows.natWanted[entry >>> 1] = NAT_DNAT | NAT_DPAT;
  before.flows.setVerdict(entry, true);
  const pairs = exportFlows(before).pairs;
  assert.deepEqual(pairs[0].policy, { sourceVn: 'vn1', destinationVn: 'web', nat: NAT_DNAT | NAT_DPAT });

  // After the restart the VNs have other ids; no rule allows vn1 -> web any more.
  const after = buildDataplane(document([{ id: 1, name: 'web' }, { id: 2, name: 'other' }, { id: 3, name: 'vn1' }]), 'after.json');
  assert.equal(importFlows(after, pairs, 20), 1);
  const [restored] = after.flows.entries();
  assert.deepEqual([after.flows.policySourceVn[restored.index >>> 1], after.flows.policyDestinationVn[restored.index >>> 1]], [3, 1]);
  assert.equal(restored.action, 'nat');
  const revaluation = new FlowRevaluation(after.flows, after.policy);
  after.policy.setRules([{ name: 'deny-web', sourceVn: 3, destinationVn: 1, protocol: 17, portFrom: 80, portTo: 80, destinationPrefix: 0, destinationLength: 0, allow: false }]);
  while (revaluation.pending) revaluation.step();
  assert.deepEqual(after.flows.entries().map((view) => [view.action, view.nat]), [['drop', []], ['drop', []]]);
  after.policy.setRules([]);
  while (revaluation.pending) revaluation.step();
  assert.equal(after.flows.entries()[0].action, 'drop', 'between VNs without a rule: the default deny');
});

test('IPv6 flow pairs come back with their NAT, ECMP choice and TCP state, by VRF name, over a pair the first packets made', () => {
  const document = (vrfs: Array<{ id: number; name: string }>) => ({ node: { name: 'node1', underlayIp: '198.18.0.12' }, vrfs, flows: { capacity: 1024 } });
  const client = ip6FromString('fd00:1::3');
  const clusterIp = ip6FromString('fd00:96::10');
  const backend = ip6FromString('fd00:1::5');
  const key = (vrf: number, src: Uint8Array, dst: Uint8Array, srcPort: number, dstPort: number) => {
    const addresses = new Uint8Array(32);
    addresses.set(src, 0);
    addresses.set(dst, 16);
    return { vrf, protocol: 6, addresses, srcPort, dstPort };
  };
  const before = buildDataplane(document([{ id: 1, name: 'vn1' }]), 'before.json');
  const entry = before.flows.create6(key(1, client, clusterIp, 40000, 80), key(1, backend, client, 8080, 40000), 10);
  before.flows.action[entry] = FLOW_NAT;
  before.flows.action[entry + 1] = FLOW_NAT;
  before.flows.natFlags[entry] = NAT_DNAT | NAT_DPAT;
  before.flows.natFlags[entry + 1] = NAT_SNAT | NAT_SPAT;
  before.flows.ecmpSlot[entry] = 2;
  before.flows.trackTcp(entry, 0x02, 1000, 0, 0);
  before.flows.hit(entry + 1, 60, 10);
  before.flows.trackTcp(entry + 1, 0x12, 5000, 1001, 0);
  // An IPv4 pair beside it comes along as before.
  before.flows.create({ vrf: 1, protocol: 17, src: ipFromString('10.1.1.3'), dst: ipFromString('10.1.1.5'), srcPort: 5000, dstPort: 53 }, { vrf: 1, protocol: 17, src: ipFromString('10.1.1.5'), dst: ipFromString('10.1.1.3'), srcPort: 53, dstPort: 5000 }, 10);
  const pairs = exportFlows(before).pairs;
  assert.equal(pairs.length, 2);
  const [ipv6] = pairs.filter((pair) => pair.forward.src6 !== undefined);
  assert.deepEqual([ipv6.forward.src6, ipv6.forward.dst6, ipv6.reverse.src6, ipv6.reverse.dst6], ['fd00:1::3', 'fd00:96::10', 'fd00:1::5', 'fd00:1::3']);

  // Saved and read back as JSON, as a restart does.
  const dir = directory();
  let loaded: DaemonSnapshot;
  try {
    const file = path.join(dir, 's.json');
    saveSnapshot(file, { ...SNAPSHOT, flows: pairs });
    loaded = (loadSnapshot(file, 'node1') as { snapshot: DaemonSnapshot }).snapshot;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  // After the restart vn1 has another id, and the backend's first reply made a pair of its own, without the NAT.
  const after = buildDataplane(document([{ id: 1, name: 'other' }, { id: 2, name: 'vn1' }]), 'after.json');
  after.flows.create6(key(2, backend, client, 8080, 40000), key(2, client, backend, 40000, 8080), 20);
  assert.equal(importFlows(after, loaded.flows, 20), 2);
  const views = after.flows.entries().filter((view) => view.src6 !== null);
  assert.equal(views.length, 2, JSON.stringify(views));
  const [restoredForward, restoredReverse] = views;
  assert.deepEqual(
    [restoredForward.vrf, ip6ToString(restoredForward.src6!), ip6ToString(restoredForward.dst6!), restoredForward.srcPort, restoredForward.dstPort, restoredForward.nat, restoredForward.ecmpSlot],
    [2, 'fd00:1::3', 'fd00:96::10', 40000, 80, ['dnat', 'dpat'], 2],
  );
  assert.deepEqual([ip6ToString(restoredReverse.src6!), restoredReverse.srcPort, restoredReverse.nat, restoredReverse.replied], ['fd00:1::5', 8080, ['snat', 'spat'], true]);
  // Found by the dataplane's own IPv6 lookup, and its TCP state came along.
  const forwardKey = key(2, client, clusterIp, 40000, 80);
  assert.equal(after.flows.lookup6(2, 6, forwardKey.addresses, 0, 16, (40000 << 16) | 80, flowHash6(2, forwardKey.addresses, 0, 16, 6, 40000, 80)), restoredForward.index);
  assert.equal(after.flows.trackTcp(restoredReverse.index, 0x04, 1001, 0, 0), false, 'no ACK from the client seen yet in this direction');
  assert.equal(after.flows.trackTcp(restoredForward.index, 0x04, 1001, 0, 0), true);
  // A side whose address does not parse is skipped, not thrown.
  const broken = { ...ipv6, forward: { ...ipv6.forward, src6: 'fd00::zz' } };
  assert.equal(importFlows(buildDataplane(document([{ id: 1, name: 'vn1' }]), 'broken.json'), [broken], 20), 0);
});

test('a snapshot with an IPv6 flow side lacking its addresses is refused with the reason', () => {
  const dir = directory();
  try {
    const file = path.join(dir, 's.json');
    const side = { src: 0, dst: 0, src6: 'fd00:1::3', ports: 0, action: 1, nat: 0, ecmpSlot: 0, tcpAck: 0, tcpSeq: 0 };
    fs.writeFileSync(file, JSON.stringify({ ...SNAPSHOT, flows: [{ vrf: 'vn1', protocol: 6, state: 1, vif: -1, forward: side, reverse: side }] }));
    assert.deepEqual(loadSnapshot(file, 'node1'), { snapshot: null, reason: 'field /flows/0: an IPv6 side needs src6 and dst6 as text' });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('routes restored from a snapshot are stale per control node: one it re-sends stays, the rest go at its End-of-RIB', () => {
  const programmed = new Map<string, string>();
  const access: DataplaneAccess = {
    setRoute: (vrf, prefix, nexthops) => programmed.set(`${vrf} ${prefix}`, nexthops.map((nexthop) => `${nexthop.address}:${nexthop.label}`).join(',')),
    deleteRoute: (vrf, prefix) => programmed.delete(`${vrf} ${prefix}`),
    configurePort: () => undefined,
    unconfigurePort: () => undefined,
    setLocalComposite: () => undefined,
  };
  const routes = new LearnedRoutes(access, '198.18.0.12');
  const remote = (label: number) => [{ address: '198.18.0.11', label, encaps: ['udp' as const] }];
  for (const session of [0, 1]) {
    routes.restoreStale(session, 'web', '10.1.1.3/32', remote(20));
    routes.restoreStale(session, 'web', '10.1.1.4/32', remote(22));
  }
  // Forwarding from the snapshot before any session is up.
  assert.deepEqual([...programmed], [['web 10.1.1.3/32', '198.18.0.11:20'], ['web 10.1.1.4/32', '198.18.0.11:22']]);
  assert.deepEqual(routes.counts(), { routes: 2, stale: 2 });
  routes.learn(0, 'web', '10.1.1.3/32', remote(20));
  assert.equal(routes.sweepStale(0), 1);
  // Control node 1 has not said End-of-RIB yet: 10.1.1.4 still rests on its stale copy.
  assert.deepEqual([...programmed.keys()], ['web 10.1.1.3/32', 'web 10.1.1.4/32']);
  assert.equal(routes.sweepStale(1), 2);
  assert.deepEqual([...programmed], [['web 10.1.1.3/32', '198.18.0.11:20']]);
  assert.deepEqual(routes.counts(), { routes: 1, stale: 0 });
});
