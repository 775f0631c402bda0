/**
 * npm run bench:control. Prints:
 *
 *   routes-100k-to-dataplane: N ms
 *     the control channel over loopback TCP, the control node in a child
 *     process (its own core), a control client in this process with a real
 *     Dataplane: a route source has published 100,000 routes in VN vn1; from
 *     the client's addPort in vn1 (VM subscribe, configuration push, VRF
 *     subscribe; the pod was registered on the control node's pod API
 *     before) until all 100,000 are in its vn1 VRF table. Floor 2,000 ms.
 *     Also printed: the CPU time the receiving process used meanwhile.
 *   port-add-to-remote-table: N ms
 *     (in-process, no floor) median over rounds of: addPort on client A (the
 *     pod registered before) until the pod's route is programmed in client
 *     B's dataplane: the control plane's share of the next case.
 *   port-add-to-remote-forwarding: N ms
 *     real processes in network namespaces (needs root): a `vrouter-control`
 *     and two `vrouter run --control` daemons (test/support/vrouter-cluster.ts).
 *     A pod on node1 pings an address every 2 ms; the median over rounds of
 *     the time from the POST /port that adds a pod with that address (labels
 *     only otherwise; registered on the pod API before) on node0 to the first echo reply: port add, control
 *     node round trip, TAP moved into the pod's namespace and configured,
 *     route published, pushed and programmed on node1, packet forwarded both
 *     ways. Floor 50 ms.
 */
import { fork } from 'node:child_process';
import net from 'node:net';
import { Topology } from '../test/support/netns';
import { VrouterCluster } from '../test/support/vrouter-cluster';
import { Dataplane } from '../src/dataplane/dataplane';
import { parseMac } from '../src/dataplane/protocols/ethernet';
import { ipFromString } from '../src/dataplane/protocols/ipv4';
import type { LocalPort, RouteNexthop } from '../src/control/agent/agent-interface';
import { ControlClient } from '../src/control/agent/control-client';
import { InProcessDataplaneAccess } from '../src/control/agent/dataplane-access';
import { ControlNode } from '../src/control/node/control-node';
import { createPodApi } from '../src/control/node/pod-api';
import { parseNetworkConfig } from '../src/control/node/network-config';
import { vrouterToControl } from '../src/control/xmpp/codec';
import { silentLogger } from '../src/control/xmpp/logger';
import { XmppSession } from '../src/control/xmpp/session';
import { BGP_PEER_RESOURCE } from '../src/control/xmpp/stanza';
import { networkFqns } from '../src/control/ifmap/names';

/** The routing instance of network.yaml's vn1: the VRF routes are published and programmed in. */
const VN1_VRF = networkFqns('vn1').routingInstance;

const ROUTES = 100_000;
const PORT_ADD_ROUNDS = 21;
/** Rounds with real daemons: each adds a pod (namespace, TAP). */
const FORWARDING_ROUNDS = 11;
const ROUTES_FLOOR_MS = 2000;
const PORT_ADD_FLOOR_MS = 50;
const CHILD_FLAG = '--control-node';
/** `node dist/bench/control.bench.js --routes-only` (e.g. under --cpu-prof): the first case alone. */
const ROUTES_ONLY_FLAG = '--routes-only';

const CONFIG = `
vns:
  - { name: default, subnet: 192.0.2.0/24 }
  - { name: vn1, subnet: 10.0.0.0/8 }
  - { name: web, subnet: 172.16.0.0/16 }
`;

// ------------------------------------------------------------------ child: control node + route source

/** The 100,000 routes: 1,000 remote nodes with 100 pods each, addresses from 10.1.0.0. */
function sourceRoute(index: number) {
  const address = ipFromString('10.1.0.0') + index;
  const prefix = `${address >>> 24}.${(address >>> 16) & 255}.${(address >>> 8) & 255}.${address & 255}/32`;
  const node = Math.floor(index / 100);
  return {
    prefix,
    nexthops: [{ address: `198.18.${node >> 8}.${node & 255}`, label: 16 + (index % 100), encaps: ['udp'], virtualNetwork: 'vn1' }],
    version: 1,
    sequenceNumber: 0,
    localPreference: 200,
    med: 0,
  };
}

