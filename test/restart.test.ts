/**
 * End to end: a `vrouter run` restarted under traffic (issue 15).
 *
 *   node0: a 10.1.1.3 (label 20)   vn1 route 10.96.0.10/32 -> node1:21
 *   node1: b 10.1.1.5 (label 21)   floating IP 10.96.0.10, tcp 80 -> 8080; echo servers on 8080 and 9000
 *
 * node1 (b's node: it holds the NAT flows of the ClusterIP) is SIGKILLed
 * while a streams to b directly and through the ClusterIP, and started
 * again: b keeps its eth0 and address, both connections go on with every
 * byte echoed and no reset, and the veth is re-attached (one XDP program on
 * it, the same I/O as before, no second device). Then node1's state file
 * changes (a policy denying TCP 9000) and it is restarted with SIGTERM: the
 * port comes back, the new policy holds (a new connection to 9000 fails,
 * ping works). Then `vrouter port delete` removes b's interface for good
 * and a restart removes a left-over veth of the daemon's naming. A pod on
 * a TAP (c, persistent) keeps the very same eth0 (ifindex, address, routes)
 * across a SIGKILL with its TCP connection going on; deleting its port
 * removes the TAP.
 * (--clean-exit, the harness's default: e2e-forwarding's SIGTERM test.)
 *
 * With a control node: node1 SIGKILLed under a ClusterIP connection, which
 * goes on; the port is reported and configured again, no route left stale.
 * Needs root and iproute2.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { Topology, requireCommands } from './support/netns';
import { VrouterCluster } from './support/vrouter-cluster';
import { RESTART_CLUSTER_IP as CLUSTER_IP, WEB_VRF, startControlledRestartCluster, startRestartTraffic } from './support/restart-workload';
import type { StateDocument } from '../src/control/config/state-schema';

if (process.getuid?.() !== 0) throw new Error('the e2e tests need root (network namespaces, veth pairs, raw sockets): run them as root, as .ci/run does');
requireCommands({ ip: 'iproute2', sysctl: 'procps' });

const A = { name: 'a', vn: 'vn1', ip: '10.1.1.3', label: 20 };
const C = { name: 'c', vn: 'vn1', ip: '10.1.1.7', label: 22, kind: 'tap' as const };
const B = { name: 'b', vn: 'vn1', ip: '10.1.1.5', label: 21, floatingIps: [{ ip: CLUSTER_IP, portMap: [{ protocol: 'tcp' as const, port: 80, targetPort: 8080 }] }] };

async function linkNames(topology: Topology, ns: string): Promise<string[]> {
  const links = JSON.parse(await topology.exec(ns, ['ip', '-j', 'link', 'show'])) as Array<{ ifname: string }>;
  return links.map((link) => link.ifname).sort();
}

/** How many XDP programs `ip link` shows on the device (0 or 1: a second attach would be refused). */
async function xdpPrograms(topology: Topology, ns: string, device: string): Promise<number> {
  const [link] = JSON.parse(await topology.exec(ns, ['ip', '-j', '-d', 'link', 'show', 'dev', device])) as Array<{ xdp?: unknown }>;
  return link.xdp === undefined ? 0 : 1;
}

