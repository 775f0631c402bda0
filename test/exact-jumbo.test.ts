/**
 * End to end: pods with MTU 9000 exchange 9000-byte packets through real
 * `vrouter run` daemons in network namespaces (pings and TCP from the pods'
 * Linux stacks, the underlay watched with tshark), as the reference
 * vrouter's tests/test_vm_comm_jumbo_packets.py sends jumbo frames between
 * vifs of MTU 9014 (tungstenfabric/tf-vrouter@432a8e0c).
 *
 *   jumbo underlay (MTU 9032, pods 9000):  whole, locally and through the tunnel
 *   1500 underlay (pods given MTU 9000):   DF clear cut into inner fragments that
 *                                          each fit a tunnel packet; DF set gets
 *                                          fragmentation needed naming 1468
 *
 * Needs root and iproute2, iputils-ping, tshark.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Topology, requireCommands } from './support/netns';
import { OVERLAY_OVERHEAD, VrouterCluster } from './support/vrouter-cluster';
import { nativeIoPath } from '../src/dataplane/io/native';

if (process.getuid?.() !== 0) throw new Error('the e2e tests need root (network namespaces, TAP devices, raw sockets): run them as root, as .ci/run does');
requireCommands({ ip: 'iproute2', ping: 'iputils-ping', tshark: 'tshark' });

const JUMBO = 9000;
const VNS = [{ name: 'vn1', subnet: '10.1.1.0/24', gateway: '10.1.1.1' }];
const A1 = { name: 'a1', vn: 'vn1', ip: '10.1.1.3', label: 20 };
const A2 = { name: 'a2', vn: 'vn1', ip: '10.1.1.4', label: 21 };
const B1 = { name: 'b1', vn: 'vn1', ip: '10.1.1.5', label: 30 };

async function ping(cluster: VrouterCluster, from: string, to: string, df: 'do' | 'dont', size = JUMBO - 28) {
  return cluster.tryExec(from, ['ping', '-n', '-c', '3', '-i', '0.2', '-W', '2', '-M', df, '-s', String(size), to]);
}

function assertReplies(result: { code: number | null; stdout: string; stderr: string }, what: string): void {
  assert.equal(result.code, 0, `${what}:\n${result.stdout}${result.stderr}`);
  assert.match(result.stdout, /3 packets transmitted, 3 received/, what);
}

describe('9000-byte packets between pods', { timeout: 120_000 }, () => {
  let topology: Topology;
  let jumbo: VrouterCluster;
  let narrow: VrouterCluster;

  before(async () => {
    topology = new Topology();
    jumbo = await VrouterCluster.start(topology, { nodes: 2, vns: VNS, underlayMtu: JUMBO + OVERLAY_OVERHEAD, tag: 'jumbo' });
    await jumbo.withLogs(async () => {
      await jumbo.addPod(0, A1);
      await jumbo.addPod(0, A2);
      await jumbo.addPod(1, B1);
    });
    narrow = await VrouterCluster.start(topology, { nodes: 2, vns: VNS, underlayMtu: 1500, tag: 'narrow' });
    await narrow.withLogs(async () => {
      await narrow.addPod(0, { ...A1, mtu: JUMBO });
      await narrow.addPod(1, { ...B1, mtu: JUMBO });
    });
  });

  after(async () => {
    try {
      await jumbo?.stop();
      await narrow?.stop();
    } finally {
      await topology?.destroy();
    }
  });

  test('over a 9032-byte underlay: 9000-byte DF pings cross whole, locally and as one 9032-byte tunnel packet', () =>
    jumbo.withLogs(async () => {
      assert.equal(jumbo.pod('a1').mtu, JUMBO);
      assert.match(await jumbo.exec('a1', ['ip', '-o', 'link', 'show', 'eth0']), new RegExp(`mtu ${JUMBO} `));
      // A 9014-byte frame does not fit a 2 KiB AF_XDP chunk: the veth is read through AF_PACKET with MTU-sized slots, and vif says why.
      assert.match(await jumbo.tool(0, ['vif', '--get', '1']), /Port:af_packet \(AF_XDP refused: xskOpen \S+ MTU 9000 \(an AF_XDP frame holds 1792 bytes\): Message too long\)/);
      assertReplies(await ping(jumbo, 'a1', A2.ip, 'do'), 'a1 -> a2, 9000 bytes, DF');
      const capture = await jumbo.capture({ node: 0 }, 'underlay', 'udp port 6635', ['ip.len', 'ip.flags.mf', 'ip.frag_offset']);
      assertReplies(await ping(jumbo, 'a1', B1.ip, 'do'), 'a1 -> b1, 9000 bytes, DF');
      const rows = await capture.stop();
      assert.equal(rows.length, 6, `3 requests and 3 replies, each one tunnel packet; tshark saw:\n${rows.map((row) => row.join(' ')).join('\n')}`);
      for (const row of rows) assert.deepEqual(row.map((field) => field.split(',')[0]), [String(JUMBO + OVERLAY_OVERHEAD), '0', '0'], `outer length, MF, offset: ${row.join(' ')}`);
      const drops = (await jumbo.stats(0)).drops;
      assert.equal(drops['fragment-needed'] ?? 0, 0, `nothing too big: ${JSON.stringify(drops)}`);
    }));

  test('over a 1500-byte underlay: DF clear is cut for the underlay and reassembled by the pod; DF set gets fragmentation needed (1468)', () =>
    narrow.withLogs(async () => {
      // A packet's 7 pieces leave as one UDP_SEGMENT run; with the senders' offloads off the kernel segments it before the capture point.
      for (const node of [0, 1]) await narrow.execNode(node, [process.execPath, '-e', `require(${JSON.stringify(nativeIoPath())}).disableTxOffloads('underlay')`]);
      const capture = await narrow.capture({ node: 0 }, 'underlay', 'udp port 6635', ['ip.len', 'ip.flags.mf', 'ip.frag_offset']);
      assertReplies(await ping(narrow, 'a1', B1.ip, 'dont'), 'a1 -> b1, 9000 bytes, DF clear');
      const rows = await capture.stop();
      // 9000 bytes = a 1468-byte head and later fragments of at most 1468 (1448 bytes of data each): 7 per packet.
      assert.equal(rows.length, 6 * 7, `7 tunnel packets per echo request and reply; tshark saw:\n${rows.map((row) => row.join(' ')).join('\n')}`);
      for (const row of rows) {
        const [length, moreFragments, offset] = row.map((field) => Number(field.split(',')[0]));
        assert.ok(length <= 1500, `outer packet of ${length} bytes on a 1500-byte underlay`);
        assert.deepEqual([moreFragments, offset], [0, 0], 'the outer header is never fragmented');
      }
      const big = await narrow.tryExec('a1', ['ping', '-n', '-c', '1', '-W', '2', '-M', 'do', '-s', String(JUMBO - 28), B1.ip]);
      assert.notEqual(big.code, 0, `a 9000-byte DF packet should not cross a 1500 underlay:\n${big.stdout}`);
      assert.match(big.stdout, new RegExp(`Frag needed and DF set \\(mtu = ${1500 - OVERLAY_OVERHEAD}\\)`), `ping printed:\n${big.stdout}${big.stderr}`);
    }));
});
