/**
 * IF-MAP over XMPP, as contrail-control and the agent write it
 * (tungstenfabric/tf-controller @ 6a674397821187fedfffd9586942b906d3479dbc):
 *
 * - agent -> control node, at session start and for each port's VM
 *   (src/vnsw/agent/controller/controller_peer.cc, ControllerSendCfgSubscribe
 *   and ControllerSendVmCfgSubscribe), printed by pugixml with an empty indent:
 *
 *     <?xml version="1.0"?>
 *     <iq type="set" from="node-a" to="network-control@contrailsystems.com/config">
 *     <pubsub xmlns="http://jabber.org/protocol/pubsub">
 *     <subscribe node="virtual-router:default-global-system-config:node-a" />
 *     </pubsub>
 *     </iq>
 *
 *   (`unsubscribe` and `virtual-machine:<uuid>` for a VM); no `id`.
 * - control node -> agent (src/ifmap/ifmap_encoder.cc, IFMapMessage: a pugixml
 *   document saved with its defaults, tab indent and an XML declaration):
 *
 *     <?xml version="1.0"?>
 *     <iq type="set" from="network-control@contrailsystems.com" to="default-global-system-config:node-a/config">
 *     	<config>
 *     		<update>
 *     			<node type="virtual-machine">
 *     				<name>2d308482-...</name>
 *     				<id-perms>...</id-perms>
 *     			</node>
 *     			<link>
 *     				<node type="virtual-router">
 *     					<name>default-global-system-config:node-a</name>
 *     				</node>
 *     				<node type="virtual-machine">
 *     					<name>2d308482-...</name>
 *     				</node>
 *     				<metadata type="virtual-router-virtual-machine" />
 *     			</link>
 *     		</update>
 *     	</config>
 *     </iq>
 *
 *   with `<delete>` blocks holding nodes by name only and links.
 */
import type { XmlElement } from '../xmpp/stream-parser';
import { StanzaError } from '../xmpp/stanza';
import type { IfmapChange, IfmapElement, IfmapIdentity, IfmapLink, IfmapNode } from './types';

/** The FQN prefix of a virtual-router (XmppInit::kFqnPrependAgentNodeJID). */
export const GLOBAL_SYSTEM_CONFIG = 'default-global-system-config';
const XML_DECLARATION = '<?xml version="1.0"?>\n';

/** The virtual-router FQN of an agent named `node`: `default-global-system-config:<node>`. */
export function virtualRouterName(node: string): string {
  return `${GLOBAL_SYSTEM_CONFIG}:${node}`;
}

/** The subscribe node of an agent's own virtual-router. */
export function virtualRouterSubscription(node: string): string {
  return `virtual-router:${virtualRouterName(node)}`;
}

/** The subscribe node of a VM a port belongs to. */
export function virtualMachineSubscription(vmUuid: string): string {
  return `virtual-machine:${vmUuid}`;
}

// ---------------------------------------------------------------- printing, as pugixml does

const TEXT_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;' };
const ATTRIBUTE_ESCAPES: Record<string, string> = { ...TEXT_ESCAPES, '"': '&quot;' };

function escapeText(text: string): string {
  return /[&<>]/.test(text) ? text.replace(/[&<>]/g, (c) => TEXT_ESCAPES[c]) : text;
}

function escapeAttribute(text: string): string {
  return /[&<>"]/.test(text) ? text.replace(/[&<>"]/g, (c) => ATTRIBUTE_ESCAPES[c]) : text;
}

/**
 * pugixml's format_indent: one element a line, `indent` repeated per depth,
 * an element holding only text on one line, an empty one as `<name />`.
 */
function printElement(out: string[], element: IfmapElement, depth: number, indent: string): void {
  const pad = indent.repeat(depth);
  let open = `${pad}<${element.name}`;
  for (const [name, value] of Object.entries(element.attributes)) open += ` ${name}="${escapeAttribute(value)}"`;
  if (element.children.length === 0) {
    out.push(element.text === '' ? `${open} />\n` : `${open}>${escapeText(element.text)}</${element.name}>\n`);
    return;
  }
  out.push(`${open}>\n`);
  for (const child of element.children) printElement(out, child, depth + 1, indent);
  out.push(`${pad}</${element.name}>\n`);
}

