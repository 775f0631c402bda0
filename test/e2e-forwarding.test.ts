/**
 * End to end: real `vrouter run` daemons in network namespaces, traffic from
 * the pods' Linux stacks (ping, TCP), the underlay watched with tshark.
 *
 *   node0: a1 10.1.1.3 (label 20), a2 10.1.1.4 (label 21)     vn1 10.1.1.0/24
 *   node1: b1 10.1.1.5 (label 30)                             vn1
 *          c1 10.2.2.3 (label 31)                             vn2 10.2.2.0/24 (no policy)
 *   MPLS over UDP (encapPriority udp, gre), underlay MTU 1500, pods 1468.
 *
 * A second cluster with encapPriority [gre, udp] checks MPLS over GRE.
 * Needs root and iproute2, iputils-ping, tshark; a missing one fails the file
 * naming it. Every namespace and process goes with the topologies, also on
 * failure; a failing test carries every daemon's log.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Topology, requireCommands } from './support/netns';
import { OVERLAY_OVERHEAD, ProcessOutput, VrouterCluster } from './support/vrouter-cluster';

if (process.getuid?.() !== 0) throw new Error('the e2e tests need root (network namespaces, TAP devices, raw sockets): run them as root, as .ci/run does');
requireCommands({ ip: 'iproute2', ping: 'iputils-ping', tshark: 'tshark', sysctl: 'procps' });

const UNDERLAY_MTU = 1500;
const VNS = [
  { name: 'vn1', subnet: '10.1.1.0/24', gateway: '10.1.1.1' },
  { name: 'vn2', subnet: '10.2.2.0/24', gateway: '10.2.2.1' },
];
const A1 = { name: 'a1', vn: 'vn1', ip: '10.1.1.3', label: 20 };
const A2 = { name: 'a2', vn: 'vn1', ip: '10.1.1.4', label: 21 };
const B1 = { name: 'b1', vn: 'vn1', ip: '10.1.1.5', label: 30 };
const C1 = { name: 'c1', vn: 'vn2', ip: '10.2.2.3', label: 31 };
const TEN_MB = 10 * 1024 * 1024;

/** `ping` that must get every reply; the failure names what ping printed. */
async function pingOk(cluster: VrouterCluster, from: string, to: string, count = 3): Promise<void> {
  const result = await cluster.tryExec(from, ['ping', '-n', '-c', String(count), '-i', '0.2', '-W', '2', to]);
  assert.equal(result.code, 0, `ping ${from} -> ${to} failed:\n${result.stdout}${result.stderr}`);
  assert.match(result.stdout, new RegExp(`${count} packets transmitted, ${count} received`));
}

/** `ping` that must get no reply at all. */
async function pingFails(cluster: VrouterCluster, from: string, to: string): Promise<string> {
  const result = await cluster.tryExec(from, ['ping', '-n', '-c', '3', '-i', '0.2', '-W', '1', to]);
  assert.notEqual(result.code, 0, `ping ${from} -> ${to} should fail but got:\n${result.stdout}`);
  assert.match(result.stdout, /3 packets transmitted, 0 received/);
  return result.stdout;
}

function dropCount(drops: Record<string, number>, reason: string): number {
  return drops[reason] ?? 0;
}

async function linkNames(topology: Topology, ns: string): Promise<string[]> {
  const text = await topology.exec(ns, ['ip', '-o', 'link', 'show']);
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => line.split(': ')[1].split('@')[0]);
}

/** tshark's "198.18.0.12,10.1.1.5" (outer and inner ip.dst) as a list. */
const list = (field: string | undefined) => (field ?? '').split(',').filter(Boolean);

