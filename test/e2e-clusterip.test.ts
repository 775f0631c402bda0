/**
 * End to end: a ClusterIP service through real `vrouter run` daemons.
 *
 *   node0: be1 10.1.1.10 (label 40)  floating IP 10.96.0.10, tcp 80 -> 8080, TCP server on 8080
 *   node1: be2 10.1.1.11 (label 41)  floating IP 10.96.0.10, tcp 80 -> 8080, TCP server on 8080
 *   node2: client 10.1.1.20          vn1 route 10.96.0.10/32 = ECMP [node0:40, node1:41]
 *
 * The client's node picks a backend per connection by 5-tuple hash and
 * tunnels with the ClusterIP as inner destination; the backend's node
 * translates (DNAT to the pod, 80 -> 8080; replies SNAT back to the
 * ClusterIP). 50 connections must all succeed, both backends answer, the
 * client only ever sees 10.96.0.10:80 (its sockets and a tshark capture on
 * its eth0), and the servers see the client's own address.
 * Needs root and iproute2, tshark; a missing one fails the file naming it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Topology, requireCommands } from './support/netns';
import { ProcessOutput, VrouterCluster } from './support/vrouter-cluster';

if (process.getuid?.() !== 0) throw new Error('the e2e tests need root (network namespaces, TAP devices, raw sockets): run them as root, as .ci/run does');
requireCommands({ ip: 'iproute2', tshark: 'tshark', sysctl: 'procps' });

const CLUSTER_IP = '10.96.0.10';
const SERVICE_PORT = 80;
const TARGET_PORT = 8080;
const CONNECTIONS = 50;
const MIN_PER_BACKEND = 10;
const SERVICE_FIP = { ip: CLUSTER_IP, portMap: [{ protocol: 'tcp' as const, port: SERVICE_PORT, targetPort: TARGET_PORT }] };
const BE1 = { name: 'be1', vn: 'vn1', ip: '10.1.1.10', label: 40, floatingIps: [SERVICE_FIP] };
const BE2 = { name: 'be2', vn: 'vn1', ip: '10.1.1.11', label: 41, floatingIps: [SERVICE_FIP] };
const CLIENT = { name: 'client', vn: 'vn1', ip: '10.1.1.20' };

/** Answers each connection with one JSON line: its pod name and the connection as the server sees it. */
function serverScript(pod: string): string {
  return `const net = require('net');
    const server = net.createServer((socket) => {
      const seen = { pod: ${JSON.stringify(pod)}, peer: socket.remoteAddress, peerPort: socket.remotePort, local: socket.localAddress, localPort: socket.localPort };
      console.log(JSON.stringify(seen));
      socket.end(JSON.stringify(seen) + '\\n');
      socket.on('error', () => {});
    });
    server.listen(${TARGET_PORT}, '0.0.0.0', () => console.log('listening'));`;
}

/** Opens the connections a few at a time; prints one JSON array: per connection, the socket's view and the answer (or the error). */
const CLIENT_SCRIPT = `const net = require('net');
  function one() {
    return new Promise((resolve) => {
      const socket = net.connect({ host: '${CLUSTER_IP}', port: ${SERVICE_PORT} });
      let text = '', view = {};
      socket.setTimeout(5000, () => socket.destroy(new Error('timed out')));
      socket.on('connect', () => (view = { remote: socket.remoteAddress, remotePort: socket.remotePort, localPort: socket.localPort }));
      socket.setEncoding('utf8');
      socket.on('data', (chunk) => (text += chunk));
      socket.on('end', () => resolve({ ...view, answer: JSON.parse(text) }));
      socket.on('error', (error) => resolve({ ...view, error: error.message }));
    });
  }
  (async () => {
    const results = [];
    for (let i = 0; i < ${CONNECTIONS}; i += 5) results.push(...(await Promise.all([one(), one(), one(), one(), one()])));
    console.log(JSON.stringify(results));
  })();`;

interface ConnectionResult {
  remote?: string;
  remotePort?: number;
  localPort?: number;
  error?: string;
  answer?: { pod: string; peer: string; peerPort: number; local: string; localPort: number };
}