/** Publishes the routes as a vrouter would, and returns once the control node has sent them all back. */
async function publishRoutes(port: number): Promise<void> {
  const socket = net.connect(port, '127.0.0.1');
  await new Promise((resolve) => socket.once('connect', resolve));
  let echoed = 0;
  let allEchoed!: () => void;
  const done = new Promise<void>((resolve) => (allEchoed = resolve));
  let opened!: () => void;
  const streamOpened = new Promise<void>((resolve) => (opened = resolve));
  const session = new XmppSession(socket, { holdTime: 90, logger: silentLogger, name: 'route source' }, {
    streamOpen: () => opened(),
    stanza: (stanza) => {
      if (stanza.kind === 'route-update' && (echoed += stanza.changes.length) >= ROUTES) allEchoed();
    },
    closed: (reason) => {
      throw new Error(`route source session closed: ${reason}`);
    },
  });
  const bgp = vrouterToControl('route-source', BGP_PEER_RESOURCE);
  session.openStream({ from: 'route-source', to: 'network-control@contrailsystems.com' });
  await streamOpened;
  session.sendStanza({ kind: 'subscribe', ...bgp, id: 'subscribe1', vrf: VN1_VRF, instanceId: 1 });
  for (let index = 0; index < ROUTES; index++) {
    const entry = sourceRoute(index);
    session.sendStanza({ kind: 'publish', ...bgp, id: `pubsub${index}`, vrf: VN1_VRF, entry });
    session.sendStanza({ kind: 'associate', ...bgp, id: `collection${index}`, vrf: VN1_VRF, prefix: entry.prefix });
    if (index % 1000 === 999) await session.drained();
  }
  session.sendStanza({ kind: 'end-of-rib', ...bgp });
  await done;
}

async function runChild(): Promise<void> {
  // The route source stands for 1,000 nodes whose pods this control node does not know: its publishes are not checked.
  const node = new ControlNode({ config: parseNetworkConfig(CONFIG, 'bench.yaml'), unrestrictedPublishers: new Set(['route-source']) });
  const { port } = await node.listen(0, '127.0.0.1');
  const api = createPodApi(node);
  await new Promise<void>((resolve) => api.listen(0, '127.0.0.1', resolve));
  await publishRoutes(port);
  process.send!({ port, podApiPort: (api.address() as net.AddressInfo).port });
}

// ------------------------------------------------------------------ parent: the measured vrouters

/** The in-process access, telling the bench when a route is programmed. */
class ObservedAccess extends InProcessDataplaneAccess {
  onRoute: (vrf: string, prefix: string) => void = () => {};

  override setRoute(vrf: string, prefix: string, nexthops: RouteNexthop[]): void {
    super.setRoute(vrf, prefix, nexthops);
    this.onRoute(vrf, prefix);
  }
}

function vrouter(name: string, underlayIp: string, controlPort: number) {
  const dataplane = new Dataplane({ name, underlayIp: ipFromString(underlayIp), encapPriority: ['udp', 'gre'] }, { flowCapacity: 1024 });
  dataplane.addVif({ id: 0, kind: 'fabric', name: 'eth0', mac: parseMac('52:54:00:00:00:01'), ip: ipFromString(underlayIp), vrf: -1, mtu: 1500 });
  const access = new ObservedAccess(dataplane);
  const client = new ControlClient({
    nodeName: name,
    underlayIp,
    encaps: ['udp', 'gre'],
    servers: [{ host: '127.0.0.1', port: controlPort }],
    access,
  });
  return { dataplane, access, client };
}

async function established(client: ControlClient): Promise<void> {
  while (!client.status().every((server) => server.established)) await new Promise((resolve) => setTimeout(resolve, 5));
}

function pod(id: string, label: number, vn: string): LocalPort {
  return { id, name: id, namespace: 'bench', labels: { name: vn }, mac: `02:00:00:00:${(label >> 8).toString(16).padStart(2, '0')}:${(label & 255).toString(16).padStart(2, '0')}`, label };
}

/** Registers the pod of a vrouter on the control node's pod API (POST /pods), as the configuration side does before the port exists. */
async function register(podApiPort: number, vrouter: string, port: LocalPort): Promise<void> {
  const registration = { vrouter, vmUuid: port.id, vmiUuid: port.id, name: port.name, namespace: port.namespace, labels: port.labels, mac: port.mac };
  const response = await fetch(`http://127.0.0.1:${podApiPort}/pods`, { method: 'POST', body: JSON.stringify(registration), headers: { 'content-type': 'application/json' } });
  if (!response.ok) throw new Error(`POST /pods ${port.id}: ${response.status} ${await response.text()}`);
}

async function measureRoutesToDataplane(controlPort: number, podApiPort: number): Promise<number> {
  const node = vrouter('bench-receiver', '198.19.0.1', controlPort);
  const receiver = pod('receiver', 16, 'vn1');
  await register(podApiPort, 'bench-receiver', receiver);
  await established(node.client);
  let remaining = ROUTES;
  const done = new Promise<void>((resolve) => {
    node.access.onRoute = (vrf, prefix) => {
      // The source's routes; the receiver's own address is allocated from 10.0.0.0/24.
      if (vrf === VN1_VRF && !prefix.startsWith('10.0.0.') && --remaining === 0) resolve();
    };
  });
  const start = performance.now();
  const cpuStart = process.cpuUsage();
  await node.client.addPort(receiver);
  await done;
  const elapsed = performance.now() - start;
  const cpu = process.cpuUsage(cpuStart);
  // What the receiver spent (decode worker, main thread, GC), less at the mercy of other load than the wall time.
  console.error(`  (receiver process CPU: ${Math.round((cpu.user + cpu.system) / 1000)} ms)`);
  const table = node.dataplane.vrfs.find(VN1_VRF)!.routes;
  if (table.size < ROUTES) throw new Error(`only ${table.size} routes in vn1`);
  await node.client.close();
  return elapsed;
}

