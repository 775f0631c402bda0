/**
 * Packets-per-second measurement between two namespaces: trafgen (netsniff-ng)
 * floods UDP/IPv4 frames out of the sender's interface from CPU 0 (at nice
 * -20, so that other processes on a shared machine take little of it), leaving
 * CPU 1 to the forwarder under test; the figure is the receiver's rx_packets
 * over the window, after a warm-up second.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { once } from 'node:events';
import { Topology } from '../../test/support/netns';
import { ethernet, ipv4 } from '../../test/support/frames';

export interface UdpFrameSpec {
  dstMac: string;
  srcMac: string;
  srcIp: string;
  dstIp: string;
  srcPort: number;
  dstPort: number;
  /** Ethernet frame length without the FCS: 64 is the classic minimum-size test frame. */
  size: number;
}

export interface MeasureRateOptions {
  topology: Topology;
  senderNs: string;
  senderIf: string;
  receiverNs: string;
  receiverIf: string;
  frame: UdpFrameSpec;
  /** Distinct source ports (flows), counted up from frame.srcPort; default 1. */
  flows?: number;
  /** Length of the sampling window; default 5. */
  seconds?: number;
  /** The generator's rate in packets per second (trafgen --rate); default: as fast as it can. */
  rate?: number;
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
}

const ETHERNET_IPV4_UDP_HEADERS = 14 + 20 + 8;
const MIN_FRAME = 60;
/** trafgen's default frame limit without --jumbo-support. */
const MAX_FRAME = 2048;
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
/** After trafgen stops, time for frames still queued on the path to arrive. */
const DRAIN_MS = 250;

/** The frame trafgen sends: IPv4 checksum computed, UDP checksum 0 (none, valid over IPv4), zero payload. */
export function buildUdpFrame(spec: UdpFrameSpec): Buffer {
  if (!Number.isInteger(spec.size) || spec.size < MIN_FRAME || spec.size > MAX_FRAME) {
    throw new Error(`frame size ${spec.size}: ${MIN_FRAME}..${MAX_FRAME} bytes`);
  }
  const datagram = Buffer.alloc(spec.size - ETHERNET_IPV4_UDP_HEADERS + 8);
  datagram.writeUInt16BE(spec.srcPort, 0);
  datagram.writeUInt16BE(spec.dstPort, 2);
  datagram.writeUInt16BE(datagram.length, 4);
  return ethernet(spec.dstMac, spec.srcMac, 0x0800, ipv4({ src: spec.srcIp, dst: spec.dstIp, protocol: 17, payload: datagram }));
}

function hexBytes(bytes: Buffer): string {
  return [...bytes].map((byte) => `0x${byte.toString(16).padStart(2, '0')}`).join(', ');
}

/**
 * A trafgen packet config for buildUdpFrame(spec). With flows > 1 the low
 * byte of the source port counts up (trafgen's dinc) over `flows` values;
 * the UDP checksum is 0, so no checksum has to follow it.
 */
export function trafgenConfig(spec: UdpFrameSpec, flows = 1): string {
  const frame = buildUdpFrame(spec);
  const firstPortByte = spec.srcPort & 0xff;
  if (!Number.isInteger(flows) || flows < 1 || firstPortByte + flows - 1 > 0xff) {
    throw new Error(`flows ${flows}: 1..${0x100 - firstPortByte} with source port ${spec.srcPort} (only its low byte varies)`);
  }
  const udp = 14 + 20;
  const sourcePortLow = flows === 1 ? hexBytes(frame.subarray(udp + 1, udp + 2)) : `dinc(${firstPortByte}, ${firstPortByte + flows - 1}, 1)`;
  const payload = frame.length - udp - 8;
  return [
    `/* ${frame.length}-byte UDP/IPv4 frame, ${flows} flow(s), from bench/pps/traffic.ts */`,
    '{',
    `  /* Ethernet */ ${hexBytes(frame.subarray(0, 14))},`,
    `  /* IPv4 */ ${hexBytes(frame.subarray(14, udp))},`,
    `  /* UDP */ ${hexBytes(frame.subarray(udp, udp + 1))}, ${sourcePortLow}, ${hexBytes(frame.subarray(udp + 2, udp + 8))},`,
    `  /* payload */ fill(0x00, ${payload})`,
    '}',
    '',
  ].join('\n');
}

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

