/**
 * FabricPort: the underlay. The pipeline hands it complete tunnel frames
 * (Ethernet, outer IPv4, UDP or GRE, MPLS, inner packet); they leave in one
 * of two ways, both at the end of the batch:
 *
 *   raw path   the frame minus its Ethernet header, a complete IPv4 packet,
 *              through one raw IP socket (sendmmsg): the outer header is
 *              exactly the one tunnel-encap wrote. MPLS over GRE always, and
 *              whatever the GSO path does not take.
 *   GSO path   MPLS over UDP frames of one flow to one peer, two or more in
 *              the batch: their UDP payloads (label and inner packet) go as
 *              runs of equal-size segments, the last possibly shorter, in
 *              one sendmsg each with UDP_SEGMENT, from a UDP socket bound to
 *              the flow's entropy source port (RFC 7510 section 3), so the
 *              kernel writes the outer IPv4/UDP headers once per run and
 *              segments as late as the device allows.
 *
 * The GSO path keeps what the raw path puts on the wire: source and entropy
 * port (the socket's binding), TTL, TOS and DF clear (set on the socket;
 * a frame whose outer header says otherwise takes the raw path). What
 * differs: the kernel picks the IPv4 id, and it computes the UDP checksum
 * (udp_send_skb in Linux net/ipv4/udp.c fails a UDP_SEGMENT send on a
 * socket with SO_NO_CHECK with EINVAL), where the raw path sends
 * 0: a zero checksum is what RFC 7510 permits over IPv4, a computed one is
 * plain UDP (RFC 768), which every receiver checks.
 *
 * A flow stays on one path within a batch, so its packets keep their order
 * (across batches the sends are ordered anyway). Sockets are opened on first
 * use per source port, at most `maxSockets`, the least recently used closed
 * beyond that; a port the kernel will not bind (another socket holds it)
 * stays on the raw path. Frames are referenced in the pool, not copied: the
 * pipeline flushes its ports at the end of every batch, before the slots are
 * reused. Nothing is allocated per frame.
 */
import type { NativeIo } from './native';
import type { PacketPort } from '../vif';
import { ETH_HEADER_LEN } from '../protocols/ethernet';
import { IP_MIN_HEADER_LEN, PROTO_UDP, readU16, readU32 } from '../protocols/ipv4';
import { MPLS_OVER_UDP_PORT, UDP_HEADER_LEN } from '../protocols/udp';

const QUEUE = 256;
/** What the kernel takes in one UDP_SEGMENT send (its UDP_MAX_SEGMENTS was 64 before Linux 6.9), and a datagram's payload limit. */
const MAX_SEGMENTS = 64;
const MAX_RUN_BYTES = 65507;
/** The outer fields tunnel-encap writes, which the sockets are given. */
const OUTER_TTL = 64;
const OUTER_TOS = 0;
/** Groups of one batch, by (source port, peer): an open-addressed table twice the queue. */
const GROUP_TABLE = 2 * QUEUE;
const DEFAULT_MAX_SOCKETS = 256;

export interface FabricOptions {
  /** The node's underlay address (host order): the sockets' binding, and the outer source a frame needs for the GSO path. */
  underlayIp: number;
  /** false: every frame takes the raw path (VROUTER_UDP_GSO=off). */
  gso: boolean;
  maxSockets?: number;
}

/** The GSO path's own counters (the kernel's are in NativeIo.ioStats). */
export interface FabricStats {
  /** Frames sent on the GSO path and on the raw path. */
  gsoFrames: number;
  rawFrames: number;
  /** Sending sockets open now, opened so far, closed to stay within maxSockets. */
  sockets: number;
  socketsOpened: number;
  socketsClosed: number;
  /** Entropy ports the kernel would not bind (they stay on the raw path). */
  portsRefused: number;
}