describe('ClusterIP 10.96.0.10 tcp 80 -> 8080 with backends on two nodes, client on a third', { timeout: 120_000 }, () => {
  let topology: Topology;
  let cluster: VrouterCluster;
  const servers = new Map<string, ProcessOutput>();

  before(async () => {
    topology = new Topology();
    cluster = await VrouterCluster.start(topology, { nodes: 3, vns: [{ name: 'vn1', subnet: '10.1.1.0/24', gateway: '10.1.1.1' }] });
    await cluster.withLogs(async () => {
      await cluster.addPod(0, BE1);
      await cluster.addPod(1, BE2);
      await cluster.addPod(2, CLIENT);
      for (const backend of [BE1, BE2]) {
        const server = new ProcessOutput(cluster.spawn(backend.name, [process.execPath, '-e', serverScript(backend.name)]));
        servers.set(backend.name, server);
        await server.waitFor(/listening/, 10_000, `the server in ${backend.name} listening`);
      }
    });
  });

  after(async () => {
    try {
      await cluster?.stop();
    } finally {
      await topology?.destroy();
    }
  });

  test('vrouter route set with two next hops makes an ECMP route on the client node', () =>
    cluster.withLogs(async () => {
      const used = await cluster.setRoute(2, 'vn1', `${CLUSTER_IP}/32`, [cluster.nexthopTo('be1'), cluster.nexthopTo('be2')], { vn: 'vn1' });
      assert.equal(used, 2, 'the daemon should use both next hops');
    }));

  test(`${CONNECTIONS} connections all succeed, both backends answer, replies come from the ClusterIP`, () =>
    cluster.withLogs(async () => {
      const capture = await cluster.capture({ pod: 'client' }, 'eth0', 'tcp', ['ip.src', 'tcp.srcport', 'ip.dst', 'tcp.dstport', 'tcp.flags.syn', 'tcp.flags.ack']);
      const started = Date.now();
      const output = await cluster.exec('client', [process.execPath, '-e', CLIENT_SCRIPT], { timeoutMs: 60_000 });
      const seconds = (Date.now() - started) / 1000;
      const rows = await capture.stop();
      const results = JSON.parse(output) as ConnectionResult[];
      assert.equal(results.length, CONNECTIONS);

      const failed = results.filter((result) => result.error !== undefined || result.answer === undefined);
      assert.deepEqual(failed, [], `${failed.length} of ${CONNECTIONS} connections failed`);
      for (const result of results) {
        // The client's socket is connected to the ClusterIP, and the server saw the client's own address.
        assert.equal(result.remote, CLUSTER_IP);
        assert.equal(result.remotePort, SERVICE_PORT);
        const backend = result.answer!.pod === 'be1' ? BE1 : BE2;
        assert.deepEqual(
          { peer: result.answer!.peer, peerPort: result.answer!.peerPort, local: result.answer!.local, localPort: result.answer!.localPort },
          { peer: CLIENT.ip, peerPort: result.localPort, local: backend.ip, localPort: TARGET_PORT },
          `${result.answer!.pod} saw the connection from client port ${result.localPort} otherwise`,
        );
      }
      const perBackend = { be1: 0, be2: 0 } as Record<string, number>;
      for (const result of results) perBackend[result.answer!.pod]++;
      process.stderr.write(`# ${CONNECTIONS} connections in ${seconds.toFixed(2)} s: be1 ${perBackend.be1}, be2 ${perBackend.be2}\n`);
      assert.equal(perBackend.be1 + perBackend.be2, CONNECTIONS, `answers from unknown pods: ${JSON.stringify(perBackend)}`);
      assert.ok(perBackend.be1 >= MIN_PER_BACKEND && perBackend.be2 >= MIN_PER_BACKEND, `ECMP should spread the connections: ${JSON.stringify(perBackend)}`);
      const served = { be1: 0, be2: 0 } as Record<string, number>;
      for (const [name, server] of servers) served[name] = server.stdout.split('\n').filter((line) => line.startsWith('{')).length;
      assert.deepEqual(served, perBackend, 'the servers logged other connections than the client got answers for');

      // On the wire in the client's namespace: every packet to the client comes from 10.96.0.10:80.
      const shown = () => rows.slice(0, 40).map((row) => row.join(' ')).join('\n');
      const toClient = rows.filter((row) => row[2] === CLIENT.ip);
      const fromClient = rows.filter((row) => row[0] === CLIENT.ip);
      assert.equal(toClient.length + fromClient.length, rows.length, `TCP packets neither from nor to the client:\n${shown()}`);
      assert.ok(toClient.length >= CONNECTIONS * 3, `expected at least ${CONNECTIONS * 3} packets to the client, tshark saw ${toClient.length}:\n${shown()}`);
      const strangers = toClient.filter((row) => row[0] !== CLUSTER_IP || row[1] !== String(SERVICE_PORT));
      assert.deepEqual(strangers, [], 'packets to the client from another address than the ClusterIP');
      assert.ok(fromClient.every((row) => row[2] === CLUSTER_IP && row[3] === String(SERVICE_PORT)), `the client sent to another address than the ClusterIP:\n${shown()}`);
      const synAcks = toClient.filter((row) => isSet(row[4]) && isSet(row[5]));
      assert.equal(synAcks.length, CONNECTIONS, `expected one SYN-ACK per connection from ${CLUSTER_IP}:${SERVICE_PORT}`);
    }));

  test('no node dropped a packet of the service traffic', () =>
    cluster.withLogs(async () => {
      // Flows were created and translated on the backend nodes, not dropped.
      for (const node of [0, 1, 2]) {
        const stats = await cluster.stats(node);
        const unexpected = Object.entries(stats.drops).filter(([reason]) => !['ipv6-unsupported'].includes(reason));
        assert.deepEqual(unexpected, [], `node${node} dropped packets: ${JSON.stringify(stats.drops)}`);
      }
    }));
});

/** tshark prints a TCP flag as 1/0 (or True/False in some versions). */
function isSet(flag: string | undefined): boolean {
  return flag === '1' || flag === 'True';
}
