/**
 * The core of bench:reconfig (and of its smoke test): a control-mode
 * cluster is reconfigured while unrelated UDP streams run, and probes show
 * when each change forwards.
 *
 *   control0 (vrouter-control --route-source route-source) <- route-churn.js in control0's namespace:
 *            <rate> routes/s published and as many withdrawn (10.200/16, to b), plus a probe route 10.77.0.1/32
 *   node0: u0 --UDP <pps>, numbered--> u1 (node1) and u1 --> u0: the unrelated streams (lost = sent - distinct)
 *          a (web, uses the service): probe sender, a new flow to each target every <probeIntervalMs>
 *   node1: b (web): 10.77.0.1 on its lo, receives the probe route's probes
 *          d (db): receives probes to d:7200, the port a policy change opens and closes
 *   s0..s<n-1> (web, both nodes): backends of scalesvc 10.96.0.30 udp/5300, each receiving
 *
 * Changes, in turn (timestamps in epoch ms on both sides, one machine):
 *   route add / delete    the probe route published / withdrawn by the route source: first / last probe at b
 *   port add / delete     a pod added on node1 / deleted (timed POST / DELETE /port): first / last echo of a's 2 ms ping
 *   scale 1 -> n / n -> 1 the service's selector switched (config file rewritten, SIGHUP): until every new
 *                         backend got a probe / the last probe reached one no longer selected
 *   policy deny / allow   a deny rule for web -> db udp/7200-7201 put first / taken out again: last / first probe at d
 *                         (new flows to 7200), and last / first datagram of a's one long flow to d:7201
 *
 * The scale and policy changes go through the control node's configuration
 * file, as an operator's edit would (Kubernetes scaling a Deployment adds
 * pods instead: that is the port add's figure).
 */
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { NetworkConfigDocument } from '../src/control/node/network-config';
import { networkFqns } from '../src/control/ifmap/names';
import type { Topology } from '../test/support/netns';
import { ProcessOutput, VrouterCluster } from '../test/support/vrouter-cluster';
import { Arrivals, StreamResult, forwardingChange, startProbeReceiver, startProbeSender, startRouteSource, startStream, startStreamSender } from './reconfig-workload';

export interface ReconfigOptions {
  /** Datagrams per second of each unrelated stream. */
  pps: number;
  /** Routes the route source adds (and removes) per second. */
  routeRate: number;
  /** Routes it keeps in place. */
  routeWindow: number;
  /** How often each change is made (and undone). */
  rounds: number;
  /** Backends of the service when scaled up (from 1). */
  scaleTo: number;
  probeIntervalMs: number;
  /** How long each state is held before the next change. */
  holdMs: number;
  logLevel?: string;
}

export const RECONFIG_DEFAULTS: ReconfigOptions = { pps: 2000, routeRate: 1000, routeWindow: 1000, rounds: 5, scaleTo: 10, probeIntervalMs: 4, holdMs: 1500 };

export type ChangeName =
  | 'route add'
  | 'route delete'
  | 'port add'
  | 'port delete'
  | 'scale up'
  | 'scale down'
  | 'policy deny, new flows'
  | 'policy allow, new flows'
  | 'policy deny, established flow'
  | 'policy allow, established flow';

export interface ReconfigResult {
  streams: StreamResult[];
  /** Unrelated datagrams lost, over both streams. */
  lost: number;
  /** Per change: ms until the new state forwarded, one per round; null where it never did. */
  changes: Record<ChangeName, Array<number | null>>;
  routeChurn: { added: number; removed: number };
  /** Probes sent, and over the whole run the routes the route source changed per second. */
  probesSent: number;
  routeChangesPerSecond: number;
  /** Per node, the longest its dataplane worker went between two epoll waits (GET /api/summary dataplaneLongestTurnMs). */
  longestWorkerTurnMs: number[];
}

const WEB = networkFqns('web');
const PROBE_ROUTE = '10.77.0.1';
const PROBE_ROUTE_PORT = 7101;
const POLICY_PORT = 7200;
/** One long flow (a single socket) to d, under the same deny as the probes. */
const ESTABLISHED_PORT = 7201;
const ESTABLISHED_PPS = 250;
const SERVICE_IP = '10.96.0.30';
const SERVICE_PORT = 5300;
const ROUTE_SOURCE = 'route-source';
/** What should stop must have been arriving this long before the change (a ping; a probe without an earlier change). */
const BEFORE_MS = 300;

