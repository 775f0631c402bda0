/**
 * The introspect server of `vrouter run`: what OpenContrail's agent
 * introspect (port 8085) and its vrouter utilities show, as JSON, a page
 * and Prometheus metrics. It listens on 127.0.0.1:8085 unless told
 * otherwise (`vrouter run --introspect <host:port>`), never on every
 * interface unless asked.
 *
 *   GET  /                          the page (src/daemon/web: index.html, app.js, style.css)
 *   GET  /api                       this list
 *   GET  /api/summary               node, packet counters, flows, uptime, heap per thread
 *   GET  /api/vifs[/<id|name>]      interfaces with counters, rates and the pod behind each
 *   GET  /api/ports                 pods (ports added through the port API)
 *   GET  /api/vrfs                  VRFs (one per VN)
 *   GET  /api/routes?vrf=&prefix=   routes of a VRF, with their nexthops; prefix filters
 *   GET  /api/nexthops[/<id>]       nexthops
 *   GET  /api/mpls                  the MPLS label table (ILM)
 *   GET  /api/flows?vrf=&ip=&port=&protocol=&offset=&limit=
 *   GET  /api/drops                 drop counters by reason; POST /api/drops/clear zeroes them
 *   GET  /api/vn-traffic            per VN: packets/bytes in and out, flows, drops, rates
 *   GET  /api/control-sessions      control node sessions (state, peer, routes, last error)
 *   POST /api/trace                 a synthetic packet through the live pipeline (not sent)
 *   GET  /api/monitor/drops         dropped packets as they happen (NDJSON, chunked)
 *   GET  /api/capture/<vif>?format=pcap|ndjson   what crosses a vif (chunked); vif "*": every vif, ndjson only
 *   GET  /metrics                   Prometheus text format
 *   GET  /Snh_ItfReq                the agent's Sandesh XML list of interfaces (sandesh-itf.ts)
 *
 * Reading never stalls the packet path: each table read is one request the
 * worker serves between two batches, identical reads within CACHE_MS share
 * one answer, and rates come from two samples of the counters (the previous
 * request's, or a short second sample when there is none recent). The
 * streams drain the worker's shared rings every 50 ms only while a client is
 * connected; the worker records nothing while nobody watches.
 *
 * POSTs must carry `content-type: application/json` (a cross-site page
 * cannot send that without a CORS preflight, which this server never
 * grants) and, on a loopback address, the Host header must name the
 * loopback (no DNS rebinding).
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { getHeapStatistics } from 'node:v8';
import { DROP_REASONS } from '../dataplane/drop-reasons';
import type { SharedRing } from '../dataplane/io/shared-ring';
import type { WorkerRequest } from './worker';
import type { IntrospectQuery } from '../dataplane/introspect';
import { CAPTURE_HEADER_BYTES, CAPTURE_TX, decodeDropEvent } from '../dataplane/observers';
import { ipToString } from '../dataplane/protocols/ipv4';
import { ip6FromString } from '../dataplane/protocols/ipv6';
import type { SyntheticPacket } from '../dataplane/synthetic-packet';
import type { Logger } from './log';
import { SandeshInterface, filterInterfaces, itfResponse } from './sandesh-itf';

/** What the server needs of the dataplane handle. */
export interface IntrospectDataplane {
  request<T = unknown>(request: WorkerRequest): Promise<T>;
  readonly dropRing: SharedRing;
  readonly captureRing: SharedRing;
}

/** A pod port as the daemon records it. */
export interface IntrospectPort {
  id: string;
  vif: number;
  name?: string;
  namespace?: string;
  netns?: string;
  labels?: Record<string, string>;
  vn?: string;
  ip?: string;
  label?: number;
  tapName?: string;
  ifname?: string;
}

/**
 * A control session as the control client reports it. Every field is
 * optional: the server shows what it gets.
 */
export interface ControlSessionInfo {
  peer?: string;
  state?: string;
  routesReceived?: number;
  routesSent?: number;
  lastError?: string | null;
  [field: string]: unknown;
}

export interface IntrospectServerOptions {
  host: string;
  port: number;
  dataplane: IntrospectDataplane;
  log: Logger;
  /** The node's name, for the page title. */
  node?: string;
  /** The pods behind the vifs. */
  ports?: () => IntrospectPort[];
  /** Control node sessions; default none. */
  controlSessions?: () => unknown[];
  /** The interfaces GET /Snh_ItfReq lists (the agent's Sandesh answer); default none. */
  sandeshInterfaces?: () => SandeshInterface[];
  /** Directory of the page's static files (default: src/daemon/web of this package). */
  webRoot?: string;
}

export interface VifJson {
  id: number;
  name: string;
  kind: string;
  mac: string;
  ip: string | null;
  ip6: string | null;
  vrf: number;
  vrfName: string | null;
  mtu: number;
  floatingIps: Array<{ ip: string; portMap: unknown[] }>;
  rxPackets: number;
  rxBytes: number;
  txPackets: number;
  txBytes: number;
  /** A pod port's I/O (tap, af_xdp, af_packet), and why AF_XDP was not used when it fell back. */
  io?: string | null;
  ioNote?: string | null;
}

export interface NexthopJson {
  id: number;
  kind: string;
  vif: number;
  mac: string;
  dip: string | null;
  sip: string | null;
  label: number;
  encap: string;
  members: number[] | null;
  vn: number;
  refCount: number;
}

interface VrfJson {
  id: number;
  name: string;
  subnets: string[];
  gateway: string | null;
  routes: number;
  subnets6: string[];
  gateway6: string | null;
  routes6: number;
}

/** One route of GET /api/routes (what `vrouter rt --dump <vrf> --json` prints). */
export interface RouteJson {
  prefix: string;
  nexthop: number;
  kind: string | null;
  label: number | null;
  vif: number | null;
  mac: string | null;
  /** A tunnel route's node. */
  dip: string | null;
  encap: string | null;
  /** An ECMP (composite) route's members; null otherwise. */
  members: Array<{ nexthop: number; kind: string | null; dip: string | null; label: number | null; vif: number | null }> | null;
}

export interface RouteTableJson {
  vrf: number;
  vrfName: string;
  /** inet (IPv4) or inet6. */
  family: 'inet' | 'inet6';
  /** The prefix asked for, when one was. */
  prefix?: string;
  routes: RouteJson[];
}

export interface VnTrafficJson {
  vrf: number;
  vn: string;
  packetsIn: number;
  bytesIn: number;
  packetsOut: number;
  bytesOut: number;
  flows: number;
  drops: number;
}

interface SummaryJson {
  node: string;
  underlayIp: string;
  received: number;
  transmitted: number;
  generated: number;
  held: number;
  dropped: number;
  flows: number;
  flowCapacity: number;
  flowEvictions: number;
  dataplaneHeapUsedBytes: number;
  /** The longest the dataplane worker went from one epoll wait to the next since start. */
  dataplaneLongestTurnMs: number;
}

