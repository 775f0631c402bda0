/**
 * Typed access to the native I/O addon (native/*.cc, one file per kernel interface, built by
 * `npm ci` through node-gyp into build/Release/vrouter_io.node).
 *
 * The packet path runs in a dedicated worker thread and calls these
 * functions directly: every call is synchronous (fds are non-blocking, only
 * `epollWait` blocks, for at most its timeout) and moves a whole batch of
 * frames per call, which avoids the per-packet thread-pool round trip of
 * `fs.read` (see shared/reference/performance-baselines.md).
 *
 * Batches: frames live in one preallocated Buffer; frame i is at
 * `offsets[i]` with length `lengths[i]`. Nothing is allocated per frame on
 * either side of the call.
 *
 * Errors: bad arguments throw TypeError/RangeError before any syscall (a
 * frame outside the buffer, a non-integer fd, ...); a failed syscall throws
 * an Error shaped like Node's system errors: message
 * `"<syscall> <object>: <strerror>"` (e.g. `"read fd -1: Bad file
 * descriptor"`), `code` (`"EBADF"`), `errno`, `syscall`.
 *
 * The addon is loaded on first use, so importing this module never fails;
 * each worker thread that calls `loadNativeIo()` gets its own instance.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Returned by `tapOpen`: the fd and the device name the kernel used. */
export interface TapHandle {
  fd: number;
  name: string;
}

/** What podTapOpen makes: where, under which name, with which addressing. */
export interface PodTapConfig {
  /** The namespace file (/run/netns/<name>). */
  netnsPath: string;
  /** The device's name in the pod (eth0). */
  ifname: string;
  mac: string;
  mtu: number;
  ip: string;
  gateway: string;
}

/** What podVethOpen makes: a pod's eth0 as for podTapOpen, and the host end's name. */
export interface PodVethConfig extends PodTapConfig {
  /** The host end, in the calling thread's namespace (at most 15 bytes). */
  hostName: string;
}

/** Returned by xskOpen. */
export interface XskHandle {
  fd: number;
  /** Descriptors one TX kick sends: the TX ring where the kernel has XDP_MAX_TX_SKB_BUDGET (6.17), 32 otherwise. */
  txBudget: number;
}

/** An AF_XDP socket's counters: the kernel's XDP_STATISTICS, then the addon's. */
export interface XskStats {
  /** Frames the kernel dropped for this socket (e.g. RX ring full, or too big for a UMEM frame). */
  rxDropped: number;
  rxInvalid: number;
  txInvalid: number;
  rxRingFull: number;
  /** Frames that found the fill ring empty: the worker did not keep up. */
  fillRingEmpty: number;
  txRingEmpty: number;
  /** Frames xskSend dropped: no free TX buffer or ring slot (the pod is not taking them). */
  txNoBuffer: number;
  /** sendto(2) kicks that pushed TX descriptors to the kernel. */
  kicks: number;
  /** recvfrom(2) calls the fill ring's need_wakeup flag asked for. */
  wakeups: number;
}

/** Cumulative counters of the calling thread (each worker has its own). */
export interface IoStats {
  /** Frames dropped by writeBatch/sendBatch on an error concerning that frame only. */
  txDropped: number;
  /** errno of the most recent such drop; 0 if none yet. */
  lastTxErrno: number;
  /** Datagrams that recvBatch cut to `capacity`. */
  rxTruncated: number;
  /**
   * System calls readBatch and writeBatch have made: io_uring_enter with
   * io_uring (usually one per batch), read/write otherwise (one per frame,
   * plus the read that finds the queue empty).
   */
  batchSyscalls: number;
  /** udpSendRuns messages that carried UDP_SEGMENT (runs of two datagrams or more), and the datagrams in them. */
  gsoSends: number;
  gsoSegments: number;
  /** Coalesced buffers udpGroReceive received, and the frames it split them into. */
  groBuffers: number;
  groSegments: number;
  /**
   * Whether this thread's readBatch/writeBatch use io_uring. Set up on the
   * thread's first batch call (or by this one); false when the kernel or
   * process refuses io_uring, or VROUTER_IO_URING=0 is set.
   */
  ioUring: boolean;
}