const epochMs = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function networkConfig(state: { scaled: boolean; denied: boolean }): NetworkConfigDocument {
  return {
    holdTime: 30,
    vns: [
      { name: 'default', subnet: '10.32.0.0/24' },
      { name: 'web', subnet: '10.1.1.0/24', gateway: '10.1.1.1' },
      { name: 'db', subnet: '10.2.0.0/24' },
    ],
    services: [
      {
        name: 'scalesvc',
        clusterIP: SERVICE_IP,
        ports: [{ protocol: 'UDP', port: SERVICE_PORT, targetPort: SERVICE_PORT }],
        selector: state.scaled ? { scaleAll: 'yes' } : { scaleOne: 'yes' },
      },
    ],
    policies: [
      // Explicit policies apply in order: the deny, when present, comes before the allow.
      ...(state.denied ? [{ name: 'probe-deny', from: 'web', to: 'db', protocol: 'udp' as const, ports: [POLICY_PORT, ESTABLISHED_PORT], action: 'deny' as const }] : []),
      { name: 'web-db', from: 'web', to: 'db', protocol: 'any', action: 'allow' },
    ],
  };
}

/** Rewrites control0's configuration file (whole, by rename) and makes it reload at once; the epoch ms of the SIGHUP. */
function applyConfig(cluster: VrouterCluster, document: NetworkConfigDocument): number {
  const control = cluster.controlNode(0);
  const staging = `${control.configFile}.new`;
  fs.writeFileSync(staging, JSON.stringify(document, null, 2) + '\n');
  fs.renameSync(staging, control.configFile);
  const at = epochMs();
  control.process.kill('SIGHUP');
  return at;
}

/** Pings ip from a pod every 2 ms while action runs and ms after it; the epoch ms of every reply. */
async function pingAround(cluster: VrouterCluster, from: string, ip: string, action: () => Promise<number>, afterMs: number): Promise<{ at: number; replies: number[] }> {
  const ping = new ProcessOutput(cluster.spawn(from, ['stdbuf', '-oL', 'ping', '-D', '-n', '-i', '0.002', '-W', '1', ip]));
  try {
    await ping.waitFor(/^PING /m, 5_000, `ping ${ip} starting in ${from}`);
    await sleep(BEFORE_MS + 200);
    const at = await action();
    await sleep(afterMs);
    const replies = [...ping.stdout.matchAll(new RegExp(`^\\[(\\d+\\.\\d+)\\] \\d+ bytes from ${ip.replace(/\./g, '\\.')}:`, 'gm'))].map((match) => Number(match[1]) * 1000);
    return { at, replies };
  } finally {
    ping.child.kill('SIGINT');
    await ping.exited;
  }
}

/**
 * What `vrouter port delete --control-api` does (DELETE /port/<id> on the
 * daemon, then DELETE /pods/<id> on the control node), with the first
 * request timed where it is sent rather than where a CLI process starts;
 * the epoch ms it was sent.
 */
