/**
 * npm run bench:pps: packets per second through real interfaces, in
 * namespaces made and removed here. The project's generator
 * (bench/pps/generator.ts, native/generator.cc) floods UDP frames from pod A
 * on CPU 0, retrying what the path refuses (trafgen gives up with EAGAIN
 * when RPS is on); the figure is pod B's rx_packets over the window (10 s),
 * the median of 3 runs (PPS_RUNS, PPS_SECONDS; `-- --quick`: 1 run of 3 s,
 * for development). Each run gets a fresh topology, so runs never share
 * state. The machine is noisy: compare the ratios of one run, not figures
 * across runs.
 *
 * Traffic (TRAFFIC): 64-byte frames of one flow (the case's plain name),
 * 512 bytes (-512), 1,000 flows (-1000flows: the UDP source port takes 1,000
 * values, so the flow table and ECMP see 1,000 flows), IMIX 7:4:1 of
 * 64/570/1518 bytes (-imix), and a real socket sender (-socket: 64-byte
 * frames' payloads sent with sendmmsg on a UDP socket of pod A, through its
 * own stack). Each run prints the loss at every stage: what the generator
 * had refused, every device's drops in every namespace, the CPUs' backlog
 * drops, UDP socket drops, and the vrouter's own counters (XDP statistics
 * among them).
 *
 * Paths: the Linux bridge as it comes and with RPS giving its receive work
 * to CPU 1, kernel VXLAN likewise, the vrouter between two local pods on
 * each port kind (veth + AF_XDP, veth + AF_PACKET, TAP) and across two
 * nodes (AF_XDP pods, MPLS over UDP). The same generator, frame, cores and
 * sink (pod B's kernel: same addresses and routes) for every path.
 * br_netfilter's setting is printed. CPU microseconds per delivered packet
 * sum both cores' busy time over the measurement (warm-up included, so a
 * little optimistic for every path alike) divided by the packets delivered.
 *
 * The vrouter cases run the real daemon (bench/pps/vrouter-paths.ts) pinned
 * to CPU 1; in vrouter-overlay both nodes' daemons share that core (the
 * kernel paths do all their forwarding on CPU 0, in the generator's
 * softirq). Their CPU use is reported per daemon, with their own counters
 * after the run. Generator and daemons run at nice -20, their autogroups
 * too.
 * PPS_ONLY=name,name runs only the cases whose path is named (e.g.
 * PPS_ONLY=kernel-bridge,vrouter-local; the overlay's:
 * PPS_ONLY=kernel-vxlan,vrouter-overlay,vrouter-overlay-no-gso,...).
 * vrouter-overlay-* take the underlay apart: without UDP_SEGMENT, without
 * UDP_GRO, without the coalescing wait, without all three, and with the
 * sender's underlay device at gso_max_segs 1. When vrouter-overlay and
 * vrouter-overlay-no-wait both ran, the coalescing wait's cost in latency
 * follows: ping RTT P50/P99 from pod A to pod B (LATENCY_PINGS echoes, 5 ms
 * apart) while the generator sends 64-byte frames at half vrouter-overlay's
 * rate. PPS_TRAFFIC=64,imix,... runs only the traffic named.
 *
 * This project's machines are shared and have 2 cores: each case also prints
 * who kept each CPU busy (the daemons, ksoftirqd, any other thread), so a
 * figure taken while something else ran can be told apart.
 */
import fs from 'node:fs';
import os from 'node:os';
import { Topology, requireCommands } from '../test/support/netns';
import { TrafficPath, buildKernelBridge, buildKernelVxlan } from './pps/kernel-paths';
import { IMIX_SIZES, TrafficMix } from './pps/generator';
import { median, percentile } from './pps/stats';
import { RateMeasurement, measureRate } from './pps/traffic';
import { FORWARDER_NICE, VrouterTrafficPath, buildVrouterLocal, buildVrouterOverlay } from './pps/vrouter-paths';

/** A forwarding path; vrouter paths also name the daemons whose CPU use and counters are reported. */
interface PathUnderTest {
  name: string;
  build(topology: Topology): Promise<TrafficPath & Partial<Pick<VrouterTrafficPath, 'forwarders' | 'report' | 'stop'>>>;
}

