import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { IMIX_SIZES, UdpFrameSpec, buildUdpFrame, frameSchedule, packSchedule } from '../bench/pps/generator';
import { counterDeltas, median, parseIpLinkStats, parseSnmpUdp, parseSoftnetStat, percentile } from '../bench/pps/stats';
import { cpuUsage, measureRate } from '../bench/pps/traffic';
import { loadNativeIo } from '../src/dataplane/io/native';
import { Topology, requireCommands } from './support/netns';

requireCommands({ ip: 'iproute2', taskset: 'util-linux', tcpdump: 'tcpdump' });

const SPEC: UdpFrameSpec = {
  dstMac: '02:00:c6:13:00:03',
  srcMac: '02:00:c6:13:00:02',
  srcIp: '198.19.0.2',
  dstIp: '198.19.0.3',
  srcPort: 40000,
  dstPort: 5001,
  size: 64,
};

interface Decoded {
  length: number;
  dst: string;
  src: string;
  type: number;
  ipSrc: string;
  ipDst: string;
  ipLen: number;
  proto: number;
  ipChecksumValid: boolean;
  sport: number;
  dport: number;
  udpLen: number;
  udpChecksum: number;
  hex: string;
}

/** Scapy, an independent implementation of every header: decodes frames given as hex, or every frame of a pcap file. */
function scapyDecode(input: { frames: Buffer[] } | { pcap: string }): Decoded[] {
  const script = `
import json, sys
from scapy.all import Ether, IP, UDP, raw, rdpcap
frames = [bytes(p) for p in rdpcap(sys.argv[2])] if sys.argv[1] == "pcap" else [bytes.fromhex(h) for h in sys.argv[2:]]
def decode(frame):
    packet = Ether(frame)
    recomputed = IP(raw(packet[IP]))
    del recomputed.chksum
    return {
        "length": len(frame), "dst": packet.dst, "src": packet.src, "type": packet.type,
        "ipSrc": packet[IP].src, "ipDst": packet[IP].dst, "ipLen": packet[IP].len, "proto": packet[IP].proto,
        "ipChecksumValid": packet[IP].chksum == IP(raw(recomputed))[IP].chksum,
        "sport": packet[UDP].sport, "dport": packet[UDP].dport, "udpLen": packet[UDP].len, "udpChecksum": packet[UDP].chksum,
        "hex": frame.hex(),
    }
print(json.dumps([decode(f) for f in frames]))`;
  const args = 'pcap' in input ? ['pcap', input.pcap] : ['hex', ...input.frames.map((frame) => frame.toString('hex'))];
  return JSON.parse(execFileSync('/usr/bin/python3', ['-c', script, ...args], { encoding: 'utf8', maxBuffer: 64 << 20 })) as Decoded[];
}

function counts(values: number[]): Map<number, number> {
  const result = new Map<number, number>();
  for (const value of values) result.set(value, (result.get(value) ?? 0) + 1);
  return result;
}

test('the 64-byte frame is a valid UDP/IPv4 frame with UDP checksum 0', () => {
  const frame = buildUdpFrame(SPEC);
  const [decoded] = scapyDecode({ frames: [frame] });
  assert.deepEqual({ ...decoded, hex: undefined }, {
    length: 64,
    dst: SPEC.dstMac,
    src: SPEC.srcMac,
    type: 0x0800,
    ipSrc: SPEC.srcIp,
    ipDst: SPEC.dstIp,
    ipLen: 50,
    proto: 17,
    ipChecksumValid: true,
    sport: SPEC.srcPort,
    dport: SPEC.dstPort,
    udpLen: 30,
    udpChecksum: 0,
    hex: undefined,
  });
});

test('1,000 flows: 1,000 frames whose source ports are 1,000 consecutive values, otherwise the same frame', () => {
  const frames = frameSchedule(SPEC, { flows: 1000 });
  assert.equal(frames.length, 1000);
  const decoded = scapyDecode({ frames });
  assert.deepEqual(decoded.map((frame) => frame.sport), Array.from({ length: 1000 }, (_, i) => 40000 + i));
  for (const frame of decoded) {
    assert.equal(frame.ipChecksumValid, true);
    assert.deepEqual([frame.length, frame.ipSrc, frame.ipDst, frame.dport, frame.udpLen, frame.udpChecksum], [64, SPEC.srcIp, SPEC.dstIp, 5001, 30, 0]);
  }
});

