/**
 * Topologies of network namespaces for end-to-end tests, the demo and the
 * benchmarks.
 *
 * Network safety: every node (pods, hosts, the underlay) is a namespace made
 * here. Commands run in the root namespace only create and delete namespaces;
 * links are created inside namespaces, so no packet is ever sent from the root
 * namespace. Names carry a per-run prefix (`vrt` + 5 base36 chars) and
 * everything is removed by destroy(), on exit (uncaught exceptions and
 * unhandled rejections included) and on SIGINT/SIGTERM/SIGHUP.
 */
import { ChildProcess, SpawnOptions, execFile, execFileSync, spawn } from 'node:child_process';
import { randomInt } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export type InterfaceCounter =
  | 'rx_packets'
  | 'tx_packets'
  | 'rx_bytes'
  | 'tx_bytes'
  | 'rx_dropped'
  | 'tx_dropped'
  | 'rx_errors'
  | 'tx_errors';

export interface ExecOptions {
  /** Kills the command (SIGKILL) and rejects after this long; default 30 s. */
  timeoutMs?: number;
}

export interface PodAddressing {
  ip: string;
  gateway: string;
  mac?: string;
  mtu?: number;
}

const DEFAULT_TIMEOUT_MS = 30_000;
const NETNS_DIR = '/run/netns';
/** One file per live run: who owns a prefix, so sweepStale() spares concurrent runs. */
const OWNER_DIR = '/run/vrouter-ts/netns-owners';
const PREFIX_ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyz';
const OUR_NAMESPACE = /^(vrt[0-9a-z]{5})-/;
const ROLE = /^[a-z0-9][a-z0-9-]{0,31}$/;
/** IFNAMSIZ is 16 with the terminating NUL; '/' and whitespace are never valid. */
const INTERFACE_NAME = /^[A-Za-z0-9_.-]{1,15}$/;
const TERMINATE_GRACE_MS = 2_000;

/** Runs a command in the current namespace; rejects with its stderr on failure. */
function run(file: string, args: string[], timeoutMs = DEFAULT_TIMEOUT_MS): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (!error) return resolve(stdout);
      const why = error.killed ? `timed out after ${timeoutMs} ms` : `exit ${error.code ?? error.signal}`;
      reject(new Error(`${[file, ...args].join(' ')}: ${why}: ${stderr.trim() || error.message}`));
    });
  });
}

/** Throws naming the Debian package to install when a required command is missing. */
export function requireCommands(packagesByCommand: Record<string, string>): void {
  const missing = Object.entries(packagesByCommand).filter(([command]) => {
    try {
      execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
      return false;
    } catch {
      return true;
    }
  });
  if (missing.length > 0) {
    const packages = [...new Set(missing.map(([, pkg]) => pkg))].join(' ');
    throw new Error(`missing ${missing.map(([command]) => command).join(', ')}: apt-get install -y ${packages}`);
  }
}

function existingNamespaces(): string[] {
  try {
    return fs.readdirSync(NETNS_DIR);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

/** Field 22 of /proc/<pid>/stat: with the pid, it identifies a process across pid reuse. */
function processStartTime(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

function ownerFile(prefix: string): string {
  return path.join(OWNER_DIR, prefix);
}

function ownerIsAlive(prefix: string): boolean {
  try {
    const owner = JSON.parse(fs.readFileSync(ownerFile(prefix), 'utf8')) as { pid: number; startTime: string };
    return processStartTime(owner.pid) === owner.startTime;
  } catch {
    return false;
  }
}

function uniquePrefix(): string {
  const taken = new Set(existingNamespaces().map((name) => OUR_NAMESPACE.exec(name)?.[1]));
  for (;;) {
    let prefix = 'vrt';
    for (let i = 0; i < 5; i++) prefix += PREFIX_ALPHABET[randomInt(PREFIX_ALPHABET.length)];
    if (!taken.has(prefix) && !fs.existsSync(ownerFile(prefix))) return prefix;
  }
}

function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone.
  }
}

function namespacePidsSync(namespace: string): number[] {
  try {
    return execFileSync('ip', ['netns', 'pids', namespace], { encoding: 'utf8' }).split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Kills every process inside the namespace, then deletes it (and with it its links). */
function deleteNamespaceSync(namespace: string): void {
  for (const pid of namespacePidsSync(namespace)) killQuietly(pid, 'SIGKILL');
  try {
    execFileSync('ip', ['netns', 'delete', namespace], { stdio: 'ignore' });
  } catch {
    // Never created, or already deleted.
  }
}

const liveTopologies = new Set<Topology>();
let exitHooksInstalled = false;

function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  // 'exit' also fires after an uncaught exception or unhandled rejection,
  // without changing how the process (or node:test) reports it.
  process.on('exit', destroyAllSync);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      destroyAllSync();
      process.removeListener(signal, onSignal);
      // Die of the signal as without us, unless someone else handles it.
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    };
    process.on(signal, onSignal);
  }
}

