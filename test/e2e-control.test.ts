/**
 * End to end with the control plane: a real `vrouter-control` process and
 * real `vrouter run --control` daemons in network namespaces; the harness
 * programs no route, every pod is added with labels only (or labels and an
 * address), and traffic is real.
 *
 * Cluster A: control0 198.18.0.2, node0..node2.
 *   anchor (node2, web)                       pings and is pinged throughout
 *   r0..r2 (node0, web, 10.1.1.50-52)         port add -> first echo reply from anchor, timed
 *   db-1 (node0, app=db)                      backs dbsvc 10.96.0.20 tcp 5432 -> 15432
 *   client (node1, web, uses=dbsvc)           reaches 10.96.0.20:5432; stranger (node1, default VN) does not
 *   be-0 (node0), be-1 (node1) (app=web)      back websvc 10.96.0.10 tcp 80 -> 8080: ECMP on node2 for
 *   fe (node2, web, uses=websvc)              ... whose flows to be-1 survive be-0's removal
 *   garbage to 5269; SIGKILL + restart of control0 during pings; a pod deleted meanwhile is swept.
 * Cluster B: control0 and control1, node0 and node1; one control node killed
 *   at a time during pings.
 *
 * Needs root and iproute2, iputils-ping; a missing one fails the file naming it.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { NetworkConfigDocument } from '../src/control/node/network-config';
import { Topology, requireCommands } from './support/netns';
import { ClusterPod, ProcessOutput, VrouterCluster } from './support/vrouter-cluster';
import { networkFqns } from '../src/control/ifmap/names';

/** A network.yaml VN's FQN and its routing instance: the VRF's name on the nodes. */
const VN = (name: string) => networkFqns(name).vn;
const VRF = (name: string) => networkFqns(name).routingInstance;

if (process.getuid?.() !== 0) throw new Error('the e2e tests need root (network namespaces, TAP devices, raw sockets): run them as root, as .ci/run does');
requireCommands({ ip: 'iproute2', ping: 'iputils-ping', sysctl: 'procps', stdbuf: 'coreutils' });

const DB_IP = '10.96.0.20';
const WEB_IP = '10.96.0.10';

const CONFIG_A: NetworkConfigDocument = {
  holdTime: 30,
  gracefulRestartTime: 60,
  // Every vrouter is listed, so a restarted control node sends End-of-RIB once all three are back.
  restartConvergenceTime: 20,
  vrouters: ['node0', 'node1', 'node2'],
  vns: [
    { name: 'default', subnet: '10.32.0.0/24' },
    { name: 'web', subnet: '10.1.1.0/24', gateway: '10.1.1.1' },
    { name: 'db', subnet: '10.2.0.0/24' },
    { name: 'backend', subnet: '10.2.2.0/24' },
  ],
  services: [
    { name: 'dbsvc', clusterIP: DB_IP, ports: [{ name: 'postgres', protocol: 'TCP', port: 5432, targetPort: 15432 }], selector: { app: 'db' } },
    { name: 'websvc', clusterIP: WEB_IP, ports: [{ protocol: 'TCP', port: 80, targetPort: 8080 }], selector: { app: 'web' } },
  ],
};

const CONFIG_B: NetworkConfigDocument = {
  holdTime: 30,
  restartConvergenceTime: 20,
  vrouters: ['node0', 'node1'],
  vns: [
    { name: 'default', subnet: '10.32.0.0/24' },
    { name: 'web', subnet: '10.1.1.0/24' },
  ],
};

/** A TCP server answering each line with "<pod> <line>". */
function echoServer(pod: string, port: number): string {
  return `require('net').createServer((socket) => {
      let pending = '';
      socket.setEncoding('utf8');
      socket.on('data', (chunk) => {
        pending += chunk;
        let at;
        while ((at = pending.indexOf('\\n')) >= 0) { socket.write(${JSON.stringify(pod)} + ' ' + pending.slice(0, at) + '\\n'); pending = pending.slice(at + 1); }
      });
      socket.on('error', () => {});
    }).listen(${port}, '0.0.0.0', () => console.log('listening'));`;
}

