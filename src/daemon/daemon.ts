/**
 * `vrouter run`: one node's vrouter. The main thread keeps what is not the
 * packet path (the port API, the control client, logs, signals); the
 * dataplane worker owns the tables, the TAP devices (made and configured
 * inside the pod namespaces) and the underlay sockets. On SIGINT/SIGTERM
 * the daemon saves its snapshot (snapshot.ts) and leaves the pods' veth
 * pairs in place for the next start to re-attach, so a restart loses no
 * connection; with `cleanExit` (`vrouter run --clean-exit`) the worker
 * deletes them instead, closes its TAP devices (which removes them, also
 * from pod namespaces) and the snapshot goes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { AddressInfo } from 'node:net';
import { StateFileError, buildDataplane, parseStateText } from '../control/config/state-file';
import type { StateDocument } from '../control/config/state-schema';
import type { PodTapConfig } from '../dataplane/io/native';
import type { BatchAnswer, PodPortConfig, PortRequest, PortResult, WorkerRequest, WorkerTimeline } from './worker';
import type { SandeshInterface } from './sandesh-itf';
import { ipFromString } from '../dataplane/protocols/ipv4';
import type { FloatingIp } from '../dataplane/vif';
import type { LocalPort, PortConfig } from '../control/agent/agent-interface';
import type { ControlClient, ControlServer } from '../control/agent/control-client';
import { CapAttachment } from './cap-attachment';
import { GatewaySpec, gatewayConfig, gatewayPort } from './gateway';
import { WorkerAccess } from './worker-access';
import { DataplaneHandle } from './dataplane-handle';
import { createLogger, Logger } from './log';
import { ApiError } from '../control/agent/api-error';
import type { PortAddRequest } from '../control/agent/port-api';
import type { AgentPort } from '../control/agent/agent-port';
import type { AgentPorts, AttachedInterface } from './agent-ports';
import type { IntrospectPort } from './introspect-server';
import type { SnapshotFlowPair } from './snapshot';
import {
  DaemonSnapshot,
  LoadedSnapshot,
  RouteJournal,
  SNAPSHOT_INTERVAL_MS,
  SNAPSHOT_VERSION,
  SnapshotPort,
  defaultSnapshotFile,
  loadSnapshot,
  saveSnapshot,
  stateDigest,
} from './snapshot';

export interface DaemonOptions {
  stateFile: string;
  apiHost: string;
  apiPort: number;
  /**
   * Control nodes (one or two) to learn routes and port configuration
   * from; without them ports need a VN and an address, and routes come
   * from the state file or PUT /route.
   */
  control?: { servers: ControlServer[]; nodeName?: string; holdTime?: number };
  /** Where the introspect API, page and /metrics listen (`--introspect`); absent: not served. */
  introspect?: { host: string; port: number };
  /** The ports directory (`--ports-dir`, as the agent's /var/lib/contrail/ports); default defaultPortsDir(stateFile). */
  portsDir?: string;
  /** Seconds after POST /syncports until the ports not posted again are deleted (`--stale-port-timeout`, the agent's stale_interface_cleanup_timeout). */
  stalePortTimeout?: number;
  /** On SIGINT/SIGTERM remove the pods' devices and the snapshot (`--clean-exit`) instead of keeping them for a restart. */
  cleanExit?: boolean;
  /** Where the restart snapshot is kept (`--snapshot`); default defaultSnapshotFile(stateFile). */
  snapshotFile?: string;
  /** Software gateways (`--gateway`, gateway.ts); they need `control`. */
  gateways?: GatewaySpec[];
}

/** One directory per daemon: next to its state file, named after it (node0.json -> node0.ports). */
export function defaultPortsDir(stateFile: string): string {
  const extension = path.extname(stateFile);
  return `${extension ? stateFile.slice(0, -extension.length) : stateFile}.ports`;
}

/** MPLS over UDP adds 20 (IPv4) + 8 (UDP) + 4 (MPLS) bytes to what a pod sends. */
export const OVERLAY_OVERHEAD = 32;

interface PortRecord extends PortResult {
  id: string;
  name?: string;
  namespace?: string;
  labels: Record<string, string>;
  netns?: string;
  ifname: string;
  vn: string;
  ip: string;
  mac: string;
  mtu: number;
}

const PROTOCOLS = { tcp: 6, udp: 17 } as const;

function floatingIps(request: Pick<PortAddRequest, 'floatingIps'>): FloatingIp[] {
  return (request.floatingIps ?? []).filter((fip) => !fip.ip.includes(':')).map((fip) => ({
    ip: ipFromString(fip.ip),
    portMap: (fip.portMap ?? []).map((entry) => ({ protocol: PROTOCOLS[entry.protocol], port: entry.port, targetPort: entry.targetPort ?? entry.port })),
  }));
}

/** What the daemon keeps of a port: the request's pod identity, what the worker made, the addressing it got. */
function portRecord(request: PortAddRequest, made: PortResult, addressing: { vn: string; ip: string; mac: string; mtu: number }): PortRecord {
  return {
    ...made,
    id: request.id,
    name: request.name,
    namespace: request.namespace,
    labels: request.labels ?? {},
    netns: request.netns,
    ifname: request.ifname ?? 'eth0',
    ...addressing,
  };
}

/**
 * The namespace file of the pod namespace a port's TAP is made and
 * configured in (netns given, `configure` not false; `ip netns add` made
 * it), undefined when the TAP stays in the node's namespace.
 */
