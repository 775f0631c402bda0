/**
 * npm run bench:introspect-load: what reading the introspect API costs the
 * packet path. One vrouter-local path (bench/pps/vrouter-paths.ts: pod-a
 * =TAP= [node0: vrouter run, pinned to CPU 1] =TAP= pod-b), flooded by
 * trafgen with 64-byte UDP frames (bench/pps/traffic.ts), measured in
 * alternating windows: without any client, then with a poller in the node
 * namespace fetching once a second what the page fetches each second
 * (summary, vifs, vn-traffic, control sessions, drops, a page of flows) plus
 * /metrics. Windows alternate (quiet, polled, quiet, polled, ...) so a drift
 * of the machine hits both alike; the figures are the medians.
 *
 * The poller runs on CPU 0 with the generator, so what is measured is the
 * daemon's own cost of answering (its main thread shares CPU 1 with the
 * dataplane worker), not the client's. The bound: at most 3% loss
 * of rate while polled.
 *
 * The generator does not always saturate the daemon (its CPU use then
 * follows the offered rate and the rate varies by tens of percent from
 * window to window), so three figures are printed:
 *   - the daemon's CPU use while idle, without and with the poller: what
 *     answering costs, in percent of the core the packet path runs on,
 *     which bounds the rate lost when that core is saturated;
 *   - the median rates of the quiet and polled windows, and their ratio;
 *   - packets per CPU-second in both, whose ratio is the loss of rate the
 *     polling causes at saturation, independent of the offered rate.
 * INTROSPECT_LOAD_ROUNDS (default 4) and INTROSPECT_LOAD_SECONDS (default 5)
 * size the run.
 */
import { Topology, requireCommands } from '../test/support/netns';
import { ProcessOutput } from '../test/support/vrouter-cluster';
import { cpuUsage, measureRate } from './pps/traffic';
import { buildVrouterLocal } from './pps/vrouter-paths';

const SOURCE_PORT = 40000;
const DESTINATION_PORT = 5001;
const FRAME_SIZE = 64;
const POLLER_CPU = '0';
const MAX_LOSS = 0.03;
const IDLE_SECONDS = 10;

/** Fetches the page's endpoints and /metrics once a second; prints a line per round. */
const POLLER = `
const http = require('node:http');
const paths = ['/api/summary', '/api/vifs', '/api/vn-traffic', '/api/control-sessions', '/api/drops', '/api/flows?limit=50', '/metrics'];
let rounds = 0;
let failures = 0;
const get = (path) => new Promise((resolve) => {
  http.get({ host: '127.0.0.1', port: 8085, path }, (response) => {
    response.resume();
    response.on('end', () => resolve(response.statusCode));
  }).on('error', () => resolve(0));
});
setInterval(async () => {
  const codes = await Promise.all(paths.map(get));
  rounds++;
  if (codes.some((code) => code !== 200)) failures++;
  process.stdout.write('round ' + rounds + ' failures ' + failures + '\\n');
}, 1000);`;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

