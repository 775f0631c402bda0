/**
 * The vrouter paths of bench:pps: real daemons (`vrouter run`) in namespaces,
 * built with the VrouterCluster harness (test/support/vrouter-cluster.ts):
 *
 *   vrouter-local:   pod-a =TAP= [node0: vrouter] =TAP= pod-b
 *   vrouter-overlay: pod-a =TAP= [node0: vrouter] =direct veth= [node1: vrouter] =TAP= pod-b
 *                    (MPLS over UDP)
 *
 * Pods get the kernel paths' addresses and MACs (198.19.0.0/24), so the
 * frames differ from the kernel cases' only in the destination MAC: pods send
 * everything to the vrouter's MAC. The harness programs the route to the
 * remote pod on the other node, as a control node would.
 *
 * The harness's underlay is a Linux bridge in its own namespace; kernel-vxlan's
 * two node namespaces share one veth. The bridge hop, done in the sending
 * daemon's context, cost the overlay some 17% in one measurement, so
 * directUnderlay() routes the two nodes' tunnels over a veth of their own.
 *
 * The generator runs on CPU 0 (traffic.ts). The sending node's daemon (all
 * its threads) is pinned to the other core with `taskset -a -p`, at nice
 * -20. In the overlay case the receiving node's daemon goes to CPU 0, beside
 * the generator: the kernel-vxlan path likewise does its second node's work
 * in softirq on the generator's core, and two daemons on one core spend
 * their time waking each other (batches of 6-8 packets) instead of forwarding.
 * With the GSO/GRO underlay the receiver is woken once per run instead:
 * vrouter-overlay-cpu1 puts both daemons on CPU 1 to see what that gives.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { promisify } from 'node:util';
import { Topology } from '../../test/support/netns';
import { ClusterPod, DaemonStats, VrouterCluster } from '../../test/support/vrouter-cluster';
import { TrafficPath } from './kernel-paths';
import { setAutogroupNice } from './traffic';

const run = promisify(execFile);

/** The MAC the vrouter answers ARP with and pods send everything to. */
export const VROUTER_MAC = '00:00:5e:00:01:00';
/** The generator has CPU 0 (traffic.ts); node i's daemon gets FORWARDER_CPUS[i]. */
export const FORWARDER_CPUS = ['1', '0'];
/**
 * Like the generator (traffic.ts), the daemons run at nice -20: on a shared
 * machine ordinary processes then take little of their core (as they take
 * nothing from the kernel paths' forwarding, which runs in softirq); a storm
 * of short-lived processes still does, which bench:pps's CPU line shows.
 */
export const FORWARDER_NICE = -20;

const VN = { name: 'vn1', subnet: '198.19.0.0/24', gateway: '198.19.0.1' };
const POD_A = { name: 'a', vn: VN.name, ip: '198.19.0.2', mac: '02:00:c6:13:00:02' };
const POD_B = { name: 'b', vn: VN.name, ip: '198.19.0.3', mac: '02:00:c6:13:00:03' };

/** A vrouter path: the traffic path plus the daemons, for CPU use and counters. */
export interface VrouterTrafficPath extends TrafficPath {
  /** The daemons' pids by node name; the first is the sender's. */
  forwarders: Array<{ node: string; pid: number; cpu: string }>;
  /** One line per daemon from its GET /stats: packets, vif counters, drops by reason. */
  report(): Promise<string[]>;
  /** Stops the daemons with SIGTERM, checked. */
  stop(): Promise<void>;
}

/**
 * Pins every thread of a running process to one CPU and gives each, and the
 * process's autogroup, the highest nice priority (nice is per thread on
 * Linux); threads it starts later inherit both.
 */
async function pinProcess(pid: number, cpu: string): Promise<void> {
  await run('taskset', ['-a', '-p', '-c', cpu, String(pid)]);
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) os.setPriority(Number(tid), FORWARDER_NICE);
  setAutogroupNice(pid, FORWARDER_NICE);
}

/**
 * The underlay's MTU: the harness gives pods 32 bytes less (MPLS over UDP's
 * outer IPv4, UDP and label), so pods get 1500 as in the kernel paths, and
 * IMIX's full-size frame fits.
 */
const UNDERLAY_MTU = 1532;

async function startCluster(topology: Topology, nodes: number, cpus: readonly string[]): Promise<VrouterCluster> {
  const cluster = await VrouterCluster.start(topology, { nodes, vns: [VN], logLevel: 'warn', underlayMtu: UNDERLAY_MTU });
  for (const node of cluster.nodes) await pinProcess(node.pid, cpus[node.index]);
  return cluster;
}

