/**
 * A cluster of `vrouter run` daemons in network namespaces, for end-to-end
 * tests, `npm run demo` and `npm run bench:pps` (vrouter cases):
 *
 *   <p>-underlay: br0 (Linux bridge) -- n0 --veth-- underlay 198.18.0.11/24 in <p>-node0 -- vrouter run
 *                                    -- n1 --veth-- underlay 198.18.0.12/24 in <p>-node1 -- vrouter run
 *                                    ...
 *   <p>-pod-<name>: eth0 (a TAP of its node's daemon), ip/32, default via the VN gateway
 *
 * Every address exists only inside the topology's namespaces: the underlay
 * is 198.18.0.0/15 (RFC 2544 benchmarking range), pods use the VN subnets
 * given. Nothing is created in the root namespace but the namespaces
 * themselves and a temporary directory (state files, daemon logs) removed by
 * stop() or at exit. Without a control node, routes to pods are programmed on
 * every other node by the harness with `vrouter route set`, as a script would.
 *
 * API (node indexes are 0-based; node i is the namespace `<prefix>-node<i>`):
 *
 *   const topology = new Topology();
 *   const cluster = await VrouterCluster.start(topology, {
 *     nodes: 2,
 *     vns: [{ name: 'vn1', subnet: '10.1.1.0/24', gateway: '10.1.1.1' }],
 *     encapPriority: ['udp', 'gre'],  // default; ['gre', 'udp'] makes every node send MPLS over GRE
 *     underlayMtu: 1500,              // underlay veths and fabric vifs; pods get underlayMtu - 32
 *     policies: [...], services: [...], flows: {...},  // copied into every node's state file
 *   });
 *   const a = await cluster.addPod(0, { name: 'a', vn: 'vn1', ip: '10.1.1.3', label: 20 });
 *     // creates <prefix>-pod-a, `vrouter port add`s it on node 0 (TAP moved in as eth0), then
 *     // `vrouter route set`s 10.1.1.3/32 -> node0:label on every other running node
 *   await cluster.addPod(1, { name: 'b', vn: 'vn1', ip: '10.1.1.5',
 *     floatingIps: [{ ip: '10.96.0.10', portMap: [{ protocol: 'tcp', port: 80, targetPort: 8080 }] }] });
 *   await cluster.setRoute(2, 'vn1', '10.96.0.10/32', [cluster.nexthopTo('a'), cluster.nexthopTo('b')]); // ECMP
 *   await cluster.deleteRoute(2, 'vn1', '10.96.0.10/32');
 *   await cluster.deletePod('a');        // `vrouter port delete` + routes withdrawn on the other nodes
 *   await cluster.stats(0);              // GET /stats of node 0 (drops by reason, vif counters)
 *   await cluster.exec('a', ['ping', '-c', '1', '10.1.1.5']);   // in the pod's namespace; stdout, rejects on failure
 *   await cluster.tryExec('a', ['ping', ...]);                   // { code, signal, stdout, stderr }, never rejects
 *   cluster.spawn('b', ['node', 'server.js']);                   // ChildProcess, killed by the topology
 *   const out = new ProcessOutput(child); await out.waitFor(/listening/); out.stdout; await out.exited;
 *   await cluster.execNode(0, [...]), cluster.spawnNode(0, [...]), await cluster.vrouter(0, ['port', 'list']);
 *   const capture = await cluster.capture({ node: 0 }, 'underlay', 'udp port 6635', ['mpls.label']);
 *   ...traffic...; const rows = await capture.stop();            // tshark -T fields rows ({ pod: 'a' } for a pod's eth0)
 *   await cluster.withLogs(async () => { ...assertions... });   // a failure carries every daemon's log
 *   await cluster.stopNode(1);           // SIGTERM one daemon; throws (with its log) unless it exits 0
 *   await cluster.restartNode(1, { signal: 'SIGKILL' });  // with restartable: kill, start again on the same
 *     // state file (the daemon re-attaches its pods from its snapshot); { downMs, upMs } as for the outage
 *   await cluster.stop();                // SIGTERM the others, check they exit, remove the temp dir
 *   await topology.destroy();            // the Topology deletes the namespaces (and anything left in them)
 *
 * cluster.nodes[i] gives a node's namespace, underlay address and MAC, API,
 * state and log file and daemon pid (for CPU measurements); cluster.pod(name)
 * a pod's namespace, IP, label, vif, TAP name and MTU.
 *
 * Control mode: with `control`, one or two control nodes (`vrouter-control
 * --api <address>:8082 --state <tmp>/control<i>/pods.json`) run in their own
 * namespaces on the underlay bridge and the harness programs no route at
 * all: the daemons run with `--control` and learn everything over XMPP.
 * Every pod is registered on the pod API of each running control node first
 * (the first decides VN and address, the second gets the pod with them), as
 * `vrouter port add --control-api <url> [--control-api <url2>]` does; a
 * control node started again reads its pods back from its state file, and
 * the harness then registers there the pods added and deletes those deleted
 * while it was down, as a configuration database both read would have it.
 *
 *   <p>-underlay: br0 -- c0 --veth-- underlay 198.18.0.2/24 in <p>-control0 -- vrouter-control --listen 198.18.0.2:5269
 *                     -- c1 --veth-- underlay 198.18.0.3/24 in <p>-control1   (controlNodes: 2)
 *                     -- n0 ... the nodes as above, `vrouter run --control 198.18.0.2:5269 [--control 198.18.0.3:5269]`
 *
 *   const cluster = await VrouterCluster.start(topology, {
 *     nodes: 3,
 *     control: {
 *       config: { vns: [...], services: [...], policies: [...],   // the network configuration (docs/control-node.md)
 *                 vrouters: ['node0', 'node1', 'node2'],          // daemons are named node<i>; listing them lets a
 *                 restartConvergenceTime: 10 },                   // restarted control node send End-of-RIB at once
 *       controlNodes: 2,      // default 1
 *       holdTime: 9,          // the daemons' --hold-time (default: theirs)
 *     },
 *   });
 *   const web = await cluster.addPod(0, { name: 'web', labels: { name: 'web', uses: 'db' } });
 *     // `vrouter port add --label name=web --label uses=db --control-api ...` (vn and ip optional: the control node decides);
 *     // web.vn and web.ip are what it chose (the port add's answer)
 *   await cluster.addPod(1, spec, { via: 'api' });   // POST /pods, then POST /port, from inside the node namespace instead of the CLI:
 *     // pod.portAdd = { sentAt, answeredAt } (epoch ms, taken around the POST /port itself)
 *   const { ms } = await cluster.timePortAddToReply(0, { name: 'new', labels: {...}, ip: '10.1.1.50' }, 'web');
 *     // pings ip from pod web (every 2 ms) while the port is added: ms from the port add request to the first reply
 *   await cluster.routes(2, 'default-domain:default-project:web:web'); // GET /api/routes?vrf=<that> of node 2 (null: no such VRF)
 *   await cluster.waitForRoute(2, 'default-domain:default-project:web:web', '10.96.0.10/32', (route) => route?.members?.length === 2);
 *   await cluster.controlSessions(0);                    // GET /api/control-sessions
 *   await cluster.waitForSessions();                     // every running daemon Established with every control node
 *   await cluster.introspect(0, '/api/vifs/web');        // any GET of the node's introspect API
 *   await cluster.tool(0, ['rt', '--dump', 'web']);      // the vrouter utilities (against --introspect), stdout
 *   await cluster.killControlNode(0, 'SIGKILL');         // or 'SIGTERM' (then it must exit 0)
 *   await cluster.startControlNode(0);                   // again, same address; resolves once it listens
 *   await cluster.restartControlNode(0, { signal: 'SIGKILL', downMs: 500 });
 *   await cluster.writeToControlNode(1, randomBytes(65536));  // raw bytes to 5269 from node 1's namespace:
 *     // { written, received (what the control node answered), closedByPeer, error }
 *   cluster.controlNodes[i]: namespace, address, endpoint, config and log file, pid.
 *
 * Each control node logs to <tmp>/control<i>.log (in logs() and withLogs()).
 *
 * A software gateway (control mode): with `gateway`, node `gateway.node`
 * runs `vrouter run --gateway` on vgw0, the host end of a veth whose other
 * end, ext0, is in the namespace `<p>-external` (cluster.externalNs), outside
 * the overlay; the test gives ext0 its address and routes.
 *
 *   <p>-external: ext0 --veth-- vgw0 in <p>-node<gateway.node>
 *   gateway: { node: 0, routingInstance: 'default-domain:default-project:public:public', ipBlocks: ['203.0.113.0/24'] }
 *
 * Each daemon's stdout/stderr (JSON log lines) go to <tmp>/node<i>.log. A
 * daemon that does not answer its API within startTimeoutMs, exits on its
 * own or does not exit on SIGTERM makes the call fail with its log.
 * VROUTER_CLUSTER_KEEP=1 keeps the temp directory (its path is printed).
 */
