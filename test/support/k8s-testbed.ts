/**
 * A real Kubernetes 1.20.2 node on this machine: etcd, kube-apiserver,
 * kube-controller-manager, kube-scheduler, containerd (+ runc) and kubelet,
 * the binaries from scripts/k8s/build.sh, the steps and flags of
 * /work/shared/reference/kubernetes-testbed.md. Used by the tests and the
 * demo; `scripts/k8s/start.sh` runs it in the foreground.
 *
 * Everything runs inside one network namespace of its own (`<p>-k8s`, made by
 * a Topology), with the node address on a veth to `<p>-underlay`: the
 * apiserver, etcd and kubelet ports, the CNI host interfaces and the agent's
 * port API all live on that namespace, so concurrent runs do not collide and
 * nothing listens or sends in the root namespace. Processes enter it with
 * `nsenter --net` (not `ip netns exec`, whose private /sys would hide the
 * cgroup hierarchy from kubelet and runc).
 *
 * Files live in a per-run directory; what the components write outside it
 * (kubepods cgroups, /var/run/netns/cni-*, /var/lib/cni/results, /var/log/pods,
 * /var/log/containers, /var/lib/kubelet/device-plugins, /run/containerd) is
 * recorded before start and removed by stop(), also when start() fails, and
 * on exit of the process.
 */
import { ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Topology } from './netns';
import { installPlugin } from '../../src/cni/install';
import { AGENT_PORT_API_PORT } from '../../src/cni/agent-api-types';
import { AgentStandinProcess } from './cni-harness';

export const DEFAULT_CACHE = '/var/cache/vrouter-ts/k8s-1.20.2';
const COMPONENTS = ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubelet', 'kubectl'] as const;
const PAUSE_IMAGE = 'vrouter-ts.local/pause:3.2';
export const BUSYBOX_IMAGE = 'vrouter-ts.local/busybox:1.35';
const NODE_ADDRESS = '10.213.0.2';
const UNDERLAY_ADDRESS = '10.213.0.1';
const MANAGEMENT_BRIDGE = 'mgmt';
const FABRIC_BRIDGE = 'fabric';
/** The vrouters' fabric addresses: 198.18.0.0/24 (RFC 2544 benchmarking range), node i at .11 + i. */
const FABRIC_PREFIX = '198.18.0.';
/** Where vrouter-control serves its pod API inside the node namespace (GET /pods: the manager's decisions). */
export const POD_API = '127.0.0.1:18090';
export const POD_SUBNET = '10.32.0.0/16';
export const SERVICE_SUBNET = '10.96.0.0/16';
const XMPP_PORT = 5269;
const REPOSITORY = path.resolve(__dirname, '..', '..', '..');
const TOKEN = randomBytes(16).toString('hex');
/** Files other programs on this machine may also use: ours are those that appear during the run. */
const SHARED_DIRS = ['/var/lib/cni/results', '/var/log/pods', '/var/log/containers', '/var/lib/kubelet/device-plugins', '/run/containerd', '/var/run/netns'];
/** Directories the components create when missing: removed if this run created them (deepest first). */
const CREATED_DIRS = ['/var/lib/cni/results', '/var/lib/cni', '/var/lib/kubelet/device-plugins', '/var/lib/kubelet', '/var/log/pods', '/var/log/containers', '/run/containerd'];

export interface TestbedOptions {
  cacheDir?: string;
  nodeName?: string;
  /** The CNI plugin configuration (one entry of `plugins`); the conflist says cniVersion 1.0.0 (see the reference). */
  cniPlugin: Record<string, unknown>;
  /** Called once the namespace exists, before containerd starts (e.g. to start the agent there). */
  beforeNode?: (testbed: K8sTestbed) => Promise<void>;
  /** Where the per-run directory goes (default /var/tmp). */
  workRoot?: string;
  /**
   * Only etcd and the apiserver (no controllers, runtime or kubelet): objects
   * are what the test creates. Without the service account controller, pods
   * are admitted without a service account.
   */
  controlPlaneOnly?: boolean;
}

export function testbedBinariesMissing(cacheDir = DEFAULT_CACHE): string[] {
  const missing: string[] = COMPONENTS.filter((c) => !fs.existsSync(path.join(cacheDir, 'bin', c))).map((c) => path.join(cacheDir, 'bin', c));
  for (const image of ['pause.tar', 'busybox.tar']) if (!fs.existsSync(path.join(cacheDir, 'images', image))) missing.push(path.join(cacheDir, 'images', image));
  for (const tool of ['/usr/bin/etcd', '/usr/bin/containerd', '/usr/bin/ctr', '/usr/sbin/runc', '/usr/lib/cni/loopback']) if (!fs.existsSync(tool)) missing.push(tool);
  return missing;
}

/** What a controlPlaneOnly testbed needs. */
export function controlPlaneBinariesMissing(cacheDir = DEFAULT_CACHE): string[] {
  const needed = [path.join(cacheDir, 'bin', 'kube-apiserver'), path.join(cacheDir, 'bin', 'kubectl'), '/usr/bin/etcd'];
  return needed.filter((file) => !fs.existsSync(file));
}

