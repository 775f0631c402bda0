/**
 * `npm run demo` (as root): a two-node overlay in network namespaces, with
 * real `vrouter run` daemons, real TAP devices and real traffic.
 *
 *                 underlay 198.18.0.0/24 (a bridge in its own namespace)
 *        node0 198.18.0.11 ───────────────────────────── node1 198.18.0.12
 *        ├─ fe-1  10.1.1.3  frontend                    └─ be-2  10.2.2.4  backend  :8080
 *        ├─ fe-2  10.1.1.4  frontend
 *        └─ be-1  10.2.2.3  backend  :8080
 *
 *   service web: ClusterIP 10.96.0.10 tcp 80 -> 8080 on be-1 and be-2 (ECMP)
 *   policy: frontend `uses: [web]` (its ClusterIP, on port 80 only); any
 *           other traffic between the VNs is denied.
 *
 * It checks, printing a ✓ or ✗ line for each: pings within a VN on one node
 * and across nodes, 20 HTTP requests to the ClusterIP answered by both
 * backends, and two denied connections; then prints every daemon's counters
 * (GET /stats). Everything is removed at the end, also on failure and on
 * Ctrl-C (the Topology's handlers). Exit code 0 only when every check held.
 *
 * The routes are programmed by programRoutes(), the one step a control node
 * will take over.
 */
import { performance } from 'node:perf_hooks';
import { execFileSync } from 'node:child_process';
import { Topology, requireCommands } from '../test/support/netns';
import { ClusterPod, DaemonStats, ProcessOutput, VrouterCluster } from '../test/support/vrouter-cluster';

const CLUSTER_IP = '10.96.0.10';
const SERVICE_PORT = 80;
const TARGET_PORT = 8080;
const REQUESTS = 20;
const SETTLE_MS = 500;

const VNS = [
  { name: 'frontend', subnet: '10.1.1.0/24', gateway: '10.1.1.1', uses: ['web'] },
  { name: 'backend', subnet: '10.2.2.0/24', gateway: '10.2.2.1' },
];
const SERVICE = { name: 'web', clusterIp: CLUSTER_IP, vn: 'backend', ports: [{ protocol: 'tcp' as const, port: SERVICE_PORT, targetPort: TARGET_PORT }] };
const PODS = [
  { node: 0, name: 'fe-1', vn: 'frontend', ip: '10.1.1.3' },
  { node: 0, name: 'fe-2', vn: 'frontend', ip: '10.1.1.4' },
  { node: 0, name: 'be-1', vn: 'backend', ip: '10.2.2.3', backs: true },
  { node: 1, name: 'be-2', vn: 'backend', ip: '10.2.2.4', backs: true },
];

const GREEN = process.stdout.isTTY ? '\x1b[32m' : '';
const RED = process.stdout.isTTY ? '\x1b[31m' : '';
const BOLD = process.stdout.isTTY ? '\x1b[1m' : '';
const RESET = process.stdout.isTTY ? '\x1b[0m' : '';

let failures = 0;

function section(title: string): void {
  console.log(`\n${BOLD}${title}${RESET}`);
}

function check(ok: boolean, text: string): boolean {
  if (!ok) failures++;
  console.log(`  ${ok ? `${GREEN}✓` : `${RED}✗`}${RESET} ${text}`);
  return ok;
}

function info(text: string): void {
  console.log(`    ${text}`);
}

/**
 * The routes besides each pod's own /32, which the harness sets on the other
 * nodes as it adds the pod (as a control node reflects a pod's route to the
 * nodes that have its VN):
 * - the service's ClusterIP in every VN that uses it: one ECMP next hop per
 *   backend pod (its node's underlay address and label), VN `backend`;
 * - the pods of a VN that uses a service, in the service's VN, so the
 *   backends' replies (SNATed back to the ClusterIP) find their way and
 *   pass the tunnel source check. Policy still denies backend -> frontend
 *   connections; these routes only carry the replies of allowed flows.
 * Returns one line per route, for the output.
 */