import { ChildProcess, SpawnOptions, execFile } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { NetworkConfigDocument } from '../../src/control/node/network-config';
import type { RouteJson, RouteTableJson } from '../../src/daemon/introspect-server';
import type { FlowsEntry, PolicyEntry, ServiceEntry, StateDocument } from '../../src/control/config/state-schema';
import { ExecOptions, Topology, requireCommands } from './netns';
import { nativeIoPath } from '../../src/dataplane/io/native';

export type Encap = 'udp' | 'gre';

export interface VnSpec {
  name: string;
  /** The VN's subnet, a.b.c.d/len: the ARP proxy answers for it. */
  subnet: string;
  gateway: string;
  /** Dual stack: the VN's IPv6 subnet and gateway (neighbour discovery, router advertisements, ICMPv6 errors). */
  subnet6?: string;
  gateway6?: string;
  /** Services (by name) this VN may reach. */
  uses?: string[];
}

/** A cluster run by control nodes instead of by the harness. */
export interface ControlOptions {
  /** The control node's network configuration (docs/control-node.md), written as JSON to its config file. */
  config: NetworkConfigDocument;
  /** Control nodes, at 198.18.0.2 and 198.18.0.3; every daemon connects to each (default 1). */
  controlNodes?: 1 | 2;
  /** The daemons' `--hold-time` (seconds); the control node's is the config's holdTime. */
  holdTime?: number;
  /** Peers whose publishes the control nodes install unchecked (`vrouter-control --route-source`): a benchmark's route publisher. */
  routeSources?: string[];
}

export interface ClusterOptions {
  nodes: number;
  /** The VNs every node's state file defines; required without `control` (the control node's config has them). */
  vns?: VnSpec[];
  /** Encapsulations every node uses, best first (default udp, gre). */
  encapPriority?: Encap[];
  /** MTU of the underlay links and fabric vifs (default 1500); pods get underlayMtu - 32. */
  underlayMtu?: number;
  policies?: PolicyEntry[];
  services?: ServiceEntry[];
  flows?: FlowsEntry;
  /** Where each daemon's API listens inside its node namespace (default 127.0.0.1:9091). */
  api?: string;
  /** How long a daemon may take to answer its API (default 20 s). */
  startTimeoutMs?: number;
  /** VROUTER_LOG_LEVEL of the daemons (default info). */
  logLevel?: string;
  /** Prepended to namespace roles (`<tag>-node0`), so several clusters can share one topology. */
  tag?: string;
  /** Control mode: control nodes configure the ports and distribute the routes (see the header). */
  control?: ControlOptions;
  /**
   * Run the daemons without `--clean-exit`: a stopped daemon leaves its pods'
   * devices and its snapshot for restartNode (default false: SIGTERM removes them).
   */
  restartable?: boolean;
  /** A software gateway on one node (see the header); needs `control`. */
  gateway?: { node: number; routingInstance: string; ipBlocks: string[]; routes?: string[] };
}

export interface FloatingIpSpec {
  ip: string;
  portMap?: Array<{ protocol: 'tcp' | 'udp'; port: number; targetPort?: number }>;
}

export interface PodSpec {
  /** [a-z0-9-]: the pod's id, and its namespace is `<prefix>-pod-<name>`. */
  name: string;
  /** Required without a control node; in control mode the control node picks it (from the `name` label) unless given. */
  vn?: string;
  /** Required without a control node; in control mode the control node allocates one unless given. */
  ip?: string;
  /** Dual stack (no control node): `--ip6`, the address set on the pod's interface with `ip -6`, /128 routes to it on the other nodes. */
  ip6?: string;
  /** The pod's labels (`vrouter port add --label k=v`): in control mode they decide VN, services and policies. */
  labels?: Record<string, string>;
  /** The MPLS label other nodes use to reach it (default: the daemon's next free one). */
  label?: number;
  /** ClusterIPs the pod backs (`vrouter port add --floating-ip`); not in control mode (the services' selectors decide). */
  floatingIps?: FloatingIpSpec[];
  mac?: string;
  mtu?: number;
  /** The pod's interface (`vrouter port add --kind`): a veth pair or a TAP (default: the daemon's, veth). */
  kind?: 'veth' | 'tap';
}

export interface ClusterPod {
  name: string;
  node: number;
  ns: string;
  /** The pod's VN and address: as given, or (control mode) as the control node chose them. */
  vn: string;
  ip: string;
  /** Dual stack: the pod's IPv6 address. */
  ip6?: string;
  labels: Record<string, string>;
  label: number;
  vif: number;
  tapName: string;
  ifname: string;
  mac: string;
  mtu: number;
  /** With addPod(..., { via: 'api' }): when the POST /port (after the registration) was sent and answered (epoch ms, fractional). */
  portAdd?: { sentAt: number; answeredAt: number };
}

export interface AddPodOptions {
  /**
   * 'cli' (default): `vrouter port add` in the node namespace; 'api': a POST
   * /port from a small script in the node namespace, timed around the request
   * (in control mode after the POST /pods that registers the pod).
   */
  via?: 'cli' | 'api';
}

export interface ClusterControlNode {
  index: number;
  /** control<i>. */
  name: string;
  ns: string;
  /** 198.18.0.2 + index, on the underlay bridge. */
  address: string;
  port: number;
  /** address:port, as the daemons' --control takes it. */
  endpoint: string;
  /** Its pod registration API (`vrouter-control --api`), as `vrouter port add --control-api` takes it. */
  podApi: string;
  configFile: string;
  logFile: string;
  /** The current process (replaced by startControlNode). */
  pid: number;
  process: ChildProcess;
  /** Set once the current process has exited. */
  exit?: { code: number | null; signal: NodeJS.Signals | null; expected: boolean };
}

/** GET /api/control-sessions: one entry per control node the daemon talks to. */
export interface ControlSession {
  peer: string;
  state: string;
  routesReceived: number;
  staleRoutes: number;
  routesSent: number;
  lastError: string | null;
}

/** One route of GET /api/routes (what `vrouter rt --dump <vrf> --json` prints). */
export type RouteRow = RouteJson;
export type RouteTable = RouteTableJson;

export interface ClusterNode {
  index: number;
  name: string;
  ns: string;
  /** The node's underlay interface (a veth to the underlay bridge). */
  underlayIf: string;
  underlayIp: string;
  underlayMac: string;
  api: string;
  /** Where the daemon's introspect API listens inside its namespace (the daemon's default). */
  introspect: string;
  stateFile: string;
  logFile: string;
  /** The daemon's pid (the node process itself: `ip netns exec` execs in place). */
  pid: number;
  process: ChildProcess;
  /** Set once the daemon has exited. */
  exit?: { code: number | null; signal: NodeJS.Signals | null; expected: boolean };
}

/** A next hop as `vrouter route set --nexthop` takes it. */
export interface RouteNexthop {
  address: string;
  label: number;
  encaps?: Encap[];
}

export interface CaptureTarget {
  node?: number;
  pod?: string;
  /** Any namespace of the topology (cluster.externalNs); give the interface. */
  ns?: string;
}

export interface Capture {
  /** Stops tshark (SIGINT) and returns its rows, fields split on tabs. */
  stop(): Promise<string[][]>;
}

/** What every cluster needs on the machine, with the Debian package of each. */
export const CLUSTER_COMMANDS = { ip: 'iproute2', sysctl: 'procps' };

/** The MAC the vrouter answers ARP with and sends to pods from: the destination of every pod frame. */
export const VROUTER_MAC = '00:00:5e:00:01:00';
/** MPLS over UDP: outer IPv4 20 + UDP 8 + MPLS 4. */
export const OVERLAY_OVERHEAD = 32;
const UNDERLAY_PREFIX = '198.18.0.';
const FIRST_NODE_HOST = 11;
const FIRST_CONTROL_HOST = 2;
const CONTROL_PORT = 5269;
const POD_API_PORT = 8082;
const DEFAULT_API = '127.0.0.1:9091';
const DEFAULT_INTROSPECT = '127.0.0.1:8085';
const VROUTER_BIN = path.resolve(__dirname, '..', '..', '..', 'bin', 'vrouter.js');
const CONTROL_BIN = path.resolve(__dirname, '..', '..', '..', 'bin', 'vrouter-control.js');
/** What vrouter-control logs last at start: its pod API listens (after the XMPP port). */
const CONTROL_LISTENING = /pod API listening on/;
const STOP_TIMEOUT_MS = 10_000;
const LOG_TAIL = 200;
const LOG_MARKER = '\n=== vrouter daemon logs ===\n';
/** tshark says "Capturing on" a little before packets are really captured. */
const CAPTURE_SETTLE_MS = 1_000;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The promise's value, or null after ms; the timer does not outlive the race (nor keep the process up). */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | null> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** "10.96.0.10,tcp:80:8080" as `--floating-ip` takes it. */
function floatingIpArgument(fip: FloatingIpSpec): string {
  return [fip.ip, ...(fip.portMap ?? []).map((entry) => [entry.protocol, entry.port, entry.targetPort].filter((part) => part !== undefined).join(':'))].join(',');
}

