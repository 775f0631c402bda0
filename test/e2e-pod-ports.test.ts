/**
 * End to end: the kinds of pod port, through real `vrouter run` daemons.
 *
 *   node0: a 10.1.1.3 (veth, AF_XDP)   t 10.1.1.9 (`--kind tap`)
 *   node1: b 10.1.1.5 (veth, AF_XDP)
 *
 * - A veth pod's host end carries the XDP program (a BPF link) and `vrouter
 *   vif` says af_xdp; AF_XDP and TAP pods reach each other on one node and
 *   across nodes; deleting the port removes the pair from both namespaces
 *   and its XDP program.
 * - With AF_XDP refused (VROUTER_AF_XDP=off makes the socket's bind fail in
 *   the daemon) a veth port falls back to AF_PACKET, `vrouter vif` says so
 *   and why, and it forwards.
 * - The e2e suites that TAP pods pass (ping, 10 MB TCP intact, MTU and ICMP
 *   fragmentation needed, ClusterIP with DNAT/ECMP) run again as they are,
 *   with every pod on AF_PACKET, and with every pod on a TAP (the default
 *   run of those files is AF_XDP).
 * Needs root and iproute2, iputils-ping; a missing one fails the file naming it.
 */
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Topology, requireCommands } from './support/netns';
import { VrouterCluster } from './support/vrouter-cluster';

if (process.getuid?.() !== 0) throw new Error('the e2e tests need root (network namespaces, veth pairs, BPF, raw sockets): run them as root, as .ci/run does');
requireCommands({ ip: 'iproute2', ping: 'iputils-ping' });

const VNS = [{ name: 'vn1', subnet: '10.1.1.0/24', gateway: '10.1.1.1' }];
const A = { name: 'a', vn: 'vn1', ip: '10.1.1.3', label: 20 };
const B = { name: 'b', vn: 'vn1', ip: '10.1.1.5', label: 30 };
const T = { ip: '10.1.1.9', label: 21 };

/** `vrouter vif --list` of a node, one block per vif, keyed by its OS name. */
async function vifBlocks(cluster: VrouterCluster, node: number): Promise<Map<string, string>> {
  const text = await cluster.tool(node, ['vif', '--list']);
  const blocks = new Map<string, string>();
  for (const block of text.split(/\n(?=vif0\/)/)) {
    const name = /OS: (\S+)/.exec(block)?.[1];
    if (name) blocks.set(name, block);
  }
  return blocks;
}

async function ping(topology: Topology, ns: string, ip: string): Promise<void> {
  assert.match(await topology.exec(ns, ['ping', '-n', '-c', '3', '-i', '0.2', '-W', '2', ip]), / 0% packet loss/);
}

