/**
 * The control node: an XMPP server (TCP 5269; with `tls`, STARTTLS required
 * as contrail-control's xmpp_auth_enable, see xmpp/starttls.ts) for many
 * vrouters. It
 *
 * - configures their ports (NetworkManager decides VN, address, floating
 *   IPs, policies) and serves that configuration as IF-MAP
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
 *   a stream close, its routes and ports stay for `gracefulRestartTime`;
 *   when it reconnects they are stale until re-sent, and those not re-sent
 *   by its End-of-RIB are removed;
 * - applies a new configuration (reload) to every port and view, pushing
 *   only what changed.
 *
 * A malformed or unexpected stanza closes that vrouter's session only.
 */
import net, { AddressInfo, Socket } from 'node:net';
import { TLSSocket, TlsOptions } from 'node:tls';
import { NetworkManager, PortOutcome, ViewSources } from './network-manager';
import { vmUuidOf, type LocalPort } from '../agent/agent-interface';
import { buildConfigGraph, IfmapInterest, vrouterGraph } from './ifmap-publisher';
import { virtualRouterName, virtualRouterSubscription } from '../ifmap/codec';
import { IfmapGraph } from '../ifmap/graph';
import { networkFqns } from '../ifmap/names';
import { RouteTables, ViewChange } from './route-tables';
import { NetworkConfig } from './network-config';
import { controlToVrouter, encodeItem, encodeRetract, encodeRouteUpdateItems, encodeStanza } from '../xmpp/codec';
import { Logger, silentLogger } from '../xmpp/logger';
import { XmppSession } from '../xmpp/session';
import { startTlsAsServer } from '../xmpp/starttls';
import { BGP_PEER_RESOURCE, CONFIG_RESOURCE, CONTROL_NODE_JID, CONTROL_NODE_STREAM, ConfigSubscribeStanza, RouteEntry, Stanza, StanzaError, StreamHeader } from '../xmpp/stanza';

export interface ControlNodeOptions {
  config: NetworkConfig;
  logger?: Logger;
}

const VIRTUAL_MACHINE_PREFIX = 'virtual-machine:';

/** How long to wait for a vrouter's End-of-RIB before treating its initial burst as complete. */
const END_OF_RIB_FALLBACK_SECONDS = 30;
/** Items per pushed `<message>`; bounds one stanza's size for the receiving parser. */
const ITEMS_PER_MESSAGE = 500;
/** Bytes handed to a socket before waiting for it to drain, so a big dump does not pile up in memory. */
const DRAIN_EVERY_BYTES = 1 << 20;

/** What the control node remembers of a vrouter, across its sessions. */
interface VrouterState {
  name: string;
  channel: VrouterChannel | null;
  /** After a reconnect: "instance\0prefix" routes and port ids not yet re-sent. */
  staleRoutes: Set<string> | null;
  stalePorts: Set<string> | null;
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
  /** Port id -> the refusal last pushed, so a refusal is pushed once. */
  readonly pushedRefusals = new Map<string, string>();
  /** What the vrouter subscribed to over IF-MAP, and the graph sent to it so far. */
  readonly ifmapInterest: IfmapInterest = { virtualRouter: false, vms: new Set() };
  ifmapSent = new IfmapGraph();
  /** The vrouter has re-sent what it has (its End-of-RIB, or the fallback delay passed). */
  initialBurstDone = false;
  endOfRibSent = false;
  /** Items of a view, a whole view's dump (expanded as it is sent, so the first bytes leave at once), or a stanza. */
  private outbox: Array<{ view: string; xml: string } | { view: string; dump: Iterator<[string, string]> } | { view: null; xml: string }> = [];
  private draining = false;
  private nextId = 1;

  constructor(readonly session: XmppSession) {}

  stanzaId(prefix: string): string {
    return `${prefix}${this.nextId++}`;
  }

  /** Queues an item or retract for a view; consecutive ones for one view share a message. */
  queueRoute(view: string, itemXml: string): void {
    this.outbox.push({ view, xml: itemXml });
    this.scheduleDrain();
  }