/** The pid of CPU 1's softirq thread, which runs the RPS work CPU 1's softirqs leave over. */
function ksoftirqdOfCpu1(): number | undefined {
  for (const pid of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      if (fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'ksoftirqd/1') return Number(pid);
    } catch {
      // Exited meanwhile.
    }
  }
  return undefined;
}

/**
 * RPS on every device of the path's node namespaces: their receive work goes
 * to CPU 1 (mask 2). That work runs in softirq, and in ksoftirqd/1 once
 * softirqs run long; ksoftirqd gets the vrouter daemons' nice -20 for the
 * case, or on a shared machine it waits behind every other process of CPU 1
 * (its nice value is restored when the case stops).
 */
function withRps(build: PathUnderTest['build'], nodeRoles: string[]): PathUnderTest['build'] {
  return async (topology) => {
    const path = await build(topology);
    for (const role of nodeRoles) {
      await topology.exec(`${topology.prefix}-${role}`, ['sh', '-c', 'for f in /sys/class/net/*/queues/rx-*/rps_cpus; do echo 2 > "$f"; done']);
    }
    const ksoftirqd = ksoftirqdOfCpu1();
    if (ksoftirqd === undefined) return path;
    const nice = os.getPriority(ksoftirqd);
    os.setPriority(ksoftirqd, FORWARDER_NICE);
    return { ...path, stop: async () => os.setPriority(ksoftirqd, nice) };
  };
}

/** Builds the path with the daemons started under `env` (port kind, AF_XDP refusal). */
function withDaemonEnv(build: PathUnderTest['build'], env: Record<string, string>): PathUnderTest['build'] {
  return async (topology) => {
    const saved = Object.keys(env).map((key) => [key, process.env[key]] as const);
    Object.assign(process.env, env);
    try {
      return await build(topology);
    } finally {
      for (const [key, value] of saved) {
        if (value === undefined) delete process.env[key];
        else process.env[key] = value;
      }
    }
  };
}

