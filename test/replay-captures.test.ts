/**
 * Captures as people make them, replayed: the same pod traffic recorded by
 * real tools in network namespaces this test creates, as Ethernet
 * (`tcpdump -i <veth>`), Linux cooked v1 and v2 (`tcpdump -i any -y
 * LINUX_SLL|LINUX_SLL2`), a pcapng of two interfaces (`tshark -i ... -i
 * ...`, mapped to vifs with --map), raw IPv4 (scapy rewriting the Ethernet
 * capture with link types 101 and 228), and a snaplen-cut capture
 * (`tcpdump -s 60`). Each replays through the node of
 * pcap-fixtures/01-local-pod-to-pod to the same outputs as the Ethernet
 * capture (compared with `vrouter replay --expect`); the cut one is
 * reported and not replayed.
 *
 *   pod-a ns: pa0 10.1.1.3 02:00:0a:01:01:03 ─veth─ ha ┐ host ns  ┌ hb ─veth─ pb0 10.1.1.4 02:00:0a:01:01:04 :pod-b ns
 *
 * Each pod sends pings and a UDP datagram to the other through its gateway
 * 10.1.1.1, a permanent neighbour at the vrouter MAC; nothing answers (the
 * host namespace does not forward): only what the pods send is recorded.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CaptureReader, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, readCapture } from '../src/dataplane/io/pcap';
import { Topology, requireCommands } from './support/netns';
import { ProcessOutput } from './support/vrouter-cluster';
import { FIXTURES_DIR, vrouter } from './support/fixtures';

if (process.getuid?.() !== 0) throw new Error('this test needs root (network namespaces, packet capture): run it as root, as .ci/run does');
requireCommands({ ip: 'iproute2', ping: 'iputils-ping', tcpdump: 'tcpdump', tshark: 'tshark' });

const STATE = path.join(FIXTURES_DIR, '01-local-pod-to-pod', 'state.yaml');
const VROUTER_MAC = '00:00:5e:00:01:00';
const PODS = [
  { ns: 'pod-a', ifname: 'pa0', host: 'ha', ip: '10.1.1.3', mac: '02:00:0a:01:01:03', peer: '10.1.1.4' },
  { ns: 'pod-b', ifname: 'pb0', host: 'hb', ip: '10.1.1.4', mac: '02:00:0a:01:01:04', peer: '10.1.1.3' },
];

describe('real captures replayed', { timeout: 120_000 }, () => {
  const topology = new Topology();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'replay-captures-'));
  const file = (name: string) => path.join(dir, name);
  const namespaces: Record<string, string> = {};

  before(async () => {
    namespaces.host = await topology.addNamespace('host');
    for (const pod of PODS) {
      namespaces[pod.ns] = await topology.addNamespace(pod.ns);
      await topology.addVethPair(namespaces[pod.ns], pod.ifname, namespaces.host, pod.host);
      await topology.configurePod(namespaces[pod.ns], pod.ifname, { ip: pod.ip, gateway: '10.1.1.1', mac: pod.mac });
      await topology.exec(namespaces[pod.ns], ['ip', 'neigh', 'replace', '10.1.1.1', 'lladdr', VROUTER_MAC, 'dev', pod.ifname, 'nud', 'permanent']);
    }
    // Every capture runs at once, over the same traffic.
    const a = PODS[0];
    const captures = [
      topology.spawn(namespaces.host, ['tcpdump', '--immediate-mode', '-U', '-n', '-i', 'ha', '-w', file('eth-a.pcap')]),
      topology.spawn(namespaces.host, ['tcpdump', '--immediate-mode', '-U', '-n', '-i', 'hb', '-w', file('eth-b.pcap')]),
      topology.spawn(namespaces.host, ['tcpdump', '-U', '-n', '-i', 'ha', '-s', '60', '-w', file('cut-a.pcap')]),
      topology.spawn(namespaces[a.ns], ['tcpdump', '--immediate-mode', '-U', '-n', '-i', 'any', '-Q', 'out', '-y', 'LINUX_SLL', '-w', file('sll-a.pcap')]),
      topology.spawn(namespaces[a.ns], ['tcpdump', '--immediate-mode', '-U', '-n', '-i', 'any', '-Q', 'out', '-y', 'LINUX_SLL2', '-w', file('sll2-a.pcap')]),
      topology.spawn(namespaces.host, ['tshark', '-q', '-i', 'ha', '-i', 'hb', '-w', file('both.pcapng')]),
    ].map((child) => new ProcessOutput(child));
    for (const capture of captures) await capture.waitFor(/listening on|Capturing on/, 20_000);
    await new Promise((resolve) => setTimeout(resolve, 1000)); // dumpcap says so before every interface is open
    for (const pod of PODS) {
      await topology.exec(namespaces[pod.ns], ['ping', '-n', '-c', '3', '-i', '0.2', '-W', '0.2', pod.peer]).catch(() => undefined); // no answers: only the requests matter
      await topology.exec(namespaces[pod.ns], ['bash', '-c', `printf x > /dev/udp/${pod.peer}/5000`]);
    }
    // Immediate mode: without it, libpcap hands over a TPACKET_V3 block only when full or after its timeout, and SIGINT
    // drops the last one. Not for the -s 60 capture (libpcap then keeps 58 bytes); its frames are pod a's, the oldest.
    await new Promise((resolve) => setTimeout(resolve, 500));
    for (const capture of captures) process.kill(capture.child.pid!, 'SIGINT');
    for (const capture of captures) await capture.exited;
    // Raw IPv4 (link types 101 and 228) from the Ethernet capture, by scapy.
    execFileSync('/usr/bin/python3', [
      '-c',
      `import sys
from scapy.all import rdpcap, wrpcap, raw, Ether, IP
frames = rdpcap(sys.argv[1])
for linktype, name in [(101, sys.argv[2]), (228, sys.argv[3])]:
    packets = []
    for frame in frames:
        packet = IP(raw(frame[Ether].payload))
        packet.time = frame.time
        packets.append(packet)
    wrpcap(name, packets, linktype=linktype)
`,
      file('eth-a.pcap'),
      file('raw101-a.pcap'),
      file('raw228-a.pcap'),
    ], { stdio: ['ignore', 'pipe', 'pipe'] }); // scapy warns that IP packets are not its default link type: that is the point
  });

  after(async () => {
    await topology.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** `vrouter replay` of the inputs into out/<name>; the process result. */
  const replay = (name: string, inputs: string[], extra: string[] = []) => vrouter(['replay', '--state', STATE, ...inputs, '--out', file(name), ...extra]);

  test('the Ethernet captures hold what the pods sent, and replay forwards it', () => {
    const run = replay('eth', ['--in', `pod-a=${file('eth-a.pcap')}`, '--in', `pod-b=${file('eth-b.pcap')}`]);
    assert.equal(run.status, 0, run.stderr);
    // 3 echo requests and 1 datagram each way, routed to the other pod.
    assert.equal(readCapture(file('eth/pod-b.pcap')).length, 4);
    assert.equal(readCapture(file('eth/pod-a.pcap')).length, 4);
  });

  for (const [name, linkType] of [
    ['sll-a.pcap', LINKTYPE_LINUX_SLL],
    ['sll2-a.pcap', LINKTYPE_LINUX_SLL2],
  ] as const) {
    test(`${name}: tcpdump -i any, Linux cooked capture link type ${linkType}, replays as the Ethernet capture (up to time stamps)`, () => {
      const reader = new CaptureReader(file(name));
      reader.close();
      assert.equal(reader.interfaces[0].linkType, linkType);
      const eth = replay(`eth-a-only-${linkType}`, ['--in', `pod-a=${file('eth-a.pcap')}`]);
      assert.equal(eth.status, 0, eth.stderr);
      const run = replay(`out-${linkType}`, ['--in', `pod-a=${file(name)}`], ['--expect', file(`eth-a-only-${linkType}`), '--ignore', 'timestamp']);
      assert.equal(run.status, 0, `${run.stdout}${run.stderr}`);
      assert.match(run.stdout, /^equal to /m);
    });
  }

  test('raw IPv4 (link types 101 and 228, written by scapy) replays to the same bytes and times as the Ethernet capture', () => {
    const eth = replay('eth-a', ['--in', `pod-a=${file('eth-a.pcap')}`]);
    assert.equal(eth.status, 0, eth.stderr);
    for (const raw of ['raw101-a.pcap', 'raw228-a.pcap']) {
      const run = replay(`out-${raw}`, ['--in', `pod-a=${file(raw)}`], ['--expect', file('eth-a')]);
      assert.equal(run.status, 0, `${raw}: ${run.stdout}${run.stderr}`);
    }
  });

  test('a pcapng of two interfaces (tshark) replays with --map as the two Ethernet captures', () => {
    const names = new Set(new Array<string>());
    const reader = new CaptureReader(file('both.pcapng'));
    while (reader.next()) names.add(reader.interfaces[reader.interfaceId].name ?? '');
    reader.close();
    assert.deepEqual([...names].sort(), ['ha', 'hb']);
    const run = replay('both', [], ['--in-pcapng', file('both.pcapng'), '--map', 'ha=pod-a', '--map', 'hb=pod-b', '--expect', file('eth'), '--ignore', 'timestamp']);
    assert.equal(run.status, 0, `${run.stdout}${run.stderr}`);
    const unmapped = replay('unmapped', [], ['--in-pcapng', file('both.pcapng'), '--map', 'ha=pod-a']);
    assert.equal(unmapped.status, 2, unmapped.stderr);
    assert.match(unmapped.stderr, /both\.pcapng: frame \d+ is on interface \d \(hb\), which no --map names/);
  });

  test('frames cut by the snaplen (tcpdump -s 60) are counted and named, never replayed short', () => {
    const run = replay('cut', ['--in', `pod-a=${file('cut-a.pcap')}`]);
    assert.equal(run.status, 0, run.stderr);
    const cut = readCapture(file('cut-a.pcap')).filter((frame) => frame.data.length < frame.originalLength);
    assert.equal(cut.length, 3, 'the three 98-byte echo requests are cut; the 43-byte datagram fits');
    const summary = JSON.parse(fs.readFileSync(file('cut/summary.json'), 'utf8'));
    assert.equal(summary.truncatedInput['cut-a.pcap'].frames, 3);
    assert.deepEqual(
      summary.truncatedInput['cut-a.pcap'].first.map((frame: { capturedLength: number; originalLength: number }) => [frame.capturedLength, frame.originalLength]),
      [
        [60, 98],
        [60, 98],
        [60, 98],
      ],
    );
    assert.equal(summary.packets.received, 1, 'only the datagram is replayed');
    assert.match(run.stderr, /cut-a\.pcap: 3 frames cut short by the capture's snaplen were not replayed: frames \d+ \(60 of 98 bytes\)/);
  });
});
