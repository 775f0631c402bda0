/**
 * IPv6 in the control node: dual-stack VNs (network.yaml `subnet6`), the
 * IPv6 address each pod of one gets (and gives back), its IF-MAP (a second
 * instance-ip of family v6, the IPv6 ipam subnet) as the agent's port view
 * reads it, and inet6 routes (items of `2/1/<instance>`) authorized,
 * ECMP-merged, reflected and withdrawn as inet ones. Vrouters are the
 * project's XmppSession over real TCP sockets to a ControlNode.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { derivePortView, portConfigOf } from '../src/control/agent/ifmap-port-view';
import { networkFqns } from '../src/control/ifmap/names';
import { ControlNode } from '../src/control/node/control-node';
import { buildConfigGraph, interfaceName, vrouterGraph } from '../src/control/node/ifmap-publisher';
import { NetworkConfigError, parseNetworkConfig } from '../src/control/node/network-config';
import { eventually } from './support/eventually';
import { FakeVrouter, listenWithVrouters, nexthop, pod } from './support/fake-vrouter';
import { RecordingLogger } from './support/recording-logger';

const CONFIG = `
vns:
  - { name: default, subnet: 10.32.0.0/24 }
  - { name: web, subnet: 10.1.1.0/24, subnet6: 'fd00:1:1::/64' }
  - { name: db, subnet: 10.2.0.0/24, subnet6: 'fd00:2::/112', gateway6: 'fd00:2::fe' }
services:
  - name: websvc
    clusterIP: 10.96.0.10
    clusterIPs: [10.96.0.10, 'fd00:96::10']
    ports: [{ protocol: TCP, port: 80, targetPort: 8080 }]
    selector: { app: web }
`;

const VRF = (vn: string) => networkFqns(vn).routingInstance;

function configOf(outcome: ReturnType<ControlNode['registerPod']>) {
  assert.ok('config' in outcome, JSON.stringify(outcome));
  return outcome.config;
}

test('network.yaml: a VN may have an IPv6 subnet and a service an IPv6 ClusterIP; a bad value names file, field and value', () => {
  const config = parseNetworkConfig(CONFIG, 'net.yaml');
  assert.deepEqual(config.vns.get('web')!.ipv6, { subnet: 'fd00:1:1::/64', network: 0xfd000001000100000000000000000000n, length: 64, gateway: 'fd00:1:1::1' });
  assert.equal(config.vns.get('db')!.ipv6!.gateway, 'fd00:2::fe');
  assert.equal(config.vns.get('default')!.ipv6, undefined);
  assert.equal(config.services[0].clusterIp6, 'fd00:96::10');
  const WEB = "{ name: web, subnet: 10.1.1.0/24, subnet6: 'fd00:1:1::/64' }";
  const cases: Array<[string, string, string, string]> = [
    ["{ name: web, subnet: 10.1.1.0/24, subnet6: 'fd00:1:1::1/64' }", '/vns/1/subnet6', 'host bits set: the prefix is fd00:1:1::/64', 'fd00:1:1::1/64'],
    ["{ name: web, subnet: 10.1.1.0/24, subnet6: 'not-v6/64' }", '/vns/1/subnet6', 'not an IPv6 prefix', 'not-v6/64'],
    ["{ name: web, subnet: 10.1.1.0/24, subnet6: 'fd00:1:1::/40' }", '/vns/1/subnet6', 'use a prefix length from 64 to 120', 'fd00:1:1::/40'],
    ["{ name: web, subnet: 10.1.1.0/24, subnet6: 'fd00:1:1::/64', gateway6: 'fd00:9::1' }", '/vns/1/gateway6', 'not inside the subnet6 fd00:1:1::/64', 'fd00:9::1'],
    ["{ name: web, subnet: 10.1.1.0/24, gateway6: 'fd00:1:1::1' }", '/vns/1/gateway6', 'a gateway6 needs a subnet6', 'fd00:1:1::1'],
    [`${WEB}\n  - { name: web2, subnet: 10.5.0.0/24, subnet6: 'fd00:1:1:0:1::/80' }`, '/vns/2/subnet6', 'overlaps the subnet6 fd00:1:1::/64 of VN web', 'fd00:1:1:0:1::/80'],
  ];
  for (const [web, field, problem, value] of cases) {
    assert.throws(() => parseNetworkConfig(CONFIG.replace(WEB, web), 'net.yaml'), (error: Error) => {
      assert.ok(error instanceof NetworkConfigError);
      assert.ok(error.message.startsWith(`net.yaml: ${field}: ${problem}`), error.message);
      assert.ok(error.message.endsWith(`(value: ${JSON.stringify(value)})`), error.message);
      return true;
    });
  }
  assert.throws(() => parseNetworkConfig(CONFIG.replace("'fd00:96::10'", "'fd00:1:1::10'"), 'net.yaml'), /net\.yaml: \/services\/0\/clusterIPs\/1: inside the subnet6 fd00:1:1::\/64 of VN web/);
  assert.throws(() => parseNetworkConfig(CONFIG.replace("[10.96.0.10, 'fd00:96::10']", "[10.96.0.11, 'fd00:96::10']"), 'net.yaml'), /\/services\/0\/clusterIPs\/0: must be the clusterIP/);
  assert.throws(() => parseNetworkConfig(CONFIG.replace("'fd00:96::10'", "'10.96.0.12'"), 'net.yaml'), /\/services\/0\/clusterIPs\/1: not an IPv6 address/);
});

test('IPAM: a pod of a dual-stack VN gets an IPv6 address, freed with the pod, kept across a restart by the pod state file; its IF-MAP gives the agent a dual-stack port', async () => {
  const directory = mkdtempSync(join(tmpdir(), 'inet6-control-'));
  const podStateFile = join(directory, 'pods.json');
  try {
    const first = new ControlNode({ config: parseNetworkConfig(CONFIG, 'net.yaml'), podStateFile });
    const a1 = configOf(first.registerPod('node-a', pod('a1', 20, { name: 'web', app: 'web' })));
    const a2 = configOf(first.registerPod('node-a', pod('a2', 21, { name: 'web' })));
    const plain = configOf(first.registerPod('node-a', pod('p1', 22, {})));
    assert.deepEqual([a1.ip6, a1.subnet6, a1.gateway6], ['fd00:1:1::2', 'fd00:1:1::/64', 'fd00:1:1::1']);
    assert.equal(a2.ip6, 'fd00:1:1::3');
    assert.equal(plain.ip6, undefined, 'the default VN is IPv4 only');
    // The dual-stack service: its IPv6 ClusterIP is a floating IP of its backend too, with the same port map.
    assert.deepEqual(a1.floatingIps.map((floatingIp) => floatingIp.ip), ['10.96.0.10', 'fd00:96::10']);
    assert.deepEqual(a1.floatingIps[1].portMap, [{ protocol: 'tcp', port: 80, targetPort: 8080 }]);

    // What the agent reads from the IF-MAP the control node sends its vrouter.
    const registered = first.registeredPods().map(({ vrouter, port, outcome }) => ({ vrouter, port, config: configOf(outcome) }));
    const config = parseNetworkConfig(CONFIG, 'net.yaml');
    const graph = vrouterGraph(buildConfigGraph(config, registered, []), 'node-a', { virtualRouter: true, vms: new Set(['a1']) });
    const a1Port = registered.find((entry) => entry.port.id === 'a1')!.port;
    const instanceIp6 = graph.node('instance-ip', `${interfaceName(a1Port)}:fd00:1:1::2`);
    assert.deepEqual(instanceIp6?.properties.map((property) => [property.name, property.text]), [['instance-ip-address', 'fd00:1:1::2'], ['instance-ip-family', 'v6']]);
    const portConfig = portConfigOf(derivePortView(graph, interfaceName(a1Port)));
    assert.deepEqual(portConfig && [portConfig.ip, portConfig.ip6, portConfig.subnet6, portConfig.gateway6], ['10.1.1.2', 'fd00:1:1::2', 'fd00:1:1::/64', 'fd00:1:1::1']);
    assert.deepEqual(portConfig?.floatingIps.map((floatingIp) => floatingIp.ip).sort(), ['10.96.0.10', 'fd00:96::10']);

    // Freed with the pod: the next pod gets it.
    assert.ok(first.unregisterPods('a1'));
    assert.equal(configOf(first.registerPod('node-a', pod('a3', 23, { name: 'web' }))).ip6, 'fd00:1:1::2');
    await first.close();

    // A restarted control node reads every pod's addresses back: a new pod does not take one of them.
    const second = new ControlNode({ config: parseNetworkConfig(CONFIG, 'net.yaml'), podStateFile });
    const back = new Map(second.registeredPods().map(({ port, outcome }) => [port.id, configOf(outcome).ip6]));
    assert.deepEqual(Object.fromEntries(back), { a2: 'fd00:1:1::3', p1: undefined, a3: 'fd00:1:1::2' });
    assert.equal(configOf(second.registerPod('node-b', pod('b1', 24, { name: 'web' }))).ip6, 'fd00:1:1::4');
    await second.close();
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
});

test('inet6 routes: only IPv6 addresses given to the vrouter\'s ports are installed, reflected under 2/1 with ECMP for the IPv6 ClusterIP, withdrawn as inet ones', async () => {
  const logger = new RecordingLogger();
  const control = new ControlNode({ config: parseNetworkConfig(CONFIG, 'net.yaml'), logger });
  const { port, vrouters: [a, b, observer] } = await listenWithVrouters(control, 'node-a', 'node-b', 'node-c');
  try {
    const a1 = configOf(control.registerPod('node-a', pod('a1', 20, { name: 'web', app: 'web' })));
    const b1 = configOf(control.registerPod('node-b', pod('b1', 21, { name: 'web', app: 'web' })));
    for (const vrouter of [a, b, observer]) vrouter.subscribe('web');
    await eventually(() => assert.deepEqual(control.connectedVrouters().sort(), ['node-a', 'node-b', 'node-c']));

    a.publish('web', `${b1.ip6}/128`, [nexthop('192.168.0.11', 20, 'web')]); // another node's pod
    a.publish('web', 'fd00:1:1::99/128', [nexthop('192.168.0.11', 20, 'web')]); // no port's
    a.publish('web', `${a1.ip6}/64`, [nexthop('192.168.0.11', 20, 'web')]); // its pod's address, not as a host route
    a.publish('web', `${a1.ip6}/128`, [nexthop('192.168.0.11', 20, 'web'), nexthop('192.168.0.11', 24, 'web')]); // two next hops
    a.publish('web', `${a1.ip6}/128`, [nexthop('192.168.0.11', 20, 'web')]);
    a.publish('web', `${a1.ip}/32`, [nexthop('192.168.0.11', 20, 'web')]);
    a.publish('web', 'fd00:96::10/128', [nexthop('192.168.0.11', 20, 'web')]);
    b.publish('web', 'fd00:96::10/128', [nexthop('192.168.0.12', 21, 'web')]);

    await eventually(() => assert.deepEqual(observer.route('web', 'fd00:96::10/128')?.nexthops.map((hop) => hop.address).sort(), ['192.168.0.11', '192.168.0.12']));
    await eventually(() => assert.deepEqual(observer.route('web', `${a1.ip6}/128`)?.nexthops, [nexthop('192.168.0.11', 20, 'web')]));
    assert.equal(observer.families.get(`${a1.ip6}/128`), 'inet6');
    assert.equal(observer.families.get('fd00:96::10/128'), 'inet6');
    assert.equal(observer.families.get(`${a1.ip}/32`), 'inet', 'inet routes of the same instance still come under 1/1');
    for (const prefix of [`${b1.ip6}/128`, 'fd00:1:1::99/128', `${a1.ip6}/64`]) assert.equal(observer.route('web', prefix), undefined, prefix);
    assert.deepEqual(control.refusedPublishes(), { malformed: 0, 'not-given': 3, 'next-hops': 1 });
    assert.ok(logger.has(new RegExp(`warn vrouter node-a: publish of fd00:1:1::99/128 in ${VRF('web')} refused \\(not-given\\)`)), logger.lines.join('\n'));
    assert.equal(a.closedReason, null);

    // A later subscriber gets both families in its dump.
    const late = await FakeVrouter.connect('node-d', port);
    late.subscribe('web');
    await eventually(() => assert.equal(late.route('web', 'fd00:96::10/128')?.nexthops.length, 2));
    assert.deepEqual([late.families.get('fd00:96::10/128'), late.families.get(`${a1.ip}/32`)], ['inet6', 'inet']);
    late.close();

    // A withdraw shrinks the ECMP route; a pod that goes takes its IPv6 route with it.
    b.withdraw('web', 'fd00:96::10/128');
    await eventually(() => assert.deepEqual(observer.route('web', 'fd00:96::10/128')?.nexthops, [nexthop('192.168.0.11', 20, 'web')]));
    assert.ok(control.unregisterPods('a1'));
    await eventually(() => assert.equal(observer.route('web', `${a1.ip6}/128`), undefined));
    assert.equal(observer.route('web', 'fd00:96::10/128'), undefined, "the ClusterIP is no longer given to node-a's ports either");
    assert.ok(logger.has(new RegExp(`vrouter node-a: ${a1.ip6}/128 in ${VRF('web')} withdrawn: no longer given to its ports`)));
  } finally {
    for (const vrouter of [a, b, observer]) vrouter.close();
    await control.close();
  }
});
