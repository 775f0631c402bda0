/**
 * npm run bench:native-io: datagrams per second through the native addon's
 * sendBatch/recvBatch on loopback, 64-byte UDP payloads, one thread doing
 * both sides (so each datagram costs its share of one sendmmsg and one
 * recvmmsg). Compared with one datagram per call, it shows what batching
 * saves per packet.
 *
 * Runs inside a network namespace it creates and removes (the script
 * re-executes itself there with `ip netns exec`): only that namespace's
 * loopback carries traffic. Needs root. Prints `<case>: <N> datagrams/s`,
 * the median of ROUNDS rounds of ROUND_MS each.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { loadNativeIo } from '../src/dataplane/io/native';

const PAYLOAD = 64;
const ROUNDS = 5;
const ROUND_MS = 1000;
const LOOPBACK = 0x7f000001;
const INSIDE = '--inside-namespace';

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

function inside(): void {
  execFileSync('ip', ['link', 'set', 'lo', 'up']);
  runCase('udp-loopback-batch', 64);
  runCase('udp-loopback-batch-256', 256);
  runCase('udp-loopback-single', 1);
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

if (process.argv.includes(INSIDE)) inside();
else outside();
