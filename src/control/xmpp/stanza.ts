/**
 * The stanzas of the vrouter <-> control node XMPP channel, as typed values.
 * Route and IF-MAP stanzas follow OpenContrail's agent/control-node XMPP
 * exactly (see codec.ts and ifmap/codec.ts for the wire forms).
 */
import type { IfmapChange } from '../ifmap/types';

/** The control node's bare address; route stanzas go to its `/bgp-peer`, IF-MAP subscribes to its `/config`. */
export const CONTROL_NODE_JID = 'network-control@contrailsystems.com';
export const BGP_PEER_RESOURCE = 'bgp-peer';
export const CONFIG_RESOURCE = 'config';
/** What contrail-control's answering open adds to the addressing (xmpp_str.h sXMPP_STREAM_RESP). */
export const CONTROL_NODE_STREAM = { id: '++123', xmlns: 'jabber:client' } as const;
export const PUBSUB_NS = 'http://jabber.org/protocol/pubsub';
export const STREAM_NS = 'http://etherx.jabber.org/streams';
/** The pubsub node of the End-of-RIB marker. */
export const END_OF_RIB_NODE = '0/0/EndOfRib';
/** Keepalive: U+0200 in UTF-8, sent between stanzas every hold time / 3. */
export const KEEPALIVE = Buffer.from([0xc8, 0x80]);
export const KEEPALIVE_CHAR = '\u0200';
export const DEFAULT_HOLD_TIME_SECONDS = 90;

/** One next hop of a route: the node that has the destination and how to reach it. */
export interface WireNexthop {
  /** Underlay IPv4 of the node. */
  address: string;
  /** MPLS label the node gave the destination. */
  label: number;
  /** Encapsulations the node accepts, e.g. ["gre", "udp"]. */
  encaps: string[];
  /** '' when the control node sent none (contrail-control before mid-2016 put it in the entry, or nowhere). */
  virtualNetwork: string;
}

/**
 * The unicast families this channel carries: inet (AFI 1, SAFI 1) and
 * inet6 (AFI 2, SAFI 1). A route's prefix says which: an IPv6 prefix has a
 * ':'. Both are published and pushed alike (tungstenfabric/tf-controller
 * 6a674397821187fedfffd9586942b906d3479dbc, src/vnsw/agent/controller/
 * controller_peer.cc ControllerSendV4V6UnicastRouteCommon; src/bgp/
 * bgp_xmpp_channel.cc ProcessInet6Item): node "2/1/<instance>/<prefix>",
 * nlri af 2, next hops still af 1 (the node's IPv4 underlay address).
 */
export type RouteFamily = 'inet' | 'inet6';

/** The family of a prefix ("a.b.c.d/len" or "x:x::/len"). */
export function familyOf(prefix: string): RouteFamily {
  return prefix.includes(':') ? 'inet6' : 'inet';
}

/** The AFI of a family on the wire: 1 IPv4, 2 IPv6 (BgpAf::IPv4, BgpAf::IPv6). */
export function afiOf(family: RouteFamily): 1 | 2 {
  return family === 'inet6' ? 2 : 1;
}

/** The `<entry>` of a unicast route: IPv4 (af 1) or IPv6 (af 2), SAFI 1. */
export interface RouteEntry {
  /** The nlri address, "a.b.c.d/len" or "x:x::x/len". */
  prefix: string;
  nexthops: WireNexthop[];
  version: number;
  sequenceNumber: number;
  localPreference: number;
  med: number;
}

/** Addressing every IQ and message carries; kept so a decoded stanza re-encodes byte for byte. */
export interface StanzaAddress {
  from: string;
  to: string;
}

export interface SubscribeStanza extends StanzaAddress {
  kind: 'subscribe';
  id: string;
  vrf: string;
  instanceId: number;
}

export interface UnsubscribeStanza extends StanzaAddress {
  kind: 'unsubscribe';
  id: string;
  vrf: string;
}

/** First half of a route publication or withdrawal: the route under pubsub node "1/1/<vrf>/<prefix>" ("2/1/..." for IPv6). */
export interface PublishStanza extends StanzaAddress {
  kind: 'publish';
  id: string;
  vrf: string;
  entry: RouteEntry;
}

