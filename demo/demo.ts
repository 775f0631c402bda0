/**
 * `npm run demo` (as root): a two-node overlay in network namespaces run by
 * a control node, with real `vrouter-control` and `vrouter run --control`
 * processes, real TAP devices and real traffic.
 *
 *                 underlay 198.18.0.0/24 (a bridge in its own namespace)
 *   control0 198.18.0.2:5269 (XMPP) ── node0 198.18.0.11 ── node1 198.18.0.12
 *                                      ├─ fe-1  frontend              └─ be-2  backend  :8080
 *                                      ├─ fe-2  frontend
 *                                      └─ be-1  backend  :8080
 *
 * The pods are added with labels only (`vrouter port add --label ...
 * --control-api http://198.18.0.2:8082`: registered on the control node's
 * pod API, then their port added on the node): frontend pods `name=frontend, uses=web`, backend pods `name=backend,
 * app=web`. The control node's configuration (below) has the VNs, and the
 * service web: ClusterIP 10.96.0.10 tcp 80 -> 8080, selector app=web. From
 * the labels it picks each pod's VN, allocates its address, gives the
 * backends the ClusterIP (floating IP) and opens the ClusterIP on port 80 to
 * the VN that uses it; the routes (pods, the ECMP ClusterIP, the way back)
 * reach the daemons over XMPP. Any other traffic between the VNs is denied.
 *
 * It prints the XMPP sessions (each daemon's /api/control-sessions) and
 * learned routes (`vrouter rt --dump`), then checks, printing a ✓ or ✗ line
 * for each: pings within a VN on one node and across nodes, 20 HTTP
 * requests to the ClusterIP answered by both backends, and two denied
 * connections; then prints every daemon's counters (GET /stats). Everything
 * is removed at the end, also on failure and on Ctrl-C (the Topology's
 * handlers). Exit code 0 only when every check held.
 */
import { performance } from 'node:perf_hooks';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import type { NetworkConfigDocument } from '../src/control/node/network-config';
import { Topology, requireCommands } from '../test/support/netns';
import { DaemonStats, ProcessOutput, VrouterCluster } from '../test/support/vrouter-cluster';
import { networkFqns } from '../src/control/ifmap/names';

const CLUSTER_IP = '10.96.0.10';
const SERVICE_PORT = 80;
const TARGET_PORT = 8080;
const REQUESTS = 20;
const SETTLE_MS = 500;
const SERVICE = 'web';

/** The control node's configuration (docs/control-node.md). */
const NETWORK: NetworkConfigDocument = {
  vrouters: ['node0', 'node1'],
  vns: [
    { name: 'default', subnet: '10.32.0.0/24' },
    { name: 'frontend', subnet: '10.1.1.0/24', gateway: '10.1.1.1' },
    { name: 'backend', subnet: '10.2.2.0/24', gateway: '10.2.2.1' },
  ],
  services: [{ name: SERVICE, clusterIP: CLUSTER_IP, ports: [{ protocol: 'TCP', port: SERVICE_PORT, targetPort: TARGET_PORT }], selector: { app: 'web' } }],
};

const FRONTEND = { name: 'frontend', uses: SERVICE };
const BACKEND = { name: 'backend', app: 'web' };
const PODS = [
  { node: 0, name: 'fe-1', labels: FRONTEND },
  { node: 0, name: 'fe-2', labels: FRONTEND },
  { node: 0, name: 'be-1', labels: BACKEND },
  { node: 1, name: 'be-2', labels: BACKEND },
];

const GREEN = process.stdout.isTTY ? '\x1b[32m' : '';
const RED = process.stdout.isTTY ? '\x1b[31m' : '';
const BOLD = process.stdout.isTTY ? '\x1b[1m' : '';
const DIM = process.stdout.isTTY ? '\x1b[2m' : '';
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

function labelArguments(labels: Record<string, string>): string {
  return Object.entries(labels)
    .map(([key, value]) => `--label ${key}=${value}`)
    .join(' ');
}

/** The XMPP sessions as each daemon reports them, and the control node's view of who connected. */
async function showSessions(cluster: VrouterCluster): Promise<void> {
  section('XMPP sessions (GET /api/control-sessions on each node)');
  for (const node of cluster.nodes) {
    for (const session of await cluster.controlSessions(node.index)) {
      check(
        session.state === 'Established',
        `${node.name} (${node.underlayIp}) <-> ${session.peer}: ${session.state}, ${session.routesReceived} routes in the dataplane, ${session.staleRoutes} stale, ${session.routesSent} ports`,
      );
    }
  }
  const control = cluster.controlNode(0);
  const connected = fs
    .readFileSync(control.logFile, 'utf8')
    .split('\n')
    .filter((line) => / vrouter \S+ connected/.test(line));
  for (const line of connected) info(`${DIM}${control.name}: ${line.replace(/^\S+ info /, '')}${RESET}`);
}

