/**
 * End to end: a software gateway (vgw) between an external network and a
 * service's external addresses, through real `vrouter run` daemons and a
 * real `vrouter-control`.
 *
 *   <p>-external: ext0 192.0.2.2/24, 203.0.113.0/24 on-link via ext0 (the vrouter answers its ARP)
 *        |veth
 *   node0: vgw0, `vrouter run --gateway routing_instance=default-domain:default-project:public:public,
 *          interface=vgw0,ip_blocks=203.0.113.0/24,mac=<ext0>`: publishes 0.0.0.0/0 in public
 *   node1: be1, node2: be2 (app=web, VN web)   websvc 10.96.0.10, externalIPs 203.0.113.10, tcp 80 -> 8080
 *                                              lbsvc 10.96.0.11, type LoadBalancer (pool 203.0.113.128/25), tcp 443 -> 8443
 *   control0: network.json with `external: { name: public, ... gateways: [{ vrouter: node0 }] }`
 *
 * The backends' nodes publish the external addresses in public (ECMP at the
 * gateway); the gateway's default route is leaked into web, so replies
 * (SNATed back to the external address at the backend's node) tunnel back to
 * the gateway and leave by vgw0. A client in the external namespace connects
 * many times: every connection succeeds, both backends answer, the servers
 * see the client's own address, and on ext0 every packet to the client comes
 * from the external address. Then the externalIP is removed from the
 * configuration: the route goes from the gateway and connections fail.
 * Needs root and iproute2, tshark; a missing one fails the file naming it.
 */
import fs from 'node:fs';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { NetworkConfigDocument } from '../src/control/node/network-config';
import { networkFqns } from '../src/control/ifmap/names';
import { Topology, requireCommands } from './support/netns';
import { ProcessOutput, VrouterCluster } from './support/vrouter-cluster';

if (process.getuid?.() !== 0) throw new Error('the e2e tests need root (network namespaces, TAP devices, raw sockets): run them as root, as .ci/run does');
requireCommands({ ip: 'iproute2', tshark: 'tshark', sysctl: 'procps' });

const PUBLIC_VRF = networkFqns('public').routingInstance;
const EXTERNAL_IP = '203.0.113.10';
/** The first address of the pool: what the control node gives the one LoadBalancer service. */
const LOAD_BALANCER_IP = '203.0.113.128';
const CLIENT_IP = '192.0.2.2';
const CONNECTIONS = 40;
const MIN_PER_BACKEND = 8;

const CONFIG: NetworkConfigDocument = {
  holdTime: 30,
  restartConvergenceTime: 5,
  vrouters: ['node0', 'node1', 'node2'],
  vns: [
    { name: 'default', subnet: '10.32.0.0/24' },
    { name: 'web', subnet: '10.1.1.0/24', gateway: '10.1.1.1' },
  ],
  services: [
    { name: 'websvc', clusterIP: '10.96.0.10', ports: [{ protocol: 'TCP', port: 80, targetPort: 8080 }], selector: { app: 'web' }, externalIPs: [EXTERNAL_IP] },
    { name: 'lbsvc', clusterIP: '10.96.0.11', ports: [{ protocol: 'TCP', port: 443, targetPort: 8443 }], selector: { app: 'web' }, type: 'LoadBalancer' },
  ],
  external: { name: 'public', subnet: '203.0.113.0/24', loadBalancerPool: '203.0.113.128/25', gateways: [{ vrouter: 'node0' }] },
};

/** Answers each connection on 8080 and 8443 with one JSON line: its pod name and the connection as the server sees it. */
function serverScript(pod: string): string {
  return `const net = require('net');
    let listening = 0;
    for (const port of [8080, 8443]) {
      const server = net.createServer((socket) => {
        const seen = { pod: ${JSON.stringify(pod)}, peer: socket.remoteAddress, local: socket.localAddress, localPort: socket.localPort };
        socket.end(JSON.stringify(seen) + '\\n');
        socket.on('error', () => {});
      });
      server.listen(port, '0.0.0.0', () => { if (++listening === 2) console.log('listening'); });
    }`;
}

