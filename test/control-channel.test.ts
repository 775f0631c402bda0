/**
 * The control channel end to end, in one process: control nodes and control
 * clients over real TCP (and TLS) sockets on 127.0.0.1, each client with its
 * own Dataplane programmed through InProcessDataplaneAccess.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Dataplane } from '../src/dataplane/dataplane';
import { NH_COMPOSITE, NH_ENCAP, NH_TUNNEL } from '../src/dataplane/nexthop';
import { parseMac } from '../src/dataplane/protocols/ethernet';
import { ipFromString, ipToString } from '../src/dataplane/protocols/ipv4';
import { ip6FromString, ip6ToString } from '../src/dataplane/protocols/ipv6';
import { LOCAL_COMPOSITE_LABELS, LocalPort, PortConfig, vmUuidOf } from '../src/control/agent/agent-interface';
import { ControlClient, ControlClientOptions } from '../src/control/agent/control-client';
import { InProcessDataplaneAccess } from '../src/control/agent/dataplane-access';
import { ControlServerTls } from '../src/control/agent/control-session';
import { ControlNode } from '../src/control/node/control-node';
import { buildConfigGraph, vrouterGraph } from '../src/control/node/ifmap-publisher';
import { encodeConfigSubscribe, encodeConfigUpdate } from '../src/control/ifmap/codec';
import { IfmapGraph } from '../src/control/ifmap/graph';
import { networkFqns } from '../src/control/ifmap/names';
import { runControlNode } from '../src/control/node/cli';
import { NetworkConfig, parseNetworkConfig } from '../src/control/node/network-config';
import { encodeStanza, encodeStreamOpen } from '../src/control/xmpp/codec';
import { CONTROL_NODE_JID } from '../src/control/xmpp/stanza';
import { eventually } from './support/eventually';
import { pod } from './support/fake-vrouter';
import { RecordingLogger } from './support/recording-logger';

// ------------------------------------------------------------------ harness

const CONFIG = `
holdTime: 90
gracefulRestartTime: 60
vns:
  - { name: default, subnet: 10.32.0.0/24 }
  - { name: web, subnet: 10.1.1.0/24 }
  - { name: db, subnet: 10.2.0.0/24, gateway: 10.2.0.254 }
services:
  - name: db
    clusterIP: 10.96.0.20
    ports: [{ protocol: TCP, port: 5432, targetPort: 15432 }]
    selector: { app: db }
`;

/** Log lines, kept for assertions and printed when a test fails. */

/** A network.yaml VN's virtual-network FQN, and its routing instance: the VRF's name on the vrouters. */
const VN = (name: string) => networkFqns(name).vn;
const VRF = (name: string) => networkFqns(name).routingInstance;

function config(text = CONFIG): NetworkConfig {
  return parseNetworkConfig(text, 'test.yaml');
}

/** The control nodes started, by port: where TestVrouter.addPod registers its pods. */
const controlNodes = new Map<number, ControlNode>();

async function startControlNode(networkConfig = config(), port = 0, logger = new RecordingLogger(), podStateFile?: string) {
  const node = new ControlNode({ config: networkConfig, logger, ...(podStateFile === undefined ? {} : { podStateFile }) });
  const address = await node.listen(port, '127.0.0.1');
  controlNodes.set(address.port, node);
  return { node, port: address.port, logger };
}

/** A vrouter: its own Dataplane (with a fabric vif, so tunnels can be made) and a control client. */
class TestVrouter {
  readonly dataplane: Dataplane;
  readonly access: InProcessDataplaneAccess;
  readonly client: ControlClient;
  readonly logger = new RecordingLogger();

  constructor(
    readonly name: string,
    readonly underlayIp: string,
    private readonly controlPorts: number[],
    extra: Partial<ControlClientOptions> = {},
    serverTls?: ControlServerTls,
  ) {
    this.dataplane = new Dataplane({ name, underlayIp: ipFromString(underlayIp), encapPriority: ['udp', 'gre'] });
    this.dataplane.addVif({ id: 0, kind: 'fabric', name: 'eth0', mac: parseMac('52:54:00:00:00:01'), ip: ipFromString(underlayIp), vrf: -1, mtu: 1500 });
    this.access = new InProcessDataplaneAccess(this.dataplane);
    this.client = new ControlClient({
      nodeName: name,
      underlayIp,
      encaps: ['udp', 'gre'],
      servers: controlPorts.map((port) => ({ host: '127.0.0.1', port, tls: serverTls })),
      reconnectDelay: { initial: 0.02, max: 0.2 },
      access: this.access,
      logger: this.logger,
      ...extra,
    });
  }

  /**
   * Registers the pod at each of this vrouter's control nodes that is up
   * (the first decides the address, the next gets the pod with it), as
   * `vrouter port add --control-api` does, then adds its port.
   */
  addPod(port: LocalPort): Promise<PortConfig> {
    let registration = port;
    for (const controlPort of this.controlPorts) {
      const node = controlNodes.get(controlPort);
      if (node === undefined || node.address() === null) continue; // closed
      const outcome = node.registerPod(this.name, registration);
      if ('refused' in outcome) throw new Error(`pod ${port.id} refused: ${outcome.refused}`);
      registration = { ...registration, ip: outcome.config.ip };
    }
    return this.client.addPort(port);
  }

  /** Removes the port, and the pod's registration at the control nodes that are up. */
  async removePod(portId: string): Promise<void> {
    await this.client.removePort(portId);
    for (const controlPort of this.controlPorts) {
      const node = controlNodes.get(controlPort);
      if (node !== undefined && node.address() !== null) node.unregisterPods(portId);
    }
  }

  /** What the route for a prefix in a VN's VRF leads to: "local vif N", "tunnel <ip>/<label>", ["<member>" | null per slot], or null. */
  route(vn: string, prefix: string): string | Array<string | null> | null {
    const vrfName = VRF(vn);
    const vrf = this.dataplane.vrfs.find(vrfName);
    if (!vrf || vrf.name !== vrfName) return null;
    const [address, length] = prefix.split('/');
    const nexthop = address.includes(':') ? vrf.routes6.get(ip6FromString(address), Number(length)) : vrf.routes.get(ipFromString(address), Number(length));
    if (nexthop < 0) return null;
    return this.describe(nexthop);
  }

  /** The nexthop id a route points at, -1 for none. */
  routeNexthop(vn: string, prefix: string): number {
    const vrf = this.dataplane.vrfs.find(VRF(vn));
    if (!vrf) return -1;
    const [address, length] = prefix.split('/');
    return vrf.routes.get(ipFromString(address), Number(length));
  }

  vrfId(vn: string): number {
    return this.dataplane.vrfs.find(VRF(vn))!.id;
  }

  close(): Promise<void> {
    return this.client.close();
  }

