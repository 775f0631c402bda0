/**
 * The control channel at scale: 200 vrouter sessions against one control
 * node, the real `vrouter-control` in its own process (so its memory is
 * its own), each session a real XMPP session over its own socket
 * (test/support/peer-sessions.ts) that subscribes to the VN `web`,
 * publishes its pod's route and programs what the control node pushes into
 * a recording DataplaneAccess. Then one more vrouter flaps: connects,
 * publishes a route (with a new label each time), and drops (every other
 * time without a stream close, as a crash), ten times a second, 30 times. The 200 must stay Established, keep getting route updates while
 * it flaps, and all end with the same routes.
 *
 * Printed: the time to establish all 200, to converge on their 200 routes,
 * to converge again after the flapping, and the control node's RSS.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ControlNode } from '../src/control/node/control-node';
import { parseNetworkConfig } from '../src/control/node/network-config';
import { encodeStanza, encodeStreamOpen, vrouterToControl } from '../src/control/xmpp/codec';
import { BGP_PEER_RESOURCE, CONTROL_NODE_JID, KEEPALIVE } from '../src/control/xmpp/stanza';
import { SimulatedVrouter, routeEntry } from './support/peer-sessions';
import { networkFqns } from '../src/control/ifmap/names';

const SESSIONS = 200;
const FLAPS_PER_SECOND = 10;
const FLAP_SECONDS = 3;
const CONTROL_BIN = path.resolve(__dirname, '..', '..', 'bin', 'vrouter-control.js');
const CONFIG = `
holdTime: 90
gracefulRestartTime: 1
restartConvergenceTime: 0
vns:
  - { name: default, subnet: 10.32.0.0/24 }
  - { name: web, subnet: 10.1.0.0/16 }
`;

/** The routing instance of VN `web`, where the sessions subscribe and publish. */
const WEB = networkFqns('web').routingInstance;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resident set of a process, from /proc. */
function rssMiB(pid: number): number {
  const line = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(line?.[1] ?? 0) / 1024;
}

/** The pod route of stable vrouter `index`: its own /32, at its own underlay address and label. */
function podAddress(index: number): string {
  return `10.1.${(index + 2) >> 8}.${(index + 2) & 0xff}`;
}

function podRoute(index: number) {
  return routeEntry(`${podAddress(index)}/32`, `198.18.${index >> 8}.${index & 0xff}`, 100 + index);
}

/**
 * A control node installs only what it gave a vrouter's ports: each route the
 * sessions publish is a pod registered for that vrouter on the pod API first.
 */
async function registerPod(vrouter: string, name: string, ip: string): Promise<void> {
  const response = await fetch(`http://127.0.0.1:${apiPort}/pods`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ vrouter, vmUuid: name, name, namespace: 'default', labels: { name: 'web' }, ip }),
  });
  if (response.status !== 200) throw new Error(`registering ${name} (${ip}) on ${vrouter}: ${response.status} ${await response.text()}`);
}

let scratch: string;
let control: ChildProcess;
let port: number;
let apiPort: number;
let stderr = '';
const vrouters: SimulatedVrouter[] = [];

before(async () => {
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'vrouter-control-scale-'));
  const configFile = path.join(scratch, 'network.yaml');
  fs.writeFileSync(configFile, CONFIG);
  control = spawn(process.execPath, [CONTROL_BIN, '--config', configFile, '--listen', '127.0.0.1:0', '--api', '127.0.0.1:0'], { stdio: ['ignore', 'ignore', 'pipe'] });
  [port, apiPort] = await new Promise<[number, number]>((resolve, reject) => {
    control.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      const listening = /control node listening on 127\.0\.0\.1:(\d+)/.exec(stderr);
      const api = /pod API listening on 127\.0\.0\.1:(\d+)/.exec(stderr);
      if (listening && api) resolve([Number(listening[1]), Number(api[1])]);
    });
    control.once('exit', (code) => reject(new Error(`vrouter-control exited (${code}):\n${stderr}`)));
  });
});

after(async () => {
  for (const vrouter of vrouters) vrouter.close();
  await sleep(100);
  control?.kill('SIGTERM');
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
});

