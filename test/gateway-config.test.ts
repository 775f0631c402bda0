/**
 * The software gateway's configuration: `vrouter run --gateway` (the keys of
 * the agent's [GATEWAY-n] section, tungstenfabric/tf-controller
 * 6a674397821187fedfffd9586942b906d3479dbc src/vnsw/agent/contrail-vrouter-agent.conf,
 * src/vnsw/agent/vgw/cfg_vgw.cc) and the control node's external network:
 * services' externalIPs and LoadBalancer addresses as floating IPs in the
 * external VN on the backends, the rules and route leaks they open, and
 * their way through IF-MAP to the agent's port configuration.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GatewayFlagError, gatewayConfig, parseGatewayFlag } from '../src/daemon/gateway';
import type { LocalPort } from '../src/control/agent/agent-interface';
import { NetworkManager } from '../src/control/node/network-manager';
import { NetworkConfigError, parseNetworkConfig } from '../src/control/node/network-config';
import { buildConfigGraph, interfaceName, vrouterGraph } from '../src/control/node/ifmap-publisher';
import { derivePortView, portConfigOf } from '../src/control/agent/ifmap-port-view';
import { networkFqns } from '../src/control/ifmap/names';

const RI = 'default-domain:default-project:public:public';
const MAC = '02:00:c0:00:02:02';

test('--gateway takes the agent\'s keys: host bits cleared, prefixes sorted, a default route without routes', () => {
  // The agent's own example: ip_blocks=1.1.1.1/24 (contrail-vrouter-agent.conf [GATEWAY-0]).
  const spec = parseGatewayFlag(`routing_instance=${RI},interface=vgw0,ip_blocks=2.2.2.0/24 1.1.1.1/24,mac=02:00:C0:00:02:02`);
  assert.deepEqual(spec, { routingInstance: RI, interface: 'vgw0', ipBlocks: ['1.1.1.0/24', '2.2.2.0/24'], routes: ['0.0.0.0/0'], mac: MAC });
  assert.deepEqual(parseGatewayFlag(`routing_instance=${RI},interface=vgw0,ip_blocks=1.1.1.0/24,routes=10.10.10.1/24 11.11.11.1/24,mac=${MAC}`).routes, ['10.10.10.0/24', '11.11.11.0/24']);
  assert.deepEqual(gatewayConfig(spec), {
    vrf: RI, vn: 'default-domain:default-project:public', ip: '0.0.0.0', subnet: '1.1.1.0/24', gateway: '0.0.0.0',
    floatingIps: [], policies: [], vgw: { ipBlocks: ['1.1.1.0/24', '2.2.2.0/24'] },
  });
});

test('a bad --gateway value fails naming the flag, the value and what is wrong', () => {
  const good = { routing_instance: RI, interface: 'vgw0', ip_blocks: '203.0.113.0/24', mac: MAC } as Record<string, string>;
  const flag = (fields: Record<string, string | undefined>) => Object.entries({ ...good, ...fields }).filter(([, value]) => value !== undefined).map(([key, value]) => `${key}=${value}`).join(',');
  const cases: Array<[string, string]> = [
    [flag({ ip_blocks: '203.0.113.1/32' }), 'ip_blocks 203.0.113.1/32: a /32 is refused, as the agent refuses it (cfg_vgw.cc BuildSubnetList)'],
    [flag({ ip_blocks: '203.0.113/24' }), 'ip_blocks 203.0.113/24: not an IPv4 prefix (a.b.c.d/length)'],
    [flag({ routes: '0.0.0.0/0 bogus' }), 'routes bogus: not an IPv4 prefix (a.b.c.d/length)'],
    [flag({ ip_blocks: undefined }), 'ip_blocks is required'],
    [flag({ mac: undefined }), 'mac is required'],
    [flag({ mac: '02:00:c0:00:02' }), 'mac 02:00:c0:00:02: expected six hex bytes aa:bb:cc:dd:ee:ff'],
    [flag({ routing_instance: 'public' }), 'routing_instance public: expected domain:project:network:instance'],
    [flag({ interface: 'a-name-longer-than-15' }), 'interface a-name-longer-than-15: not an interface name'],
    [`${flag({})},colour=red`, 'unknown key "colour" (keys: routing_instance, interface, ip_blocks, routes, mac, each key=value, comma separated)'],
    [`${flag({})},mac=${MAC}`, 'mac given twice'],
  ];
  for (const [value, problem] of cases) {
    assert.throws(() => parseGatewayFlag(value), (error: Error) => {
      assert.ok(error instanceof GatewayFlagError);
      assert.equal(error.message, `--gateway ${value}: ${problem}`);
      return true;
    });
  }
});

const CONFIG = `
vns:
  - { name: default, subnet: 10.32.0.0/24 }
  - { name: web, subnet: 10.1.1.0/24 }
  - { name: app, subnet: 10.1.2.0/24 }
services:
  - { name: websvc, clusterIP: 10.96.0.10, ports: [{ port: 80, targetPort: 8080 }], selector: { app: web }, externalIPs: [203.0.113.10] }
  - { name: lbsvc, clusterIP: 10.96.0.11, ports: [{ port: 443, targetPort: 8443 }], selector: { app: web }, type: LoadBalancer }
external:
  name: public
  subnet: 203.0.113.0/24
  loadBalancerPool: 203.0.113.128/25
  gateways: [{ vrouter: gw }, { vrouter: gw2, routes: [198.51.100.0/24] }]
`;

function port(id: string, labels: Record<string, string>): LocalPort {
  return { id, name: id, namespace: 'default', labels, mac: '02:00:00:00:00:01', label: 20 };
}

test('externalIPs and a LoadBalancer address are floating IPs in the external VN on every backend; rules and leaks follow', () => {
  const config = parseNetworkConfig(CONFIG, 'network.yaml');
  assert.deepEqual([...config.external!.gateways], [['gw', ['0.0.0.0/0']], ['gw2', ['198.51.100.0/24']]]);
  const manager = new NetworkManager(config);
  const outcomes = manager.addPorts([
    { vrouter: 'node-a', port: port('be1', { name: 'web', app: 'web' }) },
    { vrouter: 'node-b', port: port('be2', { name: 'app', app: 'web' }) },
    { vrouter: 'node-b', port: port('other', { name: 'app' }) },
  ]);
  const fips = (index: number) => ('config' in outcomes[index] ? outcomes[index].config.floatingIps : null);
  assert.deepEqual(fips(0), [
    { ip: '10.96.0.10', portMap: [{ protocol: 'tcp', port: 80, targetPort: 8080 }] },
    { ip: '203.0.113.10', portMap: [{ protocol: 'tcp', port: 80, targetPort: 8080 }], vn: 'public' },
    { ip: '10.96.0.11', portMap: [{ protocol: 'tcp', port: 443, targetPort: 8443 }] },
    { ip: '203.0.113.128', portMap: [{ protocol: 'tcp', port: 443, targetPort: 8443 }], vn: 'public' },
  ]);
  assert.deepEqual(fips(1), fips(0));
  assert.deepEqual(fips(2), []);
  assert.equal(manager.loadBalancerIp('lbsvc'), '203.0.113.128');

  // The external VN may reach each external address on the service's ports, in each backend VN.
  const external = manager.policyRules.filter((rule) => rule.sourceVn === 'public');
  assert.deepEqual(
    external.map(({ destinationVn, destinationPrefix, portFrom, portTo, protocol, action }) => ({ destinationVn, destinationPrefix, portFrom, portTo, protocol, action })),
    [
      { destinationVn: 'app', destinationPrefix: '203.0.113.10/32', portFrom: 80, portTo: 80, protocol: 'tcp', action: 'allow' },
      { destinationVn: 'web', destinationPrefix: '203.0.113.10/32', portFrom: 80, portTo: 80, protocol: 'tcp', action: 'allow' },
      { destinationVn: 'app', destinationPrefix: '203.0.113.128/32', portFrom: 443, portTo: 443, protocol: 'tcp', action: 'allow' },
      { destinationVn: 'web', destinationPrefix: '203.0.113.128/32', portFrom: 443, portTo: 443, protocol: 'tcp', action: 'allow' },
    ],
  );
  // Each backend VN sees the gateways' routes of the external VN (the way back to external clients); the external VN its own.
  const views = manager.viewSources();
  assert.deepEqual(views.get('web')!.get('public'), new Set(['0.0.0.0/0', '198.51.100.0/24']));
  assert.deepEqual(views.get('app')!.get('public'), new Set(['0.0.0.0/0', '198.51.100.0/24']));
  assert.equal(views.get('public')!.get('public'), 'all');
  assert.equal(views.get('default')!.get('public'), undefined);

  // A LoadBalancer service added before keeps the first service's address; the externalIP removed goes.
  const changed = CONFIG.replace('services:\n', 'services:\n  - { name: early, clusterIP: 10.96.0.12, ports: [{ port: 53, protocol: UDP }], selector: { app: none }, type: LoadBalancer }\n')
    .replace(', externalIPs: [203.0.113.10]', '');
  manager.setConfig(parseNetworkConfig(changed, 'network.yaml'));
  assert.equal(manager.loadBalancerIp('lbsvc'), '203.0.113.128');
  assert.equal(manager.loadBalancerIp('early'), '203.0.113.129');
  const be1 = manager.outcomeOf('node-a', 'be1')!;
  assert.deepEqual('config' in be1 && be1.config.floatingIps.map((fip) => fip.ip), ['10.96.0.10', '10.96.0.11', '203.0.113.128']);
  assert.ok(!manager.policyRules.some((rule) => rule.destinationPrefix === '203.0.113.10/32'), 'the removed externalIP still has a rule');
});

test('the external network\'s errors name the file, the path and the value', () => {
  const base = 'vns: [{ name: default, subnet: 10.32.0.0/24 }]\n';
  const external = 'external: { name: public, subnet: 203.0.113.0/24, loadBalancerPool: 203.0.113.128/25, gateways: [{ vrouter: gw }] }\n';
  const service = (extra: string) => `services: [{ name: s, clusterIP: 10.96.0.9, ports: [{ port: 80 }], selector: { app: s }${extra} }]\n`;
  const cases: Array<[string, string]> = [
    [base + service(', externalIPs: [203.0.113.10]'), 'f.yaml: /services/0/externalIPs/0: no external network is configured (external) (value: "203.0.113.10")'],
    [base + external + service(', externalIPs: [198.51.100.1]'), 'f.yaml: /services/0/externalIPs/0: not inside the external subnet 203.0.113.0/24 (value: "198.51.100.1")'],
    [base + external + service(', externalIPs: [203.0.113.130]'), 'f.yaml: /services/0/externalIPs/0: inside the loadBalancerPool, whose addresses are given to LoadBalancer services (value: "203.0.113.130")'],
    [base + external.replace(', loadBalancerPool: 203.0.113.128/25', '') + service(', type: LoadBalancer'), 'f.yaml: /services/0/type: LoadBalancer needs external.loadBalancerPool (value: "LoadBalancer")'],
    [base + external.replace('203.0.113.128/25', '198.51.100.0/25'), 'f.yaml: /external/loadBalancerPool: not inside the subnet 203.0.113.0/24 (value: "198.51.100.0/25")'],
    [base + external.replace('203.0.113.0/24', '10.32.0.0/16'), 'f.yaml: /external/subnet: overlaps the subnet 10.32.0.0/24 of VN default (value: "10.32.0.0/16")'],
    [base + external.replace('{ vrouter: gw }', '{ vrouter: gw, routes: [0.0.0.1/0] }'), 'f.yaml: /external/gateways/0/routes/0: host bits set: the prefix is 0.0.0.0/0 (value: "0.0.0.1/0")'],
    [base + external.replace('name: public', 'name: default'), 'f.yaml: /external/name: already the name of a VN of vns (value: "default")'],
  ];
  for (const [text, message] of cases) assert.throws(() => parseNetworkConfig(text, 'f.yaml'), (error: Error) => error instanceof NetworkConfigError && error.message === message, message);
});

test('through IF-MAP an external floating IP reaches the agent with its VN (router-external), a ClusterIP without', () => {
  const config = parseNetworkConfig(CONFIG, 'network.yaml');
  const manager = new NetworkManager(config);
  const be1 = port('be1', { name: 'web', app: 'web' });
  manager.addPort('node-a', be1);
  const graph = vrouterGraph(buildConfigGraph(config, manager.configuredPorts(), manager.policyRules), 'node-a', { virtualRouter: true, vms: new Set(['be1']) });
  const derived = portConfigOf(derivePortView(graph, interfaceName(be1)));
  assert.deepEqual(derived?.floatingIps.map(({ ip, vn }) => ({ ip, vn })), [
    { ip: '10.96.0.10', vn: undefined },
    { ip: '203.0.113.10', vn: networkFqns('public').vn },
    { ip: '10.96.0.11', vn: undefined },
    { ip: '203.0.113.128', vn: networkFqns('public').vn },
  ]);
});
