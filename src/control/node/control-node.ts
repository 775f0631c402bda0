/**
 * The control node: an XMPP server (TCP 5269; with `tls`, STARTTLS required
 * as contrail-control's xmpp_auth_enable, see xmpp/starttls.ts) for many
 * vrouters. It
 *
 * - configures the pods registered on its pod API (NetworkManager decides
 *   VN, address, floating IPs, policies; `podStateFile` keeps them across a
 *   restart, pod-store.ts) and serves that configuration as IF-MAP
 *   (ifmap-publisher.ts): each vrouter gets, after it subscribes its
 *   virtual-router and each port's virtual-machine, that part of the graph,
 *   then only what changes in it;
 * - keeps, per routing instance, the routes each vrouter published, and
 *   sends every subscriber the best routes of the instances it subscribed
 *   to, ECMP-merged and with leaked routes (RouteTables);
 * - sends End-of-RIB after the dump that follows the vrouter's own
 *   End-of-RIB (or a fallback delay). For `restartConvergenceTime` after
 *   it starts, End-of-RIB is held back (released early once every vrouter
 *   of `vrouters` has sent its own): after a control node restart, the
 *   vrouters reconnect one by one, and one that swept its stale routes at
 *   once would drop those of vrouters not back yet;
 * - helps a vrouter through graceful restart: when its session drops without
 *   a stream close, its routes stay for `gracefulRestartTime`;
 *   when it reconnects they are stale until re-sent, and those not re-sent
 *   by its End-of-RIB are removed;
 * - applies a new configuration (reload) to every port and view, pushing
 *   only what changed.
 *
 * A vrouter may publish only what the control node gave its ports: each
 * port's addresses (IPv4 /32, IPv6 /128) and floating IPs, in the routing instance of the port's
 * VN, with exactly one next hop (contrail-control drops an agent's item with
 * more). Any other publish, and an item that does not decode, is refused:
 * not installed, counted, logged, the session kept, as contrail-control
 * keeps it (BgpXmppChannel::ReceiveUpdate ignores what ProcessItem returns;
 * tungstenfabric/tf-controller 6a674397821187fedfffd9586942b906d3479dbc,
 * src/bgp/bgp_xmpp_channel.cc). When a port's configuration changes, what
 * its vrouter published and is no longer given is withdrawn.
 *
 * A malformed or unexpected stanza closes that vrouter's session only; so
 * does a publish without a subscription, as contrail-control's
 * VerifyMembership failing closes the channel.
 */
import net, { AddressInfo, Socket } from 'node:net';
import { TLSSocket, TlsOptions } from 'node:tls';
import { NetworkManager, PortOutcome, ViewSources } from './network-manager';
import { vmUuidOf, type LocalPort } from '../agent/agent-interface';
import { buildConfigGraph, IfmapInterest, vrouterGraph } from './ifmap-publisher';
import { virtualRouterName, virtualRouterSubscription } from '../ifmap/codec';
import { IfmapGraph } from '../ifmap/graph';
import { networkFqns } from '../ifmap/names';
import { loadPods, savePods } from './pod-store';
import { RouteTables, ViewChange } from './route-tables';
import { NetworkConfig } from './network-config';
import { controlToVrouter, encodeRetract, encodeRouteUpdateItems, encodeStanza } from '../xmpp/codec';
import { Logger, silentLogger } from '../xmpp/logger';
import { XmppSession } from '../xmpp/session';
import { startTlsAsServer } from '../xmpp/starttls';
import {
  BGP_PEER_RESOURCE,
  CONFIG_RESOURCE,
  CONTROL_NODE_JID,
  CONTROL_NODE_STREAM,
  ConfigSubscribeStanza,
  RouteEntry,
  Stanza,
  StanzaError,
  StreamHeader,
  familyOf,
  type RouteFamily,
} from '../xmpp/stanza';

export interface ControlNodeOptions {
  config: NetworkConfig;
  logger?: Logger;
  /** Where the registered pods are kept (pod-store.ts): read back here, written on every change. */
  podStateFile?: string;
  /**
   * Peers whose publishes are installed without checking what their ports
   * were given: route sources that are no compute node (a gateway, a
   * benchmark's). Never a vrouter hosting pods.
   */
  unrestrictedPublishers?: ReadonlySet<string>;
}

const VIRTUAL_MACHINE_PREFIX = 'virtual-machine:';

/** How long to wait for a vrouter's End-of-RIB before treating its initial burst as complete. */
const END_OF_RIB_FALLBACK_SECONDS = 30;
const ROUTE_FAMILIES: readonly RouteFamily[] = ['inet', 'inet6'];