function podNamespaceFile(request: PortAddRequest): string | undefined {
  if (request.netns === undefined || request.configure === false || request.attach !== undefined) return undefined;
  const file = [`/run/netns/${request.netns}`, `/var/run/netns/${request.netns}`].find((candidate) => fs.existsSync(candidate));
  if (file === undefined) throw new ApiError(400, `field /netns: network namespace ${request.netns} does not exist (value: ${JSON.stringify(request.netns)})`);
  return file;
}

/** The pod's interface as the worker makes it inside the pod namespace (a veth pair or a TAP, see PodPortKind). */
function podTap(request: PortAddRequest, netnsPath: string | undefined, addressing: Omit<PodTapConfig, 'netnsPath' | 'ifname'>): PodPortConfig | undefined {
  return netnsPath === undefined ? undefined : { netnsPath, ifname: request.ifname ?? 'eth0', kind: request.kind, ...addressing };
}

/** How long a port add waits for the control node's configuration. */
const CONTROL_ANSWER_TIMEOUT_MS = 15_000;

/** A locally administered MAC unique on the node, from the pod's label (its address is not known yet). */
export function macForLabel(label: number): string {
  return ['02', '76', '72', (label >>> 16) & 0xff, (label >>> 8) & 0xff, label & 0xff]
    .map((part) => (typeof part === 'string' ? part : part.toString(16).padStart(2, '0')))
    .join(':');
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(message)), ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A locally administered MAC derived from the pod IP: 02:00:a.b.c.d. */
export function macForIp(ip: string): string {
  return ['02', '00', ...ip.split('.').map((octet) => Number(octet).toString(16).padStart(2, '0'))].join(':');
}

/**
 * The control client's LocalPort of an agent port: { id (the VMI), vmUuid
 * (instance-id), name (display-name), mac, label }; VN, address and labels
 * are the pod registration's, not the agent port's.
 */
function agentLocalPort(port: AgentPort, label: number): LocalPort {
  return { id: port.id, vmUuid: port.instanceId, name: port.displayName, mac: port.mac, label, namespace: 'default', labels: {} };
}

export class Daemon {
  private readonly ports = new Map<string, PortRecord>();
  private client: ControlClient | null = null;
  /** Ports given to the control client, waiting for their configuration: where their TAP goes. */
  private readonly pending = new Map<string, { tapName: string; netnsPath?: string; request: PortAddRequest }>();
  /** Labels in use on this node (the state file's and those given to control-configured ports). */
  private readonly usedLabels = new Set<number>();
  /** Ports on existing interfaces, attached through libpcap. */
  private readonly attachments = new Map<string, CapAttachment>();
  /** Interfaces of the agent's ports attached through libpcap, by vif. */
  private readonly agentAttachments = new Map<number, CapAttachment>();
  /** The same for the agent's ports a control node configures, by port (the worker takes their rings when it configures them). */
  private readonly controlledAttachments = new Map<string, CapAttachment>();
  private agentPorts: AgentPorts | undefined;
  private tapCounter = 0;
  /** What a restart needs to make each port again on its devices, by port id. */
  private readonly restorable = new Map<string, SnapshotPort>();
  /** Routes set through the API, and those the control client programmed: what a restart programs again. */
  private readonly apiRoutes = new RouteJournal();
  private readonly controlRoutes = new RouteJournal();
  private saving: Promise<void> = Promise.resolve();
  private savesWaiting = 0;

  private constructor(
    private readonly state: StateDocument,
    readonly dataplane: DataplaneHandle,
    private readonly log: Logger,
    private readonly snapshotFile: string,
    private readonly stateDigest: string,
  ) {}

  /**
   * Forwarding first: the worker is started before anything else is read or
   * loaded, the snapshot restored as soon as it runs; only then the
   * modules and services the packet path does not need (serve()).
   */
  static async start(options: DaemonOptions, log = createLogger()): Promise<{ daemon: Daemon; apiAddress: AddressInfo }> {
    if (process.getuid?.() !== 0) throw new Error('vrouter run needs root: TAP devices and raw sockets need CAP_NET_ADMIN and CAP_NET_RAW');
    const startup = new StartupTimeline();
    const stateText = readStateText(options.stateFile);
    // The worker's isolate, modules and tables are most of a restart's outage: they load while this thread reads and validates.
    const dataplane = new DataplaneHandle(stateText, options.stateFile);
    startup.mark('workerSpawned');
    const snapshotFile = options.snapshotFile ?? defaultSnapshotFile(options.stateFile);
    const digest = stateDigest(stateText);
    let state: StateDocument;
    let loaded: LoadedSnapshot = { snapshot: null, reason: null };
    let validateAfterRestore = false;
    try {
      state = parseStateText(stateText, options.stateFile) as StateDocument;
      const node = (state as Partial<StateDocument> | null)?.node?.name;
      if (typeof node === 'string') loaded = loadSnapshot(snapshotFile, node);
      // The very text the snapshot's daemon validated at its start: validated again once forwarding is back.
      validateAfterRestore = loaded.snapshot?.stateDigest === digest;
      if (!validateAfterRestore) buildDataplane(state, options.stateFile); // fails here, naming file, field and value, before the worker is used
    } catch (error) {
      await dataplane.stop();
      throw error;
    }
    const daemon = new Daemon(state, dataplane, log, snapshotFile, digest);
    for (const entry of state.labels ?? []) daemon.usedLabels.add(entry.label);
    if (loaded.snapshot === null && loaded.reason !== null) log.warn({ component: 'snapshot', file: snapshotFile, reason: loaded.reason }, 'snapshot ignored: starting without it');
    // Forwarding comes back before the API listens and before the control channel is up: the restore is
    // posted now, and the worker serves it as soon as it runs.
    const restoring = loaded.snapshot ? daemon.restore(loaded.snapshot, options.control !== undefined) : Promise.resolve();
    try {
      startup.worker(await dataplane.ready);
    } catch (error) {
      await restoring.catch(() => undefined);
      if (validateAfterRestore) buildDataplane(state, options.stateFile); // a schema error explains it better
      throw new Error(explainStartFailure(error as Error, state));
    }
    await restoring;
    startup.mark('snapshotRestored');
    if (validateAfterRestore) {
      try {
        buildDataplane(state, options.stateFile);
      } catch (error) {
        // This daemon's schema refuses what the last one ran (an upgrade): the pods keep their devices for a fixed file.
        await dataplane.stop({ keepDevices: true });
        throw error;
      }
      startup.mark('stateValidated');
    }
    await daemon.removeLeftoverDevices();
    const apiAddress = await daemon.serve(options, loaded.snapshot, startup);
    return { daemon, apiAddress };
  }

