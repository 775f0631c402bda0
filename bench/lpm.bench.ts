/**
 * Longest-prefix-match benchmark: lookups per second of the packet-path
 * Dir1688Table against the reference table on the same routes (100,000 /32
 * hosts, 1,000 /8../24 prefixes and a default route), and the time to load
 * 100,000 /32s into a fresh Dir1688Table. Prints `<case>: <N> <unit>` lines.
 */
import Benchmark from 'benchmark';
import { PrefixTable } from '../src/dataplane/lpm/prefix-table';
import { Dir1688Table } from '../src/dataplane/lpm/dir-16-8-8';
import { ReferencePrefixTable } from '../src/dataplane/lpm/reference-table';

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
