/**
 * End to end: a live node's traffic becomes a regression test. Real
 * `vrouter run` daemons in network namespaces (test/support/vrouter-cluster.ts),
 * pods pinging through the real Linux stacks; `vrouter capture` records
 * node0's vifs and state; the directory replays through `vrouter replay
 * --expect` and `vrouter test` equal to what the live node sent, up to the
 * masks the capture writes (timestamp, ip.id, ip.checksum, checksums still
 * checked valid).
 *
 *   node0: a1 10.1.1.3, a2 10.1.1.4     node1: b1 10.1.1.5     vn1 10.1.1.0/24, MPLS over UDP
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parse } from 'yaml';
import { readCapture } from '../src/dataplane/io/pcap';
import { Topology, requireCommands } from './support/netns';
import { ProcessOutput, VrouterCluster } from './support/vrouter-cluster';
import { VROUTER_BIN, vrouter } from './support/fixtures';

if (process.getuid?.() !== 0) throw new Error('the e2e tests need root (network namespaces, TAP devices, raw sockets): run them as root, as .ci/run does');
requireCommands({ ip: 'iproute2', ping: 'iputils-ping', sysctl: 'procps' });

const VNS = [{ name: 'vn1', subnet: '10.1.1.0/24', gateway: '10.1.1.1' }];
const A1 = { name: 'a1', vn: 'vn1', ip: '10.1.1.3', label: 20 };
const A2 = { name: 'a2', vn: 'vn1', ip: '10.1.1.4', label: 21 };
const B1 = { name: 'b1', vn: 'vn1', ip: '10.1.1.5', label: 30 };

describe('vrouter capture on a live node, replayed as a scenario', { timeout: 150_000 }, () => {
  let topology: Topology;
  let cluster: VrouterCluster;
  let dir: string;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vrouter-capture-'));
    topology = new Topology();
    cluster = await VrouterCluster.start(topology, { nodes: 2, vns: VNS });
    await cluster.withLogs(async () => {
      await cluster.addPod(0, A1);
      await cluster.addPod(0, A2);
      await cluster.addPod(1, B1);
    });
  });

  after(async () => {
    try {
      await cluster?.stop();
    } finally {
      await topology?.destroy();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('live pings captured, replayed, equal to what the live node sent', () =>
    cluster.withLogs(async () => {
      const node = cluster.nodes[0];
      const capture = new ProcessOutput(
        cluster.spawnNode(0, [process.execPath, VROUTER_BIN, 'capture', dir, '--duration', '5s', '--introspect', node.introspect]),
      );
      await capture.waitFor(/capture: recording every vif/, 15_000);
      for (const [from, to] of [
        ['a1', A2.ip],
        ['a2', A1.ip],
        ['a1', B1.ip],
      ]) {
        const result = await cluster.tryExec(from, ['ping', '-n', '-c', '3', '-i', '0.2', '-W', '2', to]);
        assert.equal(result.code, 0, `ping ${from} -> ${to}: ${result.stdout}${result.stderr}`);
      }
      const exit = await capture.exited;
      assert.equal(exit.code, 0, `vrouter capture exited ${exit.code ?? exit.signal}: ${capture.stderr}`);
      assert.match(capture.stderr, /frames received, \d+ sent on \d+ vifs/);

      // What the directory holds: the state, the ingress, the live node's egress per vif.
      const state = parse(fs.readFileSync(path.join(dir, 'state.yaml'), 'utf8'));
      const pods = state.vifs.filter((vif: { kind: string }) => vif.kind === 'virtual') as Array<{ name: string; ip: string }>;
      assert.deepEqual(pods.map((vif) => vif.ip).sort(), [A1.ip, A2.ip]);
      const vifOf = (ip: string) => pods.find((vif) => vif.ip === ip)!.name;
      const scenario = parse(fs.readFileSync(path.join(dir, 'scenario.yaml'), 'utf8'));
      assert.deepEqual(scenario.ignore, ['timestamp', 'ip.id', 'ip.checksum']);
      const ingress = readCapture(path.join(dir, 'in', 'capture.pcapng'));
      const expected = Object.fromEntries(fs.readdirSync(path.join(dir, 'expected')).map((file) => [file.replace('.pcap', ''), readCapture(path.join(dir, 'expected', file))]));
      // 3 echo requests and replies each way on node0's pods, 6 tunnelled to or from b1.
      assert.ok(ingress.length >= 18, `${ingress.length} frames received`);
      assert.ok((expected[vifOf(A1.ip)]?.length ?? 0) >= 9 && (expected[vifOf(A2.ip)]?.length ?? 0) >= 6, `egress per vif: ${Object.entries(expected).map(([vif, frames]) => `${vif} ${frames.length}`).join(', ')}`);
      const fabric = state.vifs.find((vif: { kind: string }) => vif.kind === 'fabric').name as string;
      assert.ok((expected[fabric]?.length ?? 0) >= 3, `${fabric}: ${expected[fabric]?.length ?? 0} tunnelled frames`);

      const replay = vrouter(['replay', '--state', path.join(dir, 'state.yaml'), '--in-pcapng', path.join(dir, 'in', 'capture.pcapng'), '--expect', path.join(dir, 'expected'), '--ignore', 'timestamp,ip.id,ip.checksum']);
      assert.equal(replay.status, 0, `vrouter replay --expect:\n${replay.stdout}${replay.stderr}`);
      assert.match(replay.stdout, /^equal to /m);

      // Without the timestamp mask the comparison does see the live node's later send times.
      const strict = vrouter(['replay', '--state', path.join(dir, 'state.yaml'), '--in-pcapng', path.join(dir, 'in', 'capture.pcapng'), '--expect', path.join(dir, 'expected'), '--ignore', 'ip.id,ip.checksum']);
      assert.equal(strict.status, 1, strict.stdout + strict.stderr);
      assert.match(strict.stdout, /packet 1 on \S+ \(\d+\.\d{9}\): timestamp \d+\.\d{9}, expected \d+\.\d{9}/);

      const suite = vrouter(['test', dir, '--json', '-']);
      assert.equal(suite.status, 0, suite.stdout + suite.stderr);
      assert.equal(JSON.parse(suite.stdout).passed, 1);
    }));
});