  /**
   * What the packet path does not need, loaded and started once it
   * forwards: the control channel, the port API, the introspect API, the
   * agent's ports, the periodic snapshot and the signal handlers.
   */
  private async serve(options: DaemonOptions, snapshot: DaemonSnapshot | null, startup: StartupTimeline): Promise<AddressInfo> {
    const { createPortApi } = require('../control/agent/port-api') as typeof import('../control/agent/port-api');
    const { AgentPorts } = require('./agent-ports') as typeof import('./agent-ports');
    const { PortStore } = require('../control/agent/port-store') as typeof import('../control/agent/port-store');
    const { startIntrospectServer } = require('./introspect-server') as typeof import('./introspect-server');
    startup.mark('servicesLoaded');
    const { dataplane, log, state, snapshotFile } = this;
    if (options.control) {
      const client = this.startControlClient(options.control);
      if (snapshot) this.rejoin(snapshot, client);
      for (const gateway of options.gateways ?? []) await this.addGateway(gateway, client);
      startup.mark('controlStarted');
    }
    const portsDir = options.portsDir ?? defaultPortsDir(options.stateFile);
    // With a control node, the CNI's pods (POST /vm, no port posted) are configured from what it sent.
    const configuration = options.control ? { vmConfig: (name: string) => this.client?.vmConfig(name) } : undefined;
    const agentPorts = new AgentPorts(new PortStore(portsDir, () => ({ author: 'vrouter run', now: new Date() })), this.interfaceAttacher(), log, options.stalePortTimeout, configuration);
    this.agentPorts = agentPorts;
    const api = createPortApi({
      addPorts: (ports) => agentPorts.addPorts(ports),
      deletePort: async (id) => {
        await agentPorts.deletePort(id);
        // A vrouter-ts port of that id goes too (the agent's DELETE answers 200 for an unknown port).
        if (this.ports.has(id)) await this.deletePort(id);
      },
      portInfo: (id) => agentPorts.portInfo(id),
      syncPorts: () => agentPorts.sync(),
      setLinkState: (id, up) => agentPorts.setLinkState(id, up),
      vmConfig: (name) => agentPorts.vmConfig(name),
      addVmVnPort: (port) => agentPorts.addVmVnPort(port),
      vmInterfaces: (vm, vmi) => agentPorts.vmInterfaces(vm, vmi),
      deleteVm: (vm) => agentPorts.deleteVm(vm),
      addLocalPort: (request) => this.addPort(request),
      deleteLocalPort: async (id) => {
        if (!this.ports.has(id)) return false;
        await this.deletePort(id);
        return true;
      },
      listPorts: () => [...this.ports.values(), ...this.agentPortList()],
      setRoute: async (route) => {
        const nexthops = (route.nexthops ?? []).map((nexthop) => ({ ...nexthop, encaps: nexthop.encaps ?? ['udp'] }));
        const answer = await dataplane.request({ op: 'set-route', vrf: route.vrf, prefix: route.prefix, nexthops });
        this.apiRoutes.set(route.vrf, route.prefix, nexthops);
        return answer;
      },
      stats: () => dataplane.request({ op: 'stats' }),
    });
    await new Promise<void>((resolve, reject) => {
      api.once('error', reject);
      api.listen(options.apiPort, options.apiHost, resolve);
    });
    const apiAddress = api.address() as AddressInfo;
    startup.mark('apiListening');
    if (options.introspect) {
      await startIntrospectServer({
        ...options.introspect,
        dataplane,
        log,
        node: state.node.name,
        ports: () => [...this.ports.values(), ...this.activeAgentPorts()],
        controlSessions: () => this.controlSessions(),
        sandeshInterfaces: () => this.sandeshInterfaces(),
      });
    }
    await agentPorts.restore();
    startup.mark('running');
    log.info({ component: 'daemon', node: state.node.name, underlay: state.node.underlayIp, api: `${apiAddress.address}:${apiAddress.port}`, startup: startup.marks }, 'vrouter running');
    void dataplane.firstForward.then((at) => {
      log.info({ component: 'daemon', ms: startup.sinceStart(at.at), cpuMs: at.cpuMs }, 'first packet forwarded');
    });
    const snapshotTimer = setInterval(() => void this.saveSnapshot({ unlessBusy: true }), SNAPSHOT_INTERVAL_MS);
    snapshotTimer.unref();
    const stop = async (signal: string) => {
      log.info({ component: 'daemon', signal, cleanExit: options.cleanExit === true }, 'stopping');
      clearInterval(snapshotTimer);
      api.close();
      agentPorts.stop();
      if (options.cleanExit) {
        // Leaving for good: the control node withdraws this node's routes now.
        await this.client?.close();
        await dataplane.stop();
        fs.rmSync(snapshotFile, { force: true });
      } else {
        // A restart: the session just drops (the control node keeps this node's routes as stale), the pods keep their devices.
        await this.saveSnapshot();
        await dataplane.stop({ keepDevices: true });
      }
      process.exit(0);
    };
    process.once('SIGINT', () => void stop('SIGINT'));
    process.once('SIGTERM', () => void stop('SIGTERM'));
    return apiAddress;
  }