/** One connection, one line, one answer: prints the answering pod, "timeout" or the error code. argv: host port [timeoutMs]. */
const ASK = `
const [host, port, timeout] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3] || 1500)];
const socket = require('net').connect({ host, port });
let text = '';
socket.setEncoding('utf8');
socket.setTimeout(timeout, () => { console.log('timeout'); process.exit(0); });
socket.on('connect', () => socket.write('hello\\n'));
socket.on('data', (chunk) => { text += chunk; if (text.includes('\\n')) { console.log(text.split(' ')[0]); process.exit(0); } });
socket.on('error', (error) => { console.log(error.code || error.message); process.exit(0); });`;

/** count connections, one after the other; prints the answers' counts as JSON. argv: host port count. */
const ASK_MANY = `
const net = require('net');
const [host, port, count] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
const one = () => new Promise((resolve) => {
  const socket = net.connect({ host, port });
  let text = '';
  socket.setEncoding('utf8');
  socket.setTimeout(2000, () => { socket.destroy(); resolve('timeout'); });
  socket.on('connect', () => socket.write('hello\\n'));
  socket.on('data', (chunk) => { text += chunk; if (text.includes('\\n')) { socket.end(); resolve(text.split(' ')[0]); } });
  socket.on('error', (error) => resolve(error.code || error.message));
});
(async () => {
  const counts = {};
  for (let i = 0; i < count; i++) { const answer = await one(); counts[answer] = (counts[answer] || 0) + 1; }
  console.log(JSON.stringify(counts));
})();`;

/**
 * n long-lived connections, each sending a numbered line every 100 ms and
 * expecting "<pod> <n>" back. Prints "ready <json>" once each has an answer;
 * when a line comes on stdin it stops sending, waits a second for the last
 * answers (TCP retransmissions included) and prints the per-connection
 * results as JSON. argv: host port n.
 */
const LONG_LIVED = `
const net = require('net');
const [host, port, n] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
const connections = [];
for (let i = 0; i < n; i++) {
  const c = { id: i, backend: null, sent: 0, received: 0, lastAnswerAt: 0, maxGapMs: 0, error: null, socket: net.connect({ host, port }) };
  let pending = '';
  c.socket.setEncoding('utf8');
  c.socket.on('data', (chunk) => {
    pending += chunk;
    let at;
    while ((at = pending.indexOf('\\n')) >= 0) {
      const [pod] = pending.slice(0, at).split(' ');
      pending = pending.slice(at + 1);
      const now = Date.now();
      if (c.backend === null) c.backend = pod;
      else if (c.backend !== pod) c.error = 'answered by ' + pod + ' after ' + c.backend;
      if (c.lastAnswerAt) c.maxGapMs = Math.max(c.maxGapMs, now - c.lastAnswerAt);
      c.lastAnswerAt = now;
      c.received++;
    }
  });
  c.socket.on('error', (error) => (c.error = error.code || error.message));
  c.socket.on('close', () => { if (!c.error && sending) c.error = 'closed'; });
  connections.push(c);
}
let sending = true;
const tick = setInterval(() => {
  for (const c of connections) if (!c.socket.destroyed && c.socket.readyState === 'open') { c.socket.write(c.sent + '\\n'); c.sent++; }
  if (!ready && connections.every((c) => c.backend !== null)) { ready = true; console.log('ready ' + JSON.stringify(connections.map((c) => c.backend))); }
}, 100);
let ready = false;
process.stdin.once('data', () => {
  sending = false;
  clearInterval(tick);
  setTimeout(() => {
    console.log(JSON.stringify(connections.map(({ socket, ...c }) => c)));
    process.exit(0);
  }, 1000);
});`;

function nodeScript(script: string, ...args: Array<string | number>): string[] {
  return [process.execPath, '-e', script, ...args.map(String)];
}

function ipNumber(ip: string): number {
  return ip.split('.').reduce((value, octet) => value * 256 + Number(octet), 0);
}