export interface NativeIo {
  /**
   * Opens /dev/net/tun and creates, or attaches to, the TAP device `name`
   * (IFF_TAP | IFF_NO_PI: one read/write = one Ethernet frame). At most 15
   * bytes; '' lets the kernel choose. Non-blocking, close-on-exec, not
   * persistent (the device goes away with its last fd). Needs CAP_NET_ADMIN.
   */
  tapOpen(name: string): TapHandle;
  /**
   * A pod's TAP device, created inside the pod's network namespace under
   * `ifname` and configured there over rtnetlink: MAC, MTU, up, `ip/32`, the
   * gateway on the link and the default route via it; persistent (it
   * outlives the fd, so a daemon restart leaves the pod its interface). The
   * calling thread enters the namespace for the call and comes back (needs
   * CAP_SYS_ADMIN too). With `reattach`, a TAP of that name already there is
   * attached as it is (`reattached`). A failure names the step; a device
   * this call made is gone then.
   */
  podTapOpen(pod: PodTapConfig & { reattach?: boolean }): TapHandle & { reattached: boolean };
  /** Ends a pod TAP's persistence: it goes away when its fd is closed (a deleted port). */
  tapRelease(fd: number): void;
  close(fd: number): void;
  /** Closes all of them together (threads of the caller's namespaces): each TAP or socket release waits for an RCU grace period. */
  closeMany(fds: Int32Array): void;

  /**
   * A pod's veth pair: `ifname` created directly in the pod's namespace and
   * configured there over rtnetlink as podTapOpen configures a TAP, its tx
   * checksum and segmentation offloads turned off over ethtool netlink; the
   * host end `hostName` in the calling thread's namespace, up, one queue.
   * A failure names the step; the pair is gone then.
   */
  podVethOpen(pod: PodVethConfig): { name: string; index: number };
  /**
   * Turns off a device's tx checksum and segmentation offloads over ethtool
   * netlink (as podVethOpen does for a pod's veth), in the calling thread's
   * namespace: what leaves it is then segmented and checksummed in software.
   */
  disableTxOffloads(name: string): void;
  /** Deletes an interface of the calling thread's namespace (a veth's host end takes its pod end along). */
  linkDelete(name: string): void;
  /** linkDelete of each, together; throws the first failure once all were tried. */
  linkDeleteMany(names: string[]): void;

  /**
   * An AF_XDP socket in copy mode on `ifname` queue `queue` (UMEM, fill,
   * completion, RX and TX rings, need_wakeup), and the XDP program that
   * redirects that queue's frames to it, attached by a BPF link. The fd is
   * pollable (readable while frames wait). VROUTER_AF_XDP=off makes the bind
   * fail with EPERM, as a kernel that refuses it would. Release with xskClose.
   */
  xskOpen(ifname: string, queue: number): XskHandle;
  /** Copies up to `max` received frames into the buffer (as readBatch); no system call in steady state. */
  xskReceive(fd: number, buffer: Uint8Array, offsets: Int32Array, lengths: Int32Array, max: number, capacity: number): number;
  /** Queues the frames on the TX ring and kicks the kernel; returns `count` (frames without a free buffer are dropped and counted). */
  xskSend(fd: number, buffer: Uint8Array, offsets: Int32Array, lengths: Int32Array, count: number): number;
  xskStats(fd: number): XskStats;
  /** Detaches the XDP program and releases socket, rings, UMEM, map and program. */
  xskClose(fd: number): void;
  /** xskClose of each, together. */
  xskCloseMany(fds: Int32Array): void;

  /**
   * An AF_PACKET socket on `ifname` with a TPACKET_V2 receive ring,
   * PACKET_QDISC_BYPASS for transmit, and a tc program on the device's tcx
   * ingress hook that drops what the socket has seen, so frames do not also
   * climb the host stack. Pollable. Release with packetRingClose.
   */
  packetRingOpen(ifname: string): number;
  /** Copies up to `max` frames out of the ring into the buffer (as readBatch); no system call. */
  packetRingReceive(fd: number, buffer: Uint8Array, offsets: Int32Array, lengths: Int32Array, max: number, capacity: number): number;
  /** sendmmsg(2) of whole frames out of the bound device; returns frames done, as writeBatch. */
  packetSend(fd: number, buffer: Uint8Array, offsets: Int32Array, lengths: Int32Array, count: number): number;
  /** PACKET_STATISTICS since the last call: frames seen, frames dropped for a full ring. */
  packetRingStats(fd: number): { packets: number; drops: number };
  packetRingClose(fd: number): void;
  /** packetRingClose of each, together. */
  packetRingCloseMany(fds: Int32Array): void;