/** The routes of one family of a view's table, read as the iteration reaches them (changes meanwhile included). */
function* routesOfFamily(routes: Map<string, Buffer>, family: RouteFamily): Iterator<[string, Buffer]> {
  for (const route of routes) if (familyOf(route[0]) === family) yield route;
}

/** Items per pushed `<message>`; bounds one stanza's size for the receiving parser. */
const ITEMS_PER_MESSAGE = 500;
/** Bytes handed to a socket before waiting for it to drain, so a big dump does not pile up in memory. */
const DRAIN_EVERY_BYTES = 1 << 20;

/** What the control node remembers of a vrouter, across its sessions. */
interface VrouterState {
  name: string;
  channel: VrouterChannel | null;
  /** After a reconnect: "instance\0prefix" routes not yet re-sent. */
  staleRoutes: Set<string> | null;
  graceTimer: NodeJS.Timeout | null;
  endOfRibTimer: NodeJS.Timeout | null;
}

/** One session with a vrouter and what was sent on it. */
class VrouterChannel {
  name: string | null = null;
  /** Instances subscribed to on this session -> instance-id. */
  readonly subscriptions = new Map<string, number>();
  /** Published but not yet associated routes, "instance\0prefix" -> entry. */
  readonly pendingPublish = new Map<string, RouteEntry>();
  /** Publishes refused (and counted) whose associate is to be dropped too, "instance\0prefix". */
  readonly refusedPublish = new Set<string>();
  /**
   * Routes refused as not given to the vrouter's ports, "instance\0prefix" -> entry: installed if
   * a port is given that prefix later (a publish can overtake the port's registration on this
   * control node, as with two control nodes), until withdrawn or published again.
   */
  readonly heldPublish = new Map<string, RouteEntry>();
  /** What the vrouter subscribed to over IF-MAP, and the graph sent to it so far. */
  readonly ifmapInterest: IfmapInterest = { virtualRouter: false, vms: new Set() };
  ifmapSent = new IfmapGraph();
  /** The vrouter has re-sent what it has (its End-of-RIB, or the fallback delay passed). */
  initialBurstDone = false;
  endOfRibSent = false;
  /**
   * Items of a view in one family, a whole view's dump of one family (expanded as it is sent, so the
   * first bytes leave at once), or a stanza. A push carries one family: inet "1/1/" or inet6 "2/1/".
   */
  private outbox: Array<
    { view: string; family: RouteFamily; item: Buffer } | { view: string; family: RouteFamily; dump: Iterator<[string, Buffer]> } | { view: null; xml: string }
  > = [];
  private draining = false;
  /** Bytes handed to the socket since it last drained, across drains: one route a turn adds up as much as a dump. */
  private bytesSinceDrain = 0;

  constructor(readonly session: XmppSession) {}

  /** Queues an item or retract for a view; consecutive ones for one view and family share a message. */
  queueRoute(view: string, family: RouteFamily, item: Buffer): void {
    this.outbox.push({ view, family, item });
    this.scheduleDrain();
  }

  /** Queues every route of a view as it is when sent, inet then inet6; changes queued later follow it. */
  queueDump(view: string, routes: Map<string, Buffer>): void {
    for (const family of ROUTE_FAMILIES) this.outbox.push({ view, family, dump: routesOfFamily(routes, family) });
    this.scheduleDrain();
  }

  /** Queues a whole stanza, in order with the routes. */
  queueStanza(xml: string): void {
    this.outbox.push({ view: null, xml });
    this.scheduleDrain();
  }

  private scheduleDrain(): void {
    if (this.draining) return;
    this.draining = true;
    setImmediate(() => void this.drain());
  }

  private async drain(): Promise<void> {
    const address = controlToVrouter(this.name!, BGP_PEER_RESOURCE);
    while (this.outbox.length > 0 && !this.session.isClosed) {
      const batch = this.outbox;
      this.outbox = [];
      for (let index = 0; index < batch.length && !this.session.isClosed; ) {
        const next = batch[index];
        let stanza: string | Buffer;
        if (next.view !== null && !this.subscriptions.has(next.view)) {
          index++; // unsubscribed since it was queued
          continue;
        }
        if (next.view === null) {
          stanza = next.xml;
          index++;
        } else if ('dump' in next) {
          const items: Buffer[] = [];
          let count = 0;
          let route = next.dump.next();
          while (!route.done) {
            items.push(route.value[1]);
            if (++count === ITEMS_PER_MESSAGE) break;
            route = next.dump.next();
          }
          if (route.done) index++;
          if (count === 0) continue;
          stanza = encodeRouteUpdateItems(address, next.view, items, next.family);
        } else {
          const { view, family } = next;
          const items: Buffer[] = [];
          const end = Math.min(batch.length, index + ITEMS_PER_MESSAGE);
          for (let item = batch[index]; index < end && item.view === view && 'item' in item && item.family === family; item = batch[++index]) {
            items.push(item.item);
          }
          stanza = encodeRouteUpdateItems(address, view, items, family);
        }
        this.session.send(stanza);
        this.bytesSinceDrain += stanza.length;
        if (this.bytesSinceDrain >= DRAIN_EVERY_BYTES) {
          this.bytesSinceDrain = 0;
          await this.session.drained();
        }
      }
    }
    this.draining = false;
  }
}

