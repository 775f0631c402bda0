/**
 * Synthetic workloads for the in-process pipeline benchmark and the
 * no-allocation test: one node with 100,000 remote /32 routes in its VRF, and
 * batches of 64-byte frames (distinct flows) re-armed before every run.
 * Templates live in spare slots of the packet pool, so re-arming is a
 * copyWithin inside one buffer: no allocation, like a NIC filling its ring.
 * The *-ipv6 cases are the same on the dual-stack side of the same node:
 * 100,000 remote /128 routes beside the IPv4 ones, IPv6 pods and service.
 * fragments-ipv6: pod-a sends datagrams to the local service (DNAT) in four
 * IPv6 fragments each, a later one before its head (held, then released).
 */
import { Dataplane } from '../src/dataplane/dataplane';
import { CountingPort } from '../src/dataplane/io/memory-port';
import { PacketPool } from '../src/dataplane/packet-pool';
import { Pipeline } from '../src/dataplane/pipeline';
import { checksum } from '../src/dataplane/protocols/checksum';
import { parseMac } from '../src/dataplane/protocols/ethernet';
import { checksumUpdate16 } from '../src/dataplane/protocols/checksum';
import { ipFromString, writeU16, writeU32 } from '../src/dataplane/protocols/ipv4';
import { upperLayerChecksum6 } from '../src/dataplane/protocols/icmpv6';
import { ip6FromString } from '../src/dataplane/protocols/ipv6';
import { FRAGMENT_TIMEOUT_SECONDS } from '../src/dataplane/fragment-table';

export const BATCH = 256;
export const FRAME_BYTES = 64;
const REMOTE_ROUTES = 100_000;
const REMOTE_NODES = 64;

/**
 * After the first batch every case but flow-setup runs on established flows
 * (a flow-table hit per packet); flow-setup makes every packet a new flow pair
 * to a ClusterIP: route, ECMP member, floating-IP DNAT and policy evaluated.
 */
export type WorkloadCase =
  'local-forward' | 'encap' | 'decap' | 'ecmp-encap' | 'decap-dnat' | 'flow-setup' | 'encap-ipv6' | 'decap-dnat-ipv6' | 'flow-setup-ipv6' | 'fragments-ipv6';
export const WORKLOAD_CASES: WorkloadCase[] = [
  'local-forward', 'encap', 'decap', 'ecmp-encap', 'decap-dnat', 'flow-setup', 'encap-ipv6', 'decap-dnat-ipv6', 'flow-setup-ipv6', 'fragments-ipv6',
];

export interface Workload {
  pipeline: Pipeline;
  /** Re-arms the batch from the templates and runs it through the pipeline. */
  runBatch(): void;
  /** Where forwarded frames end up. */
  sink: CountingPort;
}

const POD_A = ipFromString('10.1.0.3');
const POD_B = ipFromString('10.1.0.4');
const CLUSTER_IP = ipFromString('10.96.0.10');
/** A service whose backend is pod-b (floating IP, port 5001 -> 8080). */
const LOCAL_SERVICE_IP = ipFromString('10.96.0.20');
/** flow-setup: client pods in vn2, each sending from many source ports. */
const CLIENT_PODS = 16;
const CLIENT_POD_BASE = ipFromString('10.3.0.16');
/** Rules a new flow is checked against before the one that allows it. */
const OTHER_POLICY_RULES = 16;
const NODE_IP = ipFromString('192.168.0.11');
const POD_A6 = ip6FromString('fd00:1::3');
const POD_B6 = ip6FromString('fd00:1::4');
const LOCAL_SERVICE_IP6 = ip6FromString('fd00:96::20');

/** fd00:2::x: the remote pods' IPv6 addresses, beside their IPv4 ones. */
function remotePod6(i: number): Uint8Array {
  const address = ip6FromString('fd00:2::');
  writeU32(address, 12, i + 2);
  return address;
}

function clientPod6(i: number): Uint8Array {
  const address = ip6FromString('fd00:3::');
  address[15] = 16 + i;
  return address;
}

