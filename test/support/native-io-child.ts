/**
 * The real-traffic half of test/native-io.test.ts. Runs INSIDE a network
 * namespace that the test created (`ip netns exec <ns> node <this file>`),
 * so every TAP, address and packet here lives and dies with that namespace;
 * the only addresses used are the namespace's own loopback and TAPs.
 *
 * Prints one JSON line per check: {"check": name, "ok": bool, "detail"?: text,
 * "digest"?: text} and exits 0 only if every check passed. Every wait is
 * bounded. The parent runs this twice, with io_uring and with
 * VROUTER_IO_URING=0 (the read/write loops): a check's `digest` sums up what
 * it saw that must not depend on the path, and the parent compares them.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { ipv4ToUint32, loadNativeIo, uint32ToIpv4 } from '../../src/dataplane/io/native';
import { arpRequest, ethernet, icmpEcho, ipv4, mac, mplsEntry, udp } from './frames';

const io = loadNativeIo();
const LOOPBACK = 0x7f000001;
const WAIT_MS = 3000;
const CAPACITY = 2048;
const SLOTS = 256;

/** Results the parent test asserts on, by name. */
export const CHECKS = [
  'tap-icmp-echo',
  'tap-drops-runt-frame',
  'tap-arp-second-device',
  'tap-attach-busy',
  'tap-in-pod-namespace',
  'udp-batch',
  'udp-truncation',
  'raw-send-udp',
  'udp-gso-gro',
  'raw-receive-gre',
  'batch-io-mode',
  'tap-read-order',
  'tap-write-order',
  'fifo-would-block',
  'eventfd-would-block',
  'eventfd-fails-then-succeeds',
  'worker-thread-ring',
  'teardown-many',
] as const;
type CheckName = (typeof CHECKS)[number];
/** What a check returns: a detail for the report, or that plus a digest both I/O paths must agree on. */
type CheckResult = string | void | { detail: string; digest: string };
type Run = (name: CheckName, body: () => CheckResult) => void;

/** Whether this process was asked to use the read/write loops (see native.ts, IoStats.ioUring). */
const IO_URING_OFF = /^(0|off|false|no)$/i.test(process.env.VROUTER_IO_URING ?? '');

function digestOf(...parts: Array<Buffer | string | number>): string {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(typeof part === 'number' ? String(part) : part).update('|');
  return hash.digest('hex').slice(0, 16);
}

/** Blocks the thread for `ms` (the checks are synchronous). */
function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** A UDP payload that says which datagram it is: 4-byte sequence number, then `seq`-dependent filler. */
function sequenced(seq: number, length: number): Buffer {
  const payload = Buffer.alloc(length, (seq * 13) & 255);
  payload.writeUInt32BE(seq, 0);
  return payload;
}

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function fail(message: string): never {
  throw new Error(message);
}

/** A receive area of SLOTS frames of CAPACITY bytes, reused by every check. */
const rx = {
  buffer: Buffer.alloc(SLOTS * CAPACITY),
  offsets: Int32Array.from({ length: SLOTS }, (_, i) => i * CAPACITY),
  lengths: new Int32Array(SLOTS),
  sources: new Uint32Array(SLOTS),
  frame(i: number): Buffer {
    return this.buffer.subarray(this.offsets[i], this.offsets[i] + this.lengths[i]);
  },
};

/** Frames packed back to back in one buffer, as the packet path will have them. */
function pack(frames: Buffer[]): { buffer: Buffer; offsets: Int32Array; lengths: Int32Array } {
  const buffer = Buffer.concat(frames);
  const offsets = new Int32Array(frames.length);
  const lengths = new Int32Array(frames.length);
  let at = 0;
  frames.forEach((frame, i) => {
    offsets[i] = at;
    lengths[i] = frame.length;
    at += frame.length;
  });
  return { buffer, offsets, lengths };
}

/**
 * epollWait on `epfd` until `onReady(tag)` returns true or WAIT_MS pass.
 * Returns whether it finished.
 */
function pump(epfd: number, onReady: (tag: number) => boolean): boolean {
  const tags = new Int32Array(16);
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) return false;
    const n = io.epollWait(epfd, tags, left);
    for (let i = 0; i < n; i++) if (onReady(tags[i])) return true;
  }
}

function sysctl(path: string, value: string): void {
  if (fs.existsSync(path)) fs.writeFileSync(path, value);
}

// ---------------------------------------------------------------------------

const TAP_A_MAC_PEER = '02:00:00:00:00:02'; // the made-up host 10.77.0.2 behind TAP A
const TAP_B_MAC_PEER = '02:00:00:00:00:03'; // the made-up host 10.77.1.3 behind TAP B
const TAG_A = 1;
const TAG_B = 2;

function interfaceMac(name: string): string {
  return fs.readFileSync(`/sys/class/net/${name}/address`, 'utf8').trim();
}

/** The inode of the calling thread's network namespace: which namespace it is in. */
function threadNetns(): number {
  return fs.statSync('/proc/thread-self/ns/net').ino;
}

/**
 * podTapOpen makes the pod's interface inside another namespace (the parent
 * test made it and names it in VROUTER_TEST_POD_NETNS) and brings the
 * thread back home: the device is there and not here, configured as asked
 * (MAC, MTU, up, ip/32, the gateway on the link, the default route), the
 * kernel of that namespace answers a ping written to the fd; a namespace
 * that does not exist and a step the kernel refuses are errors naming
 * them, and the device of a failed call is gone.
 */
