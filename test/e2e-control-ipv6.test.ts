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
import type { NetworkConfigDocument } from '../src/control/node/network-config';
import { networkFqns } from '../src/control/ifmap/names';
import { Topology, requireCommands } from './support/netns';
import { assertTcpThroughClusterIp, defaultRouteByRa, tcpTransfer } from './support/ipv6-pods';
import { VrouterCluster } from './support/vrouter-cluster';

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
      const result = await tcpTransfer(cluster, { server: 'b1', listenPort: 5001, client: 'a1', host: B1.ip6, port: 5001, bytes: 1 << 20 });
      assert.deepEqual([result.reply.bytes, result.reply.sha256, result.reply.peer], [1 << 20, result.sha256, A1.ip6]);
      assert.deepEqual(result.serverExit, { code: 0, signal: null });
    }));

  test('TCP through the IPv6 ClusterIP: DNAT to b1 port 8080 on its node, replies from the ClusterIP', () =>
    cluster.withLogs(async () => {
      await defaultRouteByRa(cluster, 'a1');
      await assertTcpThroughClusterIp(cluster, { client: A1, backend: B1, clusterIp6: CLUSTER_IP6, port: 80, targetPort: 8080, bytes: 64 * 1024 });
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