function run(file: string, args: string[], options: { input?: string; timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(file, args, { timeout: options.timeoutMs ?? 60_000, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${path.basename(file)} ${args.join(' ')}: ${stderr.trim() || error.message}`));
      else resolve(stdout);
    });
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}

function listDir(dir: string): Set<string> {
  try {
    return new Set(fs.readdirSync(dir));
  } catch {
    return new Set();
  }
}

/** Mount points (from /proc/self/mountinfo, octal escapes decoded). */
function mountPoints(): string[] {
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => line.split(' ')[4].replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8))));
}

/** Every cgroup v1/v2 hierarchy root, each once (cpu and cpuacct may be one mount). */
function cgroupRoots(): string[] {
  const roots = new Set<string>();
  for (const entry of listDir('/sys/fs/cgroup')) {
    const full = path.join('/sys/fs/cgroup', entry);
    try {
      if (fs.statSync(full).isDirectory()) roots.add(fs.realpathSync(full));
    } catch {
      // vanished
    }
  }
  return [...roots];
}

/** Directories below `dir`, deepest first, `dir` last. */
function directoriesDeepestFirst(dir: string): string[] {
  const result: string[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) if (entry.isDirectory()) result.push(...directoriesDeepestFirst(path.join(dir, entry.name)));
  result.push(dir);
  return result;
}

export class K8sTestbed {
  readonly runId = randomBytes(3).toString('hex');
  readonly topology = new Topology();
  readonly dir: string;
  readonly nodeName: string;
  readonly cacheDir: string;
  readonly networkName: string;
  ns = '';
  underlayNs = '';
  /** vrouter-ts's processes (network manager, vrouters): stopped after the pods' DEL, before the rest. */
  private readonly vrouterProcesses: ChildProcess[] = [];
  private vrouterCount = 0;
  /** Pods started by startCtrPod, and the containerd namespace (and cgroup parent) of their containers. */
  private readonly ctrPods: CtrPod[] = [];
  readonly ctrNamespace = `vrouter-ts-${this.runId}`;
  private ctrImageImported = false;
  private readonly processes = new Map<string, ChildProcess>();
  private readonly before = new Map<string, Set<string>>();
  private readonly createdDirs: string[] = [];
  private stopping: Promise<void> | undefined;
  /** The component being restarted: its exit is expected. */
  private restarting: string | null = null;
  private readonly onExit = () => this.cleanupSync();

  private constructor(private readonly options: TestbedOptions) {
    this.cacheDir = options.cacheDir ?? DEFAULT_CACHE;
    this.nodeName = options.nodeName ?? `vrt-node-${this.runId}`;
    this.networkName = `vrouter-${this.runId}`;
    this.dir = fs.mkdtempSync(path.join(options.workRoot ?? '/var/tmp', `vrouter-k8s-${this.runId}-`));
  }

  get nsPath(): string {
    return `/run/netns/${this.ns}`;
  }
  get kubeconfig(): string {
    return path.join(this.dir, 'kubeconfig');
  }
  get containerdSocket(): string {
    return path.join(this.dir, 'containerd', 'containerd.sock');
  }
  get cniBinDir(): string {
    return path.join(this.dir, 'cni', 'bin');
  }
  get cniStateDir(): string {
    return path.join(this.dir, 'cni', 'state');
  }
  get nodeAddress(): string {
    return NODE_ADDRESS;
  }
  private bin(name: (typeof COMPONENTS)[number]): string {
    return path.join(this.cacheDir, 'bin', name);
  }

  static async start(options: TestbedOptions): Promise<K8sTestbed> {
    const missing = options.controlPlaneOnly ? controlPlaneBinariesMissing(options.cacheDir) : testbedBinariesMissing(options.cacheDir);
    if (missing.length > 0) throw new Error(`the Kubernetes testbed is not built (missing ${missing.join(', ')}): run bash scripts/k8s/build.sh`);
    const testbed = new K8sTestbed(options);
    try {
      await testbed.boot();
      return testbed;
    } catch (error) {
      await testbed.stop();
      throw error;
    }
  }

  private async boot(): Promise<void> {
    const kubepods = cgroupRoots().filter((root) => fs.existsSync(path.join(root, 'kubepods')));
    if (kubepods.length > 0 && !this.options.controlPlaneOnly) {
      throw new Error(`${kubepods.map((r) => path.join(r, 'kubepods')).join(', ')} exist: another kubelet runs (or a run died): stop it first (scripts/k8s/stop.sh)`);
    }
    // Without a node nothing is written outside the run directory, and what appears there is another run's.
    if (!this.options.controlPlaneOnly) {
      for (const dir of SHARED_DIRS) this.before.set(dir, listDir(dir));
      this.createdDirs.push(...CREATED_DIRS.filter((dir) => !fs.existsSync(dir)));
    }
    process.once('exit', this.onExit);

    this.ns = await this.topology.addNamespace('k8s');
    const underlay = (this.underlayNs = await this.topology.addNamespace('underlay'));
    // Two bridges there: the nodes' management network (the node address, what other nodes reach the
    // control plane on) and the vrouters' fabric (MPLS over UDP between nodes), so a vrouter owning its
    // fabric interface never takes the control plane's traffic.
    for (const bridge of [MANAGEMENT_BRIDGE, FABRIC_BRIDGE]) {
      await this.topology.exec(underlay, ['ip', 'link', 'add', bridge, 'type', 'bridge']);
      await this.topology.exec(underlay, ['ip', 'link', 'set', bridge, 'up']);
    }
    await this.topology.addVethPair(this.ns, 'k8s0', underlay, 'k8s0');
    await this.topology.exec(underlay, ['ip', 'link', 'set', 'k8s0', 'master', MANAGEMENT_BRIDGE]);
    await this.topology.exec(this.ns, ['ip', 'address', 'add', `${NODE_ADDRESS}/24`, 'dev', 'k8s0']);
    await this.topology.exec(underlay, ['ip', 'address', 'add', `${UNDERLAY_ADDRESS}/24`, 'dev', MANAGEMENT_BRIDGE]);
    await this.topology.exec(this.ns, ['ip', 'route', 'add', 'default', 'via', UNDERLAY_ADDRESS]);

    this.writeFiles();
    this.launch('etcd', '/usr/bin/etcd', [
      `--data-dir=${path.join(this.dir, 'etcd')}`,
      '--listen-client-urls=http://127.0.0.1:2379',
      '--advertise-client-urls=http://127.0.0.1:2379',
      '--listen-peer-urls=http://127.0.0.1:2380',
      '--initial-advertise-peer-urls=http://127.0.0.1:2380',
      '--initial-cluster=default=http://127.0.0.1:2380',
    ]);
    await this.startApiserver();
    if (this.options.controlPlaneOnly) return;
    const key = path.join(this.dir, 'sa.key');
    this.launch('kube-controller-manager', this.bin('kube-controller-manager'), [
      `--kubeconfig=${this.kubeconfig}`,
      `--service-account-private-key-file=${key}`,
      '--leader-elect=false',
      '--use-service-account-credentials=false',
      '--port=0',
    ]);
    this.launch('kube-scheduler', this.bin('kube-scheduler'), [`--kubeconfig=${this.kubeconfig}`, '--leader-elect=false', '--port=0']);

    if (this.options.beforeNode) await this.options.beforeNode(this);
    this.launch('containerd', '/usr/bin/containerd', [`--config=${path.join(this.dir, 'containerd', 'config.toml')}`]);
    await this.waitFor('containerd to serve', 30_000, async () => {
      await this.ctr(['version']);
      return true;
    });
    for (const image of ['pause.tar', 'busybox.tar']) await this.ctr(['-n', 'k8s.io', 'images', 'import', path.join(this.cacheDir, 'images', image)]);

    this.launch('kubelet', this.bin('kubelet'), [
      `--kubeconfig=${this.kubeconfig}`,
      '--container-runtime=remote',
      `--container-runtime-endpoint=unix://${this.containerdSocket}`,
      '--cgroup-driver=cgroupfs',
      '--fail-swap-on=false',
      `--root-dir=${path.join(this.dir, 'kubelet')}`,
      `--cert-dir=${path.join(this.dir, 'kubelet-pki')}`,
      `--volume-plugin-dir=${path.join(this.dir, 'volume-plugins')}`,
      '--register-node',
      `--hostname-override=${this.nodeName}`,
      `--node-ip=${NODE_ADDRESS}`,
      `--pod-infra-container-image=${PAUSE_IMAGE}`,
      '--node-status-update-frequency=1s',
      '--image-gc-high-threshold=100',
      '--image-gc-low-threshold=99',
      '--read-only-port=0',
    ]);
    await this.waitForNodeReady(120_000);
    await this.waitFor('the default service account', 60_000, async () => (await this.kubectl(['get', 'serviceaccount', 'default', '-o', 'name'])).includes('default'));
  }

  private writeFiles(): void {
    const sub = (...parts: string[]) => {
      const dir = path.join(this.dir, ...parts);
      fs.mkdirSync(dir, { recursive: true });
      return dir;
    };
    for (const dir of ['logs', 'etcd', 'apiserver-pki', 'kubelet', 'kubelet-pki', 'volume-plugins']) sub(dir);
    fs.writeFileSync(path.join(this.dir, 'tokens.csv'), `${TOKEN},admin,admin,"system:masters"\n`, { mode: 0o600 });
    fs.writeFileSync(
      this.kubeconfig,
      [
        'apiVersion: v1',
        'kind: Config',
        'clusters:',
        '- name: testbed',
        '  cluster:',
        '    server: https://127.0.0.1:6443',
        '    insecure-skip-tls-verify: true',
        'users:',
        '- name: admin',
        '  user:',
        `    token: ${TOKEN}`,
        'contexts:',
        '- name: testbed',
        '  context: {cluster: testbed, user: admin}',
        'current-context: testbed',
        '',
      ].join('\n'),
      { mode: 0o600 },
    );
    const containerd = sub('containerd');
    const cniConf = sub('cni', 'net.d');
    sub('cni', 'bin');
    sub('cni', 'state');
    fs.copyFileSync('/usr/lib/cni/loopback', path.join(this.cniBinDir, 'loopback'));
    fs.chmodSync(path.join(this.cniBinDir, 'loopback'), 0o755);
    installPlugin(this.cniBinDir);
    // 1.0.0: Debian's libcni cannot convert a cached 1.0.0 result to 1.1.0 (the reference, "What the CNI plugin sees").
    const plugin = { ...this.options.cniPlugin };
    const contrail = { 'state-dir': this.cniStateDir, 'underlay-interface': 'k8s0', ...(plugin.contrail as Record<string, unknown> | undefined) };
    fs.writeFileSync(
      path.join(cniConf, '10-vrouter.conflist'),
      JSON.stringify({ cniVersion: '1.0.0', name: this.networkName, plugins: [{ ...plugin, contrail }] }, null, 2),
    );
    fs.writeFileSync(
      path.join(containerd, 'config.toml'),
      [
        'version = 2',
        `root = "${path.join(containerd, 'root')}"`,
        `state = "${path.join(containerd, 'state')}"`,
        '[grpc]',
        `  address = "${this.containerdSocket}"`,
        '[ttrpc]',
        `  address = "${path.join(containerd, 'containerd.sock.ttrpc')}"`,
        '[plugins."io.containerd.internal.v1.opt"]',
        `  path = "${path.join(containerd, 'opt')}"`,
        '[plugins."io.containerd.grpc.v1.cri"]',
        `  sandbox_image = "${PAUSE_IMAGE}"`,
        // kubelet asks for oom_score_adj -998, which needs CAP_SYS_RESOURCE (the reference).
        '  restrict_oom_score_adj = true',
        '  [plugins."io.containerd.grpc.v1.cri".containerd]',
        '    snapshotter = "overlayfs"',
        '    default_runtime_name = "runc"',
        '    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]',
        '      runtime_type = "io.containerd.runc.v2"',
        '      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]',
        '        SystemdCgroup = false',
        '  [plugins."io.containerd.grpc.v1.cri".cni]',
        `    bin_dir = "${this.cniBinDir}"`,
        `    conf_dir = "${cniConf}"`,
        '',
      ].join('\n'),
    );
    execFileSyncQuiet('openssl', ['genrsa', '-out', path.join(this.dir, 'sa.key'), '2048']);
  }

  private async startApiserver(): Promise<void> {
    const key = path.join(this.dir, 'sa.key');
    this.launch('kube-apiserver', this.bin('kube-apiserver'), [
      '--etcd-servers=http://127.0.0.1:2379',
      '--secure-port=6443',
      `--advertise-address=${NODE_ADDRESS}`,
      `--cert-dir=${path.join(this.dir, 'apiserver-pki')}`,
      `--token-auth-file=${path.join(this.dir, 'tokens.csv')}`,
      '--authorization-mode=AlwaysAllow',
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      `--service-account-signing-key-file=${key}`,
      `--service-account-key-file=${key}`,
      '--service-cluster-ip-range=10.96.0.0/16',
      '--kubelet-preferred-address-types=InternalIP',
      '--allow-privileged=true',
      ...(this.options.controlPlaneOnly ? ['--disable-admission-plugins=ServiceAccount'] : []),
    ]);
    await this.waitFor('the apiserver to be ready', 90_000, async () => (await this.kubectl(['get', '--raw=/readyz'])).trim() === 'ok');
  }

  /** Stops the apiserver (SIGTERM, as a restart does) and starts it again on the same etcd; resolves once it is ready. */
  async restartApiserver(): Promise<void> {
    this.restarting = 'kube-apiserver';
    await this.terminate('kube-apiserver');
    this.restarting = null;
    await this.startApiserver();
  }

  /** Starts a component in the namespace, as a process-group leader, its output in logs/<name>.log. */
  private launch(name: string, file: string, args: string[]): void {
    const log = fs.openSync(path.join(this.dir, 'logs', `${name}.log`), 'a');
    const child = spawn('nsenter', [`--net=${this.nsPath}`, file, ...args], { stdio: ['ignore', log, log], detached: true });
    fs.closeSync(log);
    this.processes.set(name, child);
    child.once('exit', (code, signal) => {
      if (this.stopping === undefined && this.restarting !== name) process.stderr.write(`k8s testbed: ${name} exited (${code ?? signal}); see ${path.join(this.dir, 'logs', `${name}.log`)}\n`);
    });
  }

  /** Runs a command inside the testbed's namespace. */
  exec(argv: string[], options: { input?: string; timeoutMs?: number } = {}): Promise<string> {
    return run('nsenter', [`--net=${this.nsPath}`, ...argv], options);
  }

  kubectl(args: string[], options: { input?: string; timeoutMs?: number } = {}): Promise<string> {
    return this.exec([this.bin('kubectl'), `--kubeconfig=${this.kubeconfig}`, ...args], options);
  }

  ctr(args: string[]): Promise<string> {
    return run('ctr', ['-a', this.containerdSocket, ...args]);
  }

  async waitFor(what: string, timeoutMs: number, probe: () => Promise<boolean>): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    for (;;) {
      for (const [name, child] of this.processes) {
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`waiting for ${what}: ${name} exited; see ${path.join(this.dir, 'logs', `${name}.log`)}`);
      }
      try {
        if (await probe()) return;
      } catch (error) {
        last = (error as Error).message;
      }
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last}` : ''}`);
      await sleep(250);
    }
  }

  async waitForNodeReady(timeoutMs: number): Promise<void> {
    await this.waitFor(`node ${this.nodeName} Ready`, timeoutMs, async () => {
      const status = await this.kubectl(['get', 'node', this.nodeName, '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}']);
      return status.trim() === 'True';
    });
  }

  /**
   * vrouter-control as the network manager (`--kubeconfig`, the kube-manager
   * role) in the node namespace: vrouters connect to <node address>:5269,
   * its pod API is POD_API. Logs to logs/vrouter-control.log.
   */
  startNetworkManager(): ChildProcess {
    return this.spawnVrouterProcess(this.ns, 'vrouter-control', [
      path.join(REPOSITORY, 'bin', 'vrouter-control.js'),
      `--kubeconfig=${this.kubeconfig}`,
      `--listen=0.0.0.0:${XMPP_PORT}`,
      `--api=${POD_API}`,
      `--pod-subnet=${POD_SUBNET}`,
      `--service-subnet=${SERVICE_SUBNET}`,
    ]);
  }

  /**
   * Another machine on the management network: a namespace with its address
   * (10.213.0.<3 + i>) on the management bridge, the control plane reached
   * at the node address. For a second node's vrouter and pods.
   */
  async addHost(role: string, index: number): Promise<{ ns: string; address: string }> {
    const ns = await this.topology.addNamespace(role);
    const address = `10.213.0.${3 + index}`;
    await this.topology.addVethPair(ns, 'mgmt0', this.underlayNs, `m-${role}`.slice(0, 15));
    await this.topology.exec(this.underlayNs, ['ip', 'link', 'set', `m-${role}`.slice(0, 15), 'master', MANAGEMENT_BRIDGE]);
    await this.topology.exec(ns, ['ip', 'address', 'add', `${address}/24`, 'dev', 'mgmt0']);
    return { ns, address };
  }

  /**
   * `vrouter run --control <node address>:5269` in `ns` under the name
   * `nodeName` (the kubelet's node name: the manager places pods on the
   * vrouter of their spec.nodeName), its port API on that namespace's
   * 127.0.0.1:9091 (where vrouter-cni talks to it), its fabric a veth on the
   * fabric bridge. Resolves once the port API answers. Logs to logs/vrouter-<nodeName>.log.
   */
  async startVrouter(ns: string, nodeName: string): Promise<VrouterOnNode> {
    const index = this.vrouterCount++;
    const fabricIp = `${FABRIC_PREFIX}${11 + index}`;
    const bridgePort = `f-${index}-${this.runId}`;
    await this.topology.addVethPair(ns, 'fabric0', this.underlayNs, bridgePort);
    await this.topology.exec(this.underlayNs, ['ip', 'link', 'set', bridgePort, 'master', FABRIC_BRIDGE]);
    await this.topology.exec(ns, ['ip', 'address', 'add', `${fabricIp}/24`, 'dev', 'fabric0']);
    const mac = await this.topology.macOf(ns, 'fabric0');
    const stateFile = path.join(this.dir, `vrouter-${nodeName}.json`);
    fs.writeFileSync(
      stateFile,
      JSON.stringify({ node: { name: nodeName, underlayIp: fabricIp }, vrfs: [], vifs: [{ id: 0, kind: 'fabric', name: 'fabric0', mac, ip: fabricIp, mtu: 1500 }] }, null, 2),
    );
    const child = this.spawnVrouterProcess(ns, `vrouter-${nodeName}`, [
      path.join(REPOSITORY, 'bin', 'vrouter.js'),
      'run',
      '--state', stateFile,
      '--api', `127.0.0.1:${AGENT_PORT_API_PORT}`,
      '--control', `${NODE_ADDRESS}:${XMPP_PORT}`,
      '--node-name', nodeName,
      '--clean-exit',
    ]);
    const node: VrouterOnNode = { ns, nodeName, fabricIp, process: child, logFile: path.join(this.dir, 'logs', `vrouter-${nodeName}.log`) };
    await this.waitFor(`vrouter ${nodeName} answering`, 30_000, async () => {
      if (child.exitCode !== null) throw new Error(`vrouter ${nodeName} exited; see ${node.logFile}`);
      await this.topology.exec(ns, ['curl', '-sf', `http://127.0.0.1:${AGENT_PORT_API_PORT}/stats`]);
      return true;
    });
    return node;
  }

  /**
   * A pod of a node without kubelet (a second kubelet cannot share this
   * machine: kubelet 1.20 binds /var/lib/kubelet/device-plugins/kubelet.sock
   * and manages the one `kubepods` cgroup of every controller), started
   * through the same CNI plugin and containerd: a sandbox namespace, vrouter-cni
   * ADD in the node's namespace with the K8S_POD_* arguments the CRI plugin
   * passes (`ctr run --cni` passes none, and reads only /etc/cni/net.d and
   * /opt/cni/bin), then `ctr run --with-ns network:<sandbox>` of the busybox
   * image running `script`. The pod object (spec.nodeName = the node) must
   * exist: the network manager gives it its address from it.
   */
  async startCtrPod(node: VrouterOnNode, pod: { namespace: string; name: string; uid: string }, script: string): Promise<CtrPod> {
    const sandbox = await this.topology.addNamespace(`pod-${pod.name}`.slice(0, 32));
    const ctrPod: CtrPod = { ...pod, node, netns: `/run/netns/${sandbox}`, containerId: `${pod.name}-${this.runId}`, started: false };
    this.ctrPods.push(ctrPod);
    const add = await this.runCni(ctrPod, 'ADD');
    if (add.code !== 0) throw new Error(`vrouter-cni ADD for ${pod.namespace}/${pod.name}: ${add.stdout}${add.stderr}`);
    ctrPod.result = JSON.parse(add.stdout) as CtrPod['result'];
    if (!this.ctrImageImported) {
      await this.ctr(['-n', this.ctrNamespace, 'images', 'import', path.join(this.cacheDir, 'images', 'busybox.tar')]);
      this.ctrImageImported = true;
    }
    await this.ctr(['-n', this.ctrNamespace, 'run', '-d', '--with-ns', `network:${ctrPod.netns}`, '--cgroup', `/${this.ctrNamespace}/${ctrPod.containerId}`, BUSYBOX_IMAGE, ctrPod.containerId, 'sh', '-c', script]);
    ctrPod.started = true;
    return ctrPod;
  }

  /** A command in a ctr pod's container (`ctr tasks exec`); stdout, rejects on a non-zero exit. */
  ctrExec(pod: CtrPod, argv: string[]): Promise<string> {
    return this.ctr(['-n', this.ctrNamespace, 'tasks', 'exec', '--exec-id', `x${randomBytes(4).toString('hex')}`, pod.containerId, ...argv]);
  }

  /** The container killed and deleted, then CNI DEL (as the CRI plugin's StopPodSandbox); idempotent. */
  async stopCtrPod(pod: CtrPod): Promise<void> {
    if (pod.started) {
      await this.ctr(['-n', this.ctrNamespace, 'tasks', 'kill', '-s', 'SIGKILL', pod.containerId]).catch(() => undefined);
      for (let attempt = 0; attempt < 20; attempt++) {
        if (await this.ctr(['-n', this.ctrNamespace, 'tasks', 'delete', pod.containerId]).then(() => true, () => false)) break;
        await sleep(100);
      }
      await this.ctr(['-n', this.ctrNamespace, 'containers', 'delete', pod.containerId]).catch(() => undefined);
      pod.started = false;
    }
    const del = await this.runCni(pod, 'DEL');
    if (del.code !== 0) throw new Error(`vrouter-cni DEL for ${pod.namespace}/${pod.name}: ${del.stdout}${del.stderr}`);
    this.ctrPods.splice(this.ctrPods.indexOf(pod) >>> 0, 1);
  }

  /** vrouter-cni as the CRI plugin runs it, in the pod's node namespace. */
  private runCni(pod: CtrPod, command: 'ADD' | 'DEL'): Promise<{ code: number; stdout: string; stderr: string }> {
    const config = {
      cniVersion: '1.0.0',
      name: this.networkName,
      type: 'vrouter-cni',
      contrail: { 'state-dir': path.join(this.dir, 'cni', `state-${pod.node.nodeName}`), 'underlay-interface': 'fabric0', 'poll-timeout': 0.3, 'poll-retries': 100 },
      ...(command === 'DEL' && pod.result ? { prevResult: pod.result } : {}),
    };
    const env = {
      PATH: process.env.PATH,
      CNI_COMMAND: command,
      CNI_CONTAINERID: pod.containerId,
      CNI_NETNS: pod.netns,
      CNI_IFNAME: 'eth0',
      CNI_PATH: this.cniBinDir,
      CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${pod.namespace};K8S_POD_NAME=${pod.name};K8S_POD_INFRA_CONTAINER_ID=${pod.containerId};K8S_POD_UID=${pod.uid}`,
    };
    return new Promise((resolve, reject) => {
      const child = this.topology.spawn(pod.node.ns, [process.execPath, path.join(REPOSITORY, 'bin', 'vrouter-cni.js')], { env, stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
      child.stdin!.end(JSON.stringify(config));
    });
  }

  private spawnVrouterProcess(ns: string, logName: string, args: string[]): ChildProcess {
    const log = fs.openSync(path.join(this.dir, 'logs', `${logName}.log`), 'a');
    const child = this.topology.spawn(ns, [process.execPath, ...args], { stdio: ['ignore', log, log] });
    fs.closeSync(log);
    this.vrouterProcesses.push(child);
    return child;
  }

  /**
   * Deletes the pods (while kubelet runs, so their CNI DEL happens), then stops
   * kubelet, the control plane, containerd and its shims, and removes what
   * they left: mounts deepest first, cgroups, netns files, caches, the run
   * directory, the namespaces. Safe to call more than once.
   */
  stop(): Promise<void> {
    this.stopping ??= this.teardown();
    return this.stopping;
  }

  private async teardown(): Promise<void> {
    const kubelet = this.processes.get('kubelet');
    if (kubelet && kubelet.exitCode === null && kubelet.signalCode === null) {
      try {
        await this.kubectl(['delete', 'pods', '--all', '--all-namespaces', '--wait=false'], { timeoutMs: 20_000 });
        await this.waitFor('the pods\u2019 CNI DEL', 30_000, async () => listDir(this.cniStateDir).size === 0).catch(() => undefined);
      } catch {
        // The apiserver is gone: the tasks are removed below.
      }
    }
    for (const pod of [...this.ctrPods]) await this.stopCtrPod(pod).catch((error: Error) => process.stderr.write(`k8s testbed: ${error.message}\n`));
    for (const name of ['kubelet', 'kube-scheduler', 'kube-controller-manager']) await this.terminate(name);
    for (const child of this.vrouterProcesses.splice(0)) await stopChild(child);
    await this.removeTasks();
    await this.terminate('containerd');
    this.killCgroupProcesses();
    this.killShims();
    await this.terminate('kube-apiserver');
    await this.terminate('etcd');
    this.cleanupSync();
  }

  private async terminate(name: string): Promise<void> {
    const child = this.processes.get(name);
    if (!child || child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    try {
      process.kill(-child.pid, 'SIGTERM');
    } catch {
      return;
    }
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    }, 10_000);
    await exited;
    clearTimeout(timer);
  }

  /** The containers still there after kubelet stopped (a failed run): killed and deleted through containerd. */
  private async removeTasks(): Promise<void> {
    const containerd = this.processes.get('containerd');
    if (!containerd || containerd.exitCode !== null || containerd.signalCode !== null) return;
    try {
      const tasks = (await this.ctr(['-n', 'k8s.io', 'tasks', 'ls', '-q'])).split('\n').filter(Boolean);
      for (const id of tasks) await this.ctr(['-n', 'k8s.io', 'tasks', 'kill', '-s', 'SIGKILL', id]).catch(() => undefined);
      await sleep(tasks.length > 0 ? 500 : 0);
      for (const id of tasks) await this.ctr(['-n', 'k8s.io', 'tasks', 'delete', '-f', id]).catch(() => undefined);
      for (const id of (await this.ctr(['-n', 'k8s.io', 'containers', 'ls', '-q'])).split('\n').filter(Boolean)) {
        await this.ctr(['-n', 'k8s.io', 'containers', 'delete', id]).catch(() => undefined);
      }
    } catch {
      // containerd not answering: the cgroup sweep below kills what is left.
    }
  }

  /** Every process in a kubepods cgroup was started by this node's kubelet. */
  private killCgroupProcesses(): void {
    for (const root of cgroupRoots()) {
      const kubepods = path.join(root, 'kubepods');
      if (!fs.existsSync(kubepods)) continue;
      for (const dir of directoriesDeepestFirst(kubepods)) {
        for (const pid of fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
          try {
            process.kill(Number(pid), 'SIGKILL');
          } catch {
            // exited
          }
        }
      }
    }
  }

  /** containerd's shims outlive it by design; ours are those serving our socket path. */
  private killShims(): void {
    for (const pid of listDir('/proc')) {
      if (!/^\d+$/.test(pid)) continue;
      try {
        const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
        if (argv[0].endsWith('containerd-shim-runc-v2') && argv.includes(this.containerdSocket)) process.kill(Number(pid), 'SIGKILL');
      } catch {
        // exited
      }
    }
  }

  /** The synchronous part of the cleanup (also the exit hook's). */
  private cleanupSync(): void {
    process.removeListener('exit', this.onExit);
    for (const child of this.processes.values()) {
      if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
    // After a graceful stop there is nothing left to kill; after a signal or a crash, the containers and shims.
    if (!this.options.controlPlaneOnly) {
      this.killCgroupProcesses();
      this.killShims();
    }
    // Mounts: ours are under the run directory and the netns files containerd made; deepest first.
    const netnsBefore = this.before.get('/var/run/netns');
    const newNetns = netnsBefore === undefined ? [] : [...listDir('/var/run/netns')].filter((name) => name.startsWith('cni-') && !netnsBefore.has(name));
    const ours = mountPoints()
      .filter((mount) => mount.startsWith(this.dir + '/') || mount === this.dir || newNetns.some((name) => mount === `/run/netns/${name}` || mount === `/var/run/netns/${name}`))
      .sort((a, b) => b.split('/').length - a.split('/').length || b.length - a.length);
    for (const mount of new Set(ours)) {
      try {
        execFileSyncQuiet('umount', [mount]);
      } catch {
        try {
          execFileSyncQuiet('umount', ['-l', mount]);
        } catch {
          // already gone with a parent
        }
      }
    }
    for (const name of newNetns) fs.rmSync(path.join('/var/run/netns', name), { force: true });
    // boot() refused to start while kubepods existed: these are this run's.
    for (const root of cgroupRoots()) {
      const kubepods = path.join(root, 'kubepods');
      if (!fs.existsSync(kubepods) || !this.before.has('/var/run/netns')) continue;
      for (const dir of directoriesDeepestFirst(kubepods)) {
        try {
          fs.rmdirSync(dir);
        } catch {
          // still populated: leftovers() reports it
        }
      }
    }
    // The cgroup parent of the ctr pods' containers (runc removed their own).
    for (const root of cgroupRoots()) {
      const parent = path.join(root, this.ctrNamespace);
      if (!fs.existsSync(parent)) continue;
      for (const dir of directoriesDeepestFirst(parent)) {
        try {
          for (const pid of fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) process.kill(Number(pid), 'SIGKILL');
          fs.rmdirSync(dir);
        } catch {
          // still populated: leftovers() reports it
        }
      }
    }
    // Files the components created outside the run directory during this run.
    for (const dir of SHARED_DIRS) {
      if (dir === '/var/run/netns') continue;
      const before = this.before.get(dir);
      if (before === undefined) continue;
      for (const name of listDir(dir)) if (!before.has(name)) fs.rmSync(path.join(dir, name), { recursive: true, force: true });
    }
    for (const dir of this.createdDirs) {
      try {
        fs.rmdirSync(dir);
      } catch {
        // not empty (leftovers() reports it) or never created
      }
    }
    // VROUTER_K8S_LOGS=<dir>: the components' logs are kept there (the run directory goes).
    const keepLogs = process.env.VROUTER_K8S_LOGS;
    if (keepLogs) fs.cpSync(path.join(this.dir, 'logs'), path.join(keepLogs, `vrouter-k8s-${this.runId}`), { recursive: true });
    fs.rmSync(this.dir, { recursive: true, force: true });
    this.topology.destroySync();
  }

  /** What a cleanup may have missed (used by the tests): empty when the machine is as before. */
  leftovers(): string[] {
    const found: string[] = [];
    if (fs.existsSync(this.dir)) found.push(this.dir);
    for (const mount of mountPoints()) if (mount.startsWith(this.dir)) found.push(`mount ${mount}`);
    for (const root of cgroupRoots()) for (const dir of ['kubepods', this.ctrNamespace]) if (fs.existsSync(path.join(root, dir))) found.push(path.join(root, dir));
    for (const dir of SHARED_DIRS) {
      const before = this.before.get(dir) ?? new Set();
      // Other programs make namespaces too: only containerd's cni-* are ours to check.
      const candidates = [...listDir(dir)].filter((name) => dir !== '/var/run/netns' || name.startsWith('cni-'));
      for (const name of candidates) if (!before.has(name)) found.push(path.join(dir, name));
    }
    for (const dir of this.createdDirs) if (fs.existsSync(dir)) found.push(dir);
    for (const name of listDir('/run/netns')) if (name.startsWith(`${this.topology.prefix}-`)) found.push(`/run/netns/${name}`);
    return found;
  }
}

/** A vrouter started by startVrouter. */
export interface VrouterOnNode {
  ns: string;
  nodeName: string;
  fabricIp: string;
  process: ChildProcess;
  logFile: string;
}

/** A pod started by startCtrPod. */
export interface CtrPod {
  namespace: string;
  name: string;
  uid: string;
  node: VrouterOnNode;
  /** Its sandbox namespace (CNI_NETNS). */
  netns: string;
  /** CNI_CONTAINERID and the ctr container's id. */
  containerId: string;
  started: boolean;
  /** The CNI ADD result. */
  result?: { ips?: Array<{ address: string }> };
}

/** SIGTERM (a vrouter with --clean-exit removes its devices), SIGKILL after 10 s. */
async function stopChild(child: ChildProcess): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

function execFileSyncQuiet(file: string, args: string[]): void {
  execFileSync(file, args, { stdio: 'ignore' });
}

/**
 * `node dist/test/support/k8s-testbed.js [--standin]` (scripts/k8s/start.sh):
 * runs a node in the foreground until SIGUSR2 (scripts/k8s/stop.sh: graceful,
 * pods deleted through kubelet first) or SIGINT/SIGTERM (everything killed,
 * then the same cleanup). --standin serves the stand-in agent on the node's
 * 127.0.0.1:9091 so that pods get addresses before the real agent exists.
 */
async function main(): Promise<void> {
  const standin = process.argv.includes('--standin');
  const testbed = await K8sTestbed.start({
    cniPlugin: { type: 'vrouter-cni', contrail: { 'poll-timeout': 0.5, 'poll-retries': 60 } },
    beforeNode: standin
      ? async (bed) => {
          await AgentStandinProcess.start(bed.topology, bed.ns, AGENT_PORT_API_PORT);
        }
      : undefined,
  });
  const info = {
    pid: process.pid,
    dir: testbed.dir,
    netns: testbed.nsPath,
    node: testbed.nodeName,
    kubeconfig: testbed.kubeconfig,
    kubectl: ['nsenter', `--net=${testbed.nsPath}`, path.join(testbed.cacheDir, 'bin', 'kubectl'), `--kubeconfig=${testbed.kubeconfig}`],
  };
  fs.mkdirSync(path.dirname(CURRENT_FILE), { recursive: true });
  fs.writeFileSync(CURRENT_FILE, JSON.stringify(info, null, 2));
  process.stdout.write(`node ${testbed.nodeName} Ready; kubectl: scripts/k8s/kubectl.sh (${info.kubectl.join(' ')}); stop: scripts/k8s/stop.sh\n`);
  await new Promise<void>((resolve) => process.once('SIGUSR2', resolve));
  await testbed.stop();
  fs.rmSync(CURRENT_FILE, { force: true });
}

/** The running testbed of start.sh, for kubectl.sh and stop.sh. */
export const CURRENT_FILE = '/run/vrouter-ts/k8s-testbed.json';

if (require.main === module) {
  main().catch((error: Error) => {
    process.stderr.write(`k8s testbed: ${error.message}\n`);
    fs.rmSync(CURRENT_FILE, { force: true });
    process.exit(1);
  });
}
