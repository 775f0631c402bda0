/**
 * npm run bench:pps: packets per second through real interfaces, in
 * namespaces made and removed here. trafgen floods UDP frames from pod A on
 * CPU 0; the figure is pod B's rx_packets over 5 s. Each case gets a fresh
 * topology, so cases never share state. The machine is noisy: compare the
 * ratios of one run, not figures across runs.
 *
 * The vrouter cases run the real daemon (bench/pps/vrouter-paths.ts) pinned
 * to CPU 1; in vrouter-overlay both nodes' daemons share that core (the
 * kernel paths do all their forwarding on CPU 0, in the generator's
 * softirq). Their CPU use is reported per daemon, with their own counters
 * after the run. Generator and daemons run at nice -20, their autogroups
 * too.
 * PPS_ONLY=name,name runs only the cases whose path is named (e.g.
 * PPS_ONLY=kernel-bridge,vrouter-local).
 *
 * This project's machines are shared and have 2 cores: each case also prints
 * who kept each CPU busy (the daemons, ksoftirqd, any other thread), so a
 * figure taken while something else ran can be told apart.
 */
import fs from 'node:fs';
import { Topology, requireCommands } from '../test/support/netns';
import { TrafficPath, buildKernelBridge, buildKernelVxlan } from './pps/kernel-paths';
import { RateMeasurement, measureRate } from './pps/traffic';
import { FORWARDER_CPUS, VrouterTrafficPath, buildVrouterLocal, buildVrouterOverlay } from './pps/vrouter-paths';

/** A forwarding path; vrouter paths also name the daemons whose CPU use and counters are reported. */
interface PathUnderTest {
  name: string;
  build(topology: Topology): Promise<TrafficPath & Partial<Pick<VrouterTrafficPath, 'forwarders' | 'report' | 'stop'>>>;
}

const PATHS: PathUnderTest[] = [
  { name: 'kernel-bridge', build: buildKernelBridge },
  { name: 'kernel-vxlan', build: buildKernelVxlan },
  { name: 'vrouter-local', build: buildVrouterLocal },
  { name: 'vrouter-overlay', build: buildVrouterOverlay },
];
/** 64 bytes is the case's plain name; other sizes get a suffix (kernel-bridge-512). */
const FRAME_SIZES = [64, 512];
/** Each vrouter path against the kernel path doing the same job, printed when both ran. */
const COMPARISONS: Array<[string, string]> = [
  ['vrouter-local', 'kernel-bridge'],
  ['vrouter-overlay', 'kernel-vxlan'],
];
const SOURCE_PORT = 40000;
const DESTINATION_PORT = 5001;

function caseName(path: string, size: number): string {
  return size === 64 ? path : `${path}-${size}`;
}

/** Busy (non-idle) jiffies and all jiffies of each CPU, from /proc/stat. */
function cpuTimes(): Array<{ busy: number; total: number }> {
  return fs
    .readFileSync('/proc/stat', 'utf8')
    .split('\n')
    .filter((line) => /^cpu\d+ /.test(line))
    .map((line) => {
      const ticks = line.split(/\s+/).slice(1).map(Number);
      const total = ticks.reduce((sum, value) => sum + value, 0);
      // idle and iowait
      return { busy: total - ticks[3] - ticks[4], total };
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
  cpus: Array<{ busy: number; total: number }>;
  tasks: Map<string, TaskTimes>;
}

function cpuSnapshot(): CpuSnapshot {
  return { cpus: cpuTimes(), tasks: taskTimes() };
}

/**
 * Who kept each CPU busy since `before`, in percent of that CPU: the
 * forwarders, ksoftirqd, and every other thread together (another run
 * sharing the machine shows there). A thread's time is put on the CPU it
 * last ran on. trafgen has exited by the second look, so its time is in
 * "exited or untracked", with that of any short-lived command.
 */
function cpuUseSince(before: CpuSnapshot, forwarderPids: number[]): string {
  const after = cpuSnapshot();
  return after.cpus
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
      // Threads that exited before the second look (trafgen itself, short commands) and time charged to no thread.
      groups.set('exited or untracked', Math.max(0, busy - tracked));
      const parts = [...groups]
        .filter(([group, ticks]) => ticks > 0 || group === 'other')
        .map(([group, ticks]) => `${group} ${((ticks / elapsed) * 100).toFixed(0)}%`);
      return `CPU ${index} busy ${((busy / elapsed) * 100).toFixed(0)}%: ${parts.join(', ')}`;
    })
    .join(' | ');
}

interface CaseResult extends RateMeasurement {
  /** The daemons by node, in the order of forwarderCpuPercents. */
  forwarderNodes: string[];
  forwarderPids: number[];
  /** Who kept each CPU busy over the whole measurement (warm-up included). */
  cpuUse: string;
  /** The daemons' own counters after the run. */
  report: string[];
}

async function measureCase(path: PathUnderTest, size: number): Promise<CaseResult> {
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
      frame: { ...built, srcPort: SOURCE_PORT, dstPort: DESTINATION_PORT, size },
    });
    const cpuUse = cpuUseSince(cpuBefore, forwarderPids);
    const report = (await built.report?.()) ?? [];
    return { ...result, forwarderNodes: forwarders.map((forwarder) => forwarder.node), forwarderPids, cpuUse, report };
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
    cpu = `, vrouter CPU ${perDaemon.map((value, i) => `${result.forwarderNodes[i]} ${percent(value)} on CPU ${FORWARDER_CPUS[i]}`).join(' + ')}`;
  }
  const atSender = result.senderDropped > 0 ? ` (${result.senderDropped} dropped at the sender's device)` : '';
  return `${Math.round(result.pps)} pps, loss ${(result.loss * 100).toFixed(3)}%${atSender}${cpu}`;
}

function selectedPaths(): PathUnderTest[] {
  const only = process.env.PPS_ONLY?.split(',').map((name) => name.trim()).filter(Boolean);
  if (!only) return PATHS;
  const unknown = only.filter((name) => !PATHS.some((path) => path.name === name));
  if (unknown.length > 0) throw new Error(`PPS_ONLY: no path ${unknown.join(', ')} (paths: ${PATHS.map((path) => path.name).join(', ')})`);
  return PATHS.filter((path) => only.includes(path.name));
}

async function main(): Promise<void> {
  requireCommands({ ip: 'iproute2', bridge: 'iproute2', trafgen: 'netsniff-ng', taskset: 'util-linux' });
  const swept = Topology.sweepStale();
  if (swept.length > 0) console.log(`removed namespaces left by dead runs: ${swept.join(' ')}`);

  const paths = selectedPaths();
  const pps = new Map<string, number>();
  for (const size of FRAME_SIZES) {
    for (const path of paths) {
      const name = caseName(path.name, size);
      const result = await measureCase(path, size);
      pps.set(name, result.pps);
      console.log(`${name}: ${describe(result)}`);
      console.log(`  ${result.cpuUse}`);
      for (const line of result.report) console.log(`  ${line}`);
    }
  }
  for (const size of FRAME_SIZES) {
    for (const [vrouter, kernel] of COMPARISONS) {
      const numerator = pps.get(caseName(vrouter, size));
      const denominator = pps.get(caseName(kernel, size));
      if (numerator === undefined || denominator === undefined) continue;
      console.log(`${caseName(vrouter, size)}/${caseName(kernel, size)}: ${(numerator / denominator).toFixed(2)}`);
    }
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
