import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { buildUdpFrame, cpuUsage, measureRate, trafgenConfig, UdpFrameSpec } from '../bench/pps/traffic';
import { Topology, requireCommands } from './support/netns';

requireCommands({ ip: 'iproute2', trafgen: 'netsniff-ng', taskset: 'util-linux' });

const SPEC: UdpFrameSpec = {
  dstMac: '02:00:c6:13:00:03',
  srcMac: '02:00:c6:13:00:02',
  srcIp: '198.19.0.2',
  dstIp: '198.19.0.3',
  srcPort: 40000,
  dstPort: 5001,
  size: 64,
};

/** The bytes of one packet a trafgen config describes, taking each dinc() at its first value. */
function decodeConfig(config: string): Buffer {
  const body = config.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^[\s{]+|[\s}]+$/g, '');
  const bytes: number[] = [];
  for (const token of body.split(/,(?![^(]*\))/).map((part) => part.trim())) {
    const fill = /^fill\((0x[0-9a-f]{2}), (\d+)\)$/.exec(token);
    const dinc = /^dinc\((\d+), (\d+), (\d+)\)$/.exec(token);
    if (fill) bytes.push(...new Array<number>(Number(fill[2])).fill(Number(fill[1])));
    else if (dinc) bytes.push(Number(dinc[1]));
    else if (/^0x[0-9a-f]{2}$/.test(token)) bytes.push(Number(token));
    else throw new Error(`unexpected trafgen token ${JSON.stringify(token)}`);
  }
  return Buffer.from(bytes);
}

/** Decodes a frame with scapy, an independent implementation of every header. */
function scapyDecode(frame: Buffer): Record<string, unknown> {
  const script = `
import json, sys
from scapy.all import Ether, IP, UDP, raw
frame = bytes.fromhex(sys.argv[1])
packet = Ether(frame)
recomputed = IP(raw(packet[IP]))
del recomputed.chksum
print(json.dumps({
  "length": len(frame), "dst": packet.dst, "src": packet.src, "type": packet.type,
  "ipSrc": packet[IP].src, "ipDst": packet[IP].dst, "ipLen": packet[IP].len, "proto": packet[IP].proto,
  "ipChecksumValid": packet[IP].chksum == IP(raw(recomputed))[IP].chksum,
  "sport": packet[UDP].sport, "dport": packet[UDP].dport, "udpLen": packet[UDP].len, "udpChecksum": packet[UDP].chksum,
}))`;
  return JSON.parse(execFileSync('/usr/bin/python3', ['-c', script, frame.toString('hex')], { encoding: 'utf8' })) as Record<string, unknown>;
}

test('the 64-byte frame is a valid UDP/IPv4 frame with UDP checksum 0', () => {
  const frame = buildUdpFrame(SPEC);
  assert.deepEqual(scapyDecode(frame), {
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
  });
});

test('the trafgen config decodes to the same frame, at 64 and 512 bytes', () => {
  for (const size of [64, 512]) {
    const spec = { ...SPEC, size };
    const frame = buildUdpFrame(spec);
    assert.equal(frame.length, size);
    assert.deepEqual(decodeConfig(trafgenConfig(spec)), frame);
    assert.equal(scapyDecode(frame).ipChecksumValid, true);
  }
});

test('flows count up the low byte of the source port', () => {
  const config = trafgenConfig(SPEC, 16);
  assert.match(config, /dinc\(64, 79, 1\)/); // 40000 = 0x9c40
  assert.deepEqual(decodeConfig(config), buildUdpFrame(SPEC));
  assert.throws(() => trafgenConfig({ ...SPEC, srcPort: 40192 + 250 }, 16), /flows 16/);
  assert.throws(() => buildUdpFrame({ ...SPEC, size: 59 }), /frame size 59/);
});

test('measureRate counts what trafgen sends across a veth pair, with many flows', { timeout: 60_000 }, async (t) => {
  const topology = new Topology();
  t.after(() => topology.destroy());
  const sender = await topology.addNamespace('tx');
  const receiver = await topology.addNamespace('rx');
  await topology.addVethPair(sender, 'eth0', receiver, 'eth0');
  const dstMac = await topology.macOf(receiver, 'eth0');

  const result = await measureRate({ topology, senderNs: sender, senderIf: 'eth0', receiverNs: receiver, receiverIf: 'eth0', frame: { ...SPEC, dstMac }, flows: 8, seconds: 1 });
  assert.ok(result.received > 1000, `received ${result.received}`);
  assert.ok(result.pps > 1000, `pps ${result.pps}`);
  // A veth pair hands every frame it sends to its peer.
  assert.ok(result.loss < 0.01, `loss ${result.loss}`);
  assert.equal(result.forwarderCpuPercent, undefined);
  // trafgen is stopped: only the counters' last packets can still trickle in.
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
  assert.ok(busyUsage() > 30, `busy ${busyUsage()}%`);
  assert.ok(idleUsage() < 5, `idle ${idleUsage()}%`);
});