  /** Queues every route of a view as it is when sent; changes queued later follow it. */
  queueDump(view: string, routes: Map<string, string>): void {
    this.outbox.push({ view, dump: routes.entries() });
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
    let bytesSinceDrain = 0;
    while (this.outbox.length > 0 && !this.session.isClosed) {
      const batch = this.outbox;
      this.outbox = [];
      for (let index = 0; index < batch.length && !this.session.isClosed; ) {
        const next = batch[index];
        let stanza: string;
        if (next.view !== null && !this.subscriptions.has(next.view)) {
          index++; // unsubscribed since it was queued
          continue;
        }
        if (next.view === null) {
          stanza = next.xml;
          index++;
        } else if ('dump' in next) {
          let items = '';
          let count = 0;
          let route = next.dump.next();
          while (!route.done) {
            items += encodeItem(route.value[0], route.value[1]);
            if (++count === ITEMS_PER_MESSAGE) break;
            route = next.dump.next();
          }
          if (route.done) index++;
          if (count === 0) continue;
          stanza = encodeRouteUpdateItems(address, next.view, items);
        } else {
          const view = next.view;
          let items = '';
          const end = Math.min(batch.length, index + ITEMS_PER_MESSAGE);
          for (let item = batch[index]; index < end && item.view === view && 'xml' in item; item = batch[++index]) items += item.xml;
          stanza = encodeRouteUpdateItems(address, view, items);
        }
        this.session.send(stanza);
        bytesSinceDrain += stanza.length;
        if (bytesSinceDrain >= DRAIN_EVERY_BYTES) {
          bytesSinceDrain = 0;
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

  constructor(options: ControlNodeOptions) {
    this.config = options.config;
    this.logger = options.logger ?? silentLogger;
    this.network = new NetworkManager(this.config);
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
    this.logger.info(`configuration ${config.file} applied`);
  }

  /**
   * A pod registered on the pod API (pod-api.ts): what it gets, now also
   * served to its vrouter. A refused pod is not kept.
   */
  registerPod(vrouter: string, port: LocalPort): PortOutcome {
    const outcome = this.network.addPort(vrouter, port, 'api');
    if ('refused' in outcome) this.network.removePort(vrouter, port.id, 'api');
    this.refresh();
    return outcome;
  }

  /** registerPod for many pods, with one recomputation of rules and views (the Kubernetes source's first pass). */
  registerPods(entries: Array<{ vrouter: string; port: LocalPort }>): PortOutcome[] {
    const outcomes = this.network.addPorts(entries, 'api');
    outcomes.forEach((outcome, index) => {
      if ('refused' in outcome) this.network.removePort(entries[index].vrouter, entries[index].port.id, 'api');
    });
    if (entries.length > 0) this.refresh();
    return outcomes;
  }

  /** Removes the registered pods of a VM; false when none was. */
  unregisterPods(vmUuid: string): boolean {
    const gone = [...this.network.registeredPorts()].filter(({ port }) => vmUuidOf(port) === vmUuid);
    for (const { vrouter, port } of gone) this.network.removePort(vrouter, port.id, 'api');
    if (gone.length > 0) this.refresh();
    return gone.length > 0;
  }

  registeredPods(): Array<{ vrouter: string; port: LocalPort; outcome: PortOutcome }> {
    return [...this.network.registeredPorts()];
  }

  /** Whether a vrouter of this name may connect (the configuration's `vrouters`, when it has one). */
  knowsVrouter(name: string): boolean {
    return this.config.vrouters === null || this.config.vrouters.has(name);
  }

  /** Closes every session (with a stream close: vrouters keep their routes as stale) and stops listening. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    if (this.convergenceTimer) clearTimeout(this.convergenceTimer);
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
      state = { name, channel: null, staleRoutes: null, stalePorts: null, graceTimer: null, endOfRibTimer: null };
      this.vrouters.set(name, state);
    } else {
      // Back within the grace period (or a second session): what it had is stale until re-sent.
      this.clearTimers(state);
      state.staleRoutes = new Set(this.routes.publishedBy(name).map(({ instance, prefix }) => routeKey(instance, prefix)));
      state.stalePorts = new Set(this.network.portIds(name, 'vrouter'));
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
      case 'publish':
        if (!channel.subscriptions.has(stanza.vrf)) throw new StanzaError(`publish to ${stanza.vrf} without a subscription`);
        channel.pendingPublish.set(routeKey(stanza.vrf, stanza.entry.prefix), stanza.entry);
        return;
      case 'associate': {
        const key = routeKey(stanza.vrf, stanza.prefix);
        const entry = channel.pendingPublish.get(key);
        if (!entry) throw new StanzaError(`associate of ${stanza.prefix} in ${stanza.vrf} without a publish`);
        channel.pendingPublish.delete(key);
        state.staleRoutes?.delete(key);
        return this.distribute(this.routes.publish(name, stanza.vrf, entry));
      }
      case 'dissociate': {
        const key = routeKey(stanza.vrf, stanza.prefix);
        channel.pendingPublish.delete(key);
        state.staleRoutes?.delete(key);
        return this.distribute(this.routes.withdraw(name, stanza.vrf, stanza.prefix));
      }
      case 'end-of-rib':
        return this.endOfInitialBurst(state);
      case 'config-subscribe':
        return this.configSubscribe(channel, stanza);
      // Interim, until pods are registered on the control node's own API: the vrouter reports its pods and their labels.
      case 'port-add':
        state.stalePorts?.delete(stanza.port.id);
        this.network.addPort(name, stanza.port);
        return this.refresh(channel);
      case 'port-delete':
        state.stalePorts?.delete(stanza.portId);
        this.network.removePort(name, stanza.portId);
        channel.pushedRefusals.delete(stanza.portId);
        return this.refresh(channel);
      case 'ignored-items':
        this.ignoredItemCount += stanza.items;
        return;
      default:
        throw new StanzaError(`a vrouter does not send ${stanza.kind}`);
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
    } else {
      return this.logger.warn(`vrouter ${channel.name}: config subscribe of ${stanza.node} refused: not its virtual-router or a virtual-machine`);
    }
    this.publishConfig(channel);
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
    const stalePorts = state.stalePorts;
    state.staleRoutes = null;
    state.stalePorts = null;
    for (const key of staleRoutes ?? []) {
      const [instance, prefix] = key.split('\0');
      this.distribute(this.routes.withdraw(state.name, instance, prefix));
    }
    for (const portId of stalePorts ?? []) this.network.removePort(state.name, portId);
    if ((staleRoutes?.size ?? 0) + (stalePorts?.size ?? 0) > 0) {
      this.logger.info(`vrouter ${state.name}: removed ${staleRoutes?.size ?? 0} stale routes and ${stalePorts?.size ?? 0} stale ports`);
      this.refresh();
    }
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
    this.logger.warn(`vrouter ${state.name} lost (${reason}); keeping its routes and ports for ${graceSeconds} s`);
    state.graceTimer = setTimeout(() => this.forget(state, `did not come back within ${graceSeconds} s`), graceSeconds * 1000);
  }

  /** Removes everything a vrouter had. */
  private forget(state: VrouterState, why: string): void {
    this.clearTimers(state);
    this.vrouters.delete(state.name);
    for (const { instance, prefix } of this.routes.publishedBy(state.name)) {
      this.distribute(this.routes.withdraw(state.name, instance, prefix));
    }
    for (const portId of this.network.portIds(state.name, 'vrouter')) this.network.removePort(state.name, portId);
    this.logger.info(`vrouter ${state.name} ${why}: its routes and ports are removed`);
    this.refresh();
  }

  private clearTimers(state: VrouterState): void {
    if (state.graceTimer) clearTimeout(state.graceTimer);
    if (state.endOfRibTimer) clearTimeout(state.endOfRibTimer);
    state.graceTimer = null;
    state.endOfRibTimer = null;
  }

  /**
   * After a change of ports or configuration: new leaks to the views, the
   * changed IF-MAP graph and refusals to their vrouters. When only
   * `changedOn`'s ports changed and the rules did not, only its part of the
   * graph can have changed.
   */
  private refresh(changedOn?: VrouterChannel): void {
    this.configGraph = null;
    if (changedOn && this.network.rulesVersion === this.appliedRulesVersion) {
      this.pushPortChanges(changedOn.name!, changedOn);
      return;
    }
    this.appliedRulesVersion = this.network.rulesVersion;
    this.distribute(this.routes.setSources(routingInstanceViews(this.network.viewSources())));
    for (const state of this.vrouters.values()) if (state.channel) this.pushPortChanges(state.name, state.channel);
  }

  private pushPortChanges(name: string, channel: VrouterChannel): void {
    this.publishConfig(channel);
    // Interim, until pods are registered on the control node's own API: a refusal is told the vrouter that reported the port.
    const removals: Array<{ portId: string; reason: string }> = [];
    for (const portId of this.network.portIds(name)) {
      const outcome: PortOutcome = this.network.outcomeOf(name, portId)!;
      if ('config' in outcome) {
        channel.pushedRefusals.delete(portId);
        continue;
      }
      if (channel.pushedRefusals.get(portId) === outcome.refused) continue;
      channel.pushedRefusals.set(portId, outcome.refused);
      removals.push({ portId, reason: outcome.refused });
      this.logger.warn(`vrouter ${name} port ${portId} not configured: ${outcome.refused}`);
    }
    const address = controlToVrouter(name, CONFIG_RESOURCE);
    if (removals.length > 0) channel.queueStanza(encodeStanza({ kind: 'port-remove', ...address, id: channel.stanzaId('config'), ports: removals }));
  }

  private distribute(changes: ViewChange[]): void {
    for (const { view, prefix, entryXml } of changes) {
      const subscribers = this.subscribers.get(view);
      if (!subscribers) continue;
      const itemXml = entryXml === null ? encodeRetract(prefix) : encodeItem(prefix, entryXml);
      for (const channel of subscribers) channel.queueRoute(view, itemXml);
    }
  }
}

function routeKey(instance: string, prefix: string): string {
  return `${instance}\0${prefix}`;
}

/** The NetworkManager's views with each VN named by its routing instance, the name vrouters subscribe and publish in. */
function routingInstanceViews(views: Map<string, ViewSources>): Map<string, ViewSources> {
  const instance = (vn: string) => networkFqns(vn).routingInstance;
  return new Map([...views].map(([view, sources]) => [instance(view), new Map([...sources].map(([source, what]) => [instance(source), what]))]));
}