/** 10.2.x.y: the remote pods, spread over REMOTE_NODES nodes. */
function remotePod(i: number): number {
  return (ipFromString('10.2.0.0') + Math.floor(i / 250) * 256 + (i % 250) + 2) >>> 0;
}

function buildDataplane(): Dataplane {
  const dp = new Dataplane({ name: 'bench', underlayIp: NODE_IP, encapPriority: ['udp', 'gre'] });
  dp.addVrf(1, 'vn1', [{ prefix: ipFromString('10.0.0.0'), length: 8 }], ipFromString('10.1.0.1'));
  dp.addVrf(2, 'vn2', [{ prefix: ipFromString('10.3.0.0'), length: 16 }], ipFromString('10.3.0.1'));
  dp.addVif({ id: 0, kind: 'fabric', name: 'eth0', mac: parseMac('52:54:00:00:00:11'), ip: NODE_IP, vrf: -1, mtu: 9000 });
  dp.addVif({ id: 1, kind: 'virtual', name: 'pod-a', mac: parseMac('02:00:00:00:00:03'), ip: POD_A, vrf: 1, mtu: 1500 });
  dp.addVif({
    id: 2,
    kind: 'virtual',
    name: 'pod-b',
    mac: parseMac('02:00:00:00:00:04'),
    ip: POD_B,
    vrf: 1,
    mtu: 1500,
    floatingIps: [{ ip: LOCAL_SERVICE_IP, portMap: [{ protocol: 17, port: 5001, targetPort: 8080 }] }],
    ip6: POD_B6,
    floatingIps6: [{ ip: LOCAL_SERVICE_IP6, portMap: [{ protocol: 17, port: 5001, targetPort: 8080 }] }],
  });
  dp.vifs.get(1)!.ip6 = POD_A6;
  for (let i = 0; i < CLIENT_PODS; i++) {
    dp.addVif({ id: 10 + i, kind: 'virtual', name: `client-${i}`, mac: parseMac('02:00:00:00:00:03'), ip: CLIENT_POD_BASE + i, vrf: 2, mtu: 1500, ip6: clientPod6(i) });
  }
  dp.setNexthop(1, { kind: 'encap', vif: 1, mac: parseMac('02:00:00:00:00:03') });
  dp.setNexthop(2, { kind: 'encap', vif: 2, mac: parseMac('02:00:00:00:00:04') });
  dp.addRoute(1, POD_A, 32, 1);
  dp.addRoute(1, POD_B, 32, 2);
  dp.setLabel(17, 1);
  dp.setLabel(18, 2);
  // One tunnel nexthop per remote pod (node + label), as the control plane programs them.
  for (let i = 0; i < REMOTE_ROUTES; i++) {
    const id = 100 + i;
    dp.setNexthop(id, {
      kind: 'tunnel',
      vif: 0,
      dip: (ipFromString('192.168.1.0') + (i % REMOTE_NODES)) >>> 0,
      sip: NODE_IP,
      label: 16 + (i % 60000),
      encap: 'udp',
      mac: parseMac('52:54:00:00:00:fe'),
    });
    dp.addRoute(1, remotePod(i), 32, id);
    dp.addRoute6(1, remotePod6(i), 128, id);
  }
  dp.addRoute6(1, POD_A6, 128, 1);
  dp.addRoute6(1, POD_B6, 128, 2);
  dp.addRoute6(1, LOCAL_SERVICE_IP6, 128, 2);
  dp.addRoute6(2, LOCAL_SERVICE_IP6, 128, 2);
  dp.setNexthop(50, { kind: 'composite', members: [100, 101, 102] });
  dp.addRoute(1, CLUSTER_IP, 32, 50);
  dp.addRoute(1, LOCAL_SERVICE_IP, 32, 2);
  // vn2 uses the service: its ClusterIP route leaked into vn2, allowed on its port only.
  dp.addRoute(2, LOCAL_SERVICE_IP, 32, 2);
  for (let i = 0; i < OTHER_POLICY_RULES; i++) {
    dp.policy.rules.push({ name: `other-${i}`, sourceVn: 2, destinationVn: 1, protocol: 6, portFrom: 1000 + i, portTo: 1000 + i, destinationPrefix: 0, destinationLength: 0, destinationPrefix6: null, allow: true });
  }
  // Every rule has the same fields, as the state file makes them: one object shape for the policy loop.
  dp.policy.rules.push({ name: 'vn2 uses svc', sourceVn: 2, destinationVn: 1, protocol: 17, portFrom: 5001, portTo: 5001, destinationPrefix: LOCAL_SERVICE_IP, destinationLength: 32, destinationPrefix6: null, allow: true });
  dp.policy.rules.push({
    name: 'vn2 uses svc (IPv6)',
    sourceVn: 2,
    destinationVn: 1,
    protocol: 17,
    portFrom: 5001,
    portTo: 5001,
    destinationPrefix: 0,
    destinationLength: 128,
    destinationPrefix6: LOCAL_SERVICE_IP6,
    allow: true,
  });
  return dp;
}

