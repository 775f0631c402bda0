/**
 * vrouter-control as kube-manager against a real kube-apiserver 1.20.2 and
 * Debian's etcd (test/support/k8s-testbed.ts, control plane only: pods are
 * created with spec.nodeName, so no scheduler or kubelet is needed).
 * vrouter-control runs as its own process (`--kubeconfig`) in the testbed's
 * namespace; its decisions are read on its pod API (GET /pods) and on the
 * pods' `opencontrail.org/pod-state` annotations.
 *
 * Namespaces, pods, services with selectors and ports and `uses` labels
 * give a VN per pod, addresses from the pod subnet, ClusterIP floating IPs
 * with port maps on the backends, annotations; service, label and pod
 * changes and a namespace deletion converge; an apiserver restart and a
 * vrouter-control restart (with changes made while it was down) lose
 * nothing and duplicate nothing.
 *
 * Needs `bash scripts/k8s/build.sh` (kube-apiserver, kubectl) and runs only with VROUTER_K8S=1.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { K8sTestbed, DEFAULT_CACHE, controlPlaneBinariesMissing } from './support/k8s-testbed';
import { POD_STATE_ANNOTATION } from '../src/control/node/kube/mapping';

const enabled = process.env.VROUTER_K8S === '1';
const skip = enabled ? false : `set VROUTER_K8S=1 to run against a real kube-apiserver (binaries from bash scripts/k8s/build.sh in ${DEFAULT_CACHE})`;
if (enabled) {
  const missing = controlPlaneBinariesMissing();
  if (missing.length > 0) throw new Error(`VROUTER_K8S=1 but the testbed is not built (missing ${missing.join(', ')}): run bash scripts/k8s/build.sh`);
  if (process.getuid?.() !== 0) throw new Error('the Kubernetes testbed needs root');
}

const API = 'http://127.0.0.1:18090';
const POD_SUBNET = '10.32.0.0/16';
const GATEWAY = '10.32.0.1';

interface ListedPod {
  vrouter: string;
  vmUuid: string;
  vmiUuid: string;
  name: string;
  namespace: string;
  mac: string;
  vn?: string;
  ip?: string;
  floatingIps?: Array<{ ip: string; portMap: Array<{ protocol: string; port: number; targetPort: number }> }>;
  refused?: string;
}

let testbed: K8sTestbed | undefined;
let control: ChildProcess | undefined;

function startControl(bed: K8sTestbed): ChildProcess {
  const log = fs.openSync(path.join(bed.dir, 'logs', 'vrouter-control.log'), 'a');
  const child = spawn(
    'nsenter',
    [`--net=${bed.nsPath}`, process.execPath, path.resolve(__dirname, '../../bin/vrouter-control.js'),
      `--kubeconfig=${bed.kubeconfig}`, '--listen=127.0.0.1:15269', `--api=${API.slice('http://'.length)}`, `--pod-subnet=${POD_SUBNET}`, '--service-subnet=10.96.0.0/16'],
    { stdio: ['ignore', log, log] },
  );
  fs.closeSync(log);
  return child;
}

async function stopControl(): Promise<void> {
  const child = control;
  control = undefined;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

before(async () => {
  if (!enabled) return;
  testbed = await K8sTestbed.start({ controlPlaneOnly: true, cniPlugin: { type: 'vrouter-cni' } });
  control = startControl(testbed);
});

after(async () => {
  await stopControl();
  await testbed?.stop();
});

async function listed(): Promise<Map<string, ListedPod>> {
  const pods = JSON.parse(await testbed!.exec(['curl', '-sf', `${API}/pods`])) as ListedPod[];
  const byName = new Map(pods.map((pod) => [`${pod.namespace}/${pod.name}`, pod]));
  assert.equal(byName.size, pods.length, `each pod registered once: ${pods.map((pod) => `${pod.namespace}/${pod.name}`).join(', ')}`);
  return byName;
}

async function annotations(): Promise<Map<string, Record<string, string>>> {
  const list = JSON.parse(await testbed!.kubectl(['get', 'pods', '--all-namespaces', '-o', 'json'])) as {
    items: Array<{ metadata: { name: string; namespace: string; annotations?: Record<string, string> } }>;
  };
  const result = new Map<string, Record<string, string>>();
  for (const item of list.items) {
    const text = item.metadata.annotations?.[POD_STATE_ANNOTATION];
    if (text !== undefined) result.set(`${item.metadata.namespace}/${item.metadata.name}`, JSON.parse(text) as Record<string, string>);
  }
  return result;
}

/** Retries `check` until it stops throwing. */
async function eventually(what: string, check: () => Promise<void>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) throw new Error(`${what}: ${(error as Error).message}`);
      await sleep(200);
    }
  }
}

