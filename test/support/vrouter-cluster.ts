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
 *   await cluster.stop();                // SIGTERM the others, check they exit, remove the temp dir
 *   await topology.destroy();            // the Topology deletes the namespaces (and anything left in them)
 *
 * cluster.nodes[i] gives a node's namespace, underlay address and MAC, API,
 * state and log file and daemon pid (for CPU measurements); cluster.pod(name)
 * a pod's namespace, IP, label, vif, TAP name and MTU.
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
import type { FlowsEntry, PolicyEntry, ServiceEntry, StateDocument } from '../../src/control/state-schema';
import { ExecOptions, Topology, requireCommands } from './netns';

export type Encap = 'udp' | 'gre';

export interface VnSpec {
  name: string;
  /** The VN's subnet, a.b.c.d/len: the ARP proxy answers for it. */
  subnet: string;
  gateway: string;
  /** Services (by name) this VN may reach. */
  uses?: string[];
}

export interface ClusterOptions {
  nodes: number;
  vns: VnSpec[];
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
}

export interface FloatingIpSpec {
  ip: string;
  portMap?: Array<{ protocol: 'tcp' | 'udp'; port: number; targetPort?: number }>;
}

export interface PodSpec {
  /** [a-z0-9-]: the pod's id, and its namespace is `<prefix>-pod-<name>`. */
  name: string;
  vn: string;
  ip: string;
  /** The MPLS label other nodes use to reach it (default: the daemon's next free one). */
  label?: number;
  /** ClusterIPs the pod backs (`vrouter port add --floating-ip`). */
  floatingIps?: FloatingIpSpec[];
  mac?: string;
  mtu?: number;
}

export interface ClusterPod {
  name: string;
  node: number;
  ns: string;
  vn: string;
  ip: string;
  label: number;
  vif: number;
  tapName: string;
  ifname: string;
  mac: string;
  mtu: number;
}

