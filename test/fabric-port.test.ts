/**
 * FabricPort (src/dataplane/io/fabric-port.ts) against a recording stand-in
 * for the addon: which frames go in which UDP_SEGMENT run and which take the
 * raw path, the socket set's limits, and that a flow's frames keep their
 * order. The real system calls are checked by native-io (udp-gso-gro) and
 * e2e-underlay-gso.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PerformanceObserver, performance } from 'node:perf_hooks';
import type { PerformanceEntry } from 'node:perf_hooks';
import { setImmediate as nextTick } from 'node:timers/promises';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { FabricPort } from '../src/dataplane/io/fabric-port';
import type { NativeIo } from '../src/dataplane/io/native';

const UNDERLAY = 0xc6120b01; // 198.18.11.1
const PEER_A = 0xc6120b02;
const PEER_B = 0xc6120b03;

interface Sent {
  raw: Array<{ peer: number; id: number }>;
  runs: Array<{ fd: number; peer: number; ids: number[]; sizes: number[] }>;
  opened: number[];
  closed: number[];
}

/** The addon's calls FabricPort makes, recorded; udpSenderOpen refuses the ports in `refuse`. */
function recordingIo(refuse: Set<number> = new Set()): { io: NativeIo; sent: Sent } {
  const sent: Sent = { raw: [], runs: [], opened: [], closed: [] };
  let nextFd = 100;
  const fdPort = new Map<number, number>();
  const io = {
    sendBatch(_fd: number, buffer: Uint8Array, offsets: Int32Array, _lengths: Int32Array, destinations: Uint32Array, _ports: null, count: number) {
      for (let i = 0; i < count; i++) sent.raw.push({ peer: destinations[i], id: Buffer.from(buffer).readUInt16BE(offsets[i] + 28 + 4) });
      return count;
    },
    udpSendRuns(buffer: Uint8Array, offsets: Int32Array, lengths: Int32Array, order: Int32Array, runs: Int32Array, runCount: number, dstPort: number) {
      assert.equal(dstPort, 6635);
      for (let r = 0; r < runCount; r++) {
        const frames = Array.from(order.subarray(runs[4 * r + 2], runs[4 * r + 2] + runs[4 * r + 3]));
        sent.runs.push({
          fd: runs[4 * r],
          peer: runs[4 * r + 1] >>> 0,
          ids: frames.map((i) => Buffer.from(buffer).readUInt16BE(offsets[i] + 4)),
          sizes: frames.map((i) => lengths[i]),
        });
      }
      return runCount;
    },
    udpSenderOpen(ip: string, port: number, ttl: number, tos: number) {
      assert.deepEqual([ip, ttl, tos], ['198.18.11.1', 64, 0]);
      if (refuse.has(port)) throw Object.assign(new Error(`bind ${ip}:${port}: Address already in use`), { code: 'EADDRINUSE' });
      const fd = nextFd++;
      fdPort.set(fd, port);
      sent.opened.push(port);
      return fd;
    },
    close(fd: number) {
      sent.closed.push(fdPort.get(fd)!);
    },
  };
  return { io: io as unknown as NativeIo, sent };
}

/**
 * An MPLS over UDP frame as tunnel-encap writes it: Ethernet, IPv4 (TTL 64,
 * TOS 0, DF clear), UDP from `port` to 6635, then `payload` bytes (label and
 * inner packet) starting with the 16-bit `id` after the 4-byte label.
 */
function tunnelFrame(peer: number, port: number, payload: number, id: number, outer: { ttl?: number; flags?: number; protocol?: number } = {}): Buffer {
  const frame = Buffer.alloc(14 + 20 + 8 + payload);
  frame.writeUInt16BE(0x0800, 12);
  const ip = 14;
  frame[ip] = 0x45;
  frame.writeUInt16BE(20 + 8 + payload, ip + 2);
  frame.writeUInt16BE(outer.flags ?? 0, ip + 6);
  frame[ip + 8] = outer.ttl ?? 64;
  frame[ip + 9] = outer.protocol ?? 17;
  frame.writeUInt32BE(UNDERLAY, ip + 12);
  frame.writeUInt32BE(peer, ip + 16);
  frame.writeUInt16BE(port, ip + 20);
  frame.writeUInt16BE(6635, ip + 22);
  frame.writeUInt16BE(8 + payload, ip + 24);
  frame.writeUInt16BE(id, ip + 28 + 4);
  return frame;
}

