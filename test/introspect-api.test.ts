/**
 * The introspect API, its utilities and /metrics against real `vrouter run`
 * daemons in network namespaces (test/support/vrouter-cluster.ts):
 *
 *   node0: a1 10.1.1.3 (label 20), a2 10.1.1.4 (label 21)     vn1 10.1.1.0/24
 *   node1: b1 10.1.1.5 (label 30)                             vn1
 *          c1 10.2.2.3 (label 31)                             vn2 10.2.2.0/24
 *
 * Every utility runs as an operator would run it: `vrouter <tool>` inside
 * the node's namespace, against the daemon's introspect API on
 * 127.0.0.1:8085 there. Traffic comes from the pods' own stacks (ping, UDP
 * sockets). A last block checks the server's control-session rendering and
 * rate arithmetic in-process, with a stand-in dataplane (no control client
 * reports sessions yet).
 *
 * Needs root and iproute2, iputils-ping, tshark.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { Topology, requireCommands } from './support/netns';
import { ProcessOutput, VrouterCluster } from './support/vrouter-cluster';
import { IntrospectServer, RateTracker, captureToEthernet } from '../src/daemon/introspect-server';
import { SharedRing } from '../src/dataplane/io/shared-ring';
import { DROP_REASONS } from '../src/dataplane/drop-reasons';
import { parseFlowMatch, parseTraceSpec } from '../src/cli/tools';

if (process.getuid?.() !== 0) throw new Error('the introspect tests need root (network namespaces, TAP devices): run them as root, as .ci/run does');
requireCommands({ ip: 'iproute2', ping: 'iputils-ping', tshark: 'tshark', sysctl: 'procps' });

const VROUTER_BIN = path.resolve(__dirname, '..', '..', 'bin', 'vrouter.js');
const VNS = [
  { name: 'vn1', subnet: '10.1.1.0/24', gateway: '10.1.1.1' },
  { name: 'vn2', subnet: '10.2.2.0/24', gateway: '10.2.2.1' },
];
const A1 = { name: 'a1', vn: 'vn1', ip: '10.1.1.3', label: 20 };
const A2 = { name: 'a2', vn: 'vn1', ip: '10.1.1.4', label: 21 };
const B1 = { name: 'b1', vn: 'vn1', ip: '10.1.1.5', label: 30 };
const C1 = { name: 'c1', vn: 'vn2', ip: '10.2.2.3', label: 31 };
/** Nothing routes there: packets to it are dropped as no-route. */
const NOWHERE = '10.1.1.200';

/** Sends `count` UDP datagrams from a fixed source port, 20 ms apart: node <script> <sport> <dst> <dport> <count>. */
const UDP_SENDER = `
const dgram = require('node:dgram');
const [sport, dst, dport, count] = process.argv.slice(1);
const socket = dgram.createSocket('udp4');
let left = Number(count);
socket.bind(Number(sport), () => {
  const next = () => {
    if (left-- <= 0) return socket.close();
    socket.send('introspect', Number(dport), dst, () => setTimeout(next, 20));
  };
  next();
});`;

/** GET/POST from inside a namespace: prints {status, type, body}. node <script> <url> [method] [body] [content-type] [host] */
const HTTP_CLIENT = `
const [url, method = 'GET', body, type, host] = process.argv.slice(1);
const http = require('node:http');
const headers = {};
if (type) headers['content-type'] = type;
if (host) headers.host = host;
const request = http.request(url, { method, headers }, (response) => {
  const chunks = [];
  response.on('data', (chunk) => chunks.push(chunk));
  response.on('end', () => process.stdout.write(JSON.stringify({ status: response.statusCode, type: response.headers['content-type'], body: Buffer.concat(chunks).toString('utf8') })));
});
request.on('error', (error) => process.stdout.write(JSON.stringify({ error: error.code || error.message })));
request.end(body || undefined);`;

interface HttpAnswer {
  status?: number;
  type?: string;
  body: string;
  error?: string;
}