async function programRoutes(cluster: VrouterCluster): Promise<string[]> {
  const lines: string[] = [];
  const backends = cluster.podList.filter((pod) => PODS.find((spec) => spec.name === pod.name)?.backs);
  const backendHops = backends.map((pod) => cluster.nexthopTo(pod.name));
  const users = VNS.filter((vn) => vn.uses?.includes(SERVICE.name));
  for (const node of cluster.nodes) {
    for (const vn of users) {
      await cluster.setRoute(node.index, vn.name, `${CLUSTER_IP}/32`, backendHops, { vn: SERVICE.vn });
    }
  }
  lines.push(
    `${CLUSTER_IP}/32 in ${users.map((vn) => vn.name).join(', ')} on every node: ECMP ${backends.map((pod) => `${pod.name} (node${pod.node} label ${pod.label})`).join(' + ')}`,
  );
  const clients = cluster.podList.filter((pod) => users.some((vn) => vn.name === pod.vn));
  for (const node of cluster.nodes) {
    for (const pod of clients) await cluster.setRoute(node.index, SERVICE.vn, `${pod.ip}/32`, [cluster.nexthopTo(pod.name)], { vn: pod.vn });
  }
  lines.push(`${clients.map((pod) => pod.name).join(', ')} /32 in ${SERVICE.vn} on every node, for the service's replies`);
  return lines;
}

/** The HTTP server each backend runs: answers every request with the pod's name. */
const SERVER = `
const name = process.argv[1];
require('http').createServer((request, response) => response.end(name)).listen(${TARGET_PORT}, '0.0.0.0', () => console.log('listening'));`;

/** n sequential requests, each on a new connection (a new source port, so a new flow and ECMP choice); prints the answers' counts as JSON. */
const CLIENT = `
const [url, count] = [process.argv[1], Number(process.argv[2])];
const http = require('http');
const counts = {};
const get = () => new Promise((resolve) => {
  const request = http.get(url, { agent: false, timeout: 2000 }, (response) => {
    let body = '';
    response.on('data', (chunk) => (body += chunk));
    response.on('end', () => resolve(body));
  });
  request.on('timeout', () => request.destroy(new Error('timeout')));
  request.on('error', (error) => resolve('error: ' + error.message));
});
(async () => {
  for (let i = 0; i < count; i++) { const answer = await get(); counts[answer] = (counts[answer] || 0) + 1; }
  console.log(JSON.stringify(counts));
})();`;

/** A TCP connection attempt: prints connected, refused or timeout. */
const CONNECT = `
const [host, port] = [process.argv[1], Number(process.argv[2])];
const socket = require('net').connect({ host, port, timeout: 1500 });
socket.on('connect', () => { console.log('connected'); socket.destroy(); });
socket.on('timeout', () => { console.log('timeout'); socket.destroy(); });
socket.on('error', (error) => console.log(error.code === 'ECONNREFUSED' ? 'refused' : error.code));`;

function nodeScript(script: string, ...args: Array<string | number>): string[] {
  return [process.execPath, '-e', script, ...args.map(String)];
}