/** Writes a 64-byte Ethernet/IPv6/UDP frame at `at` (2 bytes of payload, checksum set); returns its length. */
function writeInnerFrame6(d: Buffer, at: number, src: Uint8Array, dst: Uint8Array, srcPort: number): number {
  d.fill(0, at, at + FRAME_BYTES);
  d.set(parseMac('00:00:5e:00:01:00'), at);
  d.set(parseMac('02:00:00:00:00:03'), at + 6);
  writeU16(d, at + 12, 0x86dd);
  const ip = at + 14;
  d[ip] = 0x60;
  writeU16(d, ip + 4, FRAME_BYTES - 54);
  d[ip + 6] = 17;
  d[ip + 7] = 64;
  d.set(src, ip + 8);
  d.set(dst, ip + 24);
  writeU16(d, ip + 40, srcPort);
  writeU16(d, ip + 42, 5001);
  writeU16(d, ip + 44, FRAME_BYTES - 54);
  writeU16(d, ip + 46, upperLayerChecksum6(d, ip, ip + 40, FRAME_BYTES - 54, 17));
  return FRAME_BYTES;
}

/** fragments-ipv6: each datagram's UDP segment in fragments of these sizes, sent in this order (index 0: the head). */
const FRAGMENT_SIZES = [16, 8, 8, 8];
const FRAGMENT_ORDER = [1, 0, 2, 3];
const SEGMENT_LENGTH = FRAGMENT_SIZES.reduce((sum, size) => sum + size, 0);

/** Writes fragment `index` of datagram `datagram` (pod-a to the local service, UDP checksum over the whole) at `at`; returns the frame length. */
function writeFragmentFrame6(d: Buffer, at: number, datagram: number, index: number): number {
  const whole = Buffer.alloc(14 + 40 + SEGMENT_LENGTH);
  writeInnerFrame6(whole, 0, POD_A6, LOCAL_SERVICE_IP6, 10000 + datagram);
  writeU16(whole, 14 + 4, SEGMENT_LENGTH);
  writeU16(whole, 14 + 44, SEGMENT_LENGTH);
  writeU16(whole, 14 + 46, 0);
  writeU16(whole, 14 + 46, upperLayerChecksum6(whole, 14, 14 + 40, SEGMENT_LENGTH, 17));
  const offset = FRAGMENT_SIZES.slice(0, index).reduce((sum, size) => sum + size, 0);
  const size = FRAGMENT_SIZES[index];
  const ip = at + 14;
  whole.copy(d, at, 0, 14 + 40);
  writeU16(d, ip + 4, 8 + size);
  d[ip + 6] = 44;
  d[ip + 40] = 17;
  d[ip + 41] = 0;
  writeU16(d, ip + 42, offset | (offset + size < SEGMENT_LENGTH ? 1 : 0));
  writeU32(d, ip + 44, 0x5000 + datagram);
  whole.copy(d, ip + 48, 14 + 40 + offset, 14 + 40 + offset + size);
  return 14 + 48 + size;
}

