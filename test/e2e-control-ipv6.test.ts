/**
 * End to end over IPv6 with the control plane: a real `vrouter-control`
 * process and two real `vrouter run --control` daemons in network
 * namespaces. The harness programs no route: the control node gives each pod
 * of the dual-stack VN an IPv6 address (IF-MAP: a v6 instance-ip and the
 * VN's IPv6 ipam subnet), each node publishes it as an inet6 route
 * (`2/1/<instance>` items) and the other node programs the one the control
 * node reflects; the IPv6 ClusterIP of a dual-stack service is a v6
 * floating IP of its backend, published as inet6 and DNATed at the backend.
 *
 *   node0: a1 (web)                      web 10.1.1.0/24 and fd00:1:1::/64 (gateway fd00:1:1::1)
 *   node1: b1 (web, app=web6), backs websvc [10.96.0.10, fd00:96::10] tcp 80 -> 8080
 *
 * The pods' IPv6 addresses are what the control node allocates in order
 * (fd00:1:1::2, ::3: the test checks its pod API says so); the harness sets
 * them on the pods' interfaces, whose default route comes by router
 * advertisement. Needs root and iproute2, iputils-ping.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NetworkConfigDocument } from '../src/control/node/network-config';
import { networkFqns } from '../src/control/ifmap/names';
import { Topology, requireCommands } from './support/netns';
import { ProcessOutput, VrouterCluster } from './support/vrouter-cluster';

if (process.getuid?.() !== 0) throw new Error('the e2e tests need root (network namespaces, TAP devices, raw sockets): run them as root, as .ci/run does');
requireCommands({ ip: 'iproute2', ping: 'iputils-ping' });

const WEB_VRF = networkFqns('web').routingInstance;
const CLUSTER_IP6 = 'fd00:96::10';
const CONFIG: NetworkConfigDocument = {
  holdTime: 30,
  restartConvergenceTime: 0,
  vrouters: ['node0', 'node1'],
  vns: [
    { name: 'default', subnet: '10.32.0.0/24' },
    { name: 'web', subnet: '10.1.1.0/24', gateway: '10.1.1.1', subnet6: 'fd00:1:1::/64', gateway6: 'fd00:1:1::1' },
  ],
  services: [{ name: 'websvc', clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.10', CLUSTER_IP6], ports: [{ protocol: 'TCP', port: 80, targetPort: 8080 }], selector: { app: 'web6' } }],
};
const A1 = { name: 'a1', labels: { name: 'web' }, ip6: 'fd00:1:1::2' };
const B1 = { name: 'b1', labels: { name: 'web', app: 'web6' }, ip6: 'fd00:1:1::3' };

const TCP_SERVER = (port: number) => `const net = require('net'), crypto = require('crypto');
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    const hash = crypto.createHash('sha256'); let bytes = 0;
    socket.on('data', (chunk) => { hash.update(chunk); bytes += chunk.length; });
    socket.on('end', () => {
      const line = JSON.stringify({ sha256: hash.digest('hex'), bytes, peer: socket.remoteAddress, local: socket.localAddress, localPort: socket.localPort });
      socket.end(line); server.close();
    });
  });
  server.listen(${port}, '::', () => console.log('listening'));`;

const TCP_CLIENT = (host: string, port: number, bytes: number) => `const net = require('net'), crypto = require('crypto');
  const data = crypto.randomBytes(${bytes});
  let remote = null;
  const socket = net.connect({ host: '${host}', port: ${port}, allowHalfOpen: true }, () => { remote = socket.remoteAddress; socket.end(data); });
  let reply = '';
  socket.setEncoding('utf8');
  socket.on('data', (text) => (reply += text));
  socket.on('end', () => console.log(JSON.stringify({ sha256: crypto.createHash('sha256').update(data).digest('hex'), bytes: data.length, remote, reply: JSON.parse(reply) })));
  socket.on('error', (error) => { console.error(error.message); process.exit(1); });`;

interface Route6 {
  prefix: string;
  kind: string | null;
  label: number | null;
  members?: unknown[];
}

/** The node's inet6 routes of the web VRF, from its introspect API. */
async function routes6(cluster: VrouterCluster, node: number): Promise<Route6[]> {
  const table = await cluster.introspect<{ routes: Route6[] }>(node, `/api/routes?vrf=${encodeURIComponent(WEB_VRF)}&family=inet6`);
  return table.routes;
}

/** Waits until the pod has a default route learned by router advertisement. */
async function defaultRouteByRa(cluster: VrouterCluster, pod: string): Promise<string> {
  let shown = '';
  for (let attempt = 0; attempt < 100; attempt++) {
    shown = (await cluster.exec(pod, ['ip', '-6', 'route', 'show', 'default'])).trim();
    if (/proto ra/.test(shown)) return shown;
    await sleep(200);
  }
  throw new Error(`${pod}: no default route from a router advertisement after 20 s (ip -6 route show default: ${JSON.stringify(shown)})`);
}