function podNamespaceChecks(run: Run): void {
  const pod = process.env.VROUTER_TEST_POD_NETNS ?? fail('VROUTER_TEST_POD_NETNS is not set');
  const netnsPath = `/run/netns/${pod}`;
  const config = { netnsPath, ifname: 'eth0', mac: '02:00:0a:4e:00:01', mtu: 1400, ip: '10.78.0.1', gateway: '10.78.0.2' };
  const inPod = (...args: string[]) => JSON.parse(execFileSync('ip', ['-n', pod, '-j', ...args], { encoding: 'utf8' })) as Array<Record<string, unknown>>;
  run('tap-in-pod-namespace', () => {
    const home = threadNetns();
    const missing = `${netnsPath}-missing`;
    try {
      io.podTapOpen({ ...config, netnsPath: missing });
      fail(`podTapOpen in ${missing} did not throw`);
    } catch (error) {
      const expected = `open ${missing}: No such file or directory`;
      if ((error as Error).message !== expected) fail(`got "${(error as Error).message}", expected "${expected}"`);
    }
    const tap = io.podTapOpen(config);
    const epfd = io.epollCreate();
    try {
      if (tap.name !== 'eth0') fail(`podTapOpen returned name ${tap.name}`);
      if (threadNetns() !== home) fail('the thread did not come back to its own network namespace');
      if (fs.existsSync('/sys/class/net/eth0')) fail('eth0 was made in the caller\'s namespace');
      const [link] = inPod('link', 'show', 'eth0');
      if (link.address !== config.mac || link.mtu !== config.mtu || !(link.flags as string[]).includes('UP')) fail(`eth0 in the pod: ${JSON.stringify(link)}`);
      const addresses = (inPod('-4', 'addr', 'show', 'eth0')[0].addr_info as Array<{ local: string; prefixlen: number }>).map((a) => `${a.local}/${a.prefixlen}`);
      if (addresses.join() !== '10.78.0.1/32') fail(`addresses of eth0: ${addresses.join()}`);
      const routes = inPod('-4', 'route', 'show').map((r) => `${r.dst} ${r.gateway ?? '-'} ${r.dev} ${r.scope ?? 'global'}`).sort();
      if (routes.join('; ') !== '10.78.0.2 - eth0 link; default 10.78.0.2 eth0 global') fail(`routes in the pod: ${routes.join('; ')}`);

      try {
        io.podTapOpen({ ...config, ifname: 'eth1' });
        fail('a second pod interface with the same routes did not throw');
      } catch (error) {
        const message = (error as Error).message;
        if (!/^RTM_NEWROUTE \(gateway on the link\) eth1 in \/run\/netns\/\S+: File exists$/.test(message)) fail(`second interface: got "${message}"`);
        if (inPod('link', 'show').some((l) => l.ifname === 'eth1')) fail('eth1 is left behind after the failed call');
        if (threadNetns() !== home) fail('the thread did not come back after a failed call');
      }

      ip('-n', pod, 'neigh', 'replace', config.gateway, 'lladdr', TAP_A_MAC_PEER, 'nud', 'permanent', 'dev', 'eth0');
      const echo = ethernet(config.mac, TAP_A_MAC_PEER, 0x0800, ipv4({ src: config.gateway, dst: config.ip, protocol: 1, id: 7, payload: icmpEcho(8, 0x4321, 7) }));
      const batch = pack([echo]);
      if (io.writeBatch(tap.fd, batch.buffer, batch.offsets, batch.lengths, 1) !== 1) fail('writeBatch on the pod\'s eth0');
      io.epollAdd(epfd, tap.fd, TAG_A);
      const answered = pump(epfd, () => {
        const n = io.readBatch(tap.fd, rx.buffer, rx.offsets, rx.lengths, SLOTS, CAPACITY);
        for (let i = 0; i < n; i++) {
          const f = rx.frame(i);
          // Ethernet(14) IPv4(20) ICMP echo reply (type 0) with our id.
          if (f.length >= 42 && f.readUInt16BE(12) === 0x0800 && f[23] === 1 && f[34] === 0 && f.readUInt16BE(38) === 0x4321) return true;
        }
        return false;
      });
      if (!answered) fail('no echo reply from the pod namespace\'s kernel');
      return 'eth0 made and configured in the pod namespace, thread back home, ping answered there, failures named and undone';
    } finally {
      io.close(epfd);
      io.close(tap.fd);
    }
  });
}