  describe(nexthop: number): string | Array<string | null> {
    const nexthops = this.dataplane.nexthops;
    switch (nexthops.kind[nexthop]) {
      case NH_ENCAP:
        return `local vif ${nexthops.vif[nexthop]}`;
      case NH_TUNNEL:
        return `tunnel ${ipToString(nexthops.dip[nexthop])}/${nexthops.label[nexthop]}`;
      case NH_COMPOSITE:
        return [...nexthops.members[nexthop]!].map((member) => (member < 0 ? null : (this.describe(member) as string)));
      default:
        return `nexthop kind ${nexthops.kind[nexthop]}`;
    }
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The IF-MAP graph vrouter-control sends a vrouter for one port in web at `ip`. */
function ifmapGraphOf(vrouter: string, port: LocalPort, ip: string): IfmapGraph {
  const decision = { portId: port.id, vn: 'web', ip, subnet: '10.1.1.0/24', gateway: '10.1.1.1', floatingIps: [], policies: [] };
  const graph = buildConfigGraph(config(), [{ vrouter, port, config: decision }], []);
  return vrouterGraph(graph, vrouter, { virtualRouter: true, vms: new Set([vmUuidOf(port)]) });
}

/** That graph as a fake control node's `<config>` IQ, from `before` (what the vrouter has). */
function ifmapConfigOf(vrouter: string, port: LocalPort, ip: string, before = new IfmapGraph()): string {
  return encodeConfigUpdate(CONTROL_NODE_JID, `default-global-system-config:${vrouter}/config`, ifmapGraphOf(vrouter, port, ip).diffFrom(before));
}

// ------------------------------------------------------------------ tests

test('a pod added on node A becomes a route in node B; removing it withdraws the route and frees its address', async () => {
  const control = await startControlNode();
  const a = new TestVrouter('node-a', '192.168.0.11', [control.port]);
  const b = new TestVrouter('node-b', '192.168.0.12', [control.port]);
  try {
    const configA = await a.addPod(pod('a1', 20, { name: 'web' }));
    assert.deepEqual(
      { vn: configA.vn, ip: configA.ip, subnet: configA.subnet, gateway: configA.gateway },
      { vn: VN('web'), ip: '10.1.1.2', subnet: '10.1.1.0/24', gateway: '10.1.1.1' },
    );
    const configB = await b.addPod(pod('b1', 21, { name: 'web' }));
    assert.equal(configB.ip, '10.1.1.3');

    // A's port is programmed: vif in the web VRF with its address, label 20 to it, local route.
    const vif = a.dataplane.vifs.get(a.access.vifOf('a1'))!;
    assert.equal(vif.vrf, a.vrfId('web'));
    assert.equal(ipToString(vif.ip), '10.1.1.2');
    assert.ok(a.dataplane.labels.lookup(20) >= 0);
    assert.equal(a.route('web', '10.1.1.2/32'), `local vif ${vif.id}`);
    assert.deepEqual(a.dataplane.vrfs.find(VRF('web'))!.subnets, [{ prefix: ipFromString('10.1.1.0'), length: 24 }]);

    await eventually(() => {
      assert.equal(b.route('web', '10.1.1.2/32'), 'tunnel 192.168.0.11/20');
      assert.equal(a.route('web', '10.1.1.3/32'), 'tunnel 192.168.0.12/21');
    });

    await a.removePod('a1');
    assert.equal(a.route('web', '10.1.1.2/32'), null);
    assert.equal(a.dataplane.vifs.get(vif.id), null);
    assert.equal(a.dataplane.labels.lookup(20), -1);
    await eventually(() => assert.equal(b.route('web', '10.1.1.2/32'), null));
    // A is no longer in web: it unsubscribed, and forgot B's route.
    await eventually(() => assert.equal(a.route('web', '10.1.1.3/32'), null));

    const again = await a.addPod(pod('a2', 22, { name: 'web' }));
    assert.equal(again.ip, '10.1.1.2', 'the freed address is allocated again');
  } finally {
    await Promise.all([a.close(), b.close()]);
    await control.node.close();
  }
});

test('dual stack: a pod of a VN with an IPv6 subnet gets a vif with both addresses; its /128 (inet6) and the IPv6 ClusterIP reach the other node', async () => {
  const dual = CONFIG.replace('  - { name: web, subnet: 10.1.1.0/24 }', "  - { name: web, subnet: 10.1.1.0/24, subnet6: 'fd00:1:1::/64' }") +
    "  - name: web6\n    clusterIP: 10.96.0.30\n    clusterIPs: [10.96.0.30, 'fd00:96::30']\n    ports: [{ protocol: TCP, port: 80, targetPort: 8080 }]\n    selector: { app: web6 }\n";
  const control = await startControlNode(config(dual));
  const a = new TestVrouter('node-a', '192.168.0.11', [control.port]);
  const b = new TestVrouter('node-b', '192.168.0.12', [control.port]);
  try {
    const configA = await a.addPod(pod('a1', 20, { name: 'web', app: 'web6' }));
    assert.deepEqual([configA.ip6, configA.subnet6, configA.gateway6], ['fd00:1:1::2', 'fd00:1:1::/64', 'fd00:1:1::1']);
    const vif = a.dataplane.vifs.get(a.access.vifOf('a1'))!;
    assert.equal(ip6ToString(vif.ip6!), 'fd00:1:1::2');
    assert.deepEqual(vif.floatingIps6.map((floatingIp) => [ip6ToString(floatingIp.ip), floatingIp.portMap]), [['fd00:96::30', [{ protocol: 6, port: 80, targetPort: 8080 }]]]);
    const web = a.dataplane.vrfs.find(VRF('web'))!;
    assert.deepEqual([web.subnets6.map((subnet) => `${ip6ToString(subnet.prefix)}/${subnet.length}`), ip6ToString(web.gateway6!)], [['fd00:1:1::/64'], 'fd00:1:1::1']);
    assert.equal(a.route('web', 'fd00:1:1::2/128'), `local vif ${vif.id}`);
    await b.addPod(pod('b1', 21, { name: 'web' }));
    await eventually(() => {
      assert.equal(b.route('web', 'fd00:1:1::2/128'), 'tunnel 192.168.0.11/20');
      assert.equal(b.route('web', 'fd00:96::30/128'), 'tunnel 192.168.0.11/20');
      assert.equal(a.route('web', 'fd00:1:1::3/128'), 'tunnel 192.168.0.12/21');
    });
    await a.removePod('a1');
    await eventually(() => assert.deepEqual([b.route('web', 'fd00:1:1::2/128'), b.route('web', 'fd00:96::30/128')], [null, null]));
  } finally {
    await Promise.all([a.close(), b.close()]);
    await control.node.close();
  }
});

test('labels pick the VN, a selected pod gets the ClusterIP with its port map, uses opens the service to its VN only', async () => {
  const control = await startControlNode();
  const a = new TestVrouter('node-a', '192.168.0.11', [control.port]);
  const b = new TestVrouter('node-b', '192.168.0.12', [control.port]);
  try {
    const backend = await a.addPod(pod('db1', 30, { name: 'db', app: 'db' }));
    assert.equal(backend.vn, VN('db'));
    assert.equal(backend.vrf, VRF('db'));
    assert.equal(backend.ip, '10.2.0.1');
    assert.deepEqual(backend.floatingIps, [{ ip: '10.96.0.20', portMap: [{ protocol: 'tcp', port: 5432, targetPort: 15432 }] }]);
    const backendVif = a.dataplane.vifs.get(a.access.vifOf('db1'))!;
    assert.deepEqual(backendVif.floatingIps, [{ ip: ipFromString('10.96.0.20'), portMap: [{ protocol: 6, port: 5432, targetPort: 15432 }] }]);
    assert.equal(a.route('db', '10.96.0.20/32'), `local vif ${backendVif.id}`);

    const client = await b.addPod(pod('web1', 31, { name: 'web', uses: 'db' }));
    assert.equal(client.vn, VN('web'));
    const stranger = await b.addPod(pod('x1', 32, { name: 'unconfigured-vn' }));
    assert.equal(stranger.vn, VN('default'), 'a VN name that is not configured falls back to the default VN');
    assert.equal(stranger.ip, '10.32.0.2');

    // The using VN sees the ClusterIP (in the backend's VN) and has the policy; the other VN has neither.
    await eventually(() => assert.equal(b.route('web', '10.96.0.20/32'), 'tunnel 192.168.0.11/30'));
    assert.equal(b.route('web', '10.2.0.1/32'), null, 'only the ClusterIP leaks, not the backend pods');
    assert.equal(b.route('default', '10.96.0.20/32'), null);
    const clusterIp = ipFromString('10.96.0.20');
    const policy = b.dataplane.policy;
    await eventually(() => assert.ok(policy.allows(b.vrfId('web'), b.vrfId('db'), 6, clusterIp, 5432)));
    assert.ok(!policy.allows(b.vrfId('web'), b.vrfId('db'), 6, clusterIp, 80), 'only on the service port');
    assert.ok(!policy.allows(b.vrfId('default'), b.vrfId('db'), 6, clusterIp, 5432), 'a pod without uses is denied');
    // The backend's node has the rule too (it decides on the flow from the fabric) and a route back to the client.
    await eventually(() => {
      assert.ok(a.dataplane.policy.allows(a.vrfId('web'), a.vrfId('db'), 6, clusterIp, 5432));
      assert.equal(a.route('db', `${client.ip}/32`), 'tunnel 192.168.0.12/31');
    });
    assert.equal(a.route('db', `${stranger.ip}/32`), null);
  } finally {
    await Promise.all([a.close(), b.close()]);
    await control.node.close();
  }
});

test('backends on two nodes make an ECMP ClusterIP route on a third; two on one node are one next hop, a local composite label', async () => {
  const control = await startControlNode();
  const a = new TestVrouter('node-a', '192.168.0.11', [control.port]);
  const b = new TestVrouter('node-b', '192.168.0.12', [control.port]);
  const c = new TestVrouter('node-c', '192.168.0.13', [control.port]);
  try {
    await a.addPod(pod('db1', 30, { name: 'db', app: 'db' }));
    await a.addPod(pod('db2', 34, { name: 'db', app: 'db' }));
    await b.addPod(pod('db3', 33, { name: 'db', app: 'db' }));
    await c.addPod(pod('web1', 40, { name: 'web', uses: 'db' }));
    // A publishes its two backends as one next hop (contrail-control takes one per agent item), with the label
    // of a composite of its two pods.
    const composite = LOCAL_COMPOSITE_LABELS.first;
    await eventually(() => {
      const route = c.route('web', '10.96.0.20/32');
      assert.ok(Array.isArray(route), JSON.stringify(route));
      assert.deepEqual([...route].sort(), [`tunnel 192.168.0.11/${composite}`, 'tunnel 192.168.0.12/33']);
    });
    const localPods = (vrouter: TestVrouter, label: number) => {
      const nexthop = vrouter.dataplane.labels.lookup(label);
      return nexthop < 0 ? null : vrouter.describe(nexthop);
    };
    assert.deepEqual(localPods(a, composite), [`local vif ${a.access.vifOf('db1')}`, `local vif ${a.access.vifOf('db2')}`]);
    const before = c.route('web', '10.96.0.20/32') as Array<string | null>;
    const ecmp = c.routeNexthop('web', '10.96.0.20/32');
    // A has two local backends and one remote: an ECMP route of its own, local members included.
    await eventually(() => assert.equal((a.route('db', '10.96.0.20/32') as unknown[]).length, 3));

    // Back to one local backend: its own label is published again, in the composite's slot on C; the label goes.
    await a.removePod('db1');
    await eventually(() => {
      const after = c.route('web', '10.96.0.20/32') as Array<string | null>;
      assert.deepEqual(after, before.map((member) => (member === `tunnel 192.168.0.11/${composite}` ? 'tunnel 192.168.0.11/34' : member)));
    });
    assert.equal(c.routeNexthop('web', '10.96.0.20/32'), ecmp, 'the same composite, surviving members in their slots');
    assert.equal(localPods(a, composite), null);
    const refusals = control.logger.lines.filter((line) => line.includes('refused'));
    assert.deepEqual(control.node.refusedPublishes(), { malformed: 0, 'not-given': 0, 'next-hops': 0 }, refusals.join('\n'));
  } finally {
    await Promise.all([a.close(), b.close(), c.close()]);
    await control.node.close();
  }
});

test('graceful restart: routes stay (stale) while the control node is down and stale ones go at End-of-RIB; the registrations come back from the state file', async () => {
  // The restarted node holds End-of-RIB back until both vrouters are back, so neither sweeps the other's routes.
  const restartConfig = () => config(`${CONFIG}vrouters: [node-a, node-b]\n`);
  const stateDir = mkdtempSync(join(tmpdir(), 'vrouter-control-state-'));
  const stateFile = join(stateDir, 'pods.json');
  const first = await startControlNode(restartConfig(), 0, new RecordingLogger(), stateFile);
  const port = first.port;
  const a = new TestVrouter('node-a', '192.168.0.11', [port], { staleTimeout: 60 });
  const b = new TestVrouter('node-b', '192.168.0.12', [port], { staleTimeout: 60 });
  try {
    const kept = await a.addPod(pod('a1', 20, { name: 'web' }));
    const gone = await a.addPod(pod('a2', 21, { name: 'web' }));
    await b.addPod(pod('b1', 22, { name: 'web' }));
    await eventually(() => {
      assert.equal(b.route('web', `${kept.ip}/32`), 'tunnel 192.168.0.11/20');
      assert.equal(b.route('web', `${gone.ip}/32`), 'tunnel 192.168.0.11/21');
    });
    const keptNexthop = b.routeNexthop('web', `${kept.ip}/32`);

    await first.node.close();
    await eventually(() => assert.deepEqual(b.client.status().map((s) => s.established), [false]));
    assert.equal(b.route('web', `${kept.ip}/32`), 'tunnel 192.168.0.11/20', 'still forwarding while the control node is away');
    assert.equal(b.client.routeCounts().stale, 2);
    // Meanwhile A loses a pod; nobody can be told (its registration stays until deleted on the pod API).
    await a.removePod('a2');
    await sleep(100);
    assert.equal(b.route('web', `${gone.ip}/32`), 'tunnel 192.168.0.11/21');

    const second = await startControlNode(restartConfig(), port, new RecordingLogger(), stateFile);
    try {
      assert.deepEqual(
        second.node.registeredPods().map(({ vrouter, port: registered, outcome }) => [vrouter, registered.id, 'config' in outcome ? outcome.config.ip : outcome.refused]),
        [['node-a', 'a1', kept.ip], ['node-a', 'a2', gone.ip], ['node-b', 'b1', '10.1.1.4']],
        'every registration and its address read back',
      );
      await eventually(() => {
        assert.equal(b.route('web', `${gone.ip}/32`), null, 'swept at End-of-RIB');
        assert.equal(b.client.routeCounts().stale, 0);
      });
      assert.equal(b.routeNexthop('web', `${kept.ip}/32`), keptNexthop, 're-sent route refreshed in place');
      assert.ok(b.logger.has(/End-of-RIB; removed 1 stale routes/), b.logger.lines.join('\n'));
      // The restarted control node has A's port with the address it had.
      const third = await a.addPod(pod('a3', 23, { name: 'web' }));
      assert.ok(![kept.ip, gone.ip].includes(third.ip), third.ip);
    } finally {
      await Promise.all([a.close(), b.close()]);
      await second.node.close();
    }
  } finally {
    await Promise.all([a.close(), b.close()]);
    rmSync(stateDir, { recursive: true, force: true });
  }
});

test('a state file that does not read back fails the start naming file, field and value, before vrouter-control listens', async () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'vrouter-control-state-'));
  const stateFile = join(stateDir, 'pods.json');
  const configFile = join(stateDir, 'network.yaml');
  writeFileSync(configFile, CONFIG);
  try {
    const stored = { vrouter: 'node-a', vmUuid: 'a1', vmiUuid: 'a1', name: 'a1', namespace: 'default', labels: {}, mac: '02:00:00:00:00:14', address: '10.1.1.300' };
    writeFileSync(stateFile, JSON.stringify({ pods: [stored] }));
    assert.throws(() => new ControlNode({ config: config(), podStateFile: stateFile }), (error: Error) => {
      assert.equal(error.name, 'PodStateError');
      assert.ok(error.message.startsWith(`${stateFile}: /pods/0/address: must match pattern `), error.message);
      assert.ok(error.message.endsWith('(value: "10.1.1.300")'), error.message);
      return true;
    });
    const twice = { ...stored, address: '10.1.1.3' };
    writeFileSync(stateFile, JSON.stringify({ pods: [twice, twice] }));
    assert.throws(() => new ControlNode({ config: config(), podStateFile: stateFile }), {
      message: `${stateFile}: /pods/1/vmiUuid: registered twice on node-a (first at /pods/0) (value: "a1")`,
    });
    writeFileSync(stateFile, '{"pods": [');
    assert.throws(() => new ControlNode({ config: config(), podStateFile: stateFile }), new RegExp(`^PodStateError: ${stateFile}: not JSON`));
    const logger = new RecordingLogger();
    await assert.rejects(runControlNode(['--config', configFile, '--listen', '127.0.0.1:0', '--state', stateFile], logger), { name: 'PodStateError' });
    assert.ok(!logger.has(/listening/), logger.lines.join('\n'));
  } finally {
    rmSync(stateDir, { recursive: true, force: true });
  }
});