export async function measureRate(options: MeasureRateOptions): Promise<RateMeasurement> {
  const config = trafgenConfig(options.frame, options.flows);
  const sink = startSink(options);
  await new Promise<void>((resolve, reject) => {
    sink.stdout!.once('data', () => resolve());
    sink.once('exit', (code) => reject(new Error(`the UDP sink in ${options.receiverNs} exited (${code})`)));
  });
  try {
    return await measureWithSink(options, config);
  } finally {
    sink.kill('SIGKILL');
  }
}

async function measureWithSink(options: MeasureRateOptions, config: string): Promise<RateMeasurement> {
  // Loss comes from totals read while the path is idle: reads in two
  // namespaces never happen at the same instant, and under load that gap
  // skews a window's sent and received by some 0.2%.
  const idleBefore = await sampleCounters(options);
  const window = await floodAndSample(options, config);
  await delay(DRAIN_MS);
  const idleAfter = await sampleCounters(options);
  const senderDropped = idleAfter.senderDropped - idleBefore.senderDropped;
  // What the generator offered: what left the sender plus what its device dropped.
  const sentTotal = idleAfter.sent - idleBefore.sent + senderDropped;
  const receivedTotal = idleAfter.received - idleBefore.received;
  return { ...window, senderDropped, loss: sentTotal === 0 ? 0 : Math.max(0, (sentTotal - receivedTotal) / sentTotal) };
}

/** Runs trafgen through warm-up and the window, then stops it; the figures are the window's. */
async function floodAndSample(options: MeasureRateOptions, config: string): Promise<Omit<RateMeasurement, 'loss' | 'senderDropped'>> {
  // The config goes in on stdin: no file to leave behind if the run is killed.
  const generator = options.topology.spawn(
    options.senderNs,
    [
      'taskset', '-c', GENERATOR_CPU, 'nice', '-n', GENERATOR_NICE,
      // One worker; --no-sock-mem leaves the machine-wide net.core socket limits alone.
      'trafgen', '--dev', options.senderIf, '--conf', '-', '--cpus', '1', '--no-sock-mem', '--notouch-irq',
      ...(options.rate === undefined ? [] : ['--rate', `${Math.round(options.rate)}pps`]),
    ],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  // A trafgen that dies before reading it is reported by assertRunning, not by EPIPE.
  generator.stdin?.on('error', () => undefined);
  generator.stdin?.end(config);
  const exited = once(generator, 'exit');
  // No pid: `ip` could not be started, and `exited` rejects with the reason.
  if (generator.pid === undefined) await exited;
  const generatorGroup = -generator.pid!;
  setAutogroupNice(generator.pid!, Number(GENERATOR_NICE));
  let output = '';
  generator.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  generator.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const assertRunning = (): void => {
    if (generator.exitCode !== null || generator.signalCode !== null) {
      throw new Error(`trafgen stopped early (${generator.exitCode ?? generator.signalCode}): ${output.trim()}`);
    }
  };

  try {
    await delay(WARM_UP_MS);
    assertRunning();
    const forwarderCpu = options.forwarderPid === undefined ? undefined : cpuUsage(options.forwarderPid);
    const forwardersCpu = options.forwarderPids?.map((pid) => cpuUsage(pid));
    const first = await sampleCounters(options);
    await delay((options.seconds ?? 5) * 1000);
    const last = await sampleCounters(options);
    const forwarderCpuPercent = forwarderCpu?.();
    const forwarderCpuPercents = forwardersCpu?.map((usage) => usage());
    assertRunning();

    const received = last.received - first.received;
    return {
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
}
