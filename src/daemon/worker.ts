/**
 * The dataplane worker: the thread that owns the forwarding tables and moves
 * packets. It blocks in epoll on every TAP device, the underlay sockets and
 * an eventfd, reads and writes whole batches with direct syscalls (the
 * native addon), and runs each batch through the pipeline. Nothing here
 * waits on the event loop: requests from the main thread (ports, routes,
 * statistics) are taken synchronously with receiveMessageOnPort when the
 * eventfd says one is waiting, between two batches.
 *
 *   pod veth (host end) --AF_XDP RX ring--> pipeline --AF_XDP TX ring--> pod veth
 *     (AF_PACKET ring + sendmmsg where AF_XDP is refused)
 *   pod TAP --readBatch--> pipeline --writeBatch--> pod TAP
 *   UDP 6635/51234 --recvmmsg (UDP_GRO: coalesced runs split)--> (mpls-input) pipeline
 *   raw GRE --recvmmsg--> (ipv4-input) pipeline --sendmmsg raw IPv4--> underlay
 *   pipeline --MPLS over UDP runs, UDP_SEGMENT from entropy-port sockets--> underlay
 *
 * Underlay settings (environment): VROUTER_UDP_GSO=off sends every tunnel
 * packet on the raw path, VROUTER_UDP_GRO=off receives datagram by
 * datagram, VROUTER_UNDERLAY_COALESCE_US (default 30, 0 = off) is how long
 * a short batch from a pod whose traffic went out in GSO runs waits for more
 * frames, so that the runs grow.
 */
