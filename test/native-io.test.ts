/**
 * The native I/O addon (native/*.cc via src/dataplane/io/native.ts).
 *
 * - Argument checking and error shapes run in this process: they make no
 *   syscall that sends anything (bad fds, bad buffers only).
 * - eventfd waking an epollWait blocked in a worker thread runs here too.
 * - Everything that moves real packets (TAPs, UDP, raw IPv4, GRE) runs in a
 *   child process inside a network namespace made for this run
 *   (test/support/native-io-child.ts) and deleted afterwards, also on
 *   failure; the child is killed if it overruns. Nothing leaves it.
 */
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Worker } from 'node:worker_threads';
import { loadNativeIo } from '../src/dataplane/io/native';
import { CHECKS } from './support/native-io-child';

const io = loadNativeIo();

describe('native io: arguments and errors', () => {
  const buffer = Buffer.alloc(4096);
  const offsets = Int32Array.of(0, 2048);
  const lengths = Int32Array.of(64, 64);
  const sources = new Uint32Array(2);

  it('throws a RangeError, before any syscall, for a frame outside the buffer', () => {
    // fd -1 would give EBADF: a RangeError proves the check came first.
    assert.throws(() => io.readBatch(-1, buffer, Int32Array.of(4000), new Int32Array(1), 1, 2048), {
      name: 'RangeError',
      message: /readBatch: frame 0 at offset 4000 with length 2048 does not fit in a buffer of 4096 bytes/,
    });
    assert.throws(() => io.writeBatch(-1, buffer, Int32Array.of(-1), Int32Array.of(10), 1), { name: 'RangeError' });
    assert.throws(() => io.writeBatch(-1, buffer, Int32Array.of(4090), Int32Array.of(7), 1), { name: 'RangeError' });
    assert.throws(() => io.writeBatch(-1, buffer, Int32Array.of(0), Int32Array.of(-5), 1), { name: 'RangeError' });
    assert.throws(() => io.recvBatch(-1, buffer, offsets, lengths, sources, 2, 4096), { name: 'RangeError' });
    assert.throws(() => io.sendBatch(-1, buffer, Int32Array.of(0x7fffffff), Int32Array.of(0x7fffffff), Uint32Array.of(1), null, 1), {
      name: 'RangeError',
    });
    // A view: offsets are relative to the view, bounds are the view's.
    assert.throws(() => io.writeBatch(-1, buffer.subarray(100, 200), Int32Array.of(50), Int32Array.of(51), 1), { name: 'RangeError' });
  });

  it('throws a RangeError when the count exceeds a per-frame array', () => {
    assert.throws(() => io.readBatch(-1, buffer, offsets, new Int32Array(1), 2, 64), { name: 'RangeError', message: /max \(2\) exceeds lengths.length \(1\)/ });
    assert.throws(() => io.writeBatch(-1, buffer, offsets, lengths, 3), { name: 'RangeError', message: /count \(3\) exceeds offsets.length/ });
    assert.throws(() => io.recvBatch(-1, buffer, offsets, lengths, new Uint32Array(1), 2, 64), { name: 'RangeError', message: /sources/ });
    assert.throws(() => io.sendBatch(-1, buffer, offsets, lengths, Uint32Array.of(1, 1), new Uint16Array(1), 2), { name: 'RangeError', message: /ports/ });
    assert.throws(() => io.epollWait(-1, new Int32Array(0), 0), { name: 'RangeError' });
    assert.throws(() => io.readBatch(-1, buffer, offsets, lengths, -1, 64), { name: 'RangeError' });
    assert.throws(() => io.readBatch(-1, buffer, offsets, lengths, 1, 0), { name: 'RangeError' });
  });

  it('throws a TypeError for wrong types, non-integers and missing arguments', () => {
    const anyIo = io as unknown as Record<string, (...args: unknown[]) => unknown>;
    assert.throws(() => anyIo.close('3'), { name: 'TypeError', message: /close: fd must be a number/ });
    assert.throws(() => anyIo.close(1.5), { name: 'TypeError', message: /fd must be an integer/ });
    assert.throws(() => anyIo.close(NaN), { name: 'TypeError' });
    assert.throws(() => anyIo.close(), { name: 'TypeError', message: /expected 1 arguments, got 0/ });
    assert.throws(() => anyIo.readBatch(-1, [1, 2], offsets, lengths, 1, 64), { name: 'TypeError', message: /buffer must be a Buffer/ });
    assert.throws(() => anyIo.readBatch(-1, buffer, Uint32Array.of(0), lengths, 1, 64), { name: 'TypeError', message: /offsets must be a Int32Array/ });
    assert.throws(() => anyIo.sendBatch(-1, buffer, offsets, lengths, Int32Array.of(1), null, 1), { name: 'TypeError', message: /destinations/ });
    assert.throws(() => anyIo.sendBatch(-1, buffer, offsets, lengths, Uint32Array.of(1), Uint32Array.of(1), 1), {
      name: 'TypeError',
      message: /ports must be a Uint16Array or null/,
    });
    assert.throws(() => anyIo.epollAdd(-1, -1, 2 ** 32), { name: 'RangeError' });
    assert.throws(() => io.udpOpen('not-an-ip', 0), { name: 'TypeError', message: /not an IPv4 address: 'not-an-ip'/ });
    assert.throws(() => io.udpOpen('127.0.0.1', 70000), { name: 'RangeError', message: /port must be in \[0, 65535\]/ });
    assert.throws(() => io.rawOpen(256), { name: 'RangeError' });
    assert.throws(() => io.tapOpen('x'.repeat(16)), { name: 'RangeError', message: /at most 15 bytes/ });
    assert.throws(() => io.tapOpen('a\0b'), { name: 'RangeError', message: /NUL/ });
    // podTapOpen checks its whole argument before it enters any namespace.
    const pod = { netnsPath: '/run/netns/none', ifname: 'eth0', mac: '02:00:00:00:00:01', mtu: 1468, ip: '10.0.0.2', gateway: '10.0.0.1' };
    assert.throws(() => io.podTapOpen({ ...pod, mac: '02:00:00:00:00' }), { name: 'RangeError', message: /mac is not a MAC address: '02:00:00:00:00'/ });
    assert.throws(() => io.podTapOpen({ ...pod, gateway: '10.0.0.256' }), { name: 'RangeError', message: /gateway is not an IPv4 address/ });
    assert.throws(() => io.podTapOpen({ ...pod, mtu: 67 }), { name: 'RangeError', message: /mtu/ });
    assert.throws(() => io.podTapOpen({ ...pod, ifname: 'x'.repeat(16) }), { name: 'RangeError', message: /ifname must be at most 15 bytes/ });
    assert.throws(() => (io.podTapOpen as (pod: unknown) => unknown)({ ...pod, ip: undefined }), { name: 'TypeError', message: /ip must be a string/ });
  });

  it('checks the GSO and GRO calls\' runs, frames and stage before any syscall', () => {
    const order = Int32Array.of(0, 1);
    const run = (first: number, count: number) => Int32Array.of(-1, 1, first, count);
    // fd -1 in every run: a RangeError proves the check came before sendmmsg.
    assert.throws(() => io.udpSendRuns(buffer, offsets, lengths, order, run(0, 65), 1, 6635), { name: 'RangeError', message: /run 0 \(first 0, count 65\) is not 1\.\.64 entries of order/ });
    assert.throws(() => io.udpSendRuns(buffer, offsets, lengths, order, run(1, 2), 1, 6635), { name: 'RangeError', message: /is not 1\.\.64 entries/ });
    assert.throws(() => io.udpSendRuns(buffer, offsets, lengths, Int32Array.of(0, 5), run(0, 2), 1, 6635), { name: 'RangeError', message: /order\[1\] = 5 is not a frame/ });
    assert.throws(() => io.udpSendRuns(buffer, Int32Array.of(0, 4090), lengths, order, run(0, 2), 1, 6635), { name: 'RangeError', message: /does not fit/ });
    assert.throws(() => io.udpSendRuns(buffer, offsets, lengths, order, run(0, 2), 2, 6635), { name: 'RangeError', message: /runCount \* 4 \(8\) exceeds runs.length \(4\)/ });
    const big = Buffer.alloc(70000);
    assert.throws(() => io.udpSendRuns(big, Int32Array.of(0, 35000), Int32Array.of(35000, 35000), order, run(0, 2), 1, 6635), { name: 'RangeError', message: /carries 70000 bytes/ });
    assert.throws(() => io.udpSendRuns(buffer, offsets, lengths, order, run(0, 2), 1, 6635), { code: 'EBADF', message: 'sendmmsg fd -1: Bad file descriptor' });
    assert.throws(() => io.udpGroReceive(-1, Buffer.alloc(65535), new Int32Array(6), buffer, offsets, lengths, sources, 2, 64), { name: 'RangeError', message: /stage needs at least one 64 KiB slot/ });
    assert.throws(() => io.udpGroReceive(-1, Buffer.alloc(65536), new Int32Array(5), buffer, offsets, lengths, sources, 2, 64), { name: 'RangeError', message: /state 3 \+ 3 int32 per slot/ });
    assert.throws(() => io.udpGroReceive(-1, Buffer.alloc(65536), new Int32Array(6), buffer, offsets, lengths, sources, 2, 4096), { name: 'RangeError', message: /does not fit/ });
    assert.throws(() => io.udpGroReceive(-1, Buffer.alloc(65536), new Int32Array(6), buffer, offsets, lengths, sources, 2, 64), { code: 'EBADF', message: 'recvmmsg fd -1: Bad file descriptor' });
    assert.throws(() => io.udpSenderOpen('127.0.0.1', 0, 64, 0), { name: 'RangeError', message: /port must be in \[1, 65535\]/ });
    assert.throws(() => io.udpSenderOpen('127.0.0.1', 50000, 0, 0), { name: 'RangeError', message: /ttl must be in \[1, 255\]/ });
    assert.throws(() => io.udpGroEnable(-1), { code: 'EBADF', message: 'setsockopt(UDP_GRO) fd -1: Bad file descriptor' });
  });

  it('reports a negative fd as EBADF, naming the syscall', () => {
    const ebadf = (message: string) => ({ code: 'EBADF', errno: 9, message });
    assert.throws(() => io.close(-1), ebadf('close fd -1: Bad file descriptor'));
    assert.throws(() => io.readBatch(-1, buffer, offsets, lengths, 2, 64), ebadf('read fd -1: Bad file descriptor'));
    assert.throws(() => io.writeBatch(-1, buffer, offsets, lengths, 2), ebadf('write fd -1: Bad file descriptor'));
    assert.throws(() => io.recvBatch(-1, buffer, offsets, lengths, sources, 2, 64), ebadf('recvmmsg fd -1: Bad file descriptor'));
    assert.throws(() => io.sendBatch(-1, buffer, offsets, lengths, Uint32Array.of(1, 1), null, 2), ebadf('sendmmsg fd -1: Bad file descriptor'));
    assert.throws(() => io.epollWait(-1, new Int32Array(4), 0), ebadf('epoll_wait fd -1: Bad file descriptor'));
    assert.throws(() => io.eventfdSignal(-1), { code: 'EBADF', syscall: 'write(eventfd)' });
    assert.throws(() => io.localPort(-1), { code: 'EBADF' });
    // Nothing to do is not an error, whatever the fd.
    assert.equal(io.writeBatch(-1, buffer, offsets, lengths, 0), 0);
  });

  it('epoll: add, poll, delete; eventfd counts signals', () => {
    const epfd = io.epollCreate();
    const efd = io.eventfdCreate();
    try {
      const tags = new Int32Array(4);
      io.epollAdd(epfd, efd, 0xfffffffe);
      assert.throws(() => io.epollAdd(epfd, efd, 1), { code: 'EEXIST', message: `epoll_ctl(ADD) fd ${efd}: File exists` });
      assert.equal(io.epollWait(epfd, tags, 0), 0);
      io.eventfdSignal(efd);
      io.eventfdSignal(efd);
      assert.equal(io.epollWait(epfd, tags, 0), 1);
      assert.equal(tags[0], -2, 'a uint32 tag comes back as the same 32 bits in an Int32Array');
      assert.equal(io.eventfdDrain(efd), 2);
      assert.equal(io.eventfdDrain(efd), 0);
      assert.equal(io.epollWait(epfd, tags, 0), 0);
      io.epollDel(epfd, efd);
      assert.throws(() => io.epollDel(epfd, efd), { code: 'ENOENT' });
    } finally {
      io.close(efd);
      io.close(epfd);
    }
  });

  it('eventfdSignal from one thread wakes epollWait blocked in a worker thread', async () => {
    const epfd = io.epollCreate();
    const efd = io.eventfdCreate();
    io.epollAdd(epfd, efd, 7);
    // The worker loads its own instance of the addon (N-API, per thread).
    const worker = new Worker(
      `
      const { parentPort, workerData } = require('node:worker_threads');
      const io = require(workerData.module).loadNativeIo();
      const tags = new Int32Array(4);
      parentPort.postMessage('ready');
      const start = process.hrtime.bigint();
      const n = io.epollWait(workerData.epfd, tags, 10000);
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      parentPort.postMessage({ n, tag: tags[0], ms, drained: io.eventfdDrain(workerData.efd) });
      `,
      { eval: true, workerData: { module: path.join(__dirname, '..', 'src', 'dataplane', 'io', 'native.js'), epfd, efd } },
    );
    try {
      const result = await new Promise<{ n: number; tag: number; ms: number; drained: number }>((resolve, reject) => {
        worker.on('error', reject);
        worker.on('message', (message: unknown) => {
          if (message === 'ready') {
            // Let the worker get into epoll_wait, then wake it.
            setTimeout(() => io.eventfdSignal(efd), 200);
          } else {
            resolve(message as { n: number; tag: number; ms: number; drained: number });
          }
        });
      });
      assert.equal(result.n, 1);
      assert.equal(result.tag, 7);
      assert.equal(result.drained, 1);
      assert.ok(result.ms >= 100 && result.ms < 5000, `woken after ${result.ms} ms`);
    } finally {
      await worker.terminate();
      io.close(efd);
      io.close(epfd);
    }
  });
});

