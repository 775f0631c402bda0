/**
 * The vrouter's control client: the agent side of the XMPP control channel,
 * to one or two control nodes.
 *
 * Configuration comes as IF-MAP, as to contrail's agent: at session start
 * it subscribes its virtual-router, and for every local port the port's
 * virtual-machine; the `<config>` updates and deletes go into one IfmapGraph
 * per session, from which each port's view is derived (ifmap-port-view.ts)
 * and programmed once complete, again when it changes, and undone when its
 * interface goes. A port whose VM has no configuration yet waits, as the
 * agent keeps it inactive: pods are registered (and refused, when they are)
 * on the configuration side, the control node's pod API. A configured port's addresses
 * (its IP, its IPv6 address when dual stack, and its floating IPs; IPv4 as inet
 * "1/1", IPv6 as inet6 "2/1") are published in its routing instance with
 * one next hop: this node's underlay address, the port's label (for a prefix
 * of several local ports, the label of a local composite of them), the
 * encapsulations this node accepts and its VN; the routing instance is subscribed while a port
 * is in it. Routes pushed by the control nodes go to the dataplane
 * (LearnedRoutes merges sessions and keeps stale routes through a control
 * node restart).
 *
 * With two control nodes each gets the same subscriptions and
 * publications (the pod is registered at both with one address); a port
 * follows the configuration of one session and switches to the other's only
 * when that session drops.
 *
 * What a control node sends is checked: routes for VRFs this node did not
 * subscribe to are ignored, and so are next hops with labels outside the
 * unicast range 16..1048575.
 */
import type { TunnelEncap } from '../../dataplane/nexthop';
import { LOCAL_COMPOSITE_LABELS, vmUuidOf, type DataplaneAccess, type LocalPort, type PortConfig, type RouteNexthop } from './agent-interface';
import { derivePortView, deriveVmConfig, portConfigOf, type IfmapPortView } from './ifmap-port-view';
import { NIL_UUID, type VmiConfig } from './agent-port';
import { LearnedRoutes } from './learned-routes';
import { ControlServer, ServerConnection } from './control-session';
import { virtualMachineSubscription, virtualRouterSubscription } from '../ifmap/codec';
import { IfmapGraph } from '../ifmap/graph';
import { interfaceFqn, ownRoutingInstance } from '../ifmap/names';
import { vrouterToControl } from '../xmpp/codec';
import { Logger, silentLogger } from '../xmpp/logger';
import { BGP_PEER_RESOURCE, CONFIG_RESOURCE, DEFAULT_HOLD_TIME_SECONDS, RefusedItem, RouteEntry, RouteUpdateStanza, Stanza, StanzaError, WireNexthop } from '../xmpp/stanza';

export type { ControlServer };

export interface ControlClientOptions {
  /** This vrouter's name: the stream's `from`, and what a control node's `vrouters` list names. */
  nodeName: string;
  underlayIp: string;
  /** Encapsulations this node accepts, best first, advertised with its routes. */
  encaps: TunnelEncap[];
  /** One or two control nodes. */
  servers: ControlServer[];
  /** Seconds; keepalives every holdTime / 3. Default 90. */
  holdTime?: number;
  /** Seconds stale routes of a dropped session are kept when its End-of-RIB does not come. Default 300. */
  staleTimeout?: number;
  /** Seconds between reconnect attempts: first, and the cap of the doubling. Default 1 and 30. */
  reconnectDelay?: { initial: number; max: number };
  access: DataplaneAccess;
  logger?: Logger;
}

export const DEFAULT_STALE_TIMEOUT_SECONDS = 300;
const MIN_UNICAST_LABEL = 16;
const MAX_LABEL = 0xfffff;
/** Values of local-preference and the other attributes of the routes this node publishes. */
const LOCAL_PREFERENCE = 200;
const KNOWN_ENCAPS: readonly string[] = ['udp', 'gre'];

/** What a session says of a port: its configuration, or that it went (its interface, or a piece of it). */
type Outcome = { config: PortConfig } | { unconfigured: string };