function nexthopArgument(nexthop: RouteNexthop): string {
  return [nexthop.address, String(nexthop.label), ...(nexthop.encaps ? [nexthop.encaps.join(',')] : [])].join(':');
}

/**
 * Run with node inside a node namespace: one HTTP request; prints
 * { status, sentAt, answeredAt, body } (epoch ms, taken just before the
 * request and when its answer is complete). argv: host port method path [json body].
 */
/** A control node's pod API as apiRequest takes it: address:port. */
function podApiAddress(control: ClusterControlNode): string {
  return `${control.address}:${POD_API_PORT}`;
}

const HTTP_REQUEST_SCRIPT = `
const [host, port, method, path, body] = process.argv.slice(1);
const { performance } = require('perf_hooks');
const now = () => performance.timeOrigin + performance.now();
const http = require('http');
let sentAt;
const request = http.request({ host, port: Number(port), method, path, headers: body === undefined ? {} : { 'content-type': 'application/json' } }, (response) => {
  const chunks = [];
  response.on('data', (chunk) => chunks.push(chunk));
  response.on('end', () => console.log(JSON.stringify({ status: response.statusCode, sentAt, answeredAt: now(), body: Buffer.concat(chunks).toString('utf8') })));
});
request.setTimeout(20000, () => request.destroy(new Error('no answer within 20 s')));
request.on('error', (error) => { console.error(host + ':' + port + ' ' + method + ' ' + path + ': ' + error.message); process.exit(1); });
// From here on the time is the request's: loading the client's modules is not.
sentAt = now();
request.end(body);`;

/**
 * Run with node inside a node namespace: connects to host:port, writes the
 * bytes of a file, collects the answer until the peer closes or waitMs
 * passes; prints { written, received, closedByPeer, error }. argv: host port file waitMs.
 */
const RAW_WRITE_SCRIPT = `
const [host, port, file, waitMs] = process.argv.slice(1);
const data = require('fs').readFileSync(file);
const socket = require('net').connect({ host, port: Number(port) });
let received = Buffer.alloc(0), closedByPeer = false, error = null, written = 0;
socket.on('connect', () => socket.write(data, (failure) => { if (!failure) written = data.length; }));
socket.on('data', (chunk) => (received = Buffer.concat([received, chunk])));
socket.on('error', (failure) => (error = failure.message));
socket.on('close', () => { closedByPeer = true; finish(); });
const timer = setTimeout(finish, Number(waitMs));
function finish() {
  clearTimeout(timer);
  console.log(JSON.stringify({ written, received: received.toString('latin1').slice(0, 4000), closedByPeer, error }));
  process.exit(0);
}`;

/** The output of a spawned process, kept as it comes, with a wait for a pattern. */
export class ProcessOutput {
  stdout = '';
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly waiters = new Set<() => void>();