function destroyAllSync(): void {
  for (const topology of liveTopologies) topology.destroySync();
}

export class Topology {
  /** `vrt` + 5 base36 chars, unique among this machine's namespaces. */
  readonly prefix: string;
  private readonly namespaces = new Set<string>();
  /** Process-group leaders started by spawn() and still running. */
  private readonly processes = new Set<ChildProcess>();
  private teardown: Promise<void> | undefined;

  constructor() {
    this.prefix = uniquePrefix();
    // Written before any namespace exists, so a namespace without a live owner is stale.
    fs.mkdirSync(OWNER_DIR, { recursive: true });
    fs.writeFileSync(ownerFile(this.prefix), JSON.stringify({ pid: process.pid, startTime: processStartTime(process.pid) }));
    liveTopologies.add(this);
    installExitHooks();
  }

  /**
   * Creates `<prefix>-<role>` with `lo` up. IPv6 is off unless asked for, so
   * links carry no ND/MLD chatter and counters count only the test's packets.
   */
  async addNamespace(role: string, options: { ipv6?: boolean } = {}): Promise<string> {
    this.assertLive();
    if (!ROLE.test(role)) throw new Error(`namespace role ${JSON.stringify(role)}: use [a-z0-9-], at most 32 chars`);
    const name = `${this.prefix}-${role}`;
    if (this.namespaces.has(name)) throw new Error(`namespace ${name} already exists`);
    // Tracked before it exists: a failure half-way still gets it deleted.
    this.namespaces.add(name);
    await run('ip', ['netns', 'add', name]);
    await this.ip(name, ['link', 'set', 'lo', 'up']);
    if (!options.ipv6) {
      await this.exec(name, ['sysctl', '-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
    }
    return name;
  }

  /** A veth pair with both ends up; it is created inside nsA, its peer straight into nsB. */
  async addVethPair(nsA: string, ifA: string, nsB: string, ifB: string, options: { mtu?: number } = {}): Promise<void> {
    this.assertOwned(nsA, nsB);
    assertInterfaceName(ifA, ifB);
    const mtu = options.mtu === undefined ? [] : ['mtu', String(options.mtu)];
    await this.ip(nsA, ['link', 'add', ifA, ...mtu, 'type', 'veth', 'peer', 'name', ifB, ...mtu, 'netns', nsB]);
    await this.ip(nsA, ['link', 'set', ifA, 'up']);
    await this.ip(nsB, ['link', 'set', ifB, 'up']);
  }

  /** A Linux bridge (STP off, so ports forward at once) enslaving `ports`, up. */
  async addBridge(ns: string, name: string, ports: string[]): Promise<void> {
    this.assertOwned(ns);
    assertInterfaceName(name, ...ports);
    await this.ip(ns, ['link', 'add', name, 'type', 'bridge', 'stp_state', '0']);
    for (const port of ports) await this.ip(ns, ['link', 'set', port, 'master', name]);
    await this.ip(ns, ['link', 'set', name, 'up']);
  }

  /**
   * A pod's interface as a CNI sets it: `ip/32`, a link route to the gateway
   * and the default route through it (onlink), link up.
   */
  async configurePod(ns: string, ifname: string, pod: PodAddressing): Promise<void> {
    this.assertOwned(ns);
    assertInterfaceName(ifname);
    if (pod.mac !== undefined) await this.ip(ns, ['link', 'set', 'dev', ifname, 'address', pod.mac]);
    if (pod.mtu !== undefined) await this.ip(ns, ['link', 'set', 'dev', ifname, 'mtu', String(pod.mtu)]);
    await this.ip(ns, ['address', 'add', `${pod.ip}/32`, 'dev', ifname]);
    await this.ip(ns, ['link', 'set', 'dev', ifname, 'up']);
    await this.ip(ns, ['route', 'add', pod.gateway, 'dev', ifname, 'scope', 'link']);
    await this.ip(ns, ['route', 'add', 'default', 'via', pod.gateway, 'dev', ifname, 'onlink']);
  }

  /** Runs argv inside the namespace; resolves to its stdout, rejects with its stderr. */
  async exec(ns: string, argv: string[], options: ExecOptions = {}): Promise<string> {
    this.assertOwned(ns);
    return run('ip', ['netns', 'exec', ns, ...argv], options.timeoutMs);
  }

  /**
   * Starts argv inside the namespace as the leader of a new process group, so
   * destroy() can kill it with everything it forked. stdout and stderr are
   * pipes unless options.stdio says otherwise: read them, or pass 'ignore'.
   */
  spawn(ns: string, argv: string[], options: SpawnOptions = {}): ChildProcess {
    this.assertOwned(ns);
    // `ip netns exec` execs argv in place: the child's pid is the program's.
    const child = spawn('ip', ['netns', 'exec', ns, ...argv], { stdio: ['ignore', 'pipe', 'pipe'], ...options, detached: true });
    if (child.pid !== undefined) {
      this.processes.add(child);
      child.once('exit', () => this.processes.delete(child));
    }
    return child;
  }

  async readCounter(ns: string, ifname: string, counter: InterfaceCounter): Promise<number> {
    assertInterfaceName(ifname);
    return Number(await this.exec(ns, ['cat', `/sys/class/net/${ifname}/statistics/${counter}`]));
  }

  async macOf(ns: string, ifname: string): Promise<string> {
    assertInterfaceName(ifname);
    return (await this.exec(ns, ['cat', `/sys/class/net/${ifname}/address`])).trim();
  }

  /**
   * Stops spawned processes (SIGTERM to their groups, SIGKILL after a grace
   * period), kills anything else left inside the namespaces and deletes them,
   * which removes their veths, bridges and tunnels. Safe to call again.
   */
  destroy(): Promise<void> {
    this.teardown ??= this.terminateProcesses().then(() => this.destroySync());
    return this.teardown;
  }

  /** The synchronous teardown, for exit and signal handlers. */
  destroySync(): void {
    for (const child of this.processes) killQuietly(-(child.pid as number), 'SIGKILL');
    this.processes.clear();
    for (const namespace of this.namespaces) deleteNamespaceSync(namespace);
    this.namespaces.clear();
    fs.rmSync(ownerFile(this.prefix), { force: true });
    liveTopologies.delete(this);
  }

  /**
   * Deletes namespaces of this project's naming scheme whose run died without
   * cleaning up (SIGKILL, a killed CI job). Namespaces of live runs, this
   * process's included, are kept. Returns the names deleted.
   */
  static sweepStale(): string[] {
    const swept: string[] = [];
    for (const name of existingNamespaces()) {
      const prefix = OUR_NAMESPACE.exec(name)?.[1];
      if (prefix === undefined || ownerIsAlive(prefix)) continue;
      deleteNamespaceSync(name);
      fs.rmSync(ownerFile(prefix), { force: true });
      swept.push(name);
    }
    return swept;
  }

  private async terminateProcesses(): Promise<void> {
    const running = [...this.processes];
    const exited = running.map((child) => new Promise<void>((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.once('exit', () => resolve()))));
    for (const child of running) killQuietly(-(child.pid as number), 'SIGTERM');
    let grace: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(exited), new Promise<void>((resolve) => (grace = setTimeout(resolve, TERMINATE_GRACE_MS)))]);
    clearTimeout(grace);
  }

  private ip(ns: string, args: string[]): Promise<string> {
    return run('ip', ['-n', ns, ...args]);
  }

  private assertLive(): void {
    if (this.teardown !== undefined || !liveTopologies.has(this)) throw new Error(`topology ${this.prefix} is destroyed`);
  }

  private assertOwned(...namespaces: string[]): void {
    this.assertLive();
    for (const ns of namespaces) if (!this.namespaces.has(ns)) throw new Error(`namespace ${ns} is not part of topology ${this.prefix}`);
  }
}

function assertInterfaceName(...names: string[]): void {
  for (const name of names) if (!INTERFACE_NAME.test(name)) throw new Error(`interface name ${JSON.stringify(name)}: 1-15 chars of [A-Za-z0-9_.-]`);
}