function element(name: string, attributes: Record<string, string> = {}, children: IfmapElement[] = [], text = ''): IfmapElement {
  return { name, attributes, text, children };
}

function identityElement(identity: IfmapIdentity, properties: IfmapElement[] = []): IfmapElement {
  return element('node', { type: identity.type }, [element('name', {}, [], identity.name), ...properties]);
}

function linkElement(link: IfmapLink): IfmapElement {
  return element('link', {}, [identityElement(link.left), identityElement(link.right), element('metadata', { type: link.metadata })]);
}

function changeElement(change: IfmapChange): IfmapElement {
  // A delete names nodes only (IFMapNode::EncodeNode); an update carries their properties (EncodeNodeDetail).
  const nodes = change.nodes.map((node) => identityElement(node, change.op === 'update' ? node.properties : []));
  return element(change.op, {}, [...nodes, ...change.links.map(linkElement)]);
}

function printDocument(root: IfmapElement, indent: string): string {
  const out = [XML_DECLARATION];
  printElement(out, root, 0, indent);
  return out.join('');
}

/** The agent's config (un)subscribe IQ, byte for byte. */
export function encodeConfigSubscribe(from: string, to: string, node: string, subscribe: boolean): string {
  const request = element(subscribe ? 'subscribe' : 'unsubscribe', { node });
  const pubsub = element('pubsub', { xmlns: 'http://jabber.org/protocol/pubsub' }, [request]);
  return printDocument(element('iq', { type: 'set', from, to }, [pubsub]), '');
}

/** The control node's configuration IQ to `to` (`<vr FQN>/config`), byte for byte. */
export function encodeConfigUpdate(from: string, to: string, changes: IfmapChange[]): string {
  const config = element('config', {}, changes.map(changeElement));
  return printDocument(element('iq', { type: 'set', from, to }, [config]), '\t');
}

// ---------------------------------------------------------------- decoding

function toIfmapElement(xml: XmlElement): IfmapElement {
  return element(xml.name, xml.attributes, xml.children.map(toIfmapElement), xml.children.length === 0 ? xml.text.trim() : '');
}

function decodeIdentity(xml: XmlElement, where: string): { identity: IfmapIdentity; rest: XmlElement[] } {
  const type = xml.attributes.type;
  if (type === undefined || type === '') throw new StanzaError(`${where}: <node> without a type`);
  const name = xml.children.find((child) => child.name === 'name');
  if (name === undefined || name.text.trim() === '') throw new StanzaError(`${where}: <node type="${type}"> without a <name>`);
  return { identity: { type, name: name.text.trim() }, rest: xml.children.filter((child) => child !== name) };
}

function decodeLink(xml: XmlElement, where: string): IfmapLink {
  const ends = xml.children.filter((child) => child.name === 'node');
  const metadata = xml.children.find((child) => child.name === 'metadata');
  if (ends.length !== 2) throw new StanzaError(`${where}: a <link> has ${ends.length} <node> ends, not 2`);
  if (metadata === undefined || !metadata.attributes.type) throw new StanzaError(`${where}: a <link> without <metadata type=...>`);
  return { left: decodeIdentity(ends[0], where).identity, right: decodeIdentity(ends[1], where).identity, metadata: metadata.attributes.type };
}

/**
 * The `<update>` and `<delete>` blocks of a `<config>` element, in order.
 * Children other than these, and other than `<node>` / `<link>` inside them,
 * are ignored (a newer control node may send more).
 */
export function decodeConfig(config: XmlElement): IfmapChange[] {
  const changes: IfmapChange[] = [];
  for (const block of config.children) {
    if (block.name !== 'update' && block.name !== 'delete') continue;
    const where = `<config><${block.name}>`;
    const nodes: IfmapNode[] = [];
    const links: IfmapLink[] = [];
    for (const item of block.children) {
      if (item.name === 'node') {
        const { identity, rest } = decodeIdentity(item, where);
        nodes.push({ ...identity, properties: rest.map(toIfmapElement) });
      } else if (item.name === 'link') {
        links.push(decodeLink(item, where));
      }
    }
    changes.push({ op: block.name, nodes, links });
  }
  return changes;
}
