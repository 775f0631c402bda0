/**
 * npm run bench:native-io: the native addon's batch I/O, one thread.
 *
 * UDP: datagrams per second through sendBatch/recvBatch on loopback, 64-byte
 * payloads, one thread doing both sides (so each datagram costs its share of
 * one sendmmsg and one recvmmsg). Compared with one datagram per call, it
 * shows what batching saves per packet.
 *
 * TAP: writeBatch/readBatch on TAP devices, on each of their two paths
 * (io_uring, and one read(2)/write(2) per frame with VROUTER_IO_URING=0;
 * each path runs in a process of its own, as the choice is made once per
 * thread):
 *   tap-bridge-B   writeBatch of B 64-byte frames into TAP A, which a Linux
 *                  bridge forwards into TAP B's queue, then readBatch (of up
 *                  to 64, as the dataplane worker does) from TAP B; the time
 *                  of each call, per frame.
 *   tap-write-64   writeBatch only, of frames the kernel drops at once
 *                  (unknown EtherType): what is left is mostly the cost of
 *                  getting each frame to the driver.
 *
 * Runs inside a network namespace it creates and removes (the script
 * re-executes itself there with `ip netns exec`): only that namespace's
 * loopback and TAPs carry traffic. Needs root. Prints the median of ROUNDS
 * rounds of ROUND_MS each.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { loadNativeIo } from '../src/dataplane/io/native';

const PAYLOAD = 64;
const ROUNDS = 5;
const ROUND_MS = 1000;
const LOOPBACK = 0x7f000001;
const INSIDE = '--inside-namespace';
const TAP_CASES = '--tap-cases';

function runCase(name: string, batch: number): void {
  const io = loadNativeIo();
  const sender = io.udpOpen('127.0.0.1', 0);
  const receiver = io.udpOpen('127.0.0.1', 0);
  const epfd = io.epollCreate();
  try {
    io.epollAdd(epfd, receiver, 1);
    const port = io.localPort(receiver);
    const tx = {
      buffer: Buffer.alloc(batch * PAYLOAD, 0xa5),
      offsets: Int32Array.from({ length: batch }, (_, i) => i * PAYLOAD),
      lengths: new Int32Array(batch).fill(PAYLOAD),
      destinations: new Uint32Array(batch).fill(LOOPBACK),
      ports: new Uint16Array(batch).fill(port),
    };
    const capacity = 128;
    const rx = {
      buffer: Buffer.alloc(batch * capacity),
      offsets: Int32Array.from({ length: batch }, (_, i) => i * capacity),
      lengths: new Int32Array(batch),
      sources: new Uint32Array(batch),
    };
    const tags = new Int32Array(1);

    /** Sends one batch and receives all of it; returns datagrams received. */
    const roundTrip = (): number => {
      let sent = 0;
      while (sent < batch) {
        const n = io.sendBatch(sender, tx.buffer, tx.offsets.subarray(sent), tx.lengths.subarray(sent), tx.destinations, tx.ports, batch - sent);
        if (n === 0) throw new Error('sendBatch made no progress: socket buffer full');
        sent += n;
      }
      let received = 0;
      while (received < batch) {
        const n = io.recvBatch(receiver, rx.buffer, rx.offsets, rx.lengths, rx.sources, batch - received, capacity);
        if (n === 0 && io.epollWait(epfd, tags, 1000) === 0) {
          throw new Error(`lost datagrams: ${received} of ${batch} received`);
        }
        received += n;
      }
      return received;
    };

    const measure = (ms: number): number => {
      let datagrams = 0;
      const start = process.hrtime.bigint();
      const end = start + BigInt(ms) * 1_000_000n;
      let now = start;
      while (now < end) {
        for (let i = 0; i < 16; i++) datagrams += roundTrip();
        now = process.hrtime.bigint();
      }
      return (datagrams * 1e9) / Number(now - start);
    };

    measure(300); // warm up: JIT, socket buffers, page faults
    const rates = Array.from({ length: ROUNDS }, () => measure(ROUND_MS)).sort((x, y) => x - y);
    const median = rates[Math.floor(ROUNDS / 2)];
    const stats = io.ioStats();
    if (stats.txDropped !== 0) throw new Error(`${stats.txDropped} datagrams dropped on send (errno ${stats.lastTxErrno})`);
    console.log(`${name}: ${Math.round(median)} datagrams/s`);
  } finally {
    io.close(epfd);
    io.close(sender);
    io.close(receiver);
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.floor(sorted.length / 2)];
}

