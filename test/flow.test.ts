/**
 * The flow table through the real pipeline: pairs, NAT with checksums,
 * sticky ECMP, policy, source checks, capacity, aging, TCP life cycle, ICMP
 * errors and fragments. Every rewritten header is checked against a full
 * checksum recompute done here.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildScenario, FABRIC_MAC, POD_A_MAC, POD_B_MAC, POD_C_MAC, UNDERLAY_GW_MAC, VROUTER_MAC } from './support/scenario';
import * as f from './support/frames';
import { Dataplane } from '../src/dataplane/dataplane';
import { flowHash } from '../src/dataplane/flow-hash';
import { ipFromString } from '../src/dataplane/protocols/ipv4';

const CLUSTER_IP = '10.96.0.20';
const TCP = { FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10 };

const ipText = (b: Buffer, at: number) => [...b.subarray(at, at + 4)].join('.');

/** The scenario plus a ClusterIP 10.96.0.20 (tcp/udp 80 -> 8080) on pod-b, routed locally in vn1. */
function serviceScenario() {
  const s = buildScenario();
  s.dp.vifs.get(2)!.floatingIps.push({
    ip: ipFromString(CLUSTER_IP),
    portMap: [
      { protocol: 6, port: 80, targetPort: 8080 },
      { protocol: 17, port: 80, targetPort: 8080 },
    ],
  });
  s.dp.addRoute(1, ipFromString(CLUSTER_IP), 32, 2);
  return s;
}

interface TcpSegment {
  src: string;
  dst: string;
  srcPort: number;
  dstPort: number;
  flags: number;
  seq?: number;
  ack?: number;
  window?: number;
  payload?: Buffer;
  srcMac?: string;
}

function tcpFrame(o: TcpSegment): Buffer {
  const segment = f.tcp(o.src, o.dst, o.srcPort, o.dstPort, o.flags, o.payload);
  segment.writeUInt32BE(o.seq ?? 1000, 4);
  segment.writeUInt32BE(o.ack ?? 0, 8);
  segment.writeUInt16BE(o.window ?? 65535, 14);
  segment.writeUInt16BE(0, 16);
  segment.writeUInt16BE(l4Checksum(o.src, o.dst, 6, segment), 16);
  const srcMac = o.srcMac ?? (o.src === '10.1.1.3' ? POD_A_MAC : o.src === '10.1.1.4' ? POD_B_MAC : POD_C_MAC);
  return f.ethernet(VROUTER_MAC, srcMac, 0x0800, f.ipv4({ src: o.src, dst: o.dst, protocol: 6, payload: segment }));
}

function udpFrame(src: string, dst: string, srcPort: number, dstPort: number, srcMac = POD_A_MAC, payload = Buffer.from('ping')): Buffer {
  return f.ethernet(VROUTER_MAC, srcMac, 0x0800, f.ipv4({ src, dst, protocol: 17, payload: f.udp(src, dst, srcPort, dstPort, payload) }));
}

function l4Checksum(src: string, dst: string, protocol: number, segment: Buffer): number {
  const pseudo = Buffer.concat([f.ip(src), f.ip(dst), Buffer.from([0, protocol, segment.length >> 8, segment.length & 0xff]), segment]);
  return f.internetChecksum(pseudo);
}

/** Asserts the IPv4 header and TCP/UDP checksums of an Ethernet frame verify. */
function assertChecksums(frame: Buffer, ip = 14) {
  const headerLength = (frame[ip] & 0x0f) * 4;
  assert.equal(f.internetChecksum(frame.subarray(ip, ip + headerLength)), 0, 'IPv4 header checksum');
  const protocol = frame[ip + 9];
  const segment = frame.subarray(ip + headerLength, ip + frame.readUInt16BE(ip + 2));
  if (protocol === 6 || (protocol === 17 && segment.readUInt16BE(6) !== 0)) {
    assert.equal(l4Checksum(ipText(frame, ip + 12), ipText(frame, ip + 16), protocol, segment), 0, 'L4 checksum');
  }
  if (protocol === 1) assert.equal(f.internetChecksum(segment), 0, 'ICMP checksum');
}

function balanced(s: ReturnType<typeof buildScenario>) {
  assert.equal(s.pipeline.received + s.dp.generated, s.pipeline.transmitted + s.dp.drops.total() + s.pipeline.held);
}