async function measurePortAddToRemote(controlPort: number, podApiPort: number): Promise<number> {
  const a = vrouter('bench-a', '198.19.0.2', controlPort);
  const b = vrouter('bench-b', '198.19.0.3', controlPort);
  await Promise.all([established(a.client), established(b.client)]);
  const anchor = pod('b-anchor', 16, 'web');
  await register(podApiPort, 'bench-b', anchor);
  await b.client.addPort(anchor);
  const samples: number[] = [];
  for (let round = 0; round < PORT_ADD_ROUNDS; round++) {
    const added = pod(`a-${round}`, 100 + round, 'web');
    await register(podApiPort, 'bench-a', added);
    const start = performance.now();
    const programmed = new Promise<void>((resolve) => {
      b.access.onRoute = (vrf) => {
        if (vrf === networkFqns('web').routingInstance) resolve();
      };
    });
    await a.client.addPort(added);
    await programmed;
    samples.push(performance.now() - start);
  }
  await Promise.all([a.client.close(), b.client.close()]);
  samples.sort((x, y) => x - y);
  return samples[Math.floor(samples.length / 2)];
}

/** The network of the forwarding case: pods are placed by their `name` label. */
const FORWARDING_CONFIG = {
  vrouters: ['node0', 'node1'],
  vns: [
    { name: 'default', subnet: '10.32.0.0/24' },
    { name: 'web', subnet: '10.1.1.0/24' },
  ],
};

/** Port add on node0 -> first packet forwarded from a pod on node1 to it and back; median over rounds, in ms. */
async function measurePortAddToForwarding(): Promise<number> {
  if (process.getuid?.() !== 0) throw new Error('port-add-to-remote-forwarding needs root (network namespaces, TAP devices): sudo npm run bench:control');
  Topology.sweepStale();
  const topology = new Topology();
  let cluster: VrouterCluster | undefined;
  try {
    cluster = await VrouterCluster.start(topology, { nodes: 2, control: { config: FORWARDING_CONFIG }, logLevel: 'warn' });
    await cluster.waitForSessions();
    await cluster.addPod(1, { name: 'pinger', labels: { name: 'web' } });
    const samples: number[] = [];
    const answers: number[] = [];
    for (let round = 0; round < FORWARDING_ROUNDS; round++) {
      const { ms, answerMs } = await cluster.timePortAddToReply(0, { name: `p${round}`, labels: { name: 'web' }, ip: `10.1.1.${100 + round}` }, 'pinger');
      samples.push(ms);
      answers.push(answerMs);
    }
    const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
    console.error(
      `  (${FORWARDING_ROUNDS} rounds: ${samples.map((ms) => ms.toFixed(1)).join(' ')} ms; the port add itself answered after a median ${median(answers).toFixed(1)} ms)`,
    );
    return median(samples);
  } finally {
    await cluster?.stop().catch((error: Error) => console.error(error.message));
    await topology.destroy();
  }
}

async function main(): Promise<void> {
  const child = fork(__filename, [CHILD_FLAG], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  let routesMs: number;
  try {
    const { port, podApiPort } = await new Promise<{ port: number; podApiPort: number }>((resolve, reject) => {
      child.once('message', (message) => resolve(message as { port: number; podApiPort: number }));
      child.once('exit', (code) => reject(new Error(`control node process exited with ${code}`)));
    });
    routesMs = await measureRoutesToDataplane(port, podApiPort);
    console.log(`routes-100k-to-dataplane: ${Math.round(routesMs)} ms`);
    if (process.argv.includes(ROUTES_ONLY_FLAG)) return;
    // The control plane's share: up to the remote forwarding table, in process.
    const tableMs = await measurePortAddToRemote(port, podApiPort);
    console.log(`port-add-to-remote-table: ${tableMs.toFixed(1)} ms`);
  } finally {
    child.kill();
  }
  if (process.argv.includes(ROUTES_ONLY_FLAG)) return;
  const forwardingMs = await measurePortAddToForwarding();
  console.log(`port-add-to-remote-forwarding: ${forwardingMs.toFixed(1)} ms`);
  if (routesMs > ROUTES_FLOOR_MS || forwardingMs > PORT_ADD_FLOOR_MS) {
    console.error(`over the floor: routes-100k-to-dataplane ${ROUTES_FLOOR_MS} ms, port-add-to-remote-forwarding ${PORT_ADD_FLOOR_MS} ms`);
    process.exitCode = 1;
  }
}

if (process.argv.includes(CHILD_FLAG)) {
  // Killed by the parent: exit normally, so that --cpu-prof writes this process's profile too.
  process.on('SIGTERM', () => process.exit(0));
  runChild().catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
} else {
  main().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
