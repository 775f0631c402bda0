/**
 * npm run bench:pipeline: in-process packets per second through the real
 * pipeline, no I/O, 64-byte frames, batches of 256, a VRF of 100k routes.
 * Each batch is re-armed from templates before it runs (included in the time).
 */
import Benchmark from 'benchmark';
import { BATCH, WORKLOAD_CASES, buildWorkload } from './workload';

const suite = new Benchmark.Suite();
for (const kind of WORKLOAD_CASES) {
  const workload = buildWorkload(kind);
  // Every packet of the case must be forwarded, or the figure means nothing.
  workload.runBatch();
  if (workload.sink.packets !== BATCH) throw new Error(`${kind}: ${workload.sink.packets} of ${BATCH} packets forwarded`);
  suite.add(kind, () => workload.runBatch(), { minSamples: 40 });
}
suite
  .on('cycle', (event: Benchmark.Event) => {
    const bench = event.target as Benchmark.Target & { name: string; hz: number; stats: { rme: number } };
    const pps = Math.round(bench.hz * BATCH);
    console.log(`${bench.name}: ${pps} pps (±${bench.stats.rme.toFixed(1)}%)`);
  })
  .run();