export class ControlNode {
  private config: NetworkConfig;
  private readonly logger: Logger;
  private readonly unrestrictedPublishers: ReadonlySet<string>;
  private readonly server: net.Server;
  private readonly network: NetworkManager;
  private readonly routes: RouteTables;
  private readonly vrouters = new Map<string, VrouterState>();
  private readonly subscribers = new Map<string, Set<VrouterChannel>>();
  private readonly channels = new Set<VrouterChannel>();
  /** Connections still negotiating STARTTLS. */
  private readonly negotiating = new Set<Socket>();
  /** The NetworkManager rules version the views and pushed configurations follow. */
  private appliedRulesVersion = -1;
  /** Set while End-of-RIB is held back after start. */
  private convergenceTimer: NodeJS.Timeout | null = null;
  /** Publishes of families other than inet unicast (a real agent's EVPN, inet6...), dropped. */
  private ignoredItemCount = 0;
  /** The whole configuration as IF-MAP; null when a change made it out of date. */
  private configGraph: IfmapGraph | null = null;
  private readonly podStateFile: string | null;
  /** Per vrouter, the "instance\0prefix" its ports were given; null when a change made it out of date. */
  private authorizedRoutes: Map<string, Set<string>> | null = null;
  /** A publication waiting (schedulePublish), for every vrouter or these channels, and how long the last one took. */
  private cancelPublish: (() => void) | null = null;
  private lastPublish = { endedAt: 0, ms: 0 };
  private refreshPending = false;
  private publishPending = new Set<VrouterChannel>();
  private readonly refusedPublishCounts: Record<PublishRefusal, number> = { malformed: 0, 'not-given': 0, 'next-hops': 0 };

  /** Reads the pods of `podStateFile` back (a PodStateError names file, field and value). */
  constructor(options: ControlNodeOptions) {
    this.config = options.config;
    this.logger = options.logger ?? silentLogger;
    this.unrestrictedPublishers = options.unrestrictedPublishers ?? new Set();
    this.network = new NetworkManager(this.config);
    this.podStateFile = options.podStateFile ?? null;
    if (this.podStateFile !== null) {
      const pods = loadPods(this.podStateFile);
      for (const { vrouter, port, address, address6 } of pods) this.network.addPort(vrouter, port, address, address6 ?? null);
      if (pods.length > 0) this.logger.info(`${pods.length} registered pods read back from ${this.podStateFile}`);
    }
    this.routes = new RouteTables(routingInstanceViews(this.network.viewSources()));
    this.server = net.createServer((socket) => this.accept(socket));
  }