test('with two control nodes, losing one changes nothing in the dataplane', async () => {
  const one = await startControlNode();
  const two = await startControlNode();
  const options = { staleTimeout: 0.2 };
  const a = new TestVrouter('node-a', '192.168.0.11', [one.port, two.port], options);
  const b = new TestVrouter('node-b', '192.168.0.12', [one.port, two.port], options);
  try {
    await eventually(() => assert.deepEqual(a.client.status().map((s) => s.established), [true, true]));
    const configA = await a.addPod(pod('a1', 20, { name: 'web' }));
    const configB = await b.addPod(pod('b1', 21, { name: 'web' }));
    assert.notEqual(configA.ip, configB.ip);
    await b.addPod(pod('b2', 22, { name: 'db', app: 'db' }));
    await a.addPod(pod('a2', 23, { name: 'db', app: 'db' }));
    await eventually(() => {
      assert.equal(b.route('web', `${configA.ip}/32`), 'tunnel 192.168.0.11/20');
      assert.equal((b.route('db', '10.96.0.20/32') as unknown[]).length, 2);
    });
    // Both control nodes agree on the addresses: the second learned them from the first's allocation.
    const snapshot = () => ({
      routes: [...b.dataplane.vrfs].map((vrf) => vrf.routes.entries()),
      nexthops: b.dataplane.nexthops.ids(),
      rules: b.dataplane.policy.rules,
      vifs: [...b.dataplane.vifs].map((vif) => [vif.id, vif.ip, vif.vrf, vif.floatingIps]),
    });
    const before = JSON.stringify(snapshot());

    await one.node.close();
    await eventually(() => assert.deepEqual(b.client.status().map((s) => s.established), [false, true]));
    await sleep(400); // past the stale timeout: the first node's routes are swept, the second's remain
    assert.equal(JSON.stringify(snapshot()), before);
    assert.equal(b.client.routeCounts().stale, 0);
    // Still working through the second: a new pod reaches B.
    const configA3 = await a.addPod(pod('a3', 24, { name: 'web' }));
    await eventually(() => assert.equal(b.route('web', `${configA3.ip}/32`), 'tunnel 192.168.0.11/24'));
  } finally {
    await Promise.all([a.close(), b.close()]);
    await Promise.all([one.node.close(), two.node.close()]);
  }
});

