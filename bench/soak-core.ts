/**
 * The core of bench:soak (and of its smoke test): two `vrouter run
 * --control` daemons and one control node carry mixed traffic and churn for
 * a while; every sampleSeconds each process is sampled; at the end every
 * daemon's packet counters must balance.
 *
 *   node0: u0 <--UDP <pps> each way, numbered--> u1 (node1)
 *          u0 --ping every 200 ms--> u1
 *          t0 --TCP connections opened, 1 KiB echoed, closed, continuously--> t1:9000 (node1)
 *          t0 --a new UDP flow every flowIntervalMs (fresh source port)--> t1:7300
 *   control0: route source, routeRate routes/s added and as many withdrawn (to t1)
 *   node1: a pod added every portChurnSeconds and deleted halfway to the next (port churn)
 *   each node: its introspect API polled (/api/summary, /api/flows, /metrics, /api/drops) every 500 ms
 *
 * Samples (per process: the two daemons and the control node): RSS and
 * RssAnon (the anonymous memory: heaps and buffers) from /proc/<pid>/status,
 * open file descriptors from /proc/<pid>/fd, and for the daemons the V8 heap
 * in use of each thread (main and dataplane worker), flows, held fragments
 * and fragment records from GET /api/summary.
 *
 * The conservation check, per daemon, once the traffic has stopped (the
 * counters are read in one worker turn, between batches):
 *   received + generated = transmitted + dropped + held.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { NetworkConfigDocument } from '../src/control/node/network-config';
import { networkFqns } from '../src/control/ifmap/names';
import type { Topology } from '../test/support/netns';
import { ProcessOutput, VrouterCluster } from '../test/support/vrouter-cluster';
import { PollResult, StreamResult, TcpChurnResult, startIntrospectPoller, startProbeSender, startRouteSource, startStream, startTcpChurn, startTcpEcho } from './reconfig-workload';

export interface SoakOptions {
  seconds: number;
  sampleSeconds: number;
  /** Samples before this are left out of the growth figures. */
  warmupSeconds: number;
  /** Datagrams per second of each UDP stream. */
  pps: number;
  /** One new UDP flow every this many ms. */
  flowIntervalMs: number;
  routeRate: number;
  routeWindow: number;
  portChurnSeconds: number;
  /** Where samples.csv and soak.json go (created). */
  resultsDirectory?: string;
  logLevel?: string;
}

export interface SoakSample {
  /** Seconds since the traffic started. */
  t: number;
  process: string;
  rssKb: number;
  rssAnonKb: number;
  fds: number;
  /** Ports of the port churn present when sampled (a TAP each: fds move with them). */
  churnPorts: number;
  /** V8 heap in use: the daemon's main thread and its dataplane worker (null for the control node). */
  mainHeapKb: number | null;
  dataplaneHeapKb: number | null;
  flows: number | null;
  heldFragments: number | null;
  fragmentRecords: number | null;
}

export interface Conservation {
  node: string;
  received: number;
  generated: number;
  transmitted: number;
  dropped: number;
  held: number;
  /** received + generated - (transmitted + dropped + held): 0 when every packet is in a bucket. */
  unaccounted: number;
}

export interface Growth {
  process: string;
  /** First sample after warm-up and last sample. */
  rssFirstKb: number;
  rssLastKb: number;
  rssGrowthPercent: number;
  /** Heap of both threads, first sample after warm-up and last (null for the control node). */
  heapFirstKb: number | null;
  heapLastKb: number | null;
  /** Over samples taken with no churn port: first after warm-up and last. */
  fdsFirst: number;
  fdsLast: number;
}

export interface SoakResult {
  samples: SoakSample[];
  growth: Growth[];
  conservation: Conservation[];
  streams: StreamResult[];
  tcp: TcpChurnResult;
  ping: { transmitted: number; received: number };
  newFlows: { sent: number; perSecond: number };
  routeChurn: { added: number; removed: number };
  portChurn: number;
  polls: PollResult[];
  seconds: number;
}

const WEB = networkFqns('web');
const ROUTE_SOURCE = 'route-source';
const TCP_PORT = 9000;
const NEW_FLOW_PORT = 7300;
const INTROSPECT_PATHS = ['/api/summary', '/api/flows?limit=20', '/metrics', '/api/drops'];