interface PortState {
  port: LocalPort;
  /** The configuration programmed, and the session it came from. */
  config: PortConfig | null;
  configSession: number | null;
  /** The latest outcome of each session. */
  outcomes: Map<number, Outcome>;
  removed: boolean;
  /** Configuration changes of one port are applied one after the other. */
  chain: Promise<void>;
  waiters: Array<{ resolve(config: PortConfig): void; reject(error: Error): void }>;
}

/**
 * A route this node publishes: its own next hops for a prefix, from one or
 * more local ports. Published with one next hop, as contrail-control takes
 * only one from an agent (BgpXmppChannel::ProcessItem, "Agents should send
 * only one next-hop in the item"; tungstenfabric/tf-controller
 * 6a674397821187fedfffd9586942b906d3479dbc, src/bgp/bgp_xmpp_channel.cc):
 * the port's own label, or with two or more ports the label of a local
 * composite of their pods.
 */
interface LocalRoute {
  vrf: string;
  prefix: string;
  byPort: Map<string, WireNexthop>;
  compositeLabel: number | null;
}

export class ControlClient {
  private readonly options: ControlClientOptions;
  private readonly logger: Logger;
  private readonly connections: ServerConnection[];
  private readonly routes: LearnedRoutes;
  private readonly ports = new Map<string, PortState>();
  private readonly localRoutes = new Map<string, LocalRoute>();
  /** VRF -> local ports in it; subscribed while above zero. */
  private readonly vrfPorts = new Map<string, number>();
  /** VM uuid -> local ports of it; its IF-MAP subscription is held while above zero. */
  private readonly vmPorts = new Map<string, number>();
  /** Per session: the IF-MAP graph its control node sent since the session began. */
  private readonly graphs = new Map<number, IfmapGraph>();
  private readonly instanceIds = new Map<string, number>();
  private readonly staleTimers = new Map<number, NodeJS.Timeout>();
  /** Per session: items of families this node does not program (EVPN, multicast...), dropped. */
  private readonly ignoredItems = new Map<number, number>();
  /** Per session: pushed items dropped for what they hold (RefusedItem), the rest of their push applied. */
  private readonly refusedItems = new Map<number, number>();
  /** Local composite labels given back, reused first; then the next never given. */
  private readonly freeCompositeLabels: number[] = [];
  private nextCompositeLabel: number = LOCAL_COMPOSITE_LABELS.first;
  private nextStanzaId = 1;
  private lastPolicyVrf: { vnFqn: string; vrf: string | undefined } = { vnFqn: '', vrf: undefined };
  private closed = false;

  constructor(options: ControlClientOptions) {
    if (options.servers.length < 1 || options.servers.length > 2) throw new Error('a control client needs one or two control nodes');
    this.options = options;
    this.logger = options.logger ?? silentLogger;
    this.routes = new LearnedRoutes(options.access, options.underlayIp);
    const connectionOptions = {
      nodeName: options.nodeName,
      holdTime: options.holdTime ?? DEFAULT_HOLD_TIME_SECONDS,
      reconnectDelay: options.reconnectDelay ?? { initial: 1, max: 30 },
      logger: this.logger,
    };
    const handlers = {
      established: (connection: ServerConnection) => this.sessionEstablished(connection),
      stanza: (connection: ServerConnection, stanza: Stanza) => this.handle(connection, stanza),
      down: (connection: ServerConnection, reason: string) => this.sessionDown(connection, reason),
    };
    this.connections = options.servers.map((server, index) => new ServerConnection(index, server, connectionOptions, handlers));
    for (const connection of this.connections) connection.start();
  }

  /**
   * Subscribes a local port's VM; resolves with the port's configuration once
   * a control node sent it and it is programmed (until then the port waits).
   * Later changes are programmed without a call.
   */
  addPort(port: LocalPort): Promise<PortConfig> {
    if (this.ports.has(port.id)) return Promise.reject(new Error(`port ${port.id} was already added`));
    const state: PortState = {
      port,
      config: null,
      configSession: null,
      outcomes: new Map(),
      removed: false,
      chain: Promise.resolve(),
      waiters: [],
    };
    this.ports.set(port.id, state);
    const configured = new Promise<PortConfig>((resolve, reject) => state.waiters.push({ resolve, reject }));
    const vm = vmUuidOf(port);
    const vmPorts = this.vmPorts.get(vm) ?? 0;
    this.vmPorts.set(vm, vmPorts + 1);
    if (vmPorts === 0) for (const connection of this.connections) if (connection.isEstablished) this.subscribeConfig(connection, virtualMachineSubscription(vm), true);
    for (const session of this.graphs.keys()) this.deriveConfigs(session);
    return configured;
  }