test('a first packet creates a forward/reverse pair; the reply makes it established', () => {
  const s = buildScenario();
  s.run([[1, udpFrame('10.1.1.3', '10.1.1.4', 5000, 53)]]);
  const [forward, reverse] = s.dp.flows.entries();
  assert.equal(s.dp.flows.activePairs, 1);
  assert.deepEqual([forward.index, forward.reverseIndex, reverse.index], [0, 1, 1]);
  assert.deepEqual([forward.src, forward.dst, forward.srcPort, forward.dstPort], [ipFromString('10.1.1.3'), ipFromString('10.1.1.4'), 5000, 53]);
  assert.deepEqual([reverse.src, reverse.dst, reverse.srcPort, reverse.dstPort], [ipFromString('10.1.1.4'), ipFromString('10.1.1.3'), 53, 5000]);
  assert.equal(forward.replied, false);
  s.run([[2, udpFrame('10.1.1.4', '10.1.1.3', 53, 5000, POD_B_MAC)], [1, udpFrame('10.1.1.3', '10.1.1.4', 5000, 53)]]);
  const [after, afterReverse] = s.dp.flows.entries();
  assert.equal(s.dp.flows.activePairs, 1, 'the reply matched the pair');
  assert.equal(after.replied, true);
  assert.equal(after.packets, 2);
  assert.equal(afterReverse.packets, 1);
  assert.equal(s.out(1).length, 1);
});

test('ICMP echo pairs by identifier', () => {
  const s = buildScenario();
  const echo = (src: string, dst: string, type: 0 | 8, mac: string) => f.ethernet(VROUTER_MAC, mac, 0x0800, f.ipv4({ src, dst, protocol: 1, payload: f.icmpEcho(type, 77, 1) }));
  s.run([[1, echo('10.1.1.3', '10.1.1.4', 8, POD_A_MAC)], [2, echo('10.1.1.4', '10.1.1.3', 0, POD_B_MAC)]]);
  assert.equal(s.dp.flows.activePairs, 1);
  assert.equal(s.dp.flows.entries()[0].replied, true);
});

test('ClusterIP on a local pod: DNAT to pod:targetPort, replies SNAT back, checksums updated', () => {
  const s = serviceScenario();
  const syn = tcpFrame({ src: '10.1.1.3', dst: CLUSTER_IP, srcPort: 40000, dstPort: 80, flags: TCP.SYN, seq: 1 });
  s.run([[1, syn]]);
  const [toPod] = s.out(2);
  assert.equal(ipText(toPod, 30), '10.1.1.4', 'destination translated to the pod');
  assert.equal(toPod.readUInt16BE(36), 8080, 'service port translated to the target port');
  assert.equal(ipText(toPod, 26), '10.1.1.3', 'source untouched');
  assertChecksums(toPod);
  const [forward, reverse] = s.dp.flows.entries();
  assert.equal(forward.action, 'nat');
  assert.deepEqual(forward.nat, ['dnat', 'dpat']);
  assert.deepEqual(reverse.nat, ['snat', 'spat']);

  s.run([[2, tcpFrame({ src: '10.1.1.4', dst: '10.1.1.3', srcPort: 8080, dstPort: 40000, flags: TCP.SYN | TCP.ACK, seq: 500, ack: 2 })]]);
  const [toClient] = s.out(1);
  assert.equal(ipText(toClient, 26), CLUSTER_IP, 'the reply comes from the ClusterIP');
  assert.equal(toClient.readUInt16BE(34), 80, 'from the service port');
  assertChecksums(toClient);
  balanced(s);
});

test('ClusterIP from the fabric: the backend node translates what the label delivers', () => {
  const s = serviceScenario();
  const inner = f.ipv4({ src: '10.1.1.5', dst: CLUSTER_IP, protocol: 17, ttl: 63, payload: f.udp('10.1.1.5', CLUSTER_IP, 999, 80, Buffer.from('query')) });
  s.run([[0, f.mplsOverUdp({ dstMac: FABRIC_MAC, srcMac: UNDERLAY_GW_MAC, src: '192.168.0.12', dst: '192.168.0.11', label: 18, inner })]]);
  const [toPod] = s.out(2);
  assert.equal(ipText(toPod, 30), '10.1.1.4');
  assert.equal(toPod.readUInt16BE(36), 8080);
  assertChecksums(toPod);
  s.run([[2, udpFrame('10.1.1.4', '10.1.1.5', 8080, 999, POD_B_MAC, Buffer.from('answer'))]]);
  const [tunnelled] = s.out(0);
  const innerIp = 14 + 20 + 8 + 4;
  assert.equal(ipText(tunnelled, innerIp + 12), CLUSTER_IP, 'tunnelled back from the ClusterIP');
  assert.equal(tunnelled.readUInt16BE(innerIp + 20), 80);
  assertChecksums(tunnelled, innerIp);
});

