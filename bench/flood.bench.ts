/**
 * npm run bench:flood [-- --seconds 3 --victim-rate 20000]: does a pod that
 * opens new flows as fast as it can (a SYN flood and a UDP port scan, every
 * packet a new flow, half of them answered, as a live server answers a scan)
 * starve the flow setup of another pod? Through the real pipeline, in
 * process, batches of 256:
 *
 *   victim  pod-v -> server-v: new UDP flows offered at a fixed rate (wall clock),
 *                              each answered by server-v in the next batch
 *   flooder pod-f -> server-f: fills the rest of every batch with new flows
 *
 * Three runs: the victim alone; with the flood and the per-vif flow limit
 * (flows.maxFlowsPerVif); with the flood and no limit. For each: the
 * victim's flows set up per second (its first packets forwarded) against
 * what it offered, its answers delivered and how many still found the
 * victim's flow (not evicted by the flood first), drops by reason, and the
 * flood's packets per second. The flow table holds 64K pairs, idle pairs
 * go after 4 s, the limit is 16384 pairs per vif.
 */
import { Dataplane } from '../src/dataplane/dataplane';
import { DROP_REASONS } from '../src/dataplane/drop-reasons';
import { flowHash } from '../src/dataplane/flow-hash';
import { PacketPool } from '../src/dataplane/packet-pool';
import { Pipeline } from '../src/dataplane/pipeline';
import { checksum } from '../src/dataplane/protocols/checksum';
import { parseMac } from '../src/dataplane/protocols/ethernet';
import { ipFromString, writeU16, writeU32 } from '../src/dataplane/protocols/ipv4';
import type { PacketPort } from '../src/dataplane/vif';

const BATCH = 256;
const FLOW_PAIRS = 64 * 1024;
const VIF_LIMIT = 16384;
/** Idle pairs go after this long (aged every batch), so the victim's finished flows give their room back. */
const IDLE_TIMEOUT = 4;
const VICTIM_PER_BATCH_MAX = 64;

const args = process.argv.slice(2);
const option = (name: string, fallback: number) => {
  const at = args.indexOf(`--${name}`);
  return at >= 0 ? Number(args[at + 1]) : fallback;
};
const SECONDS = option('seconds', 8);
const VICTIM_RATE = option('victim-rate', 2_000);

const VIFS = { fabric: 0, flooder: 1, victim: 2, floodServer: 3, victimServer: 4 } as const;
const PODS = [
  { id: VIFS.flooder, name: 'pod-f', ip: ipFromString('10.1.0.10'), mac: '02:00:0a:01:00:0a' },
  { id: VIFS.victim, name: 'pod-v', ip: ipFromString('10.1.0.20'), mac: '02:00:0a:01:00:14' },
  { id: VIFS.floodServer, name: 'server-f', ip: ipFromString('10.1.0.30'), mac: '02:00:0a:01:00:1e' },
  { id: VIFS.victimServer, name: 'server-v', ip: ipFromString('10.1.0.40'), mac: '02:00:0a:01:00:28' },
];
const PROTO_TCP = 6;
const PROTO_UDP = 17;

/** Remembers the (source port, destination port) of every frame delivered to a server, for its answers. */
class AnsweringPort implements PacketPort {
  readonly ports = new Int32Array(BATCH * 2);
  readonly protocols = new Uint8Array(BATCH * 2);
  count = 0;
  delivered = 0;

  send(data: Buffer, offset: number, _length: number): void {
    this.delivered++;
    if (this.count === this.ports.length) return;
    this.protocols[this.count] = data[offset + 14 + 9];
    this.ports[this.count++] = data.readInt32BE(offset + 34);
  }

  flush(): void {}
}

class CountPort implements PacketPort {
  delivered = 0;
  send(): void {
    this.delivered++;
  }
  flush(): void {}
}

/** Writes Ethernet/IPv4 and a TCP SYN or UDP header at `at` from a pod to the vrouter MAC; returns the length. */
function writeFrame(d: Buffer, at: number, pod: (typeof PODS)[number], dst: number, protocol: number, ports: number): number {
  const l4Length = protocol === PROTO_TCP ? 20 : 8 + 18;
  const length = 14 + 20 + l4Length;
  d.fill(0, at, at + length);
  d.set(parseMac('00:00:5e:00:01:00'), at);
  d.set(parseMac(pod.mac), at + 6);
  writeU16(d, at + 12, 0x0800);
  const ip = at + 14;
  d[ip] = 0x45;
  writeU16(d, ip + 2, 20 + l4Length);
  d[ip + 8] = 64;
  d[ip + 9] = protocol;
  writeU32(d, ip + 12, pod.ip);
  writeU32(d, ip + 16, dst);
  writeU16(d, ip + 10, checksum(d, ip, 20));
  writeU32(d, ip + 20, ports >>> 0);
  if (protocol === PROTO_TCP) {
    d[ip + 32] = 0x50;
    d[ip + 33] = 0x02; // SYN
    writeU16(d, ip + 34, 64240);
  } else {
    writeU16(d, ip + 24, l4Length);
  }
  return length;
}

interface RunResult {
  offered: number;
  victimSetUp: number;
  victimAnswered: number;
  answersInFlow: number;
  floodPackets: number;
  seconds: number;
  drops: Record<string, number>;
  victimPairs: number;
  flooderPairs: number;
}

