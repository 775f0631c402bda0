/**
 * Traffic that measures a daemon restart (bench/restart.bench.ts,
 * test/restart.test.ts), run with node inside the pods' namespaces:
 *
 * - UDP at a fixed rate with a sequence number in each datagram; the
 *   receiver counts what arrived and the longest gap between two arrivals
 *   (the outage, at 10k pps resolution 0.1 ms).
 * - Long TCP connections (direct, and through a ClusterIP): the client
 *   writes numbered 1 KiB chunks every 5 ms, the server echoes, the client
 *   checks every echoed byte and notes the longest stall and any error
 *   (ECONNRESET is what a lost connection looks like).
 *
 * Each script prints one JSON line when done.
 */
import { ProcessOutput, VrouterCluster } from './vrouter-cluster';
import type { Topology } from './netns';
import { networkFqns } from '../../src/control/ifmap/names';

export interface UdpResult {
  received: number;
  /** Distinct sequence numbers seen (duplicates do not count). */
  distinct: number;
  longestGapMs: number;
}

export interface UdpSent {
  sent: number;
}

export interface TcpResult {
  sent: number;
  verified: number;
  longestStallMs: number;
  error: string | null;
  closedCleanly: boolean;
}

/** argv: port seconds. Counts sequence numbers until `seconds` pass after the first datagram. */
const UDP_RECEIVER = `
const [port, seconds] = process.argv.slice(1).map(Number);
const socket = require('dgram').createSocket('udp4');
const seen = new Uint8Array(1 << 24);
let received = 0, distinct = 0, last = 0, longest = 0, first = 0;
const now = () => Number(process.hrtime.bigint()) / 1e6;
socket.on('message', (message) => {
  const t = now();
  if (received === 0) { first = t; setTimeout(finish, seconds * 1000); }
  else if (t - last > longest) longest = t - last;
  last = t;
  received++;
  const sequence = message.readUInt32BE(0) & 0xffffff;
  if (!seen[sequence]) { seen[sequence] = 1; distinct++; }
});
socket.bind(port, () => console.log('listening'));
function finish() { console.log(JSON.stringify({ received, distinct, longestGapMs: longest })); process.exit(0); }`;

/** argv: host port pps seconds. Sends pps datagrams a second (catching up each millisecond tick), then prints how many. */
const UDP_SENDER = `
const [host, port, pps, seconds] = process.argv.slice(1);
const socket = require('dgram').createSocket('udp4');
const total = Number(pps) * Number(seconds);
let sent = 0;
const start = process.hrtime.bigint();
function tick() {
  const due = Math.min(total, Math.floor(Number(process.hrtime.bigint() - start) / 1e9 * Number(pps)));
  // A buffer per datagram: send() reads it later, after the loop.
  while (sent < due) { const payload = Buffer.alloc(64); payload.writeUInt32BE(sent, 0); socket.send(payload, Number(port), host); sent++; }
  if (sent < total) setTimeout(tick, 1);
  else setTimeout(() => { console.log(JSON.stringify({ sent })); process.exit(0); }, 200);
}
tick();`;

/** argv: port. Echoes every connection. */
const TCP_ECHO = `
const [port] = process.argv.slice(1).map(Number);
require('net').createServer((socket) => { socket.pipe(socket); socket.on('error', () => {}); }).listen(port, '0.0.0.0', () => console.log('listening'));`;

/** argv: host port seconds. Streams numbered chunks, checks the echo, ends cleanly after seconds. */
const TCP_CLIENT = `
const [host, port, seconds] = process.argv.slice(1);
const CHUNK = 1024;
const socket = require('net').connect({ host, port: Number(port) });
let sent = 0, verified = 0, error = null, longest = 0, lastData = 0, writer, done = false;
const now = () => Number(process.hrtime.bigint()) / 1e6;
const byteAt = (offset) => (offset * 7 + (offset >>> 10)) & 0xff;
socket.on('connect', () => {
  console.log('connected');
  lastData = now();
  writer = setInterval(() => {
    const chunk = Buffer.alloc(CHUNK);
    for (let i = 0; i < CHUNK; i++) chunk[i] = byteAt(sent + i);
    socket.write(chunk);
    sent += CHUNK;
  }, 5);
  setTimeout(() => { clearInterval(writer); socket.end(); }, Number(seconds) * 1000);
});
socket.on('data', (data) => {
  const t = now();
  if (t - lastData > longest) longest = t - lastData;
  lastData = t;
  for (let i = 0; i < data.length; i++, verified++) {
    if (data[i] !== byteAt(verified)) { error = 'echo differs at byte ' + verified; socket.destroy(); return; }
  }
});
socket.on('error', (failure) => { error = failure.code || failure.message; });
socket.on('close', () => {
  if (done) return;
  done = true;
  clearInterval(writer);
  console.log(JSON.stringify({ sent, verified, longestStallMs: longest, error, closedCleanly: error === null && verified === sent }));
  process.exit(0);
});`;