describe('vrouter daemons, MPLS over UDP', { timeout: 150_000 }, () => {
  let topology: Topology;
  let cluster: VrouterCluster;

  before(async () => {
    topology = new Topology();
    cluster = await VrouterCluster.start(topology, { nodes: 2, vns: VNS, underlayMtu: UNDERLAY_MTU });
    await cluster.withLogs(async () => {
      await cluster.addPod(0, A1);
      await cluster.addPod(0, A2);
      await cluster.addPod(1, B1);
      await cluster.addPod(1, C1);
    });
  });

  after(async () => {
    try {
      await cluster?.stop();
    } finally {
      await topology?.destroy();
    }
  });

  test('two pods on one node ping each other, without touching the underlay', () =>
    cluster.withLogs(async () => {
      const before = await topology.readCounter(cluster.nodes[0].ns, 'underlay', 'tx_packets');
      await pingOk(cluster, 'a1', A2.ip);
      await pingOk(cluster, 'a2', A1.ip);
      assert.equal(await topology.readCounter(cluster.nodes[0].ns, 'underlay', 'tx_packets'), before, 'same-node traffic went out on the underlay');
    }));

  test('pods on two nodes ping each other over MPLS over UDP 6635, labels of the destination pods, S=1', () =>
    cluster.withLogs(async () => {
      const capture = await cluster.capture({ node: 0 }, 'underlay', 'udp port 6635', ['mpls.label', 'mpls.bottom', 'udp.dstport', 'ip.dst', 'udp.srcport']);
      await pingOk(cluster, 'a1', B1.ip);
      const rows = await capture.stop();
      const toB1 = rows.filter((row) => list(row[3]).includes(B1.ip));
      const toA1 = rows.filter((row) => list(row[3]).includes(A1.ip));
      assert.ok(toB1.length >= 3 && toA1.length >= 3, `expected 3 echo requests and 3 replies in MPLS over UDP, tshark saw:\n${rows.map((row) => row.join(' ')).join('\n')}`);
      for (const row of toB1) {
        assert.deepEqual([row[0], row[1], row[2], list(row[3])], [String(B1.label), '1', '6635', [cluster.nodes[1].underlayIp, B1.ip]], `to b1: ${row.join(' ')}`);
      }
      for (const row of toA1) {
        assert.deepEqual([row[0], row[1], row[2], list(row[3])], [String(A1.label), '1', '6635', [cluster.nodes[0].underlayIp, A1.ip]], `to a1: ${row.join(' ')}`);
      }
      for (const row of rows) {
        const sourcePort = Number(row[4]);
        assert.ok(sourcePort >= 49152 && sourcePort <= 65535, `UDP source port ${row[4]} is not an RFC 7510 entropy port`);
      }
      assert.equal(rows.length, toB1.length + toA1.length, `unexpected tunnel packets:\n${rows.map((row) => row.join(' ')).join('\n')}`);
    }));

  test('TCP across nodes: 10 MB of random data arrive intact (SHA-256 on both ends)', () =>
    cluster.withLogs(async () => {
      const server = new ProcessOutput(
        cluster.spawn('b1', [
          process.execPath,
          '-e',
          `const net = require('net'), crypto = require('crypto');
           const server = net.createServer({ allowHalfOpen: true }, (socket) => {
             const hash = crypto.createHash('sha256'); let bytes = 0;
             socket.on('data', (chunk) => { hash.update(chunk); bytes += chunk.length; });
             socket.on('end', () => {
               const line = JSON.stringify({ sha256: hash.digest('hex'), bytes, peer: socket.remoteAddress });
               console.log(line); socket.end(line); server.close();
             });
           });
           server.listen(5001, '0.0.0.0', () => console.log('listening'));`,
        ]),
      );
      await server.waitFor(/listening/, 10_000, 'the TCP server listening');
      const started = Date.now();
      const client = await cluster.exec(
        'a1',
        [
          process.execPath,
          '-e',
          `const net = require('net'), crypto = require('crypto');
           const data = crypto.randomBytes(${TEN_MB});
           const socket = net.connect({ host: '${B1.ip}', port: 5001, allowHalfOpen: true }, () => socket.end(data));
           let reply = '';
           socket.setEncoding('utf8');
           socket.on('data', (text) => (reply += text));
           socket.on('end', () => console.log(JSON.stringify({ sha256: crypto.createHash('sha256').update(data).digest('hex'), bytes: data.length, reply: JSON.parse(reply) })));
           socket.on('error', (error) => { console.error(error.message); process.exit(1); });`,
        ],
        { timeoutMs: 90_000 },
      );
      const seconds = (Date.now() - started) / 1000;
      const result = JSON.parse(client) as { sha256: string; bytes: number; reply: { sha256: string; bytes: number; peer: string } };
      assert.equal(result.bytes, TEN_MB);
      assert.equal(result.reply.bytes, TEN_MB, 'the server did not receive every byte');
      assert.equal(result.reply.sha256, result.sha256, 'SHA-256 differs between client and server');
      assert.equal(result.reply.peer, A1.ip, "the server should see the client's pod address");
      assert.deepEqual(await server.exited, { code: 0, signal: null });
      process.stderr.write(`# 10 MB across nodes in ${seconds.toFixed(2)} s (${((TEN_MB * 8) / seconds / 1e6).toFixed(0)} Mbit/s)\n`);
    }));

  test(`pod MTU is underlay MTU - ${OVERLAY_OVERHEAD}; a bigger DF packet gets ICMP fragmentation needed naming it`, () =>
    cluster.withLogs(async () => {
      const podMtu = UNDERLAY_MTU - OVERLAY_OVERHEAD;
      assert.equal(cluster.pod('a1').mtu, podMtu);
      assert.match(await cluster.exec('a1', ['ip', '-o', 'link', 'show', 'eth0']), new RegExp(`mtu ${podMtu} `));
      // A full-size packet at the pod MTU fits the underlay once encapsulated.
      const full = await cluster.tryExec('a1', ['ping', '-n', '-c', '2', '-i', '0.2', '-W', '2', '-M', 'do', '-s', String(podMtu - 28), B1.ip]);
      assert.equal(full.code, 0, `a ${podMtu}-byte DF packet should cross:\n${full.stdout}${full.stderr}`);

      const before = (await cluster.stats(0)).drops;
      await cluster.exec('a1', ['ip', 'link', 'set', 'eth0', 'mtu', String(UNDERLAY_MTU)]);
      try {
        const big = await cluster.tryExec('a1', ['ping', '-n', '-c', '1', '-W', '2', '-M', 'do', '-s', String(UNDERLAY_MTU - 28), B1.ip]);
        assert.notEqual(big.code, 0, `a ${UNDERLAY_MTU}-byte DF packet should not cross:\n${big.stdout}`);
        assert.match(big.stdout, new RegExp(`Frag needed and DF set \\(mtu = ${podMtu}\\)`), `ping printed:\n${big.stdout}${big.stderr}`);
        const after = (await cluster.stats(0)).drops;
        assert.ok(dropCount(after, 'fragment-needed') > dropCount(before, 'fragment-needed'), `no fragment-needed drop counted: ${JSON.stringify(after)}`);
      } finally {
        await cluster.exec('a1', ['ip', 'link', 'set', 'eth0', 'mtu', String(podMtu)]);
        await cluster.exec('a1', ['ip', 'route', 'flush', 'cache']);
      }
    }));

  test('a pod in another VN is unreachable: no route, and a leaked route is denied by policy', () =>
    cluster.withLogs(async () => {
      const before = (await cluster.stats(0)).drops;
      await pingFails(cluster, 'a1', C1.ip);
      const noRoute = (await cluster.stats(0)).drops;
      assert.ok(dropCount(noRoute, 'no-route') >= dropCount(before, 'no-route') + 3, `expected 3 no-route drops on node0: ${JSON.stringify(before)} -> ${JSON.stringify(noRoute)}`);

      // As a misconfigured control node would: c1's route in vn1, marked as vn2. Policy (none: VNs isolated) drops.
      assert.equal(await cluster.setRoute(0, 'vn1', `${C1.ip}/32`, [cluster.nexthopTo('c1')], { vn: 'vn2' }), 1);
      try {
        await pingFails(cluster, 'a1', C1.ip);
        const denied = (await cluster.stats(0)).drops;
        assert.ok(dropCount(denied, 'flow-action-drop') >= dropCount(noRoute, 'flow-action-drop') + 1, `expected flow-action-drop on node0: ${JSON.stringify(noRoute)} -> ${JSON.stringify(denied)}`);
      } finally {
        await cluster.deleteRoute(0, 'vn1', `${C1.ip}/32`);
      }
      await pingFails(cluster, 'c1', A1.ip);
    }));

  test('port delete removes the interface from the pod namespace', () =>
    cluster.withLogs(async () => {
      const a2 = cluster.pod('a2');
      assert.deepEqual(await linkNames(topology, a2.ns), ['lo', 'eth0']);
      await cluster.deletePod('a2');
      assert.deepEqual(await linkNames(topology, a2.ns), ['lo'], 'eth0 is still in the pod namespace');
      const ports = JSON.parse(await cluster.vrouter(0, ['port', 'list'])) as Array<{ id: string }>;
      assert.deepEqual(
        ports.map((port) => port.id),
        ['a1'],
      );
      const stats = await cluster.stats(0);
      assert.ok(!stats.vifs.some((vif) => vif.name === a2.tapName), `vif ${a2.tapName} still listed: ${JSON.stringify(stats.vifs)}`);
      await pingFails(cluster, 'a1', A2.ip);
      await pingOk(cluster, 'a1', B1.ip);
    }));

  test('SIGTERM stops the daemon and removes its TAPs from the pods and the node', () =>
    cluster.withLogs(async () => {
      const node1 = cluster.nodes[1];
      assert.deepEqual(await linkNames(topology, cluster.pod('b1').ns), ['lo', 'eth0']);
      const { code, ms } = await cluster.stopNode(1);
      assert.equal(code, 0);
      process.stderr.write(`# node1 daemon stopped ${ms} ms after SIGTERM\n`);
      assert.deepEqual(await linkNames(topology, cluster.pod('b1').ns), ['lo'], "b1's eth0 survived the daemon");
      assert.deepEqual(await linkNames(topology, cluster.pod('c1').ns), ['lo'], "c1's eth0 survived the daemon");
      assert.deepEqual(await linkNames(topology, node1.ns), ['lo', 'underlay']);
      await pingFails(cluster, 'a1', B1.ip);
    }));
});