describe('introspect API and utilities on running daemons', { timeout: 300_000 }, () => {
  let topology: Topology;
  let cluster: VrouterCluster;
  let scratch: string;

  const vrouter = (node: number, args: string[]) => cluster.execNode(node, [process.execPath, VROUTER_BIN, ...args]);
  const vrouterJson = async <T>(node: number, args: string[]): Promise<T> => JSON.parse(await vrouter(node, [...args, '--json'])) as T;
  /** Runs a utility that should fail; resolves to its stderr. */
  const vrouterFails = async (node: number, args: string[]): Promise<string> => {
    const result = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
      execFile('ip', ['netns', 'exec', cluster.nodes[node].ns, process.execPath, VROUTER_BIN, ...args], { timeout: 30_000 }, (error, stdout, stderr) =>
        resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      ),
    );
    assert.notEqual(result.code, 0, `vrouter ${args.join(' ')} should fail but printed:\n${result.stdout}`);
    return result.stderr;
  };
  const http = async (node: number, urlPath: string, options: { method?: string; body?: unknown; type?: string; host?: string; address?: string } = {}): Promise<HttpAnswer> => {
    const url = `http://${options.address ?? '127.0.0.1:8085'}${urlPath}`;
    const args = [url, options.method ?? 'GET', options.body === undefined ? '' : JSON.stringify(options.body), options.type ?? '', options.host ?? ''];
    return JSON.parse(await cluster.execNode(node, [process.execPath, '-e', HTTP_CLIENT, ...args])) as HttpAnswer;
  };
  const getJson = async <T>(node: number, urlPath: string): Promise<T> => {
    const answer = await http(node, urlPath);
    assert.equal(answer.status, 200, `GET ${urlPath}: ${answer.status} ${answer.body}`);
    assert.match(answer.type ?? '', /^application\/json/);
    return JSON.parse(answer.body) as T;
  };
  const sendUdp = (pod: string, sport: number, dst: string, dport: number, count: number) =>
    cluster.exec(pod, [process.execPath, '-e', UDP_SENDER, String(sport), dst, String(dport), String(count)]);
  const ping = async (from: string, to: string, count: number, interval = '0.2') => {
    const result = await cluster.tryExec(from, ['ping', '-n', '-q', '-c', String(count), '-i', interval, '-W', '2', to]);
    assert.equal(result.code, 0, `ping ${from} -> ${to}: ${result.stdout}${result.stderr}`);
  };

  before(async () => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'vrouter-introspect-'));
    topology = new Topology();
    cluster = await VrouterCluster.start(topology, { nodes: 2, vns: VNS });
    await cluster.withLogs(async () => {
      await cluster.addPod(0, A1);
      await cluster.addPod(0, A2);
      await cluster.addPod(1, B1);
      await cluster.addPod(1, C1);
      await ping('a1', B1.ip, 2);
    });
  });

  after(async () => {
    try {
      await cluster?.stop();
    } finally {
      await topology?.destroy();
      if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
    }
  });

  test('vif --list / --get: vifs with their pods, counters, and rates while traffic flows', () =>
    cluster.withLogs(async () => {
      const text = await vrouter(0, ['vif', '--list']);
      assert.match(text, /^Vrouter Interface Table/);
      assert.match(text, /vif0\/0 +OS: underlay\n +Type:Physical HWaddr:[0-9a-f:]{17} IPaddr:198\.18\.0\.11/);
      assert.match(text, new RegExp(`vif0/1 +OS: vtap0 \\(pod a1, netns ${cluster.pod('a1').ns}\\)\\n +Type:Virtual HWaddr:02:00:0a:01:01:03 IPaddr:10\\.1\\.1\\.3\\n +Vrf:1 \\(vn1\\) Mtu:1468\\n +Port:af_(xdp|packet)`));
      assert.match(text, /vif0\/2 +OS: vtap1 \(pod a2/);
      assert.match(text, /RX packets:\d+ +bytes:\d+ errors:0\n +TX packets:\d+ +bytes:\d+ errors:0/);

      const before = await vrouterJson<{ rxPackets: number }>(0, ['vif', '--get', '1']);
      // 20 pps from a1 for 6 s; the rate is sampled while it runs, once the last sample is too old to average from.
      const pinger = new ProcessOutput(cluster.spawn('a1', ['ping', '-n', '-q', '-c', '120', '-i', '0.05', B1.ip]));
      await new Promise((resolve) => setTimeout(resolve, 3500));
      const during = await vrouterJson<{ id: number; name: string; pod: { name: string }; rxPackets: number; rates: { rxPps: number; txPps: number; rxBitsPerSecond: number } }>(0, ['vif', '--get', 'vtap0']);
      assert.equal(during.id, 1);
      assert.equal(during.pod.name, 'a1');
      assert.ok(during.rates.rxPps > 10 && during.rates.rxPps < 40, `a1 sends 20 pps, vif 1 rx rate ${during.rates.rxPps}`);
      assert.ok(during.rates.txPps > 10 && during.rates.txPps < 40, `a1 gets 20 replies/s, vif 1 tx rate ${during.rates.txPps}`);
      assert.ok(during.rates.rxBitsPerSecond > 10 * 98 * 8, `rx bit rate ${during.rates.rxBitsPerSecond}`);
      assert.match(await vrouter(0, ['vif', '--get', '1']), /RX pps:\d+ +bps:[\d.]+K? +TX pps:\d+/);
      await pinger.exited;
      const afterwards = await vrouterJson<{ rxPackets: number }>(0, ['vif', '--get', '1']);
      assert.ok(afterwards.rxPackets - before.rxPackets >= 120, `vif 1 rx went from ${before.rxPackets} to ${afterwards.rxPackets} over 120 echo requests`);
      assert.match(await vrouterFails(0, ['vif', '--get', '77']), /no vif 77/);
    }));

  test('rt --dump: the routes of a VRF with labels and nexthops; --prefix filters', () =>
    cluster.withLogs(async () => {
      const text = await vrouter(0, ['rt', '--dump', 'vn1']);
      assert.match(text, /vRouter inet4 routing table 0\/1\/unicast \(vn1\)/);
      assert.match(text, /^10\.1\.1\.3\/32 +P +- +\d+ +2:0:a:1:1:3\(1\)$/m);
      assert.match(text, /^10\.1\.1\.5\/32 +LP +30 +\d+ +-$/m);
      const all = await vrouterJson<{ vrfName: string; routes: Array<{ prefix: string; kind: string; label: number | null; dip: string | null; vif: number | null }> }>(0, ['rt', '--dump', '1']);
      assert.equal(all.vrfName, 'vn1');
      assert.deepEqual(all.routes.map((route) => route.prefix).sort(), ['10.1.1.3/32', '10.1.1.4/32', '10.1.1.5/32']);
      const remote = all.routes.find((route) => route.prefix === '10.1.1.5/32')!;
      assert.deepEqual([remote.kind, remote.label, remote.dip], ['tunnel', 30, '198.18.0.12']);
      assert.equal(all.routes.find((route) => route.prefix === '10.1.1.4/32')!.vif, 2);
      const one = await vrouterJson<{ routes: Array<{ prefix: string }> }>(0, ['rt', '--dump', 'vn1', '--prefix', '10.1.1.4/32']);
      assert.deepEqual(one.routes.map((route) => route.prefix), ['10.1.1.4/32']);
      const vn2 = await vrouterJson<{ routes: Array<{ prefix: string; label: number }> }>(1, ['rt', '--dump', 'vn2']);
      assert.deepEqual(vn2.routes.map((route) => route.prefix), ['10.2.2.3/32']);
      assert.match(await vrouterFails(0, ['rt', '--dump', 'vn9']), /no VRF vn9/);
    }));

  test('nh --list / --get: encap nexthops of the pods, the tunnel nexthop to node1', () =>
    cluster.withLogs(async () => {
      const nexthops = await vrouterJson<Array<{ id: number; kind: string; vif: number; dip: string | null; label: number }>>(0, ['nh', '--list']);
      const tunnel = nexthops.find((nexthop) => nexthop.kind === 'tunnel' && nexthop.label === 30)!;
      assert.ok(tunnel, `no tunnel nexthop with label 30: ${JSON.stringify(nexthops)}`);
      assert.equal(tunnel.dip, '198.18.0.12');
      const encap = nexthops.find((nexthop) => nexthop.kind === 'encap' && nexthop.vif === 1)!;
      const text = await vrouter(0, ['nh', '--list']);
      assert.match(text, new RegExp(`^Id:${encap.id} +Type:Encap +Fmly: AF_INET  Rid:0  Ref_cnt:\\d+ +Vrf:1\\n +Flags:Valid, Policy, \\n +EncapFmly:0806 Oif:1 Len:14\\n +Encap Data: 02 00 0a 01 01 03 00 00 5e 00 01 00 08 00`, 'm'));
      const one = await vrouter(0, ['nh', '--get', String(tunnel.id)]);
      assert.match(one, new RegExp(`^Id:${tunnel.id} +Type:Tunnel`));
      assert.match(one, /Flags:Valid, MPLSoUDP, /);
      assert.match(one, /Sip:198\.18\.0\.11 Dip:198\.18\.0\.12\n +Label:30/);
      assert.equal(one.match(/^Id:/gm)?.length, 1);
      assert.match(await vrouterFails(0, ['nh', '--get', '99999']), /no nexthop 99999/);
    }));

  test('mpls --dump: the label map points each local label at its pod', () =>
    cluster.withLogs(async () => {
      const labels = await vrouterJson<Array<{ label: number; nexthop: number }>>(0, ['mpls', '--dump']);
      const nexthops = await vrouterJson<Array<{ id: number; vif: number }>>(0, ['nh', '--list']);
      const vifOf = (label: number) => nexthops.find((nexthop) => nexthop.id === labels.find((entry) => entry.label === label)?.nexthop)?.vif;
      assert.deepEqual(labels.map((entry) => entry.label), [20, 21]);
      assert.equal(vifOf(20), cluster.pod('a1').vif);
      assert.equal(vifOf(21), cluster.pod('a2').vif);
      const text = await vrouter(0, ['mpls', '--dump']);
      assert.match(text, /^MPLS Input Label Map\n\n   Label    NextHop\n-------------------\n +20 +\d+\n +21 +\d+\n$/);
      assert.match(await vrouter(1, ['mpls', '--get', '31']), /^ +31 +\d+$/m);
    }));

  test('flow -l --match: the pair of a UDP flow, both entries, with stats; pagination', () =>
    cluster.withLogs(async () => {
      await sendUdp('a1', 40001, B1.ip, 5001, 5);
      const matched = await vrouterJson<{ total: number; flows: Array<{ index: number; reverseIndex: number; src: string; dst: string; srcPort: number; dstPort: number; protocol: string; action: string; packets: number; vrfName: string }> }>(
        0,
        ['flow', '-l', '--match', '10.1.1.3:40001 & proto udp'],
      );
      assert.equal(matched.total, 2, JSON.stringify(matched));
      const forward = matched.flows.find((flow) => flow.src === A1.ip)!;
      const reverse = matched.flows.find((flow) => flow.src === B1.ip)!;
      assert.deepEqual([forward.srcPort, forward.dst, forward.dstPort, forward.protocol, forward.action, forward.vrfName], [40001, B1.ip, 5001, 'udp', 'forward', 'vn1']);
      assert.equal(forward.packets, 5);
      assert.equal(reverse.reverseIndex, forward.index);
      assert.equal(forward.reverseIndex, reverse.index);
      const text = await vrouter(0, ['flow', '-l', '--match', '10.1.1.3:40001 & proto udp & vrf vn1']);
      assert.match(text, new RegExp(`^ +${forward.index}<=>${reverse.index} +10\\.1\\.1\\.3:40001 +17 \\(1\\)\\n +10\\.1\\.1\\.5:5001\\n\\(K\\(nh\\):\\d+, Action:F, Flags:N?, E:-, Stats:5/\\d+\\)`, 'm'));
      assert.match(text, /Entries: Active pairs \d+, Evicted 0, Matching 2/);
      const page = await vrouterJson<{ total: number; flows: unknown[] }>(0, ['flow', '-l', '--limit', '1']);
      assert.equal(page.flows.length, 1);
      assert.ok(page.total >= 4, `total ${page.total}`);
      const none = await vrouterJson<{ total: number }>(0, ['flow', '-l', '--match', '10.1.1.3 & proto tcp']);
      assert.equal(none.total, 0);
      assert.match(await vrouterFails(0, ['flow', '-l', '--match', 'nonsense here']), /expected <ip>\[:<port>\]/);
    }));

  test('dropstats: one counter per reason, counts real drops, --clear zeroes them', () =>
    cluster.withLogs(async () => {
      await vrouter(0, ['dropstats', '--clear']);
      await sendUdp('a1', 40002, NOWHERE, 53, 4);
      const drops = await vrouterJson<{ total: number; reasons: Record<string, number> }>(0, ['dropstats']);
      assert.equal(drops.reasons['no-route'], 4);
      assert.equal(drops.total, 4);
      const text = await vrouter(0, ['dropstats']);
      assert.match(text, /^No L3 Route +4$/m);
      assert.match(text, /^Invalid Label +0$/m);
      assert.match(text, /^Total +4$/m);
      assert.equal(text.match(/^[A-Za-z].* +\d+$/gm)?.length, DROP_REASONS.length + 1, 'one line per drop reason, and the total');
      assert.match(await vrouter(0, ['dropstats', '--clear']), /Drop statistics cleared/);
      assert.equal((await vrouterJson<{ total: number }>(0, ['dropstats'])).total, 0);
    }));

  test('vrfstats: per VN packets in and out, flows, drops', () =>
    cluster.withLogs(async () => {
      const before = await vrouterJson<Array<{ vn: string; packetsIn: number; packetsOut: number; flows: number; drops: number }>>(0, ['vrfstats']);
      await ping('a2', A1.ip, 5, '0.05');
      await sendUdp('a2', 40003, NOWHERE, 53, 3);
      const after = await vrouterJson<Array<{ vn: string; packetsIn: number; packetsOut: number; flows: number; drops: number }>>(0, ['vrfstats']);
      const vn1Before = before.find((vn) => vn.vn === 'vn1')!;
      const vn1 = after.find((vn) => vn.vn === 'vn1')!;
      // a2 -> a1 on one node: 5 requests and 5 replies enter from a pod and leave to one (ARP may add 2 each way), 3 datagrams enter and are dropped.
      const packetsIn = vn1.packetsIn - vn1Before.packetsIn;
      assert.ok(packetsIn >= 13 && packetsIn <= 15, `vn1 packets in +${packetsIn}`);
      assert.ok(vn1.packetsOut - vn1Before.packetsOut >= 10, `vn1 packets out +${vn1.packetsOut - vn1Before.packetsOut}`);
      assert.equal(vn1.drops - vn1Before.drops, 3);
      assert.ok(vn1.flows >= vn1Before.flows + 1);
      const vn2 = after.find((vn) => vn.vn === 'vn2')!;
      assert.deepEqual([vn2.packetsIn, vn2.packetsOut, vn2.flows], [0, 0, 0]);
      const text = await vrouter(0, ['vrfstats', '--get', 'vn1']);
      assert.match(text, new RegExp(`^Vrf: 1 \\(vn1\\)\\nPackets In \\d+, Bytes In \\d+, Packets Out \\d+, Bytes Out \\d+\\nFlows ${vn1.flows}, Discards \\d+\\nRate In`));
    }));

  test('trace: a synthetic packet through the live pipeline, each step, nothing sent or kept', () =>
    cluster.withLogs(async () => {
      const underlayBefore = await topology.readCounter(cluster.nodes[0].ns, 'underlay', 'tx_packets');
      const flowsBefore = (await vrouterJson<{ total: number }>(0, ['flow', '-l'])).total;
      const text = await vrouter(0, ['trace', '--vif', '1', `tcp ${A1.ip}:40000 > ${B1.ip}:80`]);
      assert.match(text, /^Flow: tcp,in_vif=1,nw_src=10\.1\.1\.3,nw_dst=10\.1\.1\.5,nw_ttl=64,tp_src=40000,tp_dst=80\n/);
      assert.match(text, /ipv4-lookup: vrf 1 \(vn1\) 10\.1\.1\.5 matched 10\.1\.1\.5\/32 -> nh \d+/);
      assert.match(text, /tunnel-encap: mpls-over-udp 198\.18\.0\.11 > 198\.18\.0\.12 label 30/);
      assert.match(text, /\(not sent: trace only\)/);
      assert.match(text, /Final decision: transmit: vif 0 \(underlay\)/);
      const dropped = await vrouterJson<{ final: string; steps: string[] }>(0, ['trace', '--vif', 'vtap0', `udp ${A1.ip}:40000 > ${C1.ip}:53`]);
      assert.equal(dropped.final, 'drop: no-route');
      const fromFabric = await vrouter(0, ['trace', '--vif', '0', '--node', '198.18.0.12', '--label', '21', `icmp ${B1.ip} > ${A2.ip}`]);
      assert.match(fromFabric, /mpls-input: label 21 .*-> nh \d+ vrf 1/);
      assert.match(fromFabric, /Final decision: transmit: vif 2 \(vtap1\)/);
      const spoofed = await vrouter(0, ['trace', '--vif', '1', `icmp ${A2.ip} > ${B1.ip}`]);
      assert.match(spoofed, /Final decision: drop: spoofed-source/);
      assert.equal((await vrouterJson<{ total: number }>(0, ['flow', '-l'])).total, flowsBefore, 'trace left a flow behind');
      assert.equal(await topology.readCounter(cluster.nodes[0].ns, 'underlay', 'tx_packets'), underlayBefore, 'trace sent a packet');
      assert.match(await vrouterFails(0, ['trace', '--vif', '1', 'sctp 1.2.3.4 > 5.6.7.8']), /expected '<tcp\|udp\|icmp>/);
      assert.match(await vrouterFails(0, ['trace', '--vif', '42', `icmp ${A1.ip} > ${B1.ip}`]), /no vif 42/);
    }));

  test('monitor --drops: dropped packets live, with reason, vif, pod and 5-tuple', () =>
    cluster.withLogs(async () => {
      const monitor = new ProcessOutput(cluster.spawnNode(0, [process.execPath, VROUTER_BIN, 'monitor', '--drops', '--json', '-c', '3']));
      await monitor.waitFor(/Press Ctrl-C to quit/, 15_000, 'the monitor listening');
      await sendUdp('a1', 40004, NOWHERE, 53, 3);
      const exit = await Promise.race([monitor.exited, new Promise<null>((resolve) => setTimeout(() => resolve(null), 10_000))]);
      assert.notEqual(exit, null, `monitor did not stop after 3 events:\n${monitor.stdout}\n${monitor.stderr}`);
      assert.equal(exit!.code, 0, monitor.stderr);
      const events = monitor.stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
      assert.equal(events.length, 3);
      for (const event of events) {
        assert.deepEqual(
          { reason: event.reason, vif: event.vif, vifName: event.vifName, pod: event.pod, vn: event.vn, protocol: event.protocol, src: event.src, dst: event.dst, srcPort: event.srcPort, dstPort: event.dstPort },
          { reason: 'no-route', vif: 1, vifName: 'vtap0', pod: 'a1', vn: 'vn1', protocol: 'udp', src: A1.ip, dst: NOWHERE, srcPort: 40004, dstPort: 53 },
        );
      }
      // The text form, as cilium monitor prints it.
      const text = new ProcessOutput(cluster.spawnNode(0, [process.execPath, VROUTER_BIN, 'monitor', '--drops', '-c', '1']));
      await text.waitFor(/Press Ctrl-C to quit/, 15_000, 'the monitor listening');
      await sendUdp('a2', 40005, NOWHERE, 5353, 1);
      await text.exited;
      assert.match(text.stdout, /^xx drop \(no-route\) vif 2 \(vtap1\) pod a2, vrf 1 \(vn1\): 10\.1\.1\.4:40005 -> 10\.1\.1\.200:5353 udp$/m);
      // Nobody watches any more: the daemon logged the monitor's start and stop.
      const log = fs.readFileSync(cluster.nodes[0].logFile, 'utf8');
      assert.equal(log.match(/"drop monitor started"/g)?.length, log.match(/"drop monitor stopped"/g)?.length);
    }));

  test('vifdump: a pod vif before encapsulation, the fabric encapsulated, as pcap tshark reads', () =>
    cluster.withLogs(async () => {
      const podFile = path.join(scratch, 'a1.pcap');
      const dump = new ProcessOutput(cluster.spawnNode(0, [process.execPath, VROUTER_BIN, 'vifdump', '1', '-w', podFile]));
      await dump.waitFor(/vifdump: listening on vif 1 \(vtap0, virtual\)/, 15_000, 'vifdump listening');
      await ping('a1', B1.ip, 3);
      process.kill(dump.child.pid!, 'SIGINT');
      await dump.exited;
      assert.match(dump.stderr, /vifdump: \d+ packets captured/);
      const rows = (await cluster.execNode(0, ['tshark', '-r', podFile, '-T', 'fields', '-e', 'ip.src', '-e', 'ip.dst', '-e', 'icmp.type', '-e', 'mpls.label', '-Y', 'icmp']))
        .trim()
        .split('\n')
        .map((line) => line.split('\t'));
      assert.deepEqual(
        rows.map((row) => row.join(' ').trim()),
        ['10.1.1.3 10.1.1.5 8', '10.1.1.5 10.1.1.3 0', '10.1.1.3 10.1.1.5 8', '10.1.1.5 10.1.1.3 0', '10.1.1.3 10.1.1.5 8', '10.1.1.5 10.1.1.3 0'],
        'three echo requests from a1 and three replies, unencapsulated',
      );

      const fabricFile = path.join(scratch, 'fabric.pcap');
      const fabric = new ProcessOutput(cluster.spawnNode(0, [process.execPath, VROUTER_BIN, 'vifdump', 'underlay', '-w', fabricFile, '-c', '4']));
      await fabric.waitFor(/vifdump: listening on vif 0 \(underlay, fabric\)/, 15_000, 'vifdump listening');
      await ping('a1', B1.ip, 2);
      await fabric.exited;
      const tunnel = (await cluster.execNode(0, ['tshark', '-r', fabricFile, '-T', 'fields', '-e', 'udp.dstport', '-e', 'mpls.label', '-e', 'mpls.bottom', '-e', 'ip.dst']))
        .trim()
        .split('\n')
        .map((line) => line.split('\t'));
      assert.equal(tunnel.length, 4);
      assert.deepEqual(tunnel[0], ['6635', '30', '1', '198.18.0.12,10.1.1.5'], 'out: MPLS over UDP to node1, label of b1');
      assert.deepEqual(tunnel[1], ['6635', '20', '1', '198.18.0.11,10.1.1.3'], 'in: MPLS over UDP to node0, label of a1');

      // The text form.
      const text = new ProcessOutput(cluster.spawnNode(0, [process.execPath, VROUTER_BIN, 'vifdump', 'vtap1', '-c', '2']));
      await text.waitFor(/listening on vif 2/, 15_000, 'vifdump listening');
      await ping('a2', A1.ip, 1);
      await text.exited;
      assert.match(text.stdout, /^\d\d:\d\d:\d\d\.\d{6} In  02:00:0a:01:01:04 > 00:00:5e:00:01:00, IPv4 10\.1\.1\.4 > 10\.1\.1\.3: ICMP echo request, id \d+, seq 1, length 64$/m);
      assert.match(text.stdout, /^\d\d:\d\d:\d\d\.\d{6} Out 00:00:5e:00:01:00 > 02:00:0a:01:01:04, IPv4 10\.1\.1\.3 > 10\.1\.1\.4: ICMP echo reply, id \d+, seq 1, length 64$/m);
    }));

  test('the JSON API: every endpoint, its filters and its errors', () =>
    cluster.withLogs(async () => {
      const index = await getJson<{ endpoints: string[] }>(0, '/api');
      assert.ok(index.endpoints.includes('GET /metrics'));
      const summary = await getJson<{ node: string; underlayIp: string; ports: number; vrfs: number; flows: number; controlSessions: number; mainHeapUsedBytes: number; dataplaneHeapUsedBytes: number; dataplaneLongestTurnMs: number }>(0, '/api/summary');
      assert.deepEqual([summary.node, summary.underlayIp, summary.ports, summary.vrfs, summary.controlSessions], ['node0', '198.18.0.11', 2, 2, 0]);
      // Two isolates, two heaps: each between 1 MB and 1 GB.
      for (const heap of [summary.mainHeapUsedBytes, summary.dataplaneHeapUsedBytes]) assert.ok(heap > 1 << 20 && heap < 1 << 30, `heap ${heap}`);
      // The worker has served requests (the ports' adds) by now: a turn was measured.
      assert.ok(summary.dataplaneLongestTurnMs > 0 && summary.dataplaneLongestTurnMs < 60_000, `longest turn ${summary.dataplaneLongestTurnMs} ms`);
      const vifs = await getJson<Array<{ id: number; name: string; pod: { name: string } | null; rates: unknown }>>(0, '/api/vifs');
      assert.deepEqual(vifs.map((vif) => [vif.id, vif.name, vif.pod?.name ?? null]), [[0, 'underlay', null], [1, 'vtap0', 'a1'], [2, 'vtap1', 'a2']]);
      assert.ok(vifs.every((vif) => vif.rates !== null), 'rates from the first answer on');
      assert.equal((await getJson<{ id: number }>(0, '/api/vifs/vtap1')).id, 2);
      const ports = await getJson<Array<{ id: string; vif: number; netns: string }>>(0, '/api/ports');
      assert.deepEqual(ports.map((port) => [port.id, port.vif, port.netns]), [['a1', 1, cluster.pod('a1').ns], ['a2', 2, cluster.pod('a2').ns]]);
      const vrfs = await getJson<Array<{ id: number; name: string; subnets: string[]; gateway: string }>>(0, '/api/vrfs');
      assert.deepEqual(vrfs.map((vrf) => [vrf.id, vrf.name, vrf.subnets, vrf.gateway]), [[1, 'vn1', ['10.1.1.0/24'], '10.1.1.1'], [2, 'vn2', ['10.2.2.0/24'], '10.2.2.1']]);
      const covering = await getJson<{ routes: Array<{ prefix: string }> }>(0, '/api/routes?vrf=vn1&prefix=10.1.1.0/24');
      assert.equal(covering.routes.length, 3);
      const nexthops = await getJson<Array<{ id: number; kind: string }>>(0, '/api/nexthops');
      assert.equal((await getJson<{ id: number }>(0, `/api/nexthops/${nexthops[0].id}`)).id, nexthops[0].id);
      assert.equal((await getJson<unknown[]>(0, '/api/mpls')).length, 2);
      const flows = await getJson<{ total: number; offset: number; limit: number; flows: Array<{ protocol: string; srcPort: number }> }>(0, '/api/flows?vrf=vn1&ip=10.1.1.3&port=40001&protocol=udp&offset=1&limit=5');
      assert.deepEqual([flows.total, flows.offset, flows.limit, flows.flows.length], [2, 1, 5, 1]);
      assert.equal(flows.flows[0].protocol, 'udp');
      const drops = await getJson<{ total: number; reasons: Record<string, number> }>(0, '/api/drops');
      assert.equal(Object.keys(drops.reasons).length, DROP_REASONS.length);
      const traffic = await getJson<Array<{ vn: string; packetsIn: number; rates: { inPps: number } | null }>>(0, '/api/vn-traffic');
      assert.deepEqual(traffic.map((vn) => vn.vn), ['vn1', 'vn2']);
      assert.deepEqual(await getJson(0, '/api/control-sessions'), []);
      const trace = await http(0, '/api/trace', { method: 'POST', type: 'application/json', body: { vif: 1, protocol: 'icmp', src: A1.ip, dst: A2.ip } });
      assert.equal(trace.status, 200, trace.body);
      assert.ok((JSON.parse(trace.body) as { steps: string[] }).steps.some((line) => /transmit: vif 2/.test(line)));

      const page = await http(0, '/');
      assert.equal(page.status, 200);
      assert.match(page.type ?? '', /^text\/html/);
      assert.match(page.body, /<script src="\/app\.js"/);
      assert.equal((await http(0, '/app.js')).status, 200);

      const errors: Array<[string, Parameters<typeof http>[2], number, RegExp]> = [
        ['/api/routes?vrf=nope', {}, 404, /no VRF nope/],
        ['/api/routes', {}, 400, /vrf is required/],
        ['/api/flows?ip=10.1.1', {}, 400, /ip 10\.1\.1: expected an IPv4 address/],
        ['/api/flows?protocol=sctp', {}, 400, /protocol sctp/],
        ['/api/flows?limit=100000', {}, 400, /limit 100000/],
        ['/api/vifs/9', {}, 404, /no vif 9/],
        ['/api/nope', {}, 404, /no \/api\/nope/],
        ['/api/capture/99', {}, 404, /no vif 99/],
        ['/api/trace', { method: 'POST', body: { vif: 1 } }, 415, /content-type: application\/json/],
        ['/api/trace', { method: 'POST', type: 'application/json', body: { vif: 1, protocol: 'sctp', src: 'x' } }, 400, /field \/protocol "sctp".*field \/src "x"/],
        ['/api/drops/clear', { method: 'POST', type: 'text/plain', body: {} }, 415, /content-type/],
        ['/api/summary', { host: 'attacker.example:8085' }, 421, /Host attacker\.example:8085 is not this server/],
        ['/api/summary', { method: 'DELETE' }, 405, /DELETE is not served/],
      ];
      for (const [urlPath, options, status, message] of errors) {
        const answer = await http(0, urlPath, options);
        assert.equal(answer.status, status, `${options?.method ?? 'GET'} ${urlPath}: ${answer.status} ${answer.body}`);
        assert.match((JSON.parse(answer.body) as { error: string }).error, message);
      }
    }));

  test('the API listens on the loopback only by default', () =>
    cluster.withLogs(async () => {
      const outside = await http(0, '/api/summary', { address: '198.18.0.11:8085' });
      assert.equal(outside.error, 'ECONNREFUSED');
      const fromNode1 = await http(1, '/api/summary', { address: '198.18.0.11:8085' });
      assert.equal(fromNode1.error, 'ECONNREFUSED');
      const log = fs.readFileSync(cluster.nodes[0].logFile, 'utf8');
      assert.match(log, /"component":"introspect","address":"127\.0\.0\.1:8085","msg":"introspect API listening"/);
    }));

  test('/metrics: Prometheus text whose values follow real traffic', () =>
    cluster.withLogs(async () => {
      const scrape = async () => {
        const answer = await http(0, '/metrics');
        assert.equal(answer.status, 200);
        assert.match(answer.type ?? '', /^text\/plain; version=0\.0\.4/);
        return parseMetrics(answer.body);
      };
      const before = await scrape();
      await ping('a2', A1.ip, 10, '0.05');
      await sendUdp('a1', 40006, NOWHERE, 9, 7);
      const after = await scrape();
      const delta = (name: string, labels: Record<string, string> = {}) => value(after, name, labels) - value(before, name, labels);
      // 10 echo requests from a2 (ARP may add one), 10 replies into it.
      const a2Rx = delta('vrouter_vif_receive_packets_total', { pod: 'a2' });
      assert.ok(a2Rx >= 10 && a2Rx <= 11, `a2 rx +${a2Rx}`);
      assert.ok(delta('vrouter_vif_transmit_packets_total', { pod: 'a2' }) >= 10);
      assert.equal(delta('vrouter_vif_receive_bytes_total', { pod: 'a2', vif: '2' }) >= 10 * 98, true);
      const a1Rx = delta('vrouter_vif_receive_packets_total', { pod: 'a1' });
      assert.ok(a1Rx >= 17 && a1Rx <= 18, `a1 rx +${a1Rx} (10 replies, 7 datagrams, maybe an ARP)`);
      assert.equal(delta('vrouter_dropped_packets_total', { reason: 'no-route' }), 7);
      assert.equal(delta('vrouter_vn_dropped_packets_total', { vn: 'vn1' }), 7);
      const vnIn = delta('vrouter_vn_receive_packets_total', { vn: 'vn1' });
      assert.ok(vnIn >= 27 && vnIn <= 29, `vn1 in +${vnIn}`);
      assert.equal(value(after, 'vrouter_vn_receive_packets_total', { vn: 'vn2' }), 0);
      assert.equal(value(after, 'vrouter_ports'), 2);
      assert.equal(value(after, 'vrouter_control_sessions'), 0);
      assert.equal(value(after, 'vrouter_vrf_routes', { vn: 'vn1' }), 3);
      assert.ok(value(after, 'vrouter_heap_used_bytes', { thread: 'dataplane' }) > 1 << 20);
      assert.ok(value(after, 'vrouter_dataplane_longest_turn_seconds') > 0);
      // The gauge of flows agrees with the flow table.
      const flows = await vrouterJson<{ total: number }>(0, ['flow', '-l']);
      const flowsNow = value(await scrape(), 'vrouter_flows');
      assert.equal(flowsNow * 2, flows.total);
      // The same counters as the JSON API.
      const vif = await vrouterJson<{ rxPackets: number }>(0, ['vif', '--get', '2']);
      assert.equal(value(await scrape(), 'vrouter_vif_receive_packets_total', { vif: '2' }), vif.rxPackets);
      // Naming: snake_case with the vrouter_ prefix, counters end in _total, every family has HELP and TYPE.
      for (const family of after.families.values()) {
        assert.match(family.name, /^vrouter_[a-z0-9_]+$/);
        assert.ok(family.help, `${family.name} has no HELP`);
        if (family.type === 'counter') assert.match(family.name, /_total$/);
        else assert.doesNotMatch(family.name, /_total$/);
      }
      assert.equal(after.families.get('vrouter_dropped_packets_total')?.samples.length, DROP_REASONS.length);
    }));

  test('logs: one structured line per port added or deleted, none per packet', () =>
    cluster.withLogs(async () => {
      await cluster.addPod(0, { name: 'tmp', vn: 'vn1', ip: '10.1.1.9' });
      await cluster.deletePod('tmp');
      await ping('a1', A2.ip, 20, '0.02');
      const lines = fs
        .readFileSync(cluster.nodes[0].logFile, 'utf8')
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as { level: string; time: string; component: string; msg: string; id?: string });
      for (const line of lines) {
        assert.ok(['debug', 'info', 'warn', 'error'].includes(line.level), `a level name: ${JSON.stringify(line)}`);
        assert.equal(typeof line.component, 'string', JSON.stringify(line));
        assert.equal(typeof line.msg, 'string');
      }
      assert.equal(lines.filter((line) => line.msg === 'port added' && line.id === 'tmp').length, 1);
      assert.equal(lines.filter((line) => line.msg === 'port deleted' && line.id === 'tmp').length, 1);
      assert.equal(lines.filter((line) => line.msg === 'port added').length, 3);
      assert.equal(lines.filter((line) => line.msg === 'introspect API listening').length, 1);
      assert.ok(lines.length < 40, `${lines.length} log lines after some hundred packets:\n${lines.map((line) => JSON.stringify(line)).join('\n')}`);
    }));
});