const CONFIG: NetworkConfigDocument = {
  holdTime: 30,
  vns: [
    { name: 'default', subnet: '10.32.0.0/24' },
    { name: 'web', subnet: '10.1.1.0/24', gateway: '10.1.1.1' },
  ],
};

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** VmRSS and RssAnon (kB) and the open descriptors of a process. */
function procSample(pid: number): { rssKb: number; rssAnonKb: number; fds: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rssKb: field('VmRSS'), rssAnonKb: field('RssAnon'), fds: fs.readdirSync(`/proc/${pid}/fd`).length };
}

interface Summary {
  received: number;
  transmitted: number;
  generated: number;
  held: number;
  dropped: number;
  flows: number;
  fragmentRecords?: number;
  mainHeapUsedBytes: number;
  dataplaneHeapUsedBytes: number;
}

export function growthOf(samples: SoakSample[], warmupSeconds: number): Growth[] {
  const processes = [...new Set(samples.map((sample) => sample.process))];
  return processes.map((name) => {
    const own = samples.filter((sample) => sample.process === name);
    const steady = own.filter((sample) => sample.t >= warmupSeconds);
    const rss = steady.length > 0 ? steady : own;
    const quiet = rss.filter((sample) => sample.churnPorts === 0);
    const fds = quiet.length > 0 ? quiet : rss;
    const first = rss[0];
    const last = rss[rss.length - 1];
    const heapOf = (sample: SoakSample) => (sample.mainHeapKb === null || sample.dataplaneHeapKb === null ? null : sample.mainHeapKb + sample.dataplaneHeapKb);
    return {
      process: name,
      rssFirstKb: first.rssKb,
      rssLastKb: last.rssKb,
      rssGrowthPercent: ((last.rssKb - first.rssKb) / first.rssKb) * 100,
      heapFirstKb: heapOf(first),
      heapLastKb: heapOf(last),
      fdsFirst: fds[0].fds,
      fdsLast: fds[fds.length - 1].fds,
    };
  });
}

export function samplesCsv(samples: SoakSample[]): string {
  const columns = ['t', 'process', 'rssKb', 'rssAnonKb', 'fds', 'churnPorts', 'mainHeapKb', 'dataplaneHeapKb', 'flows', 'heldFragments', 'fragmentRecords'] as const;
  return [columns.join(','), ...samples.map((sample) => columns.map((column) => sample[column] ?? '').join(','))].join('\n') + '\n';
}