  /** An epoll instance (close-on-exec). */
  epollCreate(): number;
  /** Level-triggered EPOLLIN on `fd`; `tag` (int32 or uint32) is what epollWait reports for it. */
  epollAdd(epfd: number, fd: number, tag: number): void;
  epollDel(epfd: number, fd: number): void;
  /**
   * Waits up to `timeoutMs` (-1 forever, 0 poll) and writes the tags of the
   * ready fds into `tags` (at most min(tags.length, 256)); returns how many.
   * Interrupted by a signal: 0. Tags above 2^31-1 come back negative (int32).
   */
  epollWait(epfd: number, tags: Int32Array, timeoutMs: number): number;

  /** A non-blocking eventfd: another thread's `eventfdSignal` wakes an epollWait on it. */
  eventfdCreate(): number;
  eventfdSignal(fd: number): void;
  /** Resets the eventfd; returns the number of signals since the last drain (0 if none). */
  eventfdDrain(fd: number): number;

  /**
   * Reads frames into `buffer[offsets[i], offsets[i] + capacity)` until
   * the fd is drained or `max` frames were read; stores each length in
   * `lengths[i]`, returns the count. Frames come in the order the device
   * queued them. Longer frames are cut to `capacity`.
   * An error on the first read throws; after some frames it ends the batch.
   * With io_uring (see `ioStats().ioUring`) the reads of a batch share one
   * system call; otherwise it is one read(2) per frame.
   */
  readBatch(fd: number, buffer: Uint8Array, offsets: Int32Array, lengths: Int32Array, max: number, capacity: number): number;
  /**
   * Writes each frame with one write, in order: all of them in one system
   * call with io_uring, one write(2) each otherwise. Returns n: frames
   * [0, n) are done, written or dropped on an error concerning that frame
   * alone (see `ioStats`). n < count only if the fd would block: retry frames
   * [n, count) later. An fd error (EBADF, ...) throws if no frame was done yet.
   */
  writeBatch(fd: number, buffer: Uint8Array, offsets: Int32Array, lengths: Int32Array, count: number): number;

  /**
   * A UDP socket bound to `bindIp:port` (port 0: any, see `localPort`):
   * non-blocking, SO_REUSEADDR, 4 MiB receive and send buffers
   * (SO_RCVBUFFORCE/SO_SNDBUFFORCE when privileged).
   */
  udpOpen(bindIp: string, port: number): number;
  /** The local port a socket is bound to. */
  localPort(fd: number): number;
  /** A SOCK_RAW socket receiving IPv4 `protocol` (e.g. 47 = GRE), full IPv4 header included. */
  rawOpen(protocol: number): number;
  /**
   * A send-only SOCK_RAW IPPROTO_RAW socket (IP_HDRINCL): sendBatch frames
   * are complete IPv4 packets; the kernel fills in the IPv4 checksum and
   * total length (and id/source when 0), and routes on the destination.
   */
  rawSendOpen(): number;

  /**
   * recvmmsg(2): up to `max` datagrams into `buffer[offsets[i], offsets[i] + capacity)`,
   * lengths into `lengths[i]`, source IPv4 (host order) into `sources[i]`.
   * Returns the count, 0 when nothing is queued.
   */
  recvBatch(
    fd: number,
    buffer: Uint8Array,
    offsets: Int32Array,
    lengths: Int32Array,
    sources: Uint32Array,
    max: number,
    capacity: number,
  ): number;
  /**
   * sendmmsg(2): frame i to `destinations[i]` (IPv4, host order), port
   * `ports[i]` (null: 0, for raw sockets). Returns frames done, as
   * `writeBatch`: fewer than `count` only when the socket buffer is full.
   */
  sendBatch(
    fd: number,
    buffer: Uint8Array,
    offsets: Int32Array,
    lengths: Int32Array,
    destinations: Uint32Array,
    ports: Uint16Array | null,
    count: number,
  ): number;