/** A few learned routes, as `vrouter rt --dump <vrf>` prints them. */
async function showRoutes(cluster: VrouterCluster): Promise<void> {
  for (const [node, vrf, why] of [
    [0, 'frontend', 'the pods of frontend, and only the ClusterIP of backend: ECMP over be-1 (local) and be-2 (node1)'],
    [1, 'backend', "the pods of backend, and frontend's pods: the way back for the service's replies"],
  ] as const) {
    section(`Learned routes: vrouter rt --dump ${vrf} (node${node}; ${why})`);
    const text = await cluster.tool(node, ['rt', '--dump', networkFqns(vrf).routingInstance]);
    for (const line of text.trimEnd().split('\n')) info(line);
  }
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
  section(`Service ${SERVICE}: ClusterIP ${CLUSTER_IP}:${SERVICE_PORT} -> backends :${TARGET_PORT}`);
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
    { from: 'fe-1', host: CLUSTER_IP, port: SERVICE_PORT + 1, why: `frontend uses ${SERVICE} on port ${SERVICE_PORT} only` },
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
  console.log(
    `${BOLD}vrouter-ts demo${RESET}: a control node, 2 nodes, 4 pods added by labels into 2 VNs, 1 ClusterIP service; real processes, TAPs and traffic in network namespaces`,
  );

  const topology = new Topology();
  let cluster: VrouterCluster | undefined;
  try {
    section('Setup');
    cluster = await VrouterCluster.start(topology, { nodes: 2, control: { config: NETWORK }, logLevel: 'warn' });
    const control = cluster.controlNode(0);
    check(true, `control node ${control.name}: vrouter-control --listen ${control.endpoint} --api ${new URL(control.podApi).host} (VNs ${NETWORK.vns.map((vn) => `${vn.name} ${vn.subnet}`).join(', ')}; service ${SERVICE} ${CLUSTER_IP}:${SERVICE_PORT} -> ${TARGET_PORT}, selector app=web)`);
    check(true, `underlay and 2 vrouter daemons with --control ${control.endpoint}: ${cluster.nodes.map((node) => `node${node.index} ${node.underlayIp}`).join(', ')}`);
    await cluster.waitForSessions();
    for (const spec of PODS) {
      const pod = await cluster.addPod(spec.node, { name: spec.name, labels: spec.labels });
      check(true, `node${spec.node}: vrouter port add --id ${spec.name} ${labelArguments(spec.labels)} --control-api ${control.podApi} -> ${pod.ip} in ${pod.vn} (label ${pod.label})`);
    }
    // The last pieces travel over XMPP after the port adds: the ClusterIP's ECMP route and the way back.
    const running = cluster;
    await running.withLogs(async () => {
      await running.waitForRoute(0, networkFqns('frontend').routingInstance, `${CLUSTER_IP}/32`, (candidate) => (candidate?.members?.length ?? 0) >= 2, 5_000).catch(() => undefined);
      const route = await running.route(0, networkFqns('frontend').routingInstance, `${CLUSTER_IP}/32`);
      const hops = route === undefined ? [] : route.members ? route.members.map((member) => (member.label === null ? 'a local vif' : `label ${member.label}`)) : [`label ${route.label} to ${route.dip ?? 'a local vif'}`];
      check(
        hops.length === 2,
        `node0 learned ${CLUSTER_IP}/32 in frontend over XMPP: ${hops.length} next hop(s)${hops.length ? ` (${hops.join(', ')})` : ''}; expected ECMP over be-1 (label ${running.pod('be-1').label}, local) and be-2 (label ${running.pod('be-2').label}, node1)`,
      );
      await running.waitForRoute(1, networkFqns('backend').routingInstance, `${running.pod('fe-1').ip}/32`, undefined, 10_000);
    });
    for (const pod of PODS.filter((spec) => spec.labels === BACKEND)) {
      const server = new ProcessOutput(cluster.spawn(pod.name, nodeScript(SERVER, pod.name)));
      await server.waitFor(/listening/, 10_000, `${pod.name}'s HTTP server`);
    }
    check(true, `HTTP servers on ${PODS.filter((spec) => spec.labels === BACKEND).map((spec) => `${spec.name}:${TARGET_PORT}`).join(', ')}, answering their name`);

    await running.withLogs(async () => {
      await showSessions(running);
      await showRoutes(running);
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
    check(stopped, 'daemons and control node stopped on SIGTERM (TAPs and sockets closed)');
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