  /** Withdraws the port's routes, undoes its configuration and unsubscribes its VM when it was the VM's last port. */
  async removePort(portId: string): Promise<void> {
    const state = this.ports.get(portId);
    if (!state) return;
    state.removed = true;
    this.ports.delete(portId);
    for (const waiter of state.waiters.splice(0)) waiter.reject(new Error(`port ${portId} was removed`));
    const vm = vmUuidOf(state.port);
    const vmPorts = (this.vmPorts.get(vm) ?? 1) - 1;
    if (vmPorts > 0) this.vmPorts.set(vm, vmPorts);
    else this.vmPorts.delete(vm);
    if (vmPorts === 0) for (const connection of this.connections) if (connection.isEstablished) this.subscribeConfig(connection, virtualMachineSubscription(vm), false);
    state.chain = state.chain.then(() => this.unconfigure(state));
    await state.chain;
  }

  /** Closes the sessions (the control nodes forget this node's routes); the dataplane is left as it is. */
  async close(): Promise<void> {
    this.closed = true;
    for (const timer of this.staleTimers.values()) clearTimeout(timer);
    for (const connection of this.connections) connection.stop();
    await Promise.all([...this.ports.values()].map((state) => state.chain));
  }

  /**
   * The interfaces of the VM of this name as the control nodes configured it
   * (the first session that has all of them): what the CNI's GET /vm-cfg
   * asks before it makes the pod's veth. Undefined until one has.
   */
  vmConfig(vmName: string): VmiConfig[] | undefined {
    for (const graph of this.graphs.values()) {
      const config = deriveVmConfig(graph, vmName);
      if (config === undefined) continue;
      return config.vmis.map((vmi) => ({
        id: vmi.uuid,
        vmUuid: config.vmUuid,
        vnId: vmi.vnUuid || NIL_UUID,
        vnName: vmi.vn,
        mac: vmi.mac,
        subInterface: false,
        vlanId: 0,
        annotations: vmi.annotations,
      }));
    }
    return undefined;
  }

  /** Per control node: whether its session is up, how many items of other families it pushed and how many bad items it pushed. */
  status(): Array<{ server: string; established: boolean; ignoredItems: number; refusedItems: number }> {
    return this.connections.map((connection) => ({
      server: connection.name,
      established: connection.isEstablished,
      ignoredItems: this.ignoredItems.get(connection.index) ?? 0,
      refusedItems: this.refusedItems.get(connection.index) ?? 0,
    }));
  }

  /**
   * A restarted daemon's routes (its snapshot), programmed now as stale from
   * every control node: each one's End-of-RIB sweeps what it no longer has.
   */
  restoreStaleRoutes(routes: Array<{ vrf: string; prefix: string; nexthops: RouteNexthop[] }>): void {
    for (const connection of this.connections) {
      for (const route of routes) this.routes.restoreStale(connection.index, route.vrf, route.prefix, route.nexthops);
    }
  }

  /** Routes in the dataplane learned or owned by this client, and how many are stale. */
  routeCounts(): { routes: number; stale: number } {
    return this.routes.counts();
  }

  // ------------------------------------------------------------ sessions

  private sessionEstablished(connection: ServerConnection): void {
    const bgp = vrouterToControl(this.options.nodeName, BGP_PEER_RESOURCE);
    this.graphs.set(connection.index, new IfmapGraph());
    this.subscribeConfig(connection, virtualRouterSubscription(this.options.nodeName), true);
    for (const vm of this.vmPorts.keys()) this.subscribeConfig(connection, virtualMachineSubscription(vm), true);
    for (const vrf of this.vrfPorts.keys()) connection.send({ kind: 'subscribe', ...bgp, id: this.stanzaId('subscribe'), vrf, instanceId: this.instanceIds.get(vrf)! });
    for (const route of this.localRoutes.values()) this.sendRoute(connection, route);
    connection.send({ kind: 'end-of-rib', ...bgp });
  }

