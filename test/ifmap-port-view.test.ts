/**
 * The port view derived from the IF-MAP graph: against contrail-control's
 * own test output (test/vectors/ifmap/, tungstenfabric/tf-controller @
 * 6a674397, src/ifmap/testdata/cli1_vn1_vm3_add.master_output and
 * cli1_vn2_np1_add.master_output), and against hand-built graphs for what
 * those files lack (routing instance, floating IP, interface route table,
 * network policy; schema names from tungstenfabric/tf-api-client
 * schema/vnc_cfg.xsd), deletes and a link arriving before its node.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SaxesParser } from 'saxes';
import { decodeConfig } from '../src/control/ifmap/codec';
import { IfmapGraph } from '../src/control/ifmap/graph';
import type { IfmapElement, IfmapIdentity, IfmapNode } from '../src/control/ifmap/types';
import { derivePortView, portConfigOf } from '../src/control/agent/ifmap-port-view';
import type { XmlElement } from '../src/control/xmpp/stream-parser';

const VECTORS = path.resolve(__dirname, '..', '..', 'test', 'vectors', 'ifmap');

/** The graph the IQs of a .master_output build, applied in order. */
function graphOf(file: string): IfmapGraph {
  return graphOfXml(fs.readFileSync(path.join(VECTORS, file), 'utf8'));
}

/** The graph IQs (or bare `<config>` elements under one IQ) build, applied in order onto `graph`. */
function graphOfXml(xml: string, graph = new IfmapGraph()): IfmapGraph {
  const parser = new SaxesParser({ xmlns: false });
  const open: XmlElement[] = [];
  const stanzas: XmlElement[] = [];
  parser.on('opentag', (tag) => {
    const element: XmlElement = { name: tag.name, attributes: tag.attributes as Record<string, string>, children: [], text: '' };
    if (open.length > 1) open[open.length - 1].children.push(element);
    open.push(element);
  });
  parser.on('text', (text) => {
    if (open.length > 1) open[open.length - 1].text += text;
  });
  parser.on('closetag', () => {
    const element = open.pop()!;
    if (open.length === 1) stanzas.push(element);
  });
  parser.write(`<root>${xml}</root>`).close();
  for (const iq of stanzas) for (const change of decodeConfig(iq.children[0])) graph.apply(change);
  return graph;
}

test('cli1_vn1_vm3_add: each VMI gives its MAC, VM, VN, address and the IPAM subnet; no routing instance is sent', () => {
  const graph = graphOf('cli1_vn1_vm3_add.master_output');
  const byUuid = derivePortView(graph, 'ef1e9828-05b6-44a2-a410-d1b662594fc3');
  assert.deepEqual(byUuid, {
    vmi: '2d308482-c7b3-4e05-af14-e732b7b50117:ef1e9828-05b6-44a2-a410-d1b662594fc3',
    uuid: 'ef1e9828-05b6-44a2-a410-d1b662594fc3',
    mac: '02:ef:1e:98:28:05',
    vm: '2d308482-c7b3-4e05-af14-e732b7b50117',
    vn: 'default-domain:demo:vn27',
    routingInstance: '',
    ip: '27.1.1.252', ip6: '',
    subnet: '27.1.1.0/24', gateway: '27.1.1.254', subnet6: '', gateway6: '',
    floatingIps: [], staticRoutes: [], policies: [],
    reason: 'no routing-instance yet',
  });
  assert.deepEqual(derivePortView(graph, byUuid.vmi), byUuid, 'by FQN as by uuid');
  const others = ['93e76278-1990-4905-a472-8e9188f41b2c:c4287577-b6af-4cca-a21d-6470a08af68a', '43d086ab-52c4-4a1f-8c3d-63b321e36e8a:100698e8-dc7a-4bf3-bebe-3fff718bf3c9']
    .map((fqn) => derivePortView(graph, fqn))
    .map(({ uuid, mac, ip }) => ({ uuid, mac, ip }));
  assert.deepEqual(others, [
    { uuid: 'c4287577-b6af-4cca-a21d-6470a08af68a', mac: '02:c4:28:75:77:b6', ip: '27.1.1.251' },
    { uuid: '100698e8-dc7a-4bf3-bebe-3fff718bf3c9', mac: '02:10:06:98:e8:dc', ip: '27.1.1.253' },
  ]);
  assert.equal(derivePortView(graph, 'no-such-vmi').reason, 'no virtual-machine-interface yet');
});