test('a local composite label from the fabric: each flow is given one of the pods behind it, by hash, and keeps it', () => {
  // Two local pods behind the ClusterIP: the agent publishes one label, of a composite of both (control-client.ts).
  const s = serviceScenario();
  s.dp.vifs.get(1)!.floatingIps.push({ ip: ipFromString(CLUSTER_IP), portMap: [{ protocol: 17, port: 80, targetPort: 8080 }] });
  s.dp.setNexthop(30, { kind: 'composite', members: [1, 2] });
  s.dp.setLabel(40, 30);
  const send = (srcPort: number) => {
    const inner = f.ipv4({ src: '10.1.1.5', dst: CLUSTER_IP, protocol: 17, ttl: 63, payload: f.udp('10.1.1.5', CLUSTER_IP, srcPort, 80, Buffer.from('query')) });
    const before = [s.out(1).length, s.out(2).length];
    s.run([[0, f.mplsOverUdp({ dstMac: FABRIC_MAC, srcMac: UNDERLAY_GW_MAC, src: '192.168.0.12', dst: '192.168.0.11', label: 40, inner })]]);
    const pods = [1, 2].filter((vif, index) => s.out(vif).length > before[index]);
    assert.equal(pods.length, 1, `source port ${srcPort}: delivered to ${pods.length} pods`);
    const delivered = s.out(pods[0]).at(-1)!;
    assert.equal(ipText(delivered, 30), pods[0] === 1 ? '10.1.1.3' : '10.1.1.4', 'translated to the address of the pod it reached');
    assert.equal(delivered.readUInt16BE(36), 8080);
    assertChecksums(delivered);
    return pods[0];
  };
  const chosen = new Map<number, number>();
  for (let srcPort = 1000; srcPort < 1040; srcPort++) chosen.set(srcPort, send(srcPort));
  for (let srcPort = 1000; srcPort < 1040; srcPort++) assert.equal(send(srcPort), chosen.get(srcPort), `the flow from port ${srcPort} changed pods`);
  const perPod = [1, 2].map((vif) => [...chosen.values()].filter((pod) => pod === vif).length);
  assert.ok(perPod[0] > 0 && perPod[1] > 0, `both pods should get flows: ${perPod.join(' / ')}`);
  assert.deepEqual(s.dp.drops.toJSON(), {});
});

test('an ICMP error from the backend is translated with its flow, quoted header included', () => {
  const s = serviceScenario();
  s.run([[1, udpFrame('10.1.1.3', CLUSTER_IP, 33000, 80)]]);
  const [delivered] = s.out(2);
  // The pod's stack answers with port unreachable, quoting what it received.
  const quoted = delivered.subarray(14, 14 + 28);
  const unreachable = Buffer.concat([Buffer.from([3, 3, 0, 0, 0, 0, 0, 0]), quoted]);
  unreachable.writeUInt16BE(f.internetChecksum(unreachable), 2);
  s.run([[2, f.ethernet(VROUTER_MAC, POD_B_MAC, 0x0800, f.ipv4({ src: '10.1.1.4', dst: '10.1.1.3', protocol: 1, payload: unreachable }))]]);
  const [error] = s.out(1);
  assert.equal(ipText(error, 26), CLUSTER_IP, 'outer source is the ClusterIP');
  assert.equal(error[34], 3);
  const inner = 14 + 20 + 8;
  assert.equal(ipText(error, inner + 12), '10.1.1.3', 'quoted source: the client');
  assert.equal(ipText(error, inner + 16), CLUSTER_IP, 'quoted destination: the ClusterIP again');
  assert.equal(error.readUInt16BE(inner + 22), 80, 'quoted destination port: the service port again');
  assertChecksums(error);
  assert.equal(f.internetChecksum(error.subarray(inner, inner + 20)), 0, 'quoted IPv4 header checksum');
  const quotedUdp = error.subarray(inner + 20, inner + 28);
  const quotedDatagram = Buffer.concat([quotedUdp, delivered.subarray(42)]);
  assert.equal(l4Checksum('10.1.1.3', CLUSTER_IP, 17, quotedDatagram), 0, 'quoted UDP checksum matches the translated header');
  assert.equal(s.dp.flows.activePairs, 1, 'the error created no flow');
});

test('an ICMP error quoting no known flow is dropped', () => {
  const s = buildScenario();
  const quoted = f.ipv4({ src: '10.1.1.4', dst: '10.1.1.3', protocol: 17, payload: f.udp('10.1.1.4', '10.1.1.3', 1, 2, Buffer.alloc(8)) }).subarray(0, 28);
  const unreachable = Buffer.concat([Buffer.from([3, 3, 0, 0, 0, 0, 0, 0]), quoted]);
  unreachable.writeUInt16BE(f.internetChecksum(unreachable), 2);
  s.run([[1, f.ethernet(VROUTER_MAC, POD_A_MAC, 0x0800, f.ipv4({ src: '10.1.1.3', dst: '10.1.1.4', protocol: 1, payload: unreachable }))]]);
  assert.deepEqual(s.dp.drops.toJSON(), { 'icmp-error-no-flow': 1 });
});