describe('vrouter run restarted under traffic', { timeout: 180_000 }, () => {
  let topology: Topology;
  let cluster: VrouterCluster;

  before(async () => {
    topology = new Topology();
    cluster = await VrouterCluster.start(topology, { nodes: 2, vns: [{ name: 'vn1', subnet: '10.1.1.0/24', gateway: '10.1.1.1' }], restartable: true });
    await cluster.addPod(0, A);
    await cluster.addPod(1, B);
    await cluster.setRoute(0, 'vn1', `${CLUSTER_IP}/32`, [cluster.nexthopTo('b')], { vn: 'vn1' });
    await cluster.exec('a', ['ping', '-c', '1', '-W', '2', B.ip]);
  });

  after(async () => {
    await cluster?.stop().catch(() => undefined);
    await topology?.destroy();
  });

  test('SIGKILL and start again: both TCP connections (direct and through the ClusterIP) go on, every byte echoed, no reset; the veth is re-attached, not duplicated', () =>
    cluster.withLogs(async () => {
      const node1 = cluster.nodes[1];
      const b = cluster.pod('b');
      const nodeLinks = await linkNames(topology, node1.ns);
      const ioOf = async () => (await cluster.stats(1)).vifs.find((vif) => vif.name === b.tapName) as { io?: string; ioNote?: string } | undefined;
      const ioBefore = await ioOf();
      const traffic = await startRestartTraffic(cluster, {
        client: 'a',
        server: 'b',
        udpPort: 7000,
        pps: 1000,
        seconds: 8,
        echoPorts: [8080, 9000],
        targets: { direct: { host: B.ip, port: 9000 }, clusterIp: { host: CLUSTER_IP, port: 80 } },
      });
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      const { downMs, upMs } = await cluster.restartNode(1, { signal: 'SIGKILL' });
      process.stderr.write(`# node1 SIGKILLed: down ${downMs} ms, answering again ${upMs} ms later\n`);
      const result = await traffic.finish();
      process.stderr.write(`# ${JSON.stringify(result)}\n`);
      for (const [name, tcp] of Object.entries(result.tcp)) {
        assert.equal(tcp.error, null, `${name}: ${JSON.stringify(tcp)}`);
        assert.ok(tcp.closedCleanly && tcp.verified === tcp.sent && tcp.sent > 0, `${name}: ${JSON.stringify(tcp)}`);
      }
      // The UDP stream came back: most of it arrived, so forwarding resumed after the restart.
      assert.ok(result.udp.distinct > result.udpSent.sent / 2, JSON.stringify(result));
      assert.deepEqual(await linkNames(topology, b.ns), ['eth0', 'lo'], "b's eth0 stayed");
      assert.deepEqual(await linkNames(topology, node1.ns), nodeLinks, 'the restart added or lost a device on node1');
      assert.equal(await xdpPrograms(topology, node1.ns, b.tapName), 1);
      // The killed daemon's XDP link went with it: the new one attaches as the old one did (a link still held would make it fall back).
      const ioAfter = await ioOf();
      assert.equal(ioAfter?.io, ioBefore?.io, `before ${JSON.stringify(ioBefore)}, after ${JSON.stringify(ioAfter)}`);
      assert.match(fs.readFileSync(node1.logFile, 'utf8'), /"ports":1,"routes":\d+,"flows":[1-9]\d*.*restored from the snapshot/);
    }));

  test('a changed state file converges after a restart: the port comes back and the new policy applies', () =>
    cluster.withLogs(async () => {
      const node1 = cluster.nodes[1];
      const state = JSON.parse(fs.readFileSync(node1.stateFile, 'utf8')) as StateDocument;
      state.policies = [{ name: 'no-9000', source: 'vn1', destination: 'vn1', protocol: 'tcp', ports: 9000, action: 'deny' }];
      fs.writeFileSync(node1.stateFile, JSON.stringify(state, null, 2));
      await cluster.restartNode(1, { signal: 'SIGTERM' });
      await cluster.exec('a', ['ping', '-c', '1', '-W', '2', B.ip]);
      const probe = `const s = require('net').connect({ host: '${B.ip}', port: 9000 }); s.setTimeout(2000, () => { console.log('timeout'); process.exit(0); });
        s.on('connect', () => { console.log('connected'); process.exit(0); }); s.on('error', (e) => { console.log(e.code); process.exit(0); });`;
      const echo = cluster.spawn('b', [process.execPath, '-e', "require('net').createServer((s) => s.pipe(s)).listen(9000, () => console.log('listening'))"]);
      try {
        await new Promise((resolve) => setTimeout(resolve, 500));
        assert.equal((await cluster.exec('a', [process.execPath, '-e', probe])).trim(), 'timeout', 'a connection to 9000 was let through the new policy');
      } finally {
        echo.kill();
      }
      assert.match(fs.readFileSync(node1.logFile, 'utf8'), /"stateChanged":true.*restored from the snapshot/);
    }));

  test('a pod on a persistent TAP keeps its eth0 (same device, address, routes) across a SIGKILL, and its TCP connection goes on', () =>
    cluster.withLogs(async () => {
      const c = await cluster.addPod(1, C);
      await cluster.exec('a', ['ping', '-c', '1', '-W', '2', C.ip]);
      const eth0 = async () => JSON.parse(await topology.exec(c.ns, ['ip', '-j', 'addr', 'show', 'dev', 'eth0'])) as Array<{ ifindex: number; link_type: string; addr_info: Array<{ local: string }> }>;
      const routes = async () => (await topology.exec(c.ns, ['ip', 'route', 'show'])).trim();
      const [before] = await eth0();
      const routesBefore = await routes();
      const traffic = await startRestartTraffic(cluster, { client: 'a', server: 'c', udpPort: 7001, pps: 1000, seconds: 6, echoPorts: [9001], targets: { direct: { host: C.ip, port: 9001 } } });
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      await cluster.restartNode(1, { signal: 'SIGKILL' });
      const result = await traffic.finish();
      process.stderr.write(`# TAP pod: ${JSON.stringify(result)}\n`);
      const tcp = result.tcp.direct;
      assert.ok(tcp.error === null && tcp.closedCleanly && tcp.verified === tcp.sent && tcp.sent > 0, JSON.stringify(tcp));
      assert.ok(result.udp.distinct > result.udpSent.sent / 2, JSON.stringify(result));
      const [after] = await eth0();
      assert.equal(after.ifindex, before.ifindex, 'the TAP was made anew, not kept');
      assert.deepEqual(after.addr_info.map((address) => address.local), [C.ip]);
      assert.equal(await routes(), routesBefore);
      const vif = (await cluster.stats(1)).vifs.find((entry) => entry.name === c.tapName) as { io?: string } | undefined;
      assert.equal(vif?.io, 'tap');
      await cluster.deletePod('c');
      assert.deepEqual(await linkNames(topology, c.ns), ['lo'], 'the deleted port left its TAP behind');
    }));

  test('vrouter port delete still removes the pod interface; nothing of it comes back on the next restart, and a left-over veth goes', () =>
    cluster.withLogs(async () => {
      const node1 = cluster.nodes[1];
      const b = cluster.pod('b');
      await cluster.deletePod('b');
      assert.deepEqual(await linkNames(topology, b.ns), ['lo']);
      // What a daemon killed in the middle of a port add leaves: a veth of its naming that no port has.
      await topology.exec(node1.ns, ['ip', 'link', 'add', 'vtap7', 'type', 'veth', 'peer', 'name', 'leftover7']);
      await cluster.restartNode(1, { signal: 'SIGKILL' });
      assert.deepEqual(await linkNames(topology, b.ns), ['lo']);
      assert.deepEqual(await linkNames(topology, node1.ns), ['lo', 'underlay']);
    }));
});

