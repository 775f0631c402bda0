import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LocalPort } from '../src/control/agent/agent-interface';
import { NetworkManager } from '../src/control/node/network-manager';
import { RouteTables } from '../src/control/node/route-tables';
import { NetworkConfigError, parseNetworkConfig } from '../src/control/node/network-config';
import { RouteEntry } from '../src/control/xmpp/stanza';

const EXAMPLE = `
holdTime: 30
vns:
  - { name: default, subnet: 10.32.0.0/24 }
  - { name: web, subnet: 10.1.1.0/24, gateway: 10.1.1.1 }
  - { name: db, subnet: 10.2.0.0/30 }
services:
  - name: db
    clusterIP: 10.96.0.20
    ports: [{ protocol: TCP, port: 5432, targetPort: 15432 }, { protocol: udp, port: 53 }]
    selector: { app: db }
policies:
  - { name: web-to-db-admin, from: web, to: db, protocol: tcp, ports: [8080, { from: 9000, to: 9010 }], action: allow }
vrouters: [node-a, node-b]
`;

function port(id: string, labels: Record<string, string>, ip?: string): LocalPort {
  return { id, name: id, namespace: 'default', labels, mac: '02:00:00:00:00:01', label: 20, ...(ip ? { ip } : {}) };
}

test('the example configuration parses with defaults filled in', () => {
  const config = parseNetworkConfig(EXAMPLE, 'network.yaml');
  assert.equal(config.holdTime, 30);
  assert.equal(config.gracefulRestartTime, 300);
  assert.equal(config.defaultVn, 'default');
  assert.deepEqual(config.vns.get('default'), { name: 'default', subnet: '10.32.0.0/24', network: 0x0a200000, length: 24, gateway: '10.32.0.1' });
  assert.deepEqual(config.services[0].ports, [
    { protocol: 'tcp', port: 5432, targetPort: 15432 },
    { protocol: 'udp', port: 53, targetPort: 53 },
  ]);
  assert.deepEqual(config.policies[0].portRanges, [
    [8080, 8080],
    [9000, 9010],
  ]);
  assert.deepEqual([...config.vrouters!], ['node-a', 'node-b']);
  assert.equal(config.tls, null);
});

test('configuration errors name the file, the path and the value', () => {
  const cases: Array<[string, string]> = [
    ['vns: [{ name: web, subnet: 10.1.1.0/24, color: red }]', 'f.yaml: /vns/0/color: unknown field, expected one of: name, subnet, gateway, subnet6, gateway6 (value: "red")'],
    ['vns: [{ name: default, subnet: 10.1.1.1/24 }]', 'f.yaml: /vns/0/subnet: host bits set: the prefix is 10.1.1.0/24 (value: "10.1.1.1/24")'],
    ['vns: [{ name: default, subnet: 10.1.1.0/24, gateway: 10.1.2.1 }]', 'f.yaml: /vns/0/gateway: not inside the subnet 10.1.1.0/24 (value: "10.1.2.1")'],
    [
      'vns: [{ name: default, subnet: 10.1.0.0/16 }, { name: web, subnet: 10.1.1.0/24 }]',
      'f.yaml: /vns/1/subnet: overlaps the subnet 10.1.0.0/16 of VN default (value: "10.1.1.0/24")',
    ],
    ['vns: [{ name: web, subnet: 10.1.1.0/24 }]', 'f.yaml: /vns: the default VN "default" is not among vns (value: "default")'],
    [
      'vns: [{ name: default, subnet: 10.1.1.0/24 }]\nservices: [{ name: s, clusterIP: 10.1.1.9, ports: [{ port: 80 }], selector: { app: s } }]',
      'f.yaml: /services/0/clusterIP: inside the subnet 10.1.1.0/24 of VN default, where pods get addresses (value: "10.1.1.9")',
    ],
    [
      'vns: [{ name: default, subnet: 10.1.1.0/24 }]\npolicies: [{ from: default, to: nowhere, action: allow }]',
      'f.yaml: /policies/0/to: not a configured VN (value: "nowhere")',
    ],
    ['vns: [{ name: default, subnet: 10.1.1.0/24 }]\nholdTime: 0', 'f.yaml: /holdTime: must be > 0 (value: 0)'],
    ['vns: [{ name: default, subnet: 10.1.1.0/24 }]\ntls: { cert: /nonexistent.crt, key: k }', "f.yaml: /tls/cert: cannot read: ENOENT: no such file or directory, open '/nonexistent.crt' (value: \"/nonexistent.crt\")"],
    ['vns: [oops', 'f.yaml: line 1, column 11: Flow sequence in block collection must be sufficiently indented and end with a ]'],
  ];
  for (const [text, message] of cases) {
    assert.throws(() => parseNetworkConfig(text, 'f.yaml'), (error: unknown) => {
      assert.ok(error instanceof NetworkConfigError);
      assert.equal(error.message.split('\n')[0], message);
      return true;
    });
  }
});

