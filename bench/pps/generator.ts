/**
 * bench:pps's traffic generator, the same for every path: a process of its
 * own in the sender's namespace (started by traffic.ts on CPU 0) that hands
 * the addon's send loop (native/generator.cc) a list of frames to send in
 * turn. Unlike trafgen it takes a refused frame (EAGAIN/ENOBUFS, as a veth
 * gives with RPS on) as back-pressure and offers it again, counting it.
 *
 * What it sends (GeneratorJob):
 *  - sender 'frames': whole Ethernet frames on an AF_PACKET socket (qdisc
 *    bypassed, as trafgen does), UDP/IPv4 with checksum 0;
 *  - sender 'udp-socket': the same frames' UDP payloads on a connected UDP
 *    socket, so that pod A's own stack (routing, neighbour, UDP) sends them:
 *    a real program's traffic.
 *  - flows: the UDP source port takes `flows` consecutive values, so the
 *    vrouter's flow table and ECMP hash see that many flows;
 *  - sizes: frame sizes sent in turn, e.g. IMIX_SIZES.
 *
 * Protocol on stdio: the job as JSON on stdin; `ready` on stdout once the
 * socket is open, then, after SIGINT/SIGTERM (or maxSeconds), one JSON line
 * of GeneratorResult.
 */
import fs from 'node:fs';
import { loadNativeIo } from '../../src/dataplane/io/native';
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

/** What is sent, beyond one frame's addressing. */
export interface TrafficMix {
  /** Distinct UDP source ports, counted up from the frame's srcPort; default 1. */
  flows?: number;
  /** Frame sizes (without FCS) sent in turn; default [frame.size]. */
  sizes?: readonly number[];
  /** Default 'frames'. */
  sender?: 'frames' | 'udp-socket';
}

export interface GeneratorJob extends TrafficMix {
  /** The interface 'frames' are sent on; 'udp-socket' lets the pod's routing choose. */
  ifname: string;
  frame: UdpFrameSpec;
  /** Frames per second; 0 or absent: as fast as the path takes them. */
  rate?: number;
  /** The run ends by then at the latest, even if nobody stops it. */
  maxSeconds: number;
}

export interface GeneratorResult {
  /** Frames the kernel accepted from the generator. */
  sent: number;
  /** sendmmsg calls refused with EAGAIN or ENOBUFS, whose frames were offered again. */
  refused: number;
  sendCalls: number;
  seconds: number;
}

/**
 * IMIX, 7:4:1 of 64-, 570- and 1518-byte frames, interleaved. Those sizes
 * count the 4-byte FCS, as IMIX's definition does (the 1518-byte frame
 * carries a 1500-byte IP packet, a full MTU), so the frames handed to the
 * device are 4 bytes shorter.
 */
export const IMIX_SIZES: readonly number[] = [64, 570, 64, 570, 64, 1518, 64, 570, 64, 570, 64, 64].map((size) => size - 4);

const ETHERNET_IPV4_UDP_HEADERS = 14 + 20 + 8;
const MIN_FRAME = 60;
/** An Ethernet frame of a 1500-byte MTU, without FCS. */
const MAX_FRAME = 1514;
/** Frames in one schedule at most: the generator's buffer stays a few MB. */
const MAX_SCHEDULE = 100_000;

/** A UDP/IPv4 frame: IPv4 checksum computed, UDP checksum 0 (none, valid over IPv4), zero payload. */
export function buildUdpFrame(spec: UdpFrameSpec): Buffer {
  if (!Number.isInteger(spec.size) || spec.size < MIN_FRAME || spec.size > MAX_FRAME) {
    throw new Error(`frame size ${spec.size}: ${MIN_FRAME}..${MAX_FRAME} bytes`);
  }
  if (!Number.isInteger(spec.srcPort) || spec.srcPort < 1 || spec.srcPort > 0xffff) throw new Error(`source port ${spec.srcPort}: 1..65535`);
  const datagram = Buffer.alloc(spec.size - ETHERNET_IPV4_UDP_HEADERS + 8);
  datagram.writeUInt16BE(spec.srcPort, 0);
  datagram.writeUInt16BE(spec.dstPort, 2);
  datagram.writeUInt16BE(datagram.length, 4);
  return ethernet(spec.dstMac, spec.srcMac, 0x0800, ipv4({ src: spec.srcIp, dst: spec.dstIp, protocol: 17, payload: datagram }));
}