function lastJson<T>(output: ProcessOutput, what: string): T {
  const line = output.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as T;
  } catch {
    throw new Error(`${what} printed no result: stdout ${output.stdout.slice(-500)} stderr ${output.stderr.slice(-500)}`);
  }
}

/** A running measurement; finish() waits for every script's result. */
export interface RestartTraffic {
  finish(): Promise<{ udp: UdpResult; udpSent: UdpSent; tcp: Record<string, TcpResult> }>;
}

/**
 * Starts the receiver and echo servers in `server`'s pod, then UDP at pps
 * and one TCP client per target from `client`'s pod, for `seconds`.
 * targets: name -> host:port of an echo server (the server pod's own
 * address, or a ClusterIP mapped to it); echoPorts: ports to serve on.
 */
export async function startRestartTraffic(
  cluster: VrouterCluster,
  options: { client: string; server: string; udpPort: number; pps: number; seconds: number; echoPorts: number[]; targets: Record<string, { host: string; port: number }> },
): Promise<RestartTraffic> {
  const node = process.execPath;
  const server = cluster.pod(options.server);
  const receiver = new ProcessOutput(cluster.spawn(options.server, [node, '-e', UDP_RECEIVER, String(options.udpPort), String(options.seconds + 1)]));
  const echoes = options.echoPorts.map((port) => new ProcessOutput(cluster.spawn(options.server, [node, '-e', TCP_ECHO, String(port)])));
  await receiver.waitFor(/listening/, 10_000, 'the UDP receiver listening');
  for (const echo of echoes) await echo.waitFor(/listening/, 10_000, 'a TCP echo server listening');
  const clients = Object.entries(options.targets).map(
    ([name, target]) => [name, new ProcessOutput(cluster.spawn(options.client, [node, '-e', TCP_CLIENT, target.host, String(target.port), String(options.seconds)]))] as const,
  );
  for (const [name, client] of clients) await client.waitFor(/connected/, 10_000, `TCP client ${name} connected`);
  const sender = new ProcessOutput(cluster.spawn(options.client, [node, '-e', UDP_SENDER, server.ip, String(options.udpPort), String(options.pps), String(options.seconds)]));
  return {
    async finish() {
      const waitMs = (options.seconds + 30) * 1000;
      await sender.waitFor(/"sent"/, waitMs, 'the UDP sender finishing');
      await receiver.waitFor(/"received"/, waitMs, 'the UDP receiver finishing');
      const tcp: Record<string, TcpResult> = {};
      for (const [name, client] of clients) {
        await client.waitFor(/"verified"/, waitMs, `TCP client ${name} finishing`);
        tcp[name] = lastJson<TcpResult>(client, `TCP client ${name}`);
      }
      for (const echo of echoes) echo.child.kill();
      return { udp: lastJson<UdpResult>(receiver, 'the UDP receiver'), udpSent: lastJson<UdpSent>(sender, 'the UDP sender'), tcp };
    },
  };
}

/** The ClusterIP of the restart cases (pod b behind it, port 80 -> 8080). */
export const RESTART_CLUSTER_IP = '10.96.0.10';
/** Control mode names VRFs by the VN's routing-instance FQN. */
export const WEB_VRF = networkFqns('web').routingInstance;

/**
 * Two restartable nodes under one control node: pod a on node0, pod b (the
 * backend of RESTART_CLUSTER_IP) on node1, both in VN web, with every route
 * in place.
 */