/** The TAP cases, on whichever path this process's VROUTER_IO_URING selects. */
function tapCases(): void {
  const io = loadNativeIo();
  const ioPath = io.ioStats().ioUring ? 'io_uring' : 'read/write';
  const ip = (...args: string[]) => execFileSync('ip', args);
  const suffix = `${process.pid % 100000}`;
  const a = io.tapOpen(`vba${suffix}`);
  const b = io.tapOpen(`vbb${suffix}`);
  const drop = io.tapOpen(`vbd${suffix}`);
  const bridge = `vbr${suffix}`;
  try {
    ip('link', 'add', bridge, 'type', 'bridge');
    for (const device of [a.name, b.name]) ip('link', 'set', device, 'master', bridge);
    for (const device of [a.name, b.name, drop.name, bridge]) ip('link', 'set', device, 'up');

    const FRAME = 64;
    const capacity = 2048;
    const frames = (count: number) => {
      const buffer = Buffer.alloc(count * FRAME);
      for (let i = 0; i < count; i++) {
        // To 02:..:bb from 02:..:aa, EtherType 0x88b5 (local experimental): the
        // bridge floods it to TAP B; a TAP without a bridge drops it.
        Buffer.from([2, 0, 0, 0, 0, 0xbb, 2, 0, 0, 0, 0, 0xaa, 0x88, 0xb5]).copy(buffer, i * FRAME);
      }
      return { buffer, offsets: Int32Array.from({ length: count }, (_, i) => i * FRAME), lengths: new Int32Array(count).fill(FRAME) };
    };
    const rx = {
      buffer: Buffer.alloc(256 * capacity),
      offsets: Int32Array.from({ length: 256 }, (_, i) => i * capacity),
      lengths: new Int32Array(256),
    };
    while (io.readBatch(b.fd, rx.buffer, rx.offsets, rx.lengths, 256, capacity) > 0);

    /** Runs `step` (which returns frames moved) for `ms`; per-frame times of its two halves. */
    const measure = (ms: number, step: (times: bigint[]) => number) => {
      const times = [0n, 0n];
      let moved = 0;
      const start = process.hrtime.bigint();
      const end = start + BigInt(ms) * 1_000_000n;
      let calls = io.ioStats().batchSyscalls;
      let now = start;
      let batches = 0;
      while (now < end) {
        for (let i = 0; i < 32; i++, batches++) moved += step(times);
        now = process.hrtime.bigint();
      }
      calls = io.ioStats().batchSyscalls - calls;
      return { perSecond: (moved * 1e9) / Number(now - start), first: Number(times[0]) / moved, second: Number(times[1]) / moved, callsPerBatch: calls / batches };
    };

    for (const batch of [64, 1]) {
      const tx = frames(batch);
      const step = (times: bigint[]) => {
        const t0 = process.hrtime.bigint();
        io.writeBatch(a.fd, tx.buffer, tx.offsets, tx.lengths, batch);
        const t1 = process.hrtime.bigint();
        // Up to 64, as the dataplane worker reads: with fewer queued, the
        // last read finds the queue empty (EAGAIN).
        const n = io.readBatch(b.fd, rx.buffer, rx.offsets, rx.lengths, 64, capacity);
        times[0] += t1 - t0;
        times[1] += process.hrtime.bigint() - t1;
        return n;
      };
      measure(300, step); // warm up: JIT, page faults, the read-size hint
      const rounds = Array.from({ length: ROUNDS }, () => measure(ROUND_MS, step));
      const pick = (key: 'perSecond' | 'first' | 'second' | 'callsPerBatch') => median(rounds.map((round) => round[key]));
      console.log(
        `tap-bridge-${batch} (${ioPath}): ${Math.round(pick('perSecond'))} frames/s; ` +
          `writeBatch ${pick('first').toFixed(0)} ns/frame, readBatch ${pick('second').toFixed(0)} ns/frame, ` +
          `${pick('callsPerBatch').toFixed(1)} system calls per write+read`,
      );
    }

    const tx = frames(64);
    const writeOnly = (times: bigint[]) => {
      const t0 = process.hrtime.bigint();
      const n = io.writeBatch(drop.fd, tx.buffer, tx.offsets, tx.lengths, 64);
      times[0] += process.hrtime.bigint() - t0;
      return n;
    };
    measure(300, writeOnly);
    const rounds = Array.from({ length: ROUNDS }, () => measure(ROUND_MS, writeOnly));
    console.log(`tap-write-64 (${ioPath}): writeBatch ${median(rounds.map((round) => round.first)).toFixed(0)} ns/frame`);
    const stats = io.ioStats();
    if (stats.txDropped !== 0) throw new Error(`${stats.txDropped} frames dropped on write (errno ${stats.lastTxErrno})`);
  } finally {
    for (const tap of [a, b, drop]) io.close(tap.fd);
    spawnSync('ip', ['link', 'del', bridge]);
  }
}

function inside(): void {
  execFileSync('ip', ['link', 'set', 'lo', 'up']);
  runCase('udp-loopback-batch', 64);
  runCase('udp-loopback-batch-256', 256);
  runCase('udp-loopback-single', 1);
  // One process per path: the addon picks io_uring or read/write once per thread.
  for (const value of ['1', '0']) {
    const child = spawnSync(process.execPath, [__filename, TAP_CASES], { stdio: 'inherit', timeout: 120_000, killSignal: 'SIGKILL', env: { ...process.env, VROUTER_IO_URING: value } });
    if (child.status !== 0) throw new Error(`TAP cases (VROUTER_IO_URING=${value}) failed: exit ${child.status ?? child.signal}`);
  }
}

function outside(): void {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new Error('bench:native-io needs root (it creates a network namespace)');
  }
  loadNativeIo(); // fail here, with the clear message, if the addon is not built
  const namespace = `vrt-bench-${process.pid}-${randomBytes(2).toString('hex')}`;
  execFileSync('ip', ['netns', 'add', namespace]);
  try {
    const child = spawnSync('ip', ['netns', 'exec', namespace, process.execPath, __filename, INSIDE], {
      stdio: 'inherit',
      timeout: 120_000,
      killSignal: 'SIGKILL',
    });
    if (child.status !== 0) throw new Error(`benchmark failed: exit ${child.status ?? child.signal}`);
  } finally {
    execFileSync('ip', ['netns', 'del', namespace]);
  }
}

if (process.argv.includes(TAP_CASES)) tapCases();
else if (process.argv.includes(INSIDE)) inside();
else outside();