test('garbage or unexpected stanzas close that session only, with a logged reason', async () => {
  const control = await startControlNode();
  const a = new TestVrouter('node-a', '192.168.0.11', [control.port]);
  const b = new TestVrouter('node-b', '192.168.0.12', [control.port]);
  const rawSession = (bytes: Buffer | string) =>
    new Promise<string>((resolve) => {
      const socket = net.connect(control.port, '127.0.0.1', () => socket.write(bytes));
      let received = '';
      socket.on('data', (chunk) => (received += chunk.toString()));
      socket.on('close', () => resolve(received));
    });
  try {
    await a.addPod(pod('a1', 20, { name: 'web' }));
    await rawSession(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0xff, 0xfe]));
    assert.ok(control.logger.has(/session closed: malformed or unexpected stanza: disallowed character/), control.logger.lines.join('\n'));
    const open = encodeStreamOpen({ from: 'intruder', to: CONTROL_NODE_JID });
    const publishWithoutSubscription = encodeStanza({
      kind: 'publish',
      from: 'intruder',
      to: `${CONTROL_NODE_JID}/bgp-peer`,
      id: 'pubsub1',
      vrf: 'web',
      entry: { prefix: '10.1.1.99/32', nexthops: [], version: 1, sequenceNumber: 0, localPreference: 200, med: 0 },
    });
    const reply = await rawSession(open + publishWithoutSubscription);
    assert.match(reply, /<stream:error><bad-format/);
    assert.ok(control.logger.has(/publish to web without a subscription/));
    await rawSession(`${open}<iq type="set" from="intruder" to="x" id="1"><pubsub xmlns="http://jabber.org/protocol/pubsub"></iq>`);

    // The control node still serves the others.
    const configB = await b.addPod(pod('b1', 21, { name: 'web' }));
    await eventually(() => assert.equal(a.route('web', `${configB.ip}/32`), 'tunnel 192.168.0.12/21'));
    assert.deepEqual(control.node.connectedVrouters().sort(), ['node-a', 'node-b']);
  } finally {
    await Promise.all([a.close(), b.close()]);
    await control.node.close();
  }
});