export async function startControlledRestartCluster(topology: Topology, tag?: string): Promise<VrouterCluster> {
  const cluster = await VrouterCluster.start(topology, {
    nodes: 2,
    ...(tag === undefined ? {} : { tag }),
    restartable: true,
    control: {
      config: {
        holdTime: 30,
        // A vrouter whose session drops without a stream close keeps its routes and ports this long.
        gracefulRestartTime: 60,
        vrouters: ['node0', 'node1'],
        vns: [
          { name: 'default', subnet: '10.32.0.0/24' },
          { name: 'web', subnet: '10.1.1.0/24', gateway: '10.1.1.1' },
        ],
        services: [{ name: 'websvc', clusterIP: RESTART_CLUSTER_IP, ports: [{ protocol: 'TCP', port: 80, targetPort: 8080 }], selector: { app: 'web' } }],
      },
    },
  });
  await cluster.waitForSessions();
  await cluster.addPod(0, { name: 'a', labels: { name: 'web' } });
  await cluster.addPod(1, { name: 'b', labels: { name: 'web', app: 'web' } });
  await cluster.waitForRoute(0, WEB_VRF, `${cluster.pod('b').ip}/32`);
  await cluster.waitForRoute(0, WEB_VRF, `${RESTART_CLUSTER_IP}/32`);
  await cluster.waitForRoute(1, WEB_VRF, `${cluster.pod('a').ip}/32`);
  return cluster;
}

/**
 * argv: control-api-url daemon-api-url vrouter first count concurrency. Registers
 * pods p<first>..p<first+count-1> (label name=web) at the control node's pod
 * API and adds each as a port (a TAP in the node's namespace) at the
 * daemon's port API, `concurrency` at a time; prints { registered, ms }.
 */
const BULK_PODS = `
const [controlApi, daemonApi, vrouter, first, count, concurrency] = process.argv.slice(1);
// A connection per request (agent: false): a kept-alive one the server closes while idle fails the next request.
const post = (url, body) => new Promise((resolve, reject) => {
  const request = require('http').request(url, { method: 'POST', agent: false, headers: { 'content-type': 'application/json' } }, (response) => {
    let text = '';
    response.on('data', (chunk) => (text += chunk));
    response.on('end', () => (response.statusCode < 300 ? resolve() : reject(new Error(url + ' ' + response.statusCode + ' ' + text))));
  });
  request.on('error', (error) => reject(new Error(url + ': ' + error.message)));
  request.end(JSON.stringify(body));
});
const started = Date.now();
let next = Number(first), registered = 0;
const end = Number(first) + Number(count);
async function lane() {
  while (next < end) {
    const id = 'p' + next++;
    await post(controlApi + '/pods', { vrouter, vmUuid: id, vmiUuid: id, name: id, namespace: 'default', labels: { name: 'web' } });
    await post(daemonApi + '/port', { id, name: id, labels: { name: 'web' } });
    registered++;
  }
}
Promise.all(Array.from({ length: Number(concurrency) }, lane)).then(
  () => console.log(JSON.stringify({ registered, ms: Date.now() - started })),
  (error) => { console.error(error.message); process.exit(1); },
);`;

/**
 * argv: introspect vrf seconds. Polls the daemon's routes of vrf and its
 * control sessions every 100 ms: the prefixes of the first sample are the
 * baseline; prints the most of them missing from any later sample, those
 * missing at the end, and when (epoch ms) the sessions were last seen down
 * and then Established with no stale route.
 */
