/**
 * The per-packet path must not allocate: for each benchmark workload, a
 * million packets after warm-up may neither trigger a scavenge nor leave
 * garbage in the young generation. A path allocating even 16 bytes per packet
 * would allocate 16 MB here.
 *
 * The heap outside the young generation also holds what the compiler makes
 * when it (re)optimizes during the run (code, deoptimization data): up to a few
 * hundred KB of noise, hence its looser bound. Short-lived per-packet garbage
 * lands in the young generation, where growth is the true allocation count.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { PerformanceObserver, constants as perfConstants, performance } from 'node:perf_hooks';
import type { PerformanceEntry } from 'node:perf_hooks';
import { setImmediate as nextTick } from 'node:timers/promises';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { BATCH, WORKLOAD_CASES, Workload, buildWorkload } from '../bench/workload';

const WARM_UP_BATCHES = 2_000;
const WARM_UP_ROUNDS = 10;
const MEASURED_BATCHES = Math.ceil(1_000_000 / BATCH);
const MAX_YOUNG_GROWTH = 256 * 1024;
const MAX_HEAP_GROWTH = 1024 * 1024;
/** Event loop turns to wait for GC entries; they arrive after two or three. */
const MAX_TICKS_FOR_GC_ENTRIES = 10_000;

// `node --test` gives no way to pass --expose-gc, so expose it at run time.
v8.setFlagsFromString('--expose-gc');
const collectGarbage = vm.runInNewContext('gc') as () => void;

const GC_KIND_NAMES: Record<number, string> = {
  [perfConstants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [perfConstants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [perfConstants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [perfConstants.NODE_PERFORMANCE_GC_WEAKCB]: 'weak-callbacks',
};

interface Measurement {
  /** Growth of the young generation (new space), where short-lived objects are allocated. */
  youngGrowth: number;
  heapGrowth: number;
  /** Garbage collections V8 started during the work, by kind. */
  collections: Record<string, number>;
}

function gcKindOf(entry: PerformanceEntry): string {
  const kind = (entry as PerformanceEntry & { detail: { kind: number } }).detail.kind;
  return GC_KIND_NAMES[kind] ?? `kind-${kind}`;
}

function youngGenerationUsed(): number {
  return v8.getHeapSpaceStatistics().find((space) => space.space_name === 'new_space')!.space_used_size;
}

/** Runs `work` on an empty young generation and reports what it allocated. */
async function measure(work: () => void): Promise<Measurement> {
  const entries: PerformanceEntry[] = [];
  const observer = new PerformanceObserver((list) => entries.push(...list.getEntries()));
  observer.observe({ type: 'gc' });
  try {
    // Setup garbage left in the young generation could trigger a scavenge that is not the path's doing.
    collectGarbage();
    const youngBefore = youngGenerationUsed();
    const heapBefore = v8.getHeapStatistics().used_heap_size;
    const startedAt = performance.now();
    work();
    const endedAt = performance.now();
    const youngAfter = youngGenerationUsed();
    const heapAfter = v8.getHeapStatistics().used_heap_size;
    // GC entries reach JS a few ticks late, in order: once this forced one shows up, all earlier ones have.
    collectGarbage();
    for (let ticks = 0; !entries.some((entry) => entry.startTime >= endedAt); ticks++) {
      if (ticks === MAX_TICKS_FOR_GC_ENTRIES) throw new Error('the forced GC was never reported to the observer');
      await nextTick();
    }
    const collections: Record<string, number> = {};
    for (const entry of entries) {
      if (entry.startTime < startedAt || entry.startTime >= endedAt) continue;
      const kind = gcKindOf(entry);
      collections[kind] = (collections[kind] ?? 0) + 1;
    }
    return { youngGrowth: youngAfter - youngBefore, heapGrowth: heapAfter - heapBefore, collections };
  } finally {
    observer.disconnect();
  }
}

/** Warm-up and measurement share this loop, so it is optimized before it is measured. */
function runBatches(workload: Workload, batches: number): void {
  for (let i = 0; i < batches; i++) workload.runBatch();
}

const workloads = new Map(WORKLOAD_CASES.map((kind) => [kind, buildWorkload(kind)]));

// A vrouter runs every path at once: warm them all, interleaved, so each case
// is measured in the code the optimizer settles on for the mix.
before(() => {
  for (let round = 0; round < WARM_UP_ROUNDS; round++) {
    for (const workload of workloads.values()) runBatches(workload, WARM_UP_BATCHES / WARM_UP_ROUNDS);
  }
});

for (const [kind, workload] of workloads) {
  test(`${kind}: ${MEASURED_BATCHES * BATCH} packets after warm-up allocate nothing`, async (t) => {
    const forwardedBefore = workload.sink.packets;
    const { youngGrowth, heapGrowth, collections } = await measure(() => runBatches(workload, MEASURED_BATCHES));

    t.diagnostic(`young generation +${youngGrowth} B, heap +${heapGrowth} B, collections ${JSON.stringify(collections)}`);
    // A path that drops packets is not the path being measured.
    assert.equal(workload.sink.packets - forwardedBefore, MEASURED_BATCHES * BATCH, 'every packet forwarded');
    assert.equal(collections.minor ?? 0, 0, `scavenges during the run: ${JSON.stringify(collections)}`);
    assert.ok(youngGrowth < MAX_YOUNG_GROWTH, `young generation grew by ${youngGrowth} bytes`);
    assert.ok(heapGrowth < MAX_HEAP_GROWTH, `heap grew by ${heapGrowth} bytes`);
  });
}
