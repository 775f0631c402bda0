/**
 * Longest-prefix-match benchmark: lookups per second of the packet-path
 * Dir1688Table against the reference table on the same routes (100,000 /32
 * hosts, 1,000 /8../24 prefixes and a default route), and the time to load
 * 100,000 /32s into a fresh Dir1688Table; then the same for IPv6
 * (HashedLengths6Table: 100,000 /128 hosts in 400 /64s, 1,000 prefixes of
 * the usual allocation lengths /32../64, ::/0). Prints `<case>: <N> <unit>` lines.
 */
import Benchmark from 'benchmark';
import { PrefixTable } from '../src/dataplane/lpm/prefix-table';
import { Dir1688Table } from '../src/dataplane/lpm/dir-16-8-8';
import { ReferencePrefixTable } from '../src/dataplane/lpm/reference-table';
import { PrefixTable6 } from '../src/dataplane/lpm/prefix-table6';
import { HashedLengths6Table } from '../src/dataplane/lpm/hashed-lengths6';
import { ReferencePrefixTable6 } from '../src/dataplane/lpm/reference-table6';
import { maskPrefix6 } from '../src/dataplane/protocols/ipv6';

const LOOKUPS_PER_ITERATION = 4096;
const LOAD_RUNS = 5;

/** Mulberry32: a seeded generator, so every run measures the same routes. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

const random = seededRandom(42);
const randomUint32 = (): number => Math.floor(random() * 2 ** 32);

/** 100,000 /32 hosts: 250 in each of 400 /24s spread over 10.0.0.0/8. */
const hosts = new Uint32Array(100_000);
for (let block = 0, next = 0; block < 400; block++) {
  const network = (10 << 24) | (((block * 37) & 0xff) << 16) | ((block >> 8) << 8);
  for (let host = 1; host <= 250; host++) hosts[next++] = (network | host) >>> 0;
}

const shorterPrefixes = Array.from({ length: 1000 }, () => {
  const length = 8 + Math.floor(random() * 17);
  return { prefix: randomUint32(), length };
});

function load(table: PrefixTable): PrefixTable {
  table.insert(0, 0, 0);
  shorterPrefixes.forEach(({ prefix, length }, index) => table.insert(prefix, length, 1 + index));
  hosts.forEach((host, index) => table.insert(host, 32, 1001 + index));
  return table;
}

/** Half host hits, half addresses inside the shorter prefixes (some fall through to the default). */
const addresses = new Uint32Array(LOOKUPS_PER_ITERATION);
for (let index = 0; index < addresses.length; index++) {
  if (index % 2 === 0) {
    addresses[index] = hosts[Math.floor(random() * hosts.length)];
  } else {
    const { prefix, length } = shorterPrefixes[Math.floor(random() * shorterPrefixes.length)];
    const hostBits = 2 ** (32 - length) - 1;
    addresses[index] = ((prefix & ~hostBits) | (randomUint32() & hostBits)) >>> 0;
  }
}

const fast = load(new Dir1688Table());
const reference = load(new ReferencePrefixTable());
for (const address of addresses) {
  if (fast.lookup(address) !== reference.lookup(address)) throw new Error(`tables disagree on ${address}`);
}

/** Sum of the values found, kept and compared afterwards so the JIT cannot drop the lookups. */
function lookupAll(table: PrefixTable): number {
  let sum = 0;
  for (let index = 0; index < addresses.length; index++) sum += table.lookup(addresses[index]);
  return sum;
}
let fastSum = 0;
let referenceSum = 0;

function loadMilliseconds(): number {
  const table = new Dir1688Table();
  const started = process.hrtime.bigint();
  for (let index = 0; index < hosts.length; index++) table.insert(hosts[index], 32, index);
  return Number(process.hrtime.bigint() - started) / 1e6;
}

new Benchmark.Suite()
  .add('lpm-dir-16-8-8-lookup', () => {
    fastSum = lookupAll(fast);
  })
  .add('lpm-reference-lookup', () => {
    referenceSum = lookupAll(reference);
  })
  .on('cycle', (event: Benchmark.Event) => {
    const bench = event.target;
    console.log(`${bench.name}: ${Math.round((bench.hz ?? 0) * LOOKUPS_PER_ITERATION)} lookups/s`);
  })
  .run();
if (fastSum !== referenceSum) throw new Error(`lookup sums differ: ${fastSum} vs ${referenceSum}`);

const loadTimes = Array.from({ length: LOAD_RUNS }, loadMilliseconds).sort((a, b) => a - b);
console.log(`lpm-load-100k-routes: ${loadTimes[LOAD_RUNS >> 1].toFixed(1)} ms`);