function describeStats(node: string, stats: DaemonStats): string {
  const drops = Object.entries(stats.drops).map(([reason, count]) => `${reason} ${count}`);
  const vifs = stats.vifs.map((vif) => {
    const notTaken = vif.txDropped ? ` (${vif.txDropped} not taken)` : '';
    // The port's own loss counters: XDP statistics (AF_XDP) or ring drops (AF_PACKET).
    const counters = (vif as Record<string, unknown>).ioCounters as Record<string, number> | undefined;
    const io = (vif as Record<string, unknown>).io;
    const kernel = counters ? ` [${io}: ${Object.entries(counters).filter(([, value]) => value > 0).map(([key, value]) => `${key} ${value}`).join(' ') || 'no drops'}]` : io ? ` [${io}]` : '';
    return `${vif.name} rx ${vif.rxPackets} tx ${vif.txPackets}${notTaken}${kernel}`;
  });
  // The underlay's paths (fabric-port.ts): frames in GSO runs and on the raw path, UDP_SEGMENT sends, GRO buffers.
  const u = (stats as unknown as { underlay?: Record<string, number> | null }).underlay;
  const underlay = u
    ? `; underlay: ${u.gsoFrames} in GSO runs (${u.gsoSends} sends, ${(u.gsoSegments / Math.max(1, u.gsoSends)).toFixed(1)}/send), ${u.rawFrames} raw, ` +
      `${u.groBuffers} GRO buffers (${(u.groSegments / Math.max(1, u.groBuffers)).toFixed(1)}/buffer), ${u.dropped} not taken`
    : '';
  return `${node}: received ${stats.received}, transmitted ${stats.transmitted}, flows ${stats.flows}; ${vifs.join(', ')}; drops: ${drops.join(', ') || 'none'}${underlay}`;
}

function vrouterPath(cluster: VrouterCluster, podA: ClusterPod, podB: ClusterPod, cpus: readonly string[]): VrouterTrafficPath {
  return {
    senderNs: podA.ns,
    senderIf: podA.ifname,
    receiverNs: podB.ns,
    receiverIf: podB.ifname,
    srcMac: podA.mac,
    dstMac: VROUTER_MAC,
    srcIp: podA.ip,
    dstIp: podB.ip,
    forwarders: cluster.nodes.map((node) => ({ node: node.name, pid: node.pid, cpu: cpus[node.index] })),
    // The nodes' UDP socket drops are among traffic.ts's loss counters.
    report: () => Promise.all(cluster.nodes.map(async (node) => describeStats(node.name, await cluster.stats(node.index)))),
    stop: () => cluster.stop(),
  };
}

export async function buildVrouterLocal(topology: Topology): Promise<VrouterTrafficPath> {
  const cluster = await startCluster(topology, 1, FORWARDER_CPUS);
  const podA = await cluster.addPod(0, POD_A);
  const podB = await cluster.addPod(0, POD_B);
  return vrouterPath(cluster, podA, podB, FORWARDER_CPUS);
}

/**
 * Gives two nodes of a cluster a veth of their own (`direct`) and routes
 * each one's underlay address to the other over it: their tunnels then skip
 * the harness's underlay bridge, as kernel-vxlan's node namespaces share one
 * veth. Neighbours are static, so nothing is resolved while traffic runs.
 * The daemons are unaware: they send through the kernel's routing and their
 * UDP sockets are bound to the address, not to a device.
 */
async function directUnderlay(topology: Topology, cluster: VrouterCluster): Promise<void> {
  const [a, b] = cluster.nodes;
  await topology.addVethPair(a.ns, 'direct', b.ns, 'direct', { mtu: cluster.options.underlayMtu });
  const macs = [await topology.macOf(a.ns, 'direct'), await topology.macOf(b.ns, 'direct')];
  for (const [self, peer, peerMac] of [[a, b, macs[1]], [b, a, macs[0]]] as const) {
    await topology.exec(self.ns, ['ip', 'route', 'add', `${peer.underlayIp}/32`, 'dev', 'direct']);
    await topology.exec(self.ns, ['ip', 'neigh', 'replace', peer.underlayIp, 'lladdr', peerMac, 'dev', 'direct', 'nud', 'permanent']);
  }
}

/**
 * gsoMaxSegs: the sending node's underlay device takes GSO packets of at
 * most that many segments (1: as a NIC without segmentation offload), so
 * the kernel segments larger runs in software before the device.
 * cpus: node i's daemon on cpus[i] (default FORWARDER_CPUS).
 */
export async function buildVrouterOverlay(topology: Topology, options: { gsoMaxSegs?: number; cpus?: readonly string[] } = {}): Promise<VrouterTrafficPath> {
  const cpus = options.cpus ?? FORWARDER_CPUS;
  const cluster = await startCluster(topology, 2, cpus);
  await directUnderlay(topology, cluster);
  if (options.gsoMaxSegs !== undefined) {
    await topology.exec(cluster.nodes[0].ns, ['ip', 'link', 'set', 'dev', 'direct', 'gso_max_segs', String(options.gsoMaxSegs)]);
  }
  // addPod also sets the pod's /32 on the other node: node0 -> 198.18.0.12 label(b), node1 -> 198.18.0.11 label(a).
  const podA = await cluster.addPod(0, POD_A);
  const podB = await cluster.addPod(1, POD_B);
  return vrouterPath(cluster, podA, podB, cpus);
}