const CHILD = path.join(__dirname, 'support', 'native-io-child.js');
const CHILD_TIMEOUT_MS = 60_000;
const notRoot = typeof process.getuid === 'function' && process.getuid() !== 0;
const needsRoot = notRoot && 'needs root (ip netns, TAP devices, raw sockets)';

/**
 * readBatch/writeBatch have two paths: io_uring (the default) and one
 * read(2)/write(2) per frame (VROUTER_IO_URING=0, also what a kernel without
 * io_uring gets). The child runs once on each; both must pass every check and
 * agree on what they saw.
 */
const IO_PATHS = [
  { name: 'io_uring', env: {} as Record<string, string> },
  { name: 'read/write', env: { VROUTER_IO_URING: '0' } as Record<string, string> },
];
type CheckReport = { ok: boolean; detail: string; digest?: string };
const reportsByPath = new Map<string, Map<string, CheckReport>>();

for (const ioPath of IO_PATHS) {
  describe(`native io: real traffic inside a network namespace (${ioPath.name})`, { skip: needsRoot }, () => {
    const namespace = `vrt-${process.pid}-${randomBytes(3).toString('hex')}`;
    /** A second namespace, where the child creates a TAP from its own (tap-in-pod-namespace). */
    const podNamespace = `${namespace}-pod`;
    const results = new Map<string, CheckReport>();
    reportsByPath.set(ioPath.name, results);
    let childReport = '';

    before(() => {
      for (const name of [namespace, podNamespace]) {
        const add = spawnSync('ip', ['netns', 'add', name], { encoding: 'utf8' });
        assert.equal(add.status, 0, `ip netns add ${name}: ${add.stderr}`);
      }
      // `ip netns exec` execs node itself, so the timeout's SIGKILL hits the child.
      const env: NodeJS.ProcessEnv = { ...process.env, ...ioPath.env, VROUTER_TEST_POD_NETNS: podNamespace };
      if (!('VROUTER_IO_URING' in ioPath.env)) delete env.VROUTER_IO_URING;
      const child = spawnSync('ip', ['netns', 'exec', namespace, process.execPath, CHILD], {
        encoding: 'utf8',
        timeout: CHILD_TIMEOUT_MS,
        killSignal: 'SIGKILL',
        env,
      });
      childReport = `child exit ${child.status ?? child.signal}${child.error ? ` (${child.error.message})` : ''}\nstdout:\n${child.stdout}\nstderr:\n${child.stderr}`;
      for (const line of (child.stdout ?? '').split('\n')) {
        if (!line.startsWith('{')) continue;
        const { check, ok, detail, digest } = JSON.parse(line) as CheckReport & { check: string };
        results.set(check, { ok, detail, ...(digest === undefined ? {} : { digest }) });
      }
    });

    after(() => {
      // Deleting the namespaces takes their TAPs, addresses and sockets with them.
      for (const name of [namespace, podNamespace]) {
        const del = spawnSync('ip', ['netns', 'del', name], { encoding: 'utf8' });
        if (del.status !== 0 && !/No such file/.test(del.stderr)) throw new Error(`ip netns del ${name}: ${del.stderr}`);
      }
    });

    for (const check of CHECKS) {
      it(check, () => {
        const result = results.get(check);
        assert.ok(result, `check ${check} did not report\n${childReport}`);
        assert.ok(result.ok, `${check}: ${result.detail}\n${childReport}`);
      });
    }

    it('child exited cleanly and reported nothing unexpected', () => {
      const unexpected = [...results.keys()].filter((name) => !(CHECKS as readonly string[]).includes(name));
      assert.deepEqual(unexpected, [], childReport);
      assert.match(childReport, /^child exit 0\n/, childReport);
    });
  });
}

describe('native io: io_uring and read/write give the same results', { skip: needsRoot }, () => {
  it('every check that sums up what it saw saw the same on both paths', () => {
    const [first, second] = IO_PATHS.map((ioPath) => reportsByPath.get(ioPath.name));
    assert.ok(first && second, 'both paths ran');
    const compared: string[] = [];
    for (const check of CHECKS) {
      const one: CheckReport | undefined = first.get(check);
      const other: CheckReport | undefined = second.get(check);
      if (one?.digest === undefined && other?.digest === undefined) continue;
      assert.equal(one?.digest, other?.digest, `${check}: ${IO_PATHS[0].name} saw "${one?.detail}", ${IO_PATHS[1].name} saw "${other?.detail}"`);
      compared.push(check);
    }
    // The ordering and would-block checks must be among those compared.
    for (const check of ['tap-read-order', 'tap-write-order', 'fifo-would-block', 'eventfd-would-block']) assert.ok(compared.includes(check), `${check} has no digest`);
  });
});
