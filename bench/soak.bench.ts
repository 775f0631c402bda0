/**
 * npm run bench:soak [-- --minutes 30 --results <dir> --pps 1000 --flow-interval-ms 2 --route-rate 100 --port-churn-seconds 20]:
 * mixed traffic and churn through two daemons for a while
 * (bench/soak-core.ts has the topology and what is sampled). Writes
 * samples.csv and soak.json to the results directory (default
 * results/soak-<time>), prints the growth, the packet conservation check
 * and a text plot of the samples, with the load average. Floors: after the
 * warm-up (a third of the run, at most 5 minutes) RSS grows less than 5 %
 * and descriptors not at all; every daemon's counters balance.
 * Needs root, iproute2, iputils-ping.
 */
import os from 'node:os';
import path from 'node:path';
import { Topology } from '../test/support/netns';
import { SoakOptions, SoakSample, runSoak } from './soak-core';

const args = process.argv.slice(2);
const option = (name: string, fallback: number) => {
  const at = args.indexOf(`--${name}`);
  return at >= 0 ? Number(args[at + 1]) : fallback;
};
const text = (name: string, fallback: string) => {
  const at = args.indexOf(`--${name}`);
  return at >= 0 ? args[at + 1] : fallback;
};

const RSS_GROWTH_FLOOR_PERCENT = 5;
const LEVELS = ' .:-=+*#%@';

/** One line per process and figure: its samples scaled between their min and max. */
function plot(samples: SoakSample[], figure: 'rssKb' | 'mainHeapKb' | 'dataplaneHeapKb' | 'fds' | 'flows'): string[] {
  const lines: string[] = [];
  for (const name of [...new Set(samples.map((sample) => sample.process))]) {
    const values = samples.filter((sample) => sample.process === name).map((sample) => sample[figure]).filter((value): value is number => value !== null);
    if (values.length === 0) continue;
    const low = Math.min(...values);
    const high = Math.max(...values);
    const row = values.map((value) => LEVELS[high === low ? 0 : Math.round(((value - low) / (high - low)) * (LEVELS.length - 1))]).join('');
    lines.push(`${`${name} ${figure}`.padEnd(22)} |${row}| ${low}..${high}`);
  }
  return lines;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench:soak needs root (network namespaces)');
  const seconds = option('minutes', 30) * 60;
  const options: SoakOptions = {
    seconds,
    sampleSeconds: 10,
    warmupSeconds: Math.min(300, seconds / 3),
    pps: option('pps', 1000),
    flowIntervalMs: option('flow-interval-ms', 2),
    routeRate: option('route-rate', 100),
    routeWindow: option('route-window', 1000),
    portChurnSeconds: option('port-churn-seconds', 20),
    resultsDirectory: text('results', path.join('results', `soak-${new Date().toISOString().replace(/[:.]/g, '-')}`)),
  };
  const topology = new Topology();
  let result;
  try {
    result = await runSoak(topology, options);
  } finally {
    await topology.destroy();
  }
  const load = os.loadavg().map((value) => value.toFixed(2)).join(' ');
  const sent = result.streams.reduce((sum, stream) => sum + stream.sent, 0);
  const lost = result.streams.reduce((sum, stream) => sum + stream.lost, 0);
  const droppedInPods = result.streams.reduce((sum, stream) => sum + stream.droppedInPods.receiveBuffer + stream.droppedInPods.sendBuffer, 0);
  console.log(`soak: ${(result.seconds / 60).toFixed(1)} min, samples every ${options.sampleSeconds} s, warm-up ${options.warmupSeconds} s; ${os.cpus().length} cores, load average ${load}`);
  console.log(`results: ${options.resultsDirectory}/samples.csv, soak.json`);
  console.log(
    `traffic: UDP ${sent} sent (2 streams of ${options.pps} pps), ${lost} lost (${droppedInPods} of them by the pods' own socket buffers); TCP ${result.tcp.completed} connections echoed, ${result.tcp.failed} failed (${result.tcp.lastError ?? 'no error'}); ` +
      `ping ${result.ping.received}/${result.ping.transmitted}; new flows ${result.newFlows.sent} (${result.newFlows.perSecond.toFixed(0)}/s); ` +
      `routes ${result.routeChurn.added} added, ${result.routeChurn.removed} removed; ${result.portChurn} ports added and deleted; ` +
      `introspect ${result.polls.map((poll) => `${poll.ok} ok/${poll.failed} failed`).join(', ')}`,
  );
  const mb = (kb: number | null) => (kb === null ? '-' : (kb / 1024).toFixed(1));
  console.log('| process | RSS after warm-up MB | RSS at end MB | growth | heap after warm-up MB | heap at end MB | fds after warm-up | fds at end |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const growth of result.growth) {
    console.log(
      `| ${growth.process} | ${mb(growth.rssFirstKb)} | ${mb(growth.rssLastKb)} | ${growth.rssGrowthPercent.toFixed(2)} % | ${mb(growth.heapFirstKb)} | ${mb(growth.heapLastKb)} | ${growth.fdsFirst} | ${growth.fdsLast} |`,
    );
  }
  console.log('| daemon | received | generated | transmitted | dropped | held | unaccounted |');
  console.log('|---|---:|---:|---:|---:|---:|---:|');
  for (const c of result.conservation) console.log(`| ${c.node} | ${c.received} | ${c.generated} | ${c.transmitted} | ${c.dropped} | ${c.held} | ${c.unaccounted} |`);
  console.log('```');
  for (const figure of ['rssKb', 'mainHeapKb', 'dataplaneHeapKb', 'fds', 'flows'] as const) for (const line of plot(result.samples, figure)) console.log(line);
  console.log('```');
  const failures = [
    ...result.growth.filter((growth) => growth.rssGrowthPercent >= RSS_GROWTH_FLOOR_PERCENT).map((growth) => `${growth.process}: RSS grew ${growth.rssGrowthPercent.toFixed(2)} %`),
    ...result.growth.filter((growth) => growth.fdsLast > growth.fdsFirst).map((growth) => `${growth.process}: ${growth.fdsLast - growth.fdsFirst} more descriptors`),
    ...result.conservation.filter((c) => c.unaccounted !== 0).map((c) => `${c.node}: ${c.unaccounted} packets in no bucket`),
  ];
  if (failures.length > 0) {
    console.error(`over the floor: ${failures.join('; ')}`);
    process.exitCode = 1;
  }
}

main().catch((error: Error) => {
  console.error(error.stack ?? error.message);
  process.exit(1);
});