async function ping(cluster: VrouterCluster, from: string, toIp: string, count = 3): Promise<number> {
  try {
    const output = await cluster.exec(from, ['ping', '-n', '-q', '-c', String(count), '-i', '0.2', '-W', '1', toIp], { timeoutMs: 10_000 });
    return Number(/(\d+) received/.exec(output)?.[1] ?? 0);
  } catch (error) {
    // ping exits 1 when no reply came; its output is in the message.
    return Number(/(\d+) received/.exec((error as Error).message)?.[1] ?? 0);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function where(pod: ClusterPod): string {
  return `${pod.name} ${pod.ip} (${pod.vn}, node${pod.node})`;
}

async function checkConnectivity(cluster: VrouterCluster): Promise<void> {
  section('Connectivity (ping)');
  const pairs: Array<[string, string, string]> = [
    ['fe-1', 'fe-2', 'same VN, same node'],
    ['be-1', 'be-2', 'same VN, across nodes: MPLS over UDP'],
    ['be-2', 'be-1', 'and back'],
  ];
  for (const [from, to, what] of pairs) {
    const received = await ping(cluster, from, cluster.pod(to).ip);
    check(received === 3, `${from} -> ${to} ${cluster.pod(to).ip} (${what}): ${received}/3 replies`);
  }
}

async function checkService(cluster: VrouterCluster): Promise<void> {
  section(`Service ${SERVICE.name}: ClusterIP ${CLUSTER_IP}:${SERVICE_PORT} -> backends :${TARGET_PORT}`);
  for (const client of ['fe-1', 'fe-2']) {
    const output = await cluster.exec(client, nodeScript(CLIENT, `http://${CLUSTER_IP}:${SERVICE_PORT}/`, REQUESTS), { timeoutMs: 60_000 });
    const counts = JSON.parse(output) as Record<string, number>;
    const answered = (counts['be-1'] ?? 0) + (counts['be-2'] ?? 0);
    const detail = Object.entries(counts)
      .map(([answer, count]) => `${answer} ${count}`)
      .join(', ');
    check(answered === REQUESTS, `${client}: ${answered}/${REQUESTS} requests answered (${detail})`);
    check((counts['be-1'] ?? 0) > 0 && (counts['be-2'] ?? 0) > 0, `${client}: both backends answered (be-1 on node0 locally, be-2 on node1 through the tunnel)`);
  }
}

async function checkDenied(cluster: VrouterCluster): Promise<void> {
  section('Policy');
  // The service's connections close asynchronously (FIN retransmits): let them settle so the counters below are the attempts'.
  await delay(SETTLE_MS);
  const attempts: Array<{ from: string; host: string; port: number; why: string }> = [
    { from: 'be-2', host: cluster.pod('fe-1').ip, port: TARGET_PORT, why: 'backend may not reach frontend' },
    { from: 'fe-1', host: CLUSTER_IP, port: SERVICE_PORT + 1, why: `frontend uses ${SERVICE.name} on port ${SERVICE_PORT} only` },
  ];
  for (const attempt of attempts) {
    // Policy is evaluated where the connection starts: the source pod's node.
    const node = cluster.pod(attempt.from).node;
    const before = (await cluster.stats(node)).drops['flow-action-drop'] ?? 0;
    const outcome = (await cluster.exec(attempt.from, nodeScript(CONNECT, attempt.host, attempt.port), { timeoutMs: 10_000 })).trim();
    const dropped = ((await cluster.stats(node)).drops['flow-action-drop'] ?? 0) - before;
    check(
      outcome === 'timeout' && dropped > 0,
      `${attempt.from} -> ${attempt.host}:${attempt.port} tcp (${attempt.why}): ${outcome === 'timeout' ? 'denied' : outcome} (node${node} flow-action-drop +${dropped})`,
    );
  }
  const node = cluster.pod('fe-1').node;
  const before = (await cluster.stats(node)).drops['no-route'] ?? 0;
  const received = await ping(cluster, 'fe-1', cluster.pod('be-1').ip, 2);
  const dropped = ((await cluster.stats(node)).drops['no-route'] ?? 0) - before;
  check(received === 0, `fe-1 -> be-1 ${cluster.pod('be-1').ip} by pod IP (frontend has no route into backend but the ClusterIP): ${received}/2 replies (node${node} no-route +${dropped})`);
}

function printCounters(cluster: VrouterCluster, stats: DaemonStats[]): void {
  section('vrouter counters (GET /stats)');
  stats.forEach((nodeStats, index) => {
    const node = cluster.nodes[index];
    console.log(`  node${index} (${node.underlayIp}): received ${nodeStats.received}, transmitted ${nodeStats.transmitted}, flows ${nodeStats.flows}`);
    for (const vif of nodeStats.vifs) {
      const pod = cluster.podList.find((candidate) => candidate.node === index && candidate.vif === vif.id);
      const label = pod ? `${pod.name} (${vif.name})` : vif.name;
      info(`vif ${vif.id} ${label.padEnd(14)} rx ${String(vif.rxPackets).padStart(5)}  tx ${String(vif.txPackets).padStart(5)}`);
    }
    const drops = Object.entries(nodeStats.drops).map(([reason, count]) => `${reason} ${count}`);
    info(`drops: ${drops.join(', ') || 'none'}`);
  });
}

async function main(): Promise<void> {
  const started = performance.now();
  if (process.getuid?.() !== 0) throw new Error('the demo needs root (network namespaces, TAP devices): sudo npm run demo');
  requireCommands({ ip: 'iproute2', sysctl: 'procps', ping: 'iputils-ping' });
  const swept = Topology.sweepStale();
  if (swept.length > 0) console.log(`(removed namespaces left by dead runs: ${swept.join(' ')})`);
  console.log(`${BOLD}vrouter-ts demo${RESET}: 2 nodes, 4 pods in 2 VNs, 1 ClusterIP service; real daemons, TAPs and traffic in network namespaces`);

  const topology = new Topology();
  let cluster: VrouterCluster | undefined;
  try {
    section('Setup');
    cluster = await VrouterCluster.start(topology, { nodes: 2, vns: VNS, services: [SERVICE], logLevel: 'warn' });
    check(true, `underlay and 2 vrouter daemons: ${cluster.nodes.map((node) => `node${node.index} ${node.underlayIp}`).join(', ')}`);
    for (const spec of PODS) {
      await cluster.addPod(spec.node, {
        name: spec.name,
        vn: spec.vn,
        ip: spec.ip,
        ...(spec.backs ? { floatingIps: [{ ip: CLUSTER_IP, portMap: [{ protocol: 'tcp' as const, port: SERVICE_PORT, targetPort: TARGET_PORT }] }] } : {}),
      });
    }
    check(true, `pods (TAP as eth0, /32 routes on the other node): ${cluster.podList.map((pod) => where(pod)).join(', ')}`);
    for (const line of await programRoutes(cluster)) check(true, `route ${line}`);
    for (const pod of PODS.filter((spec) => spec.backs)) {
      const server = new ProcessOutput(cluster.spawn(pod.name, nodeScript(SERVER, pod.name)));
      await server.waitFor(/listening/, 10_000, `${pod.name}'s HTTP server`);
    }
    check(true, `HTTP servers on ${PODS.filter((spec) => spec.backs).map((spec) => `${spec.name}:${TARGET_PORT}`).join(', ')}, answering their name`);

    const running = cluster;
    await running.withLogs(async () => {
      await checkConnectivity(running);
      await checkService(running);
      await checkDenied(running);
      printCounters(running, await Promise.all(running.nodes.map((node) => running.stats(node.index))));
    });
  } finally {
    section('Teardown');
    let stopped = true;
    try {
      await cluster?.stop();
    } catch (error) {
      stopped = false;
      console.log(String((error as Error).message).split('\n').slice(0, 5).join('\n'));
    }
    await topology.destroy();
    const left = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
      .split('\n')
      .filter((line) => line.startsWith(`${topology.prefix}-`));
    check(stopped, 'daemons stopped on SIGTERM (TAPs and sockets closed)');
    check(left.length === 0, `namespaces removed${left.length ? `: left ${left.join(' ')}` : ''}`);
  }
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  console.log(`\n${failures === 0 ? `${GREEN}all checks passed` : `${RED}${failures} check(s) failed`}${RESET} in ${seconds} s`);
  process.exitCode = failures === 0 ? 0 : 1;
}

// Ctrl-C: the Topology's own handler (installed first) has already killed
// the daemons and deleted the namespaces; exiting (rather than dying of the
// signal) also runs the cluster's exit hook, which removes its temp directory.
process.once('SIGINT', () => {
  console.log(`\n${RED}interrupted${RESET}: namespaces and daemons removed`);
  process.exit(130);
});

main()
  .catch((error: unknown) => {
    console.error(`\n${RED}demo failed:${RESET} ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  })
  // Exit now: timers of the teardown (grace periods) would keep the process alive for seconds.
  .finally(() => process.exit());