  constructor(readonly child: ChildProcess) {
    child.stdout?.setEncoding('utf8');
    child.stderr?.setEncoding('utf8');
    child.stdout?.on('data', (text: string) => {
      this.stdout += text;
      this.wake();
    });
    child.stderr?.on('data', (text: string) => {
      this.stderr += text;
      this.wake();
    });
    this.exited = new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve({ code: child.exitCode, signal: child.signalCode });
      else child.once('close', (code, signal) => resolve({ code, signal }));
    });
    void this.exited.then(() => this.wake());
  }

  /** Resolves with the first match of pattern in stdout or stderr; rejects on timeout or exit. */
  async waitFor(pattern: RegExp, timeoutMs = 10_000, what = `${pattern}`): Promise<RegExpExecArray> {
    const deadline = Date.now() + timeoutMs;
    let exited = false;
    void this.exited.then(() => (exited = true));
    for (;;) {
      const match = pattern.exec(this.stdout) ?? pattern.exec(this.stderr);
      if (match) return match;
      if (exited) throw new Error(`process exited before printing ${what}:\nstdout: ${this.stdout.slice(-2000)}\nstderr: ${this.stderr.slice(-2000)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${what} within ${timeoutMs} ms:\nstdout: ${this.stdout.slice(-2000)}\nstderr: ${this.stderr.slice(-2000)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.min(left, 1000));
        function done(): void {
          clearTimeout(timer);
          resolve();
        }
        this.waiters.add(done);
      });
    }
  }

  private wake(): void {
    const waiting = [...this.waiters];
    this.waiters.clear();
    for (const resolve of waiting) resolve();
  }
}

const liveDirectories = new Set<string>();
let exitHookInstalled = false;

function removeDirectoriesSync(): void {
  if (process.env.VROUTER_CLUSTER_KEEP) return;
  for (const directory of liveDirectories) fs.rmSync(directory, { recursive: true, force: true });
  liveDirectories.clear();
}

export class VrouterCluster {
  readonly nodes: ClusterNode[] = [];
  /** Control mode: the control nodes (empty otherwise). */
  readonly controlNodes: ClusterControlNode[] = [];
  readonly underlayNs: string;
  readonly podMtu: number;
  private readonly pods = new Map<string, ClusterPod>();
  /** Control mode: each pod's registration (with its address), to bring a restarted control node up to date. */
  private readonly registrations = new Map<string, Record<string, unknown>>();
  private stopping: Promise<void> | undefined;
  /** With `gateway`: the external namespace, and the --gateway value of the gateway node. */
  externalNs: string | undefined;
  private gatewayFlag: string | undefined;

  private constructor(
    readonly topology: Topology,
    readonly options: Required<Pick<ClusterOptions, 'nodes' | 'vns' | 'encapPriority' | 'underlayMtu' | 'api'>> & ClusterOptions,
    readonly directory: string,
    underlayNs: string,
  ) {
    this.underlayNs = underlayNs;
    this.podMtu = options.underlayMtu - OVERLAY_OVERHEAD;
  }

  /** Builds the underlay and the nodes, starts every daemon and waits until each answers its API. */
  static async start(topology: Topology, options: ClusterOptions): Promise<VrouterCluster> {
    requireCommands(CLUSTER_COMMANDS);
    if (!fs.existsSync(VROUTER_BIN)) throw new Error(`${VROUTER_BIN} is missing`);
    if (!fs.existsSync(path.join(path.dirname(VROUTER_BIN), '..', 'dist', 'src', 'cli', 'vrouter.js'))) {
      throw new Error('dist/src/cli/vrouter.js is missing: build first (npx tsc -p .)');
    }
    if (!Number.isInteger(options.nodes) || options.nodes < 1 || options.nodes > 200) throw new Error(`nodes ${options.nodes}: 1..200`);
    if (options.control) {
      if (!fs.existsSync(CONTROL_BIN)) throw new Error(`${CONTROL_BIN} is missing`);
      const stray = [options.vns?.length ? 'vns' : '', options.services ? 'services' : '', options.policies ? 'policies' : ''].filter(Boolean);
      if (stray.length > 0) throw new Error(`control mode: ${stray.join(', ')} belong in control.config (the control node's configuration)`);
      const count = options.control.controlNodes ?? 1;
      if (count !== 1 && count !== 2) throw new Error(`control.controlNodes ${String(count)}: 1 or 2`);
    } else if (options.vns === undefined) {
      throw new Error('vns is required without a control node');
    }
    const full = {
      encapPriority: ['udp', 'gre'] as Encap[],
      underlayMtu: 1500,
      api: DEFAULT_API,
      ...options,
      vns: options.vns ?? [],
    };
    const directory = fs.mkdtempSync(path.join(os.tmpdir(), `vrouter-cluster-${topology.prefix}-`));
    liveDirectories.add(directory);
    if (!exitHookInstalled) {
      exitHookInstalled = true;
      process.on('exit', removeDirectoriesSync);
    }
    const role = (name: string) => (options.tag ? `${options.tag}-${name}` : name);
    const underlayNs = await topology.addNamespace(role('underlay'));
    const cluster = new VrouterCluster(topology, full, directory, underlayNs);
    try {
      const bridgePorts: string[] = [];
      const controlNamespaces: string[] = [];
      for (let index = 0; index < (options.control ? (options.control.controlNodes ?? 1) : 0); index++) {
        const ns = await topology.addNamespace(role(`control${index}`));
        await topology.addVethPair(ns, 'underlay', underlayNs, `c${index}`, { mtu: full.underlayMtu });
        controlNamespaces.push(ns);
        bridgePorts.push(`c${index}`);
      }
      const nodeNamespaces: string[] = [];
      for (let index = 0; index < options.nodes; index++) {
        const ns = await topology.addNamespace(role(`node${index}`));
        await topology.addVethPair(ns, 'underlay', underlayNs, `n${index}`, { mtu: full.underlayMtu });
        nodeNamespaces.push(ns);
        bridgePorts.push(`n${index}`);
      }
      await topology.addBridge(underlayNs, 'br0', bridgePorts);
      if (options.gateway) await cluster.setUpExternal(options.gateway, nodeNamespaces[options.gateway.node], role('external'));
      // The control nodes listen before the daemons start, so the first connection succeeds.
      await Promise.all(controlNamespaces.map((ns, index) => cluster.setUpControlNode(index, ns)));
      await Promise.all(nodeNamespaces.map((ns, index) => cluster.startNode(index, ns)));
    } catch (error) {
      await cluster.stop().catch(() => undefined);
      throw error;
    }
    return cluster;
  }

  /** The pod named so; throws when there is none. */
  pod(name: string): ClusterPod {
    const pod = this.pods.get(name);
    if (!pod) throw new Error(`no pod ${name} in the cluster (pods: ${[...this.pods.keys()].join(', ') || 'none'})`);
    return pod;
  }

  get podList(): ClusterPod[] {
    return [...this.pods.values()];
  }

  /** The next hop that reaches a pod from other nodes: its node's underlay address and its label. */
  nexthopTo(podName: string, encaps: Encap[] = ['udp', 'gre']): RouteNexthop {
    const pod = this.pod(podName);
    return { address: this.nodes[pod.node].underlayIp, label: pod.label, encaps };
  }

  /**
   * Creates the pod's namespace, adds its port on the node (`vrouter port
   * add`: a TAP created in it as eth0, ip/32, routes via the gateway), then sets
   * the /32 route to it on every other running node. In control mode the
   * control node decides what the pod did not give (VN, address) and
   * distributes the route; the pod carries what it chose.
   */
  async addPod(nodeIndex: number, spec: PodSpec, options: AddPodOptions = {}): Promise<ClusterPod> {
    const node = this.node(nodeIndex);
    const control = this.options.control !== undefined;
    if (this.pods.has(spec.name)) throw new Error(`pod ${spec.name} exists already`);
    if (!control && (spec.vn === undefined || spec.ip === undefined)) throw new Error(`pod ${spec.name}: vn and ip are required without a control node`);
    if (control && spec.floatingIps?.length) throw new Error(`pod ${spec.name}: in control mode the services' selectors give floating IPs, not the pod`);
    const ns = await this.topology.addNamespace(this.options.tag ? `${this.options.tag}-pod-${spec.name}` : `pod-${spec.name}`, { ipv6: spec.ip6 !== undefined });
    const request: Record<string, unknown> = { id: spec.name, name: spec.name, netns: ns };
    if (spec.vn !== undefined) request.vn = spec.vn;
    if (spec.ip !== undefined) request.ip = spec.ip;
    if (spec.ip6 !== undefined) request.ip6 = spec.ip6;
    if (spec.labels !== undefined) request.labels = spec.labels;
    if (spec.label !== undefined) request.label = spec.label;
    if (spec.mac !== undefined) request.mac = spec.mac;
    if (spec.mtu !== undefined) request.mtu = spec.mtu;
    if (spec.kind !== undefined) request.kind = spec.kind;
    if (spec.floatingIps?.length) request.floatingIps = spec.floatingIps;
    type PortAnswer = { vif: number; label: number; tapName: string; ifname: string; mac: string; mtu: number; vn: string; ip: string };
    let record: PortAnswer;
    let portAdd: ClusterPod['portAdd'];
    // As `vrouter port add --control-api` sends it (its id is the VM's and the VMI's).
    const registration: Record<string, unknown> = { vrouter: node.name, vmUuid: spec.name, vmiUuid: spec.name, name: spec.name, namespace: 'default', labels: spec.labels ?? {} };
    for (const field of ['vn', 'ip', 'mac'] as const) if (spec[field] !== undefined) registration[field] = spec[field];
    if (options.via === 'api') {
      const registered = control ? await this.registerPod(nodeIndex, registration) : [];
      try {
        const answer = await this.apiRequest(nodeIndex, 'POST', '/port', request);
        record = answer.body as PortAnswer;
        portAdd = { sentAt: answer.sentAt, answeredAt: answer.answeredAt };
      } catch (error) {
        for (const api of registered) await this.apiRequest(nodeIndex, 'DELETE', `/pods/${encodeURIComponent(spec.name)}`, undefined, api).catch(() => undefined);
        throw error;
      }
    } else {
      const args = ['port', 'add', '--id', spec.name, '--name', spec.name, '--netns', ns];
      if (spec.vn !== undefined) args.push('--vn', spec.vn);
      if (spec.ip !== undefined) args.push('--ip', spec.ip);
      if (spec.ip6 !== undefined) args.push('--ip6', spec.ip6);
      for (const [key, value] of Object.entries(spec.labels ?? {})) args.push('--label', `${key}=${value}`);
      if (spec.label !== undefined) args.push('--mpls-label', String(spec.label));
      if (spec.mac !== undefined) args.push('--mac', spec.mac);
      if (spec.mtu !== undefined) args.push('--mtu', String(spec.mtu));
      if (spec.kind !== undefined) args.push('--kind', spec.kind);
      for (const fip of spec.floatingIps ?? []) args.push('--floating-ip', floatingIpArgument(fip));
      if (control) args.push(...this.runningControlNodes().flatMap((controlNode) => ['--control-api', controlNode.podApi]), '--vrouter', node.name);
      record = JSON.parse(await this.vrouter(nodeIndex, args)) as PortAnswer;
    }
    const pod: ClusterPod = {
      name: spec.name,
      node: node.index,
      ns,
      vn: record.vn ?? spec.vn,
      ip: record.ip ?? spec.ip,
      ...(spec.ip6 !== undefined ? { ip6: spec.ip6 } : {}),
      labels: { ...(spec.labels ?? {}) },
      label: record.label,
      vif: record.vif,
      tapName: record.tapName,
      ifname: record.ifname,
      mac: record.mac,
      mtu: record.mtu,
      ...(portAdd ? { portAdd } : {}),
    };
    this.pods.set(spec.name, pod);
    if (control) this.registrations.set(spec.name, { ...registration, ip: pod.ip });
    // The pod's own IPv6 address (no DAD: the vrouter answers no probe anyway); its default route comes by router advertisement.
    if (spec.ip6 !== undefined) await this.topology.exec(ns, ['ip', '-6', 'addr', 'add', `${spec.ip6}/128`, 'dev', record.ifname, 'nodad']);
    if (control) return pod;
    await Promise.all(
      this.runningNodes()
        .filter((other) => other.index !== nodeIndex)
        .flatMap((other) => [
          this.setRoute(other.index, pod.vn, `${pod.ip}/32`, [this.nexthopTo(spec.name)], { vn: pod.vn }),
          ...(spec.ip6 !== undefined ? [this.setRoute(other.index, pod.vn, `${spec.ip6}/128`, [this.nexthopTo(spec.name)], { vn: pod.vn })] : []),
        ]),
    );
    return pod;
  }

  /**
   * `vrouter port delete` on the pod's node (in control mode with
   * `--control-api` for each running control node) and (without a control
   * node) the /32 route withdrawn on the others; the namespace stays.
   */
  async deletePod(name: string): Promise<void> {
    const pod = this.pod(name);
    await this.vrouter(pod.node, ['port', 'delete', pod.name, ...this.runningControlNodes().flatMap((control) => ['--control-api', control.podApi])]);
    this.pods.delete(name);
    this.registrations.delete(name);
    if (this.options.control) return;
    await Promise.all(
      this.runningNodes()
        .filter((other) => other.index !== pod.node)
        .flatMap((other) => [
          this.deleteRoute(other.index, pod.vn, `${pod.ip}/32`),
          ...(pod.ip6 !== undefined ? [this.deleteRoute(other.index, pod.vn, `${pod.ip6}/128`)] : []),
        ]),
    );
  }

  /**
   * Pings spec.ip from an existing pod every 2 ms, adds the pod (spec.ip is
   * required: the ping starts first) with a timed POST /port, and resolves
   * with the time from that request to the first echo reply (ping -D's
   * timestamp; the pod is registered on the pod API before): port add, control node round trip, pod namespace set up,
   * route published and programmed on the pinging node, first packet
   * forwarded both ways. answerMs: until the port add was answered.
   */
  async timePortAddToReply(nodeIndex: number, spec: PodSpec, fromPod: string, timeoutMs = 10_000): Promise<{ pod: ClusterPod; ms: number; answerMs: number }> {
    if (spec.ip === undefined) throw new Error(`timePortAddToReply: pod ${spec.name} needs an ip, to ping it before it exists`);
    requireCommands({ ping: 'iputils-ping', stdbuf: 'coreutils' });
    // ping's stdout is block-buffered into a pipe: line-buffer it, so each reply is seen as it comes.
    const ping = new ProcessOutput(
      this.spawn(fromPod, ['stdbuf', '-oL', 'ping', '-D', '-n', '-i', '0.002', '-W', '1', '-w', String(Math.ceil(timeoutMs / 1000)), spec.ip]),
    );
    try {
      await ping.waitFor(/^PING /m, 5_000, `ping ${spec.ip} starting in ${fromPod}`);
      const pod = await this.addPod(nodeIndex, spec, { via: 'api' });
      const reply = new RegExp(`^\\[(\\d+\\.\\d+)\\] \\d+ bytes from ${spec.ip.replace(/\./g, '\\.')}:`, 'm');
      const match = await ping.waitFor(reply, timeoutMs, `a reply from ${spec.name} ${spec.ip} to ${fromPod}'s ping`);
      const repliedAt = Number(match[1]) * 1000;
      return { pod, ms: repliedAt - pod.portAdd!.sentAt, answerMs: pod.portAdd!.answeredAt - pod.portAdd!.sentAt };
    } finally {
      try {
        process.kill(ping.child.pid as number, 'SIGINT');
      } catch {
        // Already gone.
      }
      await within(ping.exited, 5_000);
    }
  }

  /**
   * `vrouter route set`: the route to exactly these next hops (several make
   * ECMP); resolves to how many next hops the daemon uses.
   */
  async setRoute(nodeIndex: number, vrf: string, prefix: string, nexthops: RouteNexthop[], options: { vn?: string } = {}): Promise<number> {
    const args = ['route', 'set', '--vrf', vrf, '--prefix', prefix, ...nexthops.flatMap((nexthop) => ['--nexthop', nexthopArgument(nexthop)])];
    if (options.vn !== undefined) args.push('--vn', options.vn);
    return (JSON.parse(await this.vrouter(nodeIndex, args)) as { nexthops: number }).nexthops;
  }

  async deleteRoute(nodeIndex: number, vrf: string, prefix: string): Promise<void> {
    await this.vrouter(nodeIndex, ['route', 'delete', '--vrf', vrf, '--prefix', prefix]);
  }

  /** GET /stats of a node's daemon. */
  async stats(nodeIndex: number): Promise<DaemonStats> {
    return JSON.parse(await this.vrouter(nodeIndex, ['stats'])) as DaemonStats;
  }

  /** Runs the vrouter CLI in the node's namespace against its daemon's API; resolves to stdout. */
  async vrouter(nodeIndex: number, args: string[], options: ExecOptions = {}): Promise<string> {
    const node = this.node(nodeIndex);
    if (node.exit) throw new Error(`${node.name}: the daemon has exited (${describeExit(node.exit)})${this.logSection([node])}`);
    try {
      return await this.topology.exec(node.ns, [process.execPath, VROUTER_BIN, ...args, '--api', node.api], options);
    } catch (error) {
      throw new Error(`${node.name}: ${(error as Error).message}${this.logSection([node])}`);
    }
  }

  /**
   * Runs a vrouter utility (rt, vif, nh, flow, ...) in the node's namespace
   * against its daemon's introspect API; resolves to stdout.
   */
  async tool(nodeIndex: number, args: string[], options: ExecOptions = {}): Promise<string> {
    const node = this.node(nodeIndex);
    if (node.exit) throw new Error(`${node.name}: the daemon has exited (${describeExit(node.exit)})${this.logSection([node])}`);
    try {
      return await this.topology.exec(node.ns, [process.execPath, VROUTER_BIN, ...args, '--introspect', node.introspect], options);
    } catch (error) {
      throw new Error(`${node.name}: ${(error as Error).message}${this.logSection([node])}`);
    }
  }

  /** One HTTP request from inside the node's namespace to an address there (default: the daemon's port API), timed. */
  async apiRequest(
    nodeIndex: number,
    method: string,
    requestPath: string,
    body?: unknown,
    address?: string,
  ): Promise<{ status: number; sentAt: number; answeredAt: number; body: unknown }> {
    const node = this.node(nodeIndex);
    const target = address ?? node.api;
    const at = target.lastIndexOf(':');
    const argv = [process.execPath, '-e', HTTP_REQUEST_SCRIPT, target.slice(0, at), target.slice(at + 1), method, requestPath];
    if (body !== undefined) argv.push(JSON.stringify(body));
    let answer: { status: number; sentAt: number; answeredAt: number; body: string };
    try {
      answer = JSON.parse(await this.topology.exec(node.ns, argv));
    } catch (error) {
      throw new Error(`${node.name}: ${method} ${requestPath}: ${(error as Error).message}${this.logSection([node])}`);
    }
    let parsed: unknown = answer.body;
    try {
      parsed = answer.body ? JSON.parse(answer.body) : null;
    } catch {
      // Not JSON: the text.
    }
    if (answer.status >= 400) {
      const why = (parsed as { error?: string } | null)?.error ?? answer.body;
      throw new Error(`${node.name}: ${method} ${requestPath}: ${answer.status}: ${why}`);
    }
    return { ...answer, body: parsed };
  }

  /** GET of the node's introspect API (e.g. /api/vifs/<pod>); resolves to the parsed answer. */
  async introspect<T = unknown>(nodeIndex: number, requestPath: string): Promise<T> {
    return (await this.apiRequest(nodeIndex, 'GET', requestPath, undefined, this.node(nodeIndex).introspect)).body as T;
  }

  /** The node's routes in a VRF (`vrouter rt --dump <vrf> --json`), null when the node has no such VRF. */
  async routes(nodeIndex: number, vrf: string): Promise<RouteTable | null> {
    try {
      return await this.introspect<RouteTable>(nodeIndex, `/api/routes?vrf=${encodeURIComponent(vrf)}`);
    } catch (error) {
      if (/: 404: /.test((error as Error).message)) return null;
      throw error;
    }
  }

  /** The route for exactly this prefix in the node's VRF, or undefined. */
  async route(nodeIndex: number, vrf: string, prefix: string): Promise<RouteRow | undefined> {
    return (await this.routes(nodeIndex, vrf))?.routes.find((route) => route.prefix === prefix);
  }

  /**
   * Polls the node's route for prefix until `until` holds (default: the
   * route exists); resolves to the route (undefined when waiting for it to go).
   */
  async waitForRoute(
    nodeIndex: number,
    vrf: string,
    prefix: string,
    until: (route: RouteRow | undefined) => boolean = (route) => route !== undefined,
    timeoutMs = 15_000,
  ): Promise<RouteRow | undefined> {
    let last: RouteRow | undefined;
    await this.waitUntil(
      async () => until((last = await this.route(nodeIndex, vrf, prefix))),
      timeoutMs,
      () => `node${nodeIndex} ${vrf} ${prefix} as expected (last: ${JSON.stringify(last ?? null)})`,
    );
    return last;
  }

  /** GET /api/control-sessions of the node's daemon. */
  controlSessions(nodeIndex: number): Promise<ControlSession[]> {
    return this.introspect<ControlSession[]>(nodeIndex, '/api/control-sessions');
  }

  /** Waits until every running daemon has its sessions with these control nodes (default: the running ones) Established. */
  async waitForSessions(timeoutMs = 20_000, controlIndexes?: number[]): Promise<void> {
    const wanted = (controlIndexes ?? this.controlNodes.filter((control) => !control.exit).map((control) => control.index)).map(
      (index) => this.controlNode(index).endpoint,
    );
    let last = '';
    await this.waitUntil(
      async () => {
        const all = await Promise.all(this.runningNodes().map(async (node) => ({ node: node.name, sessions: await this.controlSessions(node.index) })));
        last = JSON.stringify(all);
        return all.every(({ sessions }) => wanted.every((endpoint) => sessions.some((session) => session.peer.endsWith(endpoint) && session.state === 'Established')));
      },
      timeoutMs,
      () => `sessions with ${wanted.join(', ')} established on every node (last: ${last})`,
    );
  }

  /** Polls check (every 50 ms) until it resolves true; throws with what() and the logs after timeoutMs. */
  async waitUntil(check: () => Promise<boolean>, timeoutMs: number, what: () => string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (await check()) return;
      if (Date.now() > deadline) throw new Error(`no ${what()} within ${timeoutMs} ms${this.logSection()}`);
      await sleep(50);
    }
  }

  /** Control mode: the control node, by index. */
  controlNode(index: number): ClusterControlNode {
    const control = this.controlNodes[index];
    if (!control) throw new Error(`no control node ${index} (the cluster has ${this.controlNodes.length})`);
    return control;
  }

  /**
   * Signals a control node and resolves once it exited: SIGKILL (a crash:
   * its sessions drop without a stream close) or SIGTERM (it closes them,
   * and must exit 0).
   */
  async killControlNode(index: number, signal: 'SIGKILL' | 'SIGTERM' = 'SIGKILL', timeoutMs = STOP_TIMEOUT_MS): Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }> {
    const control = this.controlNode(index);
    const started = Date.now();
    if (control.exit) {
      if (control.exit.expected) return { code: control.exit.code, signal: control.exit.signal, ms: 0 };
      throw new Error(`${control.name}: it had already exited (${describeExit(control.exit)})${this.logSection([], [control])}`);
    }
    const child = control.process;
    const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    this.expectControlExit.add(child);
    child.kill(signal);
    const result = await within(exited, timeoutMs);
    if (result === null) {
      try {
        process.kill(-control.pid, 'SIGKILL');
      } catch {
        // Gone meanwhile.
      }
      throw new Error(`${control.name}: did not exit within ${timeoutMs} ms of ${signal}${this.logSection([], [control])}`);
    }
    const [code, exitSignal] = result;
    if (signal === 'SIGTERM' && code !== 0) throw new Error(`${control.name}: exited with ${describeExit({ code, signal: exitSignal })} on SIGTERM${this.logSection([], [control])}`);
    return { code, signal: exitSignal, ms: Date.now() - started };
  }

  /**
   * Starts a control node (again: same namespace, address, configuration and
   * state file); resolves once it listens and has the pods added since it
   * went down, and no longer those deleted meanwhile.
   */
  async startControlNode(index: number): Promise<void> {
    const control = this.controlNode(index);
    if (!control.exit) throw new Error(`${control.name} is running (pid ${control.pid})`);
    await this.launchControlNode(control);
    const from = this.runningNodes()[0];
    if (from === undefined) return;
    const api = podApiAddress(control);
    const known = new Set(((await this.apiRequest(from.index, 'GET', '/pods', undefined, api)).body as Array<{ vmUuid: string }>).map((pod) => pod.vmUuid));
    for (const vm of known) if (!this.registrations.has(vm)) await this.apiRequest(from.index, 'DELETE', `/pods/${encodeURIComponent(vm)}`, undefined, api);
    for (const [vm, registration] of this.registrations) if (!known.has(vm)) await this.apiRequest(from.index, 'POST', '/pods', registration, api);
  }

  /**
   * Pods registered on the control nodes by other means (a bulk script, as
   * the control-node restart bench does): a control node started again
   * keeps them instead of deleting them as unknown.
   */
  adoptRegistrations(registrations: Array<Record<string, unknown> & { vmUuid: string }>): void {
    for (const registration of registrations) this.registrations.set(registration.vmUuid, registration);
  }

  /** Control mode: the control nodes running now. */
  private runningControlNodes(): ClusterControlNode[] {
    return this.controlNodes.filter((control) => !control.exit);
  }

  /**
   * POST /pods at each running control node from the node's namespace, the
   * first deciding VN and address, the next getting the pod with them;
   * resolves to the pod APIs that registered it.
   */
  private async registerPod(nodeIndex: number, registration: Record<string, unknown>): Promise<string[]> {
    const registered: string[] = [];
    let body = registration;
    try {
      for (const control of this.runningControlNodes()) {
        const api = podApiAddress(control);
        const decided = (await this.apiRequest(nodeIndex, 'POST', '/pods', body, api)).body as { vn: string; ip: string; mac: string };
        registered.push(api);
        body = { ...body, vn: decided.vn, ip: decided.ip, mac: decided.mac };
      }
    } catch (error) {
      for (const api of registered) await this.apiRequest(nodeIndex, 'DELETE', `/pods/${encodeURIComponent(String(registration.vmUuid))}`, undefined, api).catch(() => undefined);
      throw error;
    }
    return registered;
  }

  /** killControlNode, downMs later startControlNode; resolves once it listens again. */
  async restartControlNode(index: number, options: { signal?: 'SIGKILL' | 'SIGTERM'; downMs?: number } = {}): Promise<void> {
    await this.killControlNode(index, options.signal ?? 'SIGKILL');
    if (options.downMs) await sleep(options.downMs);
    await this.startControlNode(index);
  }

  /**
   * Connects from the node's namespace to a control node's XMPP port, writes
   * data, and collects the answer until the control node closes the
   * connection or waitMs passed.
   */
  async writeToControlNode(
    nodeIndex: number,
    data: Buffer,
    options: { controlNode?: number; waitMs?: number } = {},
  ): Promise<{ written: number; received: string; closedByPeer: boolean; error: string | null }> {
    const control = this.controlNode(options.controlNode ?? 0);
    const file = path.join(this.directory, `raw-${process.hrtime.bigint()}.bin`);
    fs.writeFileSync(file, data);
    try {
      const output = await this.topology.exec(this.node(nodeIndex).ns, [
        process.execPath,
        '-e',
        RAW_WRITE_SCRIPT,
        control.address,
        String(control.port),
        file,
        String(options.waitMs ?? 3_000),
      ]);
      return JSON.parse(output);
    } finally {
      fs.rmSync(file, { force: true });
    }
  }

  /** Runs argv in the pod's namespace; resolves to its stdout. */
  exec(podName: string, argv: string[], options: ExecOptions = {}): Promise<string> {
    return this.topology.exec(this.pod(podName).ns, argv, options);
  }

  /** Starts argv in the pod's namespace (killed by the topology at the latest). */
  spawn(podName: string, argv: string[], options: SpawnOptions = {}): ChildProcess {
    return this.topology.spawn(this.pod(podName).ns, argv, options);
  }

  /** Runs argv in the pod's namespace and resolves to its exit status and output, whatever the status. */
  tryExec(podName: string, argv: string[], options: ExecOptions = {}): Promise<ExecResult> {
    return runStatus(this.pod(podName).ns, argv, options.timeoutMs ?? 30_000);
  }

  execNode(nodeIndex: number, argv: string[], options: ExecOptions = {}): Promise<string> {
    return this.topology.exec(this.node(nodeIndex).ns, argv, options);
  }

  spawnNode(nodeIndex: number, argv: string[], options: SpawnOptions = {}): ChildProcess {
    return this.topology.spawn(this.node(nodeIndex).ns, argv, options);
  }

  /**
   * Starts tshark on an interface of a node (default its underlay) or a pod
   * (default eth0) with a capture filter, printing the given fields; resolves
   * once it captures. Needs tshark (Debian package tshark).
   */
  async capture(target: CaptureTarget, iface: string | undefined, filter: string, fields: string[]): Promise<Capture> {
    requireCommands({ tshark: 'tshark' });
    const ns = target.ns ?? (target.pod !== undefined ? this.pod(target.pod).ns : this.node(target.node ?? 0).ns);
    const device = iface ?? (target.pod !== undefined ? 'eth0' : 'underlay');
    const child = this.topology.spawn(ns, ['tshark', '-l', '-n', '-i', device, '-f', filter, '-T', 'fields', ...fields.flatMap((field) => ['-e', field])]);
    const output = new ProcessOutput(child);
    await output.waitFor(/Capturing on/, 20_000, `tshark's "Capturing on" (${ns} ${device})`);
    await sleep(CAPTURE_SETTLE_MS);
    return {
      stop: async () => {
        // Packets just sent may still be on their way through dumpcap.
        await sleep(500);
        try {
          process.kill(child.pid as number, 'SIGINT');
        } catch {
          // Already gone.
        }
        const exit = await within(output.exited, 10_000);
        if (exit === null) {
          try {
            process.kill(-(child.pid as number), 'SIGKILL');
          } catch {
            // Already gone.
          }
          throw new Error(`tshark in ${ns} did not stop on SIGINT:\n${output.stderr}`);
        }
        return output.stdout
          .split('\n')
          .filter((line) => line.length > 0)
          .map((line) => line.split('\t'));
      },
    };
  }

  /** Every daemon's (and control node's) log (the last lines of each), with how each exited if it did. */
  logs(nodes: ClusterNode[] = this.nodes, controlNodes: ClusterControlNode[] = nodes === this.nodes ? this.controlNodes : []): string {
    const controlLogs = controlNodes.map((control) => {
      const state = control.exit ? `exited: ${describeExit(control.exit)}${control.exit.expected ? ' (as asked)' : ''}` : `running, pid ${control.pid}`;
      return `--- ${control.name} (${control.ns}, ${control.endpoint}, ${state}) ${control.logFile} ---\n${tailOf(control.logFile)}`;
    });
    const nodeLogs = nodes
      .map((node) => {
        let text: string;
        try {
          const lines = fs.readFileSync(node.logFile, 'utf8').split('\n');
          text = lines.slice(-LOG_TAIL).join('\n');
        } catch (error) {
          text = `(no log: ${(error as Error).message})`;
        }
        const state = node.exit ? `exited: ${describeExit(node.exit)}` : `running, pid ${node.pid}`;
        return `--- ${node.name} (${node.ns}, ${node.underlayIp}, ${state}) ${node.logFile} ---\n${text.trimEnd()}`;
      });
    return [...controlLogs, ...nodeLogs].join('\n');
  }

  /** Runs fn; a failure is rethrown with every daemon's log (and counters) appended. */
  async withLogs<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      throw await this.explain(error);
    }
  }

  /** The error with every daemon's log and the running daemons' counters appended. */
  async explain(error: unknown): Promise<Error> {
    const base = error instanceof Error ? error : new Error(String(error));
    const stats: string[] = [];
    for (const node of this.runningNodes()) {
      try {
        const counters = JSON.parse(await this.vrouter(node.index, ['stats'], { timeoutMs: 5_000 })) as DaemonStats;
        stats.push(`${node.name}: ${JSON.stringify({ received: counters.received, transmitted: counters.transmitted, drops: counters.drops, flows: counters.flows })}`);
      } catch (statsError) {
        stats.push(`${node.name}: stats failed: ${(statsError as Error).message.split('\n')[0]}`);
      }
    }
    const unexpected = [...this.nodes, ...this.controlNodes].filter((node) => node.exit && !node.exit.expected);
    const note = unexpected.length ? `\n(exited on its own: ${unexpected.map((node) => `${node.name} ${describeExit(node.exit!)}`).join(', ')})` : '';
    // One copy of the logs: a message from vrouter() may carry its node's already.
    const message = base.message.split(LOG_MARKER)[0];
    const explained = new Error(`${message}${note}\n=== daemon counters ===\n${stats.join('\n')}${this.logSection()}`);
    const frames = (base.stack ?? '').split('\n').filter((line) => /^\s+at /.test(line));
    explained.stack = `${explained.message}\n${frames.join('\n')}`;
    return explained;
  }

  /**
   * SIGTERM to one daemon; resolves once it exited with code 0 (throws with
   * its log when it exits otherwise or not within timeoutMs, then SIGKILLs).
   */
  async stopNode(nodeIndex: number, timeoutMs = STOP_TIMEOUT_MS): Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }> {
    const node = this.node(nodeIndex);
    const started = Date.now();
    if (node.exit) {
      if (node.exit.expected) return { code: node.exit.code, signal: node.exit.signal, ms: 0 };
      throw new Error(`${node.name}: the daemon had already exited (${describeExit(node.exit)})${this.logSection([node])}`);
    }
    const exited = once(node.process, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    this.expectExit.add(node.index);
    node.process.kill('SIGTERM');
    const result = await within(exited, timeoutMs);
    if (result === null) {
      try {
        process.kill(-node.pid, 'SIGKILL');
      } catch {
        // Gone meanwhile.
      }
      throw new Error(`${node.name}: the daemon (pid ${node.pid}) did not exit within ${timeoutMs} ms of SIGTERM${this.logSection([node])}`);
    }
    const [code, signal] = result;
    if (code !== 0) throw new Error(`${node.name}: the daemon exited with ${describeExit({ code, signal })} on SIGTERM${this.logSection([node])}`);
    return { code, signal, ms: Date.now() - started };
  }

  /**
   * Stops a daemon with signal (SIGTERM: it must exit 0) and starts it again
   * in its namespace on the same state file and options (its log goes on);
   * resolves once the new one answers its API. downMs: from the signal to
   * the old process's exit; upMs: from then to the new one logging that it
   * runs (its ports restored).
   */
  async restartNode(nodeIndex: number, options: { signal: 'SIGTERM' | 'SIGKILL' }): Promise<{ downMs: number; upMs: number }> {
    const node = this.node(nodeIndex);
    if (node.exit) throw new Error(`${node.name}: the daemon has exited (${describeExit(node.exit)})${this.logSection([node])}`);
    const started = Date.now();
    const exited = once(node.process, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    this.expectExit.add(node.index);
    node.process.kill(options.signal);
    const result = await within(exited, STOP_TIMEOUT_MS);
    if (result === null) throw new Error(`${node.name}: the daemon (pid ${node.pid}) did not exit within ${STOP_TIMEOUT_MS} ms of ${options.signal}${this.logSection([node])}`);
    if (options.signal === 'SIGTERM' && result[0] !== 0) throw new Error(`${node.name}: the daemon exited with ${describeExit({ code: result[0], signal: result[1] })} on SIGTERM${this.logSection([node])}`);
    const down = Date.now();
    this.expectExit.delete(node.index);
    node.exit = undefined;
    const logged = fs.statSync(node.logFile).size;
    this.spawnDaemon(node);
    // Watching the log costs the starting daemon no CPU, as polling its API with CLI processes would.
    const deadline = down + (this.options.startTimeoutMs ?? 20_000);
    while (!readFrom(node.logFile, logged).includes('"msg":"vrouter running"')) {
      if (node.exit) throw new Error(`${node.name}: the daemon exited at start (${describeExit(node.exit)})${this.logSection([node])}`);
      if (Date.now() > deadline) throw new Error(`${node.name}: the restarted daemon did not log "vrouter running" in time${this.logSection([node])}`);
      await sleep(20);
    }
    const upMs = Date.now() - down;
    await this.waitUntilAnswering(node);
    return { downMs: down - started, upMs };
  }

  /**
   * Stops every running daemon, then every control node (SIGTERM, checked)
   * and removes the temp directory; safe to call again.
   */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      const results = await Promise.allSettled(this.runningNodes().map((node) => this.stopNode(node.index)));
      const controlResults = await Promise.allSettled(
        this.controlNodes.filter((control) => !control.exit).map((control) => this.killControlNode(control.index, 'SIGTERM')),
      );
      const failures = [...results, ...controlResults].flatMap((result) => (result.status === 'rejected' ? [(result.reason as Error).message] : []));
      const unexpected = this.nodes.filter((node) => node.exit && !node.exit.expected);
      for (const node of unexpected) failures.push(`${node.name}: the daemon exited on its own before stop (${describeExit(node.exit!)})${this.logSection([node])}`);
      for (const control of this.controlNodes.filter((candidate) => candidate.exit && !candidate.exit.expected)) {
        failures.push(`${control.name}: exited on its own before stop (${describeExit(control.exit!)})${this.logSection([], [control])}`);
      }
      if (process.env.VROUTER_CLUSTER_KEEP) {
        process.stderr.write(`vrouter-cluster: kept ${this.directory}\n`);
      } else {
        fs.rmSync(this.directory, { recursive: true, force: true });
        liveDirectories.delete(this.directory);
      }
      if (failures.length > 0) throw new Error(failures.join('\n'));
    })();
    return this.stopping;
  }

  private readonly expectExit = new Set<number>();
  /** Control node processes killed on purpose. */
  private readonly expectControlExit = new WeakSet<ChildProcess>();

  private runningNodes(): ClusterNode[] {
    return this.nodes.filter((node) => node.exit === undefined && !this.expectExit.has(node.index));
  }

  private node(index: number): ClusterNode {
    const node = this.nodes[index];
    if (!node) throw new Error(`no node ${index} (the cluster has ${this.nodes.length})`);
    return node;
  }

  private logSection(nodes: ClusterNode[] = this.nodes, controlNodes?: ClusterControlNode[]): string {
    return `${LOG_MARKER}${this.logs(nodes, controlNodes)}`;
  }

  /** The external namespace and its veth to the gateway node, and the gateway node's --gateway. */
  private async setUpExternal(gateway: NonNullable<ClusterOptions['gateway']>, nodeNs: string | undefined, role: string): Promise<void> {
    if (!this.options.control || nodeNs === undefined) throw new Error(`gateway: needs control mode and node ${gateway.node} among the nodes`);
    const externalNs = await this.topology.addNamespace(role);
    // Pod-sized, so what the external side sends fits the tunnel as a pod's does.
    await this.topology.addVethPair(externalNs, 'ext0', nodeNs, 'vgw0', { mtu: this.podMtu });
    // Full checksums from the external side, as from a router on a real link: a veth's tx offload leaves them partial, which NAT cannot update.
    await this.topology.exec(externalNs, [process.execPath, '-e', `require(${JSON.stringify(nativeIoPath())}).disableTxOffloads('ext0')`]);
    this.externalNs = externalNs;
    const keys = [`routing_instance=${gateway.routingInstance}`, 'interface=vgw0', `ip_blocks=${gateway.ipBlocks.join(' ')}`, `mac=${await this.topology.macOf(externalNs, 'ext0')}`];
    if (gateway.routes) keys.push(`routes=${gateway.routes.join(' ')}`);
    this.gatewayFlag = keys.join(',');
  }

  /** Creates a control node's address, configuration file and record, and starts it. */
  private async setUpControlNode(index: number, ns: string): Promise<void> {
    const address = `${UNDERLAY_PREFIX}${FIRST_CONTROL_HOST + index}`;
    await this.topology.exec(ns, ['ip', 'address', 'add', `${address}/24`, 'dev', 'underlay']);
    // Its own directory: the control node watches the configuration file's directory for changes.
    const configDirectory = path.join(this.directory, `control${index}`);
    fs.mkdirSync(configDirectory);
    const configFile = path.join(configDirectory, 'network.json');
    fs.writeFileSync(configFile, JSON.stringify(this.options.control!.config, null, 2) + '\n');
    const control: ClusterControlNode = {
      index,
      name: `control${index}`,
      ns,
      address,
      port: CONTROL_PORT,
      endpoint: `${address}:${CONTROL_PORT}`,
      podApi: `http://${address}:${POD_API_PORT}`,
      configFile,
      logFile: path.join(this.directory, `control${index}.log`),
      pid: 0,
      process: undefined as unknown as ChildProcess,
      exit: { code: null, signal: null, expected: true },
    };
    this.controlNodes[index] = control;
    await this.launchControlNode(control);
  }

  private async launchControlNode(control: ClusterControlNode): Promise<void> {
    const logOffset = fs.existsSync(control.logFile) ? fs.statSync(control.logFile).size : 0;
    const logFd = fs.openSync(control.logFile, 'a');
    let child: ChildProcess;
    try {
      const stateFile = path.join(path.dirname(control.configFile), 'pods.json');
      child = this.topology.spawn(control.ns, [process.execPath, CONTROL_BIN, '--config', control.configFile, '--listen', control.endpoint, '--api', podApiAddress(control), '--state', stateFile, ...(this.options.control!.routeSources ?? []).flatMap((name) => ['--route-source', name])], {
        stdio: ['ignore', logFd, logFd],
      });
    } finally {
      fs.closeSync(logFd);
    }
    if (child.pid === undefined) throw new Error(`${control.name}: could not start vrouter-control`);
    control.process = child;
    control.pid = child.pid;
    control.exit = undefined;
    child.once('exit', (code, signal) => {
      // A late exit of a previous process does not describe the current one.
      if (control.process === child) control.exit = { code, signal, expected: this.expectControlExit.has(child) };
    });
    const deadline = Date.now() + (this.options.startTimeoutMs ?? 20_000);
    for (;;) {
      if (control.exit) throw new Error(`${control.name}: vrouter-control exited at start (${describeExit(control.exit)})${this.logSection([], [control])}`);
      const text = readFrom(control.logFile, logOffset);
      if (CONTROL_LISTENING.test(text)) return;
      if (Date.now() > deadline) throw new Error(`${control.name}: vrouter-control did not listen on ${control.endpoint} in time${this.logSection([], [control])}`);
      await sleep(50);
    }
  }

  private async startNode(index: number, ns: string): Promise<void> {
    const underlayIp = `${UNDERLAY_PREFIX}${FIRST_NODE_HOST + index}`;
    await this.topology.exec(ns, ['ip', 'address', 'add', `${underlayIp}/24`, 'dev', 'underlay']);
    const underlayMac = await this.topology.macOf(ns, 'underlay');
    const name = `node${index}`;
    const state: StateDocument = {
      node: { name, underlayIp, encapPriority: this.options.encapPriority },
      ...(this.options.flows ? { flows: this.options.flows } : {}),
      // In control mode the VRFs come with the ports the control node configures.
      vrfs: this.options.vns.map((vn, vnIndex) => ({
        id: vnIndex + 1,
        name: vn.name,
        subnets: [vn.subnet, ...(vn.subnet6 ? [vn.subnet6] : [])],
        gateway: vn.gateway,
        ...(vn.gateway6 ? { gateway6: vn.gateway6 } : {}),
        ...(vn.uses ? { uses: vn.uses } : {}),
      })),
      vifs: [{ id: 0, kind: 'fabric', name: 'underlay', mac: underlayMac, ip: underlayIp, mtu: this.options.underlayMtu }],
      ...(this.options.policies ? { policies: this.options.policies } : {}),
      ...(this.options.services ? { services: this.options.services } : {}),
    };
    const stateFile = path.join(this.directory, `${name}.json`);
    const logFile = path.join(this.directory, `${name}.log`);
    fs.writeFileSync(stateFile, JSON.stringify(state, null, 2) + '\n');
    const node = {
      index,
      name,
      ns,
      underlayIf: 'underlay',
      underlayIp,
      underlayMac,
      api: this.options.api,
      introspect: DEFAULT_INTROSPECT,
      stateFile,
      logFile,
    } as ClusterNode;
    this.nodes[index] = node;
    this.spawnDaemon(node);
    await this.waitUntilAnswering(node);
  }

  /** Starts the node's daemon (`vrouter run` on its state file, logging to its log file); sets pid and process. */
  private spawnDaemon(node: ClusterNode): void {
    const control = this.options.control;
    const logFd = fs.openSync(node.logFile, 'a');
    let child: ChildProcess;
    try {
      const controlArgs = control
        ? [...this.controlNodes.flatMap((controlNode) => ['--control', controlNode.endpoint]), ...(control.holdTime !== undefined ? ['--hold-time', String(control.holdTime)] : [])]
        : [];
      const exitArgs = this.options.restartable ? [] : ['--clean-exit'];
      const gatewayArgs = this.gatewayFlag !== undefined && node.index === this.options.gateway?.node ? ['--gateway', this.gatewayFlag] : [];
      child = this.topology.spawn(node.ns, [process.execPath, VROUTER_BIN, 'run', '--state', node.stateFile, '--api', this.options.api, ...controlArgs, ...exitArgs, ...gatewayArgs], {
        stdio: ['ignore', logFd, logFd],
        env: { ...process.env, VROUTER_LOG_LEVEL: this.options.logLevel ?? process.env.VROUTER_LOG_LEVEL ?? 'info' },
      });
    } finally {
      fs.closeSync(logFd);
    }
    if (child.pid === undefined) throw new Error(`${node.name}: could not start the daemon`);
    node.pid = child.pid;
    node.process = child;
    child.once('exit', (code, signal) => {
      // A restarted node's old process must not mark the new one as exited.
      if (node.process === child) node.exit = { code, signal, expected: this.expectExit.has(node.index) };
    });
  }

  private async waitUntilAnswering(node: ClusterNode): Promise<void> {
    const timeoutMs = this.options.startTimeoutMs ?? 20_000;
    const deadline = Date.now() + timeoutMs;
    let last = '';
    for (;;) {
      if (node.exit) throw new Error(`${node.name}: the daemon exited at start (${describeExit(node.exit)})${this.logSection([node])}`);
      try {
        await this.topology.exec(node.ns, [process.execPath, VROUTER_BIN, 'stats', '--api', node.api], { timeoutMs: 5_000 });
        return;
      } catch (error) {
        last = (error as Error).message;
      }
      if (Date.now() > deadline) {
        throw new Error(`${node.name}: the daemon's API at ${node.api} did not answer within ${timeoutMs} ms (last: ${last})${this.logSection([node])}`);
      }
      await sleep(100);
    }
  }
}