  /**
   * A send-only UDP socket bound to `bindIp:port`, so that `port` is the
   * source port of all it sends (a flow's RFC 7510 entropy port), with the
   * outer fields the raw path writes: IP_TTL `ttl`, IP_TOS `tos`, DF clear
   * (IP_PMTUDISC_DONT). Datagrams arriving at it are discarded by a socket
   * filter. No SO_REUSEADDR: a port another socket holds throws EADDRINUSE.
   */
  udpSenderOpen(bindIp: string, port: number, ttl: number, tos: number): number;
  /** Turns on UDP_GRO (coalesced receives, for udpGroReceive); false where the kernel lacks it. */
  udpGroEnable(fd: number): boolean;
  /**
   * Sends runs of UDP payloads with UDP_SEGMENT. Run r is
   * `runs[4r .. 4r+3]` = [fd, destination (IPv4 host order, as int32 bits),
   * first, count]: frames `order[first .. first+count)` (each frame i at
   * `offsets[i]`, `lengths[i]`) leave as one send from socket `fd` to
   * `destination:dstPort`, every one but the last of the first one's length,
   * at most 64 and 65507 bytes together. Consecutive runs of one fd share a
   * sendmmsg. Returns the runs done (sent, or dropped and counted per frame
   * in ioStats().txDropped); fewer than runCount only when a socket buffer
   * is full.
   */
  udpSendRuns(buffer: Uint8Array, offsets: Int32Array, lengths: Int32Array, order: Int32Array, runs: Int32Array, runCount: number, dstPort: number): number;
  /**
   * recvBatch for a UDP_GRO socket: datagrams are received into `stage`
   * (64 KiB per datagram, stage.length / 65536 of them per recvmmsg) and
   * handed out as frames, a coalesced one split into its segments. Segments
   * that do not fit in `max` stay staged, described by `state` (an
   * Int32Array of 3 + 3 per stage slot, zeroed before the first call), for
   * the next call.
   */
  udpGroReceive(
    fd: number,
    stage: Uint8Array,
    state: Int32Array,
    buffer: Uint8Array,
    offsets: Int32Array,
    lengths: Int32Array,
    sources: Uint32Array,
    max: number,
    capacity: number,
  ): number;

  /** This thread's cumulative error counters. */
  ioStats(): IoStats;
}

export const NATIVE_IO_NOT_BUILT = 'native addon not built: run npm ci (needs g++ and node-gyp)';
const ADDON = path.join('build', 'Release', 'vrouter_io.node');

let loaded: NativeIo | undefined;

/**
 * The addon file: the first build/Release/vrouter_io.node found walking up
 * from this module, which works both from src/dataplane/io (ts-node and
 * friends) and from dist/src/dataplane/io (compiled).
 */
export function nativeIoPath(): string | undefined {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, ADDON);
    if (fs.existsSync(candidate)) return candidate;
    if (path.dirname(dir) === dir) return undefined;
  }
}

/** Loads the addon once per thread (throws a clear error if it was not built). */
export function loadNativeIo(): NativeIo {
  if (loaded !== undefined) return loaded;
  if (process.platform !== 'linux') {
    throw new Error(`native I/O addon is Linux only (this is ${process.platform})`);
  }
  const file = nativeIoPath();
  if (file === undefined) throw new Error(NATIVE_IO_NOT_BUILT);
  try {
    loaded = require(file) as NativeIo;
  } catch (cause) {
    // Built for another Node ABI, truncated by a failed build, ...
    const reason = cause instanceof Error ? cause.message : String(cause);
    throw new Error(`${NATIVE_IO_NOT_BUILT}; loading ${file} failed: ${reason}`, { cause });
  }
  return loaded;
}

/** IPv4 dotted quad to a host-order uint32 (what sendBatch/recvBatch use). */
export function ipv4ToUint32(address: string): number {
  const parts = address.split('.');
  if (parts.length !== 4) throw new TypeError(`not an IPv4 address: '${address}'`);
  let value = 0;
  for (const part of parts) {
    const octet = Number(part);
    if (!/^\d{1,3}$/.test(part) || octet > 255) throw new TypeError(`not an IPv4 address: '${address}'`);
    value = value * 256 + octet;
  }
  return value;
}

/** Host-order uint32 to a dotted quad. */
export function uint32ToIpv4(value: number): string {
  return [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255].join('.');
}
