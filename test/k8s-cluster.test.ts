/**
 * The whole stack on a real Kubernetes node (test/support/k8s-testbed.ts:
 * etcd, kube-apiserver, controller-manager, scheduler, containerd + runc,
 * kubelet 1.20.2) with vrouter-ts's own parts only: `vrouter-control
 * --kubeconfig` as the network manager and `vrouter run --control` as the
 * node's agent (its port API on the node's 127.0.0.1:9091), vrouter-cni
 * called by containerd. No stand-in.
 *
 * Pods created with kubectl get eth0 with the address the manager chose
 * (their `opencontrail.org/pod-state` annotation); pods of one VN reach each
 * other, a pod that `uses` a Service reaches it on its ClusterIP (the
 * backend's vrouter translating to the target port), traffic between VNs
 * without `uses` is denied and counted (no-route: the VNs share no route); deleting the pods
 * makes containerd's DEL leave no agent port, no host veth, no address in
 * the manager and no sandbox namespace behind.
 *
 * Needs `bash scripts/k8s/build.sh` and runs only with VROUTER_K8S=1.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { K8sTestbed, BUSYBOX_IMAGE, DEFAULT_CACHE, POD_API, VrouterOnNode, testbedBinariesMissing } from './support/k8s-testbed';
import { POD_STATE_ANNOTATION } from '../src/control/node/kube/mapping';
import { AGENT_PORT_API_PORT } from '../src/cni/agent-api-types';
import { TUNNEL_OVERHEAD } from '../src/cni/plugin';
import { hostInterfaceName } from '../src/cni/links';

const enabled = process.env.VROUTER_K8S === '1';
const skip = enabled ? false : `set VROUTER_K8S=1 to run against a real kubelet and containerd (binaries from bash scripts/k8s/build.sh in ${DEFAULT_CACHE})`;
if (enabled) {
  const missing = testbedBinariesMissing();
  if (missing.length > 0) throw new Error(`VROUTER_K8S=1 but the testbed is not built (missing ${missing.join(', ')}): run bash scripts/k8s/setup.sh && bash scripts/k8s/build.sh`);
  if (process.getuid?.() !== 0) throw new Error('the Kubernetes testbed needs root');
}

const NS = 'shop';
const DB_CLUSTER_IP = '10.96.0.40';
const DB_SERVICE_PORT = 80;
const DB_TARGET_PORT = 8080;

let testbed: K8sTestbed | undefined;
let vrouter: VrouterOnNode;

before(async () => {
  if (!enabled) return;
  testbed = await K8sTestbed.start({
    cniPlugin: { type: 'vrouter-cni', contrail: { 'poll-timeout': 0.3, 'poll-retries': 100 } },
    beforeNode: async (bed) => {
      bed.startNetworkManager();
      vrouter = await bed.startVrouter(bed.ns, bed.nodeName);
    },
  });
});

after(async () => {
  await testbed?.stop();
});

/** A busybox pod serving its own name over HTTP on `port` (busybox httpd), or only sleeping. */
function pod(name: string, labels: Record<string, string>, serve?: number): object {
  const script = serve === undefined ? 'exec sleep 3600' : `mkdir -p /www && echo ${name} > /www/index.html && exec httpd -f -p ${serve} -h /www`;
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: NS, labels },
    spec: {
      terminationGracePeriodSeconds: 1,
      containers: [{ name: 'main', image: BUSYBOX_IMAGE, imagePullPolicy: 'Never', command: ['sh', '-c', script] }],
    },
  };
}

const kubectl = (args: string[], input?: string) => testbed!.kubectl(args, input === undefined ? {} : { input });
const inPod = (name: string, argv: string[]) => kubectl(['exec', '-n', NS, name, '--', ...argv]);
/** Exit status of a command in the pod (kubectl exec fails with the command). */
const succeeds = (name: string, argv: string[]) => inPod(name, argv).then(() => true, () => false);
/** An HTTP GET from the pod with busybox nc (busybox-static's wget crashes without NSS): the body's last line. */
const httpGet = async (name: string, ip: string, port: number) =>
  (await inPod(name, ['sh', '-c', `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 ${ip} ${port}`])).trim().split('\n').pop();
