/**
 * KubeNetworkSource (src/control/node/kube/kube-source.ts) on a real
 * ControlNode, its informers replaced by a plain list of objects: pods are
 * registered on their node's vrouter and unregistered when they go, the
 * configuration follows the services, each pod is annotated once with what
 * it got, a failed annotation is written again, and registrations kept
 * from before a restart for pods that are gone are removed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { ControlNode } from '../src/control/node/control-node';
import { silentLogger } from '../src/control/xmpp/logger';
import { parseNetworkConfig } from '../src/control/node/network-config';
import { KubeNetworkSource } from '../src/control/node/kube/kube-source';
import type { KubeWatcher } from '../src/control/node/kube/informers';
import { ClusterObjects, POD_STATE_ANNOTATION, interfaceUuid } from '../src/control/node/kube/mapping';

const OPTIONS = { podSubnet: '10.32.0.0/16', serviceSubnet: '10.96.0.0/16' };

class ListedObjects {
  cluster: ClusterObjects = { namespaces: [{ metadata: { name: 'shop' } }], pods: [], services: [], endpoints: [] };
  readonly annotated: Array<{ pod: string; value: string }> = [];
  failNext = 0;
  readonly synced = true;

  objects(): ClusterObjects {
    return this.cluster;
  }
  watcher(): KubeWatcher {
    return this as unknown as KubeWatcher;
  }
  async annotatePod(namespace: string, name: string, annotations: Record<string, string>): Promise<void> {
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error('apiserver unavailable');
    }
    this.annotated.push({ pod: `${namespace}/${name}`, value: annotations[POD_STATE_ANNOTATION] });
    // What the pod's update event brings back.
    const pod = this.cluster.pods.find((entry) => entry.metadata?.namespace === namespace && entry.metadata?.name === name)!;
    pod.metadata!.annotations = { ...pod.metadata!.annotations, ...annotations };
  }
  readonly ingress: Array<{ service: string; ip: string | null }> = [];
  async setLoadBalancerIngress(namespace: string, name: string, ip: string | null): Promise<void> {
    this.ingress.push({ service: `${namespace}/${name}`, ip });
    // What the service's update event brings back.
    const service = this.cluster.services.find((entry) => entry.metadata?.namespace === namespace && entry.metadata?.name === name)!;
    service.status = { loadBalancer: { ingress: ip === null ? [] : [{ ip }] } };
  }
  async stop(): Promise<void> {}
}

const pod = (name: string, node: string, labels: Record<string, string>) => ({ metadata: { name, namespace: 'shop', uid: `uid-${name}`, labels }, spec: { nodeName: node } });

test('pods registered on their node, unregistered when gone; services applied; annotations written once, again after a failure', async () => {
  const node = new ControlNode({ config: parseNetworkConfig(JSON.stringify({ defaultVn: 'fallback', vns: [{ name: 'fallback', subnet: '192.168.0.0/24' }] }), 'test') });
  const listed = new ListedObjects();
  listed.cluster.pods.push(pod('redis-1', 'node-b', { name: 'redis', app: 'redis' }), pod('web-1', 'node-a', { app: 'web' }));
  listed.cluster.services.push({ metadata: { name: 'redis', namespace: 'shop' }, spec: { clusterIP: '10.96.0.30', selector: { app: 'redis' }, ports: [{ port: 6379 }] } });
  listed.failNext = 1;
  const source = new KubeNetworkSource(node, parseNetworkConfig(JSON.stringify({ defaultVn: 'fallback', vns: [{ name: 'fallback', subnet: '192.168.0.0/24' }] }), 'test'), OPTIONS, silentLogger);
  // Kept from before a restart (a registration store): a pod deleted meanwhile, and a registration not of this source.
  node.registerPod('node-a', { id: interfaceUuid('uid-deleted'), vmUuid: 'uid-deleted', name: 'deleted', namespace: 'shop', labels: {}, mac: '02:00:00:00:00:09', label: 0 });
  node.registerPod('node-a', { id: 'cni-port', vmUuid: 'vm-cni', name: 'other', namespace: 'default', labels: {}, mac: '02:00:00:00:00:0a', label: 0 });
  try {
    source.attach(listed.watcher());
    await sleep(100);
    const registered = new Map(node.registeredPods().map((entry) => [entry.port.name, entry]));
    assert.deepEqual([...registered.keys()].sort(), ['other', 'redis-1', 'web-1'], 'the deleted pod\u2019s registration is gone, the other kept');
    assert.equal(registered.get('redis-1')!.vrouter, 'node-b');
    assert.equal(registered.get('redis-1')!.port.id, interfaceUuid('uid-redis-1'));
    const redis = registered.get('redis-1')!.outcome;
    assert.ok('config' in redis);
    assert.deepEqual(redis.config.floatingIps, [{ ip: '10.96.0.30', portMap: [{ protocol: 'tcp', port: 6379, targetPort: 6379 }] }]);
    assert.equal(redis.config.vn, 'shop:redis');
    assert.equal(listed.annotated.length, 1, 'one annotation written, the other failed');

    await sleep(1_200);
    assert.deepEqual(listed.annotated.map((entry) => entry.pod).sort(), ['shop/redis-1', 'shop/web-1'], 'the failed one written again');
    const state = JSON.parse(listed.annotated.find((entry) => entry.pod === 'shop/redis-1')!.value) as Record<string, string>;
    assert.deepEqual(state, { uuid: interfaceUuid('uid-redis-1'), macAddress: registered.get('redis-1')!.port.mac, ipAddress: redis.config.ip, gateway: '10.32.0.1' });

    // Events that change nothing write nothing.
    source.changed();
    await sleep(100);
    assert.equal(listed.annotated.length, 2);

    listed.cluster.pods = listed.cluster.pods.filter((entry) => entry.metadata?.name !== 'redis-1');
    listed.cluster.services = [];
    source.changed();
    await sleep(100);
    assert.deepEqual(node.registeredPods().map((entry) => entry.port.name).sort(), ['other', 'web-1']);
    assert.equal(source.status().pods, 1);
  } finally {
    await source.close();
    await node.close();
  }
});

test('a LoadBalancer service gets an address of the external pool on its backends, written once to its status.loadBalancer.ingress', async () => {
  const base = parseNetworkConfig(JSON.stringify({
    defaultVn: 'fallback',
    vns: [{ name: 'fallback', subnet: '192.168.0.0/24' }],
    external: { name: 'public', subnet: '203.0.113.0/24', loadBalancerPool: '203.0.113.128/25', gateways: [{ vrouter: 'gw' }] },
  }), 'test');
  const node = new ControlNode({ config: base });
  const listed = new ListedObjects();
  listed.cluster.pods.push(pod('web-1', 'node-a', { app: 'web' }));
  listed.cluster.services.push(
    { metadata: { name: 'web', namespace: 'shop' }, spec: { clusterIP: '10.96.0.31', type: 'LoadBalancer', selector: { app: 'web' }, ports: [{ port: 80 }] } },
    { metadata: { name: 'plain', namespace: 'shop' }, spec: { clusterIP: '10.96.0.32', selector: { app: 'web' }, ports: [{ port: 81 }], externalIPs: ['203.0.113.10'] } },
  );
  const source = new KubeNetworkSource(node, base, OPTIONS, silentLogger);
  try {
    source.attach(listed.watcher());
    await sleep(100);
    const [web] = node.registeredPods();
    assert.ok('config' in web.outcome);
    assert.deepEqual(web.outcome.config.floatingIps.filter((fip) => fip.vn === 'public').map((fip) => fip.ip), ['203.0.113.10', '203.0.113.128']);
    assert.deepEqual(listed.ingress, [{ service: 'shop/web', ip: '203.0.113.128' }], 'only the LoadBalancer service has its status written');
    source.changed();
    await sleep(100);
    assert.equal(listed.ingress.length, 1, 'a status that is already right is not written again');
  } finally {
    await source.close();
    await node.close();
  }
});