test('cli1_vn2_np1_add: the VN\'s access-control-list gives the rules between the two VNs', () => {
  const graph = graphOf('cli1_vn2_np1_add.master_output');
  const view = derivePortView(graph, 'f591e4dc-b677-42a8-82bf-a22fa91b5ee1');
  assert.equal(view.vn, 'default-domain:demo:vn27-2');
  assert.equal(view.ip, '27.2.2.253');
  assert.equal(view.subnet, '27.2.2.0/24');
  assert.equal(view.gateway, '27.2.2.254');
  const rule = (index: number, sourceVn: string, destinationVn: string) => ({
    name: `default-domain:demo:vn27-2:vn27-2/${index}`, order: index, sourceVn, destinationVn,
    protocol: 'any', portFrom: 0, portTo: 65535, action: 'allow',
  });
  assert.deepEqual(view.policies, [
    rule(0, 'default-domain:demo:vn27-1', 'default-domain:demo:vn27-2'),
    rule(1, 'default-domain:demo:vn27-2', 'default-domain:demo:vn27-1'),
    rule(2, 'default-domain:demo:vn27-2', 'default-domain:demo:vn27-2'),
  ]);
});

/** An element with text or children, as the codec decodes one. */
function el(name: string, content: string | IfmapElement[] = ''): IfmapElement {
  return typeof content === 'string' ? { name, attributes: {}, text: content, children: [] } : { name, attributes: {}, text: '', children: content };
}

function node(type: string, name: string, properties: IfmapElement[] = []): IfmapNode {
  return { type, name, properties };
}

const VMI = node('virtual-machine-interface', 'default-domain:default-project:pod1', [
  el('virtual-machine-interface-mac-addresses', [el('mac-address', '02:00:00:00:00:01')]),
  el('id-perms', [el('uuid', [el('uuid-mslong', '1'), el('uuid-lslong', '2')])]),
]);
const VN = node('virtual-network', 'default-domain:default-project:vn1');
const SERVICE_RI = node('routing-instance', 'default-domain:default-project:vn1:service-chain');
const RI = node('routing-instance', 'default-domain:default-project:vn1:vn1');
const IIP = node('instance-ip', 'iip1', [el('instance-ip-address', '10.1.1.3')]);
const IIP6 = node('instance-ip', 'iip6', [el('instance-ip-address', 'fd00:1::3')]);
const IIP_BAD = node('instance-ip', 'iip-bad', [el('instance-ip-address', '1::2::3')]);
const IPAM = node('network-ipam', 'default-domain:default-project:default-network-ipam');
const subnet = (prefix: string, len: string, gateway: string) =>
  el('ipam-subnets', [el('subnet', [el('ip-prefix', prefix), el('ip-prefix-len', len)]), el('default-gateway', gateway)]);
const VN_IPAM = node('virtual-network-network-ipam', `attr(${IPAM.name},${VN.name})`, [
  el('value', [subnet('10.9.0.0', '16', '10.9.0.1'), subnet('10.1.1.0', '24', '10.1.1.1'), subnet('fd00:1::', '64', 'fd00:1::1')]),
]);
const PUBLIC_VN = node('virtual-network', 'default-domain:default-project:public');
const POOL = node('floating-ip-pool', 'default-domain:default-project:public:pool');
const FIP = node('floating-ip', 'default-domain:default-project:public:pool:fip1', [
  el('floating-ip-address', '192.0.2.10'),
  el('floating-ip-port-mappings', [
    el('port-mappings', [el('protocol', 'tcp'), el('src-port', '80'), el('dst-port', '8080')]),
    el('port-mappings', [el('protocol', '17'), el('src-port', '53'), el('dst-port', '5353')]),
    // ICMP has no ports to map: the agent's map would key it by protocol only, PortMapping cannot say it.
    el('port-mappings', [el('protocol', 'icmp'), el('src-port', '0'), el('dst-port', '0')]),
  ]),
]);
const IRT = node('interface-route-table', 'default-domain:default-project:irt1', [
  el('interface-route-table-routes', [
    el('route', [el('prefix', '172.16.0.0/24'), el('next-hop', '10.1.1.3'), el('next-hop-type', 'ip-address')]),
    el('route', [el('prefix', '172.17.0.0/16')]),
  ]),
]);
const NP = node('network-policy', 'default-domain:default-project:web', [
  el('network-policy-entries', [
    el('policy-rule', [
      el('direction', '<>'), el('protocol', 'tcp'),
      el('src-addresses', [el('virtual-network', 'local')]),
      el('src-ports', [el('start-port', '-1'), el('end-port', '-1')]),
      el('dst-addresses', [el('virtual-network', PUBLIC_VN.name)]),
      el('dst-ports', [el('start-port', '80'), el('end-port', '443')]),
      el('action-list', [el('simple-action', 'pass')]),
    ]),
    el('policy-rule', [
      el('direction', '>'), el('protocol', 'any'),
      el('src-addresses', [el('virtual-network', 'any')]),
      el('dst-addresses', [el('subnet', [el('ip-prefix', '10.2.0.0'), el('ip-prefix-len', '16')])]),
      el('action-list', [el('simple-action', 'deny')]),
    ]),
  ]),
]);
const VN_NP = node('virtual-network-network-policy', `attr(${NP.name},${VN.name})`, [el('value', [el('sequence', [el('major', '0'), el('minor', '0')])])]);