/** Identical table reads within this window share one worker request. */
const CACHE_MS = 200;
/** Rates need samples at least this far apart (the page polls once a second). */
const RATE_MIN_INTERVAL_MS = 900;
/** An older sample would average over a long past: take a fresh pair instead (a rate is what happens now). */
const RATE_STALE_MS = 3_000;
/** The gap between the two samples of a fresh pair. */
const RATE_WARMUP_MS = 500;
/** How often the streams drain the shared rings while a client is connected. */
const DRAIN_INTERVAL_MS = 50;
/** A stream client further behind than this loses records, not the server its memory. */
const CLIENT_BACKLOG_BYTES = 8 * 1024 * 1024;
const MAX_FLOW_PAGE = 1000;
const PROTOCOL_NUMBERS: Record<string, number> = { icmp: 1, tcp: 6, udp: 17, gre: 47, icmp6: 58 };
const PROTOCOL_NAMES: Record<number, string> = { 1: 'icmp', 6: 'tcp', 17: 'udp', 47: 'gre' };
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** An IPv6 address, with a /0-/128 length when `withLength` allows one. */
function validPrefix6(text: string, withLength = true): boolean {
  const [address, length, extra] = text.split('/');
  if (extra !== undefined || (length !== undefined && (!withLength || !/^\d{1,3}$/.test(length) || Number(length) > 128))) return false;
  try {
    ip6FromString(address);
    return true;
  } catch {
    return false;
  }
}
const STATIC_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

const ENDPOINTS = [
  'GET /api/summary',
  'GET /api/vifs',
  'GET /api/vifs/<id|name>',
  'GET /api/ports',
  'GET /api/vrfs',
  'GET /api/routes?vrf=<name|id>&prefix=<a.b.c.d/len>',
  'GET /api/nexthops',
  'GET /api/nexthops/<id>',
  'GET /api/mpls',
  'GET /api/flows?vrf=<name|id>&ip=<a.b.c.d>&port=<n>&protocol=<tcp|udp|icmp|n>&offset=<n>&limit=<n>',
  'GET /api/drops',
  'POST /api/drops/clear',
  'GET /api/vn-traffic',
  'GET /api/control-sessions',
  'POST /api/trace {vif, protocol, src, dst, srcPort?, dstPort?, ttl?, node?, label?}',
  'GET /api/monitor/drops (NDJSON stream)',
  'GET /api/capture/<vif>?format=pcap|ndjson (stream; <vif> "*": every vif, ndjson)',
  'GET /metrics',
];

/** A request refused, with its HTTP status. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The directory of the page: next to the compiled file when copied there, else the source tree's. */
function defaultWebRoot(): string {
  const candidates = [path.join(__dirname, 'web'), path.resolve(__dirname, '..', '..', '..', 'src', 'daemon', 'web')];
  return candidates.find((candidate) => fs.existsSync(path.join(candidate, 'index.html'))) ?? candidates[1];
}

/**
 * Per-second rates from two samples of monotonic counters, keyed by object
 * (a vif or a VN). A counter that went down (the object was recreated)
 * gives 0.
 */
export class RateTracker {
  private base: { at: number; values: Map<string, number[]> } | null = null;
  private rates = new Map<string, number[]>();
  private computed = false;

  /** True when no recent sample exists: the caller should take two, RATE_WARMUP_MS apart. */
  needsWarmup(now: number): boolean {
    return this.base === null || now - this.base.at > RATE_STALE_MS;
  }

  /** Feeds a sample; returns the rates per key (null before there are two samples). */
  update(now: number, values: Map<string, number[]>): Map<string, number[]> | null {
    if (this.base === null || now - this.base.at > RATE_STALE_MS) {
      this.base = { at: now, values };
      this.computed = false;
      return null;
    }
    const elapsed = now - this.base.at;
    if (elapsed >= RATE_MIN_INTERVAL_MS || (!this.computed && elapsed >= RATE_WARMUP_MS / 2)) {
      const rates = new Map<string, number[]>();
      for (const [key, current] of values) {
        const before = this.base.values.get(key);
        rates.set(
          key,
          current.map((value, i) => (before === undefined || value < before[i] ? 0 : ((value - before[i]) * 1000) / elapsed)),
        );
      }
      this.rates = rates;
      this.computed = true;
      this.base = { at: now, values };
    }
    return this.computed ? this.rates : null;
  }
}

/** Prometheus label values: backslash, double quote and newline escaped. */
function labelValue(value: unknown): string {
  return String(value).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

class MetricsText {
  private readonly lines: string[] = [];

  family(name: string, type: 'counter' | 'gauge', help: string, samples: Array<{ labels?: Record<string, unknown>; value: number }>): void {
    this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const sample of samples) {
      const labels = Object.entries(sample.labels ?? {})
        .filter(([, value]) => value !== undefined && value !== null)
        .map(([key, value]) => `${key}="${labelValue(value)}"`);
      this.lines.push(`${name}${labels.length ? `{${labels.join(',')}}` : ''} ${Number.isFinite(sample.value) ? sample.value : 0}`);
    }
  }

  toString(): string {
    return this.lines.join('\n') + '\n';
  }
}

/** A 24-byte classic pcap file header: little endian, microseconds, Ethernet. */
function pcapFileHeader(): Buffer {
  const header = Buffer.alloc(24);
  header.writeUInt32LE(0xa1b2c3d4, 0);
  header.writeUInt16LE(2, 4);
  header.writeUInt16LE(4, 6);
  header.writeUInt32LE(65535, 16);
  header.writeUInt32LE(1, 20);
  return header;
}