const PATHS: PathUnderTest[] = [
  { name: 'kernel-bridge', build: buildKernelBridge },
  { name: 'kernel-bridge-rps', build: withRps(buildKernelBridge, ['node']) },
  { name: 'kernel-vxlan', build: buildKernelVxlan },
  // RPS on the receiving node only: node1's hops stay with the generator on CPU 0, node2's go to CPU 1, a two-stage
  // pipeline like the vrouter overlay's. With RPS on node1 too every hop lands on CPU 1, leaving CPU 0 to the generator
  // alone, and the hops' one backlog overflows (19k pps delivered against 151k without RPS, in one loaded run).
  { name: 'kernel-vxlan-rps', build: withRps(buildKernelVxlan, ['node2']) },
  { name: 'vrouter-local', build: buildVrouterLocal },
  { name: 'vrouter-local-af_packet', build: withDaemonEnv(buildVrouterLocal, { VROUTER_AF_XDP: 'off' }) },
  { name: 'vrouter-local-tap', build: withDaemonEnv(buildVrouterLocal, { VROUTER_POD_PORT: 'tap' }) },
  { name: 'vrouter-overlay', build: buildVrouterOverlay },
  // What each part of the underlay path does: without UDP_SEGMENT sends, without UDP_GRO receives, without the coalescing wait, without all three (raw sendmmsg + recvmmsg).
  { name: 'vrouter-overlay-no-gso', build: withDaemonEnv(buildVrouterOverlay, { VROUTER_UDP_GSO: 'off' }) },
  { name: 'vrouter-overlay-no-gro', build: withDaemonEnv(buildVrouterOverlay, { VROUTER_UDP_GRO: 'off' }) },
  { name: 'vrouter-overlay-no-wait', build: withDaemonEnv(buildVrouterOverlay, { VROUTER_UNDERLAY_COALESCE_US: '0' }) },
  { name: 'vrouter-overlay-raw', build: withDaemonEnv(buildVrouterOverlay, { VROUTER_UDP_GSO: 'off', VROUTER_UDP_GRO: 'off', VROUTER_UNDERLAY_COALESCE_US: '0' }) },
  // A NIC without segmentation offload: the sender's underlay device takes one segment per packet, the kernel segments in software.
  { name: 'vrouter-overlay-gso-max-segs-1', build: (topology) => buildVrouterOverlay(topology, { gsoMaxSegs: 1 }) },
  // Both daemons on CPU 1, the generator and pod B's kernel alone on CPU 0 (as the C prototypes ran their forwarder).
  { name: 'vrouter-overlay-cpu1', build: (topology) => buildVrouterOverlay(topology, { cpus: ['1', '1'] }) },
];
/** The overlay's variants, compared with kernel VXLAN like vrouter-overlay. */
const OVERLAY_VARIANTS = PATHS.map((path) => path.name).filter((name) => name.startsWith('vrouter-overlay-'));
/** What a case sends: a frame size for the addressing, and the mix (flows, sizes, sender). */
interface Traffic {
  /** The case name's suffix; '' for 64-byte frames of one flow. */
  suffix: string;
  size: number;
  mix: TrafficMix;
  /** The paths that get this traffic (every path for the plain case). */
  paths?: ReadonlySet<string>;
}
/** The kernel baselines and the two vrouter paths: every traffic runs on these. */
const MAIN_PATHS = new Set(['kernel-bridge', 'kernel-bridge-rps', 'kernel-vxlan', 'kernel-vxlan-rps', 'vrouter-local', 'vrouter-overlay']);
const TRAFFIC: Traffic[] = [
  { suffix: '', size: 64, mix: {} },
  // The overlay's variants at 512 too; the port-kind variants only at 64: the whole run (44 cases) takes some 40 minutes.
  { suffix: '512', size: 512, mix: {}, paths: new Set([...MAIN_PATHS, ...OVERLAY_VARIANTS]) },
  { suffix: '1000flows', size: 64, mix: { flows: 1000 }, paths: MAIN_PATHS },
  { suffix: 'imix', size: 64, mix: { sizes: IMIX_SIZES }, paths: MAIN_PATHS },
  { suffix: 'socket', size: 64, mix: { sender: 'udp-socket' }, paths: MAIN_PATHS },
];
/** Each vrouter path against the kernel paths doing the same job, printed when both ran. */
const COMPARISONS: Array<[string, string]> = [
  ['vrouter-local', 'kernel-bridge'],
  ['vrouter-local', 'kernel-bridge-rps'],
  ['vrouter-local-af_packet', 'kernel-bridge'],
  ['vrouter-local-tap', 'kernel-bridge'],
  ['vrouter-overlay', 'kernel-vxlan'],
  ['vrouter-overlay', 'kernel-vxlan-rps'],
  ...OVERLAY_VARIANTS.map((name): [string, string] => [name, 'kernel-vxlan']),
];
const QUICK = process.argv.includes('--quick');
const RUNS = QUICK ? 1 : Number(process.env.PPS_RUNS ?? 3);
const SECONDS = QUICK ? 3 : Number(process.env.PPS_SECONDS ?? 10);
const SOURCE_PORT = 40000;
const DESTINATION_PORT = 5001;

function caseName(path: string, traffic: Traffic): string {
  return traffic.suffix === '' ? path : `${path}-${traffic.suffix}`;
}

/** Busy (non-idle), softirq and all jiffies of each CPU, from /proc/stat. */
function cpuTimes(): Array<{ busy: number; softirq: number; total: number }> {
  return fs
    .readFileSync('/proc/stat', 'utf8')
    .split('\n')
    .filter((line) => /^cpu\d+ /.test(line))
    .map((line) => {
      const ticks = line.split(/\s+/).slice(1).map(Number);
      const total = ticks.reduce((sum, value) => sum + value, 0);
      // idle and iowait
      return { busy: total - ticks[3] - ticks[4], softirq: ticks[6], total };
    });
}

interface TaskTimes {
  pid: number;
  comm: string;
  /** utime + stime, in clock ticks. */
  ticks: number;
  /** The CPU the thread last ran on. */
  cpu: number;
}

/** Every thread on the machine with its CPU time so far, by "pid/tid". */
function taskTimes(): Map<string, TaskTimes> {
  const tasks = new Map<string, TaskTimes>();
  for (const pid of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    let tids: string[];
    try {
      tids = fs.readdirSync(`/proc/${pid}/task`);
    } catch {
      continue;
    }
    for (const tid of tids) {
      try {
        const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        tasks.set(`${pid}/${tid}`, {
          pid: Number(pid),
          comm: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')),
          ticks: Number(fields[11]) + Number(fields[12]),
          cpu: Number(fields[36]),
        });
      } catch {
        // Exited meanwhile.
      }
    }
  }
  return tasks;
}