const httpFails = (name: string, ip: string, port: number) => httpGet(name, ip, port).then((body) => body === undefined || body === '', () => true);
const agentGet = async (target: string) => JSON.parse(await testbed!.exec(['curl', '-sf', `http://127.0.0.1:${AGENT_PORT_API_PORT}${target}`])) as unknown;
const introspect = async <T>(target: string) => JSON.parse(await testbed!.exec(['curl', '-sf', `http://127.0.0.1:8085${target}`])) as T;

interface PodState {
  ip: string;
  uid: string;
  annotation: { uuid: string; macAddress: string; ipAddress: string; gateway: string };
}

async function podStates(): Promise<Map<string, PodState>> {
  const list = JSON.parse(await kubectl(['get', 'pods', '-n', NS, '-o', 'json'])) as {
    items: Array<{ metadata: { name: string; uid: string; annotations?: Record<string, string> }; status: { podIP?: string; phase: string } }>;
  };
  const states = new Map<string, PodState>();
  for (const item of list.items) {
    const text = item.metadata.annotations?.[POD_STATE_ANNOTATION];
    if (item.status.phase !== 'Running' || !item.status.podIP || text === undefined) continue;
    states.set(item.metadata.name, { ip: item.status.podIP, uid: item.metadata.uid, annotation: JSON.parse(text) as PodState['annotation'] });
  }
  return states;
}

const POD_NAMES = ['web-1', 'web-2', 'db-1', 'client'];
let states: Map<string, PodState>;

test('pods created with kubectl get eth0 with the address, MAC and gateway the network manager chose', { skip }, async () => {
  const bed = testbed!;
  const objects = [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } },
    pod('web-1', { name: 'web', app: 'web' }, 8080),
    pod('web-2', { name: 'web', app: 'web' }, 8080),
    pod('db-1', { name: 'db', app: 'db' }, DB_TARGET_PORT),
    pod('client', { name: 'client', uses: 'db' }),
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'db', namespace: NS },
      spec: { clusterIP: DB_CLUSTER_IP, selector: { app: 'db' }, ports: [{ protocol: 'TCP', port: DB_SERVICE_PORT, targetPort: DB_TARGET_PORT }] },
    },
  ];
  await kubectl(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }));
  await bed.waitFor('the four pods Running with their addresses', 120_000, async () => (states = await podStates()).size === POD_NAMES.length);
  for (const name of POD_NAMES) {
    const state = states.get(name)!;
    assert.equal(state.ip, state.annotation.ipAddress, `${name}: kubelet reports the address the manager annotated`);
    assert.match(state.ip, /^10\.32\.\d+\.\d+$/);
    const eth0 = await inPod(name, ['ip', '-o', 'link', 'show', 'dev', 'eth0']);
    assert.match(eth0, new RegExp(`link/ether ${state.annotation.macAddress.toLowerCase()} `), `${name}: eth0 has the VMI's MAC`);
    assert.match(eth0, new RegExp(`mtu ${1500 - TUNNEL_OVERHEAD} `));
    assert.match(await inPod(name, ['ip', '-4', '-o', 'address', 'show', 'dev', 'eth0']), new RegExp(`inet ${state.ip.replace(/\./g, '\\.')}/16 `));
    assert.match(await inPod(name, ['ip', 'route', 'show', 'default']), new RegExp(`default via ${state.annotation.gateway.replace(/\./g, '\\.')} dev eth0`));
  }
  // The agent's own view: each pod one active port, configured by the control node.
  const ports = (await agentGet('/ports')) as Array<{ id: string; state?: string; ip?: string }>;
  for (const name of POD_NAMES) {
    const { annotation } = states.get(name)!;
    const port = ports.find((p) => p.id === annotation.uuid);
    assert.ok(port, `${name}: the agent has port ${annotation.uuid}: ${JSON.stringify(ports)}`);
  }
});