/** GET /stats, as the dataplane worker reports it. */
export interface DaemonStats {
  received: number;
  transmitted: number;
  generated: number;
  held: number;
  flows: number;
  drops: Record<string, number>;
  vifs: Array<{ id: number; name: string; kind: string; vrf: number; txDropped: number } & Record<string, number | string>>;
  vrfs: Array<{ id: number; name: string; routes: number }>;
}

export interface ExecResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function runStatus(ns: string, argv: string[], timeoutMs: number): Promise<ExecResult> {
  return new Promise((resolve) => {
    execFile('ip', ['netns', 'exec', ns, ...argv], { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      const failure = error as (Error & { code?: number | string; signal?: NodeJS.Signals }) | null;
      const code = failure === null ? 0 : typeof failure.code === 'number' ? failure.code : null;
      resolve({ code, signal: failure?.signal ?? null, stdout, stderr });
    });
  });
}

/** The last lines of a log file. */
function tailOf(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-LOG_TAIL).join('\n').trimEnd();
  } catch (error) {
    return `(no log: ${(error as Error).message})`;
  }
}

/** A file's text from a byte offset on ('' when it is not there). */
function readFrom(file: string, offset: number): string {
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const buffer = Buffer.alloc(Math.max(0, size - offset));
      fs.readSync(fd, buffer, 0, buffer.length, offset);
      return buffer.toString('utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return '';
  }
}

function describeExit(exit: { code: number | null; signal: NodeJS.Signals | null }): string {
  return exit.signal ? `signal ${exit.signal}` : `code ${exit.code}`;
}