/** Second half: associating the route's node with the VRF's collection installs it, dissociating withdraws it. */
export interface CollectionStanza extends StanzaAddress {
  kind: 'associate' | 'dissociate';
  id: string;
  vrf: string;
  prefix: string;
}

/** A route pushed into a VRF (entry) or retracted from it (null). */
export interface RouteChange {
  prefix: string;
  entry: RouteEntry | null;
}

/** The control node's route push: `<message><event><items node="1/1/<vrf>">` (inet6: "2/1/<vrf>") with items and retracts. */
export interface RouteUpdateStanza extends StanzaAddress {
  kind: 'route-update';
  vrf: string;
  /** Set for an inet6 push (every change of it is IPv6); absent for inet. */
  family?: 'inet6';
  changes: RouteChange[];
  /** Items of the push that were dropped, the rest applied (absent when none was). */
  refused?: RefusedItem[];
}

/**
 * A route item dropped for what it holds, the session kept: contrail-control's
 * BgpXmppChannel::ReceiveUpdate ignores what ProcessItem returns, and
 * ProcessItem logs and returns false for each item of
 * src/bgp/testdata/bad_inet_item_1..6.xml (bgp_xmpp_parse_test.cc
 * InetItemError1..6; tungstenfabric/tf-controller
 * 6a674397821187fedfffd9586942b906d3479dbc, src/bgp/bgp_xmpp_channel.cc).
 */
export interface RefusedItem {
  /** The item's prefix as its node or id names it ('' when it names none). */
  prefix: string;
  reason: string;
}

export interface EndOfRibStanza extends StanzaAddress {
  kind: 'end-of-rib';
}

/** vrouter -> control node: IF-MAP (un)subscribe of its virtual-router or of a VM, to the `/config` resource; no id. */
export interface ConfigSubscribeStanza extends StanzaAddress {
  kind: 'config-subscribe';
  /** `virtual-router:default-global-system-config:<node>` or `virtual-machine:<uuid>`. */
  node: string;
  subscribe: boolean;
}

/** control node -> vrouter: IF-MAP `<config>` with its `<update>` / `<delete>` blocks. */
export interface ConfigUpdateStanza extends StanzaAddress {
  kind: 'config-update';
  changes: IfmapChange[];
}

/**
 * A push (or publish) of an address family this channel does not carry:
 * contrail-control sends every family of a subscribed instance (EVPN
 * 25/242, multicast 1/241, 1/5, ...). Counted and dropped, never sent.
 */
export interface IgnoredItemsStanza extends StanzaAddress {
  kind: 'ignored-items';
  /** "<afi>/<safi>", e.g. "25/242". */
  family: string;
  instance: string;
  /** Items and retracts it held. */
  items: number;
}

/** vrouter -> control node: a publish whose item was dropped for what it holds (see RefusedItem). */
export interface RefusedPublishStanza extends StanzaAddress {
  kind: 'refused-publish';
  id: string;
  vrf: string;
  item: RefusedItem;
}

/** Every stanza but the decoder's reports of what it dropped: the ones this project sends. */
export type SentStanza = Exclude<Stanza, IgnoredItemsStanza | RefusedPublishStanza>;

export type Stanza =
  | IgnoredItemsStanza
  | RefusedPublishStanza
  | ConfigSubscribeStanza
  | ConfigUpdateStanza
  | SubscribeStanza
  | UnsubscribeStanza
  | PublishStanza
  | CollectionStanza
  | RouteUpdateStanza
  | EndOfRibStanza;

/**
 * The opening `<stream:stream>` tag's addressing. The agent's open carries
 * `xmlns` = its subcluster (usually ''); contrail-control's answer adds
 * `id="++123"` and has `xmlns="jabber:client"` (src/xmpp/xmpp_str.h).
 */
export interface StreamHeader {
  from: string;
  to: string;
  id?: string;
  xmlns?: string;
}

/** A stanza that is not well formed or not one this channel carries; the session carrying it is closed. */
export class StanzaError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StanzaError';
  }
}
