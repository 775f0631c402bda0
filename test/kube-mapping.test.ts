/**
 * The kube-manager mapping (src/control/node/kube/mapping.ts) on plain
 * Kubernetes objects, and what the control node's NetworkManager decides
 * from it: VN per pod from its `name` label (else its namespace's
 * default-network), addresses from the one pod subnet, ClusterIPs as
 * floating IPs with port maps on the backends of the service's own
 * namespace, `uses` opening only that service's ports.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ClusterObjects, KubePod, KubeService, POD_STATE_ANNOTATION, interfaceUuid, mapCluster, podStateAnnotation } from '../src/control/node/kube/mapping';
import { NetworkManager } from '../src/control/node/network-manager';
import { parseNetworkConfig } from '../src/control/node/network-config';
import { runControlNode } from '../src/control/node/cli';
import { silentLogger } from '../src/control/xmpp/logger';

const OPTIONS = { podSubnet: '10.32.0.0/16', serviceSubnet: '10.96.0.0/16' };

function namespace(name: string, deleting = false) {
  return { metadata: { name, uid: `ns-${name}`, ...(deleting ? { deletionTimestamp: '2026-12-04T00:00:00Z' } : {}) } };
}
function pod(ns: string, name: string, labels: Record<string, string>, extra: Partial<KubePod> = {}): KubePod {
  return { metadata: { name, namespace: ns, uid: `uid-${ns}-${name}`, labels, ...extra.metadata }, spec: { nodeName: 'node-a', ...extra.spec }, status: extra.status };
}
function service(ns: string, name: string, clusterIP: string, selector: Record<string, string> | undefined, ports: NonNullable<KubeService['spec']>['ports']): KubeService {
  return { metadata: { name, namespace: ns, uid: `svc-${ns}-${name}` }, spec: { clusterIP, ...(selector ? { selector } : {}), ports } };
}

function cluster(): ClusterObjects {
  return {
    namespaces: [namespace('shop'), namespace('other'), namespace('leaving', true)],
    pods: [
      pod('shop', 'web-1', { name: 'web', app: 'web', uses: 'redis' }),
      pod('shop', 'redis-1', { name: 'redis', app: 'redis' }),
      pod('shop', 'plain', {}),
      pod('other', 'redis-lookalike', { app: 'redis' }),
      pod('shop', 'host', { app: 'redis' }, { spec: { hostNetwork: true } }),
      pod('shop', 'pending', { app: 'redis' }, { spec: { nodeName: undefined } }),
      pod('shop', 'done', { app: 'redis' }, { status: { phase: 'Succeeded' } }),
      pod('leaving', 'gone', { app: 'redis' }),
    ],
    services: [
      service('shop', 'redis', '10.96.0.30', { app: 'redis' }, [{ name: 'redis', protocol: 'TCP', port: 6379, targetPort: 16379 }]),
      service('shop', 'web', '10.96.0.31', { app: 'web' }, [{ name: 'http', port: 80, targetPort: 'http' }, { name: 'sctp', protocol: 'SCTP', port: 9 }]),
      service('shop', 'external', '10.96.0.32', undefined, [{ port: 53, protocol: 'UDP' }]),
      service('leaving', 'redis', '10.96.0.33', { app: 'redis' }, [{ port: 6379 }]),
    ],
    endpoints: [
      { metadata: { name: 'web', namespace: 'shop' }, subsets: [{ addresses: [], ports: [{ name: 'http', port: 8080 }] }] },
      { metadata: { name: 'external', namespace: 'shop' }, subsets: [{ addresses: [{ ip: '10.32.0.9', targetRef: { kind: 'Pod', name: 'plain', namespace: 'shop', uid: 'uid-shop-plain' } }] }] },
    ],
  };
}

test('pods get their VN from the name label, else their namespace default-network; skipped objects are counted', () => {
  const network = mapCluster(cluster(), OPTIONS);
  const byName = new Map(network.pods.map((plan) => [`${plan.namespace}/${plan.name}`, plan]));
  assert.deepEqual([...byName.keys()].sort(), ['other/redis-lookalike', 'shop/plain', 'shop/redis-1', 'shop/web-1']);
  assert.equal(byName.get('shop/web-1')!.port.vn, 'shop:web');
  assert.equal(byName.get('shop/plain')!.port.vn, 'shop:default-network');
  assert.equal(byName.get('other/redis-lookalike')!.port.vn, 'other:default-network');
  assert.equal(byName.get('shop/web-1')!.vrouter, 'node-a');
  assert.equal(byName.get('shop/web-1')!.port.vmUuid, 'uid-shop-web-1');
  assert.equal(byName.get('shop/web-1')!.port.id, interfaceUuid('uid-shop-web-1'));
  assert.match(interfaceUuid('x'), /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  const vns = new Map(network.vns.map((vn) => [vn.name, vn.subnet]));
  assert.deepEqual(Object.fromEntries(vns), {
    'other:default-network': '10.32.0.0/16',
    'shop:default-network': '10.32.0.0/16',
    'shop:redis': '10.32.0.0/16',
    'shop:service-default': '10.96.0.0/16',
    'shop:web': '10.32.0.0/16',
  });
  assert.deepEqual(Object.fromEntries(network.skipped), {
    'pod with hostNetwork': 1,
    'pod not scheduled': 1,
    'pod finished': 1,
    'pod of a namespace being deleted': 1,
    'service of a namespace being deleted': 1,
    'service port of protocol SCTP': 1,
  });
});

test('services: backends of their own namespace only, named target ports from Endpoints, selector-less from Endpoints', () => {
  const network = mapCluster(cluster(), OPTIONS);
  assert.deepEqual(
    network.services.map(({ name, clusterIp, ports }) => ({ name, clusterIp, ports })),
    [
      { name: 'shop/external', clusterIp: '10.96.0.32', ports: [{ protocol: 'udp', port: 53, targetPort: 53 }] },
      { name: 'shop/redis', clusterIp: '10.96.0.30', ports: [{ protocol: 'tcp', port: 6379, targetPort: 16379 }] },
      { name: 'shop/web', clusterIp: '10.96.0.31', ports: [{ protocol: 'tcp', port: 80, targetPort: 8080 }] },
    ],
  );
  const manager = managerFor(network);
  const floating = (name: string) => {
    const plan = network.pods.find((entry) => entry.name === name)!;
    const outcome = manager.outcomeOf(plan.vrouter, plan.port.id)!;
    assert.ok('config' in outcome, name);
    return outcome.config.floatingIps;
  };
  assert.deepEqual(floating('redis-1'), [{ ip: '10.96.0.30', portMap: [{ protocol: 'tcp', port: 6379, targetPort: 16379 }] }]);
  assert.deepEqual(floating('web-1'), [{ ip: '10.96.0.31', portMap: [{ protocol: 'tcp', port: 80, targetPort: 8080 }] }]);
  assert.deepEqual(floating('plain'), [{ ip: '10.96.0.32', portMap: [{ protocol: 'udp', port: 53, targetPort: 53 }] }]);
  assert.deepEqual(floating('redis-lookalike'), [], 'a service selects in its own namespace only');
});

test('uses opens the used service ports from the user VN, addresses are unique across VNs of the pod subnet', () => {
  const network = mapCluster(cluster(), OPTIONS);
  const manager = managerFor(network);
  assert.deepEqual(
    manager.policyRules.map(({ sourceVn, destinationVn, protocol, portFrom, portTo, destinationPrefix, action }) => ({ sourceVn, destinationVn, protocol, portFrom, portTo, destinationPrefix, action })),
    [{ sourceVn: 'shop:web', destinationVn: 'shop:redis', protocol: 'tcp', portFrom: 6379, portTo: 6379, destinationPrefix: '10.96.0.30/32', action: 'allow' }],
  );
  const addresses = [...manager.configuredPorts()].map(({ config }) => config.ip);
  assert.equal(new Set(addresses).size, 4);
  for (const address of addresses) assert.match(address, /^10\.32\.0\.\d+$/);
});

test('the mapping is a function of the objects: any listing order gives the same result; an annotation keeps the address of its own interface only', () => {
  const objects = cluster();
  const reversed: ClusterObjects = {
    namespaces: [...objects.namespaces].reverse(),
    pods: [...objects.pods].reverse(),
    services: [...objects.services].reverse(),
    endpoints: [...objects.endpoints].reverse(),
  };
  const strip = (value: ReturnType<typeof mapCluster>) => JSON.stringify({ ...value, skipped: [...value.skipped].sort() });
  assert.equal(strip(mapCluster(reversed, OPTIONS)), strip(mapCluster(objects, OPTIONS)));

  const annotated = cluster();
  const web = annotated.pods[0];
  const state = { uuid: interfaceUuid('uid-shop-web-1'), macAddress: '02:00:00:00:00:01', ipAddress: '10.32.7.7', gateway: '10.32.0.1' };
  web.metadata!.annotations = { [POD_STATE_ANNOTATION]: podStateAnnotation(state) };
  const copied = annotated.pods[1];
  copied.metadata!.annotations = { [POD_STATE_ANNOTATION]: podStateAnnotation({ ...state, ipAddress: '10.32.7.8' }) };
  const plans = mapCluster(annotated, OPTIONS).pods;
  assert.equal(plans[0].name, 'web-1', 'pods keeping an address are registered first');
  assert.equal(plans[0].port.ip, '10.32.7.7');
  assert.equal(plans.find((plan) => plan.name === 'redis-1')!.port.ip, undefined, 'an annotation copied from another pod is not trusted');
  assert.equal(podStateAnnotation(state), '{"uuid":"' + state.uuid + '","macAddress":"02:00:00:00:00:01","ipAddress":"10.32.7.7","gateway":"10.32.0.1"}');
});

test('spec.externalIPs and type LoadBalancer become floating IPs in the external VN on the backends', () => {
  const objects = cluster();
  const [redis, web] = objects.services;
  redis.spec = { ...redis.spec, externalIPs: ['203.0.113.10', '2001:db8::10', '198.51.100.1'] };
  web.spec = { ...web.spec, type: 'LoadBalancer' };
  const network = mapCluster(objects, OPTIONS);
  const byName = new Map(network.services.map((entry) => [entry.name, entry]));
  assert.deepEqual(byName.get('shop/redis')!.externalIps, ['203.0.113.10', '198.51.100.1']);
  assert.equal(byName.get('shop/redis')!.loadBalancer, false);
  assert.equal(byName.get('shop/web')!.loadBalancer, true);
  assert.equal(network.skipped.get('service externalIP that is not IPv4'), 1);

  // With network.yaml's external network: an address outside its subnet gives nothing, the LoadBalancer the pool's first.
  const external = { name: 'public', subnet: '203.0.113.0/24', loadBalancerPool: '203.0.113.128/25', gateways: [{ vrouter: 'gw' }] };
  const manager = managerFor(network, external);
  const floating = (name: string) => {
    const plan = network.pods.find((entry) => entry.name === name)!;
    const outcome = manager.outcomeOf(plan.vrouter, plan.port.id)!;
    assert.ok('config' in outcome, name);
    return outcome.config.floatingIps.filter((fip) => fip.vn !== undefined).map(({ ip, vn }) => ({ ip, vn }));
  };
  assert.deepEqual(floating('redis-1'), [{ ip: '203.0.113.10', vn: 'public' }]);
  assert.deepEqual(floating('web-1'), [{ ip: '203.0.113.128', vn: 'public' }]);
  assert.equal(manager.loadBalancerIp('shop/web'), '203.0.113.128');
  // Without one, none.
  assert.deepEqual(managerFor(network).policyRules.filter((rule) => rule.sourceVn === 'public'), []);
});

function managerFor(network: ReturnType<typeof mapCluster>, external?: object): NetworkManager {
  const config = parseNetworkConfig(JSON.stringify({ defaultVn: 'fallback', vns: [{ name: 'fallback', subnet: '192.168.0.0/24' }], ...(external ? { external } : {}) }), 'test');
  for (const vn of network.vns) config.vns.set(vn.name, vn);
  config.services.push(...network.services);
  const manager = new NetworkManager(config);
  for (const plan of network.pods) manager.addPort(plan.vrouter, plan.port);
  return manager;
}

test('vrouter-control needs a configuration file or a cluster, and one way to reach the cluster', async () => {
  await assert.rejects(runControlNode(['--listen', '127.0.0.1:0'], silentLogger), /--config <file> is required without --kubeconfig or --in-cluster/);
  await assert.rejects(runControlNode(['--kubeconfig', '/nonexistent', '--in-cluster'], silentLogger), /exclude each other/);
  await assert.rejects(runControlNode(['--kubeconfig', '/nonexistent', '--pod-subnet', '10.32.0.0'], silentLogger), /--pod-subnet 10\.32\.0\.0 is not an IPv4 prefix/);
});

test('registering the pods together decides what registering them one by one does', () => {
  const network = mapCluster(cluster(), OPTIONS);
  const oneByOne = managerFor(network);
  const together = managerFor({ ...network, pods: [] });
  const outcomes = together.addPorts(network.pods.map(({ vrouter, port }) => ({ vrouter, port })));
  assert.deepEqual(outcomes, network.pods.map((plan) => oneByOne.outcomeOf(plan.vrouter, plan.port.id)));
  assert.deepEqual(together.policyRules, oneByOne.policyRules);
  assert.equal(outcomes.length, 4);
});
