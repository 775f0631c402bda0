/**
 * Wire forms of the control channel's stanzas: encode* produce the exact
 * bytes, decodeStanza turns a parsed element back into a typed Stanza (and
 * re-encoding a decoded stanza gives the same bytes). Route stanzas are
 * OpenContrail's:
 *
 *   stream open  <stream:stream from="node-a" to="network-control@contrailsystems.com" version="1.0" xml:lang="en"
 *                xmlns="" xmlns:stream="http://etherx.jabber.org/streams"  >   (xmlns: the subcluster, usually '')
 *   answer       <stream:stream from="network-control@contrailsystems.com" to="node-a" id="++123" version="1.0"
 *                xml:lang="en" xmlns="jabber:client" xmlns:stream="http://etherx.jabber.org/streams"  >
 *   subscribe    <iq type="set" from="node-a" to="network-control@contrailsystems.com/bgp-peer" id="subscribe3">
 *                <pubsub xmlns="http://jabber.org/protocol/pubsub"><subscribe node="vn1"><options>
 *                <instance-id>2</instance-id></options></subscribe></pubsub></iq>
 *   unsubscribe  same IQ with <unsubscribe node="vn1"/>
 *   publish      <iq ... id="pubsub5"><pubsub xmlns="..."><publish node="1/1/vn1/10.1.1.3/32"><item><entry>ENTRY</entry>
 *                </item></publish></pubsub></iq>, then
 *                <iq ... id="collection6"><pubsub xmlns="..."><collection node="vn1"><associate node="1/1/vn1/10.1.1.3/32"/>
 *                </collection></pubsub></iq>   (<dissociate .../> withdraws)
 *   ENTRY        <nlri><af>1</af><safi>1</safi><address>10.1.1.3/32</address></nlri><next-hops><next-hop><af>1</af>
 *                <address>192.168.0.11</address><label>25</label><tunnel-encapsulation-list><tunnel-encapsulation>udp
 *                </tunnel-encapsulation></tunnel-encapsulation-list><virtual-network>vn1</virtual-network></next-hop>
 *                </next-hops><version>1</version><sequence-number>0</sequence-number><local-preference>200
 *                </local-preference><med>0</med>
 *   route push   <message from="network-control@contrailsystems.com" to="node-a/bgp-peer"><event
 *                xmlns="http://jabber.org/protocol/pubsub"><items node="1/1/vn1"><item id="10.1.1.3/32"><entry>ENTRY
 *                </entry></item><retract id="10.1.1.4/32"/></items></event></message>
 *   End-of-RIB   the same message with <items node="0/0/EndOfRib"/>, in both directions
 *   inet6        the same with "2/1/" nodes, <nlri><af>2</af> and IPv6 prefixes ("2/1/vn1/fd00::3/128"); next hops
 *                stay <af>1</af> (IPv4 underlay)
 *   other        items (and publishes) of families other than 1/1 and 2/1, e.g. <items node="25/242/vn1">: counted, dropped
 *
 * (line breaks above are for reading only: the wire has none). Port
 * configuration travels as IF-MAP (ifmap/codec.ts): the vrouter's config
 * subscribes and the control node's `<config>` IQs.
 *
 * No IQ is answered: as in OpenContrail, both sides act on a set and move on.
 */
import ipaddr from 'ipaddr.js';
import { decodeConfig, encodeConfigSubscribe, encodeConfigUpdate } from '../ifmap/codec';
import { XmlElement } from './stream-parser';
import {
  BGP_PEER_RESOURCE,
  CONFIG_RESOURCE,
  CONTROL_NODE_JID,
  END_OF_RIB_NODE,
  IgnoredItemsStanza,
  PUBSUB_NS,
  RefusedItem,
  RouteChange,
  RouteEntry,
  RouteUpdateStanza,
  STREAM_NS,
  SentStanza,
  Stanza,
  StanzaAddress,
  StanzaError,
  StreamHeader,
  WireNexthop,
  afiOf,
  familyOf,
  type RouteFamily,
} from './stanza';