function link(left: IfmapIdentity, right: IfmapIdentity) {
  return { left, right, metadata: `${left.type}-${right.type}` };
}

function attrLinks(attr: IfmapNode, a: IfmapIdentity, b: IfmapIdentity) {
  return [{ left: a, right: attr, metadata: attr.type }, { left: attr, right: b, metadata: attr.type }];
}

function handGraph(): IfmapGraph {
  const graph = new IfmapGraph();
  graph.apply({
    op: 'update',
    nodes: [VMI, VN, SERVICE_RI, RI, IIP_BAD, IIP, IIP6, IPAM, VN_IPAM, PUBLIC_VN, POOL, FIP, IRT, NP, VN_NP, node('unknown-thing', 'x', [el('whatever', 'y')])],
    links: [
      link(VMI, VN), link(IIP_BAD, VMI), link(IIP, VMI), link(IIP6, VMI), link(VN, SERVICE_RI), link(VN, RI),
      ...attrLinks(VN_IPAM, VN, IPAM),
      link(FIP, VMI), link(POOL, FIP), link(PUBLIC_VN, POOL), link(VMI, IRT),
      ...attrLinks(VN_NP, VN, NP),
      link(VMI, { type: 'unknown-thing', name: 'x' }),
    ],
  });
  return graph;
}

test('a hand-built graph: the VN\'s own routing instance, v4 and v6 subnets, floating IP, routes and policy', () => {
  const view = derivePortView(handGraph(), '00000000-0000-0001-0000-000000000002');
  const policy = { protocol: 'tcp', portFrom: 80, portTo: 443, action: 'allow' };
  assert.deepEqual(view, {
    vmi: VMI.name, uuid: '00000000-0000-0001-0000-000000000002', mac: '02:00:00:00:00:01', vm: '',
    vn: VN.name, routingInstance: RI.name,
    ip: '10.1.1.3', ip6: 'fd00:1::3',
    subnet: '10.1.1.0/24', gateway: '10.1.1.1', subnet6: 'fd00:1::/64', gateway6: 'fd00:1::1',
    floatingIps: [{ ip: '192.0.2.10', vn: PUBLIC_VN.name, external: false, portMap: [{ protocol: 'tcp', port: 80, targetPort: 8080 }, { protocol: 'udp', port: 53, targetPort: 5353 }] }],
    staticRoutes: [{ prefix: '172.16.0.0/24', nextHop: '10.1.1.3' }, { prefix: '172.17.0.0/16', nextHop: '' }],
    policies: [
      { ...policy, order: 0, name: `${NP.name}/0`, sourceVn: VN.name, destinationVn: PUBLIC_VN.name },
      { ...policy, order: 1, name: `${NP.name}/0/reverse`, sourceVn: PUBLIC_VN.name, destinationVn: VN.name },
      { order: 2, name: `${NP.name}/1`, sourceVn: 'any', destinationVn: 'any', protocol: 'any', portFrom: 0, portTo: 65535, destinationPrefix: '10.2.0.0/16', action: 'deny' },
    ],
  });
  assert.deepEqual(portConfigOf(view), {
    vrf: RI.name, vn: VN.name, ip: '10.1.1.3', subnet: '10.1.1.0/24', gateway: '10.1.1.1',
    // Dual stack: the second instance-ip and the VN's IPv6 ipam subnet.
    ip6: view.ip6, subnet6: view.subnet6, gateway6: view.gateway6,
    floatingIps: [{ ip: '192.0.2.10', portMap: view.floatingIps[0].portMap }], policies: view.policies,
  });
});

