/**
 * End to end, the underlay's GSO/GRO path (src/dataplane/io/fabric-port.ts):
 * two `vrouter run` daemons in namespaces, MPLS over UDP, pods on veths.
 *
 *   node0: a 10.1.1.3 (label 20)   node1: b 10.1.1.5 (label 30)   vn1 10.1.1.0/24
 *
 * Bursts from a pod leave node0 in UDP_SEGMENT runs and reach node1's
 * daemon as UDP_GRO buffers (the daemons' counters say so); a lone packet
 * takes the raw path. tshark on node0's underlay, with the device's
 * offloads off so that the kernel segments and checksums before the capture
 * point, decodes both: the same outer header (addresses, TTL, DSCP, DF,
 * entropy port per flow, label) and inner packet, where only the IPv4 id
 * and the UDP checksum (0 on the raw path, correct on the GSO path) differ.
 * A device at gso_max_segs 1 (no segmentation offload) gets the same.
 * Not timed. Needs root, iproute2, iputils-ping, python3, tshark.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Topology, requireCommands } from './support/netns';
import { ProcessOutput, VrouterCluster } from './support/vrouter-cluster';
import { nativeIoPath } from '../src/dataplane/io/native';

if (process.getuid?.() !== 0) throw new Error('the e2e tests need root (network namespaces, veths, raw sockets): run them as root, as .ci/run does');
requireCommands({ ip: 'iproute2', ping: 'iputils-ping', tshark: 'tshark', python3: 'python3' });

const VN = { name: 'vn1', subnet: '10.1.1.0/24', gateway: '10.1.1.1' };
const A = { name: 'a', vn: 'vn1', ip: '10.1.1.3', label: 20 };
const B = { name: 'b', vn: 'vn1', ip: '10.1.1.5', label: 30 };
const TEN_MB = 10 * 1024 * 1024;
const SINK_PORT = 5001;

/** What the daemons report about the underlay (GET /stats .underlay). */
interface UnderlayStats {
  gso: boolean;
  gro: boolean;
  gsoFrames: number;
  rawFrames: number;
  gsoSends: number;
  gsoSegments: number;
  groBuffers: number;
  groSegments: number;
  portsRefused: number;
}

async function underlay(cluster: VrouterCluster, node: number): Promise<UnderlayStats> {
  return ((await cluster.stats(node)) as unknown as { underlay: UnderlayStats }).underlay;
}

/**
 * A UDP sink in pod b: JSON of every datagram it got ({ port, seq, size,
 * intact }) once `expected` arrived or 3 s passed without one.
 */
const SINK = `
import json, socket, sys
expected = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind(('0.0.0.0', ${SINK_PORT}))
s.settimeout(3)
print('bound', flush=True)
got = []
try:
    while len(got) < expected:
        data, (host, port) = s.recvfrom(65535)
        seq = int.from_bytes(data[:4], 'big')
        intact = data[4:] == bytes([(seq * 7 + port) & 255]) * (len(data) - 4)
        got.append({'port': port, 'seq': seq, 'size': len(data), 'intact': intact})
except socket.timeout:
    pass
print(json.dumps(got), flush=True)
`;

/**
 * The sender in pod a: for each source port, first one lone datagram (seq
 * 0, 200 bytes), then after a pause the bursts, the flows interleaved,
 * datagram k of a flow `sizes[k % len]` bytes long.
 */
const SENDER = `
import socket, sys, time
target, ports, sizes, burst = sys.argv[1], [int(p) for p in sys.argv[2].split(',')], [int(n) for n in sys.argv[3].split(',')], int(sys.argv[4])
socks = {}
for port in ports:
    socks[port] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    socks[port].bind(('0.0.0.0', port))
def send(port, seq, size):
    socks[port].sendto(seq.to_bytes(4, 'big') + bytes([(seq * 7 + port) & 255]) * (size - 4), (target, ${SINK_PORT}))
for port in ports:
    send(port, 0, 200)
    time.sleep(0.3)
for k in range(burst):
    for port in ports:
        send(port, k + 1, sizes[k % len(sizes)])
print('sent', flush=True)
`;

interface Datagram {
  port: number;
  seq: number;
  size: number;
  intact: boolean;
}