export class FabricPort implements PacketPort {
  /** Frames the kernel would not take (socket buffer full): dropped, counted. */
  dropped = 0;
  readonly counters: FabricStats = { gsoFrames: 0, rawFrames: 0, sockets: 0, socketsOpened: 0, socketsClosed: 0, portsRefused: 0 };
  private readonly io: NativeIo;
  private readonly rawFd: number;
  private readonly underlayIp: number;
  private readonly underlayText: string;
  private readonly gso: boolean;
  private readonly maxSockets: number;
  private data: Buffer | null = null;
  private count = 0;
  // Queued frame i: the IPv4 packet for the raw path, its UDP payload, peer, and entropy port (0: raw path only).
  private readonly ipOffsets = new Int32Array(QUEUE);
  private readonly ipLengths = new Int32Array(QUEUE);
  private readonly payloadOffsets = new Int32Array(QUEUE);
  private readonly payloadLengths = new Int32Array(QUEUE);
  private readonly destinations = new Uint32Array(QUEUE);
  private readonly sourcePorts = new Uint16Array(QUEUE);
  // The raw path's batch, gathered from the queue.
  private readonly rawOffsets = new Int32Array(QUEUE);
  private readonly rawLengths = new Int32Array(QUEUE);
  private readonly rawDestinations = new Uint32Array(QUEUE);
  // The GSO path's runs: frames in send order, and per run [fd, peer, first, count].
  private readonly order = new Int32Array(QUEUE);
  private readonly runs = new Int32Array(4 * QUEUE);
  // This batch's groups: the table (slot -> group + 1, valid while its mark is this batch's), and per group its frames as a list.
  private readonly tableGroup = new Int32Array(GROUP_TABLE);
  private readonly tableMark = new Int32Array(GROUP_TABLE);
  private readonly groupPort = new Uint16Array(QUEUE);
  private readonly groupPeer = new Uint32Array(QUEUE);
  private readonly groupFirst = new Int32Array(QUEUE);
  private readonly groupLast = new Int32Array(QUEUE);
  private readonly groupSize = new Int32Array(QUEUE);
  private readonly nextInGroup = new Int32Array(QUEUE);
  private batchMark = 0;
  // Sending sockets by source port; the open ones listed for eviction.
  private readonly socketOf = new Int32Array(65536).fill(-1);
  private readonly lastUsed = new Int32Array(65536);
  private readonly refused = new Uint8Array(65536);
  private readonly openPorts: Int32Array;
  private openCount = 0;

  constructor(io: NativeIo, rawFd: number, options: FabricOptions) {
    this.io = io;
    this.rawFd = rawFd;
    this.underlayIp = options.underlayIp >>> 0;
    const ip = this.underlayIp;
    this.underlayText = `${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`;
    this.gso = options.gso;
    this.maxSockets = options.maxSockets ?? DEFAULT_MAX_SOCKETS;
    this.openPorts = new Int32Array(this.maxSockets);
  }

  send(data: Buffer, offset: number, length: number): void {
    if (this.count === QUEUE) this.flush();
    const i = this.count++;
    const ip = offset + ETH_HEADER_LEN;
    this.data = data;
    this.ipOffsets[i] = ip;
    this.ipLengths[i] = length - ETH_HEADER_LEN;
    this.destinations[i] = readU32(data, ip + 16);
    this.sourcePorts[i] = this.gso && this.socketCanSend(data, ip, length - ETH_HEADER_LEN) ? readU16(data, ip + IP_MIN_HEADER_LEN) : 0;
    const payload = ip + IP_MIN_HEADER_LEN + UDP_HEADER_LEN;
    this.payloadOffsets[i] = payload;
    this.payloadLengths[i] = offset + length - payload;
  }

  flush(): void {
    const count = this.count;
    if (count === 0 || this.data === null) return;
    this.count = 0;
    if (!this.gso) {
      this.sendRaw(this.ipOffsets, this.ipLengths, this.destinations, count);
      return;
    }
    const groups = this.group(count);
    let raw = 0;
    let frames = 0;
    let runCount = 0;
    for (let g = 0; g < groups; g++) {
      const fd = this.groupSize[g] > 1 ? this.socketFor(this.groupPort[g]) : -1;
      if (fd < 0) {
        for (let i = this.groupFirst[g]; i >= 0; i = this.nextInGroup[i]) {
          this.rawOffsets[raw] = this.ipOffsets[i];
          this.rawLengths[raw] = this.ipLengths[i];
          this.rawDestinations[raw] = this.destinations[i];
          raw++;
        }
        continue;
      }
      // Runs of equal-size segments: a larger frame, a full run or a shorter frame's successor starts a new one.
      let segment = 0;
      let bytes = 0;
      let closed = true;
      for (let i = this.groupFirst[g]; i >= 0; i = this.nextInGroup[i]) {
        const length = this.payloadLengths[i];
        const run = 4 * (runCount - 1);
        if (closed || length > segment || this.runs[run + 3] === MAX_SEGMENTS || bytes + length > MAX_RUN_BYTES) {
          const next = 4 * runCount++;
          this.runs[next] = fd;
          this.runs[next + 1] = this.groupPeer[g] | 0;
          this.runs[next + 2] = frames;
          this.runs[next + 3] = 1;
          segment = length;
          bytes = length;
        } else {
          this.runs[run + 3]++;
          bytes += length;
        }
        closed = length < segment;
        this.order[frames++] = i;
      }
    }
    if (raw > 0) this.sendRaw(this.rawOffsets, this.rawLengths, this.rawDestinations, raw);
    if (runCount > 0) {
      const done = this.io.udpSendRuns(this.data, this.payloadOffsets, this.payloadLengths, this.order, this.runs, runCount, MPLS_OVER_UDP_PORT);
      for (let r = done; r < runCount; r++) this.dropped += this.runs[4 * r + 3];
      this.counters.gsoFrames += frames;
    }
  }