/** 100,000 /128 hosts: 250 in each of 400 /64s of fd00::/16, 16 bytes each. */
const hosts6 = new Uint8Array(100_000 * 16);
for (let block = 0, next = 0; block < 400; block++) {
  for (let host = 1; host <= 250; host++, next++) {
    const at = next * 16;
    hosts6[at] = 0xfd;
    hosts6[at + 6] = (block * 37) >>> 8;
    hosts6[at + 7] = (block * 37) & 0xff;
    hosts6[at + 14] = host >>> 8;
    hosts6[at + 15] = host & 0xff;
  }
}
// The lengths allocations come in (RFC 6177: /32 registries, /48 sites, /56, /64 links).
const LENGTHS6 = [32, 40, 48, 56, 60, 64];
const shorterPrefixes6 = Array.from({ length: 1000 }, () => {
  const prefix = new Uint8Array(16);
  for (let i = 0; i < 8; i++) prefix[i] = Math.floor(random() * 256);
  const length = LENGTHS6[Math.floor(random() * LENGTHS6.length)];
  return { prefix: maskPrefix6(prefix, length), length };
});

function load6(table: PrefixTable6): PrefixTable6 {
  table.insert(new Uint8Array(16), 0, 0);
  shorterPrefixes6.forEach(({ prefix, length }, index) => table.insert(prefix, length, 1 + index));
  for (let index = 0; index < 100_000; index++) table.insert(hosts6.subarray(index * 16, index * 16 + 16), 128, 1001 + index);
  return table;
}

/** Half host hits, half addresses inside the shorter prefixes. */
const addresses6 = new Uint8Array(LOOKUPS_PER_ITERATION * 16);
for (let index = 0; index < LOOKUPS_PER_ITERATION; index++) {
  const at = index * 16;
  if (index % 2 === 0) {
    const host = Math.floor(random() * 100_000);
    addresses6.set(hosts6.subarray(host * 16, host * 16 + 16), at);
  } else {
    const { prefix } = shorterPrefixes6[Math.floor(random() * shorterPrefixes6.length)];
    addresses6.set(prefix.subarray(0, 4), at);
    for (let i = 4; i < 16; i++) addresses6[at + i] = Math.floor(random() * 256);
  }
}

const fast6 = load6(new HashedLengths6Table());
const reference6 = load6(new ReferencePrefixTable6());
for (let index = 0; index < LOOKUPS_PER_ITERATION; index++) {
  if (fast6.lookup(addresses6, index * 16) !== reference6.lookup(addresses6, index * 16)) throw new Error(`IPv6 tables disagree at ${index}`);
}

function lookupAll6(table: PrefixTable6, count: number): number {
  let sum = 0;
  for (let index = 0; index < count; index++) sum += table.lookup(addresses6, index * 16);
  return sum;
}
// The reference is slow (one Map probe per length, 129 lengths on a miss): it runs on a 16th of the addresses.
const REFERENCE6_LOOKUPS = LOOKUPS_PER_ITERATION / 16;
let fast6Sum = 0;
let reference6Sum = 0;

function load6Milliseconds(): number {
  const table = new HashedLengths6Table();
  const started = process.hrtime.bigint();
  for (let index = 0; index < 100_000; index++) table.insert(hosts6.subarray(index * 16, index * 16 + 16), 128, index);
  return Number(process.hrtime.bigint() - started) / 1e6;
}

new Benchmark.Suite()
  .add('lpm6-hashed-lengths-lookup', () => {
    fast6Sum = lookupAll6(fast6, REFERENCE6_LOOKUPS);
    lookupAll6(fast6, LOOKUPS_PER_ITERATION);
  })
  .add('lpm6-reference-lookup', () => {
    reference6Sum = lookupAll6(reference6, REFERENCE6_LOOKUPS);
  })
  .on('cycle', (event: Benchmark.Event) => {
    const bench = event.target;
    const perIteration = bench.name === 'lpm6-reference-lookup' ? REFERENCE6_LOOKUPS : REFERENCE6_LOOKUPS + LOOKUPS_PER_ITERATION;
    console.log(`${bench.name}: ${Math.round((bench.hz ?? 0) * perIteration)} lookups/s`);
  })
  .run();
if (fast6Sum !== reference6Sum) throw new Error(`IPv6 lookup sums differ: ${fast6Sum} vs ${reference6Sum}`);

const load6Times = Array.from({ length: LOAD_RUNS }, load6Milliseconds).sort((a, b) => a - b);
console.log(`lpm6-load-100k-routes: ${load6Times[LOAD_RUNS >> 1].toFixed(1)} ms`);
