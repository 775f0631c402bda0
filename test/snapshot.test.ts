/**
 * The restart snapshot (src/daemon/snapshot.ts): written whole, read back,
 * refused with a reason when it is not one this daemon wrote; flow pairs
 * carried over with their NAT, ECMP and TCP state, by VRF name; its routes
 * held as stale per control node (LearnedRoutes.restoreStale).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildDataplane } from '../src/control/config/state-file';
import { NAT_DNAT, NAT_SNAT, FLOW_NAT } from '../src/dataplane/flow-table';
import { ipFromString } from '../src/dataplane/protocols/ipv4';
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
  const pairs = exportFlows(before);
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
