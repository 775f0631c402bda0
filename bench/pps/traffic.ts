/**
 * Packets-per-second measurement between two namespaces: the project's
 * generator (generator.ts) sends UDP/IPv4 frames out of the sender's
 * interface from CPU 0 (at nice -20, so that other processes on a shared
 * machine take little of it), leaving CPU 1 to the forwarder under test; the
 * figure is the receiver's rx_packets over the window, after a warm-up
 * second. Around the run, with the path idle, every stage's loss counters
 * are read: the generator's refusals, each device's drops in every
 * namespace of the topology, the CPUs' backlog drops, UDP socket drops.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { once } from 'node:events';
import path from 'node:path';
import { Topology } from '../../test/support/netns';
import { GeneratorJob, GeneratorResult, TrafficMix, UdpFrameSpec } from './generator';
import { CounterSet, counterDeltas, parseIpLinkStats, parseSnmpUdp, parseSoftnetStat } from './stats';

export interface MeasureRateOptions {
  topology: Topology;
  senderNs: string;
  senderIf: string;
  receiverNs: string;
  receiverIf: string;
  frame: UdpFrameSpec;
  /** Flows, frame sizes and sender kind; default one flow of frame.size, whole frames. */
  mix?: TrafficMix;
  /** Length of the sampling window; default 5. */
  seconds?: number;
  /** The generator's rate in packets per second ; default: as fast as it can. */
  rate?: number;
  /** Work done while the generator sends (a ping under load): the window lasts at least until it settles. */
  duringWindow?: () => Promise<void>;
  /** A forwarder whose CPU use over the window is reported. */
  forwarderPid?: number;
  /** More forwarders (the daemons of a multi-node path), each reported in forwarderCpuPercents. */
  forwarderPids?: number[];
}

export interface RateMeasurement {
  /** Frames received per second over the window. */
  pps: number;
  /** The sender interface's tx_packets delta over the window. */
  sent: number;
  /** The receiver interface's rx_packets delta over the window. */
  received: number;
  /**
   * Fraction of the frames sent during the whole run (warm-up and stop
   * included) that never arrived, from counters read while the path is idle.
   */
  loss: number;
  /** Percent of one core, when forwarderPid was given. */
  forwarderCpuPercent?: number;
  /** Percent of one core for each of forwarderPids, in order. */
  forwarderCpuPercents?: number[];
  /**
   * The sender interface's tx_dropped over the whole run: frames the
   * generator handed the device that never left it (a TAP whose reader is
   * behind drops them there, and counts as tx_packets only what it read).
   */
  senderDropped: number;
  /** The generator's own account: frames the kernel took, refusals retried. */
  generator: GeneratorResult;
  /**
   * Every loss counter of the path that moved over the whole run, by stage
   * and name ("pod-b/eth0 rx_dropped", "softnet cpu1 dropped", "node1 udp
   * RcvbufErrors"); the receiver's UDP counters are left out, as its sink
   * drops every datagram by design.
   */
  drops: Map<string, number>;
}

const GENERATOR_CPU = '0';
/** The highest priority, so that other processes on a shared machine take little from the generator. */
const GENERATOR_NICE = '-20';

/**
 * Gives a process's autogroup (its session: the Topology starts every
 * process in a new one) a nice value. With kernel.sched_autogroup_enabled
 * sessions share a CPU as equals whatever their processes' own nice values,
 * so those only count once the group's is set too. No-op without autogroups.
 */
export function setAutogroupNice(pid: number, nice: number): void {
  try {
    fs.writeFileSync(`/proc/${pid}/autogroup`, String(nice));
  } catch {
    // No autogroup support (CONFIG_SCHED_AUTOGROUP off), or the process is gone.
  }
}
const WARM_UP_MS = 1_000;
const STOP_TIMEOUT_MS = 5_000;
/** After the generator stops, time for frames still queued on the path to arrive. */
const DRAIN_MS = 250;

let clockTicksPerSecond: number | undefined;