/** Runs SENDER in pod a against a SINK in pod b; returns what the sink got. */
async function exchange(cluster: VrouterCluster, ports: number[], sizes: number[], burst: number): Promise<Datagram[]> {
  const expected = ports.length * (burst + 1);
  const sink = new ProcessOutput(cluster.spawn('b', ['python3', '-c', SINK, String(expected)]));
  await sink.waitFor(/bound/, 10_000, 'the UDP sink bound');
  await cluster.exec('a', ['python3', '-c', SENDER, B.ip, ports.join(','), sizes.join(','), String(burst)], { timeoutMs: 30_000 });
  await sink.exited;
  const line = sink.stdout.trim().split('\n').pop() ?? '';
  return JSON.parse(line) as Datagram[];
}

/** Every datagram of every flow arrived once and intact, and each flow's in order. */
function assertAllArrived(got: Datagram[], ports: number[], sizes: number[], burst: number): void {
  for (const port of ports) {
    const flow = got.filter((datagram) => datagram.port === port);
    const seqs = flow.map((datagram) => datagram.seq);
    assert.deepEqual(seqs, Array.from({ length: burst + 1 }, (_, k) => k), `flow from port ${port}: got seqs ${seqs.join(' ')}`);
    for (const datagram of flow) {
      assert.ok(datagram.intact, `flow ${port} seq ${datagram.seq}: payload changed`);
      assert.equal(datagram.size, datagram.seq === 0 ? 200 : sizes[(datagram.seq - 1) % sizes.length], `flow ${port} seq ${datagram.seq}: size`);
    }
  }
  assert.equal(got.length, ports.length * (burst + 1));
}

