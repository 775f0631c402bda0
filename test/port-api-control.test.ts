/**
 * The agent's port API on a node run by a control node (`vrouter run
 * --control`): a pod registered on the control node's pod API (as the
 * plugins create the VM and its interface on the configuration side), then
 * its port posted with the agent's body on the host end of a veth (as the
 * kubelet plugin and the CNI make it): the control node gives it its VN and
 * address over IF-MAP; GET /port answers them
 * as the agent does, the pod is addressed from that answer (as the CNI does
 * from GET /vm), and it reaches a pod of another node over MPLS over UDP.
 *
 *   node0: vhC-<p> --veth-- eth0 in <p>-pod-c (agent port, attached)
 *   node1: b (TAP, `vrouter port add`)
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Topology, requireCommands } from './support/netns';
import { ClusterPod, VrouterCluster } from './support/vrouter-cluster';
import { RawAnswer, assertAgentAnswer, rawRequest } from './support/port-ipc';
import { networkFqns } from '../src/control/ifmap/names';

/** A network.yaml VN's routing instance: the VRF's name on the nodes. */
const VRF = (name: string) => networkFqns(name).routingInstance;

if (process.getuid?.() !== 0) throw new Error('the e2e tests need root (network namespaces, raw sockets): run them as root, as .ci/run does');
requireCommands({ ip: 'iproute2', ping: 'iputils-ping' });

const C = { id: 'c0c0c0c0-1111-4222-8333-444455556666', vm: 'c1c1c1c1-1111-4222-8333-444455556666', mac: '02:c0:c0:c0:11:11', host: `vhC${process.pid % 100000}` };

let topology: Topology;
let cluster: VrouterCluster;
let b: ClusterPod;

before(async () => {
  topology = new Topology();
  cluster = await VrouterCluster.start(topology, {
    nodes: 2,
    control: { config: { vrouters: ['node0', 'node1'], vns: [{ name: 'default', subnet: '10.32.0.0/24', gateway: '10.32.0.1' }] } },
  });
  await cluster.waitForSessions();
  b = await cluster.addPod(1, { name: 'b' });
});

after(async () => {
  await cluster?.stop().catch((error: Error) => process.stderr.write(`${error.message}\n`));
  await topology?.destroy();
});

test('an agent port on an existing veth is configured by the control node and reaches a pod of another node', async () => {
  const ns = cluster.nodes[0].ns;
  const raw = (method: string, target: string, body?: string): Promise<RawAnswer> => rawRequest(topology, ns, method, target, body);
  const podNs = await topology.addNamespace('pod-c');
  await topology.exec(ns, ['ip', 'link', 'add', C.host, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', podNs]);
  await topology.exec(ns, ['ip', 'link', 'set', C.host, 'up']);
  await topology.exec(podNs, ['ip', 'link', 'set', 'eth0', 'address', C.mac, 'mtu', '1468', 'up']);
  // The configuration side first: the VM and its interface (id = the VMI uuid, instance-id = the VM uuid).
  const podApi = new URL(cluster.controlNodes[0].podApi).host;
  const registration = { vrouter: 'node0', vmUuid: C.vm, vmiUuid: C.id, name: 'pod-c', namespace: 'default', labels: {}, mac: C.mac };
  await cluster.apiRequest(0, 'POST', '/pods', registration, podApi);
  // The kubelet plugin's body: no address (0.0.0.0), the configuration decides.
  const body = {
    id: C.id,
    'instance-id': C.vm,
    'system-name': C.host,
    'mac-address': C.mac,
    'vn-id': '00000000-0000-0000-0000-000000000001',
    'vm-project-id': '00000000-0000-0000-0000-000000000001',
    'ip-address': '0.0.0.0',
    'ip6-address': '0::0',
    'rx-vlan-id': 0,
    'tx-vlan-id': 0,
    type: 0,
    'display-name': 'pod-c',
  };
  assertAgentAnswer(await raw('POST', '/port', JSON.stringify(body)), 200, '{}');
  let info: RawAnswer | undefined;
  for (let tries = 0; tries < 100 && info === undefined; tries++) {
    const answer = await raw('GET', `/port/${C.id}`);
    if (answer.statusLine === 'HTTP/1.1 200 OK') info = answer;
    else await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.ok(info, `the control node configured the port\n${cluster.logs()}`);
  const configured = JSON.parse(info.body) as Record<string, unknown>;
  assert.equal(configured.plen, 24);
  assert.equal(configured.gateway, '10.32.0.1');
  assert.match(String(configured['ip-address']), /^10\.32\.0\.\d+$/);
  // As the CNI configures the pod from GET /vm: its address, the gateway as default route.
  await topology.exec(podNs, ['ip', 'address', 'add', `${String(configured['ip-address'])}/32`, 'dev', 'eth0']);
  await topology.exec(podNs, ['ip', 'route', 'add', String(configured.gateway), 'dev', 'eth0', 'scope', 'link']);
  await topology.exec(podNs, ['ip', 'route', 'add', 'default', 'via', String(configured.gateway), 'dev', 'eth0']);
  await cluster.waitForRoute(1, VRF('default'), `${String(configured['ip-address'])}/32`, (route) => route !== undefined);
  // The libpcap attachment loses about its first second of frames: a first reply, then every one.
  let first = false;
  for (let tries = 0; tries < 20 && !first; tries++) first = await topology.exec(podNs, ['ping', '-c', '1', '-W', '1', b.ip]).then(() => true, () => false);
  assert.ok(first, `no reply from ${b.ip}\n${cluster.logs()}`);
  assert.match(await topology.exec(podNs, ['ping', '-c', '3', '-i', '0.2', '-W', '2', b.ip]), /3 packets transmitted, 3 received/);
  // Deleted through the agent's API: the control node withdraws the route from the other node.
  assertAgentAnswer(await raw('DELETE', `/port/${C.id}`), 200, '{}');
  await cluster.waitForRoute(1, VRF('default'), `${String(configured['ip-address'])}/32`, (route) => route === undefined);
  assertAgentAnswer(await raw('GET', `/port/${C.id}`), 404, '{"error":"{ Not Found }"}');
  await cluster.apiRequest(0, 'DELETE', `/pods/${C.vm}`, undefined, podApi);
});

test('`vrouter port add --control-api` registers the pod on the control node first; `port delete --control-api` removes it there', async () => {
  const ns = cluster.nodes[0].ns;
  const podApi = cluster.controlNodes[0].podApi;
  const registered = async () =>
    (JSON.parse(await topology.exec(ns, [process.execPath, '-e', `fetch('${podApi}/pods').then((r) => r.text()).then((t) => process.stdout.write(t))`])) as Array<Record<string, unknown>>).filter(
      ({ vrouter }) => vrouter === 'node0',
    );
  const pod = await cluster.addPod(0, { name: 'reg', labels: { app: 'x' } });
  assert.equal(pod.vn, networkFqns('default').vn);
  assert.deepEqual(
    (await registered()).map(({ vrouter, vmiUuid, vn, ip, labels }) => ({ vrouter, vmiUuid, vn, ip, labels })),
    [{ vrouter: 'node0', vmiUuid: 'reg', vn: 'default', ip: pod.ip, labels: { app: 'x' } }],
  );
  await cluster.waitForRoute(1, VRF('default'), `${pod.ip}/32`, (route) => route !== undefined);
  await cluster.vrouter(0, ['port', 'delete', 'reg', '--control-api', podApi]);
  assert.deepEqual(await registered(), []);
  await cluster.waitForRoute(1, VRF('default'), `${pod.ip}/32`, (route) => route === undefined);
});