interface CpuSnapshot {
  cpus: Array<{ busy: number; softirq: number; total: number }>;
  tasks: Map<string, TaskTimes>;
}

function cpuSnapshot(): CpuSnapshot {
  return { cpus: cpuTimes(), tasks: taskTimes() };
}

/**
 * Who kept each CPU busy since `before`, in percent of that CPU: the
 * forwarders, ksoftirqd, and every other thread together (another run
 * sharing the machine shows there). A thread's time is put on the CPU it
 * last ran on. The generator has exited by the second look, so its time is in
 * "exited or untracked", with that of any short-lived command.
 */
function cpuUseSince(before: CpuSnapshot, forwarderPids: number[]): { text: string; busyCpuSeconds: number; wallSeconds: number } {
  const after = cpuSnapshot();
  const ticksPerSecond = 100; // USER_HZ
  const busyCpuSeconds = after.cpus.reduce((sum, cpu, index) => sum + cpu.busy - before.cpus[index].busy, 0) / ticksPerSecond;
  const wallSeconds = Math.max(1, after.cpus[0].total - before.cpus[0].total) / ticksPerSecond;
  const text = after.cpus
    .map((cpu, index) => {
      const elapsed = Math.max(1, cpu.total - before.cpus[index].total);
      const groups = new Map<string, number>([['vrouter', 0], ['ksoftirqd', 0], ['other', 0]]);
      for (const [key, task] of after.tasks) {
        if (task.cpu !== index) continue;
        const used = task.ticks - (before.tasks.get(key)?.ticks ?? 0);
        if (used <= 0) continue;
        const group = forwarderPids.includes(task.pid) ? 'vrouter' : task.comm.startsWith('ksoftirqd') ? 'ksoftirqd' : 'other';
        groups.set(group, groups.get(group)! + used);
      }
      const busy = cpu.busy - before.cpus[index].busy;
      const tracked = [...groups.values()].reduce((sum, ticks) => sum + ticks, 0);
      // Threads that exited before the second look (the generator, short commands) and time charged to no thread.
      groups.set('exited or untracked', Math.max(0, busy - tracked));
      const parts = [...groups]
        .filter(([group, ticks]) => ticks > 0 || group === 'other')
        .map(([group, ticks]) => `${group} ${((ticks / elapsed) * 100).toFixed(0)}%`);
      const softirq = cpu.softirq - before.cpus[index].softirq;
      return `CPU ${index} busy ${((busy / elapsed) * 100).toFixed(0)}% (softirq ${((softirq / elapsed) * 100).toFixed(0)}%): ${parts.join(', ')}`;
    })
    .join(' | ');
  return { text, busyCpuSeconds, wallSeconds };
}

interface CaseResult extends RateMeasurement {
  /** The daemons by node, in the order of forwarderCpuPercents. */
  forwarderNodes: string[];
  forwarderCpus: string[];
  forwarderPids: number[];
  /** Who kept each CPU busy over the whole measurement (warm-up included). */
  cpuUse: string;
  /** Both cores' busy time over the measurement per delivered packet, in microseconds. */
  cpuUsPerPacket: number;
  /** The daemons' own counters after the run. */
  report: string[];
}

async function measureCase(path: PathUnderTest, traffic: Traffic): Promise<CaseResult> {
  const topology = new Topology();
  let built: Awaited<ReturnType<PathUnderTest['build']>> | undefined;
  try {
    built = await path.build(topology);
    const forwarders = built.forwarders ?? [];
    const forwarderPids = forwarders.map((forwarder) => forwarder.pid);
    const cpuBefore = cpuSnapshot();
    const result = await measureRate({
      topology,
      ...built,
      ...(forwarderPids.length > 0 ? { forwarderPids } : {}),
      frame: { ...built, srcPort: SOURCE_PORT, dstPort: DESTINATION_PORT, size: traffic.size },
      mix: traffic.mix,
      seconds: SECONDS,
    });
    const cpu = cpuUseSince(cpuBefore, forwarderPids);
    const cpuUsPerPacket = (cpu.busyCpuSeconds / Math.max(1, result.pps * cpu.wallSeconds)) * 1e6;
    const report = (await built.report?.()) ?? [];
    return { ...result, forwarderNodes: forwarders.map((forwarder) => forwarder.node), forwarderCpus: forwarders.map((forwarder) => forwarder.cpu), forwarderPids, cpuUse: cpu.text, cpuUsPerPacket, report };
  } finally {
    await built?.stop?.();
    await topology.destroy();
  }
}

