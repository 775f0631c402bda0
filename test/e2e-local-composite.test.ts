/**
 * End to end with the control plane: two backends of one service on one
 * node are published as one next hop, the label of a local ECMP composite.
 *
 *   control0                  vrouter-control
 *   node0: be-a, be-b         app=web, back websvc 10.96.0.10 tcp 80 -> 8080
 *   node1: fe                 uses=websvc
 *
 * contrail-control drops an agent's item with more than one next hop
 * (BgpXmppChannel::ProcessItem, tungstenfabric/tf-controller
 * 6a674397821187fedfffd9586942b906d3479dbc, src/bgp/bgp_xmpp_channel.cc), so
 * node0 publishes 10.96.0.10 once, with the label of a composite of its two
 * pods' vifs; node1's route has that one next hop, and node0 balances the
 * connections arriving with that label over both pods by flow.
 *
 * Needs root and iproute2; a missing one fails the file naming it.
 */
import fs from 'node:fs';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { NetworkConfigDocument } from '../src/control/node/network-config';
import { LOCAL_COMPOSITE_LABELS } from '../src/control/agent/agent-interface';
import { networkFqns } from '../src/control/ifmap/names';
import { Topology, requireCommands } from './support/netns';
import { ClusterPod, ProcessOutput, VrouterCluster } from './support/vrouter-cluster';

if (process.getuid?.() !== 0) throw new Error('the e2e tests need root (network namespaces, TAP devices, raw sockets): run them as root, as .ci/run does');
requireCommands({ ip: 'iproute2', sysctl: 'procps' });

const VRF = (name: string) => networkFqns(name).routingInstance;
const WEB_IP = '10.96.0.10';
const CONNECTIONS = 30;

const CONFIG: NetworkConfigDocument = {
  holdTime: 30,
  restartConvergenceTime: 5,
  vrouters: ['node0', 'node1'],
  vns: [
    { name: 'default', subnet: '10.32.0.0/24' },
    { name: 'web', subnet: '10.1.1.0/24' },
  ],
  services: [{ name: 'websvc', clusterIP: WEB_IP, ports: [{ protocol: 'TCP', port: 80, targetPort: 8080 }], selector: { app: 'web' } }],
};

/** Answers each connection's first line with "<pod>". */
function server(pod: string): string {
  return `require('net').createServer((socket) => {
      socket.on('data', () => socket.end(${JSON.stringify(pod)} + '\\n'));
      socket.on('error', () => {});
    }).listen(8080, '0.0.0.0', () => console.log('listening'));`;
}

/** count connections, one after the other, each from a new source port; prints the answers' counts as JSON. */
const ASK_MANY = `
const net = require('net');
const [host, port, count] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
const one = () => new Promise((resolve) => {
  const socket = net.connect({ host, port });
  let text = '';
  socket.setEncoding('utf8');
  socket.setTimeout(2000, () => { socket.destroy(); resolve('timeout'); });
  socket.on('connect', () => socket.write('hello\\n'));
  socket.on('data', (chunk) => { text += chunk; if (text.includes('\\n')) { socket.end(); resolve(text.trim()); } });
  socket.on('error', (error) => resolve(error.code || error.message));
});
(async () => {
  const counts = {};
  for (let i = 0; i < count; i++) { const answer = await one(); counts[answer] = (counts[answer] || 0) + 1; }
  console.log(JSON.stringify(counts));
})();`;

describe('two backends of a service on one node are one published next hop, a local composite label', { timeout: 120_000 }, () => {
  let topology: Topology;
  let cluster: VrouterCluster;
  const backends: ClusterPod[] = [];

  before(async () => {
    topology = new Topology();
    cluster = await VrouterCluster.start(topology, { nodes: 2, control: { config: CONFIG } });
    await cluster.withLogs(async () => {
      await cluster.waitForSessions();
      for (const name of ['be-a', 'be-b']) {
        backends.push(await cluster.addPod(0, { name, labels: { name: 'web', app: 'web' } }));
        const output = new ProcessOutput(cluster.spawn(name, [process.execPath, '-e', server(name)]));
        await output.waitFor(/listening/, 10_000, `${name}'s server`);
      }
      await cluster.addPod(1, { name: 'fe', labels: { name: 'web', uses: 'websvc' } });
    });
  });

  after(async () => {
    try {
      await cluster?.stop();
    } finally {
      await topology?.destroy();
    }
  });

  test("node1's route to the ClusterIP has one next hop, node0's composite label; node0 programs that label as a composite of both pods", () =>
    cluster.withLogs(async () => {
      const route = await cluster.waitForRoute(1, VRF('web'), `${WEB_IP}/32`, (candidate) => candidate !== undefined && candidate.label !== null && candidate.label >= LOCAL_COMPOSITE_LABELS.first);
      assert.equal(route!.members, null, `one next hop: ${JSON.stringify(route)}`);
      assert.equal(route!.dip, cluster.nodes[0].underlayIp);
      const label = route!.label!;
      const labels = await cluster.introspect<Array<{ label: number; nexthop: number }>>(0, '/api/mpls');
      const entry = labels.find((candidate) => candidate.label === label);
      assert.ok(entry, `node0 has no label ${label}: ${JSON.stringify(labels)}`);
      const composite = await cluster.introspect<{ kind: string; members: number[] | null }>(0, `/api/nexthops/${entry.nexthop}`);
      assert.equal(composite.kind, 'composite');
      const memberVifs = await Promise.all(composite.members!.map(async (member) => (await cluster.introspect<{ vif: number }>(0, `/api/nexthops/${member}`)).vif));
      assert.deepEqual(memberVifs.sort(), backends.map((pod) => pod.vif).sort());
      // The control node refused nothing.
      const controlLog = fs.readFileSync(cluster.controlNode(0).logFile, 'utf8');
      assert.doesNotMatch(controlLog, /refused/);
    }));

  test(`${CONNECTIONS} connections from node1 to the ClusterIP reach both pods on node0`, () =>
    cluster.withLogs(async () => {
      const counts = JSON.parse(await cluster.exec('fe', [process.execPath, '-e', ASK_MANY, WEB_IP, '80', String(CONNECTIONS)], { timeoutMs: 60_000 })) as Record<string, number>;
      process.stderr.write(`# ${CONNECTIONS} connections to ${WEB_IP}:80 from node1: ${JSON.stringify(counts)}\n`);
      assert.equal((counts['be-a'] ?? 0) + (counts['be-b'] ?? 0), CONNECTIONS, JSON.stringify(counts));
      assert.ok(counts['be-a'] > 0 && counts['be-b'] > 0, `both pods should answer: ${JSON.stringify(counts)}`);
      const stats = await cluster.stats(0);
      const unexpected = Object.entries(stats.drops).filter(([reason]) => !['ipv6-unsupported'].includes(reason));
      assert.deepEqual(unexpected, [], `node0 dropped packets: ${JSON.stringify(stats.drops)}`);
    }));

  test("back to one backend: node0 publishes that pod's own label again", () =>
    cluster.withLogs(async () => {
      await cluster.deletePod('be-a');
      const route = await cluster.waitForRoute(1, VRF('web'), `${WEB_IP}/32`, (candidate) => candidate?.label === backends[1].label);
      assert.equal(route!.members, null);
      const counts = JSON.parse(await cluster.exec('fe', [process.execPath, '-e', ASK_MANY, WEB_IP, '80', '5'], { timeoutMs: 30_000 })) as Record<string, number>;
      assert.deepEqual(counts, { 'be-b': 5 });
    }));
});