import { getHeapStatistics } from 'node:v8';
import { MessagePort, isMainThread, parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { buildDataplane, parseStateText } from '../control/config/state-file';
import { Dataplane } from '../dataplane/dataplane';
import { describeFlows } from '../dataplane/flow-format';
import { MAX_FRAME, PacketPool } from '../dataplane/packet-pool';
import { Pipeline } from '../dataplane/pipeline';
import { PolicyRule } from '../dataplane/policy';
import { PROTO_GRE, ipFromString } from '../dataplane/protocols/ipv4';
import { parseMac } from '../dataplane/protocols/ethernet';
import { MPLS_OVER_UDP_LEGACY_PORT, MPLS_OVER_UDP_PORT } from '../dataplane/protocols/udp';
import { RouteNexthop, RouteProgrammer } from '../dataplane/route-programmer';
import { FloatingIp, VIF_VIRTUAL } from '../dataplane/vif';
import { ip6FromString } from '../dataplane/protocols/ipv6';
import { ETHERNET_INPUT, IPV4_INPUT, MPLS_INPUT } from '../dataplane/steps/next';
import { IntrospectQuery, introspect } from '../dataplane/introspect';
import { SyntheticPacket, writeSyntheticPacket } from '../dataplane/synthetic-packet';
import { SharedRing } from '../dataplane/io/shared-ring';
import { openInterfacePort } from '../dataplane/io/interface-port';
import { PacketRingPort } from '../dataplane/io/packet-ring-port';
import { XskPort } from '../dataplane/io/xsk-port';
import type { LocalPort, PortConfig } from '../control/agent/agent-interface';
import { InProcessDataplaneAccess } from '../control/agent/dataplane-access';
import type { RouteUpdate } from './worker-access';
import { TapPort } from '../dataplane/io/live-ports';
import { PortTeardown } from '../dataplane/io/port-teardown';
import { FabricPort } from '../dataplane/io/fabric-port';
import { NativeIo, PodTapConfig, loadNativeIo } from '../dataplane/io/native';
import { DROP_REASONS } from '../dataplane/drop-reasons';
import { EXPORT_SLICE_PAIRS, SnapshotFlowPair, exportFlows, importFlows } from './snapshot';
import { CAPTURE_RECORD_SIZE, DROP_RECORD_SIZE } from './dataplane-handle';

/** Epoch ms when this worker's modules were loaded: the first of its marks in the restart timeline. */
const modulesLoadedAt = Date.now();

/** What the main thread hands the worker at start. */
export interface WorkerStart {
  /** The state file's text: parsed here too, so that the worker starts before the main thread has read it. */
  stateText: string;
  stateFile: string;
  /** eventfd the main thread signals after posting a request. */
  wakeFd: number;
  requests: MessagePort;
  /** Shared rings the worker fills for the drop monitor and vif capture (see observers.ts). */
  dropRing: SharedArrayBuffer;
  captureRing: SharedArrayBuffer;
}

/**
 * How a pod is attached: 'veth' (a veth pair, the host end read and written
 * with AF_XDP, or AF_PACKET where AF_XDP is refused) or 'tap' (a TAP device
 * in the pod). The default is VROUTER_POD_PORT if set, else 'veth'.
 */
export type PodPortKind = 'veth' | 'tap';
export const POD_PORT_KINDS: readonly PodPortKind[] = ['veth', 'tap'];

/**
 * A pod interface made and configured inside the pod's namespace.
 * `existing`: a restarted daemon's port whose veth pair or persistent TAP
 * survived the restart: re-attached as it is (made anew when gone).
 */
export type PodPortConfig = PodTapConfig & { kind?: PodPortKind; existing?: boolean };

/** The I/O a vif's port uses, as `vrouter vif` shows it. */
export type PortIo = 'tap' | 'af_xdp' | 'af_packet';

export interface PortRequest {
  /**
   * The vif's name: also the TAP device's or the veth host end's (at most
   * 15 bytes), or the name of the existing interface attached.
   */
  tapName: string;
  /** The pod's interface, made and configured inside its namespace (podVethOpen or podTapOpen). */
  pod?: PodPortConfig;
  /**
   * An existing interface of the worker's namespace (e.g. a veth another
   * plugin made), read and written with AF_XDP or AF_PACKET instead of a
   * TAP device; left in place when the port goes.
   */
  attach?: { interface: string };
  mac: string;
  ip: string;
  vrf: string;
  /** The VN's subnet and gateway: the ARP proxy and ICMP errors need them. */
  subnet?: string;
  gateway?: string;
  mtu: number;
  label?: number;
  /** The vif id wanted (a restarted daemon's port keeps its own unless the state file took it); else the first free one. */
  vif?: number;
  floatingIps?: FloatingIp[];
  /** The pod's IPv6 address and IPv6 ClusterIPs (text; the VN's IPv6 subnet and gateway come from the state file). */
  ip6?: string;
  floatingIps6?: Array<{ ip: string; portMap: FloatingIp['portMap'] }>;
}

export type WorkerRequest =
  | { op: 'add-port'; port: PortRequest }
  | { op: 'delete-port'; vif: number }
  | { op: 'set-floating-ips'; vif: number; floatingIps: FloatingIp[] }
  | { op: 'set-route'; vrf: string; prefix: string; nexthops: RouteNexthop[] }
  | { op: 'delete-route'; vrf: string; prefix: string }
  | { op: 'set-policies'; rules: PolicyRule[] }
  | { op: 'stats' }
  | { op: 'flows' }
  | { op: 'introspect'; query: IntrospectQuery }
  | { op: 'clear-drops' }
  | { op: 'trace'; packet: SyntheticPacket }
  | { op: 'monitor-drops'; enable: boolean }
  | { op: 'capture'; vif: string; enable: boolean }
  | { op: 'control-routes'; updates: RouteUpdate[] }
  | { op: 'control-configure-port'; port: LocalPort; config: PortConfig; tapName: string; pod?: PodPortConfig; attach?: { interface: string } }
  | { op: 'control-unconfigure-port'; port: LocalPort }
  | { op: 'control-local-composite'; label: number; portIds: string[] }
  | { op: 'export-flows'; fromPair: number }
  | { op: 'import-flows'; pairs: SnapshotFlowPair[] }
  | { op: 'delete-device'; name: string }
  /**
   * Requests served in order with no packet read between them (a restart's
   * ports, routes and flows: no packet is forwarded on a port whose flows
   * are not back yet); answers one BatchAnswer per request.
   */
  | { op: 'batch'; requests: WorkerRequest[] }
  /** keepDevices: the daemon restarts; the pods' veth pairs and TAPs stay for the next one to re-attach. */
  | { op: 'shutdown'; keepDevices?: boolean };

/**
 * Epoch ms of the worker's start phases, for the daemon's restart
 * timeline (logged as ms since the process started).
 */
export interface WorkerTimeline {
  modulesLoaded: number;
  tablesBuilt: number;
  underlayOpen: number;
  ready: number;
}

export interface WorkerResponse {
  id: number;
  ok: boolean;
  result?: unknown;
  error?: string;
}

export type BatchAnswer = { ok: true; result: unknown } | { ok: false; error: string };

export interface PortResult {
  vif: number;
  label: number;
  tapName: string;
}

const BATCH = 64;
const WAKE_TAG = -1;
const POLL_TIMEOUT_MS = 200;

type PodPort = TapPort | XskPort | PacketRingPort;
/** A UDP_GRO socket's staged datagrams (see NativeIo.udpGroReceive). */
interface GroStage {
  stage: Buffer;
  state: Int32Array;
}
type Source =
  /** feedsUnderlay: its last batch went out in GSO runs, so a short batch waits for more (the coalescing wait). */
  | { kind: 'pod'; fd: number; vif: number; port: PodPort; feedsUnderlay: boolean }
  | { kind: 'udp'; fd: number; gro: GroStage | null }
  | { kind: 'gre'; fd: number };

/** Datagrams one UDP_GRO receive stages, 64 KiB each (a coalesced run is at most that). */
const GRO_STAGE_DATAGRAMS = 64;
const GRO_STAGE_SLOT = 65536;
const DEFAULT_COALESCE_US = 30;
const MAX_COALESCE_US = 1000;

/** The underlay settings from the environment (see the header). */
function underlaySettings(): { gso: boolean; gro: boolean; coalesceMs: number } {
  const flag = (name: string): boolean => {
    const value = process.env[name];
    if (value === undefined || value === '' || value === 'on') return true;
    if (value === 'off') return false;
    throw new Error(`${name}=${value}: expected on or off`);
  };
  const text = process.env.VROUTER_UNDERLAY_COALESCE_US;
  const us = text === undefined || text === '' ? DEFAULT_COALESCE_US : Number(text);
  if (!Number.isInteger(us) || us < 0 || us > MAX_COALESCE_US) {
    throw new Error(`VROUTER_UNDERLAY_COALESCE_US=${text}: expected microseconds, 0..${MAX_COALESCE_US}`);
  }
  return { gso: flag('VROUTER_UDP_GSO'), gro: flag('VROUTER_UDP_GRO'), coalesceMs: us / 1000 };
}

/** A vif's open port: its poll tag, the veth it made (deleted with it), why AF_XDP was not used. */
interface OpenPort {
  port: PodPort;
  tag: number;
  createdVeth?: string;
  fallback?: string;
}

/**
 * The state document: a JSON file without loading the YAML parser (it is
 * YAML's subset; the main thread's own parse reports any error), else as
 * YAML.
 */
function parseStateQuickly(text: string, file: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return parseStateText(text, file);
  }
}

