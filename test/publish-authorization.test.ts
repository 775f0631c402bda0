/**
 * The control node's publish checks over real sockets: vrouters are the
 * project's XmppSession on a TCP connection to a ControlNode, pods are
 * registered on the control node (as its pod API does), and what one
 * vrouter may publish is what the control node gave its ports.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ControlNode } from '../src/control/node/control-node';
import { parseNetworkConfig } from '../src/control/node/network-config';
import { networkFqns } from '../src/control/ifmap/names';
import { CONTROL_NODE_JID } from '../src/control/xmpp/stanza';
import { eventually } from './support/eventually';
import { listenWithVrouters, nexthop, pod } from './support/fake-vrouter';
import { RecordingLogger } from './support/recording-logger';

const CONFIG = `
holdTime: 90
gracefulRestartTime: 60
vns:
  - { name: default, subnet: 10.32.0.0/24 }
  - { name: web, subnet: 10.1.1.0/24 }
  - { name: db, subnet: 10.2.0.0/24 }
services:
  - name: db
    clusterIP: 10.96.0.20
    ports: [{ protocol: TCP, port: 5432, targetPort: 15432 }]
    selector: { app: db }
`;

const VRF = (vn: string) => networkFqns(vn).routingInstance;
const TO_PEER = `${CONTROL_NODE_JID}/bgp-peer`;

function ipOf(outcome: ReturnType<ControlNode['registerPod']>): string {
  assert.ok('config' in outcome, JSON.stringify(outcome));
  return outcome.config.ip;
}

test("a vrouter may install only what its ports were given, with one next hop; refusals are counted and logged, the session kept, and what is no longer given is withdrawn", async () => {
  const logger = new RecordingLogger();
  const control = new ControlNode({ config: parseNetworkConfig(CONFIG, 'test.yaml'), logger });
  const { vrouters: [a, b, observer] } = await listenWithVrouters(control, 'node-a', 'node-b', 'node-c');
  try {
    const a1 = ipOf(control.registerPod('node-a', pod('a1', 20, { name: 'web' })));
    const b1 = ipOf(control.registerPod('node-b', pod('b1', 21, { name: 'web' })));
    control.registerPod('node-b', pod('b2', 22, { name: 'db', app: 'db' }));
    for (const vrouter of [a, b, observer]) {
      vrouter.subscribe('web');
      vrouter.subscribe('db');
    }
    await eventually(() => assert.deepEqual(control.connectedVrouters().sort(), ['node-a', 'node-b', 'node-c']));

    a.publish('web', `${b1}/32`, [nexthop('192.168.0.11', 20, 'web')]); // another node's pod
    a.publish('web', '10.1.1.200/32', [nexthop('192.168.0.11', 20, 'web')]); // no port's
    a.publish('db', '10.96.0.20/32', [nexthop('192.168.0.11', 20, 'db')]); // a FIP of a pod it does not host
    a.publish('db', `${a1}/32`, [nexthop('192.168.0.11', 20, 'db')]); // its pod's address, in another instance
    // contrail-control's bad_inet_item_4 (a bad next-hop address), as a publish of its own pod's address.
    const badItem = readFileSync(join(__dirname, '..', '..', 'test', 'vectors', 'xmpp', 'bad_inet_item_4.xml')).toString()
      .replace('<address>10.1.1.1/32</address>', `<address>${a1}/32</address>`);
    a.send(`<iq type="set" from="node-a" to="${TO_PEER}" id="bad1"><pubsub xmlns="http://jabber.org/protocol/pubsub">` +
      `<publish node="1/1/${VRF('web')}/${a1}/32">${badItem}</publish></pubsub></iq>`);
    a.associate('web', `${a1}/32`);
    // Its own pod's address with two next hops: contrail-control's ProcessItem drops an agent's item with more than one.
    a.publish('web', `${a1}/32`, [nexthop('192.168.0.11', 20, 'web'), nexthop('192.168.0.11', 24, 'web')]);
    b.publish('web', `${b1}/32`, [nexthop('192.168.0.12', 21, 'web')]);
    b.publish('db', '10.96.0.20/32', [nexthop('192.168.0.12', 22, 'db')]);

    // The legit ones are installed and pushed; the session of node-a is still up for its legit publish.
    await eventually(() => assert.deepEqual(observer.route('db', '10.96.0.20/32')?.nexthops, [nexthop('192.168.0.12', 22, 'db')]));
    a.publish('web', `${a1}/32`, [nexthop('192.168.0.11', 20, 'web')]);
    await eventually(() => assert.deepEqual(observer.route('web', `${a1}/32`)?.nexthops, [nexthop('192.168.0.11', 20, 'web')]));
    assert.deepEqual(observer.route('web', `${b1}/32`)?.nexthops, [nexthop('192.168.0.12', 21, 'web')]);
    assert.equal(observer.route('web', '10.1.1.200/32'), undefined);
    assert.equal(observer.route('db', `${a1}/32`), undefined);
    assert.equal(a.closedReason, null);
    assert.ok(control.connectedVrouters().includes('node-a'));
    assert.deepEqual(control.refusedPublishes(), { malformed: 1, 'not-given': 4, 'next-hops': 1 });
    for (const [instance, prefix] of [[VRF('web'), `${b1}/32`], [VRF('web'), '10.1.1.200/32'], [VRF('db'), '10.96.0.20/32'], [VRF('db'), `${a1}/32`]]) {
      assert.ok(logger.has(new RegExp(`warn vrouter node-a: publish of ${prefix} in ${instance} refused \\(not-given\\)`)), logger.lines.join('\n'));
    }
    assert.ok(logger.has(new RegExp(`warn vrouter node-a: publish of ${a1}/32 in ${VRF('web')} refused \\(malformed\\): next-hop address is not an IPv4 address`)));
    assert.ok(logger.has(new RegExp(`warn vrouter node-a: publish of ${a1}/32 in ${VRF('web')} refused \\(next-hops\\): 2 next hops, not one`)));

    // A legit FIP: node-a hosts a db backend now, and the ClusterIP from it joins node-b's.
    control.registerPod('node-a', pod('a2', 23, { name: 'db', app: 'db' }));
    a.publish('db', '10.96.0.20/32', [nexthop('192.168.0.11', 23, 'db')]);
    await eventually(() =>
      assert.deepEqual(
        observer.route('db', '10.96.0.20/32')?.nexthops.map((hop) => hop.address).sort(),
        ['192.168.0.11', '192.168.0.12'],
      ),
    );

    // The port's configuration changes (its pod goes): what node-a published for it is withdrawn.
    assert.ok(control.unregisterPods('a2'));
    await eventually(() => assert.deepEqual(observer.route('db', '10.96.0.20/32')?.nexthops, [nexthop('192.168.0.12', 22, 'db')]));
    assert.ok(logger.has(new RegExp(`vrouter node-a: 10.96.0.20/32 in ${VRF('db')} withdrawn: no longer given to its ports`)));
    assert.deepEqual(observer.route('web', `${a1}/32`)?.nexthops, [nexthop('192.168.0.11', 20, 'web')]);
    assert.equal(a.closedReason, null);
  } finally {
    for (const vrouter of [a, b, observer]) vrouter.close();
    await control.close();
  }
});

test('a publish that overtakes its port is held, and installed once the port is given that prefix', async () => {
  const control = new ControlNode({ config: parseNetworkConfig(CONFIG, 'test.yaml'), logger: new RecordingLogger() });
  const { vrouters: [a, observer] } = await listenWithVrouters(control, 'node-a', 'node-c');
  try {
    a.subscribe('web');
    observer.subscribe('web');
    a.publish('web', '10.1.1.7/32', [nexthop('192.168.0.11', 20, 'web')]);
    await eventually(() => assert.equal(control.refusedPublishes()['not-given'], 1));
    assert.equal(observer.route('web', '10.1.1.7/32'), undefined);
    const registered = control.registerPod('node-a', { ...pod('a1', 20, { name: 'web' }), ip: '10.1.1.7' });
    assert.equal(ipOf(registered), '10.1.1.7');
    await eventually(() => assert.deepEqual(observer.route('web', '10.1.1.7/32')?.nexthops, [nexthop('192.168.0.11', 20, 'web')]));
  } finally {
    a.close();
    observer.close();
    await control.close();
  }
});

test("the external VN: a listed gateway may publish its routes there, a backend its external floating IP, nobody else", async () => {
  const config = parseNetworkConfig(`${CONFIG}
  - { name: websvc, clusterIP: 10.96.0.10, ports: [{ port: 80, targetPort: 8080 }], selector: { app: web }, externalIPs: [203.0.113.10] }
external: { name: public, subnet: 203.0.113.0/24, gateways: [{ vrouter: gw }] }
`, 'test.yaml');
  const control = new ControlNode({ config, logger: new RecordingLogger() });
  const { vrouters: [gw, a, observer] } = await listenWithVrouters(control, 'gw', 'node-a', 'node-c');
  try {
    control.registerPod('node-a', pod('a1', 20, { name: 'web', app: 'web' }));
    for (const vrouter of [gw, a, observer]) vrouter.subscribe('public');
    await eventually(() => assert.deepEqual(control.connectedVrouters().sort(), ['gw', 'node-a', 'node-c']));
    gw.publish('public', '0.0.0.0/0', [nexthop('192.168.0.10', 16, 'public')]);
    gw.publish('public', '198.51.100.0/24', [nexthop('192.168.0.10', 16, 'public')]); // not among its routes
    a.publish('public', '0.0.0.0/0', [nexthop('192.168.0.11', 20, 'public')]); // not a gateway
    a.publish('public', '203.0.113.10/32', [nexthop('192.168.0.11', 20, 'public')]);
    await eventually(() => assert.deepEqual(observer.route('public', '203.0.113.10/32')?.nexthops, [nexthop('192.168.0.11', 20, 'public')]));
    assert.deepEqual(observer.route('public', '0.0.0.0/0')?.nexthops, [nexthop('192.168.0.10', 16, 'public')]);
    assert.equal(observer.route('public', '198.51.100.0/24'), undefined);
    assert.deepEqual(control.refusedPublishes(), { malformed: 0, 'not-given': 2, 'next-hops': 0 });
  } finally {
    for (const vrouter of [gw, a, observer]) vrouter.close();
    await control.close();
  }
});