test('IMIX: 7:4:1 of 64, 570 and 1518 bytes on the wire (FCS counted), so the largest carries a full 1500-byte IP packet', () => {
  const decoded = scapyDecode({ frames: frameSchedule(SPEC, { sizes: IMIX_SIZES }) });
  assert.deepEqual(counts(decoded.map((frame) => frame.length)), new Map([[60, 7], [566, 4], [1514, 1]]));
  assert.deepEqual(counts(decoded.map((frame) => frame.ipLen)), new Map([[46, 7], [552, 4], [1500, 1]]));
  assert.ok(decoded.every((frame) => frame.ipChecksumValid && frame.udpLen === frame.ipLen - 20 && frame.sport === SPEC.srcPort));
});

test('flows and sizes together cycle over their least common multiple, keeping the 7:4:1 mix and every flow', () => {
  const frames = frameSchedule(SPEC, { flows: 8, sizes: IMIX_SIZES });
  assert.equal(frames.length, 24);
  const decoded = scapyDecode({ frames });
  assert.deepEqual(counts(decoded.map((frame) => frame.length)), new Map([[60, 14], [566, 8], [1514, 2]]));
  assert.deepEqual(new Set(decoded.map((frame) => frame.sport)), new Set(Array.from({ length: 8 }, (_, i) => 40000 + i)));
});

test('packSchedule lays frames, or for the socket sender their UDP payloads, end to end', () => {
  const frames = frameSchedule(SPEC, { sizes: [64, 512] });
  const packed = packSchedule(frames);
  assert.deepEqual([...packed.offsets], [0, 64]);
  assert.deepEqual([...packed.lengths], [64, 512]);
  assert.deepEqual(packed.buffer, Buffer.concat(frames));
  const payloads = packSchedule(frames, 'udp-socket');
  assert.deepEqual([...payloads.offsets], [0, 22]);
  assert.deepEqual([...payloads.lengths], [22, 470]);
  assert.deepEqual(payloads.buffer.subarray(22), frames[1].subarray(42));
});

test('frameSchedule refuses what the generator cannot send', () => {
  assert.throws(() => frameSchedule(SPEC, { flows: 0 }), /flows 0/);
  assert.throws(() => frameSchedule({ ...SPEC, srcPort: 65000 }, { flows: 1000 }), /flows 1000/);
  assert.throws(() => frameSchedule(SPEC, { flows: 2, sender: 'udp-socket' }), /one flow/);
  assert.throws(() => frameSchedule(SPEC, { sizes: [] }), /at least one/);
  assert.throws(() => buildUdpFrame({ ...SPEC, size: 59 }), /frame size 59/);
  assert.throws(() => buildUdpFrame({ ...SPEC, size: 1515 }), /frame size 1515/);
});

test('median of runs and nearest-rank percentiles', () => {
  assert.equal(median([300, 100, 200]), 200);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.throws(() => median([]), /no values/);
  const rtts = Array.from({ length: 400 }, (_, i) => 400 - i); // 1..400, unsorted
  assert.equal(percentile(rtts, 0.5), 200);
  assert.equal(percentile(rtts, 0.99), 396);
  assert.equal(percentile(rtts, 1), 400);
  assert.equal(percentile([7], 0.99), 7);
  assert.equal(percentile([1, 2], 0.5), 1);
  assert.throws(() => percentile([1], 0), /percentile 0/);
  assert.throws(() => percentile([], 0.5), /no values/);
});

