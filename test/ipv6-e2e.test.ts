/**
 * End to end over IPv6: real `vrouter run` daemons in network namespaces,
 * dual-stack pods whose Linux stacks learn their default router from the
 * vrouter's router advertisement and resolve it (and each other) through its
 * neighbour discovery proxy, then ping6 and TCP across nodes over MPLS over
 * UDP (IPv4 underlay, tshark decoding IPv6 inside), and TCP through an IPv6
 * ClusterIP (DNAT/SNAT on the backend's node).
 *
 *   node0: a1 10.1.1.3 fd00:1:1::3                  vn1 10.1.1.0/24 fd00:1:1::/64
 *   node1: b1 10.1.1.5 fd00:1:1::5, backs fd00:96::10 tcp 80 -> 8080
 *
 * Needs root and iproute2, iputils-ping, tshark. Every namespace and process
 * goes with the topology, also on failure.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { Topology, requireCommands } from './support/netns';
import { assertTcpThroughClusterIp, defaultRouteByRa, tcpTransfer } from './support/ipv6-pods';
import { VrouterCluster } from './support/vrouter-cluster';

if (process.getuid?.() !== 0) throw new Error('the e2e tests need root (network namespaces, TAP devices, raw sockets): run them as root, as .ci/run does');
requireCommands({ ip: 'iproute2', ping: 'iputils-ping', tshark: 'tshark' });

const VNS = [{ name: 'vn1', subnet: '10.1.1.0/24', gateway: '10.1.1.1', subnet6: 'fd00:1:1::/64', gateway6: 'fd00:1:1::1' }];
const A1 = { name: 'a1', vn: 'vn1', ip: '10.1.1.3', ip6: 'fd00:1:1::3', label: 20 };
const CLUSTER_IP6 = 'fd00:96::10';
const VROUTER_BIN = path.resolve(__dirname, '..', '..', 'bin', 'vrouter.js');
const B1 = {
  name: 'b1',
  vn: 'vn1',
  ip: '10.1.1.5',
  ip6: 'fd00:1:1::5',
  label: 30,
  floatingIps: [{ ip: CLUSTER_IP6, portMap: [{ protocol: 'tcp' as const, port: 80, targetPort: 8080 }] }],
};

describe('vrouter daemons, IPv6 pods on two nodes', { timeout: 150_000 }, () => {
  let topology: Topology;
  let cluster: VrouterCluster;

  before(async () => {
    topology = new Topology();
    cluster = await VrouterCluster.start(topology, { nodes: 2, vns: VNS, underlayMtu: 1500 });
    await cluster.withLogs(async () => {
      await cluster.addPod(0, A1);
      await cluster.addPod(1, B1);
      await cluster.setRoute(0, 'vn1', `${CLUSTER_IP6}/128`, [cluster.nexthopTo('b1')], { vn: 'vn1' });
    });
  });

  after(async () => {
    try {
      await cluster?.stop();
    } finally {
      await topology?.destroy();
    }
  });

  test('the pods learn their default router from the router advertisement: fe80::5e00:100', () =>
    cluster.withLogs(async () => {
      for (const pod of ['a1', 'b1']) assert.match(await defaultRouteByRa(cluster, pod), /^default via fe80::5e00:100 dev eth0 proto ra/);
    }));

  test('ping6 across nodes: MPLS over UDP on the IPv4 underlay, IPv6 inside, labels of the destination pods', () =>
    cluster.withLogs(async () => {
      await defaultRouteByRa(cluster, 'a1');
      const capture = await cluster.capture({ node: 0 }, 'underlay', 'udp port 6635', ['mpls.label', 'ip.dst', 'ipv6.dst', 'icmpv6.type']);
      const result = await cluster.tryExec('a1', ['ping', '-6', '-n', '-c', '3', '-i', '0.2', '-W', '2', B1.ip6]);
      const rows = await capture.stop();
      assert.equal(result.code, 0, `ping -6 a1 -> b1 failed:\n${result.stdout}${result.stderr}\ntunnel packets:\n${rows.map((row) => row.join(' ')).join('\n')}`);
      assert.match(result.stdout, /3 packets transmitted, 3 received/);
      const requests = rows.filter((row) => row[3] === '128');
      const replies = rows.filter((row) => row[3] === '129');
      assert.ok(requests.length >= 3 && replies.length >= 3, `echo requests and replies in the tunnel:\n${rows.map((row) => row.join(' ')).join('\n')}`);
      for (const row of requests) assert.deepEqual([row[0], row[1], row[2]], [String(B1.label), cluster.nodes[1].underlayIp, B1.ip6]);
      for (const row of replies) assert.deepEqual([row[0], row[1], row[2]], [String(A1.label), cluster.nodes[0].underlayIp, A1.ip6]);
      // The pods resolved each other and the router through the proxy: every neighbour is the vrouter MAC.
      const neighbours = await cluster.exec('a1', ['ip', '-6', 'neigh', 'show', 'dev', 'eth0']);
      assert.match(neighbours, /fe80::5e00:100 lladdr 00:00:5e:00:01:00 router/);
    }));

  test('TCP over IPv6 across nodes: 1 MB arrives intact, the server sees the client pod', () =>
    cluster.withLogs(async () => {
      await defaultRouteByRa(cluster, 'a1');
      const result = await tcpTransfer(cluster, { server: 'b1', listenPort: 5001, client: 'a1', host: B1.ip6, port: 5001, bytes: 1 << 20 });
      assert.equal(result.reply.bytes, 1 << 20);
      assert.equal(result.reply.sha256, result.sha256);
      assert.equal(result.reply.peer, A1.ip6);
      assert.deepEqual(result.serverExit, { code: 0, signal: null });
    }));

  test('TCP and ping6 through the IPv6 ClusterIP: DNAT to b1 (port 8080), replies from the ClusterIP; flow -l shows the pair', () =>
    cluster.withLogs(async () => {
      await defaultRouteByRa(cluster, 'a1');
      await assertTcpThroughClusterIp(cluster, { client: A1, backend: B1, clusterIp6: CLUSTER_IP6, port: 80, targetPort: 8080, bytes: 64 * 1024 });
      // ping6 to the ClusterIP is answered by b1 as the ClusterIP; flow -l on b1's node lists its DNAT pair.
      const ping = await cluster.tryExec('a1', ['ping', '-6', '-n', '-c', '2', '-i', '0.2', '-W', '2', CLUSTER_IP6]);
      assert.equal(ping.code, 0, `ping -6 a1 -> ${CLUSTER_IP6} failed:\n${ping.stdout}${ping.stderr}`);
      assert.match(ping.stdout, new RegExp(`from ${CLUSTER_IP6.replace(/\./g, '\\.')}: icmp_seq=1`));
      const flows = JSON.parse(await cluster.execNode(1, [process.execPath, VROUTER_BIN, 'flow', '-l', '--match', `${CLUSTER_IP6} & proto icmp6`, '--json'])) as {
        flows: Array<{ nat: string[]; src: string; dst: string }>;
      };
      assert.ok(
        flows.flows.some((flow) => flow.src === A1.ip6 && flow.dst === CLUSTER_IP6 && flow.nat.includes('dnat')),
        `a DNAT pair for the ClusterIP on b1's node: ${JSON.stringify(flows)}`,
      );
      const text = await cluster.execNode(1, [process.execPath, VROUTER_BIN, 'flow', '-l', '--match', `${CLUSTER_IP6} & proto icmp6`]);
      assert.match(text, /\[fd00:1:1::3\]:\d+ +58 \(1\)\n +\[fd00:96::10\]:\d+\n\(K\(nh\):\d+, Action:N\(D\)/);
    }));

  test('ICMPv6 errors reach the pod from the gateway: time exceeded for hop limit 1, no route once b1 is gone', () =>
    cluster.withLogs(async () => {
      await defaultRouteByRa(cluster, 'a1');
      const expired = await cluster.tryExec('a1', ['ping', '-6', '-n', '-c', '1', '-t', '1', '-W', '2', B1.ip6]);
      assert.match(expired.stdout, /From fd00:1:1::1 icmp_seq=1 Time exceeded: Hop limit/, expired.stdout);
      await cluster.deletePod('b1');
      const unreachable = await cluster.tryExec('a1', ['ping', '-6', '-n', '-c', '1', '-W', '2', B1.ip6]);
      assert.match(unreachable.stdout, /From fd00:1:1::1 icmp_seq=1 Destination unreachable: No route/, unreachable.stdout);
      const routes = JSON.parse(await cluster.execNode(0, [process.execPath, VROUTER_BIN, 'rt', '--dump', 'vn1', '--family', 'inet6', '--json'])) as { routes: Array<{ prefix: string }> };
      assert.deepEqual(routes.routes.map((route) => route.prefix).sort(), [`${A1.ip6}/128`, `${CLUSTER_IP6}/128`], "b1's /128 withdrawn, a1's and the ClusterIP's left");
    }));
});