function defaultPodPortKind(): PodPortKind {
  const chosen = process.env.VROUTER_POD_PORT;
  if (chosen === undefined || chosen === '') return 'veth';
  if (!(POD_PORT_KINDS as readonly string[]).includes(chosen)) {
    throw new Error(`VROUTER_POD_PORT=${chosen}: expected one of ${POD_PORT_KINDS.join(', ')}`);
  }
  return chosen as PodPortKind;
}

class DataplaneWorker {
  private readonly io: NativeIo;
  private readonly dp: Dataplane;
  private readonly programmer: RouteProgrammer;
  /** Ports the control node configures, on the same tables. */
  private readonly controlled: InProcessDataplaneAccess;
  /** Interface of each control-configured port, by port id. */
  private readonly tapOfPort = new Map<string, { name: string; vif: number }>();
  private readonly pool = new PacketPool(BATCH + 256);
  private readonly pipeline: Pipeline;
  private readonly epoll: number;
  private readonly sources: (Source | null)[] = [];
  private readonly rxSlots = new Int32Array(BATCH);
  private readonly rxOffsets = new Int32Array(BATCH);
  private readonly rxLengths = new Int32Array(BATCH);
  private readonly rxSources = new Uint32Array(BATCH);
  /** rxOffsets/rxLengths from index k on, for the coalescing wait's further reads. */
  private readonly rxOffsetsFrom: Int32Array[] = [];
  private readonly rxLengthsFrom: Int32Array[] = [];
  private readonly underlay = underlaySettings();
  /** The port of every vif that has one (TAP, AF_XDP, AF_PACKET), by vif. */
  private readonly portOf = new Map<number, OpenPort>();
  private readonly defaultKind = defaultPodPortKind();
  private readonly socketFds: number[] = [];
  private readonly fabricVif: number;
  private fabricPort: FabricPort | null = null;
  private running = true;
  private keepDevices = false;
  /** The longest the worker went from one epoll wait to the next (batches, requests, re-evaluation): how long a port can go unread. */
  private longestTurnMs = 0;
  readonly timeline: WorkerTimeline = { modulesLoaded: modulesLoadedAt, tablesBuilt: 0, underlayOpen: 0, ready: 0 };
  /** Called once, at the first batch that transmitted a packet (the end of a restart's outage). */
  onFirstForward: ((at: number) => void) | null = null;