describe('vrouter daemons, MPLS over GRE (encapPriority gre, udp)', { timeout: 60_000 }, () => {
  let topology: Topology;
  let cluster: VrouterCluster;

  before(async () => {
    topology = new Topology();
    cluster = await VrouterCluster.start(topology, { nodes: 2, vns: VNS, encapPriority: ['gre', 'udp'], underlayMtu: UNDERLAY_MTU });
    await cluster.withLogs(async () => {
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

  test('pods on two nodes ping each other over MPLS over GRE (proto 0x8847, labels of the destination pods, S=1), nothing else on the underlay', () =>
    cluster.withLogs(async () => {
      // Every IPv4 packet on the underlay: GRE only, no MPLS over UDP, no ICMP errors about the tunnels.
      const capture = await cluster.capture({ node: 1 }, 'underlay', 'ip', [
        'ip.proto',
        'gre.proto',
        'mpls.label',
        'mpls.bottom',
        'ip.dst',
      ]);
      await pingOk(cluster, 'a1', B1.ip);
      await pingOk(cluster, 'b1', A1.ip);
      const rows = await capture.stop();
      const shown = rows.map((row) => row.join(' ')).join('\n');
      assert.ok(rows.length >= 12, `expected 12 GRE packets (2 x 3 echo requests and replies), tshark saw:\n${shown}`);
      for (const row of rows) {
        const toB1 = list(row[4]).includes(B1.ip);
        assert.deepEqual(
          [list(row[0])[0], row[1], row[2], row[3], list(row[4])],
          ['47', '0x8847', String(toB1 ? B1.label : A1.label), '1', toB1 ? [cluster.nodes[1].underlayIp, B1.ip] : [cluster.nodes[0].underlayIp, A1.ip]],
          `not MPLS over GRE to the right label:\n${shown}`,
        );
      }
    }));
});
