/**
 * npm run bench:restart [-- --pps 10000 --seconds 8 --at 3]: what a restart
 * of `vrouter run` (issue 15) costs the pods' traffic; with --control-node
 * [--pods 1000 --down-ms 1000 --watch 45], what a control node restart
 * costs the vrouters' routes (controlNodeRestart below). Two nodes in network
 * namespaces (test/support/vrouter-cluster.ts), daemons run restartable
 * (without --clean-exit):
 *
 *   node0: pod a   --UDP <pps> datagrams/s, numbered-->     node1: pod b
 *                  --TCP stream to b:9000 (echoed)-->
 *                  --TCP stream to ClusterIP 10.96.0.10:80 (DNAT to b:8080 on node1)-->
 *
 * `--at` seconds into the traffic, node1 (b's node, which holds the NAT
 * flows) gets SIGTERM or SIGKILL and is started again. For each case:
 * datagrams lost (sent minus distinct sequence numbers received), the
 * outage (longest gap between two datagrams at b), whether each TCP
 * connection survived (no error, every byte echoed, clean close), the
 * daemon's exit time and the time until the new one logged that it runs
 * (its ports restored).
 * Two topologies: routes set by the harness (no control node), and one
 * control node distributing ports, routes and the service.
 * Needs root and iproute2; prints the load average with the figures.
 */
import os from 'node:os';
import { Topology } from '../test/support/netns';
import { VrouterCluster } from '../test/support/vrouter-cluster';
import {
  RESTART_CLUSTER_IP as CLUSTER_IP,
  registerManyPods,
  startControlRestartCluster,
  startControlledRestartCluster,
  startRestartTraffic,
  watchRoutes,
} from '../test/support/restart-workload';

const args = process.argv.slice(2);
const option = (name: string, fallback: number) => {
  const at = args.indexOf(`--${name}`);
  return at >= 0 ? Number(args[at + 1]) : fallback;
};
const PPS = option('pps', 10_000);
const SECONDS = option('seconds', 8);
const RESTART_AT_SECONDS = option('at', 3);
const SIGNALS = ['SIGTERM', 'SIGKILL'] as const;
const CONTROL_NODE_CASE = args.includes('--control-node');
const PODS = option('pods', 1000);
const CONTROL_DOWN_MS = option('down-ms', 1000);
const WATCH_SECONDS = option('watch', 45);

interface CaseResult {
  topology: string;
  signal: string;
  sent: number;
  lost: number;
  outageMs: number;
  tcp: Record<string, string>;
  exitMs: number;
  runningMs: number;
}

async function withoutControl(topology: Topology): Promise<VrouterCluster> {
  const cluster = await VrouterCluster.start(topology, { nodes: 2, tag: 'static', vns: [{ name: 'vn1', subnet: '10.1.1.0/24', gateway: '10.1.1.1' }], restartable: true });
  await cluster.addPod(0, { name: 'a', vn: 'vn1', ip: '10.1.1.3', label: 20 });
  await cluster.addPod(1, { name: 'b', vn: 'vn1', ip: '10.1.1.5', label: 21, floatingIps: [{ ip: CLUSTER_IP, portMap: [{ protocol: 'tcp', port: 80, targetPort: 8080 }] }] });
  await cluster.setRoute(0, 'vn1', `${CLUSTER_IP}/32`, [cluster.nexthopTo('b')], { vn: 'vn1' });
  return cluster;
}

function withControl(topology: Topology): Promise<VrouterCluster> {
  return startControlledRestartCluster(topology, 'control');
}

async function measure(cluster: VrouterCluster, topologyName: string, signal: (typeof SIGNALS)[number]): Promise<CaseResult> {
  await cluster.exec('a', ['ping', '-c', '1', '-W', '2', cluster.pod('b').ip]);
  const traffic = await startRestartTraffic(cluster, {
    client: 'a',
    server: 'b',
    udpPort: 7000,
    pps: PPS,
    seconds: SECONDS,
    echoPorts: [8080, 9000],
    targets: { direct: { host: cluster.pod('b').ip, port: 9000 }, clusterIp: { host: CLUSTER_IP, port: 80 } },
  });
  await new Promise((resolve) => setTimeout(resolve, RESTART_AT_SECONDS * 1000));
  const { downMs, upMs } = await cluster.restartNode(1, { signal });
  const result = await traffic.finish();
  const tcp: Record<string, string> = {};
  for (const [name, connection] of Object.entries(result.tcp)) {
    tcp[name] = connection.error === null && connection.closedCleanly ? `yes (stall ${connection.longestStallMs.toFixed(0)} ms)` : `NO (${connection.error ?? `${connection.verified}/${connection.sent} bytes echoed`})`;
  }
  return {
    topology: topologyName,
    signal,
    sent: result.udpSent.sent,
    lost: result.udpSent.sent - result.udp.distinct,
    outageMs: result.udp.longestGapMs,
    tcp,
    exitMs: downMs,
    runningMs: upMs,
  };
}

