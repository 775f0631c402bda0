/**
 * A ClusterIP backed by two pods on this node and one elsewhere: this
 * node's agent publishes one next hop for its pods, the label of a local
 * composite, and the control node sends the ECMP route back with it. The
 * route programmer must not nest that composite in the route's (the
 * daemon died on "composite ...: bad member", then on "nexthop ... is still
 * in use" when the agent retired the local composite, as bench:reconfig
 * scaled a service up and down).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Dataplane } from '../src/dataplane/dataplane';
import { NH_COMPOSITE, NH_TUNNEL } from '../src/dataplane/nexthop';
import { parseMac } from '../src/dataplane/protocols/ethernet';
import { ipFromString } from '../src/dataplane/protocols/ipv4';
import { RouteProgrammer } from '../src/dataplane/route-programmer';

const SELF = '198.18.0.11';
const LOCAL_COMPOSITE_LABEL = 40;

function nodeWithTwoLocalBackends() {
  const dp = new Dataplane({ name: 'node1', underlayIp: ipFromString(SELF), encapPriority: ['udp', 'gre'] });
  dp.addVif({ id: 0, kind: 'fabric', name: 'underlay', mac: parseMac('02:00:00:00:00:01'), ip: ipFromString(SELF), vrf: -1, mtu: 1500 });
  const programmer = new RouteProgrammer(dp);
  const vrf = programmer.vrf('web');
  for (const id of [1, 2]) {
    dp.addVif({ id, kind: 'virtual', name: `s${id}`, mac: parseMac(`02:00:00:00:00:0${id}`), ip: ipFromString(`10.1.1.${id + 10}`), vrf, mtu: 1468 });
    dp.setNexthop(id, { kind: 'encap', vif: id, mac: parseMac(`02:00:00:00:00:0${id}`) });
    dp.setLabel(20 + id, id);
  }
  dp.setNexthop(3, { kind: 'composite', members: [1, 2] });
  dp.setLabel(LOCAL_COMPOSITE_LABEL, 3);
  return { dp, programmer, vrf };
}

test("an ECMP route naming this node's local composite label takes the composite's members beside the remote one", () => {
  const { dp, programmer, vrf } = nodeWithTwoLocalBackends();
  const local = { address: SELF, label: LOCAL_COMPOSITE_LABEL, encaps: ['udp' as const] };
  const remote = { address: '198.18.0.12', label: 30, encaps: ['udp' as const] };
  const lookup = () => dp.vrfs.get(vrf)!.routes.get(ipFromString('10.96.0.30'), 32);

  assert.equal(programmer.setRoute('web', '10.96.0.30/32', [local]), 2);
  assert.notEqual(lookup(), 3, 'the route has a composite of its own');
  assert.deepEqual([...dp.nexthops.members[lookup()]!], [1, 2]);

  assert.equal(programmer.setRoute('web', '10.96.0.30/32', [local, remote]), 3);
  const composite = lookup();
  assert.equal(dp.nexthops.kind[composite], NH_COMPOSITE);
  const members = [...dp.nexthops.members[composite]!];
  assert.deepEqual(members.slice(0, 2), [1, 2]);
  assert.equal(dp.nexthops.kind[members[2]], NH_TUNNEL);

  // Scaled down to the local pods again, then up: the route's composite is updated in place, never nested.
  assert.equal(programmer.setRoute('web', '10.96.0.30/32', [local]), 2);
  assert.equal(programmer.setRoute('web', '10.96.0.30/32', [remote, local]), 3);
  assert.ok([...dp.nexthops.members[lookup()]!].every((member) => dp.nexthops.kind[member] !== NH_COMPOSITE));
  // The agent retires the local composite before the control node's new route arrives: no route holds it.
  dp.deleteLabel(LOCAL_COMPOSITE_LABEL);
  assert.doesNotThrow(() => dp.deleteNexthop(3));
});
