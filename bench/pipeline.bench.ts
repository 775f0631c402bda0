/**
 * npm run bench:pipeline: in-process packets per second through the real
 * pipeline, no I/O, 64-byte frames, batches of 256, a VRF of 100k routes and
 * a 512K-entry flow table. Each batch is re-armed from templates before it
 * runs (included in the time). Every packet goes through the flow table:
 * the *-established-flow cases hit an existing flow pair, flow-setup creates
 * a new pair per packet (route, ECMP member, floating-IP DNAT, policy).
 */
import Benchmark from 'benchmark';
import { FlowTable } from '../src/dataplane/flow-table';
import { BATCH, WorkloadCase, buildWorkload } from './workload';

const CASES: Array<[name: string, workload: WorkloadCase, unit: string]> = [
  ['local-forward', 'local-forward', 'pps'],
  ['encap-established-flow', 'encap', 'pps'],
  ['decap-established-flow', 'decap', 'pps'],
  ['ecmp-encap-established-flow', 'ecmp-encap', 'pps'],
  ['decap-dnat-established-flow', 'decap-dnat', 'pps'],
  ['flow-setup', 'flow-setup', 'pairs/s'],
  ['encap-ipv6-established-flow', 'encap-ipv6', 'pps'],
  ['decap-dnat-ipv6-established-flow', 'decap-dnat-ipv6', 'pps'],
  ['flow-setup-ipv6', 'flow-setup-ipv6', 'pairs/s'],
];

const suite = new Benchmark.Suite();
const units = new Map<string, string>();
for (const [name, kind, unit] of CASES) {
  const workload = buildWorkload(kind);
  // Every packet of the case must be forwarded, or the figure means nothing.
  workload.runBatch();
  if (workload.sink.packets !== BATCH) throw new Error(`${name}: ${workload.sink.packets} of ${BATCH} packets forwarded`);
  units.set(name, unit);
  suite.add(name, () => workload.runBatch(), { minSamples: 40 });
}
suite
  .on('cycle', (event: Benchmark.Event) => {
    const bench = event.target as Benchmark.Target & { name: string; hz: number; stats: { rme: number } };
    console.log(`${bench.name}: ${Math.round(bench.hz * BATCH)} ${units.get(bench.name)} (±${bench.stats.rme.toFixed(1)}%)`);
  })
  .on('complete', () => {
    const pairs = 512 * 1024;
    const table = new FlowTable(pairs * 2);
    console.log(`flow-memory-per-pair: ${Math.round(table.bytesPerPair)} bytes (table sized for ${pairs} pairs)`);
    console.log(`flow-memory-per-ipv6-pair: ${Math.round(table.bytesPerIpv6Pair)} bytes (${table.ipv6Pairs} of the pairs may be IPv6)`);
  })
  .run();