interface MetricFamily {
  name: string;
  type: string;
  help: string;
  samples: Array<{ labels: Record<string, string>; value: number }>;
}

/** A strict reader of the Prometheus text format: fails on a line it does not understand. */
function parseMetrics(text: string): { families: Map<string, MetricFamily> } {
  const families = new Map<string, MetricFamily>();
  const family = (name: string) => {
    let found = families.get(name);
    if (!found) families.set(name, (found = { name, type: '', help: '', samples: [] }));
    return found;
  };
  assert.ok(text.endsWith('\n'), 'the exposition ends with a newline');
  for (const line of text.trimEnd().split('\n')) {
    let match: RegExpExecArray | null;
    if ((match = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line))) family(match[1]).help = match[2];
    else if ((match = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line))) family(match[1]).type = match[2];
    else if ((match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (-?[0-9.e+]+|NaN|[+-]Inf)$/.exec(line))) {
      const labels: Record<string, string> = {};
      for (const pair of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]] = pair[2];
      const owner = families.get(match[1]);
      assert.ok(owner && owner.type, `sample ${match[1]} before its TYPE line`);
      owner.samples.push({ labels, value: Number(match[3]) });
    } else assert.fail(`not Prometheus text format: ${JSON.stringify(line)}`);
  }
  for (const each of families.values()) {
    const keys = each.samples.map((sample) => JSON.stringify(sample.labels));
    assert.equal(new Set(keys).size, keys.length, `${each.name} repeats a series`);
  }
  return { families };
}