function describe(result: CaseResult): string {
  const percent = (value: number): string => `${value.toFixed(0)}%`;
  let cpu = result.forwarderCpuPercent === undefined ? '' : `, forwarder CPU ${percent(result.forwarderCpuPercent)}`;
  const perDaemon = result.forwarderCpuPercents ?? [];
  if (perDaemon.length > 0) {
    cpu = `, vrouter CPU ${perDaemon.map((value, i) => `${result.forwarderNodes[i]} ${percent(value)} on CPU ${result.forwarderCpus[i]}`).join(' + ')}`;
  }
  const atSender = result.senderDropped > 0 ? ` (${result.senderDropped} dropped at the sender's device)` : '';
  return `${Math.round(result.pps)} pps, loss ${(result.loss * 100).toFixed(3)}%${atSender}${cpu}, ${result.cpuUsPerPacket.toFixed(2)} CPU us/packet`;
}

/** The loss at each stage: the generator's refusals, then every counter that moved (devices, backlogs, sockets). */
function describeLoss(result: CaseResult): string {
  const generator = `generator: ${result.generator.sent} sent, ${result.generator.refused} sends refused and retried`;
  const drops = [...result.drops].map(([name, count]) => `${name} ${count}`);
  return `${generator}; drops: ${drops.join(', ') || 'none'}`;
}

function selectedPaths(): PathUnderTest[] {
  const only = process.env.PPS_ONLY?.split(',').map((name) => name.trim()).filter(Boolean);
  if (!only) return PATHS;
  const unknown = only.filter((name) => !PATHS.some((path) => path.name === name));
  if (unknown.length > 0) throw new Error(`PPS_ONLY: no path ${unknown.join(', ')} (paths: ${PATHS.map((path) => path.name).join(', ')})`);
  return PATHS.filter((path) => only.includes(path.name));
}

const LATENCY_PINGS = 400;

/** Ping RTTs (ms) from the sender to the receiver pod while the generator sends at `rate` pps. */
async function pingUnderLoad(path: PathUnderTest, rate: number): Promise<number[]> {
  const topology = new Topology();
  let built: Awaited<ReturnType<PathUnderTest['build']>> | undefined;
  try {
    const under = await path.build(topology);
    built = under;
    let output = '';
    const ping = async (): Promise<void> => {
      output = await topology.exec(under.senderNs, ['ping', '-n', '-c', String(LATENCY_PINGS), '-i', '0.005', '-W', '1', under.dstIp], { timeoutMs: 60_000 });
    };
    await measureRate({ topology, ...under, frame: { ...under, srcPort: SOURCE_PORT, dstPort: DESTINATION_PORT, size: 64 }, seconds: 1, rate, duringWindow: ping });
    return [...output.matchAll(/time=([\d.]+) ms/g)].map((match) => Number(match[1]));
  } finally {
    await built?.stop?.();
    await topology.destroy();
  }
}

function selectedTraffic(): Traffic[] {
  const only = process.env.PPS_TRAFFIC?.split(',').map((name) => name.trim()).filter(Boolean);
  if (!only) return TRAFFIC;
  const label = (traffic: Traffic): string => traffic.suffix || '64';
  const unknown = only.filter((name) => !TRAFFIC.some((traffic) => label(traffic) === name));
  if (unknown.length > 0) throw new Error(`PPS_TRAFFIC: no traffic ${unknown.join(', ')} (traffic: ${TRAFFIC.map(label).join(', ')})`);
  return TRAFFIC.filter((traffic) => only.includes(label(traffic)));
}

function brNetfilterSetting(): string {
  try {
    return `net.bridge.bridge-nf-call-iptables = ${fs.readFileSync('/proc/sys/net/bridge/bridge-nf-call-iptables', 'utf8').trim()}`;
  } catch {
    return 'br_netfilter not loaded (bridged frames skip iptables)';
  }
}