const apply = (objects: object[]) => testbed!.kubectl(['apply', '-f', '-'], { input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }) });
const namespace = (name: string) => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
const pod = (ns: string, name: string, node: string, labels: Record<string, string>, extra: Record<string, unknown> = {}) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: ns, labels },
  spec: { nodeName: node, containers: [{ name: 'c', image: 'busybox' }], ...extra },
});
const service = (ns: string, name: string, clusterIP: string, selector: Record<string, string>, ports: object[]) => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name, namespace: ns },
  spec: { clusterIP, selector, ports },
});
const forceDelete = (...args: string[]) => testbed!.kubectl(['delete', ...args, '--grace-period=0', '--force', '--wait=false']);

const fips = (entry: ListedPod | undefined) => (entry?.floatingIps ?? []).map((fip) => `${fip.ip} ${fip.portMap.map((m) => `${m.protocol}/${m.port}->${m.targetPort}`).join(',')}`);

/** Every listed pod is configured, with a unique address of the pod subnet, and annotated with its interface. */
async function assertConsistent(pods: Map<string, ListedPod>): Promise<void> {
  const addresses = new Set<string>();
  for (const [key, entry] of pods) {
    assert.equal(entry.refused, undefined, `${key} configured`);
    assert.match(entry.ip!, /^10\.32\.\d+\.\d+$/, `${key} address of the pod subnet`);
    assert.ok(!addresses.has(entry.ip!), `${key}: ${entry.ip} given once`);
    addresses.add(entry.ip!);
  }
  const annotated = await annotations();
  for (const [key, entry] of pods) {
    assert.deepEqual(annotated.get(key), { uuid: entry.vmiUuid, macAddress: entry.mac, ipAddress: entry.ip, gateway: GATEWAY }, `${key} annotation`);
  }
}

test('namespaces, pods and services become VNs, addresses, floating IPs with port maps, and pod annotations', { skip }, async () => {
  await apply([
    namespace('shop'),
    namespace('other'),
    pod('shop', 'web-1', 'node-a', { name: 'web', app: 'web', uses: 'redis' }),
    pod('shop', 'web-2', 'node-b', { name: 'web', app: 'web', uses: 'redis' }),
    pod('shop', 'redis-1', 'node-b', { name: 'redis', app: 'redis' }),
    pod('shop', 'plain', 'node-a', {}),
    pod('shop', 'host', 'node-a', { app: 'redis' }, { hostNetwork: true }),
    pod('other', 'redis-lookalike', 'node-a', { app: 'redis' }),
    service('shop', 'redis', '10.96.0.30', { app: 'redis' }, [{ name: 'redis', protocol: 'TCP', port: 6379, targetPort: 16379 }]),
    service('shop', 'web', '10.96.0.31', { app: 'web' }, [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080 }]),
  ]);
  await eventually('the first pods configured and annotated', async () => {
    const pods = await listed();
    assert.deepEqual([...pods.keys()].sort(), ['other/redis-lookalike', 'shop/plain', 'shop/redis-1', 'shop/web-1', 'shop/web-2'], 'hostNetwork pods get nothing');
    assert.deepEqual(
      Object.fromEntries([...pods].map(([key, entry]) => [key, { vrouter: entry.vrouter, vn: entry.vn, fips: fips(entry) }])),
      {
        'other/redis-lookalike': { vrouter: 'node-a', vn: 'other:default-network', fips: [] },
        'shop/plain': { vrouter: 'node-a', vn: 'shop:default-network', fips: [] },
        'shop/redis-1': { vrouter: 'node-b', vn: 'shop:redis', fips: ['10.96.0.30 tcp/6379->16379'] },
        'shop/web-1': { vrouter: 'node-a', vn: 'shop:web', fips: ['10.96.0.31 tcp/80->8080'] },
        'shop/web-2': { vrouter: 'node-b', vn: 'shop:web', fips: ['10.96.0.31 tcp/80->8080'] },
      },
    );
    const uid = (await testbed!.kubectl(['get', 'pod', '-n', 'shop', 'web-1', '-o', 'jsonpath={.metadata.uid}'])).trim();
    assert.equal(pods.get('shop/web-1')!.vmUuid, uid, 'the VM is the pod');
    await assertConsistent(pods);
  });
});