/** Fabric MPLS over UDP (label 18, from node 192.168.1.7) around `inner`, an IP packet; returns the frame length. */
function writeTunnelAround(d: Buffer, at: number, srcPort: number, inner: Uint8Array): number {
  const outer = 14 + 20 + 8 + 4;
  d.fill(0, at, at + outer);
  d.set(parseMac('52:54:00:00:00:11'), at);
  d.set(parseMac('52:54:00:00:00:fe'), at + 6);
  writeU16(d, at + 12, 0x0800);
  const ip = at + 14;
  d[ip] = 0x45;
  writeU16(d, ip + 2, 20 + 8 + 4 + inner.length);
  d[ip + 8] = 64;
  d[ip + 9] = 17;
  writeU32(d, ip + 12, ipFromString('192.168.1.7'));
  writeU32(d, ip + 16, NODE_IP);
  writeU16(d, ip + 10, checksum(d, ip, 20));
  writeU16(d, ip + 20, 49152 + (srcPort & 0x3fff));
  writeU16(d, ip + 22, 6635);
  writeU16(d, ip + 24, 8 + 4 + inner.length);
  writeU32(d, ip + 28, ((18 << 12) | 0x100 | 63) >>> 0);
  d.set(inner, at + outer);
  return outer + inner.length;
}

/** Wraps an IPv6 packet from remote pod 7 (hop limit already decremented) in fabric MPLS over UDP. */
function writeTunnelFrame6(d: Buffer, at: number, srcPort: number, innerDst: Uint8Array): number {
  const inner = Buffer.alloc(FRAME_BYTES);
  writeInnerFrame6(inner, 0, remotePod6(7), innerDst, srcPort);
  inner[14 + 7] = 63;
  return writeTunnelAround(d, at, srcPort, inner.subarray(14));
}

/** Writes a 64-byte Ethernet/IPv4/UDP frame at `at`; returns its length. */
function writeInnerFrame(d: Buffer, at: number, src: number, dst: number, srcPort: number): number {
  d.fill(0, at, at + FRAME_BYTES);
  d.set(parseMac('00:00:5e:00:01:00'), at);
  d.set(parseMac('02:00:00:00:00:03'), at + 6);
  writeU16(d, at + 12, 0x0800);
  const ip = at + 14;
  d[ip] = 0x45;
  writeU16(d, ip + 2, FRAME_BYTES - 14);
  d[ip + 8] = 64;
  d[ip + 9] = 17;
  writeU32(d, ip + 12, src);
  writeU32(d, ip + 16, dst);
  writeU16(d, ip + 10, checksum(d, ip, 20));
  writeU16(d, ip + 20, srcPort);
  writeU16(d, ip + 22, 5001);
  writeU16(d, ip + 24, FRAME_BYTES - 34);
  return FRAME_BYTES;
}

/** Wraps the inner IPv4 packet of a 64-byte frame in fabric MPLS over UDP (label 18). */
function writeTunnelFrame(d: Buffer, at: number, srcPort: number, innerDst: number): number {
  const inner = Buffer.alloc(FRAME_BYTES);
  writeInnerFrame(inner, 0, remotePod(7), innerDst, srcPort);
  inner[22] = 63; // already decremented by the sending node
  writeU16(inner, 24, 0);
  writeU16(inner, 24, checksum(inner, 14, 20));
  return writeTunnelAround(d, at, srcPort, inner.subarray(14));
}