async function deletePort(cluster: VrouterCluster, nodeIndex: number, id: string): Promise<number> {
  const { sentAt } = await cluster.apiRequest(nodeIndex, 'DELETE', `/port/${encodeURIComponent(id)}`);
  await cluster.apiRequest(nodeIndex, 'DELETE', `/pods/${encodeURIComponent(id)}`, undefined, cluster.controlNode(0).podApi.replace(/^http:\/\//, ''));
  return sentAt;
}

interface ProbeEvent {
  change: ChangeName;
  /** Receiver pod and listen address whose arrivals show it. */
  receiver: string;
  listen: string;
  at: number;
  effect: 'starts' | 'stops';
}

/** Sets up the cluster (pods, receivers, route source), makes every change `rounds` times, and reads the probes. */
export async function runReconfig(topology: Topology, options: ReconfigOptions): Promise<ReconfigResult> {
  let state = { scaled: false, denied: false };
  const cluster = await VrouterCluster.start(topology, {
    nodes: 2,
    logLevel: options.logLevel ?? 'warn',
    // The machine is shared: a daemon may take long to answer at first.
    startTimeoutMs: 60_000,
    control: { config: networkConfig(state), routeSources: [ROUTE_SOURCE] },
  });
  const stoppers: Array<() => Promise<unknown>> = [];
  try {
    await cluster.waitForSessions();
    await cluster.addPod(0, { name: 'u0', labels: { name: 'web' } });
    await cluster.addPod(1, { name: 'u1', labels: { name: 'web' } });
    await cluster.addPod(0, { name: 'a', labels: { name: 'web', uses: 'scalesvc' } });
    await cluster.addPod(1, { name: 'b', labels: { name: 'web' } });
    const d = await cluster.addPod(1, { name: 'd', labels: { name: 'db' } });
    const backends: string[] = [];
    for (let index = 0; index < options.scaleTo; index++) {
      const name = `s${index}`;
      await cluster.addPod(index % 2 === 0 ? 1 : 0, { name, labels: { name: 'web', scaleAll: 'yes', ...(index === 0 ? { scaleOne: 'yes' } : {}) } });
      backends.push(name);
    }
    await cluster.exec('b', ['ip', 'address', 'add', `${PROBE_ROUTE}/32`, 'dev', 'lo']);
    await cluster.waitForRoute(0, WEB.routingInstance, `${cluster.pod('u1').ip}/32`);
    await cluster.waitForRoute(1, WEB.routingInstance, `${cluster.pod('u0').ip}/32`);
    await cluster.waitForRoute(0, WEB.routingInstance, `${SERVICE_IP}/32`);

    const receivers = new Map<string, Awaited<ReturnType<typeof startProbeReceiver>>>();
    const routeListen = `${PROBE_ROUTE}:${PROBE_ROUTE_PORT}`;
    const anyListen = (port: number) => `0.0.0.0:${port}`;
    receivers.set('b', await startProbeReceiver(cluster, 'b', [routeListen]));
    receivers.set('d', await startProbeReceiver(cluster, 'd', [anyListen(POLICY_PORT), anyListen(ESTABLISHED_PORT)]));
    for (const backend of backends) receivers.set(backend, await startProbeReceiver(cluster, backend, [anyListen(SERVICE_PORT)]));
    const routeSource = await startRouteSource(cluster, { name: ROUTE_SOURCE, vrf: WEB.routingInstance, vn: WEB.vn, toPod: 'b', rate: options.routeRate, window: options.routeWindow });
    let routeSourceStopped = false;
    stoppers.push(async () => routeSourceStopped || routeSource.stop());

    const streams = [
      await startStream(cluster, 'u0', 'u1', 7001, options.pps),
      await startStream(cluster, 'u1', 'u0', 7002, options.pps),
    ];
    const probes = await startProbeSender(cluster, 'a', options.probeIntervalMs, [`${PROBE_ROUTE}:${PROBE_ROUTE_PORT}`, `${d.ip}:${POLICY_PORT}`, `${SERVICE_IP}:${SERVICE_PORT}`]);
    const established = await startStreamSender(cluster, 'a', d.ip, ESTABLISHED_PORT, ESTABLISHED_PPS);
    let establishedStopped = false;
    stoppers.push(async () => establishedStopped || established.stop());
    const churnStarted = epochMs();
    const events: ProbeEvent[] = [];
    const pingChanges: Record<'port add' | 'port delete', Array<number | null>> = { 'port add': [], 'port delete': [] };
    await sleep(options.holdMs);

    for (let round = 0; round < options.rounds; round++) {
      // Routes, among the route source's own churn.
      events.push({ change: 'route add', receiver: 'b', listen: routeListen, at: await routeSource.command('add', `${PROBE_ROUTE}/32`), effect: 'starts' });
      await sleep(options.holdMs);
      events.push({ change: 'route delete', receiver: 'b', listen: routeListen, at: await routeSource.command('del', `${PROBE_ROUTE}/32`), effect: 'stops' });
      await sleep(options.holdMs);

      // Ports: a pod added on node1 and deleted again, timed by a's ping.
      const spec = { name: `p${round}`, labels: { name: 'web' }, ip: `10.1.1.${200 + round}` };
      const added = await cluster.timePortAddToReply(1, spec, 'a');
      pingChanges['port add'].push(added.ms);
      const deleted = await pingAround(cluster, 'a', spec.ip, () => deletePort(cluster, 1, spec.name), options.holdMs);
      const before = deleted.replies.filter((time) => time < deleted.at && time >= deleted.at - BEFORE_MS);
      const after = deleted.replies.filter((time) => time >= deleted.at);
      pingChanges['port delete'].push(before.length === 0 ? null : after.length === 0 ? 0 : after[after.length - 1] - deleted.at);

      // The service: 1 backend -> all of them -> 1.
      state = { ...state, scaled: true };
      const scaledAt = applyConfig(cluster, networkConfig(state));
      for (const backend of backends.slice(1)) events.push({ change: 'scale up', receiver: backend, listen: anyListen(SERVICE_PORT), at: scaledAt, effect: 'starts' });
      await sleep(options.holdMs);
      state = { ...state, scaled: false };
      const unscaledAt = applyConfig(cluster, networkConfig(state));
      for (const backend of backends.slice(1)) events.push({ change: 'scale down', receiver: backend, listen: anyListen(SERVICE_PORT), at: unscaledAt, effect: 'stops' });
      await sleep(options.holdMs);

      // Policy: web -> db udp/7200-7201 denied, then allowed again: for new flows, and for one established flow.
      state = { ...state, denied: true };
      const deniedAt = applyConfig(cluster, networkConfig(state));
      events.push({ change: 'policy deny, new flows', receiver: 'd', listen: anyListen(POLICY_PORT), at: deniedAt, effect: 'stops' });
      events.push({ change: 'policy deny, established flow', receiver: 'd', listen: anyListen(ESTABLISHED_PORT), at: deniedAt, effect: 'stops' });
      await sleep(options.holdMs);
      state = { ...state, denied: false };
      const allowedAt = applyConfig(cluster, networkConfig(state));
      events.push({ change: 'policy allow, new flows', receiver: 'd', listen: anyListen(POLICY_PORT), at: allowedAt, effect: 'starts' });
      events.push({ change: 'policy allow, established flow', receiver: 'd', listen: anyListen(ESTABLISHED_PORT), at: allowedAt, effect: 'starts' });
      await sleep(options.holdMs);
    }

    const probesSent = await probes.stop();
    await established.stop();
    establishedStopped = true;
    const streamResults = await Promise.all(streams.map((stream) => stream.stop()));
    const routeChurn = await routeSource.stop();
    routeSourceStopped = true;
    const churnSeconds = (epochMs() - churnStarted) / 1000;
    const arrivals = new Map<string, Arrivals>();
    for (const [pod, receiver] of receivers) arrivals.set(pod, await receiver.stop());

    const longestWorkerTurnMs = await Promise.all(
      cluster.nodes.map(async (node) => (await cluster.introspect<{ dataplaneLongestTurnMs: number }>(node.index, '/api/summary')).dataplaneLongestTurnMs),
    );
    const changes = { ...pingChanges } as ReconfigResult['changes'];
    for (const name of ['route add', 'route delete', 'scale up', 'scale down', 'policy deny, new flows', 'policy deny, established flow', 'policy allow, new flows', 'policy allow, established flow'] as const) {
      changes[name] = [];
    }
    for (const event of events) {
      const times = arrivals.get(event.receiver)?.[event.listen] ?? [];
      // Until the next change seen by the same receiver, or the end.
      const next = events.find((other) => other.receiver === event.receiver && other.listen === event.listen && other.at > event.at);
      const until = next?.at ?? Number.POSITIVE_INFINITY;
      // A probe that should stop must have arrived since the receiver's previous change: one backend of ten gets a
      // new flow about every 40 ms, so a fixed window before the change misses some by chance and calls them "never".
      const previous = events.filter((other) => other.receiver === event.receiver && other.listen === event.listen && other.at < event.at).pop();
      const since = previous?.at ?? event.at - BEFORE_MS;
      const wasForwarding = times.some((time) => time < event.at && time >= since);
      changes[event.change].push(event.effect === 'stops' && !wasForwarding ? null : forwardingChange(times, event.at, until, event.effect));
    }
    // One figure per scaling: the slowest backend.
    for (const name of ['scale up', 'scale down'] as const) {
      const perBackend = changes[name];
      const perRound: Array<number | null> = [];
      const width = backends.length - 1;
      for (let round = 0; round < perBackend.length / width; round++) {
        const slice = perBackend.slice(round * width, (round + 1) * width);
        perRound.push(slice.some((ms) => ms === null) ? null : Math.max(...(slice as number[])));
      }
      changes[name] = perRound;
    }
    return {
      streams: streamResults,
      lost: streamResults.reduce((sum, stream) => sum + stream.lost, 0),
      changes,
      routeChurn,
      probesSent,
      routeChangesPerSecond: (routeChurn.added + routeChurn.removed) / churnSeconds,
      longestWorkerTurnMs,
    };
  } catch (error) {
    throw await cluster.explain(error);
  } finally {
    for (const stop of stoppers) await stop().catch(() => undefined);
    await cluster.stop().catch((error: Error) => process.stderr.write(`${error.message}\n`));
  }
}