function cpuTicks(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the parenthesised command name, which may hold spaces; utime and stime are fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

/**
 * Starts sampling a process's CPU time (all its threads, from
 * /proc/<pid>/stat); the returned function gives the percent of one core it
 * used since then.
 */
export function cpuUsage(pid: number): () => number {
  const ticksPerSecond = (clockTicksPerSecond ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' })));
  const startTicks = cpuTicks(pid);
  const startedAt = process.hrtime.bigint();
  return () => {
    const seconds = Number(process.hrtime.bigint() - startedAt) / 1e9;
    return ((cpuTicks(pid) - startTicks) / ticksPerSecond / seconds) * 100;
  };
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

interface CounterSample {
  sent: number;
  received: number;
  senderDropped: number;
  /** The middle of the reads, which take a few ms. */
  atSeconds: number;
}

async function sampleCounters(options: MeasureRateOptions): Promise<CounterSample> {
  const before = performance.now();
  const [sent, received, senderDropped] = await Promise.all([
    options.topology.readCounter(options.senderNs, options.senderIf, 'tx_packets'),
    options.topology.readCounter(options.receiverNs, options.receiverIf, 'rx_packets'),
    options.topology.readCounter(options.senderNs, options.senderIf, 'tx_dropped'),
  ]);
  return { sent, received, senderDropped, atSeconds: (before + performance.now()) / 2000 };
}

/**
 * The sink, the same for every path: a UDP socket on the destination port
 * in the receiver's namespace that never reads. The kernel drops datagrams
 * at its full queue instead of answering each with an ICMP port unreachable,
 * work that would land on whichever CPU delivers the packet (the generator's
 * for the kernel paths, the forwarder's for the vrouter) and so skew the
 * comparison.
 */
function startSink(options: MeasureRateOptions) {
  // Python's socket never reads unless asked (Node's dgram always does).
  const script = [
    'import socket, sys, time',
    's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
    's.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)',
    `s.bind(('0.0.0.0', ${options.frame.dstPort}))`,
    "sys.stdout.write('bound\\n'); sys.stdout.flush()",
    'time.sleep(1 << 30)',
  ].join('\n');
  return options.topology.spawn(options.receiverNs, ['/usr/bin/python3', '-c', script], { stdio: ['ignore', 'pipe', 'pipe'] });
}

/**
 * The 'udp-socket' sender's route: pod A's own stack sends to the receiver
 * straight over its interface, to the MAC the frames of the other cases
 * carry, with no neighbour to resolve (nothing answers the pods' gateway on
 * the kernel paths).
 */
async function routeSocketSender(options: MeasureRateOptions): Promise<void> {
  const { topology, senderNs, senderIf, frame } = options;
  await topology.exec(senderNs, ['ip', 'route', 'replace', `${frame.dstIp}/32`, 'dev', senderIf, 'scope', 'link']);
  await topology.exec(senderNs, ['ip', 'neigh', 'replace', frame.dstIp, 'lladdr', frame.dstMac, 'dev', senderIf, 'nud', 'permanent']);
}

/** The topology's namespaces, from /run/netns (where `ip netns add` puts them). */
function topologyNamespaces(topology: Topology): string[] {
  return fs.readdirSync('/run/netns').filter((name) => name.startsWith(`${topology.prefix}-`)).sort();
}

/**
 * Every loss counter of the path: each device's drops and errors in each of
 * the topology's namespaces, UDP socket drops (but the receiver's, whose
 * sink drops by design), and the CPUs' softnet backlog drops (machine-wide:
 * another run's drops would show there too).
 */
async function lossCounters(options: MeasureRateOptions): Promise<CounterSet> {
  const counters: CounterSet = new Map();
  await Promise.all(
    topologyNamespaces(options.topology).map(async (ns) => {
      const role = ns.slice(options.topology.prefix.length + 1);
      const [links, snmp] = await Promise.all([
        options.topology.exec(ns, ['ip', '-s', '-j', 'link', 'show']),
        ns === options.receiverNs ? Promise.resolve('') : options.topology.exec(ns, ['cat', '/proc/net/snmp']),
      ]);
      for (const [name, value] of parseIpLinkStats(links)) counters.set(`${role}/${name}`, value);
      for (const [name, value] of parseSnmpUdp(snmp)) counters.set(`${role} udp ${name}`, value);
    }),
  );
  for (const [name, value] of parseSoftnetStat(fs.readFileSync('/proc/net/softnet_stat', 'utf8'))) counters.set(`softnet ${name}`, value);
  return counters;
}

export async function measureRate(options: MeasureRateOptions): Promise<RateMeasurement> {
  if (options.mix?.sender === 'udp-socket') await routeSocketSender(options);
  const sink = startSink(options);
  await new Promise<void>((resolve, reject) => {
    sink.stdout!.once('data', () => resolve());
    sink.once('exit', (code) => reject(new Error(`the UDP sink in ${options.receiverNs} exited (${code})`)));
  });
  try {
    return await measureWithSink(options);
  } finally {
    sink.kill('SIGKILL');
  }
}

async function measureWithSink(options: MeasureRateOptions): Promise<RateMeasurement> {
  // Loss comes from totals read while the path is idle: reads in two
  // namespaces never happen at the same instant, and under load that gap
  // skews a window's sent and received by some 0.2%.
  const lossBefore = await lossCounters(options);
  const idleBefore = await sampleCounters(options);
  const window = await floodAndSample(options);
  await delay(DRAIN_MS);
  const idleAfter = await sampleCounters(options);
  const drops = counterDeltas(lossBefore, await lossCounters(options));
  const senderDropped = idleAfter.senderDropped - idleBefore.senderDropped;
  // What the generator offered: what left the sender plus what its device dropped.
  const sentTotal = idleAfter.sent - idleBefore.sent + senderDropped;
  const receivedTotal = idleAfter.received - idleBefore.received;
  return { ...window, senderDropped, drops, loss: sentTotal === 0 ? 0 : Math.max(0, (sentTotal - receivedTotal) / sentTotal) };
}

const GENERATOR_SCRIPT = path.join(__dirname, 'generator.js');
/** Time for the generator's Node process to start and open its socket. */
const GENERATOR_START_TIMEOUT_MS = 20_000;

/** Runs the generator through warm-up and the window, then stops it; the figures are the window's. */
async function floodAndSample(options: MeasureRateOptions): Promise<Omit<RateMeasurement, 'loss' | 'senderDropped' | 'drops'>> {
  const seconds = options.seconds ?? 5;
  const job: GeneratorJob = {
    ...options.mix,
    ifname: options.senderIf,
    frame: options.frame,
    ...(options.rate === undefined ? {} : { rate: options.rate }),
    // A bound in case this process dies without stopping it.
    maxSeconds: seconds + 60,
  };
  const generator = options.topology.spawn(
    options.senderNs,
    ['taskset', '-c', GENERATOR_CPU, 'nice', '-n', GENERATOR_NICE, process.execPath, GENERATOR_SCRIPT],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  // A generator that dies before reading its job is reported by assertRunning, not by EPIPE.
  generator.stdin?.on('error', () => undefined);
  generator.stdin?.end(JSON.stringify(job));
  // 'close', not 'exit': the result line may still be in the pipe when the process exits.
  const exited = once(generator, 'close');
  // No pid: `ip` could not be started, and `exited` rejects with the reason.
  if (generator.pid === undefined) await exited;
  const generatorGroup = -generator.pid!;
  setAutogroupNice(generator.pid!, Number(GENERATOR_NICE));
  let stdout = '';
  let stderr = '';
  generator.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  generator.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const assertRunning = (): void => {
    if (generator.exitCode !== null || generator.signalCode !== null) {
      throw new Error(`the generator stopped early (${generator.exitCode ?? generator.signalCode}): ${(stderr || stdout).trim()}`);
    }
  };

  let window: Omit<RateMeasurement, 'loss' | 'senderDropped' | 'drops' | 'generator'>;
  try {
    for (const startedAt = Date.now(); !stdout.startsWith('ready\n'); await delay(20)) {
      assertRunning();
      if (Date.now() - startedAt > GENERATOR_START_TIMEOUT_MS) throw new Error('the generator did not start');
    }
    await delay(WARM_UP_MS);
    assertRunning();
    const forwarderCpu = options.forwarderPid === undefined ? undefined : cpuUsage(options.forwarderPid);
    const forwardersCpu = options.forwarderPids?.map((pid) => cpuUsage(pid));
    const first = await sampleCounters(options);
    await Promise.all([delay(seconds * 1000), options.duringWindow?.()]);
    const last = await sampleCounters(options);
    const forwarderCpuPercent = forwarderCpu?.();
    const forwarderCpuPercents = forwardersCpu?.map((usage) => usage());
    assertRunning();

    const received = last.received - first.received;
    window = {
      pps: received / (last.atSeconds - first.atSeconds),
      sent: last.sent - first.sent,
      received,
      ...(forwarderCpuPercent === undefined ? {} : { forwarderCpuPercent }),
      ...(forwarderCpuPercents === undefined ? {} : { forwarderCpuPercents }),
    };
  } finally {
    if (generator.exitCode === null && generator.signalCode === null) {
      process.kill(generatorGroup, 'SIGINT');
      const timer = setTimeout(() => process.kill(generatorGroup, 'SIGKILL'), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    }
  }
  const result = stdout.split('\n').find((line) => line.startsWith('{'));
  if (generator.exitCode !== 0 || result === undefined) throw new Error(`the generator failed (${generator.exitCode ?? generator.signalCode}): ${(stderr || stdout).trim()}`);
  return { ...window, generator: JSON.parse(result) as GeneratorResult };
}