  private sessionDown(connection: ServerConnection, reason: string): void {
    const index = connection.index;
    this.graphs.delete(index);
    this.routes.markStale(index);
    if (!this.closed && !this.staleTimers.has(index)) {
      const timeout = this.options.staleTimeout ?? DEFAULT_STALE_TIMEOUT_SECONDS;
      const timer = setTimeout(() => {
        this.staleTimers.delete(index);
        const swept = this.routes.sweepStale(index);
        this.logger.warn(`${connection.name}: no End-of-RIB within ${timeout} s; removed ${swept} stale routes`);
      }, timeout * 1000);
      this.staleTimers.set(index, timer);
    }
    this.logger.warn(`${connection.name}: session down (${reason}); learned routes kept as stale`);
    for (const state of this.ports.values()) {
      state.outcomes.delete(index);
      if (state.configSession === index) {
        state.configSession = null;
        // Follow the other control node's view of the port, if it has one.
        for (const [session, outcome] of state.outcomes) this.applyOutcome(state, session, outcome);
      }
    }
  }

  private handle(connection: ServerConnection, stanza: Stanza): void {
    switch (stanza.kind) {
      case 'route-update':
        if (stanza.refused) this.countRefused(connection, stanza.vrf, stanza.refused);
        return this.learnRoutes(connection, stanza);
      case 'end-of-rib': {
        const timer = this.staleTimers.get(connection.index);
        if (timer) clearTimeout(timer);
        this.staleTimers.delete(connection.index);
        const swept = this.routes.sweepStale(connection.index);
        if (swept > 0) this.logger.info(`${connection.name}: End-of-RIB; removed ${swept} stale routes`);
        return;
      }
      case 'config-update': {
        const graph = this.graphs.get(connection.index)!;
        for (const change of stanza.changes) graph.apply(change);
        return this.deriveConfigs(connection.index);
      }
      case 'ignored-items':
        // contrail-control pushes every family of a subscribed instance; only inet and inet6 unicast are programmed.
        this.ignoredItems.set(connection.index, (this.ignoredItems.get(connection.index) ?? 0) + stanza.items);
        return;
      default:
        throw new StanzaError(`a control node does not send ${stanza.kind}`);
    }
  }

  private countRefused(connection: ServerConnection, vrf: string, refused: RefusedItem[]): void {
    this.refusedItems.set(connection.index, (this.refusedItems.get(connection.index) ?? 0) + refused.length);
    for (const { prefix, reason } of refused) this.logger.warn(`${connection.name}: pushed item ${prefix || '(no id)'} in ${vrf} dropped: ${reason}`);
  }

  private learnRoutes(connection: ServerConnection, stanza: RouteUpdateStanza): void {
    const index = connection.index;
    if (!this.vrfPorts.has(stanza.vrf)) {
      this.logger.warn(`${connection.name}: ignored ${stanza.changes.length} routes for ${stanza.vrf}, which this node did not subscribe to`);
      return;
    }
    let ignoredNexthops = 0;
    for (const { prefix, entry } of stanza.changes) {
      if (entry === null) {
        this.routes.forget(index, stanza.vrf, prefix);
        continue;
      }
      const nexthops: RouteNexthop[] = [];
      for (const nexthop of entry.nexthops) {
        if (nexthop.label < MIN_UNICAST_LABEL || nexthop.label > MAX_LABEL) {
          ignoredNexthops++;
          continue;
        }
        const known = nexthop.encaps.every((encap) => KNOWN_ENCAPS.includes(encap));
        nexthops.push({
          address: nexthop.address,
          label: nexthop.label,
          encaps: (known ? nexthop.encaps : nexthop.encaps.filter((encap) => KNOWN_ENCAPS.includes(encap))) as TunnelEncap[],
          vn: this.policyVrfOf(nexthop.virtualNetwork),
        });
      }
      if (nexthops.length === 0) this.routes.forget(index, stanza.vrf, prefix);
      else this.routes.learn(index, stanza.vrf, prefix, nexthops);
    }
    if (ignoredNexthops > 0) {
      this.logger.warn(`${connection.name}: ignored ${ignoredNexthops} next hops in ${stanza.vrf} with labels outside ${MIN_UNICAST_LABEL}..${MAX_LABEL}`);
    }
  }