  constructor(private readonly start: WorkerStart) {
    this.io = loadNativeIo();
    this.dp = buildDataplane(parseStateQuickly(start.stateText, start.stateFile), start.stateFile, { validated: true });
    this.timeline.tablesBuilt = Date.now();
    this.programmer = new RouteProgrammer(this.dp);
    this.controlled = new InProcessDataplaneAccess(this.dp, this.programmer);
    this.pipeline = new Pipeline(this.dp, this.pool);
    // Set before any request: flows a restart imports are stamped with it, and a clock at 0 would age them out at its first tick.
    this.pipeline.advanceClock(Math.floor(Date.now() / 1000));
    for (let i = 0; i < BATCH; i++) {
      this.rxSlots[i] = this.pool.alloc();
      this.rxOffsetsFrom.push(this.rxOffsets.subarray(i));
      this.rxLengthsFrom.push(this.rxLengths.subarray(i));
    }
    this.epoll = this.io.epollCreate();
    this.io.epollAdd(this.epoll, start.wakeFd, WAKE_TAG);
    this.fabricVif = this.dp.vifs.fabricVif;
    this.openUnderlay();
    this.timeline.underlayOpen = Date.now();
    for (const vif of this.dp.vifs) if (vif.kind === VIF_VIRTUAL) this.openPort(vif.id, vif.name);
    this.timeline.ready = Date.now();
  }

  run(): void {
    const tags = new Int32Array(BATCH);
    while (this.running) {
      // A policy change's flow re-evaluation goes on while idle too, a slice per turn.
      const revaluating = this.pipeline.revaluation.pending;
      const ready = this.io.epollWait(this.epoll, tags, revaluating ? 0 : POLL_TIMEOUT_MS);
      const turnStarted = performance.now();
      if (ready === 0 && revaluating) this.pipeline.revaluation.step();
      for (let i = 0; i < ready; i++) {
        const tag = tags[i];
        if (tag === WAKE_TAG) {
          this.io.eventfdDrain(this.start.wakeFd);
          this.serveRequests();
        } else {
          this.receive(tag);
        }
      }
      const now = Math.floor(Date.now() / 1000);
      if (now !== this.pipeline.now) this.pipeline.advanceClock(now);
      const turn = performance.now() - turnStarted;
      if (turn > this.longestTurnMs) this.longestTurnMs = turn;
    }
    this.close();
  }

  /** A ready source's batch through the pipeline; a UDP_GRO socket's until nothing is staged (epoll sees only the kernel's queue). */
  private receive(tag: number): void {
    const source = this.sources[tag];
    if (!source) return;
    this.receiveBatch(source);
    if (source.kind !== 'udp' || source.gro === null) return;
    const state = source.gro.state;
    while (state[1] < state[0]) this.receiveBatch(source);
  }

  private receiveBatch(source: Source): void {
    const pool = this.pool;
    for (let i = 0; i < BATCH; i++) {
      const slot = this.rxSlots[i];
      pool.reset(slot);
      this.rxOffsets[i] = pool.start[slot];
    }
    let count: number;
    let entry = 0;
    if (source.kind === 'pod') {
      count = source.port.receive(pool.data, this.rxOffsets, this.rxLengths, BATCH, MAX_FRAME);
      if (count > 0 && count < BATCH && source.feedsUnderlay && this.underlay.coalesceMs > 0) count = this.coalesce(source.port, count);
      for (let i = 0; i < count; i++) pool.ingressVif[this.rxSlots[i]] = source.vif;
    } else if (source.kind === 'udp' && source.gro !== null) {
      count = this.io.udpGroReceive(source.fd, source.gro.stage, source.gro.state, pool.data, this.rxOffsets, this.rxLengths, this.rxSources, BATCH, MAX_FRAME);
    } else {
      count = this.io.recvBatch(source.fd, pool.data, this.rxOffsets, this.rxLengths, this.rxSources, BATCH, MAX_FRAME);
    }
    if (source.kind !== 'pod') {
      for (let i = 0; i < count; i++) {
        const slot = this.rxSlots[i];
        pool.ingressVif[slot] = this.fabricVif;
        if (source.kind === 'udp') {
          // The kernel removed the outer IPv4/UDP headers: enter at the label.
          pool.l4[slot] = pool.start[slot];
          pool.outerSrc[slot] = this.rxSources[i];
        } else {
          pool.l3[slot] = pool.start[slot];
        }
      }
      entry = source.kind === 'udp' ? MPLS_INPUT : IPV4_INPUT;
    }
    for (let i = 0; i < count; i++) pool.length[this.rxSlots[i]] = this.rxLengths[i];
    if (count === 0) return;
    const fabric = this.fabricPort;
    const gsoBefore = fabric === null ? 0 : fabric.counters.gsoFrames;
    this.pipeline.processBatch(this.rxSlots, count, entry);
    if (source.kind === 'pod' && fabric !== null) source.feedsUnderlay = fabric.counters.gsoFrames !== gsoBefore;
    if (this.onFirstForward !== null && this.pipeline.transmitted > 0) {
      this.onFirstForward(Date.now());
      this.onFirstForward = null;
    }
  }