test('a floating IP of a router-external VN\'s pool is published in that VN (a gateway\'s external address)', () => {
  const graph = handGraph();
  // router-external: tungstenfabric/tf-api-client c0011de96de769774283b5167aa0ecdd216dbe92 schema/vnc_cfg.xsd, a virtual-network property.
  graph.apply({ op: 'update', nodes: [node('virtual-network', PUBLIC_VN.name, [el('router-external', 'true')])], links: [] });
  const view = derivePortView(graph, '00000000-0000-0001-0000-000000000002');
  assert.equal(view.floatingIps[0].external, true);
  assert.deepEqual(portConfigOf(view)?.floatingIps, [{ ip: '192.0.2.10', portMap: view.floatingIps[0].portMap, vn: PUBLIC_VN.name }]);
  graph.apply({ op: 'update', nodes: [node('virtual-network', PUBLIC_VN.name, [el('router-external', 'false')])], links: [] });
  assert.equal(portConfigOf(derivePortView(graph, '00000000-0000-0001-0000-000000000002'))?.floatingIps[0].vn, undefined);
});

test('after a delete of the instance-ips the view says it is incomplete', () => {
  const graph = handGraph();
  graph.apply({ op: 'delete', nodes: [IIP, IIP6], links: [link(IIP, VMI), link(IIP6, VMI)] });
  const view = derivePortView(graph, VMI.name);
  assert.equal(view.reason, 'no instance-ip yet');
  assert.equal(view.ip, '');
  assert.equal(view.subnet, '');
  assert.equal(portConfigOf(view), undefined);
  graph.apply({ op: 'delete', nodes: [], links: [link(VMI, VN)] });
  assert.equal(derivePortView(graph, VMI.name).reason, 'no virtual-network yet');
});

test('a link arriving before its node: the VMI is a bare link end until its update, then the view completes', () => {
  const graph = new IfmapGraph();
  graph.apply({ op: 'update', nodes: [], links: [link(VMI, VN), link(IIP, VMI), link(VN, RI), ...attrLinks(VN_IPAM, VN, IPAM)] });
  assert.equal(derivePortView(graph, VMI.name).reason, 'no virtual-machine-interface yet');
  graph.apply({ op: 'update', nodes: [VMI], links: [] });
  assert.equal(derivePortView(graph, VMI.name).reason, 'no instance-ip yet', 'the instance-ip is linked but has no address');
  graph.apply({ op: 'update', nodes: [IIP], links: [] });
  assert.equal(derivePortView(graph, VMI.name).reason, 'no ipam subnet holding the instance-ip yet');
  graph.apply({ op: 'update', nodes: [VN_IPAM], links: [] });
  const view = derivePortView(graph, VMI.name);
  assert.equal(view.reason, undefined);
  assert.deepEqual([view.routingInstance, view.ip, view.subnet, view.gateway], [RI.name, '10.1.1.3', '10.1.1.0/24', '10.1.1.1']);
});

test('the VMI\'s own routing-instance link, when its attribute names a plain VRF, wins over the VN\'s instance', () => {
  const graph = handGraph();
  const vrf = node('routing-instance', 'default-domain:default-project:vn1:pbf');
  const rule = (fields: IfmapElement[]) => node('virtual-machine-interface-routing-instance', `attr(${VMI.name},${vrf.name})`, [el('value', fields)]);
  graph.apply({ op: 'update', nodes: [vrf], links: attrLinks(rule([]), VMI, vrf) });
  assert.equal(derivePortView(graph, VMI.name).routingInstance, RI.name, 'an attribute with no direction yet is skipped');
  graph.apply({ op: 'update', nodes: [rule([el('direction', 'both'), el('vlan-tag', '100')])], links: [] });
  assert.equal(derivePortView(graph, VMI.name).routingInstance, RI.name, 'a service VLAN is not the port\'s VRF');
  graph.apply({ op: 'update', nodes: [rule([el('direction', 'both'), el('vlan-tag', '0')])], links: [] });
  assert.equal(derivePortView(graph, VMI.name).routingInstance, vrf.name);
});

/**
 * An ACL with what the schema transformer adds to what the testdata shows:
 * protocol numbers, a `<>` rule and the two implicit closing rules
 * (tungstenfabric/tf-controller 6a674397821187fedfffd9586942b906d3479dbc,
 * src/config/schema-transformer/schema_transformer/resources/virtual_network.py
 * evaluate; rule-uuids from src/config/common/cfgm_common/__init__.py). The
 * acl-rule layout is the agent's own test helper's (src/vnsw/agent/test/test_util.cc
 * AddAceEntry: src and dst port ranges, `&lt;&gt;` as AddFirewall writes a direction).
 */