test('sticky ECMP: a flow keeps its member when members are added and when others are removed', () => {
  const s = buildScenario();
  const flows = 300;
  const memberOf = (frame: Buffer) => ipText(frame, 30); // the member's node
  const send = () => {
    s.out(0).length = 0;
    for (let i = 0; i < flows; i += 50) s.run(Array.from({ length: 50 }, (_, j) => [1, udpFrame('10.1.1.3', '10.96.0.10', 2000 + i + j, 80)] as [number, Buffer]));
    return s.out(0).map(memberOf);
  };
  const first = send();
  s.dp.setNexthop(13, { kind: 'tunnel', vif: 0, dip: ipFromString('192.168.0.15'), sip: ipFromString('192.168.0.11'), label: 28, encap: 'udp', mac: f.mac(UNDERLAY_GW_MAC) });
  s.dp.nexthops.addMember(20, 13);
  assert.deepEqual(send(), first, 'a new member takes no existing flow');
  s.dp.nexthops.removeMember(20, 1);
  const after = send();
  first.forEach((member, i) => {
    if (member !== '192.168.0.13') assert.equal(after[i], member, `flow ${i} on a surviving member moved`);
    else assert.notEqual(after[i], member, `flow ${i} still on the removed member`);
  });
  assert.deepEqual(send(), after, 'flows moved off the removed member stay where they went');
});

test('policy: between VNs denied by default, a rule allows one port, the reply of an allowed flow passes', () => {
  const s = buildScenario();
  s.dp.addRoute(2, ipFromString('10.1.1.3'), 32, 1); // vn1's pod leaked into vn2
  s.dp.addRoute(1, ipFromString('10.2.2.3'), 32, 3);
  s.run([[3, udpFrame('10.2.2.3', '10.1.1.3', 1000, 80, POD_C_MAC)]]);
  assert.deepEqual(s.dp.drops.toJSON(), { 'flow-action-drop': 1 });
  s.dp.policy.rules.push({ name: 'vn2-to-vn1-web', sourceVn: 2, destinationVn: 1, protocol: 6, portFrom: 80, portTo: 80, destinationPrefix: 0, destinationLength: 0, allow: true });
  s.run([
    [3, tcpFrame({ src: '10.2.2.3', dst: '10.1.1.3', srcPort: 1001, dstPort: 80, flags: TCP.SYN })],
    [3, tcpFrame({ src: '10.2.2.3', dst: '10.1.1.3', srcPort: 1002, dstPort: 22, flags: TCP.SYN })],
    [1, tcpFrame({ src: '10.1.1.3', dst: '10.2.2.3', srcPort: 80, dstPort: 1001, flags: TCP.SYN | TCP.ACK, ack: 1001 })],
  ]);
  assert.equal(s.out(1).length, 1, 'port 80 reached pod-a');
  assert.equal(s.out(3).length, 1, 'the reply reached pod-c');
  assert.deepEqual(s.dp.drops.toJSON(), { 'flow-action-drop': 2 });
});

test('policy change: an established pair is dropped once its rule is removed and forwarded again, same NAT, once restored', () => {
  const s = serviceScenario();
  // pod-c (vn2) reaches pod-b (vn1) through the ClusterIP only while a rule allows it.
  s.dp.addRoute(2, ipFromString(CLUSTER_IP), 32, 2);
  s.dp.addRoute(1, ipFromString('10.2.2.3'), 32, 3);
  const allow = { name: 'vn2-to-web', sourceVn: 2, destinationVn: 1, protocol: 17, portFrom: 80, portTo: 80, destinationPrefix: 0, destinationLength: 0, allow: true };
  s.dp.policy.setRules([allow]);
  const request = () => udpFrame('10.2.2.3', CLUSTER_IP, 3000, 80, POD_C_MAC);
  const reply = () => udpFrame('10.1.1.4', '10.2.2.3', 8080, 3000, POD_B_MAC);
  s.run([[3, request()], [2, reply()]]);
  assert.deepEqual([s.out(2).length, s.out(3).length], [1, 1], 'allowed: request DNAT to pod-b, reply back');
  const [entry] = s.dp.flows.entries().filter((view) => view.srcPort === 3000).map((view) => view.index);
  const natBefore = s.dp.flows.view(entry).nat;
  assert.deepEqual(natBefore, ['dnat', 'dpat']);

  const walks = s.pipeline.revaluation.walks;
  s.dp.policy.setRules([]);
  s.run([[3, request()], [2, reply()]]);
  assert.equal(s.pipeline.revaluation.walks, walks + 1, 'the walk ran after that batch');
  s.run([[3, request()], [2, reply()]]);
  assert.deepEqual([s.out(2).length, s.out(3).length], [2, 2], 'denied: nothing more either way once the walk has passed');
  assert.equal(s.dp.drops.toJSON()['flow-action-drop'], 2);
  assert.equal(s.dp.flows.view(entry).action, 'drop');
  assert.equal(s.dp.flows.view(entry ^ 1).action, 'drop', 'the reverse entry follows');

  s.dp.policy.setRules([allow]);
  s.pipeline.revaluateFlows();
  s.run([[3, request()], [2, reply()]]);
  assert.deepEqual([s.out(2).length, s.out(3).length], [3, 3], 'allowed again');
  assert.equal(s.dp.flows.view(entry).action, 'nat');
  assert.deepEqual(s.dp.flows.view(entry).nat, natBefore, 'the same translation');
  const delivered = s.out(2)[2];
  assert.equal(ipText(delivered, 30), '10.1.1.4');
  assert.equal(delivered.readUInt16BE(36), 8080);
  assertChecksums(delivered);
  assert.deepEqual(s.out(3)[2].subarray(26, 30), f.ip(CLUSTER_IP), 'the reply leaves from the ClusterIP');
  assert.equal(s.pipeline.revaluation.changed, 2, 'two verdicts changed: to drop, back to NAT');
  assert.equal(s.dp.flows.activePairs, 1, 'the same pair throughout');
  balanced(s);
});