  /** The coalescing wait: reads the pod's port again until the batch is full or the wait is over. */
  private coalesce(port: PodPort, count: number): number {
    const deadline = performance.now() + this.underlay.coalesceMs;
    const data = this.pool.data;
    do {
      count += port.receive(data, this.rxOffsetsFrom[count], this.rxLengthsFrom[count], BATCH - count, MAX_FRAME);
    } while (count < BATCH && performance.now() < deadline);
    return count;
  }

  private openUnderlay(): void {
    if (this.fabricVif < 0) return;
    const address = this.dp.node.underlayIp;
    const text = `${address >>> 24}.${(address >>> 16) & 255}.${(address >>> 8) & 255}.${address & 255}`;
    for (const port of [MPLS_OVER_UDP_PORT, MPLS_OVER_UDP_LEGACY_PORT]) {
      const fd = this.io.udpOpen(text, port);
      const gro = this.underlay.gro && this.io.udpGroEnable(fd);
      const stage = gro ? { stage: Buffer.alloc(GRO_STAGE_DATAGRAMS * GRO_STAGE_SLOT), state: new Int32Array(3 + 3 * GRO_STAGE_DATAGRAMS) } : null;
      this.addSource({ kind: 'udp', fd, gro: stage });
    }
    this.addSource({ kind: 'gre', fd: this.io.rawOpen(PROTO_GRE) });
    const rawFd = this.io.rawSendOpen();
    this.socketFds.push(rawFd);
    this.fabricPort = new FabricPort(this.io, rawFd, { underlayIp: address, gso: this.underlay.gso });
    this.dp.vifs.get(this.fabricVif)!.port = this.fabricPort;
  }

  private addSource(source: Source): number {
    let tag = this.sources.indexOf(null);
    if (tag < 0) {
      tag = this.sources.length;
      this.sources.push(source);
    } else {
      this.sources[tag] = source;
    }
    this.io.epollAdd(this.epoll, source.fd, tag);
    if (source.kind !== 'pod') this.socketFds.push(source.fd);
    return tag;
  }

  /**
   * Opens the vif's port: the pod's veth (AF_XDP, else AF_PACKET) or TAP
   * made in its namespace, an existing interface (`attach`), or a TAP of
   * the worker's namespace. Returns the vif's name for it (the kernel's
   * choice for a TAP named '').
   */
  private openPort(vif: number, name: string, pod?: PodPortConfig, attach?: string): string {
    let open: Omit<OpenPort, 'tag'>;
    let actualName = name;
    if (attach !== undefined) {
      open = openInterfacePort(this.io, attach);
    } else if (pod && (pod.kind ?? this.defaultKind) === 'veth') {
      open = (pod.existing ? this.reattachVeth(name) : undefined) ?? this.createVeth(pod, name);
    } else {
      const tap = pod ? this.io.podTapOpen({ ...pod, reattach: pod.existing === true }) : this.io.tapOpen(name);
      open = { port: new TapPort(this.io, tap.fd, pod !== undefined) };
      if (!pod) actualName = tap.name;
    }
    this.dp.vifs.get(vif)!.port = open.port;
    const tag = this.addSource({ kind: 'pod', fd: open.port.fd, vif, port: open.port, feedsUnderlay: false });
    this.portOf.set(vif, { ...open, tag });
    return actualName;
  }

  /** The host end of a veth pair a previous daemon made (its XDP link went with that process), or undefined when it is gone. */
  private reattachVeth(name: string): Omit<OpenPort, 'tag'> | undefined {
    try {
      return { ...openInterfacePort(this.io, name), createdVeth: name };
    } catch {
      return undefined;
    }
  }

  private createVeth(pod: PodPortConfig, name: string): Omit<OpenPort, 'tag'> {
    this.io.podVethOpen({ ...pod, hostName: name });
    try {
      return { ...openInterfacePort(this.io, name), createdVeth: name };
    } catch (error) {
      this.io.linkDelete(name);
      throw error;
    }
  }