describe('control plane, IPv6: dual-stack pods on two nodes, routes over XMPP inet6', { timeout: 180_000 }, () => {
  let topology: Topology;
  let cluster: VrouterCluster;

  before(async () => {
    topology = new Topology();
    cluster = await VrouterCluster.start(topology, { nodes: 2, control: { config: CONFIG } });
    await cluster.withLogs(async () => {
      await cluster.waitForSessions();
      await cluster.addPod(0, A1);
      await cluster.addPod(1, B1);
    });
  });

  after(async () => {
    try {
      await cluster?.stop();
    } finally {
      await topology?.destroy();
    }
  });

  test("the control node gave each pod an IPv6 address of the VN's subnet6; each node programs the other's /128 and the ClusterIP's from inet6 pushes", () =>
    cluster.withLogs(async () => {
      const control = cluster.controlNodes[0];
      const pods = (await cluster.apiRequest(0, 'GET', '/pods', undefined, `${control.address}:${new URL(control.podApi).port}`)).body as Array<{ name: string; ip6?: string }>;
      assert.deepEqual(Object.fromEntries(pods.map((pod) => [pod.name, pod.ip6])), { a1: A1.ip6, b1: B1.ip6 });
      await cluster.waitUntil(
        async () => {
          const prefixes = (await routes6(cluster, 0)).map((route) => route.prefix);
          return [`${A1.ip6}/128`, `${B1.ip6}/128`, `${CLUSTER_IP6}/128`].every((prefix) => prefixes.includes(prefix));
        },
        15_000,
        () => `node0's inet6 routes of ${WEB_VRF} with a1, b1 and the ClusterIP`,
      );
      const node0 = new Map((await routes6(cluster, 0)).map((route) => [route.prefix, route]));
      assert.deepEqual([node0.get(`${B1.ip6}/128`)?.kind, node0.get(`${B1.ip6}/128`)?.label], ['tunnel', cluster.pod('b1').label]);
      assert.equal(node0.get(`${A1.ip6}/128`)?.kind, 'encap', "a1's own route leads to its vif");
      await cluster.waitUntil(async () => (await routes6(cluster, 1)).some((route) => route.prefix === `${A1.ip6}/128` && route.kind === 'tunnel'), 15_000, () => `node1's route to ${A1.ip6}`);
    }));

  test('ping6 and a TCP transfer over IPv6 between the pods on two nodes', () =>
    cluster.withLogs(async () => {
      for (const pod of ['a1', 'b1']) assert.match(await defaultRouteByRa(cluster, pod), /^default via fe80::5e00:100 dev eth0 proto ra/);
      const ping = await cluster.tryExec('a1', ['ping', '-6', '-n', '-c', '3', '-i', '0.2', '-W', '2', B1.ip6]);
      assert.equal(ping.code, 0, `ping -6 a1 -> b1 failed:\n${ping.stdout}${ping.stderr}`);
      assert.match(ping.stdout, /3 packets transmitted, 3 received/);
      const server = new ProcessOutput(cluster.spawn('b1', [process.execPath, '-e', TCP_SERVER(5001)]));
      await server.waitFor(/listening/, 10_000, 'the TCP server listening');
      const result = JSON.parse(await cluster.exec('a1', [process.execPath, '-e', TCP_CLIENT(B1.ip6, 5001, 1 << 20)], { timeoutMs: 60_000 })) as {
        sha256: string;
        reply: { sha256: string; bytes: number; peer: string };
      };
      assert.deepEqual([result.reply.bytes, result.reply.sha256, result.reply.peer], [1 << 20, result.sha256, A1.ip6]);
      assert.deepEqual(await server.exited, { code: 0, signal: null });
    }));

  test('TCP through the IPv6 ClusterIP: DNAT to b1 port 8080 on its node, replies from the ClusterIP', () =>
    cluster.withLogs(async () => {
      await defaultRouteByRa(cluster, 'a1');
      const server = new ProcessOutput(cluster.spawn('b1', [process.execPath, '-e', TCP_SERVER(8080)]));
      await server.waitFor(/listening/, 10_000, 'the TCP server listening');
      const result = JSON.parse(await cluster.exec('a1', [process.execPath, '-e', TCP_CLIENT(CLUSTER_IP6, 80, 64 * 1024)], { timeoutMs: 60_000 })) as {
        sha256: string;
        remote: string;
        reply: { sha256: string; peer: string; local: string; localPort: number };
      };
      assert.equal(result.reply.sha256, result.sha256);
      assert.equal(result.remote, CLUSTER_IP6, 'the client talks to the ClusterIP');
      assert.deepEqual([result.reply.peer, result.reply.local, result.reply.localPort], [A1.ip6, B1.ip6, 8080], 'the backend sees the client, at its own address and port');
      assert.deepEqual(await server.exited, { code: 0, signal: null });
    }));

  test("a deleted pod's inet6 route is withdrawn on the other node", () =>
    cluster.withLogs(async () => {
      await cluster.deletePod('b1');
      await cluster.waitUntil(
        async () => !(await routes6(cluster, 0)).some((route) => route.prefix === `${B1.ip6}/128` || route.prefix === `${CLUSTER_IP6}/128`),
        15_000,
        () => `node0 without ${B1.ip6}/128 and ${CLUSTER_IP6}/128`,
      );
    }));
});
