/**
 * The cores of bench:reconfig and bench:soak with tiny parameters, for
 * their invariants rather than their figures (nothing here is timed):
 *
 * - one round of every reconfiguration (routes under churn, a port added
 *   and deleted, the service scaled 1 -> 2 -> 1, the policy changed) loses
 *   no datagram of the unrelated streams, and the probes saw each change
 *   forward;
 * - after a 20-second mini soak every daemon's counters balance
 *   (received + generated = transmitted + dropped + held) with traffic
 *   through both, and the sampler wrote samples of every process.
 *
 * Needs root, iproute2, iputils-ping (test/support/vrouter-cluster.ts).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { Topology, requireCommands } from './support/netns';
import { runReconfig } from '../bench/reconfig-core';
import { runSoak } from '../bench/soak-core';

if (process.getuid?.() !== 0) throw new Error('the e2e tests need root (network namespaces, TAP devices): run them as root, as .ci/run does');
requireCommands({ ip: 'iproute2', ping: 'iputils-ping', stdbuf: 'coreutils' });

const topologies: Topology[] = [];
after(async () => {
  for (const topology of topologies) await topology.destroy();
});

test('a small reconfiguration loses no datagram of the unrelated streams, and every change forwards', async () => {
  const topology = new Topology();
  topologies.push(topology);
  const result = await runReconfig(topology, { pps: 200, routeRate: 100, routeWindow: 100, rounds: 1, scaleTo: 2, probeIntervalMs: 5, holdMs: 2000 });
  process.stderr.write(`# streams ${JSON.stringify(result.streams)}; changes ${JSON.stringify(result.changes)}\n`);
  for (const stream of result.streams) assert.ok(stream.sent > 200, `a stream sent only ${stream.sent}`);
  assert.equal(result.lost, 0, `unrelated datagrams lost: ${JSON.stringify(result.streams)}`);
  assert.ok(result.routeChurn.added > 100 && result.routeChurn.removed > 0, `route churn ${JSON.stringify(result.routeChurn)}`);
  // Established flows keep their verdict across a policy change (policy.ts: evaluated once per new flow): not asserted here.
  for (const change of ['route add', 'route delete', 'port add', 'port delete', 'scale up', 'scale down', 'policy deny, new flows', 'policy allow, new flows'] as const) {
    assert.equal(result.changes[change].length, 1, change);
    assert.notEqual(result.changes[change][0], null, `${change} never took effect`);
  }
});

test('after a 20-second mini soak every daemon balances received + generated = transmitted + dropped + held', async () => {
  const topology = new Topology();
  topologies.push(topology);
  const resultsDirectory = fs.mkdtempSync(path.join(os.tmpdir(), 'vrouter-soak-test-'));
  try {
    const result = await runSoak(topology, {
      seconds: 20,
      sampleSeconds: 5,
      warmupSeconds: 0,
      pps: 200,
      flowIntervalMs: 10,
      routeRate: 100,
      routeWindow: 200,
      portChurnSeconds: 8,
      resultsDirectory,
    });
    process.stderr.write(`# conservation ${JSON.stringify(result.conservation)}\n`);
    assert.equal(result.conservation.length, 2);
    for (const daemon of result.conservation) {
      // Both streams cross both daemons: a counter that stayed still would balance trivially.
      assert.ok(daemon.received > 2 * 200 * 10, `${daemon.node} received only ${daemon.received}`);
      assert.equal(daemon.unaccounted, 0, `${daemon.node}: ${JSON.stringify(daemon)}`);
    }
    assert.ok(result.tcp.completed > 0, `TCP churn: ${JSON.stringify(result.tcp)}`);
    assert.ok(result.portChurn >= 1, 'at least one port added and deleted');
    const csv = fs.readFileSync(path.join(resultsDirectory, 'samples.csv'), 'utf8').trim().split('\n');
    for (const name of ['node0', 'node1', 'control0']) {
      const rows = csv.filter((line) => line.split(',')[1] === name);
      assert.ok(rows.length >= 4, `${name}: ${rows.length} samples`);
      assert.ok(rows.every((line) => Number(line.split(',')[2]) > 0 && Number(line.split(',')[4]) > 0), `${name}: RSS and fds sampled: ${rows.join(' / ')}`);
    }
  } finally {
    fs.rmSync(resultsDirectory, { recursive: true, force: true });
  }
});