async function main(): Promise<void> {
  requireCommands({ ip: 'iproute2', bridge: 'iproute2', ping: 'iputils-ping', taskset: 'util-linux' });
  const swept = Topology.sweepStale();
  if (swept.length > 0) console.log(`removed namespaces left by dead runs: ${swept.join(' ')}`);
  console.log(`${RUNS} run(s) of ${SECONDS} s per case, median reported; generator bench/pps/generator.ts on CPU 0 (AF_PACKET sendmmsg, qdisc bypassed, refusals retried); ${brNetfilterSetting()}; kernel ${fs.readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim()}`);

  const paths = selectedPaths();
  const figures = new Map<string, { pps: number; cpuUsPerPacket: number; loss: number; runs: number[] }>();
  for (const traffic of selectedTraffic()) {
    for (const path of paths) {
      if (traffic.paths !== undefined && !traffic.paths.has(path.name)) continue;
      const name = caseName(path.name, traffic);
      const runs: CaseResult[] = [];
      for (let run = 0; run < RUNS; run++) {
        let result: CaseResult;
        try {
          result = await measureCase(path, traffic);
        } catch (error) {
          // One failed run (a daemon that did not start, a path that never delivered) must not end the unattended run.
          console.log(`${name} run ${run + 1}: failed: ${(error as Error).message.split('\n')[0]}`);
          continue;
        }
        runs.push(result);
        console.log(`${name} run ${run + 1}: ${describe(result)}`);
        console.log(`  ${result.cpuUse}`);
        console.log(`  ${describeLoss(result)}`);
        for (const line of result.report) console.log(`  ${line}`);
      }
      if (runs.length === 0) continue;
      figures.set(name, {
        pps: median(runs.map((run) => run.pps)),
        cpuUsPerPacket: median(runs.map((run) => run.cpuUsPerPacket)),
        loss: median(runs.map((run) => run.loss)),
        runs: runs.map((run) => run.pps),
      });
    }
  }
  console.log('\ncase                              pps (median)  runs                         CPU us/packet    loss');
  for (const [name, figure] of figures) {
    const loss = `${(figure.loss * 100).toFixed(1)}%`;
    console.log(`${name.padEnd(34)}${String(Math.round(figure.pps)).padStart(12)}  ${figure.runs.map((pps) => Math.round(pps)).join(' ').padEnd(29)}${figure.cpuUsPerPacket.toFixed(2).padStart(8)}${loss.padStart(8)}`);
  }
  console.log('\nratio                                               pps    CPU us/packet');
  for (const traffic of TRAFFIC) {
    for (const [vrouter, kernel] of COMPARISONS) {
      const numerator = figures.get(caseName(vrouter, traffic));
      const denominator = figures.get(caseName(kernel, traffic));
      if (numerator === undefined || denominator === undefined) continue;
      const label = `${caseName(vrouter, traffic)}/${caseName(kernel, traffic)}`;
      console.log(`${label.padEnd(50)}${(numerator.pps / denominator.pps).toFixed(2).padStart(6)}  ${(numerator.cpuUsPerPacket / denominator.cpuUsPerPacket).toFixed(2).padStart(8)}`);
    }
  }
  const overlay = figures.get('vrouter-overlay');
  if (overlay === undefined || !figures.has('vrouter-overlay-no-wait')) return;
  const rate = overlay.pps / 2;
  console.log(`\nlatency: ${LATENCY_PINGS} pings A -> B, 5 ms apart, under 64-byte frames at ${Math.round(rate)} pps (half vrouter-overlay's rate)`);
  for (const name of ['vrouter-overlay', 'vrouter-overlay-no-wait']) {
    try {
      const rtts = await pingUnderLoad(PATHS.find((path) => path.name === name)!, rate);
      const us = (ms: number): string => `${Math.round(ms * 1000)} us`;
      console.log(`${name.padEnd(34)}RTT P50 ${us(percentile(rtts, 0.5))}, P99 ${us(percentile(rtts, 0.99))} (${rtts.length} replies)`);
    } catch (error) {
      console.log(`${name}: latency failed: ${(error as Error).message.split('\n')[0]}`);
    }
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