test(`${SESSIONS} vrouter sessions converge; one flapping ${FLAPS_PER_SECOND} times a second disturbs none of them`, { timeout: 110_000 }, async () => {
  for (let index = 0; index < SESSIONS; index++) await registerPod(`vrouter-${index}`, `pod-${index}`, podAddress(index));
  await registerPod('flapper', 'flapper-pod', '10.1.250.1');
  for (let index = 1; index <= FLAP_SECONDS * 10; index++) await registerPod('vrouter-0', `pod-0-${index}`, `10.1.240.${index}`);
  const rssIdle = rssMiB(control.pid!);
  const connectStart = Date.now();
  for (let index = 0; index < SESSIONS; index++) vrouters.push(new SimulatedVrouter(`vrouter-${index}`));
  await Promise.all(vrouters.map((vrouter) => vrouter.connect(port)));
  const establishMs = Date.now() - connectStart;

  const publishStart = Date.now();
  vrouters.forEach((vrouter, index) => {
    vrouter.subscribe(WEB);
    vrouter.publish(WEB, podRoute(index));
    vrouter.endOfRib();
  });
  const allRoutes = (vrouter: SimulatedVrouter, count: number) => () => vrouter.access.routes.size === count;
  await Promise.all(vrouters.map((vrouter) => vrouter.until(allRoutes(vrouter, SESSIONS), 60_000, `all ${SESSIONS} routes`)));
  const convergeMs = Date.now() - publishStart;
  const reference = [...vrouters[0].access.routes].sort();
  for (const vrouter of vrouters) assert.deepEqual([...vrouter.access.routes].sort(), reference, vrouter.name);
  const rssConverged = rssMiB(control.pid!);

  // The flapper: connect, subscribe, publish a route with a new label, drop; ten times a second.
  const flapPrefix = '10.1.250.1/32';
  const flaps = FLAPS_PER_SECOND * FLAP_SECONDS;
  const flapStart = Date.now();
  let flapRate = 0;
  let lastDropAt = 0;
  const flapping = (async () => {
    for (let flap = 0; flap < flaps; flap++) {
      const session = new SimulatedVrouter('flapper');
      await session.connect(port);
      session.subscribe(WEB);
      session.publish(WEB, routeEntry(flapPrefix, '198.18.250.1', 5000 + flap));
      // Every other flap, the last one too, crashes (no stream close: graceful restart keeps its route a second); the others leave cleanly.
      if (flap % 2 === 1) session.drop();
      else session.close();
      // On a fixed schedule: a late flap is followed at once by the next.
      if (flap < flaps - 1) await sleep(Math.max(0, flapStart + ((flap + 1) * 1000) / FLAPS_PER_SECOND - Date.now()));
    }
    lastDropAt = Date.now();
    // Flaps after the first, over the time since it.
    flapRate = ((flaps - 1) * 1000) / (lastDropAt - flapStart);
  })();
  // Meanwhile a stable vrouter publishes a second route every 100 ms: every session must get each one.
  const duringPrefixes: string[] = [];
  /** Per route published while flapping: ms until every session had it. */
  const spreadMs: Array<Promise<number>> = [];
  const publishing = (async () => {
    for (let index = 1; index <= FLAP_SECONDS * 10; index++) {
      const prefix = `10.1.240.${index}/32`;
      duringPrefixes.push(prefix);
      const at = Date.now();
      vrouters[0].publish(WEB, routeEntry(prefix, '198.18.0.0', 20_000 + index));
      spreadMs.push(Promise.all(vrouters.map((vrouter) => vrouter.until(() => vrouter.access.routes.has(`${WEB} ${prefix}`), 30_000, prefix))).then(() => Date.now() - at));
      await sleep(100);
    }
  })();
  let rssFlapping = 0;
  const sampling = (async () => {
    for (let second = 0; second < FLAP_SECONDS; second++) {
      await sleep(1000);
      rssFlapping = Math.max(rssFlapping, rssMiB(control.pid!));
    }
  })();
  await Promise.all([flapping, publishing, sampling]);

  // The last flap dropped or closed; after the grace period (1 s) its route is gone everywhere.
  const expected = SESSIONS + duringPrefixes.length;
  await Promise.all(
    vrouters.map((vrouter) =>
      vrouter.until(() => vrouter.access.routes.size === expected && !vrouter.access.routes.has(`${WEB} ${flapPrefix}`), 30_000, `the ${expected} routes after the flapping`),
    ),
  );
  const reconvergeMs = Date.now() - lastDropAt;
  const spread = (await Promise.all(spreadMs)).sort((a, b) => a - b);
  const final = [...vrouters[0].access.routes].sort();
  for (const prefix of duringPrefixes) assert.ok(vrouters[0].access.routes.has(`${WEB} ${prefix}`), prefix);
  for (const vrouter of vrouters) {
    assert.ok(vrouter.isEstablished, `${vrouter.name}: ${vrouter.closedReason}`);
    assert.deepEqual([...vrouter.access.routes].sort(), final, vrouter.name);
  }
  const programmingCalls = vrouters.reduce((total, vrouter) => total + vrouter.access.calls, 0);
  console.log(
    `# ${SESSIONS} sessions established in ${establishMs} ms; their ${SESSIONS} routes converged on every session in ${convergeMs} ms\n` +
      `# ${flaps} flaps at ${flapRate.toFixed(1)} a second; all ${SESSIONS} sessions stayed Established and converged to the same ${expected} routes ${reconvergeMs} ms after the last flap, a crash (grace period 1 s); ${programmingCalls} route programming calls in all\n` +
      `# a route published while it flapped reached all ${SESSIONS} sessions in ${spread[spread.length >> 1]} ms (median), ${spread[spread.length - 1]} ms (max)\n` +
      `# vrouter-control RSS: ${rssIdle.toFixed(1)} MiB idle, ${rssConverged.toFixed(1)} MiB with ${SESSIONS} sessions, at most ${rssFlapping.toFixed(1)} MiB while flapping, ${rssMiB(control.pid!).toFixed(1)} MiB after`,
  );
  assert.ok(flapRate >= FLAPS_PER_SECOND * 0.8, `only ${flapRate.toFixed(1)} flaps a second`);
  assert.equal(control.exitCode, null, `vrouter-control exited:\n${stderr.slice(-2000)}`);
});