export interface ClusterNode {
  index: number;
  name: string;
  ns: string;
  /** The node's underlay interface (a veth to the underlay bridge). */
  underlayIf: string;
  underlayIp: string;
  underlayMac: string;
  api: string;
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
const DEFAULT_API = '127.0.0.1:9091';
const VROUTER_BIN = path.resolve(__dirname, '..', '..', '..', 'bin', 'vrouter.js');
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
  readonly underlayNs: string;
  readonly podMtu: number;
  private readonly pods = new Map<string, ClusterPod>();
  private stopping: Promise<void> | undefined;

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
    const full = {
      encapPriority: ['udp', 'gre'] as Encap[],
      underlayMtu: 1500,
      api: DEFAULT_API,
      ...options,
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
      const nodeNamespaces: string[] = [];
      for (let index = 0; index < options.nodes; index++) {
        const ns = await topology.addNamespace(role(`node${index}`));
        await topology.addVethPair(ns, 'underlay', underlayNs, `n${index}`, { mtu: full.underlayMtu });
        nodeNamespaces.push(ns);
      }
      await topology.addBridge(
        underlayNs,
        'br0',
        nodeNamespaces.map((_, index) => `n${index}`),
      );
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
   * add`: a TAP moved in as eth0, ip/32, routes via the gateway), then sets
   * the /32 route to it on every other running node.
   */
  async addPod(nodeIndex: number, spec: PodSpec): Promise<ClusterPod> {
    const node = this.node(nodeIndex);
    if (this.pods.has(spec.name)) throw new Error(`pod ${spec.name} exists already`);
    const ns = await this.topology.addNamespace(this.options.tag ? `${this.options.tag}-pod-${spec.name}` : `pod-${spec.name}`);
    const args = ['port', 'add', '--id', spec.name, '--name', spec.name, '--netns', ns, '--vn', spec.vn, '--ip', spec.ip];
    if (spec.label !== undefined) args.push('--mpls-label', String(spec.label));
    if (spec.mac !== undefined) args.push('--mac', spec.mac);
    if (spec.mtu !== undefined) args.push('--mtu', String(spec.mtu));
    for (const fip of spec.floatingIps ?? []) args.push('--floating-ip', floatingIpArgument(fip));
    const record = JSON.parse(await this.vrouter(nodeIndex, args)) as { vif: number; label: number; tapName: string; ifname: string; mac: string; mtu: number };
    const pod: ClusterPod = {
      name: spec.name,
      node: node.index,
      ns,
      vn: spec.vn,
      ip: spec.ip,
      label: record.label,
      vif: record.vif,
      tapName: record.tapName,
      ifname: record.ifname,
      mac: record.mac,
      mtu: record.mtu,
    };
    this.pods.set(spec.name, pod);
    await Promise.all(
      this.runningNodes()
        .filter((other) => other.index !== nodeIndex)
        .map((other) => this.setRoute(other.index, spec.vn, `${spec.ip}/32`, [this.nexthopTo(spec.name)], { vn: spec.vn })),
    );
    return pod;
  }

  /** `vrouter port delete` on the pod's node and the /32 route withdrawn on the others; the namespace stays. */
  async deletePod(name: string): Promise<void> {
    const pod = this.pod(name);
    await this.vrouter(pod.node, ['port', 'delete', pod.name]);
    this.pods.delete(name);
    await Promise.all(
      this.runningNodes()
        .filter((other) => other.index !== pod.node)
        .map((other) => this.deleteRoute(other.index, pod.vn, `${pod.ip}/32`)),
    );
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
    const ns = target.pod !== undefined ? this.pod(target.pod).ns : this.node(target.node ?? 0).ns;
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

  /** Every daemon's log (the last lines of each), with how each exited if it did. */
  logs(nodes: ClusterNode[] = this.nodes): string {
    return nodes
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
      })
      .join('\n');
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
    const unexpected = this.nodes.filter((node) => node.exit && !node.exit.expected);
    const note = unexpected.length ? `\n(daemon exited on its own: ${unexpected.map((node) => `${node.name} ${describeExit(node.exit!)}`).join(', ')})` : '';
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

  /** Stops every running daemon (SIGTERM, checked) and removes the temp directory; safe to call again. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      const results = await Promise.allSettled(this.runningNodes().map((node) => this.stopNode(node.index)));
      const failures = results.flatMap((result) => (result.status === 'rejected' ? [(result.reason as Error).message] : []));
      const unexpected = this.nodes.filter((node) => node.exit && !node.exit.expected);
      for (const node of unexpected) failures.push(`${node.name}: the daemon exited on its own before stop (${describeExit(node.exit!)})${this.logSection([node])}`);
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

  private runningNodes(): ClusterNode[] {
    return this.nodes.filter((node) => node.exit === undefined && !this.expectExit.has(node.index));
  }

  private node(index: number): ClusterNode {
    const node = this.nodes[index];
    if (!node) throw new Error(`no node ${index} (the cluster has ${this.nodes.length})`);
    return node;
  }

  private logSection(nodes: ClusterNode[] = this.nodes): string {
    return `${LOG_MARKER}${this.logs(nodes)}`;
  }

  private async startNode(index: number, ns: string): Promise<void> {
    const underlayIp = `${UNDERLAY_PREFIX}${FIRST_NODE_HOST + index}`;
    await this.topology.exec(ns, ['ip', 'address', 'add', `${underlayIp}/24`, 'dev', 'underlay']);
    const underlayMac = await this.topology.macOf(ns, 'underlay');
    const name = `node${index}`;
    const state: StateDocument = {
      node: { name, underlayIp, encapPriority: this.options.encapPriority },
      ...(this.options.flows ? { flows: this.options.flows } : {}),
      vrfs: this.options.vns.map((vn, vnIndex) => ({
        id: vnIndex + 1,
        name: vn.name,
        subnets: [vn.subnet],
        gateway: vn.gateway,
        ...(vn.uses ? { uses: vn.uses } : {}),
      })),
      vifs: [{ id: 0, kind: 'fabric', name: 'underlay', mac: underlayMac, ip: underlayIp, mtu: this.options.underlayMtu }],
      ...(this.options.policies ? { policies: this.options.policies } : {}),
      ...(this.options.services ? { services: this.options.services } : {}),
    };
    const stateFile = path.join(this.directory, `${name}.json`);
    const logFile = path.join(this.directory, `${name}.log`);
    fs.writeFileSync(stateFile, JSON.stringify(state, null, 2) + '\n');
    const logFd = fs.openSync(logFile, 'a');
    let child: ChildProcess;
    try {
      child = this.topology.spawn(ns, [process.execPath, VROUTER_BIN, 'run', '--state', stateFile, '--api', this.options.api], {
        stdio: ['ignore', logFd, logFd],
        env: { ...process.env, VROUTER_LOG_LEVEL: this.options.logLevel ?? process.env.VROUTER_LOG_LEVEL ?? 'info' },
      });
    } finally {
      fs.closeSync(logFd);
    }
    if (child.pid === undefined) throw new Error(`${name}: could not start the daemon`);
    const node: ClusterNode = {
      index,
      name,
      ns,
      underlayIf: 'underlay',
      underlayIp,
      underlayMac,
      api: this.options.api,
      stateFile,
      logFile,
      pid: child.pid,
      process: child,
    };
    this.nodes[index] = node;
    child.once('exit', (code, signal) => {
      node.exit = { code, signal, expected: this.expectExit.has(index) };
    });
    await this.waitUntilAnswering(node);
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

function describeExit(exit: { code: number | null; signal: NodeJS.Signals | null }): string {
  return exit.signal ? `signal ${exit.signal}` : `code ${exit.code}`;
}