describe('veth pods on AF_XDP, beside a TAP pod', () => {
  let topology: Topology;
  let cluster: VrouterCluster;
  let tapNs: string;

  before(async () => {
    topology = new Topology();
    cluster = await VrouterCluster.start(topology, { nodes: 2, vns: VNS });
    await cluster.addPod(0, A);
    await cluster.addPod(1, B);
    tapNs = await topology.addNamespace('pod-t');
    await cluster.vrouter(0, ['port', 'add', '--id', 't', '--netns', tapNs, '--kind', 'tap', '--vn', 'vn1', '--ip', T.ip, '--mpls-label', String(T.label)]);
  });

  after(async () => {
    await cluster?.stop();
    await topology?.destroy();
  });

  test('the veth host end has the XDP program attached; vrouter vif names each port kind', () =>
    cluster.withLogs(async () => {
      const hostEnd = cluster.pod('a').tapName;
      assert.match(await cluster.execNode(0, ['ip', '-d', 'link', 'show', hostEnd]), /prog\/xdp id \d+/);
      assert.match(await topology.exec(cluster.pod('a').ns, ['ip', '-d', 'link', 'show', 'eth0']), /veth/);
      const blocks = await vifBlocks(cluster, 0);
      assert.match(blocks.get(hostEnd) ?? '', /Port:af_xdp\n/, [...blocks.values()].join('\n'));
      assert.match([...blocks.values()].find((block) => block.includes(T.ip)) ?? '', /Port:tap\n/);
    }));

  test('AF_XDP and TAP pods ping each other on one node and across nodes, both ways', () =>
    cluster.withLogs(async () => {
      await ping(topology, cluster.pod('a').ns, B.ip);
      await ping(topology, cluster.pod('b').ns, A.ip);
      await ping(topology, tapNs, A.ip);
      await ping(topology, cluster.pod('a').ns, T.ip);
      const stats = await cluster.stats(0);
      const vif = stats.vifs.find((candidate) => candidate.name === cluster.pod('a').tapName) as Record<string, unknown> | undefined;
      const counters = vif?.ioCounters as Record<string, number> | undefined;
      assert.ok(counters && counters.rxDropped === 0 && counters.txNoBuffer === 0, `XDP statistics: ${JSON.stringify(vif)}`);
    }));

  test('deleting a veth port removes the pair from both namespaces and its XDP program', () =>
    cluster.withLogs(async () => {
      const pod = cluster.pod('b');
      await cluster.deletePod('b');
      const links = await cluster.execNode(1, ['ip', '-o', 'link', 'show']);
      assert.doesNotMatch(links, new RegExp(`: ${pod.tapName}[@:]`));
      assert.doesNotMatch(links, /xdp/);
      assert.doesNotMatch(await topology.exec(pod.ns, ['ip', '-o', 'link', 'show']), /eth0/);
    }));
});

describe('a veth pod where AF_XDP is refused', () => {
  let topology: Topology;
  let cluster: VrouterCluster;

  before(async () => {
    topology = new Topology();
    // The daemons inherit this environment: every AF_XDP bind fails with EPERM.
    process.env.VROUTER_AF_XDP = 'off';
    try {
      cluster = await VrouterCluster.start(topology, { nodes: 2, vns: VNS });
    } finally {
      delete process.env.VROUTER_AF_XDP;
    }
    await cluster.addPod(0, A);
    await cluster.addPod(1, B);
  });

  after(async () => {
    await cluster?.stop();
    await topology?.destroy();
  });

  test('falls back to AF_PACKET, says so and why in vrouter vif, and forwards', () =>
    cluster.withLogs(async () => {
      const hostEnd = cluster.pod('a').tapName;
      const block = (await vifBlocks(cluster, 0)).get(hostEnd) ?? '';
      assert.match(block, /Port:af_packet \(AF_XDP refused: bind\(AF_XDP, copy mode\) \S+ queue 0 \(refused: VROUTER_AF_XDP=off\): Operation not permitted\)/);
      assert.doesNotMatch(await cluster.execNode(0, ['ip', '-d', 'link', 'show', hostEnd]), /prog\/xdp/);
      await ping(topology, cluster.pod('a').ns, B.ip);
      await ping(topology, cluster.pod('b').ns, A.ip);
    }));
});

/** Runs a compiled test file in a child `node --test` with extra environment; resolves to its summary. */
function runSuite(file: string, env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  // Without NODE_TEST_CONTEXT, which makes a nested runner skip its files.
  const { NODE_TEST_CONTEXT: _nested, ...inherited } = process.env;
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--test', '--test-reporter=tap', path.join(__dirname, file)],
      { env: { ...inherited, ...env }, timeout: 300_000, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, output: `${stdout}${stderr}` }),
    );
  });
}

for (const [kind, env] of [
  ['AF_PACKET', { VROUTER_AF_XDP: 'off' }],
  ['TAP', { VROUTER_POD_PORT: 'tap' }],
] as const) {
  for (const file of ['e2e-forwarding.test.js', 'e2e-clusterip.test.js']) {
    test(`${file} passes with every pod on ${kind}`, { timeout: 300_000 }, async () => {
      const { code, output } = await runSuite(file, env);
      const failed = output.split('\n').filter((line) => /^\s*not ok /.test(line));
      assert.equal(code, 0, `${file} with ${JSON.stringify(env)}:\n${failed.join('\n')}\n${output.slice(-4000)}`);
      assert.match(output, /^# fail 0$/m);
    });
  }
}