export const STREAM_CLOSE = '</stream:stream>';
const STREAM_ERROR_NS = 'urn:ietf:params:xml:ns:xmpp-streams';
const MAX_LABEL = 0xfffff;
const MAX_U32 = 0xffffffff;

// ---------------------------------------------------------------- encoding

const ESCAPED = /[&<>"']/;
const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' };

/** Escapes text and attribute values; most values need nothing, so they are returned as they are. */
export function escapeXml(text: string): string {
  return ESCAPED.test(text) ? text.replace(/[&<>"']/g, (c) => ESCAPES[c]) : text;
}

/**
 * The open as contrail does it (src/xmpp/xmpp_proto.cc EncodeOpen/EncodeOpenResp): the xmpp_str.h
 * template printed by pugixml without declaration, its empty-tag "/" turned into a space, hence "  >".
 */
export function encodeStreamOpen(header: StreamHeader): string {
  const id = header.id === undefined ? '' : ` id="${escapeXml(header.id)}"`;
  return (
    `<stream:stream from="${escapeXml(header.from)}" to="${escapeXml(header.to)}"${id} version="1.0" xml:lang="en" ` +
    `xmlns="${escapeXml(header.xmlns ?? '')}" xmlns:stream="${STREAM_NS}"  >`
  );
}

/** A stream-level error (RFC 6120 4.9), sent just before closing the stream. */
export function encodeStreamError(condition: string, text: string): string {
  return (
    `<stream:error><${condition} xmlns="${STREAM_ERROR_NS}"/>` +
    `<text xmlns="${STREAM_ERROR_NS}">${escapeXml(text)}</text></stream:error>`
  );
}

/** The pubsub node of a route: "1/1/<vrf>/<prefix>" (AFI 1 IPv4, SAFI 1 unicast), "2/1/<vrf>/<prefix>" for IPv6. */
export function routeNode(vrf: string, prefix: string): string {
  return `${afiOf(familyOf(prefix))}/1/${vrf}/${prefix}`;
}

/** An id of '' is an IQ that came without one (contrail-control's IF-MAP IQs have none). */
function iqOpen(address: StanzaAddress, id: string): string {
  const idAttribute = id === '' ? '' : ` id="${escapeXml(id)}"`;
  return `<iq type="set" from="${escapeXml(address.from)}" to="${escapeXml(address.to)}"${idAttribute}>`;
}

function pubsubIq(address: StanzaAddress, id: string, body: string): string {
  return `${iqOpen(address, id)}<pubsub xmlns="${PUBSUB_NS}">${body}</pubsub></iq>`;
}

function eventMessage(address: StanzaAddress, body: string): string {
  return `<message from="${escapeXml(address.from)}" to="${escapeXml(address.to)}"><event xmlns="${PUBSUB_NS}">${body}</event></message>`;
}

function encodeNexthop(nexthop: WireNexthop): string {
  let encaps = '';
  for (const encap of nexthop.encaps) encaps += `<tunnel-encapsulation>${escapeXml(encap)}</tunnel-encapsulation>`;
  const vn = nexthop.virtualNetwork === '' ? '' : `<virtual-network>${escapeXml(nexthop.virtualNetwork)}</virtual-network>`;
  return (
    `<next-hop><af>1</af><address>${nexthop.address}</address><label>${nexthop.label}</label>` +
    `<tunnel-encapsulation-list>${encaps}</tunnel-encapsulation-list>${vn}</next-hop>`
  );
}

/** The `<entry>` element of a route. */
export function encodeEntry(entry: RouteEntry): string {
  let nexthops = '';
  for (const nexthop of entry.nexthops) nexthops += encodeNexthop(nexthop);
  return (
    `<entry><nlri><af>${afiOf(familyOf(entry.prefix))}</af><safi>1</safi><address>${entry.prefix}</address></nlri>` +
    `<next-hops>${nexthops}</next-hops><version>${entry.version}</version>` +
    `<sequence-number>${entry.sequenceNumber}</sequence-number>` +
    `<local-preference>${entry.localPreference}</local-preference><med>${entry.med}</med></entry>`
  );
}

/** One `<item>` of a route push around an already encoded entry (the control node encodes each entry once). */
export function encodeItem(prefix: string, entryXml: string): string {
  return `<item id="${prefix}">${entryXml}</item>`;
}

export function encodeRetract(prefix: string): string {
  return `<retract id="${prefix}"/>`;
}

/**
 * A route push around already encoded items and retracts, all of one family
 * (inet when not given), as the bytes to send: the control node keeps each
 * route's item encoded (route-tables.ts), so a dump is copies of them, where
 * building and writing one string per push was most of its cost.
 */
export function encodeRouteUpdateItems(address: StanzaAddress, vrf: string, items: Buffer[], family: RouteFamily = 'inet'): Buffer {
  const [head, tail] = eventMessage(address, `<items node="${afiOf(family)}/1/${escapeXml(vrf)}">\0</items>`).split('\0');
  return Buffer.concat([Buffer.from(head), ...items, Buffer.from(tail)]);
}

export function encodeStanza(stanza: SentStanza): string {
  switch (stanza.kind) {
    case 'subscribe':
      return pubsubIq(
        stanza,
        stanza.id,
        `<subscribe node="${escapeXml(stanza.vrf)}"><options><instance-id>${stanza.instanceId}</instance-id></options></subscribe>`,
      );
    case 'unsubscribe':
      return pubsubIq(stanza, stanza.id, `<unsubscribe node="${escapeXml(stanza.vrf)}"/>`);
    case 'publish':
      return pubsubIq(
        stanza,
        stanza.id,
        `<publish node="${escapeXml(routeNode(stanza.vrf, stanza.entry.prefix))}"><item>${encodeEntry(stanza.entry)}</item></publish>`,
      );
    case 'associate':
    case 'dissociate':
      return pubsubIq(
        stanza,
        stanza.id,
        `<collection node="${escapeXml(stanza.vrf)}"><${stanza.kind} node="${escapeXml(routeNode(stanza.vrf, stanza.prefix))}"/></collection>`,
      );
    case 'route-update': {
      let items = '';
      for (const change of stanza.changes) {
        items += change.entry === null ? encodeRetract(change.prefix) : encodeItem(change.prefix, encodeEntry(change.entry));
      }
      return eventMessage(stanza, `<items node="${afiOf(stanza.family ?? 'inet')}/1/${escapeXml(stanza.vrf)}">${items}</items>`);
    }
    case 'end-of-rib':
      return eventMessage(stanza, `<items node="${END_OF_RIB_NODE}"/>`);
    case 'config-subscribe':
      return encodeConfigSubscribe(stanza.from, stanza.to, stanza.node, stanza.subscribe);
    case 'config-update':
      return encodeConfigUpdate(stanza.from, stanza.to, stanza.changes);
  }
}

/** Addresses of the two ends, as each side writes them. */
export function vrouterToControl(node: string, resource: typeof BGP_PEER_RESOURCE | typeof CONFIG_RESOURCE): StanzaAddress {
  return { from: node, to: `${CONTROL_NODE_JID}/${resource}` };
}

export function controlToVrouter(node: string, resource: typeof BGP_PEER_RESOURCE | typeof CONFIG_RESOURCE): StanzaAddress {
  return { from: resource === CONFIG_RESOURCE ? `${CONTROL_NODE_JID}/${CONFIG_RESOURCE}` : CONTROL_NODE_JID, to: `${node}/${resource}` };
}

// ---------------------------------------------------------------- decoding

function fail(problem: string): never {
  throw new StanzaError(problem);
}

function attribute(element: XmlElement, name: string): string {
  const value = element.attributes[name];
  if (value === undefined) fail(`<${element.name}> has no "${name}" attribute`);
  return value;
}

/** The one child an element must have, checked by name. */
function onlyChild(element: XmlElement, name?: string): XmlElement {
  if (element.children.length !== 1) fail(`<${element.name}> must have exactly one child element, has ${element.children.length}`);
  const child = element.children[0];
  if (name !== undefined && child.name !== name) fail(`<${element.name}> holds <${child.name}>, expected <${name}>`);
  return child;
}

/** The first child of that name, or undefined; `position` is where the canonical form has it, tried first (decoding dumps is hot). */
function optionalChild(element: XmlElement, name: string, position: number): XmlElement | undefined {
  const children = element.children;
  if (children[position]?.name === name) return children[position];
  for (const candidate of children) if (candidate.name === name) return candidate;
  return undefined;
}

function child(element: XmlElement, name: string, position = 0): XmlElement {
  return optionalChild(element, name, position) ?? fail(`<${element.name}> has no <${name}>`);
}

function requireNamespace(element: XmlElement, namespace: string): void {
  if (element.attributes.xmlns !== namespace) fail(`<${element.name}> must be in namespace ${namespace}`);
}

const DECIMAL = /^[0-9]{1,10}$/;

function integer(text: string, what: string, max: number): number {
  const trimmed = text.trim();
  if (!DECIMAL.test(trimmed)) fail(`${what} is not a decimal number: ${JSON.stringify(text.slice(0, 40))}`);
  const value = Number(trimmed);
  if (value > max) fail(`${what} ${value} is larger than ${max}`);
  return value;
}

/** 1-10 ASCII digits and nothing else: their value; -1 otherwise. */
function plainDecimal(text: string): number {
  const length = text.length;
  if (length === 0 || length > 10) return -1;
  let value = 0;
  for (let i = 0; i < length; i++) {
    const digit = text.charCodeAt(i) - 48;
    if (digit < 0 || digit > 9) return -1;
    value = value * 10 + digit;
  }
  return value;
}

function childInteger(element: XmlElement, name: string, position: number, max = MAX_U32): number {
  const text = child(element, name, position).text;
  // Route dumps hold hundreds of thousands of these: the common form needs no trimming, no regex, no message.
  const value = plainDecimal(text);
  return value >= 0 && value <= max ? value : integer(text, `<${name}>`, max);
}

// Dotted quad, each part 0-255 without leading zeros; checked here rather than with ipaddr.js, which costs
// more than the rest of a route's decoding.
const OCTET = '(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])';
const IPV4 = new RegExp(`^${OCTET}\\.${OCTET}\\.${OCTET}\\.${OCTET}$`);
const IPV4_PREFIX = new RegExp(`^${OCTET}\\.${OCTET}\\.${OCTET}\\.${OCTET}/(?:3[0-2]|[12]?[0-9])$`);

function ipv4(text: string, what: string): string {
  const trimmed = text.trim();
  if (!IPV4.test(trimmed)) fail(`${what} is not an IPv4 address: ${JSON.stringify(text.slice(0, 40))}`);
  return trimmed;
}

function ipv4Prefix(text: string, what: string): string {
  const trimmed = text.trim();
  if (!IPV4_PREFIX.test(trimmed)) fail(`${what} is not an IPv4 prefix: ${JSON.stringify(text.slice(0, 40))}`);
  return trimmed;
}

/** "x:x::x/len" as ipaddr.js reads IPv6 (which Inet6Prefix::FromString of contrail-control also takes), length 0-128. */
function ipv6Prefix(text: string, what: string): string {
  const trimmed = text.trim();
  const slash = trimmed.indexOf('/');
  const length = slash < 0 ? '' : trimmed.slice(slash + 1);
  const valid = slash > 0 && /^(?:12[0-8]|1[01][0-9]|[1-9]?[0-9])$/.test(length) && ipaddr.IPv6.isValid(trimmed.slice(0, slash));
  if (!valid || trimmed.slice(0, slash).includes('%')) fail(`${what} is not an IPv6 prefix: ${JSON.stringify(text.slice(0, 60))}`);
  return trimmed;
}

/** A prefix of the family: IPv4 or IPv6. */
function familyPrefix(text: string, family: RouteFamily, what: string): string {
  return family === 'inet6' ? ipv6Prefix(text, what) : ipv4Prefix(text, what);
}


/** The family an nlri's af names (1 IPv4, 2 IPv6), SAFI 1 required. */
function nlriFamily(nlri: XmlElement): RouteFamily {
  const af = childInteger(nlri, 'af', 0);
  if (af !== 1 && af !== 2) fail(`<nlri> address family is not IPv4 (af 1) nor IPv6 (af 2): ${af}`);
  if (childInteger(nlri, 'safi', 1) !== 1) fail('<nlri> is not unicast (safi 1)');
  return af === 2 ? 'inet6' : 'inet';
}

/** `entryVn`: the entry's own <virtual-network>, which older control nodes sent instead of the next hop's. */
function decodeNexthop(element: XmlElement, entryVn: string): WireNexthop {
  if (element.name !== 'next-hop') fail(`<next-hops> holds <${element.name}>`);
  // Next hops are the nodes' IPv4 underlay addresses in both families.
  if (childInteger(element, 'af', 0) !== 1) fail('<next-hop> address family is not IPv4 (af 1)');
  const encaps = child(element, 'tunnel-encapsulation-list', 3).children.map((encap) => {
    if (encap.name !== 'tunnel-encapsulation') fail(`<tunnel-encapsulation-list> holds <${encap.name}>`);
    return encap.text.trim();
  });
  const address = ipv4(child(element, 'address', 1).text, 'next-hop address');
  // As contrail-control's XmppDecodeAddress: 0.0.0.0 is no tunnel endpoint.
  if (address === '0.0.0.0') fail('next-hop address is 0.0.0.0');
  return {
    address,
    label: childInteger(element, 'label', 2, MAX_LABEL),
    encaps,
    virtualNetwork: optionalChild(element, 'virtual-network', 4)?.text.trim() ?? entryVn,
  };
}

/**
 * Decodes an `<entry>`. Optional elements of OpenContrail's schema this channel does not use are skipped.
 * A pushed route without next hops is refused, as contrail-control's ProcessItem refuses one; a publish
 * may have none: this project's agent withdraws with an empty publish and a dissociate.
 */
export function decodeEntry(element: XmlElement, pushed: boolean, family: RouteFamily = 'inet'): RouteEntry {
  if (element.name !== 'entry') fail(`expected <entry>, got <${element.name}>`);
  const nlri = child(element, 'nlri', 0);
  if (nlriFamily(nlri) !== family) fail(`<nlri> is not of the ${family} family of its node`);
  const prefix = familyPrefix(child(nlri, 'address', 2).text, family, 'nlri address');
  const entryVn = optionalChild(element, 'virtual-network', 3)?.text.trim() ?? '';
  const nexthops = child(element, 'next-hops', 1).children.map((nexthop) => decodeNexthop(nexthop, entryVn));
  if (pushed && nexthops.length === 0) fail(`pushed route ${prefix} has no <next-hop>`);
  return {
    prefix,
    nexthops,
    version: childInteger(element, 'version', 2),
    sequenceNumber: childInteger(element, 'sequence-number', 3),
    localPreference: childInteger(element, 'local-preference', 4),
    med: childInteger(element, 'med', 5),
  };
}

/** The family of a node beginning "1/1/" (inet) or "2/1/" (inet6), else null. */
function nodeFamily(node: string): RouteFamily | null {
  if (node.startsWith('1/1/')) return 'inet';
  if (node.startsWith('2/1/')) return 'inet6';
  return null;
}

/** Splits "1/1/<vrf>/<a.b.c.d>/<len>" (or "2/1/<vrf>/<x:x::x>/<len>") into family, VRF and prefix; VRF names may hold ':' but no '/'. */
function parseRouteNode(node: string): { family: RouteFamily; vrf: string; prefix: string } {
  const parts = node.split('/');
  const family = nodeFamily(node);
  if (parts.length !== 5 || family === null || parts[2] === '') {
    fail(`route node ${JSON.stringify(node)} is not 1/1/<vrf>/<prefix> or 2/1/<vrf>/<prefix>`);
  }
  return { family, vrf: parts[2], prefix: familyPrefix(`${parts[3]}/${parts[4]}`, family, `route node ${JSON.stringify(node)}`) };
}

function itemsOf(node: string): { family: RouteFamily; vrf: string } {
  const family = nodeFamily(node);
  if (family === null || node.length === 4 || node.indexOf('/', 4) >= 0) fail(`items node ${JSON.stringify(node)} is not 1/1/<vrf> or 2/1/<vrf>`);
  return { family, vrf: node.slice(4) };
}

const OTHER_FAMILY = /^([0-9]{1,3})\/([0-9]{1,3})\/([^/]+)(?:\/|$)/;

/** A node "<afi>/<safi>/<instance>[/...]" of a family other than 1/1 and 2/1 as IgnoredItems, else null. */
function otherFamily(node: string, address: StanzaAddress, items: number): IgnoredItemsStanza | null {
  const match = OTHER_FAMILY.exec(node);
  if (match === null || (match[2] === '1' && (match[1] === '1' || match[1] === '2'))) return null;
  return { kind: 'ignored-items', ...address, family: `${match[1]}/${match[2]}`, instance: match[3], items };
}

function addressOf(element: XmlElement): StanzaAddress {
  return { from: attribute(element, 'from'), to: attribute(element, 'to') };
}

function decodePubsubIq(iq: XmlElement, address: StanzaAddress, id: string): Stanza {
  const operation = onlyChild(iq, 'pubsub');
  requireNamespace(operation, PUBSUB_NS);
  const request = onlyChild(operation);
  switch (request.name) {
    case 'subscribe':
      return {
        kind: 'subscribe',
        ...address,
        id,
        vrf: attribute(request, 'node'),
        instanceId: childInteger(child(request, 'options'), 'instance-id', 0),
      };
    case 'unsubscribe':
      return { kind: 'unsubscribe', ...address, id, vrf: attribute(request, 'node') };
    case 'publish': {
      const node = attribute(request, 'node');
      const ignored = otherFamily(node, address, 1);
      if (ignored !== null) return ignored;
      const { family, vrf, prefix } = parseRouteNode(node);
      const decoded = refusal(() => {
        const entry = decodeEntry(onlyChild(onlyChild(request, 'item'), 'entry'), false, family);
        if (entry.prefix !== prefix) fail(`published entry ${entry.prefix} under node of ${prefix}`);
        return entry;
      });
      // Dropped with the reason, the session kept, as contrail-control's ProcessItem (see RefusedItem).
      if (typeof decoded === 'string') return { kind: 'refused-publish', ...address, id, vrf, item: { prefix, reason: decoded } };
      return { kind: 'publish', ...address, id, vrf, entry: decoded.value };
    }
    case 'collection': {
      const vrf = attribute(request, 'node');
      const change = onlyChild(request);
      if (change.name !== 'associate' && change.name !== 'dissociate') fail(`<collection> holds <${change.name}>`);
      const node = attribute(change, 'node');
      const ignored = otherFamily(node, address, 1);
      if (ignored !== null) return ignored;
      const route = parseRouteNode(node);
      if (route.vrf !== vrf) fail(`collection ${vrf} ${change.name}s a route of ${route.vrf}`);
      return { kind: change.name, ...address, id, vrf, prefix: route.prefix };
    }
    default:
      return fail(`unexpected pubsub request <${request.name}>`);
  }
}

function decodeConfigSubscribe(pubsub: XmlElement, address: StanzaAddress): Stanza {
  requireNamespace(pubsub, PUBSUB_NS);
  const request = onlyChild(pubsub);
  if (request.name !== 'subscribe' && request.name !== 'unsubscribe') fail(`unexpected config request <${request.name}>`);
  return { kind: 'config-subscribe', ...address, node: attribute(request, 'node'), subscribe: request.name === 'subscribe' };
}

function decodeMessage(message: XmlElement): Stanza {
  const address = addressOf(message);
  const event = onlyChild(message, 'event');
  requireNamespace(event, PUBSUB_NS);
  const items = onlyChild(event, 'items');
  const node = attribute(items, 'node');
  if (node === END_OF_RIB_NODE) {
    if (items.children.length !== 0) fail('End-of-RIB <items> must be empty');
    return { kind: 'end-of-rib', ...address };
  }
  const ignored = otherFamily(node, address, items.children.length);
  if (ignored !== null) return ignored;
  const { family, vrf } = itemsOf(node);
  const changes: RouteChange[] = [];
  const refused: RefusedItem[] = [];
  for (const item of items.children) {
    if (item.name !== 'item' && item.name !== 'retract') fail(`<items> holds <${item.name}>`);
    // A bad item is dropped and the others applied, as contrail-control's ProcessItem drops one (see RefusedItem).
    const change = refusal((): RouteChange => {
      if (item.name === 'retract') return { prefix: familyPrefix(attribute(item, 'id'), family, 'retract id'), entry: null };
      const prefix = familyPrefix(attribute(item, 'id'), family, 'item id');
      const entry = decodeEntry(onlyChild(item, 'entry'), true, family);
      if (entry.prefix !== prefix) fail(`item ${prefix} holds the entry of ${entry.prefix}`);
      return { prefix, entry };
    });
    if (typeof change === 'string') refused.push({ prefix: item.attributes.id ?? '', reason: change });
    else changes.push(change.value);
  }
  const update: RouteUpdateStanza = { kind: 'route-update', ...address, vrf, changes };
  if (family === 'inet6') update.family = family;
  if (refused.length > 0) update.refused = refused;
  return update;
}

/** `decode`'s value, or the reason of the StanzaError it threw. */
function refusal<T>(decode: () => T): { value: T } | string {
  try {
    return { value: decode() };
  } catch (error) {
    if (error instanceof StanzaError) return error.message;
    throw error;
  }
}

/** A stream-level error the peer sent before closing: its condition and text. */
export interface StreamErrorInfo {
  condition: string;
  text: string;
}

/** Decodes one stanza; throws StanzaError naming what is wrong. A `<stream:error>` is returned as StreamErrorInfo. */
export function decodeStanza(element: XmlElement): Stanza | StreamErrorInfo {
  switch (element.name) {
    case 'iq': {
      if (attribute(element, 'type') !== 'set') fail(`<iq type="${element.attributes.type}"> is not expected`);
      const address = addressOf(element);
      const payload = onlyChild(element);
      // IF-MAP IQs carry no id (controller_peer.cc, ifmap_encoder.cc); <config> has no namespace.
      if (payload.name === 'config') return { kind: 'config-update', ...address, changes: decodeConfig(payload) };
      if (payload.name === 'pubsub' && address.to.endsWith(`/${CONFIG_RESOURCE}`)) return decodeConfigSubscribe(payload, address);
      const id = element.attributes.id ?? '';
      if (payload.name === 'pubsub') return decodePubsubIq(element, address, id);
      return fail(`unexpected IQ payload <${payload.name}>`);
    }
    case 'message':
      return decodeMessage(element);
    case 'stream:error': {
      const condition = element.children.find((item) => item.name !== 'text');
      const text = element.children.find((item) => item.name === 'text');
      return { condition: condition?.name ?? 'undefined-condition', text: text?.text ?? '' };
    }
    default:
      return fail(`unexpected stanza <${element.name}>`);
  }
}

export function isStreamError(decoded: Stanza | StreamErrorInfo): decoded is StreamErrorInfo {
  return 'condition' in decoded;
}

/** The addressing of a `<stream:stream>` open tag; any xmlns (the agent's subcluster, jabber:client) is accepted. */
export function decodeStreamHeader(element: XmlElement): StreamHeader {
  if (element.attributes['xmlns:stream'] !== STREAM_NS) fail(`<stream:stream> must declare xmlns:stream="${STREAM_NS}"`);
  const from = attribute(element, 'from');
  if (from === '') fail('<stream:stream> from is empty');
  const header: StreamHeader = { from, to: element.attributes.to ?? '' };
  const { id, xmlns } = element.attributes;
  if (id !== undefined) header.id = id;
  if (xmlns !== undefined) header.xmlns = xmlns;
  return header;
}