  // ------------------------------------------------------------ ports

  private subscribeConfig(connection: ServerConnection, node: string, subscribe: boolean): void {
    connection.send({ kind: 'config-subscribe', ...vrouterToControl(this.options.nodeName, CONFIG_RESOURCE), node, subscribe });
  }

  /**
   * Each port's view in the session's graph, as an outcome: its
   * configuration once complete; `unconfigured` when a port configured by
   * this session lost it (its VMI deleted, or a piece of it). Nothing while
   * a new port's view is still incomplete.
   */
  private deriveConfigs(session: number): void {
    const graph = this.graphs.get(session);
    if (graph === undefined) return;
    for (const state of this.ports.values()) {
      const view = portView(graph, state.port);
      const config = portConfigOf(view);
      if (config !== undefined) this.receiveOutcome(session, state.port.id, { config });
      else if (state.outcomes.has(session)) this.receiveOutcome(session, state.port.id, { unconfigured: view.reason ?? 'no address' });
    }
  }

  private receiveOutcome(session: number, portId: string, outcome: Outcome): void {
    const state = this.ports.get(portId);
    if (!state) return; // a push for a port removed meanwhile
    const previous = state.outcomes.get(session);
    if (previous !== undefined && JSON.stringify(previous) === JSON.stringify(outcome)) return;
    state.outcomes.set(session, outcome);
    if (state.configSession === null || state.configSession === session) this.applyOutcome(state, session, outcome);
  }

  private applyOutcome(state: PortState, session: number, outcome: Outcome): void {
    state.configSession = session;
    state.chain = state.chain.then(async () => {
      if (state.removed) return;
      try {
        if ('config' in outcome) {
          await this.configure(state, outcome.config);
        } else {
          this.logger.warn(`port ${state.port.id}: its configuration went (${outcome.unconfigured})`);
          await this.unconfigure(state);
        }
      } catch (error) {
        this.logger.warn(`port ${state.port.id}: programming failed: ${(error as Error).message}`);
        for (const waiter of state.waiters.splice(0)) waiter.reject(error as Error);
      }
    });
  }

  /** Programs a (new or changed) configuration: withdraw what changes, configure, subscribe, publish. */
  private async configure(state: PortState, config: PortConfig): Promise<void> {
    const previous = state.config;
    if (previous === null || JSON.stringify(previous) !== JSON.stringify(config)) {
      const port = state.port;
      const wanted = publishedRoutes(config);
      const wantedKeys = new Set(wanted.map(publishedKey));
      const vrfs = routeVrfs(config);
      const previousVrfs = previous === null ? new Set<string>() : routeVrfs(previous);
      if (previous) {
        for (const route of publishedRoutes(previous)) if (!wantedKeys.has(publishedKey(route))) this.setLocalNexthop(route.vrf, route.prefix, port.id, null);
        for (const vrf of previousVrfs) if (!vrfs.has(vrf)) this.releaseVrf(vrf);
      }
      await this.options.access.configurePort(port, config);
      state.config = config;
      for (const vrf of vrfs) if (!previousVrfs.has(vrf)) this.retainVrf(vrf);
      for (const route of wanted) this.setLocalNexthop(route.vrf, route.prefix, port.id, this.ownNexthop(port.label, route.vn));
      const ip6 = config.ip6 === undefined ? '' : ` and ${config.ip6}`;
      this.logger.info(`port ${port.id} (${port.namespace}/${port.name}): ${config.ip}${ip6} in ${config.vrf}, ${config.floatingIps.length} floating IPs, ${config.policies.length} policies`);
    }
    for (const waiter of state.waiters.splice(0)) waiter.resolve(config);
  }

  private async unconfigure(state: PortState): Promise<void> {
    const config = state.config;
    if (config === null) return;
    for (const route of publishedRoutes(config)) this.setLocalNexthop(route.vrf, route.prefix, state.port.id, null);
    for (const vrf of routeVrfs(config)) this.releaseVrf(vrf);
    state.config = null;
    await this.options.access.unconfigurePort(state.port);
  }

  private ownNexthop(label: number, virtualNetwork: string): WireNexthop {
    return { address: this.options.underlayIp, label, encaps: [...this.options.encaps], virtualNetwork };
  }

