/**
 * Routes learned at run time in the inet6 table: the same tunnel, local-pod
 * and ECMP bookkeeping as for IPv4, on the VRF's IPv6 table.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Dataplane } from '../src/dataplane/dataplane';
import { NH_COMPOSITE, NH_TUNNEL } from '../src/dataplane/nexthop';
import { parseMac } from '../src/dataplane/protocols/ethernet';
import { ipFromString } from '../src/dataplane/protocols/ipv4';
import { ip6FromString } from '../src/dataplane/protocols/ipv6';
import { RouteProgrammer } from '../src/dataplane/route-programmer';

function node() {
  const dp = new Dataplane({ name: 'node1', underlayIp: ipFromString('198.18.0.11'), encapPriority: ['udp', 'gre'] });
  dp.addVif({ id: 0, kind: 'fabric', name: 'underlay', mac: parseMac('02:00:00:00:00:01'), ip: ipFromString('198.18.0.11'), vrf: -1, mtu: 1500 });
  const programmer = new RouteProgrammer(dp);
  const vrf = programmer.vrf('vn1');
  dp.addVif({ id: 1, kind: 'virtual', name: 'a1', mac: parseMac('02:00:00:00:00:03'), ip: 0, ip6: ip6FromString('fd00:1::3'), vrf, mtu: 1468 });
  dp.setNexthop(1, { kind: 'encap', vif: 1, mac: parseMac('02:00:00:00:00:03') });
  dp.setLabel(20, 1);
  return { dp, programmer, vrf };
}

test('an IPv6 route to a remote pod, then ECMP over two nodes, then withdrawn', () => {
  const { dp, programmer, vrf } = node();
  const table = dp.vrfs.get(vrf)!.routes6;
  assert.equal(programmer.setRoute('vn1', 'fd00:1::5/128', [{ address: '198.18.0.12', label: 30, encaps: ['udp'] }]), 1);
  const tunnel = table.get(ip6FromString('fd00:1::5'), 128);
  assert.equal(dp.nexthops.kind[tunnel], NH_TUNNEL);
  assert.equal(dp.nexthops.label[tunnel], 30);
  assert.equal(dp.vrfs.get(vrf)!.routes.size, 0, 'nothing in the IPv4 table');
  // The same route written another way is the same route.
  programmer.setRoute('vn1', 'fd00:1:0::5/128', [
    { address: '198.18.0.12', label: 30, encaps: ['udp'] },
    { address: '198.18.0.13', label: 31, encaps: ['udp'] },
  ]);
  const composite = table.get(ip6FromString('fd00:1::5'), 128);
  assert.equal(dp.nexthops.kind[composite], NH_COMPOSITE);
  assert.deepEqual([...dp.nexthops.members[composite]!], [tunnel, dp.nexthops.members[composite]![1]]);
  assert.equal(table.size, 1);
  assert.equal(programmer.deleteRoute('vn1', 'fd00:1::5/128'), true);
  assert.equal(table.size, 0);
  assert.equal(dp.nexthops.exists(tunnel), false, 'an unused tunnel goes with its last route');
});

test('an IPv6 route to a local pod resolves by label and goes when the pod does', () => {
  const { dp, programmer, vrf } = node();
  assert.equal(programmer.setRoute('vn1', 'fd00:1::3/128', [{ address: '198.18.0.11', label: 20, encaps: ['udp'] }]), 1);
  const table = dp.vrfs.get(vrf)!.routes6;
  assert.equal(table.lookup(ip6FromString('fd00:1::3'), 0), 1);
  programmer.releaseLocal(1);
  assert.equal(table.lookup(ip6FromString('fd00:1::3'), 0), -1);
  assert.throws(() => programmer.setRoute('vn1', 'fd00:1::/129', []), /not an IPv6 prefix/);
});