  private startControlClient(control: NonNullable<DaemonOptions['control']>): ControlClient {
    const { ControlClient } = require('../control/agent/control-client') as typeof import('../control/agent/control-client');
    const componentLog = this.log.child({ component: 'control' });
    const client = new ControlClient({
      nodeName: control.nodeName ?? this.state.node.name,
      underlayIp: this.state.node.underlayIp,
      encaps: [...(this.state.node.encapPriority ?? ['udp', 'gre'])],
      servers: control.servers,
      holdTime: control.holdTime,
      access: new WorkerAccess(this.dataplane, (port, config) => {
        // The control node's latest configuration of the port is what a restart forwards with until it answers again.
        const restorable = this.restorable.get(port.id);
        if (restorable?.control) restorable.control = { port, config };
        const attachment = this.controlledAttachments.get(port.id);
        if (attachment) return { tapName: attachment.device, attach: attachment.request };
        const pending = this.pending.get(port.id);
        if (!pending) return { tapName: `vtap${this.tapCounter++}` };
        const mtu = pending.request.mtu ?? this.underlayMtu() - OVERLAY_OVERHEAD;
        return { tapName: pending.tapName, pod: podTap(pending.request, pending.netnsPath, { mac: port.mac, mtu, ip: config.ip, gateway: config.gateway }) };
      }, (updates) => {
        for (const update of updates) this.controlRoutes.set(update.vrf, update.prefix, update.nexthops);
      }),
      logger: { info: (message) => componentLog.info(message), warn: (message) => componentLog.warn(message) },
    });
    this.client = client;
    return client;
  }

  /**
   * The control client takes over what the snapshot restored: its routes as
   * stale from every control node, its ports reported again (the control
   * nodes' answers reconfigure them; a refusal removes one).
   */
  private rejoin(snapshot: DaemonSnapshot, client: ControlClient): void {
    client.restoreStaleRoutes(snapshot.controlRoutes);
    for (const port of snapshot.ports) {
      if (!port.control || !this.restorable.has(port.request.id)) continue;
      this.addControlledPort(port.request, client, port).catch((error: Error) =>
        this.log.warn({ component: 'snapshot', id: port.request.id, reason: error.message }, 'restored port refused by the control nodes: removed'),
      );
    }
  }

  /** A gateway's interface attached as a port in its routing instance (the worker opens it when the client configures it). */
  private async addGateway(gateway: GatewaySpec, client: ControlClient): Promise<void> {
    let label = 16;
    while (this.usedLabels.has(label)) label++;
    this.usedLabels.add(label);
    const port = gatewayPort(gateway, label);
    try {
      this.controlledAttachments.set(port.id, new CapAttachment(gateway.interface));
    } catch (error) {
      throw new Error(`--gateway interface ${gateway.interface}: ${(error as Error).message}`);
    }
    await client.addGateway(port, gatewayConfig(gateway), gateway.routes);
    this.log.info({ component: 'gateway', interface: gateway.interface, vrf: gateway.routingInstance, label, ipBlocks: gateway.ipBlocks, routes: gateway.routes }, 'gateway interface attached');
  }

  /** The XMPP sessions, for the introspect API. */
  controlSessions(): unknown[] {
    if (!this.client) return [];
    const counts = this.client.routeCounts();
    return this.client.status().map((session) => ({
      peer: session.server,
      state: session.established ? 'Established' : 'Connecting',
      routesReceived: counts.routes,
      staleRoutes: counts.stale,
      routesSent: this.ports.size,
      lastError: null,
    }));
  }