test('backends scaled, a label changed, service ports changed, a service and a pod deleted: all converge', { skip }, async () => {
  const earlier = await listed();
  await apply([pod('shop', 'redis-2', 'node-a', { name: 'redis', app: 'redis' })]);
  await testbed!.kubectl(['label', 'pod', '-n', 'shop', 'web-2', 'app=other', 'name=moved', '--overwrite']);
  await testbed!.kubectl(['patch', 'service', '-n', 'shop', 'redis', '--type=merge', '-p', JSON.stringify({ spec: { ports: [{ name: 'redis', protocol: 'TCP', port: 6379, targetPort: 16380 }] } })]);
  await testbed!.kubectl(['delete', 'service', '-n', 'shop', 'web']);
  await forceDelete('pod', '-n', 'shop', 'plain');
  await eventually('the changes applied', async () => {
    const pods = await listed();
    assert.deepEqual([...pods.keys()].sort(), ['other/redis-lookalike', 'shop/redis-1', 'shop/redis-2', 'shop/web-1', 'shop/web-2']);
    assert.deepEqual(fips(pods.get('shop/redis-1')), ['10.96.0.30 tcp/6379->16380']);
    assert.deepEqual(fips(pods.get('shop/redis-2')), ['10.96.0.30 tcp/6379->16380']);
    assert.deepEqual(fips(pods.get('shop/web-1')), [], 'the deleted service is gone');
    assert.equal(pods.get('shop/web-2')!.vn, 'shop:moved', 'a name label change moves the pod');
    assert.equal(pods.get('shop/redis-1')!.ip, earlier.get('shop/redis-1')!.ip, 'unchanged pods keep their address');
    await assertConsistent(pods);
  });
});

test('an apiserver restart loses no event: changes made right after it are seen', { skip }, async (t) => {
  const earlier = await listed();
  await testbed!.restartApiserver();
  await apply([pod('shop', 'redis-3', 'node-b', { name: 'redis', app: 'redis' })]);
  await forceDelete('pod', '-n', 'shop', 'redis-2');
  await eventually('the changes after the restart applied', async () => {
    const pods = await listed();
    assert.deepEqual([...pods.keys()].sort(), ['other/redis-lookalike', 'shop/redis-1', 'shop/redis-3', 'shop/web-1', 'shop/web-2']);
    assert.deepEqual(fips(pods.get('shop/redis-3')), ['10.96.0.30 tcp/6379->16380']);
    for (const key of ['shop/redis-1', 'shop/web-1', 'shop/web-2']) assert.equal(pods.get(key)!.ip, earlier.get(key)!.ip, `${key} keeps its address`);
    await assertConsistent(pods);
  });
  // Whether the informers watched on from their resourceVersion or were told 410 Gone and listed again depends on the new apiserver's watch cache.
  const log = fs.readFileSync(path.join(testbed!.dir, 'logs', 'vrouter-control.log'), 'utf8');
  t.diagnostic(`re-lists after 410 Gone: ${log.split('\n').filter((line) => line.includes('listed again')).length}, watch failures retried: ${log.split('\n').filter((line) => line.includes('failed (')).length}`);
});

test('a vrouter-control restart re-lists and converges: what changed while it was down is applied, addresses kept, nothing duplicated', { skip }, async () => {
  const earlier = await listed();
  await stopControl();
  await forceDelete('pod', '-n', 'shop', 'redis-3');
  await apply([pod('shop', 'late', 'node-a', { name: 'web', app: 'web' }), service('shop', 'web', '10.96.0.31', { app: 'web' }, [{ protocol: 'TCP', port: 80, targetPort: 8081 }])]);
  await testbed!.kubectl(['label', 'pod', '-n', 'other', 'redis-lookalike', 'name=lookalike', '--overwrite']);
  control = startControl(testbed!);
  await eventually('the state after the restart', async () => {
    const pods = await listed();
    assert.deepEqual([...pods.keys()].sort(), ['other/redis-lookalike', 'shop/late', 'shop/redis-1', 'shop/web-1', 'shop/web-2']);
    for (const key of ['shop/redis-1', 'shop/web-1', 'shop/web-2', 'other/redis-lookalike']) {
      assert.equal(pods.get(key)!.ip, earlier.get(key)!.ip, `${key} keeps its address (from its annotation)`);
      assert.equal(pods.get(key)!.vmiUuid, earlier.get(key)!.vmiUuid, `${key} keeps its interface`);
    }
    assert.equal(pods.get('other/redis-lookalike')!.vn, 'other:lookalike');
    assert.deepEqual(fips(pods.get('shop/late')), ['10.96.0.31 tcp/80->8081']);
    assert.deepEqual(fips(pods.get('shop/web-1')), ['10.96.0.31 tcp/80->8081']);
    await assertConsistent(pods);
  });
});

test('a pod being deleted stops backing its service; a namespace being deleted takes its pods away', { skip }, async () => {
  await testbed!.kubectl(['delete', 'pod', '-n', 'shop', 'web-1', '--wait=false']);
  await eventually('the terminating pod out of the service', async () => {
    const pods = await listed();
    assert.ok(pods.has('shop/web-1'), 'its interface stays until the pod is gone');
    assert.deepEqual(fips(pods.get('shop/web-1')), []);
    assert.deepEqual(fips(pods.get('shop/late')), ['10.96.0.31 tcp/80->8081']);
  });
  // No namespace controller runs: the namespace stays Terminating, its objects in place.
  await testbed!.kubectl(['delete', 'namespace', 'shop', '--wait=false']);
  await eventually('the namespace\u2019s pods gone', async () => {
    const pods = await listed();
    assert.deepEqual([...pods.keys()], ['other/redis-lookalike']);
  });
});
