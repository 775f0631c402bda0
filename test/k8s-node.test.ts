/**
 * A real Kubernetes node (test/support/k8s-testbed.ts: etcd, kube-apiserver,
 * kube-controller-manager, kube-scheduler, containerd + runc, kubelet 1.20.2)
 * becomes Ready, and a pod created with kubectl gets its network from the
 * real vrouter-cni binary, called by containerd's CRI: eth0 in the sandbox's
 * namespace with the address the agent gave, which the kubelet reports as the
 * pod IP. The agent is the STAND-IN of the conformance test, replaying the
 * OpenContrail agent's answers (see contrail-agent-standin.ts), until
 * vrouter-ts's own agent serves the port API; it is configured with the pod
 * once the pod exists, as kube-manager would, and the plugin's ADD polls for
 * it meanwhile. Deleting the pod makes containerd call DEL, which removes the
 * port; stopping the node leaves nothing behind.
 *
 * Needs the binaries of `bash scripts/k8s/build.sh` (about 4 minutes, cached)
 * and runs only with VROUTER_K8S=1.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { K8sTestbed, BUSYBOX_IMAGE, DEFAULT_CACHE, testbedBinariesMissing } from './support/k8s-testbed';
import { AgentStandinProcess, standinPod } from './support/cni-harness';
import { hostInterfaceName } from '../src/cni/links';
import { TUNNEL_OVERHEAD } from '../src/cni/plugin';
import { AGENT_PORT_API_PORT } from '../src/cni/agent-api-types';

const enabled = process.env.VROUTER_K8S === '1';
const skip = enabled
  ? false
  : `set VROUTER_K8S=1 to run against a real kubelet and containerd (binaries from bash scripts/k8s/build.sh in ${DEFAULT_CACHE})`;
if (enabled) {
  const missing = testbedBinariesMissing();
  if (missing.length > 0) throw new Error(`VROUTER_K8S=1 but the testbed is not built (missing ${missing.join(', ')}): run bash scripts/k8s/setup.sh && bash scripts/k8s/build.sh`);
  if (process.getuid?.() !== 0) throw new Error('the Kubernetes testbed needs root');
}

let testbed: K8sTestbed | undefined;
let agent: AgentStandinProcess;
const POD_IP = '10.32.0.21';

before(async () => {
  if (!enabled) return;
  testbed = await K8sTestbed.start({
    cniPlugin: { type: 'vrouter-cni', contrail: { 'poll-timeout': 0.2, 'poll-retries': 100 } },
    beforeNode: async (bed) => {
      agent = await AgentStandinProcess.start(bed.topology, bed.ns, AGENT_PORT_API_PORT);
    },
  });
});

after(async () => {
  await agent?.stop();
  await testbed?.stop();
});

const podManifest = (name: string) =>
  JSON.stringify({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: 'default' },
    spec: {
      terminationGracePeriodSeconds: 1,
      containers: [{ name: 'sh', image: BUSYBOX_IMAGE, imagePullPolicy: 'Never', command: ['sleep', '3600'] }],
    },
  });

test('the node registers and becomes Ready', { skip }, async () => {
  const bed = testbed!;
  const nodes = JSON.parse(await bed.kubectl(['get', 'nodes', '-o', 'json'])) as { items: Array<{ metadata: { name: string }; status: { nodeInfo: { kubeletVersion: string; containerRuntimeVersion: string }; addresses: Array<{ type: string; address: string }> } }> };
  assert.equal(nodes.items.length, 1);
  const [node] = nodes.items;
  assert.equal(node.metadata.name, bed.nodeName);
  assert.equal(node.status.nodeInfo.kubeletVersion, 'v1.20.2');
  assert.match(node.status.nodeInfo.containerRuntimeVersion, /^containerd:\/\//);
  assert.deepEqual(node.status.addresses.find((a) => a.type === 'InternalIP')?.address, bed.nodeAddress);
});

test('a pod created with kubectl gets eth0, its address and MTU from vrouter-cni through containerd', { skip }, async () => {
  const bed = testbed!;
  await bed.kubectl(['apply', '-f', '-'], { input: podManifest('web-1') });
  const uid = (await bed.kubectl(['get', 'pod', 'web-1', '-o', 'jsonpath={.metadata.uid}'])).trim();
  // The network manager's part, for now: the agent learns the pod's interface.
  const pod = standinPod({ namespace: 'default', name: 'web-1', uid, vmiUuid: 'c0ffee00-1111-4222-8333-444455556666', ip: POD_IP, mac: '02:c0:ff:ee:00:21' });
  await agent.configure(pod);
  await bed.waitFor('pod web-1 Running', 90_000, async () => (await bed.kubectl(['get', 'pod', 'web-1', '-o', 'jsonpath={.status.phase}'])).trim() === 'Running');
  assert.equal((await bed.kubectl(['get', 'pod', 'web-1', '-o', 'jsonpath={.status.podIP}'])).trim(), POD_IP, 'kubelet reports the address from the CNI result');

  const requests = await agent.requests();
  const post = requests.find((r) => r.method === 'POST' && r.path === '/vm' && r.status === 200);
  assert.ok(post, `containerd's ADD reached the agent: ${JSON.stringify(requests.map((r) => [r.method, r.path, r.status]))}`);
  const port = JSON.parse(post.body) as Record<string, string>;
  assert.equal(port['vm-uuid'], uid);
  assert.equal(port['vm-name'], 'k8s__default__web-1');
  assert.match(port['vm-namespace'], /^\/var\/run\/netns\/cni-[0-9a-f-]+$/, 'CNI_NETNS from containerd');
  assert.equal(port['host-ifname'], hostInterfaceName('eth0', uid));

  // Inside the pod, as its own processes see it.
  const inPod = await bed.kubectl(['exec', 'web-1', '--', 'ip', '-4', '-o', 'address', 'show', 'dev', 'eth0']);
  assert.match(inPod, new RegExp(`inet ${POD_IP.replace(/\./g, '\\.')}/12 `));
  const mtu = (await bed.kubectl(['exec', 'web-1', '--', 'cat', '/sys/class/net/eth0/mtu'])).trim();
  assert.equal(Number(mtu), 1500 - TUNNEL_OVERHEAD);
  const route = await bed.kubectl(['exec', 'web-1', '--', 'ip', 'route', 'show', 'default']);
  assert.match(route, /default via 10\.47\.255\.254 dev eth0/);
  assert.ok((await bed.exec(['ip', '-o', 'link', 'show', 'dev', port['host-ifname']])).includes('state UP'), 'the host end is up in the node namespace');
});

test('deleting the pod makes containerd call DEL: the port and the veth go', { skip }, async () => {
  const bed = testbed!;
  const uid = (await bed.kubectl(['get', 'pod', 'web-1', '-o', 'jsonpath={.metadata.uid}'])).trim();
  await bed.kubectl(['delete', 'pod', 'web-1', '--wait=false']);
  let log: Array<{ method: string; path: string }> = [];
  await bed.waitFor('DELETE /vm from the CNI DEL', 60_000, async () => {
    log = log.concat(await agent.requests());
    return log.some((r) => r.method === 'DELETE' && r.path === `/vm/${uid}`);
  });
  const links = await bed.exec(['ip', '-o', 'link', 'show']);
  assert.doesNotMatch(links, new RegExp(hostInterfaceName('eth0', uid)));
});

test('stopping the node leaves no process, mount, cgroup, netns or file behind', { skip }, async () => {
  const bed = testbed!;
  await agent.stop();
  await bed.stop();
  assert.deepEqual(bed.leftovers(), []);
});