/** Opens `count` connections to host:port, five at a time; prints one JSON array of { remote, answer } or { error }. */
function clientScript(host: string, port: number, count: number, timeoutMs: number): string {
  return `const net = require('net');
  function one() {
    return new Promise((resolve) => {
      const socket = net.connect({ host: '${host}', port: ${port} });
      let text = '', remote;
      socket.setTimeout(${timeoutMs}, () => socket.destroy(new Error('timed out')));
      socket.on('connect', () => (remote = socket.remoteAddress + ':' + socket.remotePort));
      socket.setEncoding('utf8');
      socket.on('data', (chunk) => (text += chunk));
      socket.on('end', () => resolve({ remote, answer: JSON.parse(text) }));
      socket.on('error', (error) => resolve({ remote, error: error.message }));
    });
  }
  (async () => {
    const results = [];
    for (let i = 0; i < ${count}; i += 5) results.push(...(await Promise.all([one(), one(), one(), one(), one()].slice(0, Math.min(5, ${count} - i)))));
    console.log(JSON.stringify(results));
  })();`;
}

interface ConnectionResult {
  remote?: string;
  error?: string;
  answer?: { pod: string; peer: string; local: string; localPort: number };
}

describe('software gateway: an external client reaches a service by its externalIP and its LoadBalancer address', { timeout: 180_000 }, () => {
  let topology: Topology;
  let cluster: VrouterCluster;
  const backendIps = new Map<string, string>();

  before(async () => {
    topology = new Topology();
    cluster = await VrouterCluster.start(topology, {
      nodes: 3,
      control: { config: CONFIG },
      gateway: { node: 0, routingInstance: PUBLIC_VRF, ipBlocks: ['203.0.113.0/24'] },
    });
    await cluster.withLogs(async () => {
      const external = cluster.externalNs!;
      await topology.exec(external, ['ip', 'address', 'add', `${CLIENT_IP}/24`, 'dev', 'ext0']);
      await topology.exec(external, ['ip', 'route', 'add', '203.0.113.0/24', 'dev', 'ext0']);
      await cluster.waitForSessions();
      for (const [node, name] of [[1, 'be1'], [2, 'be2']] as const) {
        const pod = await cluster.addPod(node, { name, labels: { name: 'web', app: 'web' } });
        backendIps.set(name, pod.ip);
        const server = new ProcessOutput(cluster.spawn(name, [process.execPath, '-e', serverScript(name)]));
        await server.waitFor(/listening/, 10_000, `the servers in ${name} listening`);
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

  /** Connects from the external namespace; returns the results. */
  async function connect(host: string, port: number, count: number, timeoutMs = 5_000): Promise<ConnectionResult[]> {
    const output = await topology.exec(cluster.externalNs!, [process.execPath, '-e', clientScript(host, port, count, timeoutMs)], { timeoutMs: 90_000 });
    return JSON.parse(output) as ConnectionResult[];
  }

  for (const [what, address, port, targetPort] of [
    ['externalIP', EXTERNAL_IP, 80, 8080],
    ['LoadBalancer address', LOAD_BALANCER_IP, 443, 8443],
  ] as const) {
    test(`the gateway routes ${address}/32 (${what}) as ECMP to both backends' nodes`, () =>
      cluster.withLogs(async () => {
        await cluster.waitForRoute(0, PUBLIC_VRF, `${address}/32`, (route) => route?.members?.length === 2, 20_000);
      }));

    test(`${CONNECTIONS} connections to the ${what} ${address}:${port} succeed, spread over both nodes, replies from ${address}`, () =>
      cluster.withLogs(async () => {
        const capture = await cluster.capture({ ns: cluster.externalNs }, 'ext0', 'tcp', ['ip.src', 'tcp.srcport', 'ip.dst', 'tcp.dstport']);
        const results = await connect(address, port, CONNECTIONS);
        const rows = await capture.stop();
        const failed = results.filter((result) => result.answer === undefined);
        assert.deepEqual(failed, [], `${failed.length} of ${CONNECTIONS} connections failed`);
        const perBackend: Record<string, number> = { be1: 0, be2: 0 };
        for (const result of results) {
          const answer = result.answer!;
          assert.equal(result.remote, `${address}:${port}`);
          // DNAT to the pod and its target port at the backend's node; the client's own address kept.
          assert.deepEqual({ peer: answer.peer, local: answer.local, localPort: answer.localPort }, { peer: CLIENT_IP, local: backendIps.get(answer.pod), localPort: targetPort });
          perBackend[answer.pod]++;
        }
        process.stderr.write(`# ${what}: ${CONNECTIONS} connections: be1 ${perBackend.be1}, be2 ${perBackend.be2}\n`);
        assert.ok(perBackend.be1 >= MIN_PER_BACKEND && perBackend.be2 >= MIN_PER_BACKEND, `ECMP at the gateway should spread the connections: ${JSON.stringify(perBackend)}`);
        const toClient = rows.filter((row) => row[2] === CLIENT_IP);
        assert.ok(toClient.length >= CONNECTIONS * 3, `expected at least ${CONNECTIONS * 3} packets to the client on ext0, tshark saw ${toClient.length}`);
        const strangers = toClient.filter((row) => row[0] !== address || row[1] !== String(port));
        assert.deepEqual(strangers.slice(0, 10), [], `packets to the client from another address than ${address}:${port}`);
      }));
  }

  test('no node dropped a packet of the external traffic', () =>
    cluster.withLogs(async () => {
      for (const node of [0, 1, 2]) {
        const stats = await cluster.stats(node);
        const unexpected = Object.entries(stats.drops).filter(([reason]) => !['ipv6-unsupported'].includes(reason));
        assert.deepEqual(unexpected, [], `node${node} dropped packets: ${JSON.stringify(stats.drops)}`);
      }
    }));

  test('a destination outside the ip_blocks is not routed in from the external side', () =>
    cluster.withLogs(async () => {
      await topology.exec(cluster.externalNs!, ['ip', 'route', 'add', '10.1.1.0/24', 'via', '203.0.113.1', 'dev', 'ext0']);
      try {
        const before = (await cluster.stats(0)).drops['no-route'] ?? 0;
        const [result] = await connect(backendIps.get('be1')!, 8080, 1, 2_000);
        assert.ok(result.error !== undefined, `a pod address was reached from outside: ${JSON.stringify(result)}`);
        const after = (await cluster.stats(0)).drops['no-route'] ?? 0;
        assert.ok(after > before, `the gateway node should count the packets it did not route in as no-route (${before} -> ${after})`);
      } finally {
        await topology.exec(cluster.externalNs!, ['ip', 'route', 'del', '10.1.1.0/24']);
      }
    }));

  test('removing the externalIP from the configuration withdraws it: the gateway loses the route, connections fail', () =>
    cluster.withLogs(async () => {
      const control = cluster.controlNodes[0];
      const withoutExternalIp: NetworkConfigDocument = { ...CONFIG, services: CONFIG.services!.map(({ externalIPs: _dropped, ...service }) => service) };
      fs.writeFileSync(control.configFile, JSON.stringify(withoutExternalIp, null, 2) + '\n');
      await cluster.waitForRoute(0, PUBLIC_VRF, `${EXTERNAL_IP}/32`, (route) => route === undefined, 20_000);
      const [result] = await connect(EXTERNAL_IP, 80, 1, 2_000);
      assert.ok(result.error !== undefined, `the withdrawn externalIP still answered: ${JSON.stringify(result)}`);
      // The LoadBalancer address stays.
      const [kept] = await connect(LOAD_BALANCER_IP, 443, 1);
      assert.ok(kept.answer !== undefined, `the LoadBalancer address stopped answering: ${JSON.stringify(kept)}`);
    }));
});