function run(flood: boolean, vifLimit: number): RunResult {
  const dp = new Dataplane(
    { name: 'bench', underlayIp: ipFromString('192.168.0.11'), encapPriority: ['udp', 'gre'] },
    { flowCapacity: FLOW_PAIRS * 2, flowIdleTimeout: IDLE_TIMEOUT, vifFlowLimit: vifLimit },
  );
  dp.addVrf(1, 'vn1', [{ prefix: ipFromString('10.1.0.0'), length: 16 }], ipFromString('10.1.0.1'));
  dp.addVif({ id: VIFS.fabric, kind: 'fabric', name: 'eth0', mac: parseMac('52:54:00:00:00:11'), ip: ipFromString('192.168.0.11'), vrf: -1, mtu: 1500 });
  for (const pod of PODS) {
    dp.addVif({ id: pod.id, kind: 'virtual', name: pod.name, mac: parseMac(pod.mac), ip: pod.ip, vrf: 1, mtu: 1500 });
    dp.setNexthop(pod.id, { kind: 'encap', vif: pod.id, mac: parseMac(pod.mac) });
    dp.addRoute(1, pod.ip, 32, pod.id);
  }
  const pool = new PacketPool(BATCH * 2);
  const pipeline = new Pipeline(dp, pool);
  const floodServer = new AnsweringPort();
  const victimServer = new AnsweringPort();
  const victimPort = new CountPort();
  dp.vifs.get(VIFS.floodServer)!.port = floodServer;
  dp.vifs.get(VIFS.victimServer)!.port = victimServer;
  dp.vifs.get(VIFS.victim)!.port = victimPort;

  const slots = Int32Array.from({ length: BATCH }, (_, i) => i);
  const [flooder, victim, floodHost, victimHost] = PODS;
  const d = pool.data;
  let floodSequence = 0;
  let victimSequence = 0;
  let floodPackets = 0;
  let answersInFlow = 0;
  const started = process.hrtime.bigint();
  const elapsed = () => Number(process.hrtime.bigint() - started) / 1e9;
  let n = 0;
  const add = (pod: (typeof PODS)[number], dst: number, protocol: number, ports: number) => {
    pool.reset(n);
    pool.length[n] = writeFrame(d, pool.start[n], pod, dst, protocol, ports);
    pool.ingressVif[n] = pod.id;
    n++;
  };
  for (let now = 0; now < SECONDS; now = elapsed()) {
    n = 0;
    // The servers answer what reached them in the previous batch (the flood server every other flow).
    const victimAnswers = victimServer.count;
    for (let i = 0; i < victimAnswers; i++) {
      const ports = (victimServer.ports[i] << 16) | (victimServer.ports[i] >>> 16);
      // Is the victim's flow still there for its answer, or was it evicted before the answer came?
      const hash = flowHash(1, victimHost.ip, victim.ip, PROTO_UDP, ports >>> 16, ports & 0xffff);
      if (dp.flows.lookup(1, PROTO_UDP, victimHost.ip, victim.ip, ports, hash) >= 0) answersInFlow++;
      add(victimHost, victim.ip, PROTO_UDP, ports);
    }
    victimServer.count = 0;
    // The victim's new flows due by now, at its offered rate.
    const due = Math.min(VICTIM_PER_BATCH_MAX, Math.floor(now * VICTIM_RATE) - victimSequence);
    for (let i = 0; i < due; i++, victimSequence++) add(victim, victimHost.ip, PROTO_UDP, ((10000 + (victimSequence >>> 16)) << 16) | (victimSequence & 0xffff));
    if (flood) {
      const floodAnswers = floodServer.count;
      for (let i = 0; i < floodAnswers && n < BATCH; i += 2) {
        add(floodHost, flooder.ip, floodServer.protocols[i], (floodServer.ports[i] << 16) | (floodServer.ports[i] >>> 16));
      }
      floodServer.count = 0;
      // New flows, as fast as the pipeline takes them: SYNs to every port, and a UDP scan.
      while (n < BATCH) {
        const sequence = floodSequence++;
        add(flooder, floodHost.ip, sequence & 1 ? PROTO_UDP : PROTO_TCP, ((1024 + ((sequence >>> 16) & 0x3fff)) << 16) | (sequence & 0xffff));
        floodPackets++;
      }
    }
    pipeline.advanceClock(Math.floor(now));
    if (n > 0) pipeline.processBatch(slots, n);
  }
  const seconds = elapsed();
  const drops: Record<string, number> = {};
  dp.drops.counts.forEach((count, reason) => {
    if (count > 0) drops[DROP_REASONS[reason]] = count;
  });
  return {
    offered: victimSequence,
    victimSetUp: victimServer.delivered,
    victimAnswered: victimPort.delivered,
    answersInFlow,
    floodPackets,
    seconds,
    drops,
    victimPairs: dp.flows.vifPairs[VIFS.victim],
    flooderPairs: dp.flows.vifPairs[VIFS.flooder],
  };
}

function report(name: string, result: RunResult): void {
  const rate = (count: number) => Math.round(count / result.seconds);
  console.log(
    `${name}: victim offered ${rate(result.offered)} flows/s, set up ${rate(result.victimSetUp)} flows/s ` +
      `(${((100 * result.victimSetUp) / Math.max(result.offered, 1)).toFixed(2)}%), answers delivered ${rate(result.victimAnswered)}/s, ` +
      `${((100 * result.answersInFlow) / Math.max(result.victimAnswered, 1)).toFixed(2)}% of them in the victim's flow (the rest found it evicted); ` +
      `flood ${rate(result.floodPackets)} new flows/s offered; pairs victim ${result.victimPairs}, flooder ${result.flooderPairs}; drops ${JSON.stringify(result.drops)}`,
  );
}

console.log(`flow table ${FLOW_PAIRS} pairs, victim ${VICTIM_RATE} new flows/s for ${SECONDS} s, batches of ${BATCH}`);
report('victim-alone', run(false, VIF_LIMIT));
report(`flood-with-vif-limit-${VIF_LIMIT}`, run(true, VIF_LIMIT));
report('flood-without-vif-limit', run(true, 0));