describe('vrouter daemons, MPLS over UDP with UDP GSO/GRO', { timeout: 240_000 }, () => {
  let topology: Topology;
  let cluster: VrouterCluster;

  before(async () => {
    topology = new Topology();
    cluster = await VrouterCluster.start(topology, { nodes: 2, vns: [VN], underlayMtu: 1500 });
    await cluster.withLogs(async () => {
      await cluster.addPod(0, A);
      await cluster.addPod(1, B);
    });
  });

  after(async () => {
    try {
      await cluster?.stop();
    } finally {
      await topology?.destroy();
    }
  });

  test('pods on two nodes ping each other', () =>
    cluster.withLogs(async () => {
      for (const [from, to] of [['a', B.ip], ['b', A.ip]]) {
        const result = await cluster.tryExec(from, ['ping', '-n', '-c', '3', '-i', '0.2', '-W', '2', to]);
        assert.match(result.stdout, /3 packets transmitted, 3 received/, `ping ${from} -> ${to}:\n${result.stdout}${result.stderr}`);
      }
      const stats = await underlay(cluster, 0);
      assert.equal(stats.gso, true);
      assert.equal(stats.gro, true);
    }));

  test('10 MB of TCP arrive intact, sent in GSO runs and received as GRO buffers', () =>
    cluster.withLogs(async () => {
      const [sender, receiver] = [await underlay(cluster, 0), await underlay(cluster, 1)];
      const server = new ProcessOutput(
        cluster.spawn('b', [
          process.execPath,
          '-e',
          `const net = require('net'), crypto = require('crypto');
           const server = net.createServer({ allowHalfOpen: true }, (socket) => {
             const hash = crypto.createHash('sha256'); let bytes = 0;
             socket.on('data', (chunk) => { hash.update(chunk); bytes += chunk.length; });
             socket.on('end', () => { const line = JSON.stringify({ sha256: hash.digest('hex'), bytes }); console.log(line); socket.end(line); server.close(); });
           });
           server.listen(5002, '0.0.0.0', () => console.log('listening'));`,
        ]),
      );
      await server.waitFor(/listening/, 10_000, 'the TCP server listening');
      const client = await cluster.exec(
        'a',
        [
          process.execPath,
          '-e',
          `const net = require('net'), crypto = require('crypto');
           const data = crypto.randomBytes(${TEN_MB});
           const socket = net.connect({ host: '${B.ip}', port: 5002, allowHalfOpen: true }, () => socket.end(data));
           let reply = ''; socket.setEncoding('utf8');
           socket.on('data', (text) => (reply += text));
           socket.on('end', () => console.log(JSON.stringify({ sha256: crypto.createHash('sha256').update(data).digest('hex'), reply: JSON.parse(reply) })));
           socket.on('error', (error) => { console.error(error.message); process.exit(1); });`,
        ],
        { timeoutMs: 90_000 },
      );
      const result = JSON.parse(client) as { sha256: string; reply: { sha256: string; bytes: number } };
      assert.equal(result.reply.bytes, TEN_MB, 'the server did not receive every byte');
      assert.equal(result.reply.sha256, result.sha256, 'SHA-256 differs between client and server');
      const [sent, received] = [await underlay(cluster, 0), await underlay(cluster, 1)];
      assert.ok(sent.gsoSends > sender.gsoSends, `node0 made no UDP_SEGMENT send: ${JSON.stringify(sent)}`);
      assert.ok(received.groBuffers > receiver.groBuffers, `node1 received no coalesced buffer: ${JSON.stringify(received)}`);
      assert.ok(received.groSegments - receiver.groSegments > 2 * (received.groBuffers - receiver.groBuffers), 'GRO buffers should hold several segments each');
    }));

  test('a burst of mixed sizes in several flows arrives complete, intact and in order per flow', () =>
    cluster.withLogs(async () => {
      const before = await underlay(cluster, 0);
      const ports = [41001, 41002, 41003];
      const sizes = [1000, 1000, 1000, 300, 1400, 64, 64, 1400, 1400, 8];
      const burst = 200;
      assertAllArrived(await exchange(cluster, ports, sizes, burst), ports, sizes, burst);
      const after = await underlay(cluster, 0);
      assert.ok(after.gsoFrames > before.gsoFrames, `no frame took the GSO path: ${JSON.stringify(after)}`);
    }));

  test('with gso_max_segs 1 on the underlay (a NIC without segmentation offload) the runs are cut in software and arrive the same', () =>
    cluster.withLogs(async () => {
      await cluster.execNode(0, ['ip', 'link', 'set', 'dev', 'underlay', 'gso_max_segs', '1']);
      try {
        const before = await underlay(cluster, 0);
        const ports = [43001, 43002];
        const sizes = [900, 900, 900, 900, 120];
        const burst = 150;
        assertAllArrived(await exchange(cluster, ports, sizes, burst), ports, sizes, burst);
        const after = await underlay(cluster, 0);
        assert.ok(after.gsoSends > before.gsoSends, `no UDP_SEGMENT send: ${JSON.stringify(after)}`);
      } finally {
        await cluster.execNode(0, ['ip', 'link', 'set', 'dev', 'underlay', 'gso_max_segs', '65535']);
      }
    }));

  test('tshark on the underlay reads the same outer and inner packets from the raw and the GSO path; each flow keeps one entropy port', () =>
    cluster.withLogs(async () => {
      const node = cluster.nodes[0];
      // Segmented and checksummed in software before the capture point: tshark sees every datagram, its real checksum.
      await cluster.execNode(0, [process.execPath, '-e', `require(${JSON.stringify(nativeIoPath())}).disableTxOffloads('underlay')`]);
      const fields = [
        'ip.src', 'ip.dst', 'ip.ttl', 'ip.dsfield', 'ip.flags.df', 'ip.len', 'udp.srcport', 'udp.dstport', 'udp.length',
        'udp.checksum', 'udp.checksum.status', 'mpls.label', 'mpls.bottom', 'mpls.ttl', 'data.data',
      ];
      const tshark = new ProcessOutput(
        topology.spawn(node.ns, [
          'tshark', '-l', '-n', '-i', 'underlay', '-f', `udp dst port 6635 and src host ${node.underlayIp}`,
          '-o', 'udp.check_checksum:TRUE', '-T', 'fields', '-E', 'separator=|', ...fields.flatMap((field) => ['-e', field]),
        ]),
      );
      await tshark.waitFor(/Capturing on/, 20_000, "tshark's Capturing on");
      await new Promise((resolve) => setTimeout(resolve, 500));
      const before = await underlay(cluster, 0);
      const ports = [42001, 42002, 42003, 42004];
      const sizes = [600, 600, 600, 600, 600, 600, 600, 100];
      const burst = 40;
      assertAllArrived(await exchange(cluster, ports, sizes, burst), ports, sizes, burst);
      const after = await underlay(cluster, 0);
      await new Promise((resolve) => setTimeout(resolve, 500));
      process.kill(tshark.child.pid!, 'SIGINT');
      await tshark.exited;
      const rows = tshark.stdout.trim().split('\n').filter(Boolean).map((line) => line.split('|'));
      const column = (row: string[], name: string): string[] => row[fields.indexOf(name)].split(',');
      assert.equal(rows.length, ports.length * (burst + 1), `tshark saw ${rows.length} tunnel packets:\n${tshark.stdout}${tshark.stderr}`);
      assert.ok(after.gsoFrames - before.gsoFrames >= ports.length * burst / 2, `too few frames took the GSO path: ${JSON.stringify({ before, after })}`);
      assert.ok(after.rawFrames - before.rawFrames >= ports.length, 'the lone datagrams should take the raw path');

      const entropyPorts = new Map<number, Set<string>>();
      let raw = 0;
      let gso = 0;
      for (const row of rows) {
        const [outerSrc, innerSrc] = column(row, 'ip.src');
        const [outerDst, innerDst] = column(row, 'ip.dst');
        const [outerTtl, innerTtl] = column(row, 'ip.ttl');
        const [outerDscp, innerDscp] = column(row, 'ip.dsfield');
        const [outerDf] = column(row, 'ip.flags.df');
        const [outerLength, innerLength] = column(row, 'ip.len').map(Number);
        const [entropy, innerSport] = column(row, 'udp.srcport');
        const [outerDport, innerDport] = column(row, 'udp.dstport');
        const [outerUdpLength] = column(row, 'udp.length').map(Number);
        const [outerChecksum] = column(row, 'udp.checksum');
        const [outerStatus, innerStatus] = column(row, 'udp.checksum.status');
        const shown = row.join(' | ');
        assert.deepEqual([outerSrc, outerDst, outerTtl, outerDscp, outerDf, outerDport], [node.underlayIp, cluster.nodes[1].underlayIp, '64', '0x00', '0', '6635'].map(String), `outer header: ${shown}`);
        assert.deepEqual([innerSrc, innerDst, innerDport, innerDscp], [A.ip, B.ip, String(SINK_PORT), '0x00'], `inner packet: ${shown}`);
        assert.deepEqual(row.slice(fields.indexOf('mpls.label'), fields.indexOf('mpls.ttl') + 1), [String(B.label), '1', innerTtl], `label, bottom of stack, TTL of the inner packet: ${shown}`);
        assert.equal(outerLength, 20 + outerUdpLength, `outer lengths: ${shown}`);
        assert.equal(outerUdpLength, 8 + 4 + innerLength, `one datagram per tunnel packet: ${shown}`);
        assert.ok(outerLength <= 1500, `a segment, not a super-packet: ${shown}`);
        assert.equal(innerStatus, '1', `inner UDP checksum verified good: ${shown}`);
        if (Number(outerChecksum) === 0) raw++;
        else {
          assert.equal(outerStatus, '1', `outer UDP checksum of a GSO segment verified good: ${shown}`);
          gso++;
        }
        const flow = Number(innerSport);
        if (!entropyPorts.has(flow)) entropyPorts.set(flow, new Set());
        entropyPorts.get(flow)!.add(entropy);
        // The payload the sender wrote: seq, then its filler byte.
        const payload = Buffer.from(row[fields.indexOf('data.data')], 'hex');
        const seq = payload.readUInt32BE(0);
        assert.ok(payload.subarray(4).every((byte) => byte === ((seq * 7 + flow) & 255)), `inner payload of flow ${flow} seq ${seq}: ${shown}`);
      }
      assert.ok(raw >= ports.length && gso >= ports.length * burst / 2, `raw-path packets ${raw}, GSO-path packets ${gso}`);
      assert.deepEqual([...entropyPorts.keys()].sort(), ports, 'every flow was seen');
      for (const [flow, seen] of entropyPorts) {
        assert.equal(seen.size, 1, `flow ${flow} used entropy ports ${[...seen].join(', ')}`);
        const port = Number([...seen][0]);
        assert.ok(port >= 49152 && port <= 65535, `flow ${flow}: ${port} is not an RFC 7510 entropy port`);
      }
      assert.equal(new Set([...entropyPorts.values()].map((seen) => [...seen][0])).size, ports.length, 'the flows should spread over entropy ports');
    }));
});
