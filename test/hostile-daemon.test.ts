/**
 * A running daemon's forwarding under hostile peers: two `vrouter run`
 * daemons in network namespaces, pod a1 on node0 pinging pod b1 on node1 at
 * 100 packets a second over MPLS over UDP, while a process in node0's
 * namespace fuzzes node0's port API (127.0.0.1:9091) and introspect API
 * (127.0.0.1:8085) (test/support/daemon-fuzz-child.ts: random bytes,
 * mutated bodies of the real clients, a slow sender, 20,000 connections
 * opened and dropped). No ping may be lost, the daemon stays up, and both
 * APIs still answer.
 *
 * Needs root and iproute2, iputils-ping.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Topology, requireCommands } from './support/netns';
import { VrouterCluster } from './support/vrouter-cluster';
import { SEED } from './support/peer-fuzz';

if (process.getuid?.() !== 0) throw new Error('the hostile-daemon test needs root (network namespaces, TAP devices): run it as root, as .ci/run does');
requireCommands({ ip: 'iproute2', ping: 'iputils-ping', sysctl: 'procps' });

const VNS = [{ name: 'vn1', subnet: '10.1.1.0/24', gateway: '10.1.1.1' }];
const A1 = { name: 'a1', vn: 'vn1', ip: '10.1.1.3', label: 20 };
const B1 = { name: 'b1', vn: 'vn1', ip: '10.1.1.5', label: 30 };
const FUZZ_CHILD = path.join(__dirname, 'support', 'daemon-fuzz-child.js');

function rssMiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
}

let topology: Topology;
let cluster: VrouterCluster;

before(async () => {
  topology = new Topology();
  cluster = await VrouterCluster.start(topology, { nodes: 2, vns: VNS });
  await cluster.addPod(0, A1);
  await cluster.addPod(1, B1);
});

after(async () => {
  try {
    await cluster?.stop();
  } finally {
    await topology?.destroy();
  }
});

test('pods keep forwarding, without a loss, while the daemon’s port and introspect APIs are fuzzed', { timeout: 110_000 }, () =>
  cluster.withLogs(async () => {
    const node = cluster.nodes[0];
    const warm = await cluster.tryExec('a1', ['ping', '-n', '-q', '-c', '5', '-i', '0.2', '-W', '2', B1.ip]);
    assert.equal(warm.code, 0, warm.stdout);
    const rssBefore = rssMiB(node.pid);
    const apiPort = node.api.split(':').pop()!;
    const introspectPort = node.introspect.split(':').pop()!;
    const started = Date.now();
    let fuzzDone = false;
    const fuzz = cluster.execNode(0, [process.execPath, FUZZ_CHILD, apiPort, introspectPort, String(SEED)], { timeoutMs: 90_000 }).finally(() => {
      fuzzDone = true;
    });
    // Pings in batches of 2 s at 100 a second, until the fuzzing is over.
    let transmitted = 0;
    let received = 0;
    while (!fuzzDone) {
      const batch = await cluster.tryExec('a1', ['ping', '-n', '-q', '-c', '200', '-i', '0.01', '-W', '1', B1.ip]);
      const counts = /(\d+) packets transmitted, (\d+) received/.exec(batch.stdout);
      assert.ok(counts, batch.stdout + batch.stderr);
      transmitted += Number(counts[1]);
      received += Number(counts[2]);
    }
    const summary = JSON.parse(await fuzz) as { inputs: number; connections: number; statuses: Record<string, number>; internalErrors: string[] };
    const seconds = (Date.now() - started) / 1000;
    assert.equal(node.exit, undefined, 'the daemon exited');
    const rssAfter = rssMiB(node.pid);
    console.log(
      `# ${summary.inputs} fuzz inputs and ${summary.connections} dropped connections in ${seconds.toFixed(1)} s (answers: ${JSON.stringify(summary.statuses)}); ` +
        `a1 -> b1: ${transmitted} pings, ${received} replies; daemon RSS ${rssBefore.toFixed(1)} -> ${rssAfter.toFixed(1)} MiB`,
    );
    if (summary.internalErrors.length > 0) console.log(`# answered 500:\n# ${summary.internalErrors.join('\n# ')}`);
    assert.ok(transmitted >= 200, `only ${transmitted} pings`);
    assert.equal(received, transmitted, 'pings lost while the APIs were fuzzed');
    // Both APIs still serve.
    const stats = await cluster.stats(0);
    assert.ok(stats, 'GET /stats');
    const answer = await cluster.introspect<{ node: string }>(0, '/api/summary');
    assert.equal(typeof answer.node, 'string');
  }));