test('policy change: a deny rule stops established pairs, an unchanged rule set walks nothing, removing the rule lets them go on, on their ECMP members', () => {
  const s = buildScenario();
  s.dp.addRoute(2, ipFromString('10.96.0.10'), 32, 20); // the ECMP route (tunnels of no VN: vn2's own) in vn2 too
  const frames = () => Array.from({ length: 20 }, (_, i) => [3, udpFrame('10.2.2.3', '10.96.0.10', 4000 + i, 80, POD_C_MAC)] as [number, Buffer]);
  s.run(frames());
  const members = s.out(0).map((frame) => ipText(frame, 30));
  assert.equal(members.length, 20, 'allowed: inside one VN');
  const deny = { name: 'no-service', sourceVn: 2, destinationVn: -1, protocol: 17, portFrom: 80, portTo: 80, destinationPrefix: ipFromString('10.96.0.10'), destinationLength: 32, allow: false };
  s.dp.policy.setRules([deny]);
  const generation = s.dp.policy.generation;
  s.dp.policy.setRules([{ ...deny }]);
  assert.equal(s.dp.policy.generation, generation, 'the same rules again: no new walk');
  s.pipeline.revaluateFlows();
  s.run(frames());
  assert.equal(s.out(0).length, 20, 'denied: nothing more sent');
  assert.equal(s.dp.drops.toJSON()['flow-action-drop'], 20);
  s.dp.policy.setRules([]);
  s.pipeline.revaluateFlows();
  s.run(frames());
  assert.deepEqual(s.out(0).slice(20).map((frame) => ipText(frame, 30)), members, 'forwarded again, each flow on its member');
  assert.equal(s.dp.flows.activePairs, 20);
  balanced(s);
});

test('a pair translated to a local ECMP member that is removed is made again on its next packet, to a live member', () => {
  const s = buildScenario();
  // A ClusterIP with two local backends: pod-a and pod-b, each with the floating IP.
  for (const vif of [1, 2]) s.dp.vifs.get(vif)!.floatingIps.push({ ip: ipFromString(CLUSTER_IP), portMap: [{ protocol: 17, port: 80, targetPort: 8080 }] });
  s.dp.setNexthop(21, { kind: 'composite', members: [1, 2] });
  s.dp.addRoute(2, ipFromString(CLUSTER_IP), 32, 21);
  s.dp.policy.setRules([{ name: 'vn2-to-service', sourceVn: 2, destinationVn: -1, protocol: 17, portFrom: 80, portTo: 80, destinationPrefix: 0, destinationLength: 0, allow: true }]);
  const frames = () => Array.from({ length: 40 }, (_, i) => [3, udpFrame('10.2.2.3', CLUSTER_IP, 5000 + i, 80, POD_C_MAC)] as [number, Buffer]);
  s.run(frames());
  const onB = s.out(2).length;
  assert.ok(onB > 0 && s.out(1).length > 0, 'both backends have flows');
  s.dp.nexthops.removeMember(21, 1); // pod-b leaves the service
  s.ports[1].frames.length = 0;
  s.ports[2].frames.length = 0;
  s.run(frames());
  assert.equal(s.out(2).length, 0, 'nothing more to the removed backend');
  assert.equal(s.out(1).length, 40, 'every flow now on pod-a');
  for (const frame of s.out(1)) {
    assert.equal(ipText(frame, 30), '10.1.1.3', 'translated to the live backend, not the old one');
    assertChecksums(frame);
  }
  assert.equal(s.dp.flows.activePairs, 40, 'one pair per flow: the stale ones were replaced');
  balanced(s);
});