function inSubnet(ip: string, subnet: string): boolean {
  const [base, length] = subnet.split('/');
  const size = 2 ** (32 - Number(length));
  return Math.floor(ipNumber(ip) / size) === Math.floor(ipNumber(base) / size);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** A ping running in the background until stop(), which returns what it counted. */
function startPing(cluster: VrouterCluster, from: string, to: string, interval = '0.05') {
  // Line-buffered: ping's stdout into a pipe is block-buffered otherwise.
  const output = new ProcessOutput(cluster.spawn(from, ['stdbuf', '-oL', 'ping', '-n', '-i', interval, '-W', '1', to]));
  return {
    output,
    started: () => output.waitFor(/^PING /m, 5_000, `ping ${from} -> ${to}`),
    /** The first reply: ping is running across the overlay. */
    answered: () => output.waitFor(/bytes from/, 5_000, `a first reply to ${from} -> ${to}`),
    async stop(): Promise<{ transmitted: number; received: number; missing: number[]; text: string }> {
      process.kill(output.child.pid as number, 'SIGINT');
      await output.exited;
      const match = /(\d+) packets transmitted, (\d+) received/.exec(output.stdout);
      if (!match) throw new Error(`ping ${from} -> ${to} printed no summary:\n${output.stdout}\n${output.stderr}`);
      // The sequence numbers answered: a gap is a lost ping; only the last one may still be in flight when SIGINT stops ping.
      const answered = new Set([...output.stdout.matchAll(/icmp_seq=(\d+)/g)].map((m) => Number(m[1])));
      const missing = [];
      for (let seq = 1; seq < Number(match[1]); seq++) if (!answered.has(seq)) missing.push(seq);
      return { transmitted: Number(match[1]), received: Number(match[2]), missing, text: output.stdout.split('\n').slice(-4).join('\n') };
    },
  };
}

/**
 * Runs fn while the pings run, then stops them; a failure of fn is rethrown
 * as it is, else every ping must have run long enough and lost nothing.
 */
async function stopPingsAfter(pings: Array<ReturnType<typeof startPing>>, when: string, minimum: number, fn: () => Promise<void>): Promise<void> {
  let failure: unknown = null;
  try {
    for (const ping of pings) await ping.answered();
    await fn();
  } catch (error) {
    failure = error;
  }
  const results = await Promise.all(pings.map((ping) => ping.stop().catch((error: Error) => ({ transmitted: -1, received: -1, missing: [], text: error.message }))));
  for (const result of results) process.stderr.write(`# ping ${when}: ${result.received}/${result.transmitted} answered\n`);
  if (failure !== null) throw failure;
  for (const result of results) {
    assert.ok(result.transmitted > minimum, `the ping ran too short: ${result.text}`);
    assert.deepEqual(result.missing, [], `pings lost ${when} (icmp_seq unanswered):\n${result.text}`);
  }
}

function logSince(file: string, offset: number): string {
  return fs.readFileSync(file, 'utf8').slice(offset);
}

function logSize(file: string): number {
  return fs.statSync(file).size;
}

describe('control node A: labels, reachability, services, ECMP, garbage, graceful restart', { timeout: 180_000 }, () => {
  let topology: Topology;
  let cluster: VrouterCluster;

  before(async () => {
    topology = new Topology();
    cluster = await VrouterCluster.start(topology, { nodes: 3, control: { config: CONFIG_A } });
    await cluster.withLogs(async () => {
      await cluster.waitForSessions();
      await cluster.addPod(2, { name: 'anchor', labels: { name: 'web' } });
    });
  });

  after(async () => {
    try {
      await cluster?.stop();
    } finally {
      await topology?.destroy();
    }
  });

  test('every daemon has an Established XMPP session with the control node', () =>
    cluster.withLogs(async () => {
      for (const node of cluster.nodes) {
        const sessions = await cluster.controlSessions(node.index);
        assert.equal(sessions.length, 1);
        assert.equal(sessions[0].state, 'Established', `${node.name}: ${JSON.stringify(sessions)}`);
        assert.match(sessions[0].peer, /198\.18\.0\.2:5269/);
      }
      const anchor = cluster.pod('anchor');
      assert.equal(anchor.vn, VN('web'));
      assert.ok(inSubnet(anchor.ip, '10.1.1.0/24') && anchor.ip !== '10.1.1.1', `anchor got ${anchor.ip}`);
    }));

  test('a pod added on node0 is reachable from node2: port add -> first packet forwarded', () =>
    cluster.withLogs(async () => {
      const samples: number[] = [];
      for (let round = 0; round < 3; round++) {
        const { pod, ms, answerMs } = await cluster.timePortAddToReply(0, { name: `r${round}`, labels: { name: 'web' }, ip: `10.1.1.${50 + round}` }, 'anchor');
        assert.equal(pod.vn, VN('web'));
        assert.equal(pod.ip, `10.1.1.${50 + round}`);
        samples.push(ms);
        process.stderr.write(`# port add on node0 -> first echo reply at anchor (node2): ${ms.toFixed(1)} ms (port add answered after ${answerMs.toFixed(1)} ms)\n`);
      }
      process.stderr.write(`# port-add-to-first-packet: median ${median(samples).toFixed(1)} ms of ${samples.map((ms) => ms.toFixed(1)).join(', ')}\n`);
      // The route came over XMPP: node2 has 10.1.1.50/32 to node0 with r0's label.
      const route = await cluster.route(2, VRF('web'), '10.1.1.50/32');
      assert.equal(route?.label, cluster.pod('r0').label, JSON.stringify(route));
    }));

  test('pods added with labels only get their VN, an address of its subnet, their ClusterIP and policy', () =>
    cluster.withLogs(async () => {
      const node1LogOffset = logSize(cluster.nodes[1].logFile);
      const db = await cluster.addPod(0, { name: 'db-1', labels: { name: 'db', app: 'db' } });
      const client = await cluster.addPod(1, { name: 'client', labels: { name: 'web', uses: 'dbsvc' } });
      const stranger = await cluster.addPod(1, { name: 'stranger', labels: { name: 'no-such-vn' } });
      process.stderr.write(`# db-1 ${db.ip} (${db.vn}), client ${client.ip} (${client.vn}), stranger ${stranger.ip} (${stranger.vn})\n`);

      assert.equal(db.vn, VN('db'));
      assert.ok(inSubnet(db.ip, '10.2.0.0/24') && db.ip !== '10.2.0.1', `db-1 got ${db.ip}`);
      assert.equal(client.vn, VN('web'));
      assert.ok(inSubnet(client.ip, '10.1.1.0/24') && client.ip !== '10.1.1.1', `client got ${client.ip}`);
      const webIps = cluster.podList.filter((pod) => pod.vn === VN('web')).map((pod) => pod.ip);
      assert.equal(new Set(webIps).size, webIps.length, `duplicate addresses in web: ${webIps.join(', ')}`);
      assert.equal(stranger.vn, VN('default'), 'a name label naming no VN gives the default VN');
      assert.ok(inSubnet(stranger.ip, '10.32.0.0/24'), `stranger got ${stranger.ip}`);

      // The daemon set the chosen address up in the pod namespace.
      for (const pod of [db, client, stranger]) {
        const addresses = await cluster.exec(pod.name, ['ip', '-o', '-4', 'address', 'show', 'dev', 'eth0']);
        assert.match(addresses, new RegExp(`inet ${pod.ip.replace(/\./g, '\\.')}/32`), `${pod.name}: ${addresses}`);
      }
      // db-1 backs dbsvc: its vif carries the ClusterIP with the port map.
      const vif = await cluster.introspect<{ floatingIps: Array<{ ip: string; portMap: Array<{ protocol: number; port: number; targetPort: number }> }> }>(0, '/api/vifs/db-1');
      assert.deepEqual(vif.floatingIps, [{ ip: DB_IP, portMap: [{ protocol: 6, port: 5432, targetPort: 15432 }] }]);
      // client's VRF learned the ClusterIP (to db-1's label on node0); the stranger's did not.
      const route = await cluster.waitForRoute(1, VRF('web'), `${DB_IP}/32`);
      assert.equal(route?.label, db.label);
      assert.equal(await cluster.route(1, VRF('default'), `${DB_IP}/32`), undefined, 'the default VN uses no service');
      // The policy came with client's configuration: "web uses dbsvc in db tcp/5432".
      await cluster.waitUntil(
        async () => new RegExp(`port client \\(default/client\\): \\S+ in ${VRF('web')}, 0 floating IPs, [1-9]\\d* policies`).test(logSince(cluster.nodes[1].logFile, node1LogOffset)),
        5_000,
        () => "client's configuration with a policy in node1's log",
      );

      const server = new ProcessOutput(cluster.spawn('db-1', nodeScript(echoServer('db-1', 15432))));
      await server.waitFor(/listening/, 10_000, "db-1's server");
      const ask = async (from: string, host: string, port: number) => (await cluster.exec(from, nodeScript(ASK, host, port))).trim();
      assert.equal(await ask('client', DB_IP, 5432), 'db-1', 'client (uses=dbsvc) reaches dbsvc');
      assert.equal(await ask('stranger', DB_IP, 5432), 'timeout', 'stranger (default VN) must not reach dbsvc');
      assert.equal(await ask('client', DB_IP, 5433), 'timeout', 'client may use dbsvc on 5432 only');
      assert.equal(await ask('client', db.ip, 15432), 'timeout', 'client may reach the ClusterIP, not the pod');
      const drops = (await cluster.stats(1)).drops;
      process.stderr.write(`# node1 drops: ${JSON.stringify(drops)}\n`);
      assert.ok((drops['flow-action-drop'] ?? 0) > 0, 'the port 5433 attempt was denied by policy');
      assert.ok((drops['no-route'] ?? 0) > 0, 'the stranger and pod-address attempts found no route');
    }));

  test('a ClusterIP with backends on node0 and node1 is an ECMP route on node2', () =>
    cluster.withLogs(async () => {
      const backends: ClusterPod[] = [];
      for (const [node, name] of [[0, 'be-0'], [1, 'be-1']] as const) {
        const pod = await cluster.addPod(node, { name, labels: { name: 'backend', app: 'web' } });
        assert.equal(pod.vn, VN('backend'));
        backends.push(pod);
        const server = new ProcessOutput(cluster.spawn(name, nodeScript(echoServer(name, 8080))));
        await server.waitFor(/listening/, 10_000, `${name}'s server`);
      }
      await cluster.addPod(2, { name: 'fe', labels: { name: 'web', uses: 'websvc' } });
      const route = await cluster.waitForRoute(2, VRF('web'), `${WEB_IP}/32`, (candidate) => candidate?.members?.length === 2);
      assert.deepEqual(
        route!.members!.map((member) => member.label).sort(),
        backends.map((pod) => pod.label).sort(),
        `ECMP members: ${JSON.stringify(route)}`,
      );
      const counts = JSON.parse(await cluster.exec('fe', nodeScript(ASK_MANY, WEB_IP, 80, 30), { timeoutMs: 60_000 })) as Record<string, number>;
      process.stderr.write(`# 30 connections to ${WEB_IP}:80 from node2: ${JSON.stringify(counts)}\n`);
      assert.equal((counts['be-0'] ?? 0) + (counts['be-1'] ?? 0), 30, JSON.stringify(counts));
      assert.ok(counts['be-0'] > 0 && counts['be-1'] > 0, `both backends should answer: ${JSON.stringify(counts)}`);
    }));

  test('a pod on a node that hosts a backend (in another VN) gets the ECMP route with the local backend too', () =>
    cluster.withLogs(async () => {
      // be-0 (backend VN) is on node0; fe0 (web VN, uses websvc) joins it there.
      await cluster.addPod(0, { name: 'fe0', labels: { name: 'web', uses: 'websvc' } });
      const route = await cluster
        .waitForRoute(0, VRF('web'), `${WEB_IP}/32`, (candidate) => candidate?.members?.length === 2, 3_000)
        .catch(async () => cluster.route(0, VRF('web'), `${WEB_IP}/32`));
      process.stderr.write(`# node0's ${WEB_IP}/32 in web (be-0 local, be-1 on node1): ${JSON.stringify(route ?? null)}\n`);
      assert.equal(route?.members?.length, 2, `node0 should reach be-0 (label ${cluster.pod('be-0').label}, local) and be-1: ${JSON.stringify(route ?? null)}`);
      const counts = JSON.parse(await cluster.exec('fe0', nodeScript(ASK_MANY, WEB_IP, 80, 20), { timeoutMs: 60_000 })) as Record<string, number>;
      assert.ok(counts['be-0'] > 0 && counts['be-1'] > 0, `both backends should answer fe0: ${JSON.stringify(counts)}`);
    }));

  test('removing a backend shrinks the ECMP route; flows to the other backend continue', () =>
    cluster.withLogs(async () => {
      const connections = 12;
      const child = cluster.spawn('fe', nodeScript(LONG_LIVED, WEB_IP, 80, connections), { stdio: ['pipe', 'pipe', 'pipe'] });
      const client = new ProcessOutput(child);
      const ready = await client.waitFor(/^ready (.*)$/m, 10_000, 'the long-lived connections');
      const assignment = JSON.parse(ready[1]) as string[];
      assert.ok(assignment.includes('be-0') && assignment.includes('be-1'), `the connections should use both backends: ${assignment.join(' ')}`);
      await sleep(500);
      const removedAt = Date.now();
      await cluster.deletePod('be-0');
      const route = await cluster.waitForRoute(2, VRF('web'), `${WEB_IP}/32`, (candidate) => candidate !== undefined && candidate.members === null);
      process.stderr.write(`# be-0 removed: node2's ${WEB_IP}/32 has one next hop after ${Date.now() - removedAt} ms\n`);
      assert.equal(route!.label, cluster.pod('be-1').label);
      // The flows to be-1 go on for a while over the changed route.
      await sleep(2_000);
      child.stdin!.end('stop\n');
      await client.exited;
      const results = JSON.parse(client.stdout.trim().split('\n').pop()!) as Array<{ id: number; backend: string; sent: number; received: number; maxGapMs: number; error: string | null }>;
      const survivors = results.filter((result) => result.backend === 'be-1');
      const orphans = results.filter((result) => result.backend === 'be-0');
      process.stderr.write(
        `# ${survivors.length} connections on be-1: ${survivors.map((r) => `${r.received}/${r.sent} max gap ${r.maxGapMs} ms${r.error ? ` ${r.error}` : ''}`).join('; ')}\n` +
          `# ${orphans.length} connections on be-0 (removed): ${orphans.map((r) => `${r.received}/${r.sent}${r.error ? ` ${r.error}` : ''}`).join('; ')}\n`,
      );
      for (const result of survivors) {
        assert.equal(result.error, null, `connection ${result.id} to be-1: ${result.error}`);
        assert.ok(result.sent >= 25, `connection ${result.id} sent only ${result.sent}`);
        assert.equal(result.received, result.sent, `connection ${result.id} to be-1 lost answers`);
        // Answers come every 100 ms; a loaded machine may delay some, a broken flow stops them.
        assert.ok(result.maxGapMs < 2000, `connection ${result.id} to be-1 stalled ${result.maxGapMs} ms`);
      }
      // New connections all go to the remaining backend.
      const counts = JSON.parse(await cluster.exec('fe', nodeScript(ASK_MANY, WEB_IP, 80, 10), { timeoutMs: 60_000 })) as Record<string, number>;
      assert.deepEqual(counts, { 'be-1': 10 });
    }));

  test('garbage written to the control port does not crash the control node or disturb its sessions', () =>
    cluster.withLogs(async () => {
      const nodeLogOffsets = cluster.nodes.map((node) => logSize(node.logFile));
      const garbage: Array<[string, Buffer]> = [
        ['64 KiB of random bytes', randomBytes(65536)],
        ['a stream header, then binary', Buffer.concat([Buffer.from("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='network-control@contrailsystems.com' from='intruder'>"), randomBytes(4096)])],
        ['mismatched tags', Buffer.from("<stream:stream from='x'><iq type='set'><pubsub></iq></pubsub></a></b>".repeat(50))],
        ['an unterminated 17 MiB tag name (over the 16 MiB stanza limit)', Buffer.concat([Buffer.from('<'), Buffer.alloc(17 << 20, 'a')])],
        ['NUL bytes and keepalive bytes', Buffer.concat([Buffer.alloc(1024), Buffer.from([0xc8, 0x80, 0xc8, 0x80]), Buffer.alloc(1024, 0xff)])],
      ];
      const outcomes = await Promise.all(garbage.map(([, data], index) => cluster.writeToControlNode(index % cluster.nodes.length, data, { waitMs: 3_000 })));
      garbage.forEach(([what], index) => {
        const outcome = outcomes[index];
        process.stderr.write(`# garbage "${what}": ${outcome.closedByPeer ? 'closed by the control node' : 'still open after 3 s'}, answer ${JSON.stringify(outcome.received.slice(0, 160))}\n`);
      });
      assert.equal(cluster.controlNode(0).exit, undefined, 'the control node exited');
      garbage.forEach(([what], index) => assert.ok(outcomes[index].closedByPeer, `the control node kept the connection of "${what}" open`));
      // The existing sessions did not notice.
      for (const node of cluster.nodes) {
        const sessions = await cluster.controlSessions(node.index);
        assert.equal(sessions[0].state, 'Established', `${node.name}: ${JSON.stringify(sessions)}`);
        const log = logSince(node.logFile, nodeLogOffsets[node.index]);
        assert.doesNotMatch(log, /session down/, `${node.name} lost its session`);
      }
      // And it still configures ports and distributes their routes.
      const late = await cluster.addPod(1, { name: 'late', labels: { name: 'web' } });
      assert.ok(inSubnet(late.ip, '10.1.1.0/24'));
      await cluster.waitForRoute(2, VRF('web'), `${late.ip}/32`);
      const reply = await cluster.tryExec('anchor', ['ping', '-n', '-c', '3', '-i', '0.2', '-W', '2', late.ip]);
      assert.match(reply.stdout, /3 packets transmitted, 3 received/, reply.stdout);
    }));

  test('SIGKILL and restart of the control node: no ping lost, stale routes swept after End-of-RIB', () =>
    cluster.withLogs(async () => {
      const anchor = cluster.pod('anchor');
      const doomed = await cluster.addPod(1, { name: 'doomed', labels: { name: 'web' } });
      await cluster.waitForRoute(2, VRF('web'), `${doomed.ip}/32`);
      const pings = [startPing(cluster, 'anchor', cluster.pod('r0').ip), startPing(cluster, 'client', anchor.ip)];
      await stopPingsAfter(pings, 'during the control node restart', 50, async () => {
        await sleep(1_000);
        const killedAt = Date.now();
        const registeredAtKill = cluster.podList.length;
        await cluster.killControlNode(0, 'SIGKILL');
        await cluster.waitUntil(
          async () => (await Promise.all(cluster.nodes.map((node) => cluster.controlSessions(node.index)))).every((sessions) => sessions[0].state !== 'Established'),
          10_000,
          () => 'every session down after the kill',
        );
        // Deleted while nobody can hear it: node2 keeps the route, stale.
        await cluster.deletePod('doomed');
        const stale = await cluster.route(2, VRF('web'), `${doomed.ip}/32`);
        assert.ok(stale, `node2 should keep ${doomed.ip}/32 while the control node is down`);
        const down = await cluster.controlSessions(2);
        assert.ok(down[0].staleRoutes > 0, `node2 should count stale routes: ${JSON.stringify(down)}`);
        await sleep(1_000);
        const controlLogOffset = fs.statSync(cluster.controlNode(0).logFile).size;
        await cluster.startControlNode(0);
        const restartedAt = Date.now();
        // Every pod registered before the kill came back from --state, doomed included (its deletion came after).
        const readBack = /(\d+) registered pods read back from /.exec(fs.readFileSync(cluster.controlNode(0).logFile, 'utf8').slice(controlLogOffset));
        assert.equal(Number(readBack?.[1]), registeredAtKill, 'the restarted control node read its pods back');
        await cluster.waitForSessions(20_000);
        const established = Date.now();
        await cluster.waitForRoute(2, VRF('web'), `${doomed.ip}/32`, (route) => route === undefined, 30_000);
        await cluster.waitForRoute(0, VRF('web'), `${doomed.ip}/32`, (route) => route === undefined, 10_000);
        const swept = Date.now();
        for (const node of cluster.nodes) {
          const sessions = await cluster.controlSessions(node.index);
          assert.equal(sessions[0].staleRoutes, 0, `${node.name} still has stale routes: ${JSON.stringify(sessions)}`);
        }
        assert.match(fs.readFileSync(cluster.nodes[2].logFile, 'utf8'), /End-of-RIB; removed \d+ stale routes/);
        process.stderr.write(
          `# control node down ${restartedAt - killedAt} ms; sessions back ${established - restartedAt} ms after the restart; stale route swept ${swept - restartedAt} ms after it\n`,
        );
        await sleep(1_000);
      });
      // The routes of the live pods all came back.
      for (const pod of ['anchor', 'r0', 'client', 'late']) {
        const where = cluster.pod(pod);
        for (const node of cluster.nodes.filter((candidate) => candidate.index !== where.node)) {
          assert.ok(await cluster.route(node.index, VRF('web'), `${where.ip}/32`), `${node.name} lost the route to ${pod} ${where.ip}`);
        }
      }
    }));
});

describe('two control nodes: one killed at a time, nothing lost', { timeout: 120_000 }, () => {
  let topology: Topology;
  let cluster: VrouterCluster;

  before(async () => {
    topology = new Topology();
    cluster = await VrouterCluster.start(topology, { nodes: 2, control: { config: CONFIG_B, controlNodes: 2 } });
    await cluster.withLogs(async () => {
      await cluster.waitForSessions();
      await cluster.addPod(0, { name: 'p0', labels: { name: 'web' } });
      await cluster.addPod(1, { name: 'p1', labels: { name: 'web' } });
      await cluster.waitForRoute(0, VRF('web'), `${cluster.pod('p1').ip}/32`);
      await cluster.waitForRoute(1, VRF('web'), `${cluster.pod('p0').ip}/32`);
    });
  });

  after(async () => {
    try {
      await cluster?.stop();
    } finally {
      await topology?.destroy();
    }
  });

  test('both daemons have sessions with both control nodes; the pods got distinct addresses', () =>
    cluster.withLogs(async () => {
      for (const node of cluster.nodes) {
        const sessions = await cluster.controlSessions(node.index);
        assert.deepEqual(
          sessions.map((session) => session.state),
          ['Established', 'Established'],
          `${node.name}: ${JSON.stringify(sessions)}`,
        );
      }
      const [p0, p1] = [cluster.pod('p0'), cluster.pod('p1')];
      assert.ok(inSubnet(p0.ip, '10.1.1.0/24') && inSubnet(p1.ip, '10.1.1.0/24'));
      assert.notEqual(p0.ip, p1.ip);
      // Registered at both (`vrouter port add --control-api <control0> --control-api <control1>`), with one address.
      for (const control of cluster.controlNodes) {
        const pods = (await cluster.apiRequest(0, 'GET', '/pods', undefined, new URL(control.podApi).host)).body as Array<{ vmUuid: string; ip: string }>;
        assert.deepEqual(pods.map(({ vmUuid, ip }) => [vmUuid, ip]).sort(), [['p0', p0.ip], ['p1', p1.ip]], control.name);
      }
    }));

  test('killing control0, then (after its restart) control1, loses no ping', () =>
    cluster.withLogs(async () => {
      const [p0, p1] = [cluster.pod('p0'), cluster.pod('p1')];
      const pings = [startPing(cluster, 'p0', p1.ip), startPing(cluster, 'p1', p0.ip)];
      await stopPingsAfter(pings, 'with a control node killed', 40, async () => {
        await sleep(500);
        await cluster.killControlNode(0, 'SIGKILL');
        await sleep(1_000);
        // With control0 gone, control1 alone configures a new pod and distributes its route.
        const p2 = await cluster.addPod(1, { name: 'p2', labels: { name: 'web' } });
        assert.ok(![p0.ip, p1.ip].includes(p2.ip), `p2 got an address in use: ${p2.ip}`);
        await cluster.waitForRoute(0, VRF('web'), `${p2.ip}/32`);
        const reply = await cluster.tryExec('p0', ['ping', '-n', '-c', '2', '-i', '0.2', '-W', '2', p2.ip]);
        assert.match(reply.stdout, /2 packets transmitted, 2 received/, reply.stdout);
        await cluster.startControlNode(0);
        await cluster.waitForSessions(20_000);
        await sleep(500);
        await cluster.killControlNode(1, 'SIGKILL');
        await sleep(1_500);
        // Routes stay: control0 has them all.
        for (const [node, pod] of [[0, p1], [0, p2], [1, p0]] as const) assert.ok(await cluster.route(node, VRF('web'), `${pod.ip}/32`), `node${node} lost ${pod.name}`);
        await cluster.startControlNode(1);
        await cluster.waitForSessions(20_000);
      });
    }));
});
