/**
 * IF-MAP over XMPP against contrail-control's own test output
 * (test/vectors/ifmap/, from tungstenfabric/tf-controller @ 6a674397,
 * src/ifmap/testdata): every message decodes, applies into a graph, and
 * encodes back to the same bytes; the agent's config subscribe is the
 * agent's byte for byte (src/vnsw/agent/controller/controller_peer.cc).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SaxesParser } from 'saxes';
import { decodeConfig, encodeConfigSubscribe, encodeConfigUpdate, virtualRouterSubscription } from '../src/control/ifmap/codec';
import { IfmapGraph, child, property } from '../src/control/ifmap/graph';
import { decodeStanza } from '../src/control/xmpp/codec';
import type { XmlElement } from '../src/control/xmpp/stream-parser';

const VECTORS = path.resolve(__dirname, '..', '..', 'test', 'vectors', 'ifmap');

/** The top-level elements of a file of concatenated stanzas, as the stream parser builds them. */
function parseStanzas(text: string): XmlElement[] {
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
  parser.write(`<root>${text}</root>`).close();
  return stanzas;
}

/** The unit test's print format (one-space indent, no declaration) of what we put on the wire. */
function asMasterOutput(wire: string): string {
  assert.ok(wire.startsWith('<?xml version="1.0"?>\n'), 'the wire form starts with the declaration');
  return wire.slice('<?xml version="1.0"?>\n'.length).replace(/^\t+/gm, (tabs) => ' '.repeat(tabs.length));
}

const masterOutput = fs.readFileSync(path.join(VECTORS, 'cli1_vn1_vm3_add.master_output'), 'utf8');
const messages = parseStanzas(masterOutput);

test('every IF-MAP message of contrail-control decodes as a config update and re-encodes to the same bytes', () => {
  assert.equal(messages.length, 32);
  const reencoded = messages.map((iq) => {
    const stanza = decodeStanza(iq);
    assert.ok(!('condition' in stanza) && stanza.kind === 'config-update', 'an id-less <iq> with <config> is a config update');
    return asMasterOutput(encodeConfigUpdate(stanza.from, stanza.to, stanza.changes));
  });
  assert.equal(reencoded.join(''), masterOutput);
});

test('applied into a graph, the messages give the VM, its interface, address, network and the IPAM subnet', () => {
  const graph = new IfmapGraph();
  for (const iq of messages) for (const change of decodeConfig(iq.children[0])) graph.apply(change);
  const vr = { type: 'virtual-router', name: 'default-global-system-config:a1s27.contrail.juniper.net' };
  const vms = graph.neighbours(vr, 'virtual-machine');
  assert.ok(vms.length >= 1);
  const vmis = graph.neighbours(vms[0], 'virtual-machine-interface');
  assert.equal(vmis.length, 1, 'the VM has one interface');
  const [vn] = graph.neighbours(vmis[0], 'virtual-network');
  assert.equal(vn.name, 'default-domain:demo:vn27');
  const [attr] = graph.neighbours(vn, 'virtual-network-network-ipam');
  const subnets = property(attr, 'value');
  assert.equal(child(subnets, 'ipam-subnets', 'subnet', 'ip-prefix')?.text, '27.1.1.0');
  assert.equal(child(subnets, 'ipam-subnets', 'default-gateway')?.text, '27.1.1.254');
  assert.equal(graph.neighbours(attr, 'network-ipam')[0].name, 'default-domain:demo:default-network-ipam');
});

test('a graph diff turns one graph into another, and deleting a node takes its links', () => {
  const full = new IfmapGraph();
  for (const iq of messages) for (const change of decodeConfig(iq.children[0])) full.apply(change);
  const rebuilt = new IfmapGraph();
  for (const change of full.diffFrom(new IfmapGraph())) rebuilt.apply(change);
  assert.deepEqual(rebuilt.diffFrom(full), [], 'nothing differs after applying the diff');
  const vm = { type: 'virtual-machine', name: '2d308482-c7b3-4e05-af14-e732b7b50117' };
  const smaller = new IfmapGraph();
  for (const change of full.diffFrom(new IfmapGraph())) smaller.apply(change);
  smaller.deleteNode(vm);
  const [removal] = smaller.diffFrom(full);
  assert.equal(removal.op, 'delete');
  assert.deepEqual(removal.nodes.map((node) => node.name), [vm.name]);
  assert.ok(removal.links.length > 0 && removal.links.every((link) => link.left.name === vm.name || link.right.name === vm.name));
  for (const change of smaller.diffFrom(full)) full.apply(change);
  assert.equal(full.node(vm.type, vm.name), undefined);
  assert.deepEqual(full.diffFrom(smaller), []);
});

test("the agent's config subscribe, byte for byte", () => {
  // ControllerSendCfgSubscribe: pugixml print with indent "" and format_default (a declaration, one element a line).
  assert.equal(
    encodeConfigSubscribe('node-a', 'network-control@contrailsystems.com/config', virtualRouterSubscription('node-a'), true),
    '<?xml version="1.0"?>\n' +
      '<iq type="set" from="node-a" to="network-control@contrailsystems.com/config">\n' +
      '<pubsub xmlns="http://jabber.org/protocol/pubsub">\n' +
      '<subscribe node="virtual-router:default-global-system-config:node-a" />\n' +
      '</pubsub>\n' +
      '</iq>\n',
  );
  const [iq] = parseStanzas(encodeConfigSubscribe('node-a', 'network-control@contrailsystems.com/config', 'virtual-machine:1f6a', false).split('\n').slice(1).join('\n'));
  const stanza = decodeStanza(iq);
  assert.deepEqual(stanza, { kind: 'config-subscribe', from: 'node-a', to: 'network-control@contrailsystems.com/config', node: 'virtual-machine:1f6a', subscribe: false });
});