/** Sends frames from one pool buffer, as the pipeline does, and flushes. */
function sendBatch(port: FabricPort, frames: Buffer[]): void {
  const slot = 2048;
  const pool = Buffer.alloc(frames.length * slot);
  frames.forEach((frame, i) => {
    frame.copy(pool, i * slot);
    port.send(pool, i * slot, frame.length);
  });
  port.flush();
}

test('a run of equal sizes to one peer from one entropy port is one run; a shorter frame ends it, a larger one starts another', () => {
  const { io, sent } = recordingIo();
  const port = new FabricPort(io, 3, { underlayIp: UNDERLAY, gso: true });
  const sizes = [100, 100, 100, 50, 100, 200, 200];
  sendBatch(port, sizes.map((size, id) => tunnelFrame(PEER_A, 50000, size, id)));
  assert.deepEqual(sent.raw, []);
  assert.deepEqual(
    sent.runs.map((run) => run.sizes),
    [[100, 100, 100, 50], [100], [200, 200]],
  );
  assert.deepEqual(sent.runs.flatMap((run) => run.ids), [0, 1, 2, 3, 4, 5, 6], 'order kept');
  assert.deepEqual(sent.opened, [50000]);
  assert.equal(port.stats().gsoFrames, 7);
});

test('runs stop at 64 segments and at 65507 bytes', () => {
  const { io, sent } = recordingIo();
  const port = new FabricPort(io, 3, { underlayIp: UNDERLAY, gso: true });
  sendBatch(port, Array.from({ length: 100 }, (_, id) => tunnelFrame(PEER_A, 50000, 64, id)));
  assert.deepEqual(sent.runs.map((run) => run.sizes.length), [64, 36]);
  sent.runs.length = 0;
  // 1500-byte payloads: 43 fit in 65507 bytes.
  sendBatch(port, Array.from({ length: 50 }, (_, id) => tunnelFrame(PEER_A, 50000, 1500, id)));
  assert.deepEqual(sent.runs.map((run) => run.sizes.length), [43, 7]);
});

test('interleaved flows are grouped per (entropy port, peer), each in order; a lone frame, GRE and a frame the sockets would change take the raw path', () => {
  const { io, sent } = recordingIo();
  const port = new FabricPort(io, 3, { underlayIp: UNDERLAY, gso: true });
  sendBatch(port, [
    tunnelFrame(PEER_A, 50001, 100, 1),
    tunnelFrame(PEER_B, 50001, 100, 2),
    tunnelFrame(PEER_A, 50002, 100, 3),
    tunnelFrame(PEER_A, 50001, 100, 4),
    tunnelFrame(PEER_B, 50001, 100, 5),
    tunnelFrame(PEER_A, 50002, 100, 6),
    tunnelFrame(PEER_A, 50003, 100, 7), // alone in the batch
    tunnelFrame(PEER_A, 50004, 100, 8, { ttl: 5 }),
    tunnelFrame(PEER_A, 50004, 100, 9, { flags: 0x4000 }), // DF set
    tunnelFrame(PEER_A, 50004, 100, 10, { protocol: 47 }),
  ]);
  assert.deepEqual(
    sent.runs.map((run) => [run.peer, run.ids]),
    [
      [PEER_A, [1, 4]],
      [PEER_B, [2, 5]],
      [PEER_A, [3, 6]],
    ],
  );
  assert.deepEqual(sent.raw.map((frame) => frame.id).sort((x, y) => x - y), [7, 8, 9, 10]);
  assert.equal(new Set(sent.runs.map((run) => run.fd)).size, 2, 'one socket per entropy port, whatever the peer');
  assert.deepEqual(sent.opened, [50001, 50002]);
  assert.deepEqual(port.stats(), { gsoFrames: 6, rawFrames: 4, sockets: 2, socketsOpened: 2, socketsClosed: 0, portsRefused: 0 });
});

test('a port the kernel refuses stays on the raw path, asked once', () => {
  const { io, sent } = recordingIo(new Set([51234]));
  const port = new FabricPort(io, 3, { underlayIp: UNDERLAY, gso: true });
  for (let batch = 0; batch < 3; batch++) sendBatch(port, [tunnelFrame(PEER_A, 51234, 100, 1), tunnelFrame(PEER_A, 51234, 100, 2)]);
  assert.deepEqual(sent.runs, []);
  assert.deepEqual(sent.raw.map((frame) => frame.id), [1, 2, 1, 2, 1, 2]);
  assert.equal(port.stats().portsRefused, 1);
});