  /** A port whose VN and address the control node decides (or checks). */
  /**
   * `restored`: a port of the snapshot, already forwarding on its devices
   * (restoreControlledPort): reported again with its label and device, and
   * waited for as long as the control nodes take.
   */
  private async addControlledPort(request: PortAddRequest, client: ControlClient, restored?: SnapshotPort): Promise<PortRecord> {
    if (request.attach !== undefined) throw new ApiError(400, 'field /attach: attached interfaces need a VN and an address, not a control node');
    const netnsPath = podNamespaceFile(request);
    let label = restored?.label ?? request.label ?? 16;
    if (restored === undefined) {
      if (request.label === undefined) while (this.usedLabels.has(label)) label++;
      else if (this.usedLabels.has(label)) throw new ApiError(409, `field /label: label ${label} is in use`);
    }
    this.usedLabels.add(label);
    const mac = request.mac ?? macForLabel(label);
    const tapName = restored?.tapName ?? `vtap${this.tapCounter++}`;
    this.pending.set(request.id, { tapName, netnsPath, request });
    const local: LocalPort = {
      id: request.id,
      name: request.name ?? request.id,
      namespace: request.namespace ?? 'default',
      labels: request.labels ?? {},
      vn: request.vn,
      ip: request.ip,
      mac,
      label,
    };
    let config: PortConfig;
    try {
      config = await (restored ? client.addPort(local) : withTimeout(client.addPort(local), CONTROL_ANSWER_TIMEOUT_MS, 'no control node configured the port in time'));
    } catch (error) {
      this.pending.delete(request.id);
      this.usedLabels.delete(label);
      this.restorable.delete(request.id);
      await client.removePort(request.id).catch(() => undefined);
      throw new ApiError(503, (error as Error).message);
    }
    this.pending.delete(request.id);
    const stats = (await this.dataplane.request({ op: 'introspect', query: { what: 'vifs' } })) as Array<{ id: number; name: string }>;
    const vif = stats.find((candidate) => candidate.name === request.id)?.id ?? -1;
    const record = portRecord(request, { vif, label, tapName }, { vn: config.vn, ip: config.ip, mac, mtu: request.mtu ?? this.underlayMtu() - OVERLAY_OVERHEAD });
    this.ports.set(request.id, record);
    this.restorable.set(request.id, { request, vif, label, tapName, control: { port: local, config } });
    await this.saveSnapshot();
    this.log.info({ component: 'ports', id: record.id, vif, label, vn: record.vn, ip: record.ip, netns: record.netns, restored: restored !== undefined }, 'port added (configured by the control node)');
    return record;
  }

  async addPort(request: PortAddRequest): Promise<PortRecord> {
    if (this.ports.has(request.id) || this.pending.has(request.id)) throw new ApiError(409, `field /id: port ${request.id} exists already`);
    if (this.client) return this.addControlledPort(request, this.client);
    const prepared = this.prepareLocalPort(request);
    let result: PortResult;
    try {
      result = await this.dataplane.request<PortResult>(prepared.request);
    } catch (error) {
      throw new ApiError(400, (error as Error).message);
    }
    const record = prepared.finish(result);
    await this.saveSnapshot();
    return record;
  }

  /**
   * A port of vrouter-ts's own: the worker's request making it, and what
   * records it once made. `restored`: a port of the snapshot, made again on
   * its devices with its vif and name.
   */
  private prepareLocalPort(request: PortAddRequest, restored?: Pick<SnapshotPort, 'vif' | 'tapName'>): { request: WorkerRequest; finish: (result: PortResult) => PortRecord } {
    if (request.vn === undefined) throw new ApiError(400, 'field /vn is required (no control node assigns one)');
    if (request.ip === undefined) throw new ApiError(400, 'field /ip is required (no control node assigns one)');
    const vrf = (this.state.vrfs ?? []).find((candidate) => candidate.name === request.vn);
    const gateway = request.gateway ?? vrf?.gateway;
    const subnet = request.subnet ?? vrf?.subnets?.[0];
    if (gateway === undefined) throw new ApiError(400, `field /gateway is required: the state file does not define VN ${request.vn}`);
    if (request.attach !== undefined && request.mac === undefined) throw new ApiError(400, 'field /mac is required with /attach: the MAC of the pod side of the interface');
    const netnsPath = podNamespaceFile(request);
    const mac = request.mac ?? macForIp(request.ip);
    const mtu = request.mtu ?? this.underlayMtu() - OVERLAY_OVERHEAD;
    const tapName = request.attach ?? restored?.tapName ?? `vtap${this.tapCounter++}`;
    const pod = podTap(request, netnsPath, { mac, mtu, ip: request.ip, gateway });
    let attachment: CapAttachment | undefined;
    if (request.attach !== undefined) {
      try {
        attachment = new CapAttachment(request.attach);
      } catch (error) {
        throw new ApiError(400, `field /attach: ${(error as Error).message} (value: ${JSON.stringify(request.attach)})`);
      }
    }
    const port: PortRequest = {
      tapName,
      pod: pod && restored ? { ...pod, existing: true } : pod,
      vif: restored?.vif,
      mac,
      ip: request.ip,
      vrf: request.vn,
      subnet,
      gateway,
      mtu,
      label: request.label,
      floatingIps: floatingIps(request),
      ip6: request.ip6,
      floatingIps6: (request.floatingIps ?? []).filter((fip) => fip.ip.includes(':')).map((fip) => ({
        ip: fip.ip,
        portMap: (fip.portMap ?? []).map((entry) => ({ protocol: PROTOCOLS[entry.protocol], port: entry.port, targetPort: entry.targetPort ?? entry.port })),
      })),
      attach: attachment?.request,
    };
    const vn = request.vn;
    const ip = request.ip;
    const finish = (result: PortResult): PortRecord => {
      if (attachment) this.attachments.set(request.id, attachment);
      const record = portRecord(request, result, { vn, ip, mac, mtu });
      this.ports.set(request.id, record);
      this.restorable.set(request.id, { request, vif: result.vif, label: result.label, tapName: result.tapName });
      this.log.info({ component: 'ports', id: record.id, vif: record.vif, label: record.label, vn: record.vn, ip: record.ip, netns: record.netns, restored: restored !== undefined }, 'port added');
      return record;
    };
    return { request: { op: 'add-port', port }, finish };
  }