function tapChecks(run: Run): void {
  const suffix = `${process.pid % 100000}${Math.floor(Math.random() * 36 ** 3).toString(36)}`;
  const nameA = `vta${suffix}`.slice(0, 15);
  const nameB = `vtb${suffix}`.slice(0, 15);
  // IPv6 off before the TAPs exist: no router solicitations or MLD reports
  // mixed into what we read (they would only be skipped anyway).
  sysctl('/proc/sys/net/ipv6/conf/default/disable_ipv6', '1');
  const a = io.tapOpen(nameA);
  const b = io.tapOpen(nameB);
  const epfd = io.epollCreate();
  try {
    if (a.name !== nameA || b.name !== nameB) fail(`tapOpen returned names ${a.name}, ${b.name}`);
    io.epollAdd(epfd, a.fd, TAG_A);
    io.epollAdd(epfd, b.fd, TAG_B);
    ip('link', 'set', nameA, 'up');
    ip('link', 'set', nameB, 'up');
    ip('addr', 'add', '10.77.0.1/24', 'dev', nameA);
    ip('addr', 'add', '10.77.1.1/24', 'dev', nameB);
    // Static neighbour: the kernel answers the echo without ARPing first.
    ip('neigh', 'replace', '10.77.0.2', 'lladdr', TAP_A_MAC_PEER, 'nud', 'permanent', 'dev', nameA);
    const macA = interfaceMac(nameA);
    const macB = interfaceMac(nameB);

    const payloadOf = (seq: number) => Buffer.alloc(32, seq);
    const ping = (seq: number) =>
      ethernet(macA, TAP_A_MAC_PEER, 0x0800, ipv4({ src: '10.77.0.2', dst: '10.77.0.1', protocol: 1, id: seq, payload: icmpEcho(8, 0x5678, seq, payloadOf(seq)) }));

    /** Reads TAP A until echo replies for all `seqs` arrived; returns the ones seen. */
    const collectReplies = (seqs: number[]): Set<number> => {
      const seen = new Set<number>();
      pump(epfd, (tag) => {
        if (tag !== TAG_A) {
          // Drain whatever TAP B got, or level-triggered epoll reports it again at once.
          io.readBatch(b.fd, rx.buffer, rx.offsets, rx.lengths, SLOTS, CAPACITY);
          return false;
        }
        const n = io.readBatch(a.fd, rx.buffer, rx.offsets, rx.lengths, SLOTS, CAPACITY);
        for (let i = 0; i < n; i++) {
          const f = rx.frame(i);
          // Ethernet(14) IPv4(20, no options from Linux) ICMP(8)
          if (f.length < 42 || f.readUInt16BE(12) !== 0x0800 || f[23] !== 1 || f[34] !== 0) continue;
          if (!f.subarray(0, 6).equals(mac(TAP_A_MAC_PEER))) fail(`echo reply to ${f.subarray(0, 6).toString('hex')}`);
          if (f.readUInt32BE(26) !== 0x0a4d0001 || f.readUInt32BE(30) !== 0x0a4d0002) fail('echo reply with wrong addresses');
          if (f.readUInt16BE(38) !== 0x5678) continue;
          const seq = f.readUInt16BE(40);
          if (!f.subarray(42).equals(payloadOf(seq))) fail(`echo reply ${seq}: payload differs`);
          seen.add(seq);
        }
        return seqs.every((s) => seen.has(s));
      });
      return seen;
    };

    run('tap-icmp-echo', () => {
      // Four pings in one writeBatch call; the kernel must answer each.
      const seqs = [1, 2, 3, 4];
      const batch = pack(seqs.map(ping));
      const done = io.writeBatch(a.fd, batch.buffer, batch.offsets, batch.lengths, seqs.length);
      if (done !== seqs.length) fail(`writeBatch returned ${done}`);
      const seen = collectReplies(seqs);
      if (seen.size !== seqs.length) fail(`echo replies for ${[...seen].join(',') || 'none'} of ${seqs.join(',')}`);
      return `${seqs.length} echo replies read back`;
    });

    run('tap-drops-runt-frame', () => {
      // A 6-byte frame is EINVAL for a TAP: dropped and counted, and the
      // frame after it in the same batch still goes out.
      const before = io.ioStats();
      const batch = pack([Buffer.alloc(6, 0xee), ping(9)]);
      const done = io.writeBatch(a.fd, batch.buffer, batch.offsets, batch.lengths, 2);
      const after = io.ioStats();
      if (done !== 2) fail(`writeBatch returned ${done}, expected 2 (one dropped, one written)`);
      if (after.txDropped !== before.txDropped + 1) fail(`txDropped went ${before.txDropped} -> ${after.txDropped}`);
      if (after.lastTxErrno !== 22) fail(`lastTxErrno ${after.lastTxErrno}, expected EINVAL (22)`);
      if (!collectReplies([9]).has(9)) fail('no echo reply for the frame after the runt');
      return 'runt dropped (EINVAL), next frame answered';
    });

    run('tap-arp-second-device', () => {
      // The kernel answers an ARP request on TAP B, and epoll reports it
      // with B's tag.
      const request = arpRequest(TAP_B_MAC_PEER, '10.77.1.3', '10.77.1.1');
      const batch = pack([request]);
      if (io.writeBatch(b.fd, batch.buffer, batch.offsets, batch.lengths, 1) !== 1) fail('writeBatch on TAP B');
      let answered = false;
      pump(epfd, (tag) => {
        const fd = tag === TAG_A ? a.fd : tag === TAG_B ? b.fd : fail(`unknown tag ${tag}`);
        const n = io.readBatch(fd, rx.buffer, rx.offsets, rx.lengths, SLOTS, CAPACITY);
        for (let i = 0; i < n && tag === TAG_B; i++) {
          const f = rx.frame(i);
          if (f.length < 42 || f.readUInt16BE(12) !== 0x0806 || f.readUInt16BE(20) !== 2) continue;
          if (!f.subarray(22, 28).equals(mac(macB))) fail('ARP reply with a sender MAC other than TAP B');
          if (f.readUInt32BE(28) !== 0x0a4d0101 || f.readUInt32BE(38) !== 0x0a4d0103) fail('ARP reply with wrong addresses');
          answered = true;
        }
        return answered;
      });
      if (!answered) fail('no ARP reply on TAP B');
      return 'ARP reply read on TAP B';
    });

    run('tap-attach-busy', () => {
      // A second attach to a single-queue TAP that has an fd: EBUSY, thrown
      // with the documented message.
      try {
        const again = io.tapOpen(nameA);
        io.close(again.fd);
      } catch (error) {
        const e = error as NodeJS.ErrnoException;
        const expected = `TUNSETIFF ${nameA}: Device or resource busy`;
        if (e.message !== expected || e.code !== 'EBUSY') fail(`got "${e.message}" (${e.code}), expected "${expected}"`);
        return e.message;
      }
      return fail('second tapOpen of an attached TAP did not throw');
    });

    const drain = (fd: number) => {
      while (io.readBatch(fd, rx.buffer, rx.offsets, rx.lengths, SLOTS, CAPACITY) > 0);
    };

    run('tap-read-order', () => {
      // Rounds of datagrams routed out of TAP A, each queued by the kernel
      // before one readBatch, which must return all of them in the order
      // sent. The rounds walk readBatch's paths: 200 frames on a port that
      // was idle (read(2) loop: a ring only pays from a few frames on), 10
      // after 200 (one io_uring_enter of 201 reads, 191 find it empty), 200
      // after 10 (waves of 11, 22, 44, 88, 176 reads).
      const PORT = 9;
      const ROUNDS = [200, 10, 200];
      const sender = io.udpOpen('10.77.0.1', 0);
      const peer = ipv4ToUint32('10.77.0.2');
      const seen: number[] = [];
      const calls: number[] = [];
      try {
        drain(a.fd);
        for (const [round, count] of ROUNDS.entries()) {
          const datagrams = Array.from({ length: count }, (_, i) => sequenced(round * 1000 + i, 18 + (i % 23)));
          const batch = pack(datagrams);
          const sent = io.sendBatch(sender, batch.buffer, batch.offsets, batch.lengths, new Uint32Array(count).fill(peer), new Uint16Array(count).fill(PORT), count);
          if (sent !== count) fail(`round ${round}: sendBatch returned ${sent}`);
          sleep(200); // let the kernel finish queueing them on the TAP
          const read = countCalls(() => io.readBatch(a.fd, rx.buffer, rx.offsets, rx.lengths, SLOTS, CAPACITY));
          const seqs: number[] = [];
          for (let i = 0; i < read.result; i++) {
            const f = rx.frame(i);
            // Ethernet(14) IPv4(20) UDP(8): ours are UDP to PORT.
            if (f.length < 46 || f.readUInt16BE(12) !== 0x0800 || f[23] !== 17 || f.readUInt16BE(36) !== PORT) continue;
            const payload = f.subarray(42);
            const seq = payload.readUInt32BE(0) - round * 1000;
            if (seq < 0 || seq >= count || !payload.equals(datagrams[seq])) fail(`round ${round}, frame ${i}: datagram ${seq} with other bytes`);
            seqs.push(seq);
          }
          const misplaced = seqs.findIndex((seq, i) => seq !== i);
          if (seqs.length !== count || misplaced >= 0) {
            fail(`round ${round}: one readBatch gave ${seqs.length} of ${count} datagrams${misplaced >= 0 ? `, #${misplaced} is datagram ${seqs[misplaced]}` : ''}`);
          }
          seen.push(...seqs);
          calls.push(read.calls);
        }
        // read/write: one read per frame, plus the one that finds the queue
        // empty. io_uring: the loop for the first round, then few calls.
        const expected = io.ioStats().ioUring ? calls[1] <= 2 && calls[2] <= 8 : calls.every((n, round) => n === ROUNDS[round] + 1);
        if (!expected) fail(`system calls per round: ${calls.join(', ')} (ioUring ${io.ioStats().ioUring})`);
        return { detail: `${ROUNDS.join(' + ')} datagrams in order, one readBatch each, ${calls.join(' + ')} system calls`, digest: digestOf(...seen) };
      } finally {
        io.close(sender);
      }
    });

    run('tap-write-order', () => {
      // 200 frames in one writeBatch: all taken, and the kernel's socket
      // receives them in batch order. With io_uring: one system call.
      const COUNT = 200;
      const receiver = io.udpOpen('10.77.0.1', 0);
      const epollReceiver = io.epollCreate();
      try {
        io.epollAdd(epollReceiver, receiver, 1);
        const port = io.localPort(receiver);
        const payloads = Array.from({ length: COUNT }, (_, i) => sequenced(i, 18 + (i % 23)));
        const frames = payloads.map((payload, i) =>
          ethernet(macA, TAP_A_MAC_PEER, 0x0800, ipv4({ src: '10.77.0.2', dst: '10.77.0.1', protocol: 17, id: i + 1, payload: udp('10.77.0.2', '10.77.0.1', 40000, port, payload) })),
        );
        const batch = pack(frames);
        const dropped = io.ioStats().txDropped;
        const { calls, result: done } = countCalls(() => io.writeBatch(a.fd, batch.buffer, batch.offsets, batch.lengths, COUNT));
        if (done !== COUNT) fail(`writeBatch returned ${done}`);
        if (io.ioStats().txDropped !== dropped) fail('frames dropped');
        const expected = io.ioStats().ioUring ? calls === 1 : calls === COUNT;
        if (!expected) fail(`${calls} system calls for ${COUNT} frames (ioUring ${io.ioStats().ioUring})`);
        const got: Buffer[] = [];
        pump(epollReceiver, () => {
          const n = io.recvBatch(receiver, rx.buffer, rx.offsets, rx.lengths, rx.sources, SLOTS, CAPACITY);
          for (let i = 0; i < n; i++) got.push(Buffer.from(rx.frame(i)));
          return got.length >= COUNT;
        });
        if (got.length !== COUNT) fail(`received ${got.length} of ${COUNT}`);
        got.forEach((payload, i) => {
          if (!payload.equals(payloads[i])) fail(`datagram ${i} received is datagram ${payload.readUInt32BE(0)} / other bytes`);
        });
        return { detail: `${COUNT} frames, one writeBatch, ${calls} system calls, received in order`, digest: digestOf(...got) };
      } finally {
        io.close(epollReceiver);
        io.close(receiver);
      }
    });
  } finally {
    io.close(epfd);
    io.close(a.fd);
    io.close(b.fd);
  }
}

function socketChecks(run: Run): void {
  run('udp-batch', () => {
    const sender = io.udpOpen('127.0.0.1', 0);
    const receiver = io.udpOpen('127.0.0.1', 0);
    const epfd = io.epollCreate();
    try {
      io.epollAdd(epfd, receiver, 1);
      const port = io.localPort(receiver);
      const COUNT = 100;
      // Datagram i: 20 + i bytes, byte j = (i * 7 + j) & 255.
      const datagrams = Array.from({ length: COUNT }, (_, i) => Buffer.from(Array.from({ length: 20 + i }, (_, j) => (i * 7 + j) & 255)));
      const batch = pack(datagrams);
      const sent = io.sendBatch(sender, batch.buffer, batch.offsets, batch.lengths, new Uint32Array(COUNT).fill(LOOPBACK), new Uint16Array(COUNT).fill(port), COUNT);
      if (sent !== COUNT) fail(`sendBatch returned ${sent}`);
      let received = 0;
      const got: Buffer[] = [];
      pump(epfd, () => {
        const n = io.recvBatch(receiver, rx.buffer, rx.offsets, rx.lengths, rx.sources, SLOTS, CAPACITY);
        for (let i = 0; i < n; i++) {
          if (rx.sources[i] !== LOOPBACK) fail(`datagram from ${uint32ToIpv4(rx.sources[i])}`);
          got.push(Buffer.from(rx.frame(i)));
        }
        received += n;
        return received >= COUNT;
      });
      if (received !== COUNT) fail(`received ${received} of ${COUNT}`);
      got.forEach((d, i) => {
        if (!d.equals(datagrams[i])) fail(`datagram ${i}: ${d.length} bytes, expected ${datagrams[i].length} / different bytes`);
      });
      return `${COUNT} datagrams, bytes, lengths and sources match`;
    } finally {
      io.close(epfd);
      io.close(sender);
      io.close(receiver);
    }
  });

  run('udp-truncation', () => {
    const sender = io.udpOpen('127.0.0.1', 0);
    const receiver = io.udpOpen('127.0.0.1', 0);
    try {
      const port = io.localPort(receiver);
      const batch = pack([Buffer.alloc(300, 0x42)]);
      if (io.sendBatch(sender, batch.buffer, batch.offsets, batch.lengths, Uint32Array.of(LOOPBACK), Uint16Array.of(port), 1) !== 1) fail('sendBatch');
      const before = io.ioStats().rxTruncated;
      let n = 0;
      for (const end = Date.now() + WAIT_MS; n === 0 && Date.now() < end; ) {
        n = io.recvBatch(receiver, rx.buffer, rx.offsets, rx.lengths, rx.sources, 1, 100);
      }
      if (n !== 1 || rx.lengths[0] !== 100) fail(`got ${n} datagrams, length ${rx.lengths[0]}`);
      if (io.ioStats().rxTruncated !== before + 1) fail('rxTruncated not counted');
      return '300-byte datagram cut to 100, counted';
    } finally {
      io.close(sender);
      io.close(receiver);
    }
  });

  run('udp-gso-gro', () => {
    const receiver = io.udpOpen('127.0.0.1', 0);
    const sourcePort = 50001;
    const sender = io.udpSenderOpen('127.0.0.1', sourcePort, 64, 0);
    const epfd = io.epollCreate();
    try {
      if (!io.udpGroEnable(receiver)) fail('UDP_GRO refused');
      io.epollAdd(epfd, receiver, 1);
      const port = io.localPort(receiver);
      // Runs: 20 x 100 bytes and a 40-byte last segment; 3 x 300; one lone 77-byte datagram.
      const sizes = [...Array<number>(20).fill(100), 40, 300, 300, 300, 77];
      const datagrams = sizes.map((size, seq) => sequenced(seq, size));
      const batch = pack(datagrams);
      const order = Int32Array.from(sizes.keys());
      const runs = Int32Array.of(sender, LOOPBACK, 0, 21, sender, LOOPBACK, 21, 3, sender, LOOPBACK, 24, 1);
      const before = io.ioStats();
      const done = io.udpSendRuns(batch.buffer, batch.offsets, batch.lengths, order, runs, 3, port);
      if (done !== 3) fail(`udpSendRuns returned ${done}`);
      const stage = Buffer.alloc(4 * 65536);
      const state = new Int32Array(3 + 3 * 4);
      const got: Buffer[] = [];
      // At most 8 frames per call: the 21-segment run is handed out over several calls.
      pump(epfd, () => {
        for (let n; (n = io.udpGroReceive(receiver, stage, state, rx.buffer, rx.offsets, rx.lengths, rx.sources, 8, CAPACITY)) > 0; ) {
          for (let i = 0; i < n; i++) {
            if (rx.sources[i] !== LOOPBACK) fail(`datagram from ${uint32ToIpv4(rx.sources[i])}`);
            got.push(Buffer.from(rx.frame(i)));
          }
        }
        return got.length >= sizes.length;
      });
      if (got.length !== sizes.length) fail(`received ${got.length} of ${sizes.length}`);
      got.forEach((d, i) => {
        if (!d.equals(datagrams[i])) fail(`frame ${i}: ${d.length} bytes (seq ${d.length >= 4 ? d.readUInt32BE(0) : '?'}), expected ${sizes[i]} bytes of seq ${i}`);
      });
      const after = io.ioStats();
      if (after.gsoSends - before.gsoSends !== 2 || after.gsoSegments - before.gsoSegments !== 24) fail(`gso counters: ${after.gsoSends - before.gsoSends} sends, ${after.gsoSegments - before.gsoSegments} segments`);
      if (after.groBuffers - before.groBuffers !== 2 || after.groSegments - before.groSegments !== 24) fail(`gro counters: ${after.groBuffers - before.groBuffers} buffers, ${after.groSegments - before.groSegments} segments`);
      return '2 UDP_SEGMENT runs (21 and 3) and a lone datagram arrived as 2 coalesced buffers and a datagram, split back into 25 frames in order';
    } finally {
      io.close(epfd);
      io.close(sender);
      io.close(receiver);
    }
  });

  run('raw-send-udp', () => {
    const raw = io.rawSendOpen();
    const receiver = io.udpOpen('127.0.0.1', 0);
    const epfd = io.epollCreate();
    try {
      io.epollAdd(epfd, receiver, 1);
      const port = io.localPort(receiver);
      const payload = Buffer.from('hand-built IPv4/UDP through IPPROTO_RAW');
      // Our own source port (as MPLSoUDP entropy will be), checksums computed by hand.
      const packet = ipv4({ src: '127.0.0.1', dst: '127.0.0.1', protocol: 17, id: 4242, payload: udp('127.0.0.1', '127.0.0.1', 54321, port, payload) });
      const batch = pack([packet]);
      if (io.sendBatch(raw, batch.buffer, batch.offsets, batch.lengths, Uint32Array.of(LOOPBACK), null, 1) !== 1) fail('sendBatch on the raw socket');
      let n = 0;
      pump(epfd, () => (n = io.recvBatch(receiver, rx.buffer, rx.offsets, rx.lengths, rx.sources, SLOTS, CAPACITY)) > 0);
      if (n !== 1) fail(`received ${n} datagrams`);
      if (!rx.frame(0).equals(payload)) fail(`payload differs: ${rx.frame(0).toString('hex')}`);
      if (rx.sources[0] !== LOOPBACK) fail(`source ${uint32ToIpv4(rx.sources[0])}`);
      return 'UDP socket received the payload of a raw-sent packet';
    } finally {
      io.close(epfd);
      io.close(raw);
      io.close(receiver);
    }
  });

  run('raw-receive-gre', () => {
    const raw = io.rawSendOpen();
    const gre = io.rawOpen(47);
    const epfd = io.epollCreate();
    try {
      io.epollAdd(epfd, gre, 1);
      // GRE (no flags, protocol MPLS unicast) + one MPLS label + an inner packet.
      const inner = ipv4({ src: '10.1.1.3', dst: '10.1.1.4', protocol: 17, payload: udp('10.1.1.3', '10.1.1.4', 1000, 2000, Buffer.alloc(24, 0x5a)) });
      const grePayload = Buffer.concat([Buffer.from([0, 0, 0x88, 0x47]), mplsEntry(4711, 63), inner]);
      const packet = ipv4({ src: '127.0.0.1', dst: '127.0.0.1', protocol: 47, id: 777, payload: grePayload });
      const batch = pack([packet]);
      if (io.sendBatch(raw, batch.buffer, batch.offsets, batch.lengths, Uint32Array.of(LOOPBACK), null, 1) !== 1) fail('sendBatch on the raw socket');
      let n = 0;
      pump(epfd, () => (n = io.recvBatch(gre, rx.buffer, rx.offsets, rx.lengths, rx.sources, SLOTS, CAPACITY)) > 0);
      if (n !== 1) fail(`received ${n} packets`);
      const f = rx.frame(0);
      // The raw socket hands over the whole IPv4 packet, header included.
      const ihl = (f[0] & 0x0f) * 4;
      if (f[0] >> 4 !== 4 || f[9] !== 47) fail(`not an IPv4/GRE packet: ${f.subarray(0, 20).toString('hex')}`);
      if (f.readUInt32BE(12) !== LOOPBACK || f.readUInt32BE(16) !== LOOPBACK) fail('wrong addresses');
      if (!f.subarray(ihl).equals(grePayload)) fail('GRE payload differs');
      if (rx.sources[0] !== LOOPBACK) fail(`source ${uint32ToIpv4(rx.sources[0])}`);
      return `${f.length}-byte IPv4/GRE/MPLS packet received with its IPv4 header`;
    } finally {
      io.close(epfd);
      io.close(gre);
      io.close(raw);
    }
  });
}

/** A FIFO in a fresh temporary directory, opened read-write and non-blocking; removed by `close`. */
function openFifo(): { fd: number; file: string; close(): void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vrt-fifo-'));
  const file = path.join(dir, 'fifo');
  execFileSync('mkfifo', [file]);
  const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
  return {
    fd,
    file,
    close() {
      fs.closeSync(fd);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Frames of PIPE_BUF (4096) bytes: a pipe takes such a write whole or not at all. */
const PIPE_FRAME = 4096;

function pipeFrames(count: number): Buffer[] {
  return Array.from({ length: count }, (_, i) => {
    const frame = Buffer.alloc(PIPE_FRAME, (i * 7 + 1) & 255);
    frame.writeUInt32BE(i, 0);
    return frame;
  });
}

function batchChecks(run: Run): void {
  run('batch-io-mode', () => {
    // The parent runs this file once per path: make sure each run is on
    // the path it is meant to test.
    const { ioUring } = io.ioStats();
    if (IO_URING_OFF) {
      if (ioUring) fail('VROUTER_IO_URING=0, yet ioStats().ioUring is true');
      return 'read/write loops (VROUTER_IO_URING=0)';
    }
    const disabled = '/proc/sys/kernel/io_uring_disabled';
    const allowed = fs.existsSync(disabled) && fs.readFileSync(disabled, 'utf8').trim() === '0';
    if (allowed && !ioUring) fail(`${disabled} is 0, yet ioStats().ioUring is false`);
    return ioUring ? 'io_uring' : 'read/write loops (io_uring not available here)';
  });

  run('fifo-would-block', () => {
    // writeBatch's would-block contract on an fd that really blocks: a
    // pipe takes some frames, then says EAGAIN. The frames from there on
    // must be neither written nor dropped (the caller retries them), and
    // everything must come out once, in order. (A FIFO opened by name
    // refuses RWF_NOWAIT on Linux 6.18, so with io_uring this also covers
    // the fallback to write(2)/read(2) for such an fd.)
    const COUNT = 32;
    const fifo = openFifo();
    try {
      const frames = pipeFrames(COUNT);
      const batch = pack(frames);
      const read = {
        buffer: Buffer.alloc(COUNT * PIPE_FRAME),
        offsets: Int32Array.from({ length: COUNT }, (_, i) => i * PIPE_FRAME),
        lengths: new Int32Array(COUNT),
      };
      const dropped = io.ioStats().txDropped;
      const first = io.writeBatch(fifo.fd, batch.buffer, batch.offsets, batch.lengths, COUNT);
      if (!(first > 0 && first < COUNT)) fail(`the pipe took ${first} of ${COUNT} frames; expected it to fill part way`);
      const again = io.writeBatch(fifo.fd, batch.buffer, batch.offsets.subarray(first), batch.lengths.subarray(first), COUNT - first);
      if (again !== 0) fail(`writeBatch on the full pipe returned ${again}`);
      if (io.ioStats().txDropped !== dropped) fail('EAGAIN counted as drops');
      // Read back, retrying the rest as the pipe empties.
      const got: Buffer[] = [];
      let written = first;
      const takes = [first];
      for (let round = 0; round < COUNT && got.length < COUNT; round++) {
        const n = io.readBatch(fifo.fd, read.buffer, read.offsets, read.lengths, COUNT, PIPE_FRAME);
        for (let i = 0; i < n; i++) got.push(Buffer.from(read.buffer.subarray(read.offsets[i], read.offsets[i] + read.lengths[i])));
        if (io.readBatch(fifo.fd, read.buffer, read.offsets, read.lengths, COUNT, PIPE_FRAME) !== 0) fail('pipe not drained by readBatch');
        if (written < COUNT) {
          const n2 = io.writeBatch(fifo.fd, batch.buffer, batch.offsets.subarray(written), batch.lengths.subarray(written), COUNT - written);
          takes.push(n2);
          written += n2;
        }
      }
      if (got.length !== COUNT) fail(`read back ${got.length} of ${COUNT} frames`);
      got.forEach((frame, i) => {
        if (!frame.equals(frames[i])) fail(`frame ${i} read back is frame ${frame.length >= 4 ? frame.readUInt32BE(0) : '?'} (${frame.length} bytes)`);
      });
      if (io.ioStats().txDropped !== dropped) fail('frames dropped');
      return { detail: `pipe took ${takes.join(' + ')} of ${COUNT} frames (EAGAIN in between, nothing dropped); read back once each, in order`, digest: digestOf(takes.join(','), ...got) };
    } finally {
      fifo.close();
    }
  });

  run('eventfd-would-block', () => {
    // An eventfd takes RWF_NOWAIT, so with io_uring this goes through the
    // ring. Each 8-byte frame adds its value to the counter; the value
    // 2^64-1 is refused (EINVAL: a per-frame drop), and a write that would
    // take the counter past 2^64-2 would block (EAGAIN).
    const efd = io.eventfdCreate();
    try {
      const values = [1n, 2n, MAX_U64, 3n, MAX_U64 - 1n - 6n, 1n, 1n];
      const batch = u64Frames(values);
      const before = io.ioStats();
      const { calls, result: done } = countCalls(() => io.writeBatch(efd, batch.buffer, batch.offsets, batch.lengths, values.length));
      const after = io.ioStats();
      // Frames 0-4 done (2 dropped: EINVAL), 5 would block: 5 and 6 not attempted.
      if (done !== 5) fail(`writeBatch returned ${done}, expected 5`);
      if (after.txDropped !== before.txDropped + 1 || after.lastTxErrno !== 22) fail(`txDropped +${after.txDropped - before.txDropped}, lastTxErrno ${after.lastTxErrno}`);
      const counter = readCounter(efd);
      if (counter !== MAX_U64 - 1n) fail(`counter ${counter}, expected 2^64-2`);
      if (readCounter(efd) !== undefined) fail('a second read found a value');
      // The caller retries frames [5, 7).
      const rest = io.writeBatch(efd, batch.buffer, batch.offsets.subarray(5), batch.lengths.subarray(5), 2);
      if (rest !== 2) fail(`retry wrote ${rest} of 2`);
      if (readCounter(efd) !== 2n) fail('retried frames not counted once each');
      return { detail: `5 of 7 done (one EINVAL drop), then EAGAIN; the 2 retried later (${calls} system calls)`, digest: digestOf(done, rest, String(counter)) };
    } finally {
      io.close(efd);
    }
  });

  run('eventfd-fails-then-succeeds', () => {
    // A frame fails with EAGAIN and later ones of the same batch succeed
    // (a 0 still fits in a full eventfd counter). The read/write loop stops
    // at the EAGAIN: 1 done. With io_uring every write of the batch was
    // already attempted, so the frame that failed is dropped and counted
    // (a retry would put it after frames that are out): 4 done.
    const efd = io.eventfdCreate();
    try {
      const batch = u64Frames([MAX_U64 - 1n, 1n, 0n, 0n]);
      const before = io.ioStats();
      const done = io.writeBatch(efd, batch.buffer, batch.offsets, batch.lengths, 4);
      const after = io.ioStats();
      const drops = after.txDropped - before.txDropped;
      if (after.ioUring) {
        if (done !== 4 || drops !== 1 || after.lastTxErrno !== 11) fail(`io_uring: done ${done}, ${drops} drops, lastTxErrno ${after.lastTxErrno}; expected 4, 1, EAGAIN (11)`);
      } else if (done !== 1 || drops !== 0) {
        fail(`read/write: done ${done}, ${drops} drops; expected 1, 0`);
      }
      if (readCounter(efd) !== MAX_U64 - 1n) fail('counter is not 2^64-2');
      return `done ${done}, ${drops} dropped (${after.ioUring ? 'io_uring' : 'read/write'})`;
    } finally {
      io.close(efd);
    }
  });
}

const MAX_U64 = 2n ** 64n - 1n;

/** 8-byte eventfd frames (host order, little-endian here). */
function u64Frames(values: bigint[]): { buffer: Buffer; offsets: Int32Array; lengths: Int32Array } {
  return pack(
    values.map((value) => {
      const frame = Buffer.alloc(8);
      frame.writeBigUInt64LE(value);
      return frame;
    }),
  );
}

/** The eventfd counter through readBatch (which resets it), or undefined when it is 0 (EAGAIN). */
function readCounter(efd: number): bigint | undefined {
  const into = Buffer.alloc(16);
  const lengths = new Int32Array(2);
  const n = io.readBatch(efd, into, Int32Array.of(0, 8), lengths, 2, 8);
  if (n === 0) return undefined;
  if (n !== 1 || lengths[0] !== 8) fail(`eventfd read gave ${n} frames, first ${lengths[0]} bytes`);
  return into.readBigUInt64LE(0);
}

/** System calls readBatch/writeBatch made while `body` ran, and its result. */
function countCalls<T>(body: () => T): { calls: number; result: T } {
  const before = io.ioStats().batchSyscalls;
  const result = body();
  return { calls: io.ioStats().batchSyscalls - before, result };
}

async function workerCheck(): Promise<CheckResult> {
  // The ring is per thread (IORING_SETUP_SINGLE_ISSUER): a worker gets its
  // own, on the same path as this thread, and its own counters.
  const COUNT = 8;
  const mainCalls = io.ioStats().batchSyscalls;
  const worker = new Worker(
    `
    const { parentPort, workerData } = require('node:worker_threads');
    const io = require(workerData.module).loadNativeIo();
    const efd = io.eventfdCreate();
    const count = workerData.count;
    const frames = Buffer.alloc(8 * count);
    for (let i = 0; i < count; i++) frames.writeBigUInt64LE(BigInt(i + 1), 8 * i);
    const offsets = Int32Array.from({ length: count }, (_, i) => 8 * i);
    const written = io.writeBatch(efd, frames, offsets, new Int32Array(count).fill(8), count);
    const into = Buffer.alloc(8 * count);
    const n = io.readBatch(efd, into, offsets, new Int32Array(count), count, 8);
    io.close(efd);
    const stats = io.ioStats();
    parentPort.postMessage({ written, n, sum: Number(into.readBigUInt64LE(0)), ioUring: stats.ioUring, calls: stats.batchSyscalls });
    `,
    { eval: true, workerData: { module: path.join(__dirname, '..', '..', 'src', 'dataplane', 'io', 'native.js'), count: COUNT } },
  );
  try {
    const result = await new Promise<{ written: number; n: number; sum: number; ioUring: boolean; calls: number }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('worker did not answer')), WAIT_MS);
      worker.once('error', reject);
      worker.once('message', (message) => {
        clearTimeout(timer);
        resolve(message);
      });
    });
    const sum = (COUNT * (COUNT + 1)) / 2;
    if (result.written !== COUNT || result.n !== 1 || result.sum !== sum) fail(`worker wrote ${result.written}, read ${result.n} values, counter ${result.sum} (expected ${COUNT}, 1, ${sum})`);
    if (result.ioUring !== io.ioStats().ioUring) fail(`worker ioUring ${result.ioUring}, this thread ${io.ioStats().ioUring}`);
    if (io.ioStats().batchSyscalls !== mainCalls) fail("the worker's system calls were counted in this thread");
    // read/write: 8 writes, 1 read and the one that finds the counter 0.
    // io_uring: one call for the 8 writes; the reads of a fresh fd use read(2).
    const expected = result.ioUring ? result.calls === 3 : result.calls === COUNT + 2;
    if (!expected) fail(`worker counted ${result.calls} system calls (ioUring ${result.ioUring})`);
    return `worker: ${COUNT} eventfd writes and the read, ${result.calls} system calls, ioUring ${result.ioUring}`;
  } finally {
    await worker.terminate();
  }
}