  /** Closes the vif's port and releases what it holds (BPF links, sockets, the veth it made). */
  private closePort(vif: number): void {
    const open = this.portOf.get(vif);
    if (!open) return;
    this.io.epollDel(this.epoll, open.port.fd);
    if (open.port instanceof TapPort) open.port.close(!this.keepDevices);
    else open.port.close();
    if (open.createdVeth !== undefined && !this.keepDevices) this.io.linkDelete(open.createdVeth);
    this.sources[open.tag] = null;
    this.portOf.delete(vif);
  }

  private serveRequests(): void {
    for (;;) {
      const message = receiveMessageOnPort(this.start.requests);
      if (message === undefined) return;
      const { id, request } = message.message as { id: number; request: WorkerRequest };
      const answer = this.answer(request);
      const response: WorkerResponse = answer.ok ? { id, ok: true, result: answer.result } : { id, ok: false, error: answer.error };
      this.start.requests.postMessage(response);
    }
  }

  private answer(request: WorkerRequest): BatchAnswer {
    try {
      return { ok: true, result: this.handle(request) };
    } catch (error) {
      return { ok: false, error: error instanceof Error ? error.message : String(error) };
    }
  }

  private handle(request: WorkerRequest): unknown {
    switch (request.op) {
      case 'batch':
        return request.requests.map((each) => this.answer(each));
      case 'add-port':
        return this.addPort(request.port);
      case 'delete-port':
        return this.deletePort(request.vif);
      case 'set-floating-ips': {
        const vif = this.dp.vifs.get(request.vif);
        if (!vif) throw new Error(`vif ${request.vif} does not exist`);
        vif.floatingIps = request.floatingIps;
        return null;
      }
      case 'set-route':
        return this.programmer.setRoute(request.vrf, request.prefix, request.nexthops);
      case 'delete-route':
        return this.programmer.deleteRoute(request.vrf, request.prefix);
      case 'set-policies': {
        this.dp.policy.setRules(request.rules);
        return null;
      }
      case 'stats':
        return this.stats();
      case 'flows':
        return describeFlows(this.dp);
      case 'introspect': {
        const answer = introspect(this.dp, this.pipeline, request.query);
        // The worker's V8 heap is its own: only this thread can read it (the soak samples it).
        if (request.query.what === 'summary') {
          return { ...(answer as object), dataplaneHeapUsedBytes: getHeapStatistics().used_heap_size, dataplaneLongestTurnMs: Math.round(this.longestTurnMs * 10) / 10 };
        }
        if (request.query.what !== 'vifs') return answer;
        // The port's I/O is the worker's to tell (the dataplane knows only the vif).
        return (answer as Array<{ id: number }>).map((vif) => {
          const { io, ioNote } = this.portStats(vif.id);
          return { ...vif, io: io ?? null, ioNote: ioNote ?? null };
        });
      }
      case 'clear-drops':
        this.dp.drops.clear();
        this.pipeline.vrfDrops.fill(0);
        return null;
      case 'trace':
        return this.trace(request.packet);
      case 'monitor-drops':
        this.pipeline.observers.dropRing = request.enable ? new SharedRing(this.start.dropRing, DROP_RECORD_SIZE) : null;
        return null;
      case 'capture': {
        // "*": every vif, also those added while the capture runs (vrouter capture).
        const vif = request.vif === '*' ? null : this.dp.vifs.find(request.vif);
        if (vif === undefined) throw new Error(`no vif ${request.vif}`);
        const observers = this.pipeline.observers;
        observers.captureRing = request.enable ? new SharedRing(this.start.captureRing, CAPTURE_RECORD_SIZE) : null;
        observers.capturing.fill(request.enable && vif === null ? 1 : 0);
        if (request.enable && vif !== null) observers.capturing[vif.id] = 1;
        return vif === null ? null : { vif: vif.id, name: vif.name, kind: vif.kindName };
      }
      case 'control-routes':
        for (const update of request.updates) {
          if (update.nexthops.length === 0) this.programmer.deleteRoute(update.vrf, update.prefix);
          else this.programmer.setRoute(update.vrf, update.prefix, update.nexthops);
        }
        return null;
      case 'control-configure-port':
        return this.configureControlledPort(request.port, request.config, request.tapName, request.pod, request.attach);
      case 'control-unconfigure-port': {
        const tap = this.tapOfPort.get(request.port.id);
        if (tap) this.closePort(tap.vif);
        this.tapOfPort.delete(request.port.id);
        this.controlled.unconfigurePort(request.port);
        return null;
      }
      case 'control-local-composite':
        this.controlled.setLocalComposite(request.label, request.portIds);
        return null;
      case 'export-flows':
        return exportFlows(this.dp, request.fromPair, EXPORT_SLICE_PAIRS);
      case 'import-flows':
        return importFlows(this.dp, request.pairs, this.pipeline.now);
      case 'delete-device':
        this.io.linkDelete(request.name);
        return null;
      case 'shutdown':
        this.running = false;
        this.keepDevices = request.keepDevices === true;
        return null;
    }
  }