export function buildWorkload(kind: WorkloadCase): Workload {
  const dp = buildDataplane();
  const pool = new PacketPool(BATCH * 3);
  // The batch's slots and the templates' are taken, so what the pipeline allocates (a held fragment) gets a spare one.
  for (let i = 0; i < BATCH * 2; i++) pool.alloc();
  const pipeline = new Pipeline(dp, pool);
  const sink = new CountingPort();
  for (const vif of dp.vifs) vif.port = sink;

  // Slots BATCH..2*BATCH-1 hold one template per packet of the batch.
  const templateStart = new Int32Array(BATCH);
  const templateLength = new Int32Array(BATCH);
  const fromFabric = kind === 'decap' || kind === 'decap-dnat' || kind === 'decap-dnat-ipv6';
  for (let i = 0; i < BATCH; i++) {
    const slot = BATCH + i;
    pool.reset(slot);
    const at = pool.start[slot];
    const srcPort = 10000 + i;
    let length: number;
    if (kind === 'local-forward') length = writeInnerFrame(pool.data, at, POD_A, POD_B, srcPort);
    else if (kind === 'encap') length = writeInnerFrame(pool.data, at, POD_A, remotePod((i * 389) % REMOTE_ROUTES), srcPort);
    else if (kind === 'ecmp-encap') length = writeInnerFrame(pool.data, at, POD_A, CLUSTER_IP, srcPort);
    else if (kind === 'decap') length = writeTunnelFrame(pool.data, at, srcPort, POD_B);
    else if (kind === 'decap-dnat') length = writeTunnelFrame(pool.data, at, srcPort, LOCAL_SERVICE_IP);
    else if (kind === 'encap-ipv6') length = writeInnerFrame6(pool.data, at, POD_A6, remotePod6((i * 389) % REMOTE_ROUTES), srcPort);
    else if (kind === 'decap-dnat-ipv6') length = writeTunnelFrame6(pool.data, at, srcPort, LOCAL_SERVICE_IP6);
    else if (kind === 'flow-setup-ipv6') length = writeInnerFrame6(pool.data, at, clientPod6(i % CLIENT_PODS), LOCAL_SERVICE_IP6, srcPort);
    else if (kind === 'fragments-ipv6') length = writeFragmentFrame6(pool.data, at, Math.floor(i / FRAGMENT_ORDER.length), FRAGMENT_ORDER[i % FRAGMENT_ORDER.length]);
    else length = writeInnerFrame(pool.data, at, CLIENT_POD_BASE + (i % CLIENT_PODS), LOCAL_SERVICE_IP, srcPort);
    templateStart[i] = at;
    templateLength[i] = length;
  }
  const slots = new Int32Array(BATCH);
  const ingress = new Int32Array(BATCH);
  for (let i = 0; i < BATCH; i++) {
    slots[i] = i;
    ingress[i] = fromFabric ? 0 : kind === 'flow-setup' || kind === 'flow-setup-ipv6' ? 10 + (i % CLIENT_PODS) : 1;
  }
  let batches = 0;

  return {
    pipeline,
    sink,
    runBatch() {
      const d = pool.data;
      const newFlows = kind === 'flow-setup';
      const newFlows6 = kind === 'flow-setup-ipv6';
      for (let i = 0; i < BATCH; i++) {
        pool.reset(i);
        const at = pool.start[i];
        d.copyWithin(at, templateStart[i], templateStart[i] + templateLength[i]);
        pool.length[i] = templateLength[i];
        pool.ingressVif[i] = ingress[i];
        // A source port no earlier batch used for this pod (UDP checksum 0: nothing to fix).
        if (newFlows) writeU16(d, at + 34, (batches * (BATCH / CLIENT_PODS) + (i >>> 4)) & 0xffff);
        // IPv6 requires the UDP checksum: update it with the port (RFC 1624).
        if (newFlows6) {
          const port = (batches * (BATCH / CLIENT_PODS) + (i >>> 4)) & 0xffff;
          writeU16(d, at + 60, checksumUpdate16((d[at + 60] << 8) | d[at + 61], (d[at + 54] << 8) | d[at + 55], port));
          writeU16(d, at + 54, port);
        }
      }
      batches++;
      // The last batch's fragment records expire, as the driver's clock moves on between bursts of the same datagrams.
      if (kind === 'fragments-ipv6') pipeline.advanceClock(pipeline.now + FRAGMENT_TIMEOUT_SECONDS);
      pipeline.processBatch(slots, BATCH);
    },
  };
}