/**
 * The calls a stopping worker releases its ports with (src/dataplane/io/
 * port-teardown.ts): every TAP, AF_XDP socket and device they are given is
 * gone afterwards, and a bad fd among them is reported by number once the
 * others are closed.
 */
function teardownChecks(run: Run): void {
  run('teardown-many', () => {
    const linkList = () => JSON.parse(execFileSync('ip', ['-j', 'link', 'show'], { encoding: 'utf8' })) as Array<{ ifname: string; xdp?: unknown }>;
    const links = () => linkList().map((link) => link.ifname);
    const taps = Array.from({ length: 40 }, (_, i) => io.tapOpen(`vrtdown${i}`).fd);
    const closedBefore = io.tapOpen('vrtdownx').fd;
    io.close(closedBefore);
    try {
      io.closeMany(Int32Array.from([...taps, closedBefore]));
      fail('closeMany of a closed fd did not throw');
    } catch (error) {
      const e = error as NodeJS.ErrnoException;
      if (e.code !== 'EBADF' || !e.message.includes(String(closedBefore))) fail(`closeMany: got "${e.message}" (${e.code}), expected EBADF naming fd ${closedBefore}`);
    }
    const tapsLeft = links().filter((name) => name.startsWith('vrtdown'));
    if (tapsLeft.length > 0) fail(`TAPs left after closeMany: ${tapsLeft.join(' ')}`);
    const veths = Array.from({ length: 8 }, (_, i) => `vrtdv${i}`);
    for (const name of veths) ip('link', 'add', name, 'type', 'veth', 'peer', 'name', `${name}p`);
    for (const name of veths) ip('link', 'set', name, 'up');
    for (const name of veths) ip('link', 'set', `${name}p`, 'up');
    const sockets = veths.slice(0, 4).map((name) => io.xskOpen(name, 0).fd);
    io.xskCloseMany(Int32Array.from(sockets));
    for (const fd of sockets) {
      try {
        io.xskStats(fd);
        fail(`AF_XDP socket ${fd} still open after xskCloseMany`);
      } catch (error) {
        if (!(error instanceof RangeError)) throw error;
      }
    }
    const withXdp = linkList().filter((link) => link.ifname.startsWith('vrtdv') && link.xdp !== undefined);
    if (withXdp.length > 0) fail(`XDP still attached after xskCloseMany: ${withXdp.map((link) => link.ifname).join(' ')}`);
    io.linkDeleteMany(veths);
    const vethsLeft = links().filter((name) => name.startsWith('vrtdv'));
    if (vethsLeft.length > 0) fail(`veth ends left after linkDeleteMany: ${vethsLeft.join(' ')}`);
    return `40 TAPs closed, 4 AF_XDP sockets released, 8 veth pairs deleted, each by one call; EBADF for fd ${closedBefore}`;
  });
}