  /**
   * The control node's configuration of a port: the vif (re-created when
   * its VN or address changes) and, the first time, its TAP device.
   */
  private configureControlledPort(port: LocalPort, config: PortConfig, tapName: string, pod: PodPortConfig | undefined, attach: { interface: string } | undefined): { vif: number } {
    this.controlled.configurePort(port, config);
    const vif = this.controlled.vifOf(port.id);
    const tap = this.tapOfPort.get(port.id);
    if (!tap) {
      try {
        this.openPort(vif, tapName, pod, attach?.interface);
      } catch (error) {
        this.controlled.unconfigurePort(port);
        throw error;
      }
      this.tapOfPort.set(port.id, { name: tapName, vif });
    } else if (tap.vif !== vif) {
      // A new vif for the same pod: the open port moves over to it.
      const attached = this.portOf.get(tap.vif);
      if (attached) {
        this.portOf.delete(tap.vif);
        this.portOf.set(vif, attached);
        this.sources[attached.tag] = { kind: 'pod', fd: attached.port.fd, vif, port: attached.port, feedsUnderlay: false };
        this.dp.vifs.get(vif)!.port = attached.port;
      }
      tap.vif = vif;
    }
    return { vif };
  }

  /** Runs a synthetic packet through the real steps without sending it. */
  private trace(packet: SyntheticPacket): string[] {
    const slot = this.pool.alloc();
    if (slot < 0) throw new Error('no free packet slot');
    const lines: string[] = [];
    try {
      const vif = writeSyntheticPacket(this.dp, this.pool, slot, packet);
      lines.push(`trace: in vif ${vif} (${this.dp.vifs.get(vif)!.name}), ${this.pool.length[slot]} bytes`);
      this.pipeline.traceOnly(slot, ETHERNET_INPUT, (line) => lines.push(line));
    } finally {
      this.pool.free(slot);
    }
    return lines;
  }

  private addPort(port: PortRequest): PortResult {
    const vrfId = this.programmer.vrf(port.vrf);
    const vrf = this.dp.vrfs.get(vrfId)!;
    if (port.subnet !== undefined) {
      const [address, length] = port.subnet.split('/');
      const subnet = { prefix: ipFromString(address), length: Number(length) };
      if (!vrf.subnets.some((known) => known.prefix === subnet.prefix && known.length === subnet.length)) vrf.subnets.push(subnet);
    }
    if (port.gateway !== undefined) vrf.gateway = ipFromString(port.gateway);
    const ip = ipFromString(port.ip);
    if (vrf.routes.get(ip, 32) >= 0) throw new Error(`${port.ip} already has a route in ${port.vrf}`);
    let vif = port.vif !== undefined && !this.dp.vifs.get(port.vif) ? port.vif : 1;
    while (this.dp.vifs.get(vif)) vif++;
    let nexthop = 1;
    while (this.dp.nexthops.exists(nexthop)) nexthop++;
    let label = port.label ?? 16;
    if (port.label === undefined) while (this.dp.labels.lookup(label) >= 0) label++;
    else if (this.dp.labels.lookup(label) >= 0) throw new Error(`label ${label} is in use`);
    const mac = parseMac(port.mac);
    const ip6 = port.ip6 === undefined ? null : ip6FromString(port.ip6);
    if (ip6 !== null && vrf.routes6.get(ip6, 128) >= 0) throw new Error(`${port.ip6} already has a route in ${port.vrf}`);
    const floatingIps6 = (port.floatingIps6 ?? []).map((fip) => ({ ip: ip6FromString(fip.ip), portMap: fip.portMap }));
    this.dp.addVif({ id: vif, kind: 'virtual', name: port.tapName, mac, ip, vrf: vrfId, mtu: port.mtu, floatingIps: port.floatingIps ?? [], ip6, floatingIps6 });
    try {
      const tapName = this.openPort(vif, port.tapName, port.pod, port.attach?.interface);
      this.dp.setNexthop(nexthop, { kind: 'encap', vif, mac });
      this.dp.setLabel(label, nexthop);
      this.dp.addRoute(vrfId, ip, 32, nexthop);
      if (ip6 !== null) {
        this.dp.addRoute6(vrfId, ip6, 128, nexthop);
        // The port is up: tell the pod its IPv6 default router now rather than when it solicits one.
        this.pipeline.advertiseRouter(vif);
      }
      return { vif, label, tapName };
    } catch (error) {
      this.deletePort(vif);
      throw error;
    }
  }