/**
 * --control-node: the control node SIGKILLed under `--pods` pods (half on
 * each of two vrouters, TAPs in the node namespaces, no traffic) and started
 * again after `--down-ms`. Each vrouter's routes of VN web are sampled every
 * 100 ms from before the kill until `--watch` seconds: withdrawn is the most
 * prefixes of the first sample missing from any later one (graceful
 * restart: 0); re-sync is from the control node listening again until the
 * vrouter's session is Established with no stale route.
 */
async function controlNodeRestart(): Promise<void> {
  const topology = new Topology();
  try {
    const cluster = await startControlRestartCluster(topology);
    try {
      const registration = await registerManyPods(cluster, topology, Math.ceil(PODS / cluster.nodes.length));
      const watch = watchRoutes(cluster, topology, WATCH_SECONDS);
      await new Promise((resolve) => setTimeout(resolve, 2000));
      await cluster.killControlNode(0, 'SIGKILL');
      await new Promise((resolve) => setTimeout(resolve, CONTROL_DOWN_MS));
      await cluster.startControlNode(0);
      const listening = Date.now();
      const watched = await watch.finish();
      console.log(
        `\ncontrol node SIGKILLed under ${PODS} pods (registered in ${registration.ms} ms), down ${CONTROL_DOWN_MS} ms (${os.cpus().length} cores, load average ${os.loadavg().map((load) => load.toFixed(2)).join(' ')})`,
      );
      console.log('| vrouter | routes before | withdrawn (most missing) | missing at the end | re-sync ms | samples |');
      console.log('|---|---:|---:|---:|---:|---:|');
      watched.forEach((result, index) => {
        const resync = result.syncedAt === null ? `not within ${WATCH_SECONDS} s` : String(result.syncedAt - listening);
        console.log(`| node${index} | ${result.baseline} | ${result.mostMissing} | ${result.missingNow} | ${resync} | ${result.samples} |`);
      });
      // The pods' devices stay for a next daemon; what is timed is releasing the ports' fds and sockets.
      for (const [index, node] of cluster.nodes.entries()) {
        const stopped = await cluster.stopNode(index);
        console.log(`${node.name}: SIGTERM to exit with ${Math.ceil(PODS / cluster.nodes.length)} ports: ${stopped.ms} ms`);
      }
    } finally {
      await cluster.stop().catch((error: Error) => console.error(error.message));
    }
  } finally {
    await topology.destroy();
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench:restart needs root (network namespaces)');
  if (CONTROL_NODE_CASE) return controlNodeRestart();
  const results: CaseResult[] = [];
  for (const [name, build] of [['no control node', withoutControl], ['control node', withControl]] as const) {
    const topology = new Topology();
    try {
      const cluster = await build(topology);
      try {
        for (const signal of SIGNALS) {
          const result = await measure(cluster, name, signal);
          results.push(result);
          console.log(JSON.stringify(result));
        }
      } finally {
        await cluster.stop().catch((error: Error) => console.error(error.message));
      }
    } finally {
      await topology.destroy();
    }
  }
  console.log(`\nrestart of node1 under ${PPS} pps UDP + 2 TCP streams (${os.cpus().length} cores, load average ${os.loadavg().map((load) => load.toFixed(2)).join(' ')})`);
  console.log('| topology | signal | UDP sent | lost | outage ms | TCP direct survived | TCP ClusterIP survived | exit ms | running again ms |');
  console.log('|---|---|---:|---:|---:|---|---|---:|---:|');
  for (const r of results) {
    console.log(`| ${r.topology} | ${r.signal} | ${r.sent} | ${r.lost} | ${r.outageMs.toFixed(0)} | ${r.tcp.direct} | ${r.tcp.clusterIp} | ${r.exitMs} | ${r.runningMs} |`);
  }
}

main().catch((error: Error) => {
  console.error(error.stack ?? error.message);
  process.exit(1);
});