  /**
   * The worker's port on a TAP it makes, or on the existing interface
   * `attach` names (attached through libpcap: CapAttachment).
   */
  private async makePort(port: Omit<PortRequest, 'attach'>, attach: string | undefined): Promise<{ result: PortResult; attachment?: CapAttachment }> {
    let attachment: CapAttachment | undefined;
    if (attach !== undefined) {
      try {
        attachment = new CapAttachment(attach);
      } catch (error) {
        throw new Error(`field /attach: ${(error as Error).message} (value: ${JSON.stringify(attach)})`);
      }
    }
    try {
      const result = await this.dataplane.request<PortResult>({ op: 'add-port', port: { ...port, attach: attachment?.request } });
      return { result, attachment };
    } catch (error) {
      attachment?.close();
      throw error;
    }
  }

  /**
   * How the agent's ports come up here, on the existing interface
   * `system-name`: configured by the control node when there is one, else
   * in the VRF the port's `vn` names.
   */
  private interfaceAttacher() {
    return {
      attach: async (port: AgentPort): Promise<AttachedInterface | undefined> => {
        if (this.client) return this.attachControlled(port, this.client);
        if (port.vn === undefined || port.ip === '0.0.0.0') return undefined;
        const vrf = (this.state.vrfs ?? []).find((candidate) => candidate.name === port.vn);
        const gateway = port.gateway ?? vrf?.gateway;
        const subnet = port.subnet ?? vrf?.subnets?.[0];
        if (gateway === undefined || subnet === undefined) throw new Error(`VN ${port.vn} is not in the state file: the port needs "subnet" and "gateway"`);
        const mtu = port.mtu ?? this.underlayMtu() - OVERLAY_OVERHEAD;
        const { result, attachment } = await this.makePort(
          { tapName: port.systemName, mac: port.mac, ip: port.ip, vrf: port.vn, subnet, gateway, mtu, label: port.label, floatingIps: floatingIps(port) },
          port.systemName,
        );
        this.agentAttachments.set(result.vif, attachment!);
        return { vif: result.vif, label: result.label, vn: port.vn, ip: port.ip, subnet, gateway };
      },
      detach: async (port: AgentPort, attached: AttachedInterface): Promise<void> => {
        if (this.client) {
          // The client withdraws the routes, then unconfigures the port (the worker drops its rings).
          await this.client.removePort(port.id);
          this.controlledAttachments.get(port.id)?.close();
          this.controlledAttachments.delete(port.id);
          this.usedLabels.delete(attached.label);
          return;
        }
        this.agentAttachments.get(attached.vif)?.close();
        this.agentAttachments.delete(attached.vif);
        await this.dataplane.request({ op: 'delete-port', vif: attached.vif });
      },
    };
  }

  /**
   * An agent port a control node configures: its interface attached, the
   * port reported to the control client, the worker given the rings when
   * the configuration comes.
   */
  private async attachControlled(port: AgentPort, client: ControlClient): Promise<AttachedInterface> {
    let label = port.label ?? 16;
    if (port.label === undefined) while (this.usedLabels.has(label)) label++;
    else if (this.usedLabels.has(label)) throw new Error(`label ${label} is in use`);
    const attachment = new CapAttachment(port.systemName);
    this.usedLabels.add(label);
    this.controlledAttachments.set(port.id, attachment);
    let config: PortConfig;
    try {
      config = await withTimeout(client.addPort(agentLocalPort(port, label)), CONTROL_ANSWER_TIMEOUT_MS, 'no control node configured the port in time');
    } catch (error) {
      this.controlledAttachments.delete(port.id);
      attachment.close();
      this.usedLabels.delete(label);
      await client.removePort(port.id).catch(() => undefined);
      throw error;
    }
    const vifs = (await this.dataplane.request({ op: 'introspect', query: { what: 'vifs' } })) as Array<{ id: number; name: string }>;
    const vif = vifs.find((candidate) => candidate.name === port.id)?.id ?? -1;
    return { vif, label, vn: config.vn, ip: config.ip, subnet: config.subnet, gateway: config.gateway };
  }

  /** The agent's ports for GET /ports (`vrouter port list`), attached or waiting. */
  agentPortList(): unknown[] {
    return (this.agentPorts?.list() ?? []).map(({ port, state, attached }) => ({
      id: port.id,
      name: port.displayName,
      vmUuid: port.instanceId,
      tapName: port.systemName,
      type: port.type,
      state,
      mac: port.mac,
      vn: attached?.vn ?? port.vn,
      ip: attached?.ip ?? port.ip,
      ...(attached ? { vif: attached.vif, label: attached.label } : {}),
    }));
  }

  /** The agent's ports that have a vif, as the introspect API lists pods. */
  activeAgentPorts(): IntrospectPort[] {
    return (this.agentPorts?.list() ?? []).flatMap(({ port, attached }) =>
      attached ? [{ id: port.id, vif: attached.vif, name: port.displayName, vn: attached.vn, ip: attached.ip, label: attached.label, tapName: port.systemName }] : [],
    );
  }