/** The reasons a denied packet is counted under. */
const DENIAL_REASONS = ['no-route', 'flow-action-drop'];
const denials = async () => Object.fromEntries(Object.entries((await introspect<{ reasons: Record<string, number> }>('/api/drops')).reasons).filter(([reason]) => DENIAL_REASONS.includes(reason)));

test('pods of one VN reach each other; a pod that uses a service reaches its ClusterIP; other traffic between VNs is denied and counted', { skip }, async (t) => {
  const web2 = states.get('web-2')!.ip;
  assert.ok(await succeeds('web-1', ['ping', '-c', '1', '-W', '2', web2]), 'web-1 -> web-2 (same VN)');
  assert.equal(await httpGet('web-1', web2, 8080), 'web-2');

  assert.equal(await httpGet('client', DB_CLUSTER_IP, DB_SERVICE_PORT), 'db-1', 'client -> db ClusterIP');

  // Without `uses` the VNs share no route: the vrouter drops for no-route; where a route exists but the
  // policy does not allow the port (the backend's own address), for the flow's deny (flow-action-drop).
  const denied: Array<[string, string, number, string]> = [
    ['client', states.get('web-1')!.ip, 8080, 'client -> web-1: no uses'],
    ['web-1', DB_CLUSTER_IP, DB_SERVICE_PORT, 'web-1 -> db ClusterIP: no uses'],
    ['client', states.get('db-1')!.ip, DB_TARGET_PORT, 'client -> db-1 pod address: only the ClusterIP is allowed'],
  ];
  for (const [from, ip, port, what] of denied) {
    const before = await denials();
    assert.ok(await httpFails(from, ip, port), what);
    const after = await denials();
    const counted = Object.keys(after).filter((reason) => after[reason] > (before[reason] ?? 0));
    t.diagnostic(`${what}: dropped as ${counted.map((reason) => `${reason} +${after[reason] - (before[reason] ?? 0)}`).join(', ')}`);
    assert.ok(counted.length > 0 && counted.every((reason) => DENIAL_REASONS.includes(reason)), `${what}: counted under ${DENIAL_REASONS.join(' or ')}: ${JSON.stringify({ before, after })}`);
  }
});

test('deleting the pods: containerd calls DEL, and no port, veth, address or namespace is left', { skip }, async () => {
  const bed = testbed!;
  const netnsBefore = fs.readdirSync('/var/run/netns').filter((name) => name.startsWith('cni-'));
  assert.ok(netnsBefore.length >= POD_NAMES.length, `containerd made the sandboxes' namespaces: ${netnsBefore.join(', ')}`);
  await kubectl(['delete', 'pods', '-n', NS, '--all', '--grace-period=0', '--force', '--wait=false']);
  await bed.waitFor('the CNI DELs: no attachment left', 90_000, async () => fs.readdirSync(bed.cniStateDir).length === 0);
  await bed.waitFor('the agent without ports', 30_000, async () => ((await agentGet('/ports')) as unknown[]).length === 0);
  const links = await bed.topology.exec(vrouter.ns, ['ip', '-o', 'link', 'show']);
  for (const name of POD_NAMES) assert.doesNotMatch(links, new RegExp(hostInterfaceName('eth0', states.get(name)!.uid)), `${name}: its host veth is gone`);
  await bed.waitFor('the manager without the pods (addresses freed)', 30_000, async () => {
    const registered = JSON.parse(await bed.exec(['curl', '-sf', `http://${POD_API}/pods`])) as Array<{ namespace: string }>;
    return !registered.some((entry) => entry.namespace === NS);
  });
  await bed.waitFor('the sandboxes\u2019 namespaces removed', 60_000, async () =>
    !fs.readdirSync('/var/run/netns').some((name) => netnsBefore.includes(name)),
  );
  const vmPortFiles = path.join(bed.dir, `vrouter-${bed.nodeName}.ports`, 'vm');
  assert.deepEqual(fs.existsSync(vmPortFiles) ? fs.readdirSync(vmPortFiles) : [], [], 'no POST /vm port file left');
});

test('stopping the node leaves no process, mount, cgroup, netns or file behind', { skip }, async () => {
  const bed = testbed!;
  await bed.stop();
  assert.deepEqual(bed.leftovers(), []);
});