export async function runSoak(topology: Topology, options: SoakOptions): Promise<SoakResult> {
  const cluster = await VrouterCluster.start(topology, {
    nodes: 2,
    logLevel: options.logLevel ?? 'warn',
    startTimeoutMs: 60_000,
    // Short idle timeout: the new-flow load reaches a steady flow count within the run.
    flows: { idleTimeout: 10 },
    control: { config: CONFIG, routeSources: [ROUTE_SOURCE] },
  });
  const cleanups: Array<() => Promise<unknown>> = [];
  try {
    await cluster.waitForSessions();
    await cluster.addPod(0, { name: 'u0', labels: { name: 'web' } });
    await cluster.addPod(1, { name: 'u1', labels: { name: 'web' } });
    await cluster.addPod(0, { name: 't0', labels: { name: 'web' } });
    const t1 = await cluster.addPod(1, { name: 't1', labels: { name: 'web' } });
    await cluster.waitForRoute(0, WEB.routingInstance, `${cluster.pod('u1').ip}/32`);
    await cluster.waitForRoute(0, WEB.routingInstance, `${t1.ip}/32`);
    await cluster.waitForRoute(1, WEB.routingInstance, `${cluster.pod('u0').ip}/32`);
    await cluster.waitForRoute(1, WEB.routingInstance, `${cluster.pod('t0').ip}/32`);

    const echo = await startTcpEcho(cluster, 't1', TCP_PORT);
    cleanups.push(async () => echo.stop());
    const routeSource = await startRouteSource(cluster, { name: ROUTE_SOURCE, vrf: WEB.routingInstance, vn: WEB.vn, toPod: 't1', rate: options.routeRate, window: options.routeWindow });
    const streams = [await startStream(cluster, 'u0', 'u1', 7001, options.pps), await startStream(cluster, 'u1', 'u0', 7002, options.pps)];
    const tcp = await startTcpChurn(cluster, 't0', t1.ip, TCP_PORT);
    const newFlows = await startProbeSender(cluster, 't0', options.flowIntervalMs, [`${t1.ip}:${NEW_FLOW_PORT}`]);
    const ping = new ProcessOutput(cluster.spawn('u0', ['ping', '-n', '-i', '0.2', cluster.pod('u1').ip]));
    const pollers = await Promise.all([0, 1].map((index) => startIntrospectPoller(cluster, index, 500, INTROSPECT_PATHS)));
    const started = Date.now();
    const elapsed = () => (Date.now() - started) / 1000;

    const samples: SoakSample[] = [];
    let churnPorts = 0;
    let churned = 0;
    let churning = true;
    const portChurn = (async () => {
      while (churning) {
        const name = `pc${churned}`;
        await cluster.addPod(1, { name, labels: { name: 'web' } });
        churnPorts = 1;
        await sleep((options.portChurnSeconds * 1000) / 2);
        await cluster.deletePod(name);
        churnPorts = 0;
        churned++;
        if (churning) await sleep((options.portChurnSeconds * 1000) / 2);
      }
    })();
    const processes = () => [
      ...cluster.nodes.map((node) => ({ name: node.name, pid: node.pid, node: node.index })),
      { name: 'control0', pid: cluster.controlNode(0).pid, node: -1 },
    ];
    const sampleAll = async () => {
      const t = Math.round(elapsed());
      for (const { name, pid, node } of processes()) {
        const proc = procSample(pid);
        const summary = node >= 0 ? await cluster.introspect<Summary>(node, '/api/summary') : null;
        samples.push({
          t,
          process: name,
          ...proc,
          churnPorts,
          mainHeapKb: summary ? Math.round(summary.mainHeapUsedBytes / 1024) : null,
          dataplaneHeapKb: summary ? Math.round(summary.dataplaneHeapUsedBytes / 1024) : null,
          flows: summary?.flows ?? null,
          heldFragments: summary?.held ?? null,
          fragmentRecords: summary?.fragmentRecords ?? null,
        });
      }
    };
    // Kept until the end, so a failed port add or delete fails the run there (not as an unhandled rejection).
    const portChurnFailure = portChurn.then(() => null, (error: unknown) => error);
    await sampleAll();
    for (let k = 1; ; k++) {
      const dueMs = Math.min(k * options.sampleSeconds, options.seconds) * 1000;
      await sleep(Math.max(0, started + dueMs - Date.now()));
      await sampleAll();
      if (dueMs >= options.seconds * 1000) break;
    }
    churning = false;
    const churnError = await portChurnFailure;
    if (churnError !== null) throw churnError;
    const seconds = elapsed();

    const newFlowsSent = await newFlows.stop();
    const tcpResult = await tcp.stop();
    ping.child.kill('SIGINT');
    await ping.exited;
    const pingLine = /(\d+) packets transmitted, (\d+) received/.exec(ping.stdout);
    const streamResults = await Promise.all(streams.map((stream) => stream.stop()));
    const routeChurn = await routeSource.stop();
    const polls = await Promise.all(pollers.map((poller) => poller.stop()));
    echo.stop();
    // Whatever is still in flight lands in a bucket (fragments held time out after 2 s).
    await sleep(3_000);
    const conservation: Conservation[] = [];
    for (const node of cluster.nodes) {
      const summary = await cluster.introspect<Summary>(node.index, '/api/summary');
      conservation.push({
        node: node.name,
        received: summary.received,
        generated: summary.generated,
        transmitted: summary.transmitted,
        dropped: summary.dropped,
        held: summary.held,
        unaccounted: summary.received + summary.generated - (summary.transmitted + summary.dropped + summary.held),
      });
    }
    const result: SoakResult = {
      samples,
      growth: growthOf(samples, options.warmupSeconds),
      conservation,
      streams: streamResults,
      tcp: tcpResult,
      ping: { transmitted: Number(pingLine?.[1] ?? 0), received: Number(pingLine?.[2] ?? 0) },
      newFlows: { sent: newFlowsSent, perSecond: newFlowsSent / seconds },
      routeChurn,
      portChurn: churned,
      polls,
      seconds,
    };
    if (options.resultsDirectory) {
      fs.mkdirSync(options.resultsDirectory, { recursive: true });
      fs.writeFileSync(path.join(options.resultsDirectory, 'samples.csv'), samplesCsv(samples));
      fs.writeFileSync(path.join(options.resultsDirectory, 'soak.json'), JSON.stringify({ options, ...result }, null, 2) + '\n');
    }
    return result;
  } catch (error) {
    throw await cluster.explain(error);
  } finally {
    for (const cleanup of cleanups) await cleanup().catch(() => undefined);
    await cluster.stop().catch((error: Error) => process.stderr.write(`${error.message}\n`));
  }
}