  /**
   * A software gateway interface (the agent's vgw: a [GATEWAY-n] section,
   * tungstenfabric/tf-controller 6a674397821187fedfffd9586942b906d3479dbc
   * src/vnsw/agent/vgw/cfg_vgw.cc, vgw.cc): configured from this node's own
   * settings, not IF-MAP; its routes are published in its routing instance
   * with its label, so other nodes send what they route there to it, and
   * what it is sent in that instance is learned as for a port.
   */
  async addGateway(port: LocalPort, config: PortConfig, routes: string[]): Promise<void> {
    await this.options.access.configurePort(port, config);
    this.retainVrf(config.vrf);
    for (const prefix of routes) this.setLocalNexthop(config.vrf, prefix, port.id, this.ownNexthop(port.label, config.vn));
    this.logger.info(`gateway ${port.name}: in ${config.vrf} for ${config.vgw?.ipBlocks.join(' ')}, publishing ${routes.join(' ')}`);
  }

  // ------------------------------------------------------------ publications and subscriptions

  /** Adds or removes one port's next hop for a local route, then publishes or withdraws the route. */
  private setLocalNexthop(vrf: string, prefix: string, portId: string, nexthop: WireNexthop | null): void {
    const key = `${vrf}\0${prefix}`;
    let route = this.localRoutes.get(key);
    if (!route) {
      if (nexthop === null) return;
      this.localRoutes.set(key, (route = { vrf, prefix, byPort: new Map(), compositeLabel: null }));
    }
    if (nexthop === null) route.byPort.delete(portId);
    else route.byPort.set(portId, nexthop);
    if (route.byPort.size === 0) this.localRoutes.delete(key);
    const encaps = this.options.encaps;
    this.routes.setLocal(vrf, prefix, [...route.byPort.values()].map((local) => ({ address: local.address, label: local.label, encaps, vn: this.policyVrfOf(local.virtualNetwork) })));
    let retiredLabel: number | null = null;
    if (route.byPort.size >= 2) {
      route.compositeLabel ??= this.takeCompositeLabel();
      if (route.compositeLabel !== null) this.options.access.setLocalComposite(route.compositeLabel, [...route.byPort.keys()]);
    } else {
      retiredLabel = route.compositeLabel;
      route.compositeLabel = null;
    }
    for (const connection of this.connections) this.sendRoute(connection, route);
    // Back to one port (or none): its own label is published first, then the composite goes.
    if (retiredLabel !== null) {
      this.options.access.setLocalComposite(retiredLabel, []);
      this.freeCompositeLabels.push(retiredLabel);
    }
  }

  /** A label of LOCAL_COMPOSITE_LABELS no local pod has (a pod's label may have been asked for in that range). */
  private takeCompositeLabel(): number | null {
    const podLabels = new Set([...this.ports.values()].map((state) => state.port.label));
    for (;;) {
      const label = this.freeCompositeLabels.pop() ?? (this.nextCompositeLabel <= LOCAL_COMPOSITE_LABELS.last ? this.nextCompositeLabel++ : null);
      if (label === null) {
        this.logger.warn(`no local composite label left (${LOCAL_COMPOSITE_LABELS.first}..${LOCAL_COMPOSITE_LABELS.last}): publishing one pod's label only`);
        return null;
      }
      if (!podLabels.has(label)) return label;
    }
  }

  /** The one next hop published for a local route: its port's, or its local composite's. */
  private publishedNexthops(route: LocalRoute): WireNexthop[] {
    const own = [...route.byPort.values()];
    if (own.length === 0) return [];
    if (route.compositeLabel === null) return [own[0]];
    return [{ ...own[0], label: route.compositeLabel }];
  }

  /** Publishes a local route (or withdraws it when no port has a next hop for it any more): publish + associate/dissociate. */
  private sendRoute(connection: ServerConnection, route: LocalRoute): void {
    const bgp = vrouterToControl(this.options.nodeName, BGP_PEER_RESOURCE);
    const entry: RouteEntry = {
      prefix: route.prefix,
      nexthops: this.publishedNexthops(route),
      version: 1,
      sequenceNumber: 0,
      localPreference: LOCAL_PREFERENCE,
      med: 0,
    };
    connection.send({ kind: 'publish', ...bgp, id: this.stanzaId('pubsub'), vrf: route.vrf, entry });
    const change = route.byPort.size > 0 ? 'associate' : 'dissociate';
    connection.send({ kind: change, ...bgp, id: this.stanzaId('collection'), vrf: route.vrf, prefix: route.prefix });
  }

