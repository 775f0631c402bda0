/**
 * End to end: a pod whose interface is a veth pair made by someone else (as
 * a CNI plugin would), its host side attached to the vrouter through
 * libpcap (`vrouter port add --attach`), talking to a TAP pod on another
 * node over MPLS over UDP.
 *
 *   node0: a 10.1.1.3 (TAP)
 *   node1: v 10.1.1.7: eth0 in <p>-pod-v  --veth--  vh-<p> in node1, attached with cap
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Topology, requireCommands } from './support/netns';
import { VrouterCluster } from './support/vrouter-cluster';

if (process.getuid?.() !== 0) throw new Error('the e2e tests need root (network namespaces, TAP devices, raw sockets): run them as root, as .ci/run does');
requireCommands({ ip: 'iproute2', ping: 'iputils-ping' });

const V = { ip: '10.1.1.7', mac: '02:00:0a:01:01:07', label: 30 };
let topology: Topology;
let cluster: VrouterCluster;
let podNs: string;
const hostSide = `vh${process.pid % 100000}`;

before(async () => {
  topology = new Topology();
  cluster = await VrouterCluster.start(topology, { nodes: 2, vns: [{ name: 'vn1', subnet: '10.1.1.0/24', gateway: '10.1.1.1' }] });
  await cluster.addPod(0, { name: 'a', vn: 'vn1', ip: '10.1.1.3', label: 20 });
  podNs = await topology.addNamespace('pod-v');
  const node1 = cluster.nodes[1].ns;
  await topology.exec(node1, ['ip', 'link', 'add', hostSide, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', podNs]);
  await topology.exec(node1, ['ip', 'link', 'set', hostSide, 'up']);
  await topology.exec(podNs, ['ip', 'link', 'set', 'eth0', 'address', V.mac, 'mtu', '1468', 'up']);
  await topology.exec(podNs, ['ip', 'address', 'add', `${V.ip}/32`, 'dev', 'eth0']);
  await topology.exec(podNs, ['ip', 'route', 'add', '10.1.1.1', 'dev', 'eth0', 'scope', 'link']);
  await topology.exec(podNs, ['ip', 'route', 'add', 'default', 'via', '10.1.1.1', 'dev', 'eth0']);
  await cluster.vrouter(1, ['port', 'add', '--id', 'v', '--attach', hostSide, '--mac', V.mac, '--vn', 'vn1', '--ip', V.ip, '--mpls-label', String(V.label)]);
  await cluster.setRoute(0, 'vn1', `${V.ip}/32`, [{ address: cluster.nodes[1].underlayIp, label: V.label }]);
});

after(async () => {
  await cluster?.stop();
  await topology?.destroy();
});

test('a veth attached through libpcap reaches a TAP pod on another node, both ways', async () => {
  await cluster.withLogs(async () => {
    const fromVeth = await topology.exec(podNs, ['ping', '-c', '3', '-i', '0.2', '-W', '2', '10.1.1.3']);
    assert.match(fromVeth, /3 received/);
    const toVeth = await cluster.exec('a', ['ping', '-c', '3', '-i', '0.2', '-W', '2', V.ip]);
    assert.match(toVeth, /3 received/);
    const stats = await cluster.stats(1);
    const vif = stats.vifs.find((candidate) => candidate.name === hostSide);
    assert.ok(vif && Number(vif.rxPackets) >= 6 && Number(vif.txPackets) >= 6, `the attached vif counts the traffic: ${JSON.stringify(vif)}`);
  });
});

test('deleting the attached port stops forwarding and leaves the interface alone', async () => {
  await cluster.vrouter(1, ['port', 'delete', 'v']);
  const result = await topology.exec(podNs, ['ping', '-c', '1', '-W', '1', '10.1.1.3']).then(
    () => 'answered',
    () => 'no answer',
  );
  assert.equal(result, 'no answer');
  await topology.exec(cluster.nodes[1].ns, ['ip', 'link', 'show', hostSide]);
});