  /** Starts accepting vrouters; resolves with the bound address (port 0 picks a free one). */
  listen(port: number, host: string): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        this.convergenceTimer = setTimeout(() => this.converged(), this.config.restartConvergenceTime * 1000);
        const address = this.server.address() as AddressInfo;
        this.logger.info(`control node listening on ${address.address}:${address.port}${this.config.tls ? ' (STARTTLS required)' : ''}`);
        resolve(address);
      });
    });
  }

  address(): AddressInfo {
    return this.server.address() as AddressInfo;
  }

  /** Names of the vrouters with an open session. */
  connectedVrouters(): string[] {
    return [...this.vrouters.values()].filter((state) => state.channel !== null).map((state) => state.name);
  }

  /** Items of families this control node does not carry that vrouters published, since start. */
  ignoredItems(): number {
    return this.ignoredItemCount;
  }

  /** Publishes refused since start, by reason (see PublishRefusal). */
  refusedPublishes(): Record<PublishRefusal, number> {
    return { ...this.refusedPublishCounts };
  }

  /**
   * Applies a new configuration without restarting: ports, policies and leaks
   * are recomputed, changes pushed; connections from now on follow its `tls`.
   */
  reload(config: NetworkConfig): void {
    this.config = config;
    this.network.setConfig(config);
    for (const state of this.vrouters.values()) {
      if (state.channel && config.vrouters && !config.vrouters.has(state.name)) {
        state.channel.session.close(`vrouter ${state.name} is no longer in the configuration`, 'not-authorized');
      }
    }
    this.refresh();
    this.savePods();
    this.logger.info(`configuration ${config.file} applied`);
  }

  /**
   * A pod registered on the pod API (pod-api.ts): what it gets, now also
   * served to its vrouter. A refused pod is not kept.
   */
  registerPod(vrouter: string, port: LocalPort): PortOutcome {
    const outcome = this.network.addPort(vrouter, port);
    if ('refused' in outcome) this.network.removePort(vrouter, port.id);
    this.refresh();
    this.savePods();
    return outcome;
  }

  /** registerPod for many pods, with one recomputation of rules and views (the Kubernetes source's first pass). */
  registerPods(entries: Array<{ vrouter: string; port: LocalPort }>): PortOutcome[] {
    const outcomes = this.network.addPorts(entries);
    outcomes.forEach((outcome, index) => {
      if ('refused' in outcome) this.network.removePort(entries[index].vrouter, entries[index].port.id);
    });
    if (entries.length > 0) {
      this.refresh();
      this.savePods();
    }
    return outcomes;
  }

  /** Removes the registered pods of a VM; false when none was. */
  unregisterPods(vmUuid: string): boolean {
    const gone = [...this.network.registeredPorts()].filter(({ port }) => vmUuidOf(port) === vmUuid);
    for (const { vrouter, port } of gone) this.network.removePort(vrouter, port.id);
    if (gone.length === 0) return false;
    this.refresh();
    this.savePods();
    return true;
  }

  /** The external pool's address given to a LoadBalancer service, if any. */
  loadBalancerIp(service: string): string | undefined {
    return this.network.loadBalancerIp(service);
  }

  registeredPods(): Array<{ vrouter: string; port: LocalPort; outcome: PortOutcome }> {
    return [...this.network.registeredPorts()];
  }

  /** Writes the registered pods and their addresses to `podStateFile`, when there is one. */
  private savePods(): void {
    if (this.podStateFile === null) return;
    const pods = [...this.network.registeredPorts()].map(({ vrouter, port, outcome }) => ({
      vrouter,
      port,
      address: 'config' in outcome ? outcome.config.ip : null,
      address6: 'config' in outcome ? (outcome.config.ip6 ?? null) : null,
    }));
    savePods(this.podStateFile, pods);
  }

  /** Whether a vrouter of this name may connect (the configuration's `vrouters`, when it has one). */
  knowsVrouter(name: string): boolean {
    return this.config.vrouters === null || this.config.vrouters.has(name);
  }

  /** Closes every session (with a stream close: vrouters keep their routes as stale) and stops listening. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    if (this.convergenceTimer) clearTimeout(this.convergenceTimer);
    this.cancelPublish?.();
    for (const channel of [...this.channels]) channel.session.close('control node shutting down');
    for (const socket of this.negotiating) socket.destroy();
    for (const state of this.vrouters.values()) this.clearTimers(state);
    await closed;
  }

  /** A new connection: with `tls`, STARTTLS first, as contrail-control with xmpp_auth_enable. */
  private accept(socket: Socket): void {
    const tlsConfig = this.config.tls;
    if (!tlsConfig) return this.openSession(socket);
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    // With a CA, as contrail-control's verify_peer, and stricter: a certificate is required (its name is checked in refusal()).
    const serverTls: TlsOptions = {
      cert: tlsConfig.cert,
      key: tlsConfig.key,
      ca: tlsConfig.ca ?? undefined,
      requestCert: tlsConfig.ca !== null,
      rejectUnauthorized: tlsConfig.ca !== null,
    };
    this.negotiating.add(socket);
    startTlsAsServer(socket, (header) => this.answer(header), serverTls, this.config.holdTime * 1000).then(
      (secure) => {
        this.negotiating.delete(socket);
        this.openSession(secure);
      },
      (error: Error) => {
        this.negotiating.delete(socket);
        this.logger.warn(`vrouter session from ${peer}: STARTTLS failed: ${error.message}`);
      },
    );
  }

  private openSession(socket: Socket): void {
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    let channel: VrouterChannel | null = null;
    const session = new XmppSession(
      socket,
      { holdTime: this.config.holdTime, logger: this.logger, name: `vrouter session from ${peer}` },
      {
        streamOpen: (header) => this.streamOpened(channel!, header, socket),
        stanza: (stanza) => this.handle(channel!, stanza),
        closed: (reason) => this.channelClosed(channel!, reason),
      },
    );
    channel = new VrouterChannel(session);
    this.channels.add(channel);
  }

  private streamOpened(channel: VrouterChannel, header: StreamHeader, socket: Socket): void {
    const name = header.from;
    channel.session.openStream(this.answer(header));
    const refusal = this.refusal(name, socket);
    if (refusal !== null) return channel.session.close(refusal, 'not-authorized');
    channel.name = name;
    let state = this.vrouters.get(name);
    if (!state) {
      state = { name, channel: null, staleRoutes: null, graceTimer: null, endOfRibTimer: null };
      this.vrouters.set(name, state);
    } else {
      // Back within the grace period (or a second session): what it had is stale until re-sent.
      this.clearTimers(state);
      state.staleRoutes = new Set(this.routes.publishedBy(name).map(({ instance, prefix }) => routeKey(instance, prefix)));
    }
    const previous = state.channel;
    state.channel = channel;
    previous?.session.close(`vrouter ${name} opened a new session`, 'conflict');
    state.endOfRibTimer = setTimeout(() => this.endOfInitialBurst(state), END_OF_RIB_FALLBACK_SECONDS * 1000);
    this.logger.info(`vrouter ${name} connected`);
  }

  /** contrail-control's answering open: to the vrouter's from. */
  private answer(header: StreamHeader): StreamHeader {
    return { from: CONTROL_NODE_JID, to: header.from, ...CONTROL_NODE_STREAM };
  }

  /** Why a vrouter may not connect, or null. */
  private refusal(name: string, socket: Socket): string | null {
    if (this.config.vrouters && !this.config.vrouters.has(name)) return `vrouter ${name} is not in the configuration's vrouters`;
    if (socket instanceof TLSSocket && this.config.tls?.ca) {
      const certificate = socket.getPeerCertificate();
      const names = [certificate.subject?.CN, ...(certificate.subjectaltname ?? '').split(', ').map((alt) => alt.replace(/^DNS:/, ''))];
      if (!names.includes(name)) return `vrouter ${name} presented a certificate for ${names.filter(Boolean).join(', ') || 'no name'}`;
    }
    return null;
  }

  private handle(channel: VrouterChannel, stanza: Stanza): void {
    const name = channel.name;
    if (name === null) throw new StanzaError('stanza before the session was accepted');
    if (stanza.from !== name) throw new StanzaError(`stanza from ${stanza.from} on the session of ${name}`);
    const state = this.vrouters.get(name)!;
    switch (stanza.kind) {
      case 'subscribe':
        return this.subscribe(channel, stanza.vrf, stanza.instanceId);
      case 'unsubscribe':
        return this.unsubscribe(channel, stanza.vrf);
      case 'publish': {
        if (!channel.subscriptions.has(stanza.vrf)) throw new StanzaError(`publish to ${stanza.vrf} without a subscription`);
        const key = routeKey(stanza.vrf, stanza.entry.prefix);
        channel.refusedPublish.delete(key);
        channel.pendingPublish.set(key, stanza.entry);
        return;
      }
      case 'refused-publish': {
        // Before any subscription check, as contrail-control's ProcessItem refuses a bad item before VerifyMembership.
        const key = routeKey(stanza.vrf, stanza.item.prefix);
        channel.pendingPublish.delete(key);
        channel.refusedPublish.add(key);
        return this.refusePublish(name, stanza.vrf, stanza.item.prefix, 'malformed', stanza.item.reason);
      }
      case 'associate': {
        const key = routeKey(stanza.vrf, stanza.prefix);
        const entry = channel.pendingPublish.get(key);
        if (!entry && channel.refusedPublish.delete(key)) return; // refused and counted at its publish
        if (!entry) throw new StanzaError(`associate of ${stanza.prefix} in ${stanza.vrf} without a publish`);
        channel.pendingPublish.delete(key);
        channel.heldPublish.delete(key);
        const refusal = this.publishRefusal(name, key, entry);
        if (refusal?.reason === 'not-given' && entry.nexthops.length === 1) channel.heldPublish.set(key, entry);
        if (refusal !== null) return this.refusePublish(name, stanza.vrf, stanza.prefix, refusal.reason, refusal.detail);
        state.staleRoutes?.delete(key);
        return this.distribute(this.routes.publish(name, stanza.vrf, entry));
      }
      case 'dissociate': {
        const key = routeKey(stanza.vrf, stanza.prefix);
        channel.pendingPublish.delete(key);
        channel.refusedPublish.delete(key);
        channel.heldPublish.delete(key);
        state.staleRoutes?.delete(key);
        return this.distribute(this.routes.withdraw(name, stanza.vrf, stanza.prefix));
      }
      case 'end-of-rib':
        return this.endOfInitialBurst(state);
      case 'config-subscribe':
        return this.configSubscribe(channel, stanza);
      case 'ignored-items':
        this.ignoredItemCount += stanza.items;
        return;
      default:
        throw new StanzaError(`a vrouter does not send ${stanza.kind}`);
    }
  }

  /**
   * Why a vrouter may not install a published route, or null: the prefix
   * was not given to any of its ports in that instance, or the route has
   * other than one next hop (contrail-control's ProcessItem: "Agents should
   * send only one next-hop in the item", and it refuses an add without one).
   */
  private publishRefusal(vrouter: string, key: string, entry: RouteEntry): { reason: PublishRefusal; detail: string } | null {
    if (!this.unrestrictedPublishers.has(vrouter) && !this.authorizedFor(vrouter).has(key)) return { reason: 'not-given', detail: 'not an address or floating IP of a port of this vrouter in this instance' };
    if (entry.nexthops.length !== 1) return { reason: 'next-hops', detail: `${entry.nexthops.length} next hops, not one` };
    return null;
  }

  private refusePublish(vrouter: string, instance: string, prefix: string, reason: PublishRefusal, detail: string): void {
    this.refusedPublishCounts[reason]++;
    this.logger.warn(`vrouter ${vrouter}: publish of ${prefix} in ${instance} refused (${reason}): ${detail}`);
  }

  /** The "instance\0prefix" routes a vrouter's ports were given (their addresses and floating IPs in their VN's instance, an external one in the external VN's), and a gateway's routes. */
  private authorizedFor(vrouter: string): ReadonlySet<string> {
    if (this.authorizedRoutes === null) {
      const authorized = new Map<string, Set<string>>();
      for (const { vrouter: owner, config } of this.network.configuredPorts()) {
        let routes = authorized.get(owner);
        if (!routes) authorized.set(owner, (routes = new Set()));
        const instance = networkFqns(config.vn).routingInstance;
        routes.add(routeKey(instance, hostPrefix(config.ip)));
        if (config.ip6 !== undefined) routes.add(routeKey(instance, hostPrefix(config.ip6)));
        for (const floatingIp of config.floatingIps) routes.add(routeKey(floatingIp.vn === undefined ? instance : networkFqns(floatingIp.vn).routingInstance, hostPrefix(floatingIp.ip)));
      }
      // A gateway of the external VN (network.yaml external.gateways) publishes its routes there.
      const external = this.config.external;
      for (const [gateway, prefixes] of external?.gateways ?? []) {
        let routes = authorized.get(gateway);
        if (!routes) authorized.set(gateway, (routes = new Set()));
        for (const prefix of prefixes) routes.add(routeKey(networkFqns(external!.name).routingInstance, prefix));
      }
      this.authorizedRoutes = authorized;
    }
    return this.authorizedRoutes.get(vrouter) ?? NOTHING_GIVEN;
  }

  /**
   * After a port change: withdraws what vrouters published and their ports
   * are no longer given, installs held routes they now are.
   */
  private followGivenRoutes(): void {
    for (const state of this.vrouters.values()) {
      if (this.unrestrictedPublishers.has(state.name)) continue;
      const authorized = this.authorizedFor(state.name);
      for (const { instance, prefix } of this.routes.publishedBy(state.name)) {
        if (authorized.has(routeKey(instance, prefix))) continue;
        this.logger.info(`vrouter ${state.name}: ${prefix} in ${instance} withdrawn: no longer given to its ports`);
        this.distribute(this.routes.withdraw(state.name, instance, prefix));
      }
      const held = state.channel?.heldPublish;
      for (const [key, entry] of held ?? []) {
        if (!authorized.has(key)) continue;
        held!.delete(key);
        state.staleRoutes?.delete(key);
        const [instance] = key.split('\0');
        this.logger.info(`vrouter ${state.name}: ${entry.prefix} in ${instance} installed: now given to its ports`);
        this.distribute(this.routes.publish(state.name, instance, entry));
      }
    }
  }

  /**
   * IF-MAP (un)subscribe: the vrouter's own virtual-router, or a VM. A
   * virtual-router other than the session's is refused (logged, the
   * session kept), as is an identifier type not served.
   */
  private configSubscribe(channel: VrouterChannel, stanza: ConfigSubscribeStanza): void {
    const interest = channel.ifmapInterest;
    if (stanza.node === virtualRouterSubscription(channel.name!)) {
      interest.virtualRouter = stanza.subscribe;
    } else if (stanza.node.startsWith(VIRTUAL_MACHINE_PREFIX) && stanza.node.length > VIRTUAL_MACHINE_PREFIX.length) {
      const vm = stanza.node.slice(VIRTUAL_MACHINE_PREFIX.length);
      if (stanza.subscribe) interest.vms.add(vm);
      else interest.vms.delete(vm);
      // A VM the virtual-router's walk reached was sent with all it reaches: its own interest changes nothing.
      const router = virtualRouterName(channel.name!);
      const reached = channel.ifmapSent.neighbours({ type: 'virtual-machine', name: vm }, 'virtual-router').some((node) => node.name === router);
      if (interest.virtualRouter && reached && !this.refreshPending) return;
    } else {
      return this.logger.warn(`vrouter ${channel.name}: config subscribe of ${stanza.node} refused: not its virtual-router or a virtual-machine`);
    }
    this.schedulePublish(channel);
  }

  /** Sends the vrouter what changed in its part of the IF-MAP graph since the last send (deletes for what it no longer subscribes). */
  private publishConfig(channel: VrouterChannel): void {
    this.configGraph ??= buildConfigGraph(this.config, this.network.configuredPorts(), this.network.policyRules);
    const wanted = vrouterGraph(this.configGraph, channel.name!, channel.ifmapInterest);
    const changes = wanted.diffFrom(channel.ifmapSent);
    channel.ifmapSent = wanted;
    if (changes.length === 0) return;
    const address = { from: CONTROL_NODE_JID, to: `${virtualRouterName(channel.name!)}/${CONFIG_RESOURCE}` };
    channel.queueStanza(encodeStanza({ kind: 'config-update', ...address, changes }));
  }

  private subscribe(channel: VrouterChannel, view: string, instanceId: number): void {
    if (channel.subscriptions.has(view)) return this.logger.info(`vrouter ${channel.name} subscribed to ${view} twice`);
    channel.subscriptions.set(view, instanceId);
    let subscribers = this.subscribers.get(view);
    if (!subscribers) this.subscribers.set(view, (subscribers = new Set()));
    subscribers.add(channel);
    channel.queueDump(view, this.routes.materialize(view));
  }

  private unsubscribe(channel: VrouterChannel, view: string): void {
    if (!channel.subscriptions.delete(view)) return;
    const name = channel.name!;
    // Leaving an instance withdraws what the vrouter published there.
    for (const { instance, prefix } of this.routes.publishedBy(name)) {
      if (instance === view) this.distribute(this.routes.withdraw(name, instance, prefix));
    }
    this.dropSubscriber(channel, view);
  }

  private dropSubscriber(channel: VrouterChannel, view: string): void {
    const subscribers = this.subscribers.get(view);
    if (!subscribers) return;
    subscribers.delete(channel);
    if (subscribers.size === 0) {
      this.subscribers.delete(view);
      this.routes.release(view);
    }
  }

  /** The vrouter has re-sent what it has (End-of-RIB, or the fallback delay passed): sweep the stale, then say End-of-RIB. */
  private endOfInitialBurst(state: VrouterState): void {
    if (state.endOfRibTimer) clearTimeout(state.endOfRibTimer);
    state.endOfRibTimer = null;
    this.sweepStale(state);
    if (!state.channel) return;
    state.channel.initialBurstDone = true;
    const listed = this.config.vrouters;
    const everyoneBack = listed !== null && [...listed].every((name) => this.vrouters.get(name)?.channel?.initialBurstDone);
    if (this.convergenceTimer && everyoneBack) this.converged();
    else if (!this.convergenceTimer) this.sendEndOfRib(state.channel);
  }

  /** The hold-back after start is over: End-of-RIB to every vrouter that is waiting for it. */
  private converged(): void {
    if (this.convergenceTimer) clearTimeout(this.convergenceTimer);
    this.convergenceTimer = null;
    for (const channel of this.channels) if (channel.initialBurstDone) this.sendEndOfRib(channel);
  }

  private sendEndOfRib(channel: VrouterChannel): void {
    if (channel.endOfRibSent) return;
    channel.endOfRibSent = true;
    channel.queueStanza(encodeStanza({ kind: 'end-of-rib', ...controlToVrouter(channel.name!, BGP_PEER_RESOURCE) }));
  }

  private sweepStale(state: VrouterState): void {
    const staleRoutes = state.staleRoutes;
    state.staleRoutes = null;
    for (const key of staleRoutes ?? []) {
      const [instance, prefix] = key.split('\0');
      this.distribute(this.routes.withdraw(state.name, instance, prefix));
    }
    if ((staleRoutes?.size ?? 0) > 0) this.logger.info(`vrouter ${state.name}: removed ${staleRoutes!.size} stale routes`);
  }

  private channelClosed(channel: VrouterChannel, reason: string): void {
    this.channels.delete(channel);
    for (const view of channel.subscriptions.keys()) this.dropSubscriber(channel, view);
    const state = channel.name === null ? undefined : this.vrouters.get(channel.name);
    if (!state || state.channel !== channel) return;
    state.channel = null;
    if (state.endOfRibTimer) clearTimeout(state.endOfRibTimer);
    state.endOfRibTimer = null;
    if (reason === 'peer closed the stream') return this.forget(state, 'closed its session');
    const graceSeconds = this.config.gracefulRestartTime;
    this.logger.warn(`vrouter ${state.name} lost (${reason}); keeping its routes for ${graceSeconds} s`);
    state.graceTimer = setTimeout(() => this.forget(state, `did not come back within ${graceSeconds} s`), graceSeconds * 1000);
  }

  /** Removes the routes a vrouter published (its registered pods stay until deleted on the pod API). */
  private forget(state: VrouterState, why: string): void {
    this.clearTimers(state);
    this.vrouters.delete(state.name);
    for (const { instance, prefix } of this.routes.publishedBy(state.name)) {
      this.distribute(this.routes.withdraw(state.name, instance, prefix));
    }
    this.logger.info(`vrouter ${state.name} ${why}: its routes are removed`);
  }

  private clearTimers(state: VrouterState): void {
    if (state.graceTimer) clearTimeout(state.graceTimer);
    if (state.endOfRibTimer) clearTimeout(state.endOfRibTimer);
    state.graceTimer = null;
    state.endOfRibTimer = null;
  }

  /**
   * After a change of ports or configuration: new leaks to the views when
   * the rules changed, and to every vrouter what changed in its part of the
   * IF-MAP graph.
   */
  private refresh(): void {
    this.configGraph = null;
    this.authorizedRoutes = null;
    this.schedulePublish('all');
  }

  /**
   * Publishing walks the whole graph, so it waits for the end of this turn of
   * the event loop, and after a walk that took t ms, until t ms more have
   * passed: the registrations and subscriptions that arrive meanwhile (a
   * burst of pods, a vrouter coming back with 500 ports) share the next walk,
   * and requests keep at least half of the time.
   */
  private schedulePublish(channel: VrouterChannel | 'all'): void {
    if (channel === 'all') this.refreshPending = true;
    else this.publishPending.add(channel);
    if (this.cancelPublish !== null) return;
    const wait = this.lastPublish.endedAt + this.lastPublish.ms - performance.now();
    const publish = () => {
      this.cancelPublish = null;
      const started = performance.now();
      this.publishPendingConfig();
      const ended = performance.now();
      this.lastPublish = { endedAt: ended, ms: ended - started };
    };
    if (wait > 1) {
      const timer = setTimeout(publish, wait);
      this.cancelPublish = () => clearTimeout(timer);
    } else {
      const immediate = setImmediate(publish);
      this.cancelPublish = () => clearImmediate(immediate);
    }
  }

  private publishPendingConfig(): void {
    const channels = this.publishPending;
    this.publishPending = new Set();
    if (this.refreshPending) {
      this.refreshPending = false;
      this.followGivenRoutes();
      if (this.network.rulesVersion !== this.appliedRulesVersion) {
        this.appliedRulesVersion = this.network.rulesVersion;
        this.distribute(this.routes.setSources(routingInstanceViews(this.network.viewSources())));
      }
      for (const state of this.vrouters.values()) if (state.channel) channels.add(state.channel);
    }
    for (const pending of channels) if (this.channels.has(pending)) this.publishConfig(pending);
  }

  private distribute(changes: ViewChange[]): void {
    for (const { view, prefix, item } of changes) {
      const subscribers = this.subscribers.get(view);
      if (!subscribers) continue;
      const bytes = item ?? Buffer.from(encodeRetract(prefix));
      const family = familyOf(prefix);
      for (const channel of subscribers) channel.queueRoute(view, family, bytes);
    }
  }
}

/**
 * Why a publish was refused: its item did not decode, its prefix was not
 * given to the vrouter's ports there, or it had other than one next hop.
 */
export type PublishRefusal = 'malformed' | 'not-given' | 'next-hops';

const NOTHING_GIVEN: ReadonlySet<string> = new Set();

/** The host route of an address: "/32" for IPv4, "/128" for IPv6 (the agent's items, e.g. "fd00::3/128"). */
function hostPrefix(address: string): string {
  return `${address}/${familyOf(address) === 'inet6' ? 128 : 32}`;
}

function routeKey(instance: string, prefix: string): string {
  return `${instance}\0${prefix}`;
}

/** The NetworkManager's views with each VN named by its routing instance, the name vrouters subscribe and publish in. */
function routingInstanceViews(views: Map<string, ViewSources>): Map<string, ViewSources> {
  const instance = (vn: string) => networkFqns(vn).routingInstance;
  return new Map([...views].map(([view, sources]) => [instance(view), new Map([...sources].map(([source, what]) => [instance(source), what]))]));
}