  /** Every port for the introspect's Snh_ItfReq: the agent's (active or not) and vrouter-ts's own. */
  sandeshInterfaces(): SandeshInterface[] {
    const agent: SandeshInterface[] = (this.agentPorts?.list() ?? []).map(({ port, state, attached }) => ({
      index: attached?.vif ?? -1,
      name: port.systemName,
      uuid: port.id,
      vrfName: attached?.vn ?? port.vn ?? '',
      active: state === 'active',
      label: attached?.label ?? -1,
      vnName: attached?.vn ?? port.vn ?? '',
      vmUuid: port.instanceId,
      vmName: port.displayName,
      ip: attached?.ip ?? port.ip,
      mac: port.mac,
      vmProjectUuid: port.projectId,
      txVlanId: port.txVlanId,
      rxVlanId: port.rxVlanId,
    }));
    const local: SandeshInterface[] = [...this.ports.values()].map((record) => ({
      index: record.vif,
      name: record.tapName,
      uuid: record.id,
      vrfName: record.vn,
      active: true,
      label: record.label,
      vnName: record.vn,
      vmUuid: '',
      vmName: record.name ?? record.id,
      ip: record.ip,
      mac: record.mac,
      vmProjectUuid: '',
      txVlanId: -1,
      rxVlanId: -1,
    }));
    return [...agent, ...local];
  }

  async deletePort(id: string): Promise<void> {
    const record = this.ports.get(id);
    if (!record) throw new ApiError(404, `no port ${id}`);
    if (this.client) {
      // The client withdraws the pod's routes, then unconfigures the port (closing its TAP).
      await this.client.removePort(id);
      this.usedLabels.delete(record.label);
      this.ports.delete(id);
      this.restorable.delete(id);
      await this.saveSnapshot();
      this.log.info({ component: 'ports', id, vif: record.vif }, 'port deleted');
      return;
    }
    await this.dataplane.request({ op: 'delete-port', vif: record.vif });
    this.attachments.get(id)?.close();
    this.attachments.delete(id);
    this.ports.delete(id);
    this.restorable.delete(id);
    await this.saveSnapshot();
    this.log.info({ component: 'ports', id, vif: record.vif }, 'port deleted');
  }

  /**
   * Makes the snapshot's ports again on their devices, programs its routes
   * (those of the control nodes too) and (under the same state file) its
   * flows, in one batch: the worker
   * reads no packet of a restored port before its flows are back (a reply
   * forwarded without its NAT would have the client reset the connection).
   * A port that cannot come back (its VN left the state file, its
   * namespace is gone) has its veth deleted: a restart leaks no device.
   */
  private async restore(snapshot: DaemonSnapshot, controlled: boolean): Promise<void> {
    const started = Date.now();
    const made: Array<{ port: SnapshotPort; finish: (result: unknown) => void }> = [];
    const refused: Array<{ port: SnapshotPort; reason: string }> = [];
    const requests: WorkerRequest[] = [];
    for (const port of snapshot.ports) {
      const match = /^vtap(\d+)$/.exec(port.tapName);
      if (match) this.tapCounter = Math.max(this.tapCounter, Number(match[1]) + 1);
      try {
        if (controlled !== (port.control !== undefined)) throw new Error(controlled ? 'the port was not configured by a control node' : 'the port was configured by a control node, and there is none now');
        const prepared = port.control ? this.prepareControlledRestore(port, port.control) : this.prepareLocalPort({ ...port.request, label: port.label }, port);
        requests.push(prepared.request);
        made.push({ port, finish: prepared.finish as (result: unknown) => void });
      } catch (error) {
        refused.push({ port, reason: (error as Error).message });
      }
    }
    for (const route of snapshot.routes) requests.push({ op: 'set-route', vrf: route.vrf, prefix: route.prefix, nexthops: route.nexthops });
    // The control nodes' routes forward at once too; the control client takes them over as stale when it starts (rejoin).
    if (controlled) requests.push({ op: 'control-routes', updates: snapshot.controlRoutes });
    const sameState = snapshot.stateDigest === this.stateDigest;
    if (sameState) requests.push({ op: 'import-flows', pairs: snapshot.flows });
    const answers = await this.dataplane.request<BatchAnswer[]>({ op: 'batch', requests });
    let ports = 0;
    made.forEach(({ port, finish }, index) => {
      const answer = answers[index];
      if (answer.ok) {
        finish(answer.result);
        ports++;
      } else {
        refused.push({ port, reason: answer.error });
      }
    });
    let routes = 0;
    snapshot.routes.forEach((route, index) => {
      const answer = answers[made.length + index];
      if (answer.ok) {
        this.apiRoutes.set(route.vrf, route.prefix, route.nexthops);
        routes++;
      } else {
        this.log.warn({ component: 'snapshot', vrf: route.vrf, prefix: route.prefix, reason: answer.error }, 'route not restored');
      }
    });
    const flowAnswer = sameState ? answers[answers.length - 1] : undefined;
    const flows = flowAnswer?.ok ? (flowAnswer.result as number) : 0;
    for (const { port, reason } of refused) {
      this.log.warn({ component: 'snapshot', id: port.request.id, tapName: port.tapName, reason }, 'port not restored: its device is removed');
      if (port.request.netns !== undefined && port.request.attach === undefined && port.request.configure !== false) {
        await this.dataplane.request({ op: 'delete-device', name: port.tapName }).catch(() => undefined);
      }
    }
    this.log.info(
      { component: 'snapshot', savedAt: snapshot.savedAt, ports, routes, flows, flowsDropped: sameState ? snapshot.flows.length - flows : snapshot.flows.length, stateChanged: !sameState, ms: Date.now() - started },
      'restored from the snapshot',
    );
  }