async function main(): Promise<void> {
  requireCommands({ ip: 'iproute2', trafgen: 'netsniff-ng', taskset: 'util-linux' });
  const swept = Topology.sweepStale();
  if (swept.length > 0) console.log(`removed namespaces left by dead runs: ${swept.join(' ')}`);
  const rounds = Number(process.env.INTROSPECT_LOAD_ROUNDS ?? 4);
  const seconds = Number(process.env.INTROSPECT_LOAD_SECONDS ?? 5);
  const topology = new Topology();
  let built: Awaited<ReturnType<typeof buildVrouterLocal>> | undefined;
  try {
    built = await buildVrouterLocal(topology);
    const path = built;
    const nodeNs = `${topology.prefix}-node0`;
    const measure = () =>
      measureRate({
        topology,
        ...path,
        seconds,
        forwarderPids: path.forwarders.map((forwarder) => forwarder.pid),
        frame: { ...path, srcPort: SOURCE_PORT, dstPort: DESTINATION_PORT, size: FRAME_SIZE },
      });
    const daemonPid = path.forwarders[0].pid;
    const startPoller = async () => {
      const poller = new ProcessOutput(topology.spawn(nodeNs, ['taskset', '-c', POLLER_CPU, process.execPath, '-e', POLLER]));
      await poller.waitFor(/round 1 /, 10_000, 'the poller answered');
      return poller;
    };
    const stopPoller = async (poller: ProcessOutput) => {
      const last = /round (\d+) failures (\d+)\n$/.exec(poller.stdout);
      poller.child.kill('SIGTERM');
      await poller.exited;
      if (!last || Number(last[2]) > 0) throw new Error(`the poller failed: ${poller.stdout.slice(-400)} ${poller.stderr.slice(-400)}`);
      return Number(last[1]);
    };
    const idleCpu = async () => {
      const usage = cpuUsage(daemonPid);
      await new Promise((resolve) => setTimeout(resolve, IDLE_SECONDS * 1000));
      return usage();
    };
    const idleQuiet = await idleCpu();
    const idlePoller = await startPoller();
    const idlePolled = await idleCpu();
    const idlePolls = await stopPoller(idlePoller);
    console.log(`idle daemon: CPU ${idleQuiet.toFixed(2)}% without clients, ${idlePolled.toFixed(2)}% polled (${idlePolls} polls of 7 requests in ${IDLE_SECONDS} s)`);

    const quiet: number[] = [];
    const polled: number[] = [];
    const cpu: { quiet: number[]; polled: number[] } = { quiet: [], polled: [] };
    for (let round = 0; round < rounds; round++) {
      const without = await measure();
      quiet.push(without.pps);
      cpu.quiet.push(without.forwarderCpuPercents?.[0] ?? 0);
      console.log(`round ${round + 1} quiet:  ${Math.round(without.pps)} pps, vrouter CPU ${(without.forwarderCpuPercents?.[0] ?? 0).toFixed(0)}%`);

      const poller = await startPoller();
      let withPolling: Awaited<ReturnType<typeof measure>>;
      let polls = 0;
      try {
        withPolling = await measure();
      } finally {
        polls = await stopPoller(poller);
      }
      polled.push(withPolling.pps);
      cpu.polled.push(withPolling.forwarderCpuPercents?.[0] ?? 0);
      console.log(`round ${round + 1} polled: ${Math.round(withPolling.pps)} pps, vrouter CPU ${(withPolling.forwarderCpuPercents?.[0] ?? 0).toFixed(0)}%, ${polls} polls of 7 requests`);
    }
    const quietPps = median(quiet);
    const polledPps = median(polled);
    const loss = 1 - polledPps / quietPps;
    // Packets per second of one core's time: the rate at saturation.
    const perCore = (pps: number[], percents: number[]) => median(pps.map((value, i) => value / Math.max(percents[i], 1e-9) * 100));
    const quietPerCore = perCore(quiet, cpu.quiet);
    const polledPerCore = perCore(polled, cpu.polled);
    const saturatedLoss = 1 - polledPerCore / quietPerCore;
    const verdict = (value: number) => `${(value * 100).toFixed(2)}% (bound ${(MAX_LOSS * 100).toFixed(0)}%: ${value <= MAX_LOSS ? 'met' : 'NOT met'})`;
    console.log(`vrouter-local (64-byte frames, ${rounds} x ${seconds} s windows, medians):`);
    console.log(`  without API clients:      ${Math.round(quietPps)} pps, vrouter CPU ${median(cpu.quiet).toFixed(0)}%, ${Math.round(quietPerCore)} packets per CPU-second`);
    console.log(`  API polled once a second: ${Math.round(polledPps)} pps, vrouter CPU ${median(cpu.polled).toFixed(0)}%, ${Math.round(polledPerCore)} packets per CPU-second`);
    console.log(`  loss of rate (medians of the windows): ${verdict(loss)}`);
    console.log(`  loss of rate at saturation (packets per CPU-second): ${verdict(saturatedLoss)}`);
    console.log(`  polling cost while idle: ${(idlePolled - idleQuiet).toFixed(2)}% of the packet path's core`);
    for (const line of await path.report()) console.log(`  ${line}`);
  } finally {
    await built?.stop();
    await topology.destroy();
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
  process.exit(1);
});