test('loss counters: devices from ip -s -j link, UDP from /proc/net/snmp, backlogs from softnet_stat; only what grew', () => {
  const link = (rxDropped: number, txDropped: number): string =>
    JSON.stringify([{ ifname: 'eth0', stats64: { rx: { packets: 9, errors: 0, dropped: rxDropped, over_errors: 0, multicast: 0 }, tx: { packets: 9, errors: 0, dropped: txDropped, carrier_errors: 0, collisions: 0 } } }, { ifname: 'lo' }]);
  const before = parseIpLinkStats(link(5, 0));
  assert.deepEqual(before, new Map([['eth0 rx_dropped', 5], ['eth0 rx_errors', 0], ['eth0 rx_over_errors', 0], ['eth0 tx_dropped', 0], ['eth0 tx_errors', 0], ['eth0 tx_carrier_errors', 0]]));
  assert.deepEqual(counterDeltas(before, parseIpLinkStats(link(12, 3))), new Map([['eth0 rx_dropped', 7], ['eth0 tx_dropped', 3]]));

  const snmp = 'Ip: Forwarding\nIp: 1\nUdp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\nUdp: 519 1 2 521 3 4 5 6 7\n';
  assert.deepEqual(parseSnmpUdp(snmp), new Map([['NoPorts', 1], ['InErrors', 2], ['RcvbufErrors', 3], ['SndbufErrors', 4], ['InCsumErrors', 5], ['MemErrors', 7]]));
  assert.deepEqual(parseSnmpUdp(''), new Map());

  // Two CPUs as kernel 6.18 prints them: 15 columns, the CPU's number in column 12.
  const softnet = '06c77d1a 00000010 00000003 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000002 00000000 00000000 00000000 00000000\n' +
    '03a4fa32 000000ff 00000001 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000001 00000000 00000000\n';
  assert.deepEqual(parseSoftnetStat(softnet), new Map([['cpu0 dropped', 16], ['cpu0 flow_limit', 2], ['cpu1 dropped', 255], ['cpu1 flow_limit', 0]]));
  // The real files parse on this machine.
  assert.ok(parseSoftnetStat(fs.readFileSync('/proc/net/softnet_stat', 'utf8')).has('cpu0 dropped'));
  assert.ok(parseIpLinkStats(execFileSync('ip', ['-s', '-j', 'link', 'show', 'lo'], { encoding: 'utf8' })).has('lo rx_dropped'));
});

test('generatorRun checks its frames before any syscall', () => {
  const io = loadNativeIo() as unknown as { generatorRun(...args: unknown[]): unknown };
  const buffer = Buffer.alloc(64);
  const one = (value: number): Int32Array => Int32Array.of(value);
  assert.throws(() => io.generatorRun(-1, buffer, one(0), one(64), 0, 0, 1), /count must be at least 1/);
  assert.throws(() => io.generatorRun(-1, buffer, one(8), one(64), 1, 0, 1), RangeError);
  assert.throws(() => io.generatorRun(-1, buffer, one(0), one(64), 2, 0, 1), /exceeds offsets.length/);
  assert.throws(() => io.generatorRun(-1, buffer, one(0), one(64), 1, 0, 0), /maxSeconds/);
  // Well-formed but a bad fd: the first sendmmsg fails, and that is thrown, not retried.
  assert.throws(() => io.generatorRun(-1, buffer, one(0), one(64), 1, 0, 1), /sendmmsg fd -1/);
});

/** Two namespaces joined by a veth pair; the receiver's MAC in the frames. */
async function vethPair(topology: Topology): Promise<{ sender: string; receiver: string; spec: UdpFrameSpec }> {
  const sender = await topology.addNamespace('tx');
  const receiver = await topology.addNamespace('rx');
  await topology.addVethPair(sender, 'eth0', receiver, 'eth0');
  await topology.exec(sender, ['ip', 'address', 'add', `${SPEC.srcIp}/24`, 'dev', 'eth0']);
  await topology.exec(receiver, ['ip', 'address', 'add', `${SPEC.dstIp}/24`, 'dev', 'eth0']);
  return { sender, receiver, spec: { ...SPEC, srcMac: await topology.macOf(sender, 'eth0'), dstMac: await topology.macOf(receiver, 'eth0') } };
}

/** Captures the receiver's first `count` UDP frames to a pcap file while `traffic` runs. */
async function capture(topology: Topology, ns: string, count: number, traffic: () => Promise<unknown>): Promise<string> {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'pps-traffic-')), 'capture.pcap');
  const tcpdump = topology.spawn(ns, ['tcpdump', '-n', '-i', 'eth0', '-c', String(count), '-w', file, '-U', 'udp'], { stdio: ['ignore', 'ignore', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    let stderr = '';
    tcpdump.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      if (stderr.includes('listening on')) resolve();
    });
    tcpdump.once('exit', (code) => reject(new Error(`tcpdump exited (${code}): ${stderr}`)));
  });
  await traffic();
  if (tcpdump.exitCode === null) await new Promise((resolve) => tcpdump.once('exit', resolve));
  return file;
}