test('a vrouter that keeps its session alive but reads nothing is dropped after the hold time, not buffered for ever', { timeout: 110_000 }, async () => {
  const holdTime = 3;
  // The publisher is a route source with no pods (publishes unchecked), as the control bench's.
  const node = new ControlNode({ config: parseNetworkConfig(CONFIG.replace('holdTime: 90', `holdTime: ${holdTime}`), 'stalled.yaml'), unrestrictedPublishers: new Set(['publisher']) });
  const nodePort = (await node.listen(0, '127.0.0.1')).port;
  const publisher = new SimulatedVrouter('publisher');
  try {
    await publisher.connect(nodePort, holdTime);
    publisher.subscribe(WEB);
    // The stalled vrouter: opens, subscribes, sends keepalives, and never reads again.
    const stalled = net.connect({ host: '127.0.0.1', port: nodePort });
    await new Promise((resolve) => stalled.once('connect', resolve));
    const bgp = vrouterToControl('stalled', BGP_PEER_RESOURCE);
    stalled.write(encodeStreamOpen({ from: 'stalled', to: CONTROL_NODE_JID }));
    stalled.write(encodeStanza({ kind: 'subscribe', ...bgp, id: 's1', vrf: WEB, instanceId: 1 }));
    stalled.pause();
    const keepalives = setInterval(() => stalled.write(KEEPALIVE), 500);
    stalled.on('error', () => undefined);
    try {
      await sleep(200);
      assert.ok(node.connectedVrouters().includes('stalled'));
      // Far more than the kernel buffers of the stalled socket hold: the control node must wait for it to read.
      const routes = 40_000;
      for (let index = 0; index < routes; index++) publisher.publish(WEB, routeEntry(`10.2.${index >> 8}.${index & 0xff}/32`, '198.18.0.2', 16 + index));
      await publisher.until(() => publisher.access.routes.size === routes, 60_000, `its ${routes} routes back`);
      const deadline = Date.now() + 3 * holdTime * 1000;
      while (node.connectedVrouters().includes('stalled') && Date.now() < deadline) await sleep(100);
      assert.deepEqual(node.connectedVrouters(), ['publisher'], 'the stalled vrouter is still connected');
      assert.ok(publisher.isEstablished, `the publisher's session: ${publisher.closedReason}`);
    } finally {
      clearInterval(keepalives);
      stalled.destroy();
    }
  } finally {
    publisher.close();
    await node.close();
  }
});
