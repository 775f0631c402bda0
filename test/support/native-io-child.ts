/**
 * The real-traffic half of test/native-io.test.ts. Runs INSIDE a network
 * namespace that the test created (`ip netns exec <ns> node <this file>`),
 * so every TAP, address and packet here lives and dies with that namespace;
 * the only addresses used are the namespace's own loopback and TAPs.
 *
 * Prints one JSON line per check: {"check": name, "ok": bool, "detail"?: text}
 * and exits 0 only if every check passed. Every wait is bounded.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { loadNativeIo, uint32ToIpv4 } from '../../src/dataplane/io/native';
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
  'udp-batch',
  'udp-truncation',
  'raw-send-udp',
  'raw-receive-gre',
] as const;
type CheckName = (typeof CHECKS)[number];

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

function tapChecks(run: (name: CheckName, body: () => string | void) => void): void {
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
  } finally {
    io.close(epfd);
    io.close(a.fd);
    io.close(b.fd);
  }
}

function socketChecks(run: (name: CheckName, body: () => string | void) => void): void {
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

function main(): void {
  // A new namespace's loopback is down.
  ip('link', 'set', 'lo', 'up');
  let failed = 0;
  const run = (check: CheckName, body: () => string | void): void => {
    try {
      const detail = body();
      console.log(JSON.stringify({ check, ok: true, detail: detail ?? '' }));
    } catch (error) {
      failed++;
      const detail = error instanceof Error ? (error.stack ?? error.message) : String(error);
      console.log(JSON.stringify({ check, ok: false, detail }));
    }
  };
  // A setup failure (ip, /dev/net/tun) is reported, and the checks it kept
  // from running show up as missing in the parent test.
  for (const group of [tapChecks, socketChecks]) {
    try {
      group(run);
    } catch (error) {
      failed++;
      console.log(JSON.stringify({ check: `setup:${group.name}`, ok: false, detail: error instanceof Error ? error.stack : String(error) }));
    }
  }
  process.exitCode = failed === 0 ? 0 : 1;
}

if (require.main === module) main();