test('a vrouter ignores routes for VRFs it did not subscribe to and labels outside 16..1048575; garbage closes its session', async () => {
  const received: string[] = [];
  let sessions = 0;
  const fakeControl = net.createServer((socket) => {
    sessions++;
    socket.on('data', (chunk) => {
      received.push(chunk.toString());
      if (!received.join('').includes(`subscribe node="${VRF('web')}"`) || sessions > 1) return;
      const push = (vrf: string, label: number, prefix: string) =>
        `<message from="${CONTROL_NODE_JID}" to="node-a/bgp-peer"><event xmlns="http://jabber.org/protocol/pubsub">` +
        `<items node="1/1/${vrf}"><item id="${prefix}"><entry><nlri><af>1</af><safi>1</safi><address>${prefix}</address></nlri>` +
        `<next-hops><next-hop><af>1</af><address>192.168.0.66</address><label>${label}</label><tunnel-encapsulation-list>` +
        `<tunnel-encapsulation>udp</tunnel-encapsulation></tunnel-encapsulation-list><virtual-network>${VN('web')}</virtual-network>` +
        `</next-hop></next-hops><version>1</version><sequence-number>0</sequence-number><local-preference>200</local-preference>` +
        `<med>0</med></entry></item></items></event></message>`;
      socket.write(push(VRF('web'), 100, '10.1.1.50/32') + push('secret', 100, '10.9.9.9/32') + push(VRF('web'), 3, '10.1.1.51/32'));
      setTimeout(() => socket.write('\u0000garbage'), 50);
    });
    socket.write(encodeStreamOpen({ from: CONTROL_NODE_JID, to: 'node-a' }) + ifmapConfigOf('node-a', pod('a1', 20, {}), '10.1.1.5'));
  });
  await new Promise<void>((resolve) => fakeControl.listen(0, '127.0.0.1', resolve));
  const port = (fakeControl.address() as net.AddressInfo).port;
  const a = new TestVrouter('node-a', '192.168.0.11', [port], { reconnectDelay: { initial: 5, max: 5 } });
  try {
    await a.addPod(pod('a1', 20, { name: 'web' }));
    await eventually(() => assert.equal(a.route('web', '10.1.1.50/32'), 'tunnel 192.168.0.66/100'));
    await eventually(() => assert.ok(a.logger.has(/session closed: malformed or unexpected stanza/), a.logger.lines.join('\n')));
    assert.equal(a.dataplane.vrfs.find('secret'), null, 'routes of a VRF it did not subscribe to are not programmed');
    assert.ok(a.logger.has(/ignored 1 routes for secret/));
    assert.equal(a.route('web', '10.1.1.51/32'), null);
    assert.ok(a.logger.has(new RegExp(`ignored 1 next hops in ${VRF('web')} with labels outside 16..1048575`)));
    // The dataplane keeps what it had (stale) after the session closed.
    assert.equal(a.route('web', '10.1.1.50/32'), 'tunnel 192.168.0.66/100');
    assert.equal(a.route('web', '10.1.1.5/32'), `local vif ${a.access.vifOf('a1')}`);
  } finally {
    await a.close();
    fakeControl.close();
  }
});

test("a control node's pushes of other families and contrail-control's bad inet items (test/vectors/xmpp) are counted and dropped, on both ends, the session kept; its inet6 push is programmed", async () => {
  const vector = (name: string) => readFileSync(join(__dirname, '..', '..', 'test', 'vectors', 'xmpp', name)).toString();
  const toWeb = (xml: string) => xml.replaceAll('default-domain:demo:vn1:vn1', VRF('web'));
  let pushed = false;
  const fakeControl = net.createServer((socket) => {
    let received = '';
    socket.on('data', (chunk) => {
      received += chunk.toString();
      if (pushed || !received.includes(`subscribe node="${VRF('web')}"`)) return;
      pushed = true;
      const others = ['evpn-push.xml', 'mcast-push.xml', 'inet-mpls-push.xml'].map((name) => toWeb(vector(name)));
      // contrail-control drops each of its bad_inet_item_1..6 and goes on (ProcessItem, bgp_xmpp_channel.cc): so does the agent.
      const badItems = [1, 2, 3, 4, 5, 6].map((n) => vector(`bad_inet_item_${n}.xml`).replace('<item>', `<item id="10.1.1.${60 + n}/32">`));
      const badPush = `<message from="${CONTROL_NODE_JID}" to="node-a/bgp-peer"><event xmlns="http://jabber.org/protocol/pubsub">` +
        `<items node="1/1/${VRF('web')}">${badItems.join('')}</items></event></message>`;
      socket.write(others.join('') + badPush + toWeb(vector('inet6-push.xml')) + toWeb(vector('inet-push.xml')) + vector('end-of-rib.xml'));
    });
    socket.write(vector('control-open.xml') + ifmapConfigOf('node-a', pod('a1', 20, {}), '10.1.1.5'));
  });
  await new Promise<void>((resolve) => fakeControl.listen(0, '127.0.0.1', resolve));
  const a = new TestVrouter('node-a', '192.168.0.21', [(fakeControl.address() as net.AddressInfo).port]);
  const control = await startControlNode();
  const agent = net.connect(control.port, '127.0.0.1');
  try {
    await a.addPod(pod('a1', 20, { name: 'web' }));
    await eventually(() => assert.deepEqual(a.route('web', '10.1.1.3/32'), ['tunnel 192.168.0.11/25', 'tunnel 192.168.0.12/31']));
    assert.deepEqual(a.client.status().map((session) => [session.established, session.ignoredItems, session.refusedItems]), [[true, 5, 6]]);
    // The inet6 push goes to the VRF's IPv6 table as inet's to its IPv4 one (ECMP), decoded on the saxes path.
    assert.deepEqual(a.route('web', 'fd00:1:1::3/128'), ['tunnel 192.168.0.11/25', 'tunnel 192.168.0.12/31']);
    assert.equal(a.route('web', 'fd00:1:1::4/128'), null);
    assert.ok(!a.logger.has(/session (closed|down)/), a.logger.lines.join('\n'));
    assert.ok(a.logger.has(new RegExp(`pushed item 10.1.1.65/32 in ${VRF('web')} dropped: next-hop address is 0\\.0\\.0\\.0`)), a.logger.lines.join('\n'));
    // A real agent publishes EVPN routes too: the control node counts them and keeps the vrouter.
    const evpn = `<iq type="set" from="node-z" to="${CONTROL_NODE_JID}/bgp-peer" id="pubsub1"><pubsub xmlns="http://jabber.org/protocol/pubsub">` +
      '<publish node="25/242/web/aa:00:00:01:02:03,10.1.1.9/32"><item><entry/></item></publish></pubsub></iq>';
    agent.on('data', () => {});
    agent.write(vector('agent-open.xml').replace('node-a', 'node-z') + evpn);
    await eventually(() => assert.equal(control.node.ignoredItems(), 1));
    assert.ok(control.node.connectedVrouters().includes('node-z'));
  } finally {
    agent.destroy();
    await a.close();
    await control.node.close();
    fakeControl.close();
  }
});