test('beyond maxSockets the least recently used socket is closed, never one this batch uses', () => {
  const { io, sent } = recordingIo();
  const port = new FabricPort(io, 3, { underlayIp: UNDERLAY, gso: true, maxSockets: 2 });
  const pair = (entropy: number) => [tunnelFrame(PEER_A, entropy, 100, entropy & 0xffff), tunnelFrame(PEER_A, entropy, 100, entropy & 0xffff)];
  sendBatch(port, pair(50001));
  sendBatch(port, pair(50002));
  sendBatch(port, pair(50001));
  sendBatch(port, pair(50003)); // 50002 is the least recently used
  assert.deepEqual(sent.opened, [50001, 50002, 50003]);
  assert.deepEqual(sent.closed, [50002]);
  sent.raw.length = 0;
  // Three flows, two sockets, all in one batch: the third flow takes the raw path.
  sendBatch(port, [...pair(50001), ...pair(50003), ...pair(50004)]);
  assert.deepEqual(sent.raw.map((frame) => frame.id), [50004 & 0xffff, 50004 & 0xffff]);
  assert.deepEqual(sent.closed, [50002]);
  port.close();
  assert.deepEqual(sent.closed.sort(), [50001, 50002, 50003]);
});

test('with gso off every frame takes the raw path and no socket is opened', () => {
  const { io, sent } = recordingIo();
  const port = new FabricPort(io, 3, { underlayIp: UNDERLAY, gso: false });
  sendBatch(port, Array.from({ length: 10 }, (_, id) => tunnelFrame(PEER_A, 50000, 100, id)));
  assert.deepEqual(sent.raw.map((frame) => frame.id), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.deepEqual([sent.runs, sent.opened], [[], []]);
});

test('send and flush allocate nothing per frame (GSO runs, raw frames, several flows)', async () => {
  // An addon that takes everything and records nothing.
  let fd = 100;
  const io = {
    sendBatch: (_fd: number, _b: Uint8Array, _o: Int32Array, _l: Int32Array, _d: Uint32Array, _p: null, count: number) => count,
    udpSendRuns: (_b: Uint8Array, _o: Int32Array, _l: Int32Array, _order: Int32Array, _runs: Int32Array, runCount: number) => runCount,
    udpSenderOpen: () => fd++,
    close: () => undefined,
  } as unknown as NativeIo;
  const port = new FabricPort(io, 3, { underlayIp: UNDERLAY, gso: true });
  // 64 frames a batch: four flows of 15 (mixed sizes), two lone frames, two GRE.
  const frames = Array.from({ length: 64 }, (_, i) =>
    i < 60 ? tunnelFrame(i % 2 ? PEER_A : PEER_B, 50000 + (i % 4), i % 15 === 14 ? 50 : 200, i) : tunnelFrame(PEER_A, 51000 + i, 100, i, i >= 62 ? { protocol: 47 } : {}),
  );
  const slot = 2048;
  const pool = Buffer.alloc(frames.length * slot);
  frames.forEach((frame, i) => frame.copy(pool, i * slot));
  const batches = (count: number) => {
    for (let b = 0; b < count; b++) {
      for (let i = 0; i < frames.length; i++) port.send(pool, i * slot, frames[i].length);
      port.flush();
    }
  };
  batches(5_000);
  v8.setFlagsFromString('--expose-gc');
  const collectGarbage = vm.runInNewContext('gc') as () => void;
  const young = () => v8.getHeapSpaceStatistics().find((space) => space.space_name === 'new_space')!.space_used_size;
  const entries: PerformanceEntry[] = [];
  const observer = new PerformanceObserver((list) => entries.push(...list.getEntries()));
  observer.observe({ type: 'gc' });
  try {
    collectGarbage();
    const before = young();
    const startedAt = performance.now();
    batches(20_000);
    const endedAt = performance.now();
    const growth = young() - before;
    collectGarbage();
    while (!entries.some((entry) => entry.startTime >= endedAt)) await nextTick();
    const during = entries.filter((entry) => entry.startTime >= startedAt && entry.startTime < endedAt);
    assert.equal(during.length, 0, `${during.length} collections while sending 1.28 M frames`);
    assert.ok(growth < 256 * 1024, `young generation grew by ${growth} bytes over 1.28 M frames`);
    assert.equal(port.stats().gsoFrames, 25_000 * 60);
  } finally {
    observer.disconnect();
  }
});
