/**
 * npm run bench:restart [-- --pps 10000 --seconds 8 --at 3]: what a restart
 * of `vrouter run` (issue 15) costs the pods' traffic. Two nodes in network
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
import { RESTART_CLUSTER_IP as CLUSTER_IP, startControlledRestartCluster, startRestartTraffic } from '../test/support/restart-workload';

const args = process.argv.slice(2);
const option = (name: string, fallback: number) => {
  const at = args.indexOf(`--${name}`);
  return at >= 0 ? Number(args[at + 1]) : fallback;
};
const PPS = option('pps', 10_000);
const SECONDS = option('seconds', 8);
const RESTART_AT_SECONDS = option('at', 3);
const SIGNALS = ['SIGTERM', 'SIGKILL'] as const;

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

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench:restart needs root (network namespaces)');
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