test('source checks: a pod sends only as itself; a tunnel only from the node routing the inner source', () => {
  const s = buildScenario();
  const inner = (src: string) => f.ipv4({ src, dst: '10.1.1.4', protocol: 17, ttl: 63, payload: f.udp(src, '10.1.1.4', 1, 2, Buffer.alloc(4)) });
  const tunnel = (node: string, src: string) => f.mplsOverUdp({ dstMac: FABRIC_MAC, srcMac: UNDERLAY_GW_MAC, src: node, dst: '192.168.0.11', label: 18, inner: inner(src) });
  s.run([
    [1, udpFrame('10.1.1.9', '10.1.1.4', 1, 2)],
    [1, udpFrame('10.1.1.3', '10.1.1.4', 1, 2, POD_B_MAC)],
    [0, tunnel('192.168.0.13', '10.1.1.5')], // 10.1.1.5 lives behind 192.168.0.12
    [0, tunnel('192.168.0.99', '10.1.1.5')],
    [0, tunnel('192.168.0.14', '10.96.0.10')], // a member of the ClusterIP's ECMP route
    [0, tunnel('192.168.0.12', '10.1.1.5')],
  ]);
  assert.deepEqual(s.dp.drops.toJSON(), { 'spoofed-source': 2, 'invalid-tunnel-source': 2 });
  assert.equal(s.out(2).length, 2);
});

test('a full table evicts an unreplied flow, never an established one, then refuses new flows', () => {
  const s = buildScenario();
  const small = new Dataplane(s.dp.node, { flowCapacity: 4 });
  const flows = small.flows;
  const key = (srcPort: number) => ({ vrf: 1, protocol: 17, src: 1, dst: 2, srcPort, dstPort: 53 });
  const reverseKey = (srcPort: number) => ({ vrf: 1, protocol: 17, src: 2, dst: 1, srcPort: 53, dstPort: srcPort });
  const established = flows.create(key(1), reverseKey(1), 0);
  flows.hit(established ^ 1, 60, 0);
  const unreplied = flows.create(key(2), reverseKey(2), 0);
  assert.notEqual(unreplied, -1);
  const third = flows.create(key(3), reverseKey(3), 0);
  assert.notEqual(third, -1, 'the unreplied pair made room');
  assert.equal(flows.evictions, 1);
  assert.equal(flows.lookup(1, 17, 1, 2, (2 << 16) | 53, hashOf(key(2))), -1, 'the unreplied flow is gone');
  assert.notEqual(flows.lookup(1, 17, 1, 2, (1 << 16) | 53, hashOf(key(1))), -1, 'the established flow stayed');
  flows.hit(third ^ 1, 60, 0);
  assert.equal(flows.create(key(4), reverseKey(4), 0), -1, 'no unreplied flow left: refused');
});

test('the pipeline counts flow-table-full and keeps forwarding established flows', () => {
  const tiny = buildScenario({ flowCapacity: 2 });
  tiny.run([[1, udpFrame('10.1.1.3', '10.1.1.4', 7000, 53)], [2, udpFrame('10.1.1.4', '10.1.1.3', 53, 7000, POD_B_MAC)]]);
  tiny.run([[1, udpFrame('10.1.1.3', '10.1.1.4', 7001, 53)], [1, udpFrame('10.1.1.3', '10.1.1.4', 7000, 53)]]);
  assert.deepEqual(tiny.dp.drops.toJSON(), { 'flow-table-full': 1 });
  assert.equal(tiny.out(2).length, 2, 'the established flow kept forwarding');
});

/** The table indexes by the same flow hash the pipeline computes. */
function hashOf(key: { vrf: number; protocol: number; src: number; dst: number; srcPort: number; dstPort: number }): number {
  return flowHash(key.vrf, key.src, key.dst, key.protocol, key.srcPort, key.dstPort);
}

test('idle pairs age out after the timeout, active ones stay', () => {
  const s = buildScenario();
  s.pipeline.advanceClock(1000);
  s.run([[1, udpFrame('10.1.1.3', '10.1.1.4', 1, 2)], [1, udpFrame('10.1.1.3', '10.1.1.4', 3, 4)]]);
  s.pipeline.advanceClock(1100);
  s.run([[1, udpFrame('10.1.1.3', '10.1.1.4', 3, 4)]]);
  s.pipeline.advanceClock(1000 + 180);
  assert.equal(s.dp.flows.activePairs, 1, 'the pair idle for 180 s is gone');
  s.pipeline.advanceClock(1100 + 180);
  assert.equal(s.dp.flows.activePairs, 0);
});

test('aging sweeps the whole default-size table within the timeout: no pair outlives twice its timeout', () => {
  const s = buildScenario({ flowCapacity: 512 * 1024 });
  s.dp.flows.idleTimeout = 10;
  s.pipeline.advanceClock(1000);
  // 1000 pairs, their hashes spread over the 256k pair slots.
  for (let batch = 0; batch < 10; batch++) {
    s.run(Array.from({ length: 100 }, (_, i) => [1, udpFrame('10.1.1.3', '10.1.1.4', 10000 + batch * 100 + i, 53)] as [number, Buffer]));
  }
  assert.equal(s.dp.flows.activePairs, 1000);
  for (let second = 1001; second <= 1020; second++) s.pipeline.advanceClock(second);
  assert.equal(s.dp.flows.activePairs, 0, 'every idle pair removed by 2 x the idle timeout');
});