test('IF-MAP from a control node: subscribes as the agent does; a port follows its view, is re-programmed on change and undone on delete', async () => {
  let received = '';
  let session: net.Socket | undefined;
  const fakeControl = net.createServer((socket) => {
    session = socket;
    socket.on('data', (chunk) => (received += chunk.toString()));
    socket.write(encodeStreamOpen({ from: CONTROL_NODE_JID, to: 'node-a' }));
  });
  await new Promise<void>((resolve) => fakeControl.listen(0, '127.0.0.1', resolve));
  const a = new TestVrouter('node-a', '192.168.0.11', [(fakeControl.address() as net.AddressInfo).port]);
  const port = pod('a1', 20, { name: 'web' }, { vmUuid: '2d308482-c7b3-4e05-af14-e732b7b50117' });
  const subscribe = (node: string, on = true) => encodeConfigSubscribe('node-a', `${CONTROL_NODE_JID}/config`, node, on);
  try {
    await eventually(() => assert.ok(received.includes(subscribe('virtual-router:default-global-system-config:node-a')), received));
    const configured = a.client.addPort(port);
    await eventually(() => assert.ok(received.includes(subscribe('virtual-machine:2d308482-c7b3-4e05-af14-e732b7b50117'))));
    session!.write(ifmapConfigOf('node-a', port, '10.1.1.5'));
    assert.equal((await configured).vrf, VRF('web'));
    assert.equal(a.route('web', '10.1.1.5/32'), `local vif ${a.access.vifOf('a1')}`);
    await eventually(() => assert.ok(received.includes(`<publish node="1/1/${VRF('web')}/10.1.1.5/32">`)));
    assert.match(received, new RegExp(`<virtual-network>${VN('web')}</virtual-network>`), 'next hops name the VN');

    // A new address (a new instance-ip, the old one deleted) moves the port; a delete of everything undoes it.
    session!.write(ifmapConfigOf('node-a', port, '10.1.1.6', ifmapGraphOf('node-a', port, '10.1.1.5')));
    await eventually(() => assert.equal(a.route('web', '10.1.1.6/32'), `local vif ${a.access.vifOf('a1')}`));
    assert.equal(a.route('web', '10.1.1.5/32'), null);
    session!.write(encodeConfigUpdate(CONTROL_NODE_JID, 'default-global-system-config:node-a/config', new IfmapGraph().diffFrom(ifmapGraphOf('node-a', port, '10.1.1.6'))));
    await eventually(() => assert.equal(a.access.vifOf('a1'), -1));
    assert.equal(a.route('web', '10.1.1.6/32'), null);
    assert.ok(a.logger.has(/port a1: its configuration went \(no virtual-machine-interface yet\)/), a.logger.lines.join('\n'));

    await a.removePod('a1');
    await eventually(() => assert.ok(received.includes(subscribe('virtual-machine:2d308482-c7b3-4e05-af14-e732b7b50117', false))));
  } finally {
    await a.close();
    fakeControl.close();
  }
});

test('hold timer: keepalives keep an idle session up; a silent peer is dropped when the hold time expires', async () => {
  const control = await startControlNode(config(CONFIG.replace('holdTime: 90', 'holdTime: 0.3')));
  const a = new TestVrouter('node-a', '192.168.0.11', [control.port], { holdTime: 0.3 });
  try {
    await eventually(() => assert.deepEqual(control.node.connectedVrouters(), ['node-a']));
    const silent = net.connect(control.port, '127.0.0.1', () => silent.write(encodeStreamOpen({ from: 'silent', to: CONTROL_NODE_JID })));
    const closed = new Promise((resolve) => silent.on('close', resolve));
    silent.on('data', () => {});
    await sleep(1000);
    await closed;
    assert.ok(control.logger.has(/hold timer expired/), control.logger.lines.join('\n'));
    assert.deepEqual(control.node.connectedVrouters(), ['node-a'], 'keepalives every 0.1 s kept node-a up');
    assert.ok(!a.logger.has(/session down/));
  } finally {
    await a.close();
    await control.node.close();
  }
});

test('a pod whose address is taken is refused at its registration, with the reason; its port waits unconfigured', async () => {
  const control = await startControlNode();
  const a = new TestVrouter('node-a', '192.168.0.11', [control.port]);
  try {
    await a.addPod(pod('a1', 20, { name: 'web' }, { ip: '10.1.1.7' }));
    const taken = pod('a2', 21, { name: 'web' }, { ip: '10.1.1.7' });
    assert.deepEqual(control.node.registerPod('node-a', taken), { refused: 'address 10.1.1.7 is already used by port node-a a1' });
    assert.deepEqual(control.node.registeredPods().map(({ port }) => port.id), ['a1'], 'a refused pod is not kept');
    let settled = false;
    const waiting = a.client.addPort(taken).then(
      () => (settled = true),
      () => (settled = true),
    );
    await sleep(200);
    assert.equal(settled, false, 'no configuration, no answer');
    assert.equal(a.access.vifOf('a2'), -1);
    await a.client.removePort('a2');
    await waiting;
  } finally {
    await a.close();
    await control.node.close();
  }
});