test('addresses come from the VN subnet, skip the gateway and broadcast, are freed, and run out with a reason', () => {
  const network = new NetworkManager(parseNetworkConfig(EXAMPLE, 'network.yaml'));
  // db is 10.2.0.0/30: .1 is the gateway, .3 the broadcast, so only .2 is left for pods.
  const first = network.addPort('node-a', port('p1', { name: 'db' }));
  assert.ok('config' in first && first.config.ip === '10.2.0.2');
  const second = network.addPort('node-a', port('p2', { name: 'db' }));
  assert.deepEqual(second, { refused: 'no free address in the subnet 10.2.0.0/30 of VN db' });
  network.removePort('node-a', 'p1');
  const third = network.addPort('node-b', port('p3', { name: 'db' }));
  assert.ok('config' in third && third.config.ip === '10.2.0.2');
  // An address asked for is kept; one outside the subnet is refused.
  const kept = network.addPort('node-a', port('p4', { name: 'web' }, '10.1.1.77'));
  assert.ok('config' in kept && kept.config.ip === '10.1.1.77');
  assert.deepEqual(network.addPort('node-a', port('p5', { name: 'web' }, '10.9.9.9')), {
    refused: 'address 10.9.9.9 is not a pod address of the subnet 10.1.1.0/24 of VN web',
  });
  // An address read back from the state file is kept while free; one another pod holds is replaced, not refused.
  const restored = network.addPort('node-a', port('p6', { name: 'web' }), '10.1.1.88');
  assert.ok('config' in restored && restored.config.ip === '10.1.1.88');
  const moved = network.addPort('node-b', port('p7', { name: 'web' }), '10.1.1.88');
  assert.ok('config' in moved && moved.config.ip !== '10.1.1.88', JSON.stringify(moved));
});

test('rules: explicit policies first, then one per service port for each VN using a service, relevant to both ends', () => {
  const network = new NetworkManager(parseNetworkConfig(EXAMPLE, 'network.yaml'));
  network.addPort('node-a', port('db1', { name: 'db', app: 'db' }));
  const client = network.addPort('node-b', port('web1', { name: 'web', uses: 'db' }));
  assert.ok('config' in client);
  assert.deepEqual(
    client.config.policies.map((rule) => [rule.order, rule.name, rule.sourceVn, rule.destinationVn, rule.protocol, rule.portFrom, rule.portTo, rule.destinationPrefix ?? '-']),
    [
      [0, 'web-to-db-admin 8080-8080', 'web', 'db', 'tcp', 8080, 8080, '-'],
      [1, 'web-to-db-admin 9000-9010', 'web', 'db', 'tcp', 9000, 9010, '-'],
      [2, 'web uses db in db tcp/5432', 'web', 'db', 'tcp', 5432, 5432, '10.96.0.20/32'],
      [3, 'web uses db in db udp/53', 'web', 'db', 'udp', 53, 53, '10.96.0.20/32'],
    ],
  );
  const backend = network.outcomeOf('node-a', 'db1');
  assert.ok(backend && 'config' in backend);
  assert.deepEqual(backend.config.policies, client.config.policies);
  const stranger = network.addPort('node-b', port('x', {}));
  assert.ok('config' in stranger && stranger.config.vn === 'default' && stranger.config.policies.length === 0);
});

test('views: a VN sees the ClusterIP of a service it uses, the backend VN sees the user, a policy joins both ways', () => {
  const network = new NetworkManager(parseNetworkConfig(EXAMPLE, 'network.yaml'));
  network.addPort('node-a', port('db1', { name: 'default', app: 'db' }));
  network.addPort('node-b', port('web1', { name: 'web', uses: 'db' }));
  const views = network.viewSources();
  assert.deepEqual(views.get('web'), new Map<string, 'all' | Set<string>>([['web', 'all'], ['db', 'all'], ['default', new Set(['10.96.0.20/32'])]]));
  assert.deepEqual(views.get('default'), new Map([['default', 'all'], ['web', 'all']]));
  assert.deepEqual(views.get('db'), new Map([['db', 'all'], ['web', 'all']]));
});

function entry(prefix: string, address: string, label: number, localPreference = 200): RouteEntry {
  return { prefix, nexthops: [{ address, label, encaps: ['udp'], virtualNetwork: 'db' }], version: 1, sequenceNumber: 0, localPreference, med: 0 };
}

test('route tables: next hops of equal preference merge into one ECMP entry, a better preference wins, leaks follow the sources', () => {
  const tables = new RouteTables(new Map([['web', new Map<string, 'all' | Set<string>>([['web', 'all'], ['db', new Set(['10.96.0.20/32'])]])]]));
  const web = tables.materialize('web');
  tables.publish('node-a', 'db', entry('10.96.0.20/32', '192.168.0.11', 30));
  const changes = tables.publish('node-b', 'db', entry('10.96.0.20/32', '192.168.0.12', 31));
  assert.equal(changes.length, 1);
  assert.match(web.get('10.96.0.20/32')!.toString(), /192\.168\.0\.11.*192\.168\.0\.12/);
  tables.publish('node-a', 'db', entry('10.2.0.5/32', '192.168.0.11', 32));
  assert.equal(web.has('10.2.0.5/32'), false, 'only the ClusterIP leaks');
  tables.publish('node-c', 'db', entry('10.96.0.20/32', '192.168.0.13', 33, 300));
  assert.doesNotMatch(web.get('10.96.0.20/32')!.toString(), /192\.168\.0\.11/);
  tables.withdraw('node-c', 'db', '10.96.0.20/32');
  tables.withdraw('node-a', 'db', '10.96.0.20/32');
  assert.doesNotMatch(web.get('10.96.0.20/32')!.toString(), /192\.168\.0\.11/);
  assert.deepEqual(tables.withdraw('node-b', 'db', '10.96.0.20/32'), [{ view: 'web', prefix: '10.96.0.20/32', item: null }]);
  assert.equal(web.size, 0);
  // The leak goes away with the sources.
  tables.publish('node-b', 'db', entry('10.96.0.20/32', '192.168.0.12', 31));
  assert.deepEqual(tables.setSources(new Map([['web', new Map([['web', 'all' as const]])]])), [{ view: 'web', prefix: '10.96.0.20/32', item: null }]);
});
