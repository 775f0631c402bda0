/**
 * The control node serves its configuration as IF-MAP: a raw XMPP client
 * (what a real agent sends: its open, the config subscribes of
 * controller_peer.cc) collects the `<config>` IQs, applies them to an
 * IfmapGraph with the project's codec, and the port view derived from that
 * graph must be what the NetworkManager decided (a second NetworkManager fed
 * the same ports computes the expectation).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { derivePortView, portConfigOf } from '../src/control/agent/ifmap-port-view';
import type { LocalPort, PortConfig, PortPolicy } from '../src/control/agent/agent-interface';
import { encodeConfigSubscribe, virtualMachineSubscription, virtualRouterSubscription } from '../src/control/ifmap/codec';
import { children, IfmapGraph, property } from '../src/control/ifmap/graph';
import { networkFqns } from '../src/control/ifmap/names';
import type { IfmapElement } from '../src/control/ifmap/types';
import { ControlNode } from '../src/control/node/control-node';
import { buildConfigGraph, interfaceName } from '../src/control/node/ifmap-publisher';
import { NetworkManager, PortDecision } from '../src/control/node/network-manager';
import { NetworkConfig, parseNetworkConfig } from '../src/control/node/network-config';
import { decodeStanza, encodeStreamOpen } from '../src/control/xmpp/codec';
import { CONTROL_NODE_JID, Stanza } from '../src/control/xmpp/stanza';
import { XmppStreamParser } from '../src/control/xmpp/stream-parser';

const CONFIG = `
vns:
  - { name: default, subnet: 10.32.0.0/24 }
  - { name: web, subnet: 10.1.1.0/24 }
  - { name: db, subnet: 10.2.0.0/24, gateway: 10.2.0.254 }
services:
  - name: db
    clusterIP: 10.96.0.20
    ports: [{ protocol: TCP, port: 5432, targetPort: 15432 }, { protocol: UDP, port: 53, targetPort: 5353 }]
    selector: { app: db }
  - name: cache
    clusterIP: 10.96.0.30
    ports: [{ port: 6379 }]
    selector: { app: cache }
policies:
  - { name: web-to-db-admin, from: web, to: db, protocol: tcp, ports: [8080, { from: 9000, to: 9100 }], action: allow }
  - { name: no-default-to-db, from: default, to: db, action: deny }
`;

/** The same VNs, the cache service gone, another policy: a reload. */
const RELOADED = `
vns:
  - { name: default, subnet: 10.32.0.0/24 }
  - { name: web, subnet: 10.1.1.0/24 }
  - { name: db, subnet: 10.2.0.0/24, gateway: 10.2.0.254 }
services:
  - name: db
    clusterIP: 10.96.0.20
    ports: [{ protocol: TCP, port: 5432, targetPort: 15432 }]
    selector: { app: db }
policies:
  - { name: web-icmp-db, from: web, to: db, protocol: icmp, action: allow }
`;

function config(text: string): NetworkConfig {
  return parseNetworkConfig(text, 'test.yaml');
}

function pod(id: string, label: number, labels: Record<string, string>, extra: Partial<LocalPort> = {}): LocalPort {
  return { id, name: id, namespace: 'default', labels, mac: `02:00:00:00:00:${label.toString(16).padStart(2, '0')}`, label, ...extra };
}

/** A vrouter as a real agent talks IF-MAP: stream open, config subscribes; every config IQ goes into `graph`. */
class IfmapAgent {
  readonly graph = new IfmapGraph();
  readonly received: Stanza[] = [];
  private readonly socket: net.Socket;

  constructor(readonly name: string, port: number) {
    const parser = new XmppStreamParser({
      streamOpen: () => undefined,
      stanza: (element) => {
        const stanza = decodeStanza(element) as Stanza;
        this.received.push(stanza);
        if (stanza.kind === 'config-update') for (const change of stanza.changes) this.graph.apply(change);
      },
      streamClose: () => undefined,
    });
    this.socket = net.connect(port, '127.0.0.1');
    this.socket.on('data', (chunk) => parser.write(chunk));
    this.socket.write(encodeStreamOpen({ from: name, to: CONTROL_NODE_JID }));
  }

  subscribe(node: string, subscribe = true): void {
    this.socket.write(encodeConfigSubscribe(this.name, `${CONTROL_NODE_JID}/config`, node, subscribe));
  }

  close(): void {
    this.socket.destroy();
  }
}