function ipChecksum(header: Buffer): number {
  let sum = 0;
  for (let i = 0; i < header.length; i += 2) sum += header.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

interface CaptureTarget {
  vif: number;
  name: string;
  kind: string;
  mac: string;
  ip: string | null;
}

/** One captured frame, as the streams send it. */
interface CapturedFrame {
  seconds: number;
  microseconds: number;
  direction: 'rx' | 'tx';
  frame: Buffer;
}

/**
 * A frame as the worker's tap saw it, made a whole Ethernet frame. The
 * fabric receives tunnels through sockets: for MPLS over UDP the kernel has
 * removed Ethernet, IPv4 and UDP (the record starts at the label), for GRE
 * the Ethernet header (it starts at the outer IPv4 header). Those headers
 * are put back with what is known: this node's MAC and address, the
 * sending node's address (from the socket), port 6635.
 */
export function captureToEthernet(target: CaptureTarget, direction: 'rx' | 'tx', bytes: Uint8Array, sender = 0): Buffer {
  const frame = Buffer.from(bytes);
  if (target.kind !== 'fabric' || direction !== 'rx') return frame;
  const mac = Buffer.from(target.mac.split(':').map((octet) => parseInt(octet, 16)));
  const ethernet = Buffer.alloc(14);
  mac.copy(ethernet, 0);
  ethernet.writeUInt16BE(0x0800, 12);
  const looksIpv4 = frame.length >= 20 && frame[0] === 0x45 && frame[9] === 47 && frame.readUInt16BE(2) === frame.length;
  if (looksIpv4) return Buffer.concat([ethernet, frame]);
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(20 + 8 + frame.length, 2);
  ip[8] = 64;
  ip[9] = 17;
  const local = (target.ip ?? '0.0.0.0').split('.').map(Number);
  for (let i = 0; i < 4; i++) ip[16 + i] = local[i] ?? 0;
  ip.writeUInt32BE(sender >>> 0, 12);
  ip.writeUInt16BE(ipChecksum(ip), 10);
  const udp = Buffer.alloc(8);
  udp.writeUInt16BE(6635, 2);
  udp.writeUInt16BE(8 + frame.length, 4);
  return Buffer.concat([ethernet, ip, udp, frame]);
}

/**
 * One consumer of a shared ring, for as long as clients are connected: the
 * first client enables the worker's side, the last one to leave disables
 * it. Changes are serialised, so a client arriving while the previous one
 * leaves waits for that.
 */
class RingSession<Client> {
  readonly clients = new Set<Client>();
  private timer: NodeJS.Timeout | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private overruns = 0;

  constructor(
    private readonly ring: SharedRing,
    private readonly hooks: {
      enable(client: Client): Promise<void>;
      disable(): Promise<void>;
      /** May refuse a client while running (throw an HttpError). */
      admit?(client: Client): void;
      record(record: Uint8Array): void;
      lost(count: number): void;
    },
  ) {}

  get running(): boolean {
    return this.timer !== null;
  }

  attach(client: Client): Promise<void> {
    return this.serial(async () => {
      if (this.timer === null) {
        this.ring.drain(() => undefined); // whatever a previous session left
        await this.hooks.enable(client);
        this.overruns = this.ring.overruns;
        this.timer = setInterval(() => this.pump(), DRAIN_INTERVAL_MS);
      } else {
        this.hooks.admit?.(client);
      }
      this.clients.add(client);
    });
  }

  detach(client: Client): Promise<void> {
    if (!this.clients.delete(client)) return Promise.resolve();
    return this.serial(async () => {
      if (this.clients.size > 0 || this.timer === null) return;
      clearInterval(this.timer);
      this.timer = null;
      await this.hooks.disable();
      this.ring.drain(() => undefined);
    });
  }

  private pump(): void {
    this.ring.drain((record) => this.hooks.record(record));
    const overruns = this.ring.overruns;
    if (overruns !== this.overruns) {
      this.hooks.lost((overruns - this.overruns) >>> 0);
      this.overruns = overruns;
    }
  }

  private serial(step: () => Promise<void>): Promise<void> {
    const next = this.queue.then(step);
    this.queue = next.catch(() => undefined);
    return next;
  }
}

interface StreamClient {
  response: http.ServerResponse;
  format: 'ndjson' | 'pcap';
  lost: number;
  /** The vif a capture client asks for. */
  target?: CaptureTarget;
  /** Every vif (by id), for a client of /api/capture/*. */
  targets?: Map<number, CaptureTarget>;
}

function send(client: StreamClient, chunk: string | Buffer): void {
  if (client.response.writableLength > CLIENT_BACKLOG_BYTES) {
    client.lost++;
    return;
  }
  client.response.write(chunk);
}

export class IntrospectServer {
  readonly server: http.Server;
  private readonly options: IntrospectServerOptions;
  private readonly webRoot: string;
  private readonly startedAt = Date.now();
  private readonly cache = new Map<string, { at: number; value: Promise<unknown> }>();
  private readonly vifRates = new RateTracker();
  private readonly vnRates = new RateTracker();
  private readonly allowedHosts: Set<string> | null;
  private readonly dropMonitor: RingSession<StreamClient>;
  private readonly capture: RingSession<StreamClient>;
  private captureTarget: CaptureTarget | null = null;
  /** While every vif is captured: the vifs by id. */
  private captureAll: Map<number, CaptureTarget> | null = null;
  /** Vif names for the drop monitor, refreshed while it runs. */
  private vifNames = new Map<number, string>();
  private vrfNames = new Map<number, string>();
  private namesAt = 0;

  constructor(options: IntrospectServerOptions) {
    this.options = options;
    this.webRoot = options.webRoot ?? defaultWebRoot();
    const host = options.host.replace(/^\[(.*)\]$/, '$1');
    const everywhere = host === '0.0.0.0' || host === '::' || host === '';
    this.allowedHosts = everywhere ? null : new Set(['127.0.0.1', 'localhost', '::1', '[::1]', host, host.includes(':') ? `[${host}]` : host]);
    this.server = http.createServer((request, response) => this.serve(request, response));
    const dataplane = options.dataplane;
    this.dropMonitor = new RingSession<StreamClient>(dataplane.dropRing, {
      enable: async () => {
        await dataplane.request({ op: 'monitor-drops', enable: true });
        options.log.info({ component: 'introspect' }, 'drop monitor started');
      },
      disable: async () => {
        await dataplane.request({ op: 'monitor-drops', enable: false });
        options.log.info({ component: 'introspect' }, 'drop monitor stopped');
      },
      record: (record) => this.broadcastDrop(record),
      lost: (count) => this.broadcast(this.dropMonitor, JSON.stringify({ type: 'lost', count }) + '\n'),
    });
    this.capture = new RingSession<StreamClient>(dataplane.captureRing, {
      enable: async (client) => {
        const target = client.target!;
        await dataplane.request({ op: 'capture', vif: client.targets ? '*' : String(target.vif), enable: true });
        this.captureTarget = target;
        this.captureAll = client.targets ?? null;
        options.log.info({ component: 'introspect', vif: target.vif, name: target.name }, 'vif capture started');
      },
      admit: (client) => {
        const wanted = client.target!;
        const running = this.captureTarget;
        if (running !== null && (running.vif !== wanted.vif || (this.captureAll === null) !== (client.targets === undefined))) {
          throw new HttpError(409, `vif ${running.vif} (${running.name}) is being captured: one vif at a time`);
        }
      },
      disable: async () => {
        const target = this.captureTarget;
        await dataplane.request({ op: 'capture', vif: this.captureAll ? '*' : String(target?.vif ?? 0), enable: false }).catch(() => undefined);
        this.captureTarget = null;
        this.captureAll = null;
        options.log.info({ component: 'introspect', vif: target?.vif, name: target?.name }, 'vif capture stopped');
      },
      record: (record) => this.broadcastFrame(record),
      lost: (count) => {
        for (const client of this.capture.clients) if (client.format === 'ndjson') send(client, JSON.stringify({ type: 'lost', count }) + '\n');
      },
    });
  }

  address(): AddressInfo {
    return this.server.address() as AddressInfo;
  }

  listen(): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.options.port, this.options.host.replace(/^\[(.*)\]$/, '$1'), () => {
        this.server.off('error', reject);
        resolve(this.address());
      });
    });
  }

  /** Ends the streams (their worker side is disabled) and stops listening. */
  async close(): Promise<void> {
    for (const session of [this.dropMonitor, this.capture]) {
      for (const client of [...session.clients]) {
        client.response.end();
        await session.detach(client);
      }
    }
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  // --- reading the worker -------------------------------------------------

  /** One table read; identical reads within CACHE_MS share the answer. */
  private query<T>(query: IntrospectQuery, fresh = false): Promise<T> {
    const key = JSON.stringify(query);
    const now = Date.now();
    const cached = this.cache.get(key);
    if (!fresh && cached && now - cached.at < CACHE_MS) return cached.value as Promise<T>;
    const value = this.options.dataplane.request<T>({ op: 'introspect', query });
    this.cache.set(key, { at: now, value });
    value.catch(() => this.cache.delete(key));
    if (this.cache.size > 256) for (const [oldKey, entry] of this.cache) if (now - entry.at >= CACHE_MS) this.cache.delete(oldKey);
    return value;
  }

  private ports(): IntrospectPort[] {
    try {
      return this.options.ports?.() ?? [];
    } catch {
      return [];
    }
  }

  private controlSessions(): ControlSessionInfo[] {
    const sessions = this.options.controlSessions?.() ?? [];
    return sessions.map((session) => (typeof session === 'object' && session !== null ? (session as ControlSessionInfo) : { state: String(session) }));
  }

  private podOf(vif: number): { id: string; name: string | null; namespace: string | null; netns: string | null; labels: Record<string, string> } | null {
    const port = this.ports().find((candidate) => candidate.vif === vif);
    if (!port) return null;
    return { id: port.id, name: port.name ?? null, namespace: port.namespace ?? null, netns: port.netns ?? null, labels: port.labels ?? {} };
  }

  /** Takes a second sample when the tracker has no recent one, so the first answer has rates too. */
  private async sampled<T>(tracker: RateTracker, read: (fresh: boolean) => Promise<T[]>, key: (item: T) => string, values: (item: T) => number[]) {
    const toMap = (items: T[]) => new Map(items.map((item) => [key(item), values(item)]));
    if (tracker.needsWarmup(Date.now())) {
      tracker.update(Date.now(), toMap(await read(true)));
      await sleep(RATE_WARMUP_MS);
      const items = await read(true);
      return { items, rates: tracker.update(Date.now(), toMap(items)) };
    }
    const items = await read(false);
    return { items, rates: tracker.update(Date.now(), toMap(items)) };
  }

  async vifs() {
    const { items, rates } = await this.sampled(
      this.vifRates,
      (fresh) => this.query<VifJson[]>({ what: 'vifs' }, fresh),
      (vif) => `${vif.id}/${vif.name}`,
      (vif) => [vif.rxPackets, vif.rxBytes, vif.txPackets, vif.txBytes],
    );
    const ports = this.ports();
    return items.map((vif) => {
      const rate = rates?.get(`${vif.id}/${vif.name}`);
      const port = ports.find((candidate) => candidate.vif === vif.id);
      return {
        ...vif,
        rates: rate ? { rxPps: rate[0], rxBitsPerSecond: rate[1] * 8, txPps: rate[2], txBitsPerSecond: rate[3] * 8 } : null,
        pod: port ? { id: port.id, name: port.name ?? null, namespace: port.namespace ?? null, netns: port.netns ?? null, labels: port.labels ?? {} } : null,
      };
    });
  }

  async vnTraffic() {
    const { items, rates } = await this.sampled(
      this.vnRates,
      (fresh) => this.query<VnTrafficJson[]>({ what: 'vn-traffic' }, fresh),
      (vn) => `${vn.vrf}/${vn.vn}`,
      (vn) => [vn.packetsIn, vn.bytesIn, vn.packetsOut, vn.bytesOut, vn.drops],
    );
    return items.map((vn) => {
      const rate = rates?.get(`${vn.vrf}/${vn.vn}`);
      return {
        ...vn,
        rates: rate ? { inPps: rate[0], inBitsPerSecond: rate[1] * 8, outPps: rate[2], outBitsPerSecond: rate[3] * 8, dropsPerSecond: rate[4] } : null,
      };
    });
  }

  private async resolveVrf(text: string): Promise<VrfJson> {
    const vrfs = await this.query<VrfJson[]>({ what: 'vrfs' });
    const vrf = vrfs.find((candidate) => candidate.name === text) ?? (/^\d+$/.test(text) ? vrfs.find((candidate) => candidate.id === Number(text)) : undefined);
    if (!vrf) throw new HttpError(404, `no VRF ${text} (VRFs: ${vrfs.map((candidate) => `${candidate.id} ${candidate.name}`).join(', ') || 'none'})`);
    return vrf;
  }

  async routes(vrfText: string, prefix?: string, familyText?: string): Promise<RouteTableJson> {
    const vrf = await this.resolveVrf(vrfText);
    if (familyText !== undefined && familyText !== 'inet' && familyText !== 'inet6') throw new HttpError(400, `family ${familyText}: expected inet or inet6`);
    const family = familyText ?? 'inet';
    if (family === 'inet' && prefix !== undefined && !/^[0-9.]+(\/\d{1,2})?$/.test(prefix)) throw new HttpError(400, `prefix ${prefix}: expected a.b.c.d[/len]`);
    if (family === 'inet6' && prefix !== undefined && !validPrefix6(prefix)) throw new HttpError(400, `prefix ${prefix}: expected an IPv6 address[/len]`);
    const [routes, nexthops] = await Promise.all([
      this.query<Array<{ prefix: string; nexthop: number }>>({ what: 'routes', vrf: vrf.name, family, ...(prefix === undefined ? {} : { prefix }) }),
      this.query<NexthopJson[]>({ what: 'nexthops' }),
    ]);
    const byId = new Map(nexthops.map((nexthop) => [nexthop.id, nexthop]));
    const [prefixIp, prefixLength] = (prefix ?? '').split('/');
    return {
      vrf: vrf.id,
      vrfName: vrf.name,
      family,
      ...(prefix === undefined ? {} : { prefix: prefixLength === undefined ? `${prefixIp}/${family === 'inet6' ? 128 : 32}` : prefix }),
      routes: routes.map((route) => {
        const nexthop = byId.get(route.nexthop);
        return {
          prefix: route.prefix,
          nexthop: route.nexthop,
          kind: nexthop?.kind ?? null,
          label: nexthop?.kind === 'tunnel' ? nexthop.label : null,
          vif: nexthop?.kind === 'encap' ? nexthop.vif : null,
          mac: nexthop?.kind === 'encap' ? nexthop.mac : null,
          dip: nexthop?.dip ?? null,
          encap: nexthop?.kind === 'tunnel' ? nexthop.encap : null,
          members: nexthop?.members
            ? nexthop.members.map((member) => {
                const sub = byId.get(member);
                return { nexthop: member, kind: sub?.kind ?? null, dip: sub?.dip ?? null, label: sub?.kind === 'tunnel' ? sub.label : null, vif: sub?.kind === 'encap' ? sub.vif : null };
              })
            : null,
        };
      }),
    };
  }

  async flows(params: URLSearchParams) {
    const query: Extract<IntrospectQuery, { what: 'flows' }> = { what: 'flows' };
    const vrfs = await this.query<VrfJson[]>({ what: 'vrfs' });
    const vrfText = params.get('vrf');
    if (vrfText) query.vrf = (await this.resolveVrf(vrfText)).id;
    const ip = params.get('ip');
    if (ip) {
      if (!IPV4.test(ip) && !validPrefix6(ip, false)) throw new HttpError(400, `ip ${ip}: expected an ${ip.includes(':') ? 'IPv6' : 'IPv4'} address`);
      query.ip = ip;
    }
    const number = (name: string, max: number): number | undefined => {
      const text = params.get(name);
      if (text === null || text === '') return undefined;
      if (!/^\d+$/.test(text) || Number(text) > max) throw new HttpError(400, `${name} ${text}: expected an integer 0..${max}`);
      return Number(text);
    };
    query.port = number('port', 65535);
    const protocol = params.get('protocol');
    if (protocol) {
      const code = PROTOCOL_NUMBERS[protocol.toLowerCase()] ?? (/^\d+$/.test(protocol) && Number(protocol) < 256 ? Number(protocol) : undefined);
      if (code === undefined) throw new HttpError(400, `protocol ${protocol}: expected tcp, udp, icmp or a number`);
      query.protocol = code;
    }
    query.offset = number('offset', Number.MAX_SAFE_INTEGER) ?? 0;
    query.limit = number('limit', MAX_FLOW_PAGE) ?? 100;
    const answer = await this.query<{ total: number; offset: number; flows: Array<{ vrf: number } & Record<string, unknown>> }>(query);
    const names = new Map(vrfs.map((vrf) => [vrf.id, vrf.name]));
    return { ...answer, limit: query.limit, flows: answer.flows.map((flow) => ({ ...flow, vrfName: names.get(flow.vrf) ?? null })) };
  }

  async drops() {
    const counts = await this.query<Record<string, number>>({ what: 'drops' });
    return { total: Object.values(counts).reduce((sum, count) => sum + count, 0), reasons: counts };
  }

  async summary() {
    const [summary, vrfs] = await Promise.all([this.query<SummaryJson>({ what: 'summary' }), this.query<VrfJson[]>({ what: 'vrfs' })]);
    const sessions = this.controlSessions();
    return {
      ...summary,
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      vrfs: vrfs.length,
      ports: this.ports().length,
      controlSessions: sessions.length,
      controlSessionsUp: sessions.filter((session) => isUp(session.state)).length,
      mainHeapUsedBytes: getHeapStatistics().used_heap_size,
    };
  }

  async trace(body: unknown) {
    if (typeof body !== 'object' || body === null) throw new HttpError(400, 'body: expected a JSON object');
    const spec = body as Record<string, unknown>;
    const problems: string[] = [];
    if (typeof spec.vif !== 'string' && typeof spec.vif !== 'number') problems.push('field /vif is required (a vif name or number)');
    if (!['tcp', 'udp', 'icmp'].includes(String(spec.protocol))) problems.push(`field /protocol ${JSON.stringify(spec.protocol)}: tcp, udp or icmp`);
    for (const field of ['src', 'dst']) {
      const address = spec[field];
      if (typeof address !== 'string' || !(IPV4.test(address) || validPrefix6(address, false))) problems.push(`field /${field} ${JSON.stringify(address)}: an IPv4 or IPv6 address`);
    }
    for (const field of ['srcPort', 'dstPort']) {
      const value = spec[field];
      if (value !== undefined && (!Number.isInteger(value) || (value as number) < 0 || (value as number) > 65535)) problems.push(`field /${field} ${JSON.stringify(value)}: 0..65535`);
    }
    if (spec.ttl !== undefined && (!Number.isInteger(spec.ttl) || (spec.ttl as number) < 0 || (spec.ttl as number) > 255)) problems.push(`field /ttl ${JSON.stringify(spec.ttl)}: 0..255`);
    if (spec.node !== undefined && (typeof spec.node !== 'string' || !IPV4.test(spec.node))) problems.push(`field /node ${JSON.stringify(spec.node)}: an IPv4 address`);
    if (spec.label !== undefined && (!Number.isInteger(spec.label) || (spec.label as number) < 0 || (spec.label as number) > 1048575)) problems.push(`field /label ${JSON.stringify(spec.label)}: 0..1048575`);
    const unknown = Object.keys(spec).filter((key) => !['vif', 'protocol', 'src', 'dst', 'srcPort', 'dstPort', 'ttl', 'node', 'label'].includes(key));
    if (unknown.length) problems.push(`unknown field ${unknown.map((key) => `/${key}`).join(', ')}`);
    if (problems.length) throw new HttpError(400, problems.join('; '));
    const packet = { ...spec, vif: String(spec.vif) } as unknown as SyntheticPacket;
    try {
      const steps = await this.options.dataplane.request<string[]>({ op: 'trace', packet });
      return { packet, steps };
    } catch (error) {
      throw new HttpError(400, (error as Error).message);
    }
  }

  async metrics(): Promise<string> {
    const [summary, vifs, vnTraffic, drops, vrfs] = await Promise.all([
      this.query<SummaryJson>({ what: 'summary' }),
      this.query<VifJson[]>({ what: 'vifs' }),
      this.query<VnTrafficJson[]>({ what: 'vn-traffic' }),
      this.query<Record<string, number>>({ what: 'drops' }),
      this.query<VrfJson[]>({ what: 'vrfs' }),
    ]);
    const ports = this.ports();
    const sessions = this.controlSessions();
    const text = new MetricsText();
    text.family('vrouter_received_packets_total', 'counter', 'Packets the dataplane received, on every vif.', [{ value: summary.received }]);
    text.family('vrouter_transmitted_packets_total', 'counter', 'Packets the dataplane transmitted, on every vif.', [{ value: summary.transmitted }]);
    text.family('vrouter_generated_packets_total', 'counter', 'Packets the vrouter made itself (ARP replies, ICMP errors).', [{ value: summary.generated }]);
    text.family('vrouter_held_packets', 'gauge', 'Fragments held while waiting for their first fragment.', [{ value: summary.held }]);
    text.family('vrouter_flows', 'gauge', 'Active flow pairs.', [{ value: summary.flows }]);
    text.family('vrouter_flow_capacity', 'gauge', 'Flow pairs the flow table can hold.', [{ value: summary.flowCapacity }]);
    text.family('vrouter_flow_evictions_total', 'counter', 'Flow pairs evicted to make room for new ones.', [{ value: summary.flowEvictions }]);
    text.family('vrouter_heap_used_bytes', 'gauge', "V8 heap in use, per thread of the daemon.", [
      { labels: { thread: 'main' }, value: getHeapStatistics().used_heap_size },
      { labels: { thread: 'dataplane' }, value: summary.dataplaneHeapUsedBytes },
    ]);
    text.family('vrouter_dataplane_longest_turn_seconds', 'gauge', 'The longest the dataplane worker went between two waits for packets since start (batches, table changes, re-evaluation).', [
      { value: summary.dataplaneLongestTurnMs / 1000 },
    ]);
    const vifLabels = (vif: VifJson) => {
      const port = ports.find((candidate) => candidate.vif === vif.id);
      return { vif: vif.id, name: vif.name, kind: vif.kind, vn: vif.vrfName ?? undefined, pod: port?.name ?? port?.id, pod_namespace: port?.namespace };
    };
    text.family('vrouter_vif_receive_packets_total', 'counter', 'Packets received on the vif (from the pod, or from the underlay for the fabric).', vifs.map((vif) => ({ labels: vifLabels(vif), value: vif.rxPackets })));
    text.family('vrouter_vif_receive_bytes_total', 'counter', 'Bytes received on the vif.', vifs.map((vif) => ({ labels: vifLabels(vif), value: vif.rxBytes })));
    text.family('vrouter_vif_transmit_packets_total', 'counter', 'Packets transmitted on the vif.', vifs.map((vif) => ({ labels: vifLabels(vif), value: vif.txPackets })));
    text.family('vrouter_vif_transmit_bytes_total', 'counter', 'Bytes transmitted on the vif.', vifs.map((vif) => ({ labels: vifLabels(vif), value: vif.txBytes })));
    const vnLabels = (vn: VnTrafficJson) => ({ vn: vn.vn, vrf: vn.vrf });
    text.family('vrouter_vn_receive_packets_total', 'counter', "Packets the VN's local pods sent into the vrouter.", vnTraffic.map((vn) => ({ labels: vnLabels(vn), value: vn.packetsIn })));
    text.family('vrouter_vn_receive_bytes_total', 'counter', "Bytes the VN's local pods sent into the vrouter.", vnTraffic.map((vn) => ({ labels: vnLabels(vn), value: vn.bytesIn })));
    text.family('vrouter_vn_transmit_packets_total', 'counter', "Packets the vrouter delivered to the VN's local pods.", vnTraffic.map((vn) => ({ labels: vnLabels(vn), value: vn.packetsOut })));
    text.family('vrouter_vn_transmit_bytes_total', 'counter', "Bytes the vrouter delivered to the VN's local pods.", vnTraffic.map((vn) => ({ labels: vnLabels(vn), value: vn.bytesOut })));
    text.family('vrouter_vn_flows', 'gauge', 'Active flow pairs in the VN.', vnTraffic.map((vn) => ({ labels: vnLabels(vn), value: vn.flows })));
    text.family('vrouter_vn_dropped_packets_total', 'counter', 'Packets dropped while in the VN.', vnTraffic.map((vn) => ({ labels: vnLabels(vn), value: vn.drops })));
    text.family('vrouter_vrf_routes', 'gauge', 'Routes in the VRF.', vrfs.map((vrf) => ({ labels: { vrf: vrf.id, vn: vrf.name }, value: vrf.routes })));
    text.family('vrouter_vrf_ipv6_routes', 'gauge', 'IPv6 routes in the VRF.', vrfs.map((vrf) => ({ labels: { vrf: vrf.id, vn: vrf.name }, value: vrf.routes6 })));
    text.family(
      'vrouter_dropped_packets_total',
      'counter',
      'Packets dropped, by reason (as dropstats counts them).',
      DROP_REASONS.map((reason) => ({ labels: { reason }, value: drops[reason] ?? 0 })),
    );
    text.family('vrouter_ports', 'gauge', 'Pod ports added through the port API.', [{ value: ports.length }]);
    text.family('vrouter_control_sessions', 'gauge', 'Control node sessions configured.', [{ value: sessions.length }]);
    const peer = (session: ControlSessionInfo, index: number) => session.peer ?? `session${index}`;
    text.family('vrouter_control_session_up', 'gauge', 'Whether the control node session is established (1) or not (0).', sessions.map((session, i) => ({ labels: { peer: peer(session, i), state: session.state ?? 'unknown' }, value: isUp(session.state) ? 1 : 0 })));
    text.family('vrouter_control_session_received_routes_total', 'counter', 'Routes received from the control node.', sessions.map((session, i) => ({ labels: { peer: peer(session, i) }, value: Number(session.routesReceived ?? 0) })));
    text.family('vrouter_control_session_sent_routes_total', 'counter', 'Routes published to the control node.', sessions.map((session, i) => ({ labels: { peer: peer(session, i) }, value: Number(session.routesSent ?? 0) })));
    text.family('vrouter_uptime_seconds', 'gauge', 'Seconds since the introspect server started.', [{ value: Math.round((Date.now() - this.startedAt) / 1000) }]);
    return text.toString();
  }

  // --- streams ------------------------------------------------------------

  private async refreshNames(): Promise<void> {
    if (Date.now() - this.namesAt < 2000) return;
    this.namesAt = Date.now();
    const [vifs, vrfs] = await Promise.all([this.query<VifJson[]>({ what: 'vifs' }), this.query<VrfJson[]>({ what: 'vrfs' })]);
    this.vifNames = new Map(vifs.map((vif) => [vif.id, vif.name]));
    this.vrfNames = new Map(vrfs.map((vrf) => [vrf.id, vrf.name]));
  }

  private broadcast(session: RingSession<StreamClient>, line: string): void {
    for (const client of session.clients) send(client, line);
  }

  private broadcastDrop(record: Uint8Array): void {
    const event = decodeDropEvent(record);
    const pod = this.podOf(event.vif);
    const hasPorts = event.protocol === 6 || event.protocol === 17;
    const line = {
      type: 'drop',
      time: event.time,
      reason: DROP_REASONS[event.reason] ?? `reason-${event.reason}`,
      vif: event.vif,
      vifName: this.vifNames.get(event.vif) ?? null,
      pod: pod ? (pod.namespace ? `${pod.namespace}/${pod.name ?? pod.id}` : (pod.name ?? pod.id)) : null,
      vrf: event.vrf,
      vn: this.vrfNames.get(event.vrf) ?? null,
      protocol: event.protocol === 0 && event.src === 0 ? null : (PROTOCOL_NAMES[event.protocol] ?? String(event.protocol)),
      src: event.src === 0 && event.dst === 0 ? null : ipToString(event.src),
      dst: event.src === 0 && event.dst === 0 ? null : ipToString(event.dst),
      srcPort: hasPorts || event.protocol === 1 ? event.srcPort : null,
      dstPort: hasPorts ? event.dstPort : null,
    };
    this.broadcast(this.dropMonitor, JSON.stringify(line) + '\n');
    void this.refreshNames().catch(() => undefined);
  }

  private broadcastFrame(record: Uint8Array): void {
    if (this.captureTarget === null || record.length < CAPTURE_HEADER_BYTES) return;
    const view = new DataView(record.buffer, record.byteOffset, record.byteLength);
    const vif = view.getUint16(13);
    const target = this.captureAll === null ? this.captureTarget : this.captureAll.get(vif) ?? { ...this.captureTarget, vif, name: String(vif), kind: 'virtual' };
    const direction = record[0] === CAPTURE_TX ? 'tx' : 'rx';
    const frame: CapturedFrame = {
      direction,
      seconds: view.getUint32(1),
      microseconds: view.getUint32(5),
      frame: captureToEthernet(target, direction, record.subarray(CAPTURE_HEADER_BYTES), view.getUint32(9)),
    };
    let pcap: Buffer | null = null;
    let json: string | null = null;
    for (const client of this.capture.clients) {
      if (client.format === 'pcap') {
        if (pcap === null) {
          const header = Buffer.alloc(16);
          header.writeUInt32LE(frame.seconds, 0);
          header.writeUInt32LE(frame.microseconds, 4);
          header.writeUInt32LE(frame.frame.length, 8);
          header.writeUInt32LE(frame.frame.length, 12);
          pcap = Buffer.concat([header, frame.frame]);
        }
        send(client, pcap);
      } else {
        json ??= JSON.stringify({ type: 'frame', time: frame.seconds + frame.microseconds / 1e6, seconds: frame.seconds, microseconds: frame.microseconds, vif, direction, length: frame.frame.length, data: frame.frame.toString('base64') }) + '\n';
        send(client, json);
      }
    }
  }

  private async streamDrops(response: http.ServerResponse): Promise<void> {
    const client: StreamClient = { response, format: 'ndjson', lost: 0 };
    await this.refreshNames().catch(() => undefined);
    if (!(await this.attachWhileConnected(this.dropMonitor, client))) return;
    response.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
    response.write(JSON.stringify({ type: 'start', node: this.options.node ?? null, reasons: DROP_REASONS }) + '\n');
  }

  /**
   * Adds a stream client; it leaves when its connection closes, also while
   * it was being attached. False when it is gone already: its 'close' may
   * have come while the request waited for the worker, before this listens.
   */
  private async attachWhileConnected(session: RingSession<StreamClient>, client: StreamClient): Promise<boolean> {
    const response = client.response;
    let closed = false;
    const gone = () => closed || response.destroyed || response.socket === null || response.socket.destroyed;
    if (gone()) return false;
    response.on('close', () => {
      closed = true;
      void session.detach(client);
    });
    await session.attach(client);
    if (gone()) await session.detach(client);
    return !gone();
  }

  private async streamCapture(vifText: string, params: URLSearchParams, response: http.ServerResponse): Promise<void> {
    const format = params.get('format') ?? 'pcap';
    if (format !== 'pcap' && format !== 'ndjson') throw new HttpError(400, `format ${format}: pcap or ndjson`);
    const vifs = await this.query<VifJson[]>({ what: 'vifs' }, true);
    if (vifText === '*') return this.streamCaptureAll(vifs, format, response);
    const vif = vifs.find((candidate) => candidate.name === vifText) ?? (/^\d+$/.test(vifText) ? vifs.find((candidate) => candidate.id === Number(vifText)) : undefined);
    if (!vif) throw new HttpError(404, `no vif ${vifText} (vifs: ${vifs.map((candidate) => `${candidate.id} ${candidate.name}`).join(', ')})`);
    const client: StreamClient = { response, format, lost: 0, target: { vif: vif.id, name: vif.name, kind: vif.kind, mac: vif.mac, ip: vif.ip } };
    if (!(await this.attachWhileConnected(this.capture, client))) return;
    const what = vif.kind === 'fabric' ? 'the encapsulated frames on the underlay' : 'frames as the pod sends and receives them (before encapsulation)';
    response.writeHead(200, {
      'content-type': format === 'pcap' ? 'application/vnd.tcpdump.pcap' : 'application/x-ndjson',
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      'x-vrouter-vif': `${vif.id} ${vif.name} ${vif.kind}`,
    });
    if (format === 'pcap') response.write(pcapFileHeader());
    else response.write(JSON.stringify({ type: 'start', vif: vif.id, name: vif.name, kind: vif.kind, pod: this.podOf(vif.id), captures: what, linktype: 'ethernet' }) + '\n');
  }

  /** Every vif at once, as NDJSON frames naming their vif: `vrouter capture`. */
  private async streamCaptureAll(vifs: VifJson[], format: string, response: http.ServerResponse): Promise<void> {
    if (format !== 'ndjson') throw new HttpError(400, 'format pcap: a capture of every vif is ndjson only (frames name their vif)');
    const targets = new Map(vifs.map((vif) => [vif.id, { vif: vif.id, name: vif.name, kind: vif.kind, mac: vif.mac, ip: vif.ip }]));
    const client: StreamClient = { response, format, lost: 0, target: { vif: -1, name: '*', kind: 'all', mac: '00:00:00:00:00:00', ip: null }, targets };
    if (!(await this.attachWhileConnected(this.capture, client))) return;
    response.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', 'x-vrouter-vif': '*' });
    response.write(JSON.stringify({ type: 'start', vif: '*', vifs: vifs.map((vif) => ({ id: vif.id, name: vif.name, kind: vif.kind })), linktype: 'ethernet' }) + '\n');
  }

  // --- HTTP ---------------------------------------------------------------

  private serve(request: http.IncomingMessage, response: http.ServerResponse): void {
    const json = (status: number, body: unknown) => {
      response.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
      response.end(JSON.stringify(body) + '\n');
    };
    this.route(request, response, json).catch((error: unknown) => {
      const status = error instanceof HttpError ? error.status : 500;
      if (status === 500) this.options.log.warn({ component: 'introspect', url: request.url, err: (error as Error).message }, 'introspect request failed');
      if (response.headersSent) response.destroy();
      else json(status, { error: error instanceof Error ? error.message : String(error) });
    });
  }

  private async route(request: http.IncomingMessage, response: http.ServerResponse, json: (status: number, body: unknown) => void): Promise<void> {
    if (this.allowedHosts !== null) {
      const host = (request.headers.host ?? '').replace(/:\d+$/, '');
      if (!this.allowedHosts.has(host)) throw new HttpError(421, `Host ${request.headers.host ?? '(none)'} is not this server`);
    }
    const url = parseRequestUrl(request.url);
    const parts = url.pathname.split('/').filter(Boolean).map(decodePathPart);
    const method = request.method ?? 'GET';
    if (method === 'POST') {
      if (!/^application\/json\b/.test(request.headers['content-type'] ?? '')) throw new HttpError(415, 'POST needs content-type: application/json');
      const body = await readJson(request);
      if (url.pathname === '/api/trace') return json(200, await this.trace(body));
      if (url.pathname === '/api/drops/clear') {
        await this.options.dataplane.request({ op: 'clear-drops' });
        this.cache.clear();
        this.options.log.info({ component: 'introspect' }, 'drop counters cleared');
        return json(200, { cleared: true });
      }
      throw new HttpError(404, `no POST ${url.pathname}`);
    }
    if (method !== 'GET' && method !== 'HEAD') throw new HttpError(405, `${method} is not served here`);
    if (parts.length === 0 || (parts.length === 1 && STATIC_TYPES[path.extname(parts[0])] !== undefined)) return this.serveStatic(parts[0] ?? 'index.html', response);
    if (url.pathname === '/metrics') {
      const body = await this.metrics();
      response.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'cache-control': 'no-store' });
      response.end(body);
      return;
    }
    if (url.pathname === '/Snh_ItfReq') {
      const body = itfResponse(filterInterfaces(this.options.sandeshInterfaces?.() ?? [], url.searchParams));
      response.sendDate = false;
      response.writeHead(200, { 'Content-Type': 'text/xml', 'Content-Length': Buffer.byteLength(body) });
      response.end(body);
      return;
    }
    if (parts[0] !== 'api') throw new HttpError(404, `no ${url.pathname}`);
    const [, what, item] = parts;
    switch (what) {
      case undefined:
        return json(200, { endpoints: ENDPOINTS });
      case 'summary':
        return json(200, await this.summary());
      case 'vifs': {
        const vifs = await this.vifs();
        if (item === undefined) return json(200, vifs);
        const vif = vifs.find((candidate) => candidate.name === item) ?? (/^\d+$/.test(item) ? vifs.find((candidate) => candidate.id === Number(item)) : undefined);
        if (!vif) throw new HttpError(404, `no vif ${item}`);
        return json(200, vif);
      }
      case 'ports':
        return json(200, this.ports());
      case 'vrfs':
        return json(200, await this.query({ what: 'vrfs' }));
      case 'routes': {
        const vrf = item ?? url.searchParams.get('vrf');
        if (!vrf) throw new HttpError(400, 'query parameter vrf is required (a VRF name or id)');
        return json(200, await this.routes(vrf, url.searchParams.get('prefix') || undefined, url.searchParams.get('family') || undefined));
      }
      case 'nexthops': {
        const nexthops = await this.query<NexthopJson[]>({ what: 'nexthops' });
        if (item === undefined) return json(200, nexthops);
        const nexthop = nexthops.find((candidate) => String(candidate.id) === item);
        if (!nexthop) throw new HttpError(404, `no nexthop ${item}`);
        return json(200, nexthop);
      }
      case 'mpls':
      case 'labels':
        return json(200, await this.query({ what: 'labels' }));
      case 'flows':
        return json(200, await this.flows(url.searchParams));
      case 'drops':
        return json(200, await this.drops());
      case 'vn-traffic':
        return json(200, await this.vnTraffic());
      case 'control-sessions':
        return json(200, this.controlSessions());
      case 'monitor':
        if (item !== 'drops') throw new HttpError(404, `no monitor ${item ?? ''}: /api/monitor/drops`);
        return this.streamDrops(response);
      case 'capture':
        if (item === undefined) throw new HttpError(400, 'which vif? /api/capture/<vif>');
        return this.streamCapture(item, url.searchParams, response);
      default:
        throw new HttpError(404, `no ${url.pathname} (GET /api lists the endpoints)`);
    }
  }

  private serveStatic(name: string, response: http.ServerResponse): void {
    const type = STATIC_TYPES[path.extname(name)];
    if (type === undefined || name.includes('/') || name.startsWith('.')) throw new HttpError(404, `no /${name}`);
    let body: Buffer;
    try {
      body = fs.readFileSync(path.join(this.webRoot, name));
    } catch {
      throw new HttpError(404, `no /${name}`);
    }
    response.writeHead(200, {
      'content-type': type,
      'cache-control': 'no-cache',
      'x-content-type-options': 'nosniff',
      'content-security-policy': "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
    });
    response.end(body);
  }
}