  private deletePort(vifId: number): null {
    const vif = this.dp.vifs.get(vifId);
    if (!vif) throw new Error(`vif ${vifId} does not exist`);
    this.closePort(vifId);
    const vrf = this.dp.vrfs.get(vif.vrf);
    for (const id of this.dp.nexthops.ids()) {
      if (this.dp.nexthops.vif[id] !== vifId) continue;
      for (const { label, nexthop } of this.dp.labels.entries()) if (nexthop === id) this.dp.deleteLabel(label);
      if (vrf && vrf.routes.get(vif.ip, 32) === id) this.dp.deleteRoute(vrf.id, vif.ip, 32);
      if (vrf && vif.ip6 !== null && vrf.routes6.get(vif.ip6, 128) === id) this.dp.deleteRoute6(vrf.id, vif.ip6, 128);
      if (this.dp.nexthops.refCount[id] === 0) this.dp.deleteNexthop(id);
    }
    this.dp.removeVif(vifId);
    return null;
  }

  private stats() {
    const drops: Record<string, number> = {};
    DROP_REASONS.forEach((reason, i) => {
      if (this.dp.drops.counts[i] > 0) drops[reason] = this.dp.drops.counts[i];
    });
    return {
      received: this.pipeline.received,
      transmitted: this.pipeline.transmitted,
      generated: this.dp.generated,
      held: this.pipeline.held,
      flows: this.dp.flows.activePairs,
      drops,
      vifs: [...this.dp.vifs].map((vif) => ({
        id: vif.id,
        name: vif.name,
        kind: vif.kindName,
        vrf: vif.vrf,
        ...vif.counters(),
        ...this.portStats(vif.id),
      })),
      vrfs: [...this.dp.vrfs].map((vrf) => ({ id: vrf.id, name: vrf.name, routes: vrf.routes.size })),
      underlay: this.underlayStats(),
    };
  }

  /** How tunnel packets left and arrived: the GSO path's sockets and frames, the kernel's GSO sends and GRO buffers. */
  private underlayStats() {
    if (this.fabricPort === null) return null;
    const { gsoSends, gsoSegments, groBuffers, groSegments } = this.io.ioStats();
    const { gso, gro, coalesceMs } = this.underlay;
    return { gso, gro, coalesceUs: Math.round(coalesceMs * 1000), ...this.fabricPort.stats(), gsoSends, gsoSegments, groBuffers, groSegments, dropped: this.fabricPort.dropped };
  }

  /** The I/O of a vif's port, why it is not AF_XDP, and the kernel's counters for it. */
  private portStats(vif: number): { txDropped: number; io?: PortIo; ioNote?: string; ioCounters?: Record<string, number> } {
    const open = this.portOf.get(vif);
    if (!open) return { txDropped: 0 };
    const port = open.port;
    const ioCounters = port instanceof TapPort ? undefined : { ...port.stats() };
    return { txDropped: port.dropped, io: port.kind, ioNote: open.fallback, ioCounters };
  }

  private close(): void {
    const teardown = new PortTeardown(this.io);
    for (const open of this.portOf.values()) {
      open.port.closeInto(teardown, !this.keepDevices);
      if (open.createdVeth !== undefined && !this.keepDevices) teardown.deleteDevice(open.createdVeth);
    }
    this.portOf.clear();
    teardown.run();
    this.fabricPort?.close();
    for (const fd of this.socketFds) this.io.close(fd);
    this.io.close(this.epoll);
  }
}

if (!isMainThread && parentPort) {
  const start = workerData as WorkerStart;
  try {
    const worker = new DataplaneWorker(start);
    const port = parentPort;
    worker.onFirstForward = (at) => {
      const cpu = process.cpuUsage();
      port.postMessage({ firstForward: { at, cpuMs: Math.round((cpu.user + cpu.system) / 1000) } });
    };
    parentPort.postMessage({ ready: true, timeline: worker.timeline });
    worker.run();
    parentPort.postMessage({ stopped: true });
  } catch (error) {
    parentPort.postMessage({ failed: error instanceof Error ? error.message : String(error) });
  }
}