async function eventually(check: () => void, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return check();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

/**
 * The NetworkManager's decision in IF-MAP's words: VNs by FQN, the rules of
 * the port's VN as its access-control-list `<vn FQN>:<vn>` has them (the
 * agent reads the ACL over the network-policies): `<acl>/<index>` in their
 * order (the derived order numbers differ, their sequence does not).
 */
function expected(decided: PortDecision): Omit<PortConfig, 'policies'> & { policies: Array<Omit<PortPolicy, 'order'>> } {
  const fqn = (vn: string) => networkFqns(vn).vn;
  const acl = `${fqn(decided.vn)}:${decided.vn}`;
  return {
    vrf: networkFqns(decided.vn).routingInstance,
    vn: fqn(decided.vn),
    ip: decided.ip,
    subnet: decided.subnet,
    gateway: decided.gateway,
    floatingIps: decided.floatingIps,
    policies: [...decided.policies]
      .sort((a, b) => a.order - b.order)
      .map(({ order: _order, ...rule }, index) => ({ ...rule, name: `${acl}/${index}`, sourceVn: fqn(rule.sourceVn), destinationVn: fqn(rule.destinationVn) })),
  };
}

function derived(graph: IfmapGraph, port: LocalPort): ReturnType<typeof expected> | string {
  const view = derivePortView(graph, interfaceName(port));
  const config = portConfigOf(view);
  if (config === undefined) return view.reason ?? 'no address';
  const { policies, vrf, vn, ip, subnet, gateway, floatingIps } = config;
  return {
    vrf, vn, ip, subnet, gateway, floatingIps,
    policies: [...policies].sort((a, b) => a.order - b.order).map(({ order: _order, ...rule }) => rule),
  };
}

test('the IF-MAP graph the control node sends gives each port what the NetworkManager decided, through adds, removals and a reload', async () => {
  const node = new ControlNode({ config: config(CONFIG) });
  const { port } = await node.listen(0, '127.0.0.1');
  const reference = new NetworkManager(config(CONFIG));
  const a = new IfmapAgent('node-a', port);
  const b = new IfmapAgent('node-b', port);
  const ports: Array<[IfmapAgent, LocalPort]> = [
    [a, pod('db-1', 20, { name: 'db', app: 'db' }, { vmUuid: '2d308482-c7b3-4e05-af14-e732b7b50117' })],
    [a, pod('web-1', 21, { name: 'web', uses: 'db' })],
    [b, pod('db-2', 22, { name: 'db', app: 'db' })],
    [b, pod('cache-1', 23, { name: 'web', app: 'cache', uses: 'db' })],
    [b, pod('stranger', 24, { name: 'nope' })],
  ];
  const check = () =>
    eventually(() => {
      for (const [agent, local] of ports) {
        const decided = reference.outcomeOf(agent.name, local.id)!;
        assert.ok('config' in decided);
        assert.deepEqual(derived(agent.graph, local), expected(decided.config), `${agent.name} ${local.id}`);
      }
    });
  try {
    a.subscribe(virtualRouterSubscription('node-a'));
    b.subscribe(virtualRouterSubscription('node-b'));
    for (const [agent, local] of ports) {
      node.registerPod(agent.name, local);
      agent.subscribe(virtualMachineSubscription(local.vmUuid ?? local.id));
      reference.addPort(agent.name, local);
    }
    await check();
    // The ClusterIP of db is one floating-ip linked to both backends; each vrouter sees only its own.
    assert.ok(a.graph.node('virtual-machine-interface', interfaceName(ports[0][1])));
    assert.equal(b.graph.node('virtual-machine-interface', interfaceName(ports[0][1])), undefined);
    assert.equal(a.graph.node('virtual-router', 'default-global-system-config:node-b'), undefined);
    const vm = a.graph.node('virtual-machine', '2d308482-c7b3-4e05-af14-e732b7b50117')!;
    assert.deepEqual(a.graph.neighbours(vm, 'virtual-router').map((router) => router.name), ['default-global-system-config:node-a']);

    // A removed port's VM, VMI and instance-ip are deleted on its vrouter; the others follow the new rules.
    const updatesBefore = b.received.length;
    node.unregisterPods('cache-1');
    b.subscribe(virtualMachineSubscription('cache-1'), false);
    reference.removePort('node-b', 'cache-1');
    ports.splice(3, 1);
    await check();
    await eventually(() => assert.equal(b.graph.node('virtual-machine-interface', interfaceName(pod('cache-1', 23, {}))), undefined));
    const sinceRemoval = b.received.slice(updatesBefore).flatMap((stanza) => (stanza.kind === 'config-update' ? stanza.changes : []));
    assert.ok(sinceRemoval.some((change) => change.op === 'delete' && change.nodes.some((n) => n.type === 'instance-ip')), 'the removal came as a <delete>');

    node.reload(config(RELOADED));
    reference.setConfig(config(RELOADED));
    await check();
    assert.equal([...a.graph.allNodes()].filter((n) => n.type === 'network-policy' && n.name.endsWith('web-to-db-admin 8080-8080')).length, 0, 'the old policy was deleted');
    const dbAcl = a.graph.node('access-control-list', 'default-domain:default-project:db:db')!;
    const dbRules = reference.policyRules.filter((rule) => rule.sourceVn === 'db' || rule.destinationVn === 'db');
    assert.equal(children(property(dbAcl, 'access-control-list-entries'), 'acl-rule').length, dbRules.length + 2, 'the ACL was re-rendered: the new rules and the two implicit ones');
    assert.equal(a.graph.node('access-control-list', 'default-domain:default-project:default:default'), undefined, 'a VN left without rules has no ACL');
  } finally {
    a.close();
    b.close();
    await node.close();
  }
});

test('only the own virtual-router is served; a VM subscribed before its port arrives gets its subgraph when it comes', async () => {
  const node = new ControlNode({ config: config(CONFIG) });
  const { port } = await node.listen(0, '127.0.0.1');
  const a = new IfmapAgent('node-a', port);
  try {
    a.subscribe(virtualRouterSubscription('node-b'));
    a.subscribe('bgp-router:whatever');
    a.subscribe(virtualRouterSubscription('node-a'));
    await eventually(() => assert.ok(a.graph.node('virtual-router', 'default-global-system-config:node-a')));
    assert.equal(a.graph.nodeCount, 1);
    const web = pod('web-1', 21, { name: 'web' });
    a.subscribe(virtualMachineSubscription('web-1'));
    node.registerPod('node-a', web);
    await eventually(() => assert.equal(typeof derived(a.graph, web), 'object'));
    assert.deepEqual(node.connectedVrouters(), ['node-a'], 'the refused subscribes kept the session');
  } finally {
    a.close();
    await node.close();
  }
});

/** An element as the codec decodes it, to compare with what the graph holds. */
function el(name: string, content: string | IfmapElement[] = ''): IfmapElement {
  return typeof content === 'string' ? { name, attributes: {}, text: content, children: [] } : { name, attributes: {}, text: '', children: content };
}

/**
 * The shape of the schema transformer's static ACL of a VN: AclEntriesType,
 * AclRuleType, MatchConditionType, AddressType, PortType, ActionListType in
 * the element order of tungstenfabric/tf-api-client @ c0011de9
 * schema/vnc_cfg.xsd; protocol numbers, the two closing implicit rules and
 * their rule-uuids as tungstenfabric/tf-controller @
 * 6a674397821187fedfffd9586942b906d3479dbc renders them
 * (src/config/schema-transformer/schema_transformer/resources/virtual_network.py
 * evaluate, policy_to_acl_rule, protocol_policy_to_acl;
 * src/config/common/cfgm_common/__init__.py RULE_IMPLICIT_*_UUID); the name
 * `<vn FQN>:<vn>` and the link as in src/ifmap/testdata/cli1_vn2_np1_add.master_output.
 */
test('each VN with rules has the access-control-list the schema transformer renders from them, next to the network-policies', () => {
  const manager = new NetworkManager(config(CONFIG));
  manager.addPort('node-a', pod('db-1', 20, { name: 'db', app: 'db' }));
  const graph = buildConfigGraph(config(CONFIG), [], manager.policyRules);
  const db = graph.node('virtual-network', 'default-domain:default-project:db')!;
  const acls = graph.neighbours(db, 'access-control-list');
  assert.deepEqual(acls.map((acl) => acl.name), ['default-domain:default-project:db:db']);
  assert.ok(
    [...graph.allLinks()].some((link) => link.metadata === 'virtual-network-access-control-list' && [link.left.name, link.right.name].includes(db.name)),
    'linked with virtual-network-access-control-list',
  );
  assert.equal(graph.neighbours(db, 'virtual-network-network-policy').length, 3, 'the network-policies stay attached');
  const address = (name: string, vn: string, subnet?: [string, string]) =>
    el(name, [...(subnet ? [el('subnet', [el('ip-prefix', subnet[0]), el('ip-prefix-len', subnet[1])])] : []), el('virtual-network', vn)]);
  const ports = (name: string, from: string, to: string) => el(name, [el('start-port', from), el('end-port', to)]);
  const rule = (protocol: string, src: string, dst: string, dstPorts: [string, string], action: string, ruleUuid?: string) =>
    el('acl-rule', [
      el('match-condition', [
        el('protocol', protocol), address('src-address', src), ports('src-port', '-1', '-1'), address('dst-address', dst), ports('dst-port', ...dstPorts), el('ethertype', 'IPv4'),
      ]),
      el('action-list', [el('simple-action', action)]),
      ...(ruleUuid ? [el('rule-uuid', ruleUuid)] : []),
      el('direction', '>'),
    ]);
  const web = 'default-domain:default-project:web';
  const def = 'default-domain:default-project:default';
  assert.deepEqual(property(acls[0], 'access-control-list-entries'), el('access-control-list-entries', [
    el('dynamic', 'false'),
    rule('6', web, db.name, ['8080', '8080'], 'pass'),
    rule('6', web, db.name, ['9000', '9100'], 'pass'),
    rule('any', def, db.name, ['0', '65535'], 'deny'),
    rule('any', db.name, db.name, ['-1', '-1'], 'pass', '00000000-0000-0000-0000-100000000001'),
    rule('any', 'any', 'any', ['-1', '-1'], 'deny', '00000000-0000-0000-0000-100000000002'),
  ]));
});
