import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { once } from 'node:events';
import { Topology, requireCommands } from './support/netns';

requireCommands({ ip: 'iproute2', ping: 'iputils-ping', sysctl: 'procps' });

function namespacesWithPrefix(prefix: string): string[] {
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((line) => line.split(' ')[0])
    .filter((name) => name.startsWith(`${prefix}-`));
}

async function ping(topology: Topology, from: string, ip: string): Promise<void> {
  await topology.exec(from, ['ping', '-c', '2', '-W', '1', '-i', '0.2', ip]);
}

/** A process is gone once /proc no longer lists it, or lists it only as a zombie. */
async function waitGone(pid: number): Promise<boolean> {
  for (let attempt = 0; attempt < 50; attempt++) {
    let state: string;
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    } catch {
      return true;
    }
    if (state === 'Z') return true;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return false;
}

test('two pods joined by a veth pair ping each other through their onlink routes', { timeout: 30_000 }, async (t) => {
  const topology = new Topology();
  t.after(() => topology.destroy());
  assert.match(topology.prefix, /^vrt[0-9a-z]{5}$/);
  const n1 = await topology.addNamespace('n1');
  const n2 = await topology.addNamespace('n2');
  assert.equal(n1, `${topology.prefix}-n1`);
  await topology.addVethPair(n1, 'eth0', n2, 'eth0', { mtu: 1400 });
  // Each pod's gateway is the other pod: /32 addresses reach each other only through the routes.
  await topology.configurePod(n1, 'eth0', { ip: '198.19.0.2', gateway: '198.19.0.3', mac: '02:00:c6:13:00:02' });
  await topology.configurePod(n2, 'eth0', { ip: '198.19.0.3', gateway: '198.19.0.2', mtu: 1400 });

  assert.equal(await topology.macOf(n1, 'eth0'), '02:00:c6:13:00:02');
  assert.match(await topology.exec(n1, ['ip', 'route', 'show', 'default']), /default via 198\.19\.0\.3 dev eth0 onlink/);
  assert.match(await topology.exec(n1, ['ip', 'link', 'show', 'eth0']), /mtu 1400/);
  await ping(topology, n1, '198.19.0.3');
  await ping(topology, n2, '198.19.0.2');
});

test('a bridge forwards between its ports and the counters show it', { timeout: 30_000 }, async (t) => {
  const topology = new Topology();
  t.after(() => topology.destroy());
  const hub = await topology.addNamespace('hub');
  const left = await topology.addNamespace('left');
  const right = await topology.addNamespace('right');
  await topology.addVethPair(left, 'eth0', hub, 'port-left');
  await topology.addVethPair(right, 'eth0', hub, 'port-right');
  await topology.addBridge(hub, 'br0', ['port-left', 'port-right']);
  await topology.exec(left, ['ip', 'address', 'add', '198.19.1.1/24', 'dev', 'eth0']);
  await topology.exec(right, ['ip', 'address', 'add', '198.19.1.2/24', 'dev', 'eth0']);

  const before = await topology.readCounter(hub, 'port-left', 'rx_packets');
  const rightBefore = await topology.readCounter(right, 'eth0', 'rx_packets');
  await ping(topology, left, '198.19.1.2');
  assert.ok((await topology.readCounter(hub, 'port-left', 'rx_packets')) >= before + 2, 'the bridge port received the echo requests');
  assert.ok((await topology.readCounter(right, 'eth0', 'rx_packets')) >= rightBefore + 2, 'the far pod received them');
  assert.equal(await topology.readCounter(right, 'eth0', 'rx_errors'), 0);
});

test('destroy() deletes every namespace of the run and can be called again', { timeout: 30_000 }, async () => {
  const topology = new Topology();
  const a = await topology.addNamespace('a');
  const b = await topology.addNamespace('b');
  await topology.addVethPair(a, 'veth0', b, 'veth0');
  assert.equal(namespacesWithPrefix(topology.prefix).length, 2);

  await topology.destroy();
  assert.deepEqual(namespacesWithPrefix(topology.prefix), []);
  await topology.destroy();
  await assert.rejects(topology.addNamespace('c'), /destroyed/);
});

test('destroy() kills processes spawned in a namespace, and what they forked', { timeout: 30_000 }, async () => {
  const topology = new Topology();
  const ns = await topology.addNamespace('proc');
  // A shell that forks a background sleep, then waits on a foreground one.
  const child = topology.spawn(ns, ['sh', '-c', 'sleep 300 & sleep 300'], { stdio: 'ignore' });
  const exited = once(child, 'exit');
  let inside: number[] = [];
  for (let attempt = 0; attempt < 50 && inside.length < 3; attempt++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    inside = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split(/\s+/).filter(Boolean).map(Number);
  }
  assert.equal(inside.length, 3, 'sh and its two sleeps run inside the namespace');
  assert.ok(inside.includes(child.pid as number), 'the spawned pid is the program itself');

  await topology.destroy();
  await exited;
  for (const pid of inside) assert.ok(await waitGone(pid), `pid ${pid} is gone`);
  assert.deepEqual(namespacesWithPrefix(topology.prefix), []);
});

test('names are validated and commands only run in the topology\'s own namespaces', { timeout: 30_000 }, async (t) => {
  const topology = new Topology();
  t.after(() => topology.destroy());
  const ns = await topology.addNamespace('n1');
  await assert.rejects(topology.addNamespace('n1'), /already exists/);
  await assert.rejects(topology.addNamespace('Bad Role'), /role/);
  await assert.rejects(topology.addVethPair(ns, 'a-name-over-15ch', ns, 'b'), /interface name/);
  await assert.rejects(topology.exec('some-other-namespace', ['true']), /not part of topology/);
  await assert.rejects(topology.exec(ns, ['sh', '-c', 'echo broken >&2; exit 3']), /exit 3: broken/);
  await assert.rejects(topology.exec(ns, ['sleep', '5'], { timeoutMs: 200 }), /timed out after 200 ms/);
});

test('sweepStale() removes namespaces of dead runs and keeps those of live ones', { timeout: 30_000 }, async (t) => {
  const live = new Topology();
  t.after(() => live.destroy());
  const kept = await live.addNamespace('kept');
  // A namespace of the project's scheme with no live owner, as a SIGKILLed run leaves it.
  const dead = new Topology();
  await dead.destroy();
  const stale = `${dead.prefix}-left-over`;
  execFileSync('ip', ['netns', 'add', stale]);
  t.after(() => execFileSync('sh', ['-c', `ip netns delete ${stale} 2>/dev/null || true`]));

  const swept = Topology.sweepStale();
  assert.ok(swept.includes(stale), `swept ${swept.join(' ')}`);
  assert.ok(!swept.includes(kept));
  assert.deepEqual(namespacesWithPrefix(live.prefix), [kept]);
  assert.deepEqual(namespacesWithPrefix(dead.prefix), []);
});