/** The request's URL; one that does not parse (a path of "//%20/") is the client's mistake. */
function parseRequestUrl(text = '/'): URL {
  try {
    return new URL(text, 'http://introspect');
  } catch {
    throw new HttpError(400, `not a URL: ${JSON.stringify(text.slice(0, 200))}`);
  }
}

/** A path segment decoded; a malformed escape (%zz) is the client's mistake, not a server error. */
function decodePathPart(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw new HttpError(400, `malformed percent-escape in ${JSON.stringify(part)}`);
  }
}

function isUp(state: unknown): boolean {
  return typeof state === 'string' && /^(up|established|ready)$/i.test(state);
}

async function readJson(request: http.IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > 64 * 1024) throw new HttpError(413, 'request body larger than 64 KiB');
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return {};
  try {
    return JSON.parse(text);
  } catch {
    throw new HttpError(400, 'request body is not JSON');
  }
}

/** Starts the introspect server; resolves once it listens (rejects naming the address when it cannot). */
export async function startIntrospectServer(options: IntrospectServerOptions): Promise<IntrospectServer> {
  const server = new IntrospectServer(options);
  let address: AddressInfo;
  try {
    address = await server.listen();
  } catch (error) {
    throw new Error(`introspect server on ${options.host}:${options.port}: ${(error as Error).message}`);
  }
  options.log.info({ component: 'introspect', address: `${address.address}:${address.port}` }, 'introspect API listening');
  return server;
}