test('TCP: FIN both ways then the last ACK removes the pair', () => {
  const s = buildScenario();
  const a = { src: '10.1.1.3', dst: '10.1.1.4', srcPort: 40001, dstPort: 80 };
  const b = { src: '10.1.1.4', dst: '10.1.1.3', srcPort: 80, dstPort: 40001 };
  s.run([
    [1, tcpFrame({ ...a, flags: TCP.SYN, seq: 100 })],
    [2, tcpFrame({ ...b, flags: TCP.SYN | TCP.ACK, seq: 500, ack: 101 })],
    [1, tcpFrame({ ...a, flags: TCP.ACK, seq: 101, ack: 501 })],
    [1, tcpFrame({ ...a, flags: TCP.FIN | TCP.ACK, seq: 101, ack: 501 })],
    [2, tcpFrame({ ...b, flags: TCP.FIN | TCP.ACK, seq: 501, ack: 102 })],
  ]);
  assert.equal(s.dp.flows.activePairs, 1, 'still there until the last ACK');
  s.run([[1, tcpFrame({ ...a, flags: TCP.ACK, seq: 102, ack: 502 })]]);
  assert.equal(s.dp.flows.activePairs, 0, 'removed after FIN both ways and the last ACK');
  assert.equal(s.out(2).length, 4, 'the last ACK itself was forwarded');
});

test('TCP: a simultaneous close removes the pair only once both FINs are acknowledged', () => {
  const s = buildScenario();
  const a = { src: '10.1.1.3', dst: '10.1.1.4', srcPort: 40003, dstPort: 80 };
  const b = { src: '10.1.1.4', dst: '10.1.1.3', srcPort: 80, dstPort: 40003 };
  s.run([
    [1, tcpFrame({ ...a, flags: TCP.SYN, seq: 100 })],
    [2, tcpFrame({ ...b, flags: TCP.SYN | TCP.ACK, seq: 500, ack: 101 })],
    [1, tcpFrame({ ...a, flags: TCP.ACK, seq: 101, ack: 501 })],
    [1, tcpFrame({ ...a, flags: TCP.FIN | TCP.ACK, seq: 101, ack: 501 })],
    [2, tcpFrame({ ...b, flags: TCP.FIN | TCP.ACK, seq: 501, ack: 101 })], // crossed: does not ack a's FIN
    [1, tcpFrame({ ...a, flags: TCP.ACK, seq: 102, ack: 502 })],
  ]);
  assert.equal(s.dp.flows.activePairs, 1, "b's FIN is acknowledged, a's is not yet");
  s.run([[2, tcpFrame({ ...b, flags: TCP.ACK, seq: 502, ack: 102 })]]);
  assert.equal(s.dp.flows.activePairs, 0);
  assert.equal(s.out(1).length, 3, "b's SYN-ACK, FIN and last ACK all reached pod-a in the flow");
  assert.deepEqual(s.dp.drops.toJSON(), {});
});

test('TCP: an RST closes the pair only at exactly the next expected sequence number (RFC 5961 3.2)', () => {
  const s = buildScenario();
  const a = { src: '10.1.1.3', dst: '10.1.1.4', srcPort: 40002, dstPort: 80 };
  const b = { src: '10.1.1.4', dst: '10.1.1.3', srcPort: 80, dstPort: 40002 };
  s.run([
    [1, tcpFrame({ ...a, flags: TCP.SYN, seq: 100, window: 1000 })],
    [2, tcpFrame({ ...b, flags: TCP.SYN | TCP.ACK, seq: 500, ack: 101, window: 1000 })],
    [1, tcpFrame({ ...a, flags: TCP.ACK, seq: 101, ack: 501, window: 1000 })],
    [2, tcpFrame({ ...b, flags: TCP.RST, seq: 900000 })],
    [2, tcpFrame({ ...b, flags: TCP.RST, seq: 503 })], // in the window, not exact (tests/test_tcp_rst.py: seq + 2)
    [1, tcpFrame({ ...a, flags: TCP.RST | TCP.ACK, seq: 102, ack: 501 })], // a's next is 101
  ]);
  assert.equal(s.dp.flows.activePairs, 1, 'inexact RSTs leave the pair');
  s.run([[2, tcpFrame({ ...b, flags: TCP.RST, seq: 501 })]]);
  assert.equal(s.dp.flows.activePairs, 0, 'the RST at the sequence number a acknowledged closed the pair');
  assert.equal(s.out(1).length + s.out(2).length, 7, 'every segment forwarded, RSTs included');
});