function greatestCommonDivisor(a: number, b: number): number {
  return b === 0 ? a : greatestCommonDivisor(b, a % b);
}

/**
 * The frames the generator sends in turn, the whole cycle: frame j has
 * source port srcPort + (j mod flows) and size sizes[j mod sizes.length],
 * over the least common multiple of the two, so that the cycle holds every
 * flow and the sizes in their proportions.
 */
export function frameSchedule(spec: UdpFrameSpec, mix: TrafficMix = {}): Buffer[] {
  const flows = mix.flows ?? 1;
  const sizes = mix.sizes ?? [spec.size];
  if (!Number.isInteger(flows) || flows < 1 || spec.srcPort + flows - 1 > 0xffff) {
    throw new Error(`flows ${flows}: 1..${0x10000 - spec.srcPort} from source port ${spec.srcPort}`);
  }
  if (sizes.length === 0) throw new Error('sizes: at least one frame size');
  if (mix.sender === 'udp-socket' && flows !== 1) throw new Error('udp-socket: one flow (one socket, one source port)');
  const length = (flows / greatestCommonDivisor(flows, sizes.length)) * sizes.length;
  if (length > MAX_SCHEDULE) throw new Error(`${flows} flows x ${sizes.length} sizes: a cycle of ${length} frames, over ${MAX_SCHEDULE}`);
  return Array.from({ length }, (_, j) => buildUdpFrame({ ...spec, srcPort: spec.srcPort + (j % flows), size: sizes[j % sizes.length] }));
}

/** Frames (or, for 'udp-socket', their UDP payloads) packed into one buffer, as the addon's batch calls take them. */
export function packSchedule(frames: Buffer[], sender: TrafficMix['sender'] = 'frames'): { buffer: Buffer; offsets: Int32Array; lengths: Int32Array } {
  const parts = sender === 'udp-socket' ? frames.map((frame) => frame.subarray(ETHERNET_IPV4_UDP_HEADERS)) : frames;
  const offsets = new Int32Array(parts.length);
  const lengths = new Int32Array(parts.length);
  let offset = 0;
  parts.forEach((part, i) => {
    offsets[i] = offset;
    lengths[i] = part.length;
    offset += part.length;
  });
  return { buffer: Buffer.concat(parts), offsets, lengths };
}

/** The addon's generator functions (native/generator.cc); not part of the vrouter's NativeIo. */
interface GeneratorIo {
  generatorPacketOpen(ifname: string): number;
  generatorUdpOpen(srcIp: string, srcPort: number, dstIp: string, dstPort: number): number;
  generatorRun(fd: number, buffer: Uint8Array, offsets: Int32Array, lengths: Int32Array, count: number, ratePps: number, maxSeconds: number): GeneratorResult;
}

function runJob(job: GeneratorJob): GeneratorResult {
  const io = loadNativeIo() as unknown as GeneratorIo;
  const { buffer, offsets, lengths } = packSchedule(frameSchedule(job.frame, job), job.sender);
  const fd = job.sender === 'udp-socket'
    ? io.generatorUdpOpen(job.frame.srcIp, job.frame.srcPort, job.frame.dstIp, job.frame.dstPort)
    : io.generatorPacketOpen(job.ifname);
  // Pipes are written synchronously on Linux: the line is out before the send loop blocks this thread.
  process.stdout.write('ready\n');
  return io.generatorRun(fd, buffer, offsets, lengths, offsets.length, Math.round(job.rate ?? 0), Math.ceil(job.maxSeconds));
}

if (require.main === module) {
  try {
    const job = JSON.parse(fs.readFileSync(0, 'utf8')) as GeneratorJob;
    process.stdout.write(`${JSON.stringify(runJob(job))}\n`);
  } catch (error) {
    // One line, which bench:pps prints as the run's failure.
    process.stderr.write(`${(error as Error).message}\n`);
    process.exitCode = 1;
  }
}