/** The one sample of a family whose labels include these (fails unless exactly one matches). */
function value(metrics: { families: Map<string, MetricFamily> }, name: string, labels: Record<string, string> = {}): number {
  const family = metrics.families.get(name);
  assert.ok(family, `no metric ${name}`);
  const matching = family.samples.filter((sample) => Object.entries(labels).every(([key, wanted]) => sample.labels[key] === wanted));
  assert.equal(matching.length, 1, `${name}${JSON.stringify(labels)}: ${matching.length} series`);
  return matching[0].value;
}

describe('introspect server, in-process (control sessions, rates, capture framing)', () => {
  const canned: Record<string, unknown> = {
    summary: { node: 'n', underlayIp: '198.18.0.11', received: 1, transmitted: 1, generated: 0, held: 0, dropped: 0, flows: 0, flowCapacity: 1024, flowEvictions: 0 },
    vifs: [],
    vrfs: [],
    'vn-traffic': [],
    drops: {},
  };
  const dataplane = {
    dropRing: new SharedRing(16, 32),
    captureRing: new SharedRing(16, 2048),
    request: <T>(request: { op: string; query?: { what: string } }): Promise<T> => Promise.resolve(canned[request.query?.what ?? ''] as T),
  };
  let server: IntrospectServer;
  let base: string;
  let sessions: unknown[] = [];

  before(async () => {
    server = new IntrospectServer({ host: '127.0.0.1', port: 0, dataplane, log: pino({ level: 'silent' }), controlSessions: () => sessions });
    const address = await server.listen();
    base = `http://127.0.0.1:${address.port}`;
  });
  after(() => server?.close());

  test('control sessions from the provider: the API, the summary and /metrics', async () => {
    assert.deepEqual(await (await fetch(`${base}/api/control-sessions`)).json(), []);
    sessions = [
      { peer: '198.18.0.1', state: 'Established', routesReceived: 12, routesSent: 3, lastError: null },
      { peer: '198.18.0.2', state: 'Connect', routesReceived: 0, routesSent: 0, lastError: 'connection refused' },
    ];
    assert.deepEqual(await (await fetch(`${base}/api/control-sessions`)).json(), sessions);
    const summary = (await (await fetch(`${base}/api/summary`)).json()) as { controlSessions: number; controlSessionsUp: number };
    assert.deepEqual([summary.controlSessions, summary.controlSessionsUp], [2, 1]);
    const metrics = parseMetrics(await (await fetch(`${base}/metrics`)).text());
    assert.equal(value(metrics, 'vrouter_control_sessions'), 2);
    assert.equal(value(metrics, 'vrouter_control_session_up', { peer: '198.18.0.1', state: 'Established' }), 1);
    assert.equal(value(metrics, 'vrouter_control_session_up', { peer: '198.18.0.2' }), 0);
    assert.equal(value(metrics, 'vrouter_control_session_received_routes_total', { peer: '198.18.0.1' }), 12);
    assert.equal(value(metrics, 'vrouter_control_session_sent_routes_total', { peer: '198.18.0.1' }), 3);
  });

  test('rates: per second from two samples, none before the second, 0 when a counter went back', () => {
    const tracker = new RateTracker();
    assert.equal(tracker.needsWarmup(1000), true);
    assert.equal(tracker.update(1000, new Map([['a', [10, 1000]]])), null);
    assert.equal(tracker.needsWarmup(1100), false);
    assert.deepEqual(tracker.update(1500, new Map([['a', [20, 3000]]]))?.get('a'), [20, 4000]);
    assert.deepEqual(tracker.update(1600, new Map([['a', [25, 3000]]]))?.get('a'), [20, 4000], 'too soon: the last rates');
    assert.deepEqual(tracker.update(2500, new Map([['a', [5, 3500]]]))?.get('a'), [0, 500]);
    assert.equal(tracker.needsWarmup(2500 + 2_000), false);
    assert.equal(tracker.needsWarmup(2500 + 3_500), true, 'a sample more than 3 s old is not a base for a rate');
  });

  test('fabric frames received through the UDP socket get their outer headers back', () => {
    const target = { vif: 0, name: 'underlay', kind: 'fabric', mac: '02:00:00:00:00:0b', ip: '198.18.0.11' };
    const labelled = Buffer.from([0x00, 0x01, 0x41, 0x40, 0x45, 0, 0, 20]);
    const frame = captureToEthernet(target, 'rx', labelled, 0xc612000c);
    assert.equal(frame.length, 14 + 20 + 8 + labelled.length);
    assert.deepEqual([...frame.subarray(26, 30)], [198, 18, 0, 12], 'the sending node');
    assert.equal(frame.readUInt16BE(12), 0x0800);
    assert.deepEqual([...frame.subarray(30, 34)], [198, 18, 0, 11]);
    assert.equal(frame.readUInt16BE(36), 6635);
    assert.deepEqual(frame.subarray(42), labelled);
    const pod = captureToEthernet({ ...target, kind: 'virtual' }, 'rx', labelled);
    assert.deepEqual(pod, labelled);
  });

  test('the utilities parse their arguments as the OpenContrail tools do', () => {
    assert.deepEqual(parseFlowMatch('10.1.1.3:80 & vrf 1 & proto tcp'), { ip: '10.1.1.3', port: '80', vrf: '1', protocol: 'tcp' });
    assert.deepEqual(parseTraceSpec('udp 10.1.1.3:4000 > 10.1.1.5:53'), { protocol: 'udp', src: '10.1.1.3', dst: '10.1.1.5', srcPort: 4000, dstPort: 53 });
    assert.deepEqual(parseTraceSpec('icmp 10.1.1.3 > 10.1.1.5'), { protocol: 'icmp', src: '10.1.1.3', dst: '10.1.1.5' });
    assert.throws(() => parseTraceSpec('tcp 10.1.1.3:99999 > 10.1.1.5:1'), /port 99999/);
  });
});