test('the generator sends the schedule byte for byte, in order, as scapy reads it off the receiver', { timeout: 60_000 }, async (t) => {
  const topology = new Topology();
  t.after(() => topology.destroy());
  const { sender, receiver, spec } = await vethPair(topology);
  const mix = { flows: 8, sizes: IMIX_SIZES };
  const schedule = frameSchedule(spec, mix);
  let result: Awaited<ReturnType<typeof measureRate>> | undefined;
  const pcap = await capture(topology, receiver, 2 * schedule.length, async () => {
    result = await measureRate({ topology, senderNs: sender, senderIf: 'eth0', receiverNs: receiver, receiverIf: 'eth0', frame: spec, mix, seconds: 1, rate: 2000 });
  });
  const decoded = scapyDecode({ pcap });
  assert.equal(decoded.length, 2 * schedule.length);
  assert.deepEqual(decoded.map((frame) => frame.hex), [...schedule, ...schedule].map((frame) => frame.toString('hex')));
  // Paced to 2,000 frames/s: a veth loses none of them, and what the generator says it sent is what crossed.
  assert.ok(result!.loss < 0.001, `loss ${result!.loss}`);
  assert.ok(result!.pps > 1000 && result!.pps < 3000, `paced to 2000 pps, got ${result!.pps}`);
  assert.equal(result!.generator.refused, 0);
  assert.ok(result!.generator.sent >= result!.sent);
});

test('the socket sender sends the payloads through the pod\'s own stack, from its one source port', { timeout: 60_000 }, async (t) => {
  const topology = new Topology();
  t.after(() => topology.destroy());
  const { sender, receiver, spec } = await vethPair(topology);
  const pcap = await capture(topology, receiver, 5, () =>
    measureRate({ topology, senderNs: sender, senderIf: 'eth0', receiverNs: receiver, receiverIf: 'eth0', frame: spec, mix: { sender: 'udp-socket' }, seconds: 1, rate: 1000 }),
  );
  for (const frame of scapyDecode({ pcap })) {
    // The kernel's own headers (IP ID, DF, UDP checksum) differ; addresses, ports and sizes are the frames'.
    assert.deepEqual([frame.length, frame.dst, frame.src, frame.ipSrc, frame.ipDst, frame.sport, frame.dport, frame.udpLen, frame.ipChecksumValid], [64, spec.dstMac, spec.srcMac, spec.srcIp, spec.dstIp, 40000, 5001, 30, true]);
    assert.equal(frame.hex.slice(84), buildUdpFrame(spec).subarray(42).toString('hex'));
  }
});

test('measureRate counts what the generator sends across a veth pair at full speed, and every stage\'s drops', { timeout: 60_000 }, async (t) => {
  const topology = new Topology();
  t.after(() => topology.destroy());
  const { sender, receiver, spec } = await vethPair(topology);
  const result = await measureRate({ topology, senderNs: sender, senderIf: 'eth0', receiverNs: receiver, receiverIf: 'eth0', frame: spec, mix: { flows: 1000 }, seconds: 1 });
  assert.ok(result.received > 1000, `received ${result.received}`);
  // A veth pair hands every frame it sends to its peer, and the sink's drops are by design, not counted.
  assert.ok(result.loss < 0.01, `loss ${result.loss}`);
  assert.ok(![...result.drops.keys()].some((name) => name.startsWith('rx udp')), JSON.stringify([...result.drops]));
  assert.ok(result.generator.sent >= result.received);
  assert.equal(result.forwarderCpuPercent, undefined);
  // The generator is stopped: only the counters' last packets can still trickle in.
  const after = await topology.readCounter(receiver, 'eth0', 'rx_packets');
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal(await topology.readCounter(receiver, 'eth0', 'rx_packets'), after);
});

test('cpuUsage tells a busy process from an idle one', { timeout: 30_000 }, async (t) => {
  const topology = new Topology();
  t.after(() => topology.destroy());
  const ns = await topology.addNamespace('cpu');
  const busy = topology.spawn(ns, ['sh', '-c', 'while :; do :; done'], { stdio: 'ignore' });
  const idle = topology.spawn(ns, ['sleep', '30'], { stdio: 'ignore' });
  const busyUsage = cpuUsage(busy.pid as number);
  const idleUsage = cpuUsage(idle.pid as number);
  await new Promise((resolve) => setTimeout(resolve, 1000));
  // A spinning shell gets a good share of a core even on a loaded 2-core machine (some 25% seen with load 12).
  assert.ok(busyUsage() > 10, `busy ${busyUsage()}%`);
  assert.ok(idleUsage() < 5, `idle ${idleUsage()}%`);
});