async function main(): Promise<void> {
  // A new namespace's loopback is down.
  ip('link', 'set', 'lo', 'up');
  let failed = 0;
  const report = (check: CheckName, result: CheckResult): void => {
    const { detail, digest } = typeof result === 'object' ? result : { detail: result ?? '', digest: undefined };
    console.log(JSON.stringify({ check, ok: true, detail, ...(digest === undefined ? {} : { digest }) }));
  };
  const reportError = (check: string, error: unknown): void => {
    failed++;
    const detail = error instanceof Error ? (error.stack ?? error.message) : String(error);
    console.log(JSON.stringify({ check, ok: false, detail }));
  };
  const run: Run = (check, body) => {
    try {
      report(check, body());
    } catch (error) {
      reportError(check, error);
    }
  };
  // A setup failure (ip, /dev/net/tun) is reported, and the checks it kept
  // from running show up as missing in the parent test.
  for (const group of [batchChecks, tapChecks, podNamespaceChecks, socketChecks, teardownChecks]) {
    try {
      group(run);
    } catch (error) {
      reportError(`setup:${group.name}`, error);
    }
  }
  try {
    report('worker-thread-ring', await workerCheck());
  } catch (error) {
    reportError('worker-thread-ring', error);
  }
  process.exitCode = failed === 0 ? 0 : 1;
}

if (require.main === module) void main();