test('TCP: an RST answering a SYN closes the pair only when its ACK acknowledges the SYN', () => {
  const s = buildScenario();
  const a = { src: '10.1.1.3', dst: '10.1.1.4', srcPort: 40003, dstPort: 81 };
  const b = { src: '10.1.1.4', dst: '10.1.1.3', srcPort: 81, dstPort: 40003 };
  s.run([
    [1, tcpFrame({ ...a, flags: TCP.SYN, seq: 7000 })],
    [2, tcpFrame({ ...b, flags: TCP.RST | TCP.ACK, seq: 0, ack: 7002 })], // acknowledges more than the SYN
    [2, tcpFrame({ ...b, flags: TCP.RST, seq: 0 })], // no ACK at all
  ]);
  assert.equal(s.dp.flows.activePairs, 1, 'an RST that does not acknowledge the SYN leaves the pair');
  s.run([[2, tcpFrame({ ...b, flags: TCP.RST | TCP.ACK, seq: 0, ack: 7001 })]]);
  assert.equal(s.dp.flows.activePairs, 0, 'the RST acknowledging the SYN (a closed port) closed the pair');
});

function fragments(src: string, dst: string, id: number, payload: Buffer, cut: number, mac = POD_A_MAC): Buffer[] {
  // A UDP datagram cut after `cut` bytes (a multiple of 8) of the IP payload.
  const datagram = f.udp(src, dst, 4444, 80, payload);
  const head = f.ipv4({ src, dst, protocol: 17, id, flags: 0x2000, payload: datagram.subarray(0, cut) });
  const tail = f.ipv4({ src, dst, protocol: 17, id, flags: cut / 8, payload: datagram.subarray(cut) });
  return [head, tail].map((packet) => f.ethernet(VROUTER_MAC, mac, 0x0800, packet));
}

test('fragments: later fragments follow the first, also when they arrive before it', () => {
  const s = serviceScenario();
  const [head, tail] = fragments('10.1.1.3', CLUSTER_IP, 7, Buffer.alloc(40, 1), 24);
  s.run([[1, head], [1, tail]]);
  const [outHead, outTail] = s.out(2);
  assert.equal(ipText(outHead, 30), '10.1.1.4');
  assert.equal(ipText(outTail, 30), '10.1.1.4', 'the later fragment got the DNAT too');
  assert.equal(outHead.readUInt16BE(36), 8080);
  assert.equal(f.internetChecksum(outTail.subarray(14, 34)), 0, 'IPv4 header checksum of the later fragment');
  const reassembled = Buffer.concat([outHead.subarray(34), outTail.subarray(34)]);
  assert.equal(l4Checksum('10.1.1.3', '10.1.1.4', 17, reassembled), 0, 'UDP checksum of the reassembled, translated datagram');

  const [head2, tail2] = fragments('10.1.1.3', CLUSTER_IP, 8, Buffer.alloc(40, 2), 24);
  s.run([[1, tail2]]);
  assert.equal(s.pipeline.held, 1, 'held until its first fragment comes');
  balanced(s);
  s.run([[1, head2]]);
  assert.equal(s.pipeline.held, 0);
  const released = s.out(2).slice(2);
  assert.equal(released.length, 2);
  assert.equal(released[0].readUInt16BE(14 + 6), 0x2000, 'the first fragment leaves first');
  assert.equal(ipText(released[1], 30), '10.1.1.4');
  balanced(s);
});

/** The tail fragment moved to offset 16 bytes: inside the head's 24, and overlapping the tail's range. */
function overlappingTail(tail: Buffer): Buffer {
  const overlapping = Buffer.from(tail);
  overlapping.writeUInt16BE(2, 14 + 6);
  overlapping.writeUInt16BE(0, 14 + 10);
  overlapping.writeUInt16BE(f.internetChecksum(overlapping.subarray(14, 34)), 14 + 10);
  return overlapping;
}

test('fragments: an overlap drops the rest of its datagram (RFC 5722), held fragments included; a headless one times out', () => {
  const s = buildScenario();
  const [head, tail] = fragments('10.1.1.3', '10.1.1.4', 9, Buffer.alloc(40, 3), 24);
  s.pipeline.advanceClock(50);
  s.run([[1, head], [1, overlappingTail(tail)], [1, tail]]);
  assert.equal(s.out(2).length, 1, 'only the head, which left before the overlap came');
  assert.deepEqual(s.dp.drops.toJSON(), { 'fragment-overlap': 2 });

  const [head2, tail2] = fragments('10.1.1.3', '10.1.1.4', 11, Buffer.alloc(40, 5), 24);
  s.run([[1, tail2]]);
  assert.equal(s.pipeline.held, 1);
  s.run([[1, overlappingTail(tail2)], [1, head2]]);
  assert.equal(s.pipeline.held, 0, 'the held tail went with its datagram');
  assert.equal(s.out(2).length, 1, 'nothing of the second datagram left');
  assert.deepEqual(s.dp.drops.toJSON(), { 'fragment-overlap': 5 });

  const [, orphan] = fragments('10.1.1.3', '10.1.1.4', 10, Buffer.alloc(40, 4), 24);
  s.run([[1, orphan]]);
  s.pipeline.advanceClock(53);
  assert.deepEqual(s.dp.drops.toJSON(), { 'fragment-overlap': 5, 'fragment-timeout': 1 });
  assert.equal(s.pipeline.held, 0);
  balanced(s);
});