const ACL_IQ = `<iq type="set" from="network-control@contrailsystems.com" to="node/config"><config><update>
 <node type="access-control-list"><name>${VN.name}:vn1</name><access-control-list-entries>
  <dynamic>false</dynamic>
  <acl-rule><match-condition><protocol>6</protocol>
   <src-address><virtual-network>${VN.name}</virtual-network></src-address><src-port><start-port>-1</start-port><end-port>-1</end-port></src-port>
   <dst-address><virtual-network>${PUBLIC_VN.name}</virtual-network></dst-address><dst-port><start-port>80</start-port><end-port>443</end-port></dst-port>
   <ethertype>IPv4</ethertype></match-condition>
   <action-list><simple-action>pass</simple-action></action-list><rule-uuid>5f3e1b6c-1d1a-4d43-9a59-0c9b8a3b7a11</rule-uuid><direction>&lt;&gt;</direction></acl-rule>
  <acl-rule><match-condition><protocol>17</protocol>
   <src-address><virtual-network>any</virtual-network></src-address><src-port><start-port>-1</start-port><end-port>-1</end-port></src-port>
   <dst-address><subnet><ip-prefix>10.2.0.0</ip-prefix><ip-prefix-len>16</ip-prefix-len></subnet><virtual-network>${VN.name}</virtual-network></dst-address>
   <dst-port><start-port>53</start-port><end-port>53</end-port></dst-port><ethertype>IPv4</ethertype></match-condition>
   <action-list><simple-action>deny</simple-action></action-list><direction>&gt;</direction></acl-rule>
  <acl-rule><match-condition><protocol>any</protocol>
   <src-address><virtual-network>${VN.name}</virtual-network></src-address><src-port><start-port>-1</start-port><end-port>-1</end-port></src-port>
   <dst-address><virtual-network>${VN.name}</virtual-network></dst-address><dst-port><start-port>-1</start-port><end-port>-1</end-port></dst-port>
   <ethertype>IPv4</ethertype></match-condition>
   <action-list><simple-action>pass</simple-action></action-list><rule-uuid>00000000-0000-0000-0000-100000000001</rule-uuid></acl-rule>
  <acl-rule><match-condition><protocol>any</protocol>
   <src-address><virtual-network>any</virtual-network></src-address><src-port><start-port>-1</start-port><end-port>-1</end-port></src-port>
   <dst-address><virtual-network>any</virtual-network></dst-address><dst-port><start-port>-1</start-port><end-port>-1</end-port></dst-port>
   <ethertype>IPv4</ethertype></match-condition>
   <action-list><simple-action>deny</simple-action></action-list><rule-uuid>00000000-0000-0000-0000-100000000002</rule-uuid></acl-rule>
 </access-control-list-entries></node>
 <link><node type="virtual-network"><name>${VN.name}</name></node><node type="access-control-list"><name>${VN.name}:vn1</name></node>
  <metadata type="virtual-network-access-control-list"/></link>
</update></config></iq>`;

test('the VN\'s access-control-list, when present, gives the policy instead of its network-policies: a <> rule both ways, the implicit rules left to the dataplane\'s default', () => {
  const graph = graphOfXml(ACL_IQ, handGraph());
  const acl = `${VN.name}:vn1`;
  assert.deepEqual(derivePortView(graph, VMI.name).policies, [
    { name: `${acl}/0`, order: 0, sourceVn: VN.name, destinationVn: PUBLIC_VN.name, protocol: 'tcp', portFrom: 80, portTo: 443, action: 'allow' },
    { name: `${acl}/0/reverse`, order: 1, sourceVn: PUBLIC_VN.name, destinationVn: VN.name, protocol: 'tcp', portFrom: 0, portTo: 65535, action: 'allow' },
    { name: `${acl}/1`, order: 2, sourceVn: 'any', destinationVn: VN.name, protocol: 'udp', portFrom: 53, portTo: 53, destinationPrefix: '10.2.0.0/16', action: 'deny' },
  ]);
  graph.apply({ op: 'delete', nodes: [], links: [{ left: VN, right: { type: 'access-control-list', name: acl }, metadata: 'virtual-network-access-control-list' }] });
  assert.deepEqual(derivePortView(graph, VMI.name).policies.map((policy) => policy.name), [`${NP.name}/0`, `${NP.name}/0/reverse`, `${NP.name}/1`], 'without it, the network-policies');
});