test('a change to the configuration file is applied without restart and reaches the affected vrouters', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vrouter-control-'));
  const file = join(dir, 'network.yaml');
  writeFileSync(file, CONFIG);
  const logger = new RecordingLogger();
  const running = await runControlNode(['--config', file, '--listen', '127.0.0.1:0'], logger);
  controlNodes.set(running.address.port, running.node);
  const a = new TestVrouter('node-a', '192.168.0.11', [running.address.port]);
  const b = new TestVrouter('node-b', '192.168.0.12', [running.address.port]);
  try {
    const cache = await a.addPod(pod('cache1', 20, { name: 'web', app: 'cache' }));
    await b.addPod(pod('web2', 21, { name: 'web', uses: 'cache' }));
    assert.deepEqual(cache.floatingIps, []);

    writeFileSync(
      file,
      CONFIG + '  - { name: cache, clusterIP: 10.96.0.30, ports: [{ port: 6379 }], selector: { app: cache } }\n',
    );
    await eventually(() => {
      const vif = a.dataplane.vifs.get(a.access.vifOf('cache1'))!;
      assert.deepEqual(vif.floatingIps, [{ ip: ipFromString('10.96.0.30'), portMap: [{ protocol: 6, port: 6379, targetPort: 6379 }] }]);
      assert.equal(b.route('web', '10.96.0.30/32'), 'tunnel 192.168.0.11/20');
    });

    writeFileSync(file, 'vns: [oops');
    await eventually(() => assert.ok(logger.has(/reload: .*network.yaml: line 1.*keeping the running configuration/), logger.lines.join('\n')));
    assert.equal(b.route('web', '10.96.0.30/32'), 'tunnel 192.168.0.11/20');
  } finally {
    await Promise.all([a.close(), b.close()]);
    await running.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

const haveOpenssl = (() => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

/** A CA (`<ca>.crt`) and certificates it signs (`<name>.crt`, `<name>.key`), made with the openssl CLI. */
function makeCertificates(dir: string, names: string[], ca = 'ca'): void {
  const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  run('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${ca}.key`, '-out', `${ca}.crt`, '-days', '2', '-subj', `/CN=test-${ca}`);
  for (const name of names) {
    writeFileSync(join(dir, `${name}.ext`), `subjectAltName=DNS:${name.replace(/^rogue-/, '')}${name === 'localhost' ? ',IP:127.0.0.1' : ''}\n`);
    run('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name.replace(/^rogue-/, '')}`);
    run('x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`);
  }
}

/** A control node requiring STARTTLS with certificates of a fresh CA, in a temporary directory removed by `cleanup`. */
async function startTlsControlNode() {
  const dir = mkdtempSync(join(tmpdir(), 'vrouter-tls-'));
  makeCertificates(dir, ['localhost', 'node-a', 'node-b', 'node-x']);
  // node-a's name, signed by another CA.
  makeCertificates(dir, ['rogue-node-a'], 'rogue-ca');
  const file = join(dir, 'network.yaml');
  writeFileSync(file, `${CONFIG}vrouters: [node-a, node-b, node-p]\ntls: { cert: localhost.crt, key: localhost.key, ca: ca.crt }\n`);
  const control = await startControlNode(parseNetworkConfig(readFileSync(file, 'utf8'), file));
  const tlsFor = (certificate: string, serverName = 'localhost'): ControlServerTls => ({
    ca: readFileSync(join(dir, 'ca.crt')),
    cert: readFileSync(join(dir, `${certificate}.crt`)),
    key: readFileSync(join(dir, `${certificate}.key`)),
    serverName,
  });
  const cleanup = async () => {
    await control.node.close();
    rmSync(dir, { recursive: true, force: true });
  };
  return { ...control, tlsFor, cleanup };
}

/** A TCP relay to `port` that keeps what each side of its first connection wrote. */
async function startRelay(port: number) {
  const written = { byClient: [] as Buffer[], byServer: [] as Buffer[] };
  let connections = 0;
  const relay = net.createServer((client) => {
    const first = connections++ === 0;
    const server = net.connect(port, '127.0.0.1');
    client.on('data', (chunk) => {
      if (first) written.byClient.push(chunk);
      server.write(chunk);
    });
    server.on('data', (chunk) => {
      if (first) written.byServer.push(chunk);
      client.write(chunk);
    });
    client.on('close', () => server.destroy());
    server.on('close', () => client.destroy());
    client.on('error', () => {});
    server.on('error', () => {});
  });
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
  /** What a side wrote before TLS (its first TLS record starts with 0x16, which XML text never has) and after. */
  const split = (side: keyof typeof written) => {
    const bytes = Buffer.concat(written[side]);
    const tlsStart = bytes.indexOf(0x16);
    return { plain: bytes.subarray(0, tlsStart).toString(), tls: bytes.subarray(tlsStart) };
  };
  return { port: (relay.address() as net.AddressInfo).port, split, close: () => relay.close() };
}

const xmppVector = (name: string) => readFileSync(join(__dirname, '..', '..', 'test', 'vectors', 'xmpp', name)).toString();

test('TLS by STARTTLS as contrail: the plain-text exchange byte for byte, routes over TLS; unknown names and certificates for another name are refused', { skip: !haveOpenssl && 'openssl not found' }, async () => {
  const control = await startTlsControlNode();
  const relay = await startRelay(control.port);
  controlNodes.set(relay.port, control.node); // node-a reaches the control node through the relay
  const slow = { reconnectDelay: { initial: 5, max: 5 } };
  const a = new TestVrouter('node-a', '192.168.0.11', [relay.port], {}, control.tlsFor('node-a'));
  const b = new TestVrouter('node-b', '192.168.0.12', [control.port], {}, control.tlsFor('node-b'));
  const unknown = new TestVrouter('node-x', '192.168.0.13', [control.port], slow, control.tlsFor('node-x'));
  const impostor = new TestVrouter('node-b', '192.168.0.14', [control.port], slow, control.tlsFor('node-x'));
  try {
    const configA = await a.addPod(pod('a1', 20, { name: 'web' }));
    const configB = await b.addPod(pod('b1', 21, { name: 'web' }));
    await eventually(() => {
      assert.equal(b.route('web', `${configA.ip}/32`), 'tunnel 192.168.0.11/20');
      assert.equal(a.route('web', `${configB.ip}/32`), 'tunnel 192.168.0.12/21');
    });
    // Before TLS, each side wrote exactly what contrail's does (test/vectors/xmpp/README.md, STARTTLS).
    const agent = relay.split('byClient');
    const controlNode = relay.split('byServer');
    assert.equal(agent.plain, xmppVector('agent-open.xml') + xmppVector('starttls-request.xml'));
    assert.equal(controlNode.plain, xmppVector('control-open.xml') + xmppVector('starttls-features.xml') + xmppVector('starttls-proceed.xml'));
    // Then TLS records (handshake 0x16, version 3.x) carry everything else: the second open, subscriptions, routes.
    for (const { tls } of [agent, controlNode]) {
      assert.deepEqual([tls[0], tls[1]], [0x16, 0x03]);
      assert.ok(tls.length > 1000, 'the handshake and the session went through the relay');
      for (const text of ['stream:stream', 'node-a', 'subscribe', configA.ip]) assert.equal(tls.indexOf(text), -1, `${text} in the clear after STARTTLS`);
    }
    await eventually(() => {
      assert.ok(control.logger.has(/vrouter node-x is not in the configuration's vrouters/), control.logger.lines.join('\n'));
      assert.ok(control.logger.has(/vrouter node-b presented a certificate for node-x/));
      assert.ok(unknown.logger.has(/peer sent stream error not-authorized/), unknown.logger.lines.join('\n'));
    });
    assert.deepEqual(control.node.connectedVrouters().sort(), ['node-a', 'node-b']);
  } finally {
    await Promise.all([a.close(), b.close(), unknown.close(), impostor.close()]);
    relay.close();
    await control.cleanup();
  }
});

test('STARTTLS refused or failed closes that connection only, with a logged reason; the vrouter retries with backoff', { skip: !haveOpenssl && 'openssl not found' }, async () => {
  const control = await startTlsControlNode();
  const a = new TestVrouter('node-a', '192.168.0.11', [control.port], {}, control.tlsFor('node-a'));
  const b = new TestVrouter('node-b', '192.168.0.12', [control.port], {}, control.tlsFor('node-b'));
  /** Writes `first`, then `afterProceed` once `<proceed .../>` arrived; resolves with what it received when closed. */
  const backoff = { reconnectDelay: { initial: 0.05, max: 1 } };
  const rawSession = (first: string, afterProceed?: Buffer) =>
    new Promise<string>((resolve) => {
      const socket = net.connect(control.port, '127.0.0.1', () => socket.write(first));
      let received = '';
      socket.on('data', (chunk) => {
        received += chunk.toString();
        if (afterProceed && received.endsWith(xmppVector('starttls-proceed.xml'))) socket.write(afterProceed);
      });
      socket.on('error', () => {});
      socket.on('close', () => resolve(received));
    });
  const open = xmppVector('agent-open.xml').replace('node-a', 'intruder');
  const answer = encodeStreamOpen({ from: CONTROL_NODE_JID, to: 'intruder', id: '++123', xmlns: 'jabber:client' }) + xmppVector('starttls-features.xml');
  /** The delays of a vrouter's reconnect attempts. */
  const retries = (vrouter: TestVrouter) =>
    vrouter.logger.lines.flatMap((line) => /reconnecting in ([\d.]+) s/.exec(line)?.[1] ?? []).map(Number);
  // Answers the open and the features as contrail-control, then garbage instead of <proceed/>.
  let fakeSessions = 0;
  const fakeControl = net.createServer((socket) => {
    fakeSessions++;
    socket.on('data', (chunk) => {
      if (chunk.includes('<stream:stream')) socket.write(xmppVector('control-open.xml') + xmppVector('starttls-features.xml'));
      if (chunk.includes('<starttls')) socket.write('\u0000garbage');
    });
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => fakeControl.listen(0, '127.0.0.1', resolve));
  const noProceed = new TestVrouter('node-a', '192.168.0.21', [(fakeControl.address() as net.AddressInfo).port], backoff, control.tlsFor('node-a'));
  const plain = new TestVrouter('node-p', '192.168.0.22', [control.port], { reconnectDelay: { initial: 5, max: 5 } });
  const foreignCa = new TestVrouter('node-a', '192.168.0.23', [control.port], backoff, control.tlsFor('rogue-node-a'));
  const wrongServerName = new TestVrouter('node-b', '192.168.0.24', [control.port], backoff, control.tlsFor('node-b', 'node-x'));
  // A control node without TLS answers the open and offers nothing: the vrouter gives up after its hold time.
  const plainControl = await startControlNode();
  const noFeatures = new TestVrouter('node-a', '192.168.0.25', [plainControl.port], { holdTime: 0.3, ...backoff }, control.tlsFor('node-a'));
  try {
    await a.addPod(pod('a1', 20, { name: 'web' }));

    // Stanzas before STARTTLS: the answer and the features, then a stream error.
    const reply = await rawSession(`${open}<iq type="set" from="intruder" to="${CONTROL_NODE_JID}/bgp-peer" id="subscribe1"/>`);
    assert.equal(reply.slice(0, answer.length), answer);
    assert.match(reply.slice(answer.length), /^<stream:error><not-authorized xmlns="urn:ietf:params:xml:ns:xmpp-streams"\/><text [^>]*>&lt;iq&gt; before STARTTLS, which this control node requires<\/text><\/stream:error><\/stream:stream>$/);
    assert.ok(control.logger.has(/STARTTLS failed: <iq> before STARTTLS/), control.logger.lines.join('\n'));
    // A vrouter without TLS takes the answer for an accepted session: it refuses the features, or sends stanzas
    // and is refused, whichever the control node or it reads first.
    await eventually(() => {
      assert.ok(control.logger.has(/STARTTLS failed: (<(iq|message)> before STARTTLS|peer sent stream error bad-format)/), control.logger.lines.join('\n'));
      assert.ok(plain.logger.has(/session closed: (malformed or unexpected stanza: unexpected stanza <stream:features>|peer sent stream error not-authorized)/), plain.logger.lines.join('\n'));
    });
    // Bytes that are not TLS after <proceed/>: the handshake fails.
    await rawSession(open + xmppVector('starttls-request.xml'), Buffer.from('GET / HTTP/1.0\r\n\r\n'));
    assert.ok(control.logger.has(/STARTTLS failed: TLS handshake failed: .*SSL routines:ssl3_get_record:http request/), control.logger.lines.join('\n'));
    // A certificate of another CA, a control node certificate of another name, garbage instead of <proceed/>: retried,
    // later each time. (With TLS 1.3 the vrouter's handshake is done before the control node checks its certificate:
    // it sees the connection closed, the control node logs why.)
    await eventually(() => {
      for (const vrouter of [foreignCa, wrongServerName, noProceed]) assert.ok(retries(vrouter).length >= 3, vrouter.logger.lines.join('\n'));
    });
    assert.ok(control.logger.has(/STARTTLS failed: TLS handshake failed: certificate refused: UNABLE_TO_VERIFY_LEAF_SIGNATURE/), control.logger.lines.join('\n'));
    assert.ok(wrongServerName.logger.has(/STARTTLS failed: TLS handshake failed: Hostname\/IP does not match certificate's altnames/));
    assert.ok(noProceed.logger.has(/STARTTLS failed: malformed or unexpected data/));
    await eventually(() => assert.ok(noFeatures.logger.has(/STARTTLS failed: STARTTLS not completed within 0.3 s; reconnecting/), noFeatures.logger.lines.join('\n')));
    assert.ok(fakeSessions >= 3);
    for (const vrouter of [foreignCa, wrongServerName, noProceed]) {
      const [first, second, third] = retries(vrouter);
      assert.ok(first < second && second < third, `backoff: ${retries(vrouter).join(', ')}`);
    }

    // The listener and the sessions over TLS are untouched.
    const configB = await b.addPod(pod('b1', 21, { name: 'web' }));
    await eventually(() => assert.equal(a.route('web', `${configB.ip}/32`), 'tunnel 192.168.0.12/21'));
    assert.deepEqual(control.node.connectedVrouters().sort(), ['node-a', 'node-b']);
  } finally {
    await Promise.all([a.close(), b.close(), noProceed.close(), plain.close(), foreignCa.close(), wrongServerName.close(), noFeatures.close()]);
    fakeControl.close();
    await plainControl.node.close();
    await control.cleanup();
  }
});