  /** The GSO path's counters, with the sockets open now. */
  stats(): FabricStats {
    this.counters.sockets = this.openCount;
    return this.counters;
  }

  close(): void {
    for (let k = 0; k < this.openCount; k++) {
      const port = this.openPorts[k];
      this.io.close(this.socketOf[port]);
      this.socketOf[port] = -1;
    }
    this.openCount = 0;
  }

  private sendRaw(offsets: Int32Array, lengths: Int32Array, destinations: Uint32Array, count: number): void {
    const sent = this.io.sendBatch(this.rawFd, this.data!, offsets, lengths, destinations, null, count);
    this.dropped += count - sent;
    this.counters.rawFrames += count;
  }

  /**
   * Whether a socket sends this packet as tunnel-encap wrote it: MPLS over
   * UDP to port 6635 from our address, no IPv4 options, TTL and TOS as the
   * sockets', DF clear and not a fragment, UDP length matching.
   */
  private socketCanSend(d: Buffer, ip: number, length: number): boolean {
    return (
      length >= IP_MIN_HEADER_LEN + UDP_HEADER_LEN &&
      d[ip] === 0x45 &&
      d[ip + 9] === PROTO_UDP &&
      d[ip + 8] === OUTER_TTL &&
      d[ip + 1] === OUTER_TOS &&
      d[ip + 6] === 0 &&
      d[ip + 7] === 0 &&
      readU32(d, ip + 12) === this.underlayIp &&
      readU16(d, ip + IP_MIN_HEADER_LEN + 2) === MPLS_OVER_UDP_PORT &&
      readU16(d, ip + IP_MIN_HEADER_LEN + 4) === length - IP_MIN_HEADER_LEN
    );
  }

  /**
   * Groups queued frames by (entropy port, peer) in order of first
   * appearance, each group's frames in queue order; frames for the raw path
   * only (port 0) are each a group of their own. Returns the group count.
   */
  private group(count: number): number {
    const mark = ++this.batchMark;
    let groups = 0;
    for (let i = 0; i < count; i++) {
      const port = this.sourcePorts[i];
      const peer = this.destinations[i];
      this.nextInGroup[i] = -1;
      let g = -1;
      if (port !== 0) {
        let slot = (Math.imul(peer ^ (port << 16) ^ port, 0x9e3779b1) >>> 23) & (GROUP_TABLE - 1);
        while (this.tableMark[slot] === mark) {
          const candidate = this.tableGroup[slot];
          if (this.groupPort[candidate] === port && this.groupPeer[candidate] === peer) {
            g = candidate;
            break;
          }
          slot = (slot + 1) & (GROUP_TABLE - 1);
        }
        if (g < 0) {
          this.tableMark[slot] = mark;
          this.tableGroup[slot] = groups;
        }
      }
      if (g >= 0) {
        this.nextInGroup[this.groupLast[g]] = i;
        this.groupLast[g] = i;
        this.groupSize[g]++;
      } else {
        g = groups++;
        this.groupPort[g] = port;
        this.groupPeer[g] = peer;
        this.groupFirst[g] = i;
        this.groupLast[g] = i;
        this.groupSize[g] = 1;
      }
    }
    return groups;
  }

  /**
   * The sending socket of an entropy port, opened on first use; -1 where the
   * port stays on the raw path (refused by the kernel, or every socket in
   * use by this batch already).
   */
  private socketFor(port: number): number {
    const known = this.socketOf[port];
    if (known >= 0) {
      this.lastUsed[port] = this.batchMark;
      return known;
    }
    if (this.refused[port] !== 0) return -1;
    let at = this.openCount;
    if (at === this.maxSockets) {
      at = this.leastRecentlyUsed();
      if (at < 0) return -1;
      const evicted = this.openPorts[at];
      this.io.close(this.socketOf[evicted]);
      this.socketOf[evicted] = -1;
      this.counters.socketsClosed++;
    } else {
      this.openCount++;
    }
    let fd: number;
    try {
      fd = this.io.udpSenderOpen(this.underlayText, port, OUTER_TTL, OUTER_TOS);
    } catch {
      // EADDRINUSE and the like: this port keeps the raw path.
      this.refused[port] = 1;
      this.counters.portsRefused++;
      this.openPorts[at] = this.openPorts[--this.openCount];
      return -1;
    }
    this.openPorts[at] = port;
    this.socketOf[port] = fd;
    this.lastUsed[port] = this.batchMark;
    this.counters.socketsOpened++;
    return fd;
  }

  /** The index in openPorts of the socket used longest ago, not by this batch; -1 if all are. */
  private leastRecentlyUsed(): number {
    let best = -1;
    let oldest = this.batchMark;
    for (let k = 0; k < this.openCount; k++) {
      const used = this.lastUsed[this.openPorts[k]];
      if (used < oldest) {
        oldest = used;
        best = k;
      }
    }
    return best;
  }
}