  private retainVrf(vrf: string): void {
    const count = this.vrfPorts.get(vrf) ?? 0;
    this.vrfPorts.set(vrf, count + 1);
    if (count > 0) return;
    if (!this.instanceIds.has(vrf)) this.instanceIds.set(vrf, this.instanceIds.size + 1);
    const bgp = vrouterToControl(this.options.nodeName, BGP_PEER_RESOURCE);
    for (const connection of this.connections) {
      connection.send({ kind: 'subscribe', ...bgp, id: this.stanzaId('subscribe'), vrf, instanceId: this.instanceIds.get(vrf)! });
    }
  }

  private releaseVrf(vrf: string): void {
    const count = (this.vrfPorts.get(vrf) ?? 0) - 1;
    if (count > 0) {
      this.vrfPorts.set(vrf, count);
      return;
    }
    this.vrfPorts.delete(vrf);
    const bgp = vrouterToControl(this.options.nodeName, BGP_PEER_RESOURCE);
    for (const connection of this.connections) connection.send({ kind: 'unsubscribe', ...bgp, id: this.stanzaId('unsubscribe'), vrf });
    this.routes.forgetVrf(vrf);
  }

  /** policyVrfOf, remembering the last answer: a dump names one VN for thousands of next hops. */
  private policyVrfOf(vnFqn: string): string | undefined {
    if (vnFqn !== this.lastPolicyVrf.vnFqn) this.lastPolicyVrf = { vnFqn, vrf: policyVrfOf(vnFqn) };
    return this.lastPolicyVrf.vrf;
  }

  private stanzaId(prefix: string): string {
    return `${prefix}${this.nextStanzaId++}`;
  }
}

interface PublishedRoute {
  vrf: string;
  prefix: string;
  /** The VN FQN the route's next hop names. */
  vn: string;
}

/** A host prefix: IPv4 as /32 (inet, 1/1), IPv6 as /128 (inet6, 2/1), as the agent's AddIpv6Route host routes. */
function hostPrefix(address: string): string {
  return `${address}/${address.includes(':') ? 128 : 32}`;
}

/**
 * What a port's configuration makes this node publish: its addresses and
 * floating IPs in its routing instance, an external floating IP in its
 * pool VN's.
 */
function publishedRoutes(config: PortConfig): PublishedRoute[] {
  const own = (address: string) => ({ vrf: config.vrf, prefix: hostPrefix(address), vn: config.vn });
  return [
    own(config.ip),
    ...(config.ip6 === undefined ? [] : [own(config.ip6)]),
    ...config.floatingIps.map((floatingIp) =>
      floatingIp.vn === undefined
        ? own(floatingIp.ip)
        : { vrf: ownRoutingInstance(floatingIp.vn), prefix: hostPrefix(floatingIp.ip), vn: floatingIp.vn },
    ),
  ];
}

function publishedKey(route: PublishedRoute): string {
  return `${route.vrf}\0${route.prefix}\0${route.vn}`;
}

/** The routing instances a port's configuration subscribes. */
function routeVrfs(config: PortConfig): Set<string> {
  return new Set(publishedRoutes(config).map((route) => route.vrf));
}

/**
 * The port's view in a session's graph: its VMI found by uuid (a real
 * control node's id-perms), else by the name vrouter-control gives it.
 */
function portView(graph: IfmapGraph, port: LocalPort): IfmapPortView {
  const byUuid = derivePortView(graph, port.id);
  return byUuid.vmi !== '' ? byUuid : derivePortView(graph, interfaceFqn(vmUuidOf(port), port.id));
}

/**
 * A route's VN as the dataplane's policy knows it: the VRF of the VN's own
 * routing instance (the VRF its pods' vifs are in; dataplane-access.ts names
 * policy VNs the same way). Undefined when the control node sent none.
 */
function policyVrfOf(vnFqn: string): string | undefined {
  return vnFqn === '' ? undefined : ownRoutingInstance(vnFqn);
}