const ROUTE_WATCH = `
const [introspect, vrf, seconds] = process.argv.slice(1);
const get = (path) => new Promise((resolve, reject) => {
  require('http').get('http://' + introspect + path, { agent: false }, (response) => {
    let text = '';
    response.on('data', (chunk) => (text += chunk));
    response.on('end', () => { try { resolve(JSON.parse(text)); } catch (error) { reject(error); } });
  }).on('error', reject);
});
const until = Date.now() + Number(seconds) * 1000;
let baseline = null, mostMissing = 0, missingNow = 0, samples = 0, downAt = null, syncedAt = null, failures = 0;
(async () => {
  while (Date.now() < until) {
    try {
      const [table, sessions] = await Promise.all([get('/api/routes?vrf=' + encodeURIComponent(vrf)), get('/api/control-sessions')]);
      const prefixes = new Set(table.routes.map((route) => route.prefix));
      if (baseline === null) baseline = prefixes;
      missingNow = 0;
      for (const prefix of baseline) if (!prefixes.has(prefix)) missingNow++;
      mostMissing = Math.max(mostMissing, missingNow);
      const up = sessions.length > 0 && sessions.every((session) => session.state === 'Established');
      if (!up) { downAt = Date.now(); syncedAt = null; }
      else if (downAt !== null && syncedAt === null && sessions.every((session) => session.staleRoutes === 0)) syncedAt = Date.now();
      samples++;
    } catch { failures++; }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  console.log(JSON.stringify({ baseline: baseline ? baseline.size : 0, mostMissing, missingNow, samples, failures, downAt, syncedAt }));
})();`;

export interface RouteWatch {
  baseline: number;
  mostMissing: number;
  missingNow: number;
  samples: number;
  failures: number;
  downAt: number | null;
  syncedAt: number | null;
}

/**
 * Registers `perNode` pods on each node (through the first control node's
 * pod API and each daemon's port API, from inside the node's namespace) and
 * waits until every node has a route to every pod in WEB_VRF.
 */
export async function registerManyPods(cluster: VrouterCluster, topology: Topology, perNode: number): Promise<{ ms: number }> {
  const started = Date.now();
  const control = cluster.controlNodes[0];
  await Promise.all(
    cluster.nodes.map(async (node, index) => {
      const output = await topology.exec(node.ns, [process.execPath, '-e', BULK_PODS, control.podApi, `http://${node.api}`, node.name, String(index * perNode), String(perNode), '8'], { timeoutMs: 600_000 });
      const registered = (JSON.parse(output.trim().split('\n').pop()!) as { registered: number }).registered;
      if (registered !== perNode) throw new Error(`${node.name}: ${registered} of ${perNode} pods registered`);
    }),
  );
  const registrations = cluster.nodes.flatMap((node, index) =>
    Array.from({ length: perNode }, (_, i) => {
      const id = `p${index * perNode + i}`;
      return { vrouter: node.name, vmUuid: id, vmiUuid: id, name: id, namespace: 'default', labels: { name: 'web' } };
    }),
  );
  cluster.adoptRegistrations(registrations);
  const total = perNode * cluster.nodes.length;
  for (const node of cluster.nodes) {
    const deadline = Date.now() + 120_000;
    while (((await cluster.routes(node.index, WEB_VRF))?.routes.length ?? 0) < total) {
      if (Date.now() > deadline) throw new Error(`${node.name}: not every pod's route arrived`);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
  return { ms: Date.now() - started };
}

/** Starts a ROUTE_WATCH in each node's namespace for `seconds`; finish() waits for their results. */
export function watchRoutes(cluster: VrouterCluster, topology: Topology, seconds: number): { finish(): Promise<RouteWatch[]> } {
  const watches = cluster.nodes.map((node) => topology.exec(node.ns, [process.execPath, '-e', ROUTE_WATCH, node.introspect, WEB_VRF, String(seconds)], { timeoutMs: (seconds + 60) * 1000 }));
  return {
    async finish() {
      return (await Promise.all(watches)).map((output) => JSON.parse(output.trim().split('\n').pop()!) as RouteWatch);
    },
  };
}

/**
 * Two vrouters under one control node that knows both (it sends End-of-RIB
 * as soon as both are back after its restart), VN web large enough for
 * 1,000 pods.
 */
export async function startControlRestartCluster(topology: Topology): Promise<VrouterCluster> {
  const cluster = await VrouterCluster.start(topology, {
    nodes: 2,
    tag: 'ctlrst',
    restartable: true,
    control: {
      config: {
        holdTime: 30,
        gracefulRestartTime: 60,
        vrouters: ['node0', 'node1'],
        vns: [
          { name: 'default', subnet: '10.32.0.0/24' },
          { name: 'web', subnet: '10.1.0.0/20', gateway: '10.1.0.1' },
        ],
      },
    },
  });
  await cluster.waitForSessions();
  return cluster;
}