  /**
   * Deletes the veths named as this daemon names them (vtap<n>) that no
   * restored port uses: a previous daemon killed while making a port, or
   * started again without its snapshot, leaves them behind. Read from
   * /proc/self/net/dev, which lists this process's namespace whatever
   * /sys shows.
   */
  private async removeLeftoverDevices(): Promise<void> {
    let text: string;
    try {
      text = fs.readFileSync('/proc/self/net/dev', 'utf8');
    } catch {
      return;
    }
    const inUse = new Set([...this.restorable.values()].map((port) => port.tapName));
    for (const line of text.split('\n').slice(2)) {
      const name = line.split(':')[0].trim();
      if (!/^vtap\d+$/.test(name) || inUse.has(name)) continue;
      try {
        await this.dataplane.request({ op: 'delete-device', name });
        this.log.warn({ component: 'snapshot', device: name }, 'left-over device of a previous run removed');
      } catch (error) {
        this.log.warn({ component: 'snapshot', device: name, reason: (error as Error).message }, 'left-over device not removed');
      }
    }
  }

  /** A control-configured port forwarding again on its devices with its last configuration, before any control node answers. */
  private prepareControlledRestore(port: SnapshotPort, control: NonNullable<SnapshotPort['control']>): { request: WorkerRequest; finish: () => void } {
    const { request, tapName } = port;
    const mtu = request.mtu ?? this.underlayMtu() - OVERLAY_OVERHEAD;
    const pod = podTap(request, podNamespaceFile(request), { mac: control.port.mac, mtu, ip: control.config.ip, gateway: control.config.gateway });
    return {
      request: { op: 'control-configure-port', port: control.port, config: control.config, tapName, pod: pod && { ...pod, existing: true } },
      finish: () => {
        this.usedLabels.add(port.label);
        this.restorable.set(request.id, port);
      },
    };
  }

  /**
   * Saves the snapshot after any save under way (a port just added or
   * deleted must be in the next one); the periodic save skips a turn
   * while one is waiting.
   */
  saveSnapshot(options: { unlessBusy?: boolean } = {}): Promise<void> {
    if (options.unlessBusy && this.savesWaiting > 0) return this.saving;
    this.savesWaiting++;
    this.saving = this.saving.then(async () => {
      try {
        const flows: SnapshotFlowPair[] = [];
        // Slice by slice: the worker forwards between them.
        for (let fromPair: number | null = 0; fromPair !== null; ) {
          const slice: { pairs: SnapshotFlowPair[]; next: number | null } = await this.dataplane.request({ op: 'export-flows', fromPair });
          for (const pair of slice.pairs) flows.push(pair);
          fromPair = slice.next;
        }
        const snapshot: DaemonSnapshot = {
          version: SNAPSHOT_VERSION,
          node: this.state.node.name,
          savedAt: new Date().toISOString(),
          stateDigest: this.stateDigest,
          ports: [...this.restorable.values()],
          routes: this.apiRoutes.list(),
          controlRoutes: this.controlRoutes.list(),
          flows,
        };
        saveSnapshot(this.snapshotFile, snapshot);
      } catch (error) {
        this.log.warn({ component: 'snapshot', file: this.snapshotFile, reason: (error as Error).message }, 'snapshot not saved');
      } finally {
        this.savesWaiting--;
      }
    });
    return this.saving;
  }

  private underlayMtu(): number {
    return (this.state.vifs ?? []).find((vif) => vif.kind === 'fabric')?.mtu ?? 1500;
  }
}

/**
 * When each start phase ended, in ms since the process started (the
 * restart's outage is the old process's exit plus these): logged with
 * "vrouter running".
 */
class StartupTimeline {
  readonly marks: Record<string, number> = {};

  constructor() {
    this.mark('modulesLoaded');
  }

  mark(phase: string): void {
    this.marks[phase] = Math.round(performance.now());
  }

  sinceStart(epochMs: number): number {
    return Math.round(epochMs - performance.timeOrigin);
  }

  worker(timeline: WorkerTimeline): void {
    for (const [phase, at] of Object.entries(timeline)) this.marks[`worker.${phase}`] = this.sinceStart(at);
    this.mark('workerReady');
  }
}

/** The state file's text; an unreadable one fails as loadStateFile fails (a StateFileError: exit 2). */
function readStateText(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new StateFileError(`${file}: cannot read: ${(error as Error).message}`);
  }
}

/** Turns the worker's syscall errors into what an operator can act on. */
function explainStartFailure(error: Error, state: StateDocument): string {
  const message = error.message;
  if (/EADDRNOTAVAIL|Cannot assign requested address/.test(message)) {
    return `underlay address ${state.node.underlayIp} is not configured on this node (${message})`;
  }
  if (/EPERM|EACCES|Operation not permitted/.test(message)) return `not permitted: ${message} (run as root)`;
  if (/\/dev\/net\/tun/.test(message)) return `no TUN/TAP support: ${message}`;
  return message;
}
