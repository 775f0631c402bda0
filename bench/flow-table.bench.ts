/**
 * npm run bench:flow-table: why the flow table is written on typed arrays
 * rather than on lru-cache. Both hold the same 512K flow pairs (two keyed
 * entries each); the figures are pair setups per second, lookups per second
 * and memory per pair. lru-cache needs a string (or object) key per flow and
 * an object per entry, which the per-packet path would allocate and the GC
 * would trace; the typed-array table needs neither.
 */
import { LRUCache } from 'lru-cache';
import { FlowKey, FlowTable } from '../src/dataplane/flow-table';
import { flowHash } from '../src/dataplane/flow-hash';

const PAIRS = 512 * 1024;
const LOOKUPS = 2_000_000;

interface LruFlow {
  action: number;
  natFlags: number;
  nexthop: number;
  ecmpSlot: number;
  packets: number;
  bytes: number;
  reverse: string;
}

function memoryNow(): number {
  global.gc?.();
  const usage = process.memoryUsage();
  return usage.heapUsed + usage.arrayBuffers;
}

function seconds(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/** Flow i: client 10.x.y.z:port to 10.96.0.10:80, distinct for every i. */
function clientOf(i: number): number {
  return (0x0a000000 + (i >>> 4)) >>> 0;
}

function benchTypedArrays(): void {
  const before = memoryNow();
  const table = new FlowTable(PAIRS * 2);
  const forward: FlowKey = { vrf: 1, protocol: 17, src: 0, dst: 0x0a60000a, srcPort: 0, dstPort: 80 };
  const reverse: FlowKey = { vrf: 1, protocol: 17, src: 0x0a60000a, dst: 0, srcPort: 80, dstPort: 0 };
  let start = process.hrtime.bigint();
  for (let i = 0; i < PAIRS; i++) {
    forward.src = clientOf(i);
    forward.srcPort = 1024 + (i & 15);
    reverse.dst = forward.src;
    reverse.dstPort = forward.srcPort;
    table.create(forward, reverse, 0);
  }
  const setup = PAIRS / seconds(start);
  const bytesPerPair = (memoryNow() - before) / PAIRS;
  let found = 0;
  start = process.hrtime.bigint();
  for (let n = 0; n < LOOKUPS; n++) {
    const i = (n * 7919) % PAIRS;
    const src = clientOf(i);
    const srcPort = 1024 + (i & 15);
    if (table.lookup(1, 17, src, 0x0a60000a, (srcPort << 16) | 80, flowHash(1, src, 0x0a60000a, 17, srcPort, 80)) >= 0) found++;
  }
  const lookups = LOOKUPS / seconds(start);
  if (found !== LOOKUPS || table.activePairs !== PAIRS) throw new Error('typed-array table lost flows');
  console.log(`flow-table-typed-arrays-setup: ${Math.round(setup)} pairs/s`);
  console.log(`flow-table-typed-arrays-lookup: ${Math.round(lookups)} lookups/s`);
  console.log(`flow-table-typed-arrays-memory: ${Math.round(bytesPerPair)} bytes/pair (at ${PAIRS} pairs; computed ${Math.round(table.bytesPerPair)})`);
}

function benchLruCache(): void {
  const before = memoryNow();
  const cache = new LRUCache<string, LruFlow>({ max: PAIRS * 2, ttl: 180_000, ttlAutopurge: false });
  const key = (vrf: number, protocol: number, src: number, dst: number, srcPort: number, dstPort: number) =>
    `${vrf}|${protocol}|${src}|${dst}|${srcPort}|${dstPort}`;
  let start = process.hrtime.bigint();
  for (let i = 0; i < PAIRS; i++) {
    const src = clientOf(i);
    const srcPort = 1024 + (i & 15);
    const forwardKey = key(1, 17, src, 0x0a60000a, srcPort, 80);
    const reverseKey = key(1, 17, 0x0a60000a, src, 80, srcPort);
    cache.set(forwardKey, { action: 1, natFlags: 0, nexthop: -1, ecmpSlot: -1, packets: 0, bytes: 0, reverse: reverseKey });
    cache.set(reverseKey, { action: 1, natFlags: 0, nexthop: -1, ecmpSlot: -1, packets: 0, bytes: 0, reverse: forwardKey });
  }
  const setup = PAIRS / seconds(start);
  const bytesPerPair = (memoryNow() - before) / PAIRS;
  let found = 0;
  start = process.hrtime.bigint();
  for (let n = 0; n < LOOKUPS; n++) {
    const i = (n * 7919) % PAIRS;
    if (cache.get(key(1, 17, clientOf(i), 0x0a60000a, 1024 + (i & 15), 80)) !== undefined) found++;
  }
  const lookups = LOOKUPS / seconds(start);
  if (found !== LOOKUPS) throw new Error('lru-cache lost flows');
  console.log(`flow-table-lru-cache-setup: ${Math.round(setup)} pairs/s`);
  console.log(`flow-table-lru-cache-lookup: ${Math.round(lookups)} lookups/s`);
  console.log(`flow-table-lru-cache-memory: ${Math.round(bytesPerPair)} bytes/pair (at ${PAIRS} pairs)`);
}

benchTypedArrays();
benchLruCache();
