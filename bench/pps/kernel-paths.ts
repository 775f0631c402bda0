/**
 * The kernel baselines the vrouter is compared with, built from namespaces:
 *
 *   kernel-bridge: pod-a -veth- [node: br0] -veth- pod-b
 *   kernel-vxlan (flannel-style L2 overlay):
 *     pod-a -veth- [node1: br0 + vxlan0] =underlay veth= [node2: vxlan0 + br0] -veth- pod-b
 *
 * Every forwarding entry is static (bridge FDB, VXLAN FDB, underlay
 * neighbours), so nothing is learned or flooded while traffic runs.
 * Addresses come from 198.18.0.0/15, the range RFC 2544 sets aside for
 * benchmarks; they exist only inside the topology's namespaces.
 */
import { Topology } from '../../test/support/netns';

/** Where a measurement sends and counts, and the frame addressing that reaches the receiver. */
export interface TrafficPath {
  senderNs: string;
  senderIf: string;
  receiverNs: string;
  receiverIf: string;
  srcMac: string;
  /** The receiver's MAC: what the sender must put in the frame. */
  dstMac: string;
  srcIp: string;
  dstIp: string;
}

const POD_A = { ip: '198.19.0.2', mac: '02:00:c6:13:00:02' };
const POD_B = { ip: '198.19.0.3', mac: '02:00:c6:13:00:03' };
/** The pods' gateway: nothing answers it in the kernel paths, which never route. */
const POD_GATEWAY = '198.19.0.1';
const NODE1_UNDERLAY = '198.18.0.1';
const NODE2_UNDERLAY = '198.18.0.2';
const VXLAN_VNI = '1';
const VXLAN_PORT = '4789';
/** Room for the 50 bytes of VXLAN encapsulation under 1500-byte pod frames. */
const UNDERLAY_MTU = 1550;

async function addPod(topology: Topology, role: string, pod: { ip: string; mac: string }, node: string, nodePort: string): Promise<string> {
  const ns = await topology.addNamespace(role);
  await topology.addVethPair(ns, 'eth0', node, nodePort);
  await topology.configurePod(ns, 'eth0', { ip: pod.ip, gateway: POD_GATEWAY, mac: pod.mac });
  return ns;
}

function pinBridgeEntry(topology: Topology, ns: string, mac: string, port: string): Promise<string> {
  return topology.exec(ns, ['bridge', 'fdb', 'replace', mac, 'dev', port, 'master', 'static']);
}

function pathBetweenPods(podA: string, podB: string): TrafficPath {
  return {
    senderNs: podA,
    senderIf: 'eth0',
    receiverNs: podB,
    receiverIf: 'eth0',
    srcMac: POD_A.mac,
    dstMac: POD_B.mac,
    srcIp: POD_A.ip,
    dstIp: POD_B.ip,
  };
}

export async function buildKernelBridge(topology: Topology): Promise<TrafficPath> {
  const node = await topology.addNamespace('node');
  const podA = await addPod(topology, 'pod-a', POD_A, node, 'veth-a');
  const podB = await addPod(topology, 'pod-b', POD_B, node, 'veth-b');
  await topology.addBridge(node, 'br0', ['veth-a', 'veth-b']);
  await pinBridgeEntry(topology, node, POD_A.mac, 'veth-a');
  await pinBridgeEntry(topology, node, POD_B.mac, 'veth-b');
  return pathBetweenPods(podA, podB);
}

/** A VXLAN device bridged with the local pod's port; remote pods' MACs point at the peer node. */
async function addVxlanNode(
  topology: Topology,
  node: string,
  local: { underlayIp: string; pod: { mac: string }; podPort: string },
  remote: { underlayIp: string; underlayMac: string; pod: { mac: string } },
): Promise<void> {
  await topology.exec(node, ['ip', 'address', 'add', `${local.underlayIp}/24`, 'dev', 'underlay']);
  await topology.exec(node, ['ip', 'neigh', 'replace', remote.underlayIp, 'lladdr', remote.underlayMac, 'dev', 'underlay', 'nud', 'permanent']);
  await topology.exec(node, [
    'ip', 'link', 'add', 'vxlan0', 'type', 'vxlan', 'id', VXLAN_VNI, 'dstport', VXLAN_PORT,
    'local', local.underlayIp, 'remote', remote.underlayIp, 'dev', 'underlay', 'nolearning',
  ]);
  await topology.exec(node, ['ip', 'link', 'set', 'vxlan0', 'up']);
  await topology.addBridge(node, 'br0', [local.podPort, 'vxlan0']);
  await pinBridgeEntry(topology, node, local.pod.mac, local.podPort);
  await pinBridgeEntry(topology, node, remote.pod.mac, 'vxlan0');
  await topology.exec(node, ['bridge', 'fdb', 'replace', remote.pod.mac, 'dev', 'vxlan0', 'dst', remote.underlayIp, 'self', 'permanent']);
}

export async function buildKernelVxlan(topology: Topology): Promise<TrafficPath> {
  const node1 = await topology.addNamespace('node1');
  const node2 = await topology.addNamespace('node2');
  await topology.addVethPair(node1, 'underlay', node2, 'underlay', { mtu: UNDERLAY_MTU });
  const podA = await addPod(topology, 'pod-a', POD_A, node1, 'veth-a');
  const podB = await addPod(topology, 'pod-b', POD_B, node2, 'veth-b');
  const node1Mac = await topology.macOf(node1, 'underlay');
  const node2Mac = await topology.macOf(node2, 'underlay');
  await addVxlanNode(
    topology,
    node1,
    { underlayIp: NODE1_UNDERLAY, pod: POD_A, podPort: 'veth-a' },
    { underlayIp: NODE2_UNDERLAY, underlayMac: node2Mac, pod: POD_B },
  );
  await addVxlanNode(
    topology,
    node2,
    { underlayIp: NODE2_UNDERLAY, pod: POD_B, podPort: 'veth-b' },
    { underlayIp: NODE1_UNDERLAY, underlayMac: node1Mac, pod: POD_A },
  );
  return pathBetweenPods(podA, podB);
}