describe('vrouter run restarted under traffic, with a control node', { timeout: 180_000 }, () => {
  let topology: Topology;
  let cluster: VrouterCluster;

  before(async () => {
    topology = new Topology();
    cluster = await startControlledRestartCluster(topology);
  });

  after(async () => {
    await cluster?.stop().catch(() => undefined);
    await topology?.destroy();
  });

  test('SIGKILL and start again: the ClusterIP connection goes on; the port is configured again, its routes are fresh', () =>
    cluster.withLogs(async () => {
      const node1 = cluster.nodes[1];
      const b = cluster.pod('b');
      const traffic = await startRestartTraffic(cluster, {
        client: 'a',
        server: 'b',
        udpPort: 7000,
        pps: 1000,
        seconds: 6,
        echoPorts: [8080],
        targets: { clusterIp: { host: CLUSTER_IP, port: 80 } },
      });
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      await cluster.restartNode(1, { signal: 'SIGKILL' });
      const result = await traffic.finish();
      assert.equal(result.tcp.clusterIp.error, null, JSON.stringify(result));
      assert.ok(result.tcp.clusterIp.closedCleanly, JSON.stringify(result));
      assert.ok(result.udp.distinct > result.udpSent.sent / 2, JSON.stringify(result));
      assert.deepEqual(await linkNames(topology, b.ns), ['eth0', 'lo']);
      await cluster.waitForSessions();
      // The control node answered the port reported again, and re-sent what the snapshot held as stale.
      const log = fs.readFileSync(node1.logFile, 'utf8');
      assert.match(log, /"restored":true,"msg":"port added \(configured by the control node\)"/);
      const [session] = await cluster.controlSessions(1);
      assert.equal(session.staleRoutes, 0, JSON.stringify(session));
      await cluster.waitForRoute(1, WEB_VRF, `${cluster.pod('a').ip}/32`);
      await cluster.exec('a', ['ping', '-c', '1', '-W', '2', b.ip]);
    }));
});
