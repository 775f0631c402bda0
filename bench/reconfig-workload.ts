/**
 * Traffic for bench:reconfig, bench:soak and test/reconfig-soak.test.ts,
 * run with node inside the pods' namespaces. Every script runs until
 * SIGTERM, then prints one JSON line and exits, so a measurement lasts
 * exactly as long as the reconfiguration it covers.
 *
 * - stream: UDP at a fixed rate, a sequence number in each datagram; the
 *   receiver counts distinct sequence numbers (lost = sent - distinct).
 * - probes: every interval, one datagram per target from a fresh socket (a
 *   new source port: a new flow, so each probe meets the current routes,
 *   ECMP members and policy); the receiver notes the arrival time of each,
 *   per address, and forwardingChange() reads from those times when a
 *   change took effect.
 * - TCP churn: connections opened, one 1 KiB echo checked, closed, one
 *   after another.
 * - an introspect poller: GETs of a node's introspect API in a loop.
 */
import path from 'node:path';
import { ProcessOutput, VrouterCluster } from '../test/support/vrouter-cluster';

const ROUTE_CHURN_SCRIPT = path.join(__dirname, 'route-churn.js');

const now = `const { performance } = require('perf_hooks'); const now = () => performance.timeOrigin + performance.now();`;

/** argv: host port pps. */
const STREAM_SENDER = `
const [host, port, pps] = process.argv.slice(1);
const socket = require('dgram').createSocket('udp4');
let sent = 0;
const start = process.hrtime.bigint();
const timer = setInterval(() => {
  const due = Math.floor(Number(process.hrtime.bigint() - start) / 1e9 * Number(pps));
  // A buffer per datagram: send() reads it later.
  while (sent < due) { const payload = Buffer.alloc(64); payload.writeUInt32BE(sent, 0); socket.send(payload, Number(port), host); sent++; }
}, 1);
process.on('SIGTERM', () => { clearInterval(timer); setTimeout(() => { process.stdout.write(JSON.stringify({ sent }) + '\\n', () => process.exit(0)); }, 100); });
console.log('sending');`;

/**
 * argv: port. A 4 MiB receive buffer (this kernel's rmem_max; the default
 * holds about 280 datagrams): a receiver not scheduled for a while under the
 * bench's load then loses nothing, and the vrouters' losses stand alone.
 */
const STREAM_RECEIVER = `
${now}
const socket = require('dgram').createSocket({ type: 'udp4', recvBufferSize: 4 << 20 });
const seen = new Uint8Array(1 << 24);
let received = 0, distinct = 0, last = 0, longest = 0;
socket.on('message', (message) => {
  const t = now();
  if (received > 0 && t - last > longest) longest = t - last;
  last = t;
  received++;
  const sequence = message.readUInt32BE(0) & 0xffffff;
  if (!seen[sequence]) { seen[sequence] = 1; distinct++; }
});
socket.bind(Number(process.argv[1]), () => console.log('listening'));
process.on('SIGTERM', () => { process.stdout.write(JSON.stringify({ received, distinct, longestGapMs: longest }) + '\\n', () => process.exit(0)); });`;

/**
 * argv: intervalMs host:port... Source ports are taken in turn from
 * 20000-59999, not from the kernel's random ephemeral choice: a probe then
 * meets no flow an earlier probe made (within 40,000 probes per target).
 */
const PROBE_SENDER = `
const dgram = require('dgram');
const [intervalMs, ...targets] = process.argv.slice(1);
const parsed = targets.map((target) => { const at = target.lastIndexOf(':'); return [target.slice(0, at), Number(target.slice(at + 1))]; });
let sent = 0, next = 0;
const payload = Buffer.alloc(16);
const timer = setInterval(() => {
  const port = 20000 + (next++ % 40000);
  for (const [host, targetPort] of parsed) {
    // Every target's probe of this tick from the same port: the sockets share it.
    const socket = dgram.createSocket({ type: 'udp4', reuseAddr: true });
    socket.on('error', () => socket.close());
    socket.bind(port, () => socket.send(payload, targetPort, host, () => socket.close()));
    sent++;
  }
}, Number(intervalMs));
process.on('SIGTERM', () => { clearInterval(timer); process.stdout.write(JSON.stringify({ sent }) + '\\n', () => process.exit(0)); });
console.log('sending');`;

/** argv: address:port... (address 0.0.0.0 for any). */
const PROBE_RECEIVER = `
${now}
const dgram = require('dgram');
const listens = process.argv.slice(1);
const arrivals = {};
let bound = 0;
for (const listen of listens) {
  const at = listen.lastIndexOf(':');
  const times = (arrivals[listen] = []);
  const socket = dgram.createSocket('udp4');
  socket.on('message', () => times.push(Math.round(now() * 10) / 10));
  socket.bind(Number(listen.slice(at + 1)), listen.slice(0, at), () => { if (++bound === listens.length) console.log('listening'); });
}
process.on('SIGTERM', () => { process.stdout.write(JSON.stringify({ arrivals }) + '\\n', () => process.exit(0)); });`;

/** argv: port. Echoes every connection. */
const TCP_ECHO = `
require('net').createServer((socket) => { socket.pipe(socket); socket.on('error', () => {}); }).listen(Number(process.argv[1]), '0.0.0.0', () => console.log('listening'));`;

/** argv: host port. Opens a connection, checks one 1 KiB echo, closes; again until SIGTERM. */
const TCP_CHURN = `
const net = require('net');
const [host, port] = process.argv.slice(1);
const chunk = Buffer.alloc(1024, 7);
let completed = 0, failed = 0, lastError = null, stopping = false;
function once() {
  if (stopping) return;
  let echoed = 0, finished = false;
  const socket = net.connect({ host, port: Number(port) });
  const done = (error) => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    if (error) { failed++; lastError = error; socket.destroy(); } else { completed++; socket.end(); }
    setTimeout(once, 5);
  };
  const timer = setTimeout(() => done('timeout'), 3000);
  socket.on('connect', () => socket.write(chunk));
  socket.on('data', (data) => { echoed += data.length; if (echoed >= chunk.length) done(null); });
  socket.on('error', (error) => done(error.code || error.message));
}
once();
process.on('SIGTERM', () => { stopping = true; process.stdout.write(JSON.stringify({ completed, failed, lastError }) + '\\n', () => process.exit(0)); });
console.log('started');`;

/** argv: host:port intervalMs path... GETs each path in turn every interval; counts answers by status. */
const INTROSPECT_POLLER = `
const http = require('http');
const [target, intervalMs, ...paths] = process.argv.slice(1);
const at = target.lastIndexOf(':');
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
let ok = 0, failed = 0, lastError = null, next = 0;
function poll() {
  const request = http.get({ host: target.slice(0, at), port: Number(target.slice(at + 1)), path: paths[next++ % paths.length], agent }, (response) => {
    response.resume();
    response.on('end', () => { if (response.statusCode === 200) ok++; else { failed++; lastError = 'status ' + response.statusCode; } });
  });
  request.on('error', (error) => { failed++; lastError = error.code || error.message; });
}
const timer = setInterval(poll, Number(intervalMs));
process.on('SIGTERM', () => { clearInterval(timer); process.stdout.write(JSON.stringify({ ok, failed, lastError }) + '\\n', () => process.exit(0)); });
console.log('polling');`;

export interface StreamResult {
  sent: number;
  received: number;
  distinct: number;
  lost: number;
  longestGapMs: number;
  /**
   * Of the lost: dropped by the kernel in the pods, not by the vrouter: the
   * receiving socket's buffer full (RcvbufErrors of the receiver's namespace,
   * whose only UDP receiver this stream is) and sends refused (SndbufErrors of
   * the sender's).
   */
  droppedInPods: { receiveBuffer: number; sendBuffer: number };
}

/** The Udp: counters of /proc/net/snmp in the pod's namespace. */
async function udpCounters(cluster: VrouterCluster, pod: string): Promise<Record<string, number>> {
  const lines = (await cluster.exec(pod, ['cat', '/proc/net/snmp'])).split('\n').filter((line) => line.startsWith('Udp:'));
  const [names, values] = lines.map((line) => line.split(/\s+/).slice(1));
  return Object.fromEntries(names.map((name, index) => [name, Number(values[index])]));
}

export interface TcpChurnResult {
  completed: number;
  failed: number;
  lastError: string | null;
}

function lastJson<T>(output: ProcessOutput, what: string): T {
  const line = output.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as T;
  } catch {
    throw new Error(`${what} printed no result: stdout ${output.stdout.slice(-300)} stderr ${output.stderr.slice(-300)}`);
  }
}

/** SIGTERM to a script, then its JSON line. */
async function stopScript<T>(output: ProcessOutput, what: string): Promise<T> {
  output.child.kill('SIGTERM');
  await output.exited;
  return lastJson<T>(output, what);
}

function nodeScript(script: string, ...args: Array<string | number>): string[] {
  return [process.execPath, '-e', script, ...args.map(String)];
}

/** Numbered datagrams at pps from one socket (one flow) to host:port; stop() resolves to how many were sent. */
export async function startStreamSender(cluster: VrouterCluster, from: string, host: string, port: number, pps: number): Promise<{ stop(): Promise<number> }> {
  const sender = new ProcessOutput(cluster.spawn(from, nodeScript(STREAM_SENDER, host, port, pps)));
  await sender.waitFor(/sending/, 10_000, `the stream sender in ${from}`);
  return { stop: async () => (await stopScript<{ sent: number }>(sender, `the stream sender in ${from}`)).sent };
}

/** A UDP stream from one pod to another at pps; stop() stops the sender first, then reads the receiver. */
export async function startStream(cluster: VrouterCluster, from: string, to: string, port: number, pps: number): Promise<{ stop(): Promise<StreamResult> }> {
  const receiver = new ProcessOutput(cluster.spawn(to, nodeScript(STREAM_RECEIVER, port)));
  await receiver.waitFor(/listening/, 10_000, `the stream receiver in ${to}`);
  const [receiverBefore, senderBefore] = await Promise.all([udpCounters(cluster, to), udpCounters(cluster, from)]);
  const sender = await startStreamSender(cluster, from, cluster.pod(to).ip, port, pps);
  return {
    async stop() {
      const sent = await sender.stop();
      // Datagrams still in flight arrive meanwhile.
      await new Promise((resolve) => setTimeout(resolve, 300));
      const received = await stopScript<{ received: number; distinct: number; longestGapMs: number }>(receiver, 'the stream receiver');
      const [receiverAfter, senderAfter] = await Promise.all([udpCounters(cluster, to), udpCounters(cluster, from)]);
      const droppedInPods = {
        receiveBuffer: receiverAfter.RcvbufErrors - receiverBefore.RcvbufErrors,
        sendBuffer: senderAfter.SndbufErrors - senderBefore.SndbufErrors,
      };
      return { sent, ...received, lost: sent - received.distinct, droppedInPods };
    },
  };
}

/** Arrival times (epoch ms) at a probe receiver, per listen address. */
export type Arrivals = Record<string, number[]>;

export interface ProbeReceiver {
  stop(): Promise<Arrivals>;
}

export async function startProbeReceiver(cluster: VrouterCluster, pod: string, listens: string[]): Promise<ProbeReceiver> {
  const receiver = new ProcessOutput(cluster.spawn(pod, nodeScript(PROBE_RECEIVER, ...listens)));
  await receiver.waitFor(/listening/, 10_000, `the probe receiver in ${pod}`);
  return { stop: async () => (await stopScript<{ arrivals: Arrivals }>(receiver, `the probe receiver in ${pod}`)).arrivals };
}

export async function startProbeSender(cluster: VrouterCluster, pod: string, intervalMs: number, targets: string[]): Promise<{ stop(): Promise<number> }> {
  const sender = new ProcessOutput(cluster.spawn(pod, nodeScript(PROBE_SENDER, intervalMs, ...targets)));
  await sender.waitFor(/sending/, 10_000, `the probe sender in ${pod}`);
  return { stop: async () => (await stopScript<{ sent: number }>(sender, `the probe sender in ${pod}`)).sent };
}

export async function startTcpEcho(cluster: VrouterCluster, pod: string, port: number): Promise<{ stop(): void }> {
  const server = new ProcessOutput(cluster.spawn(pod, nodeScript(TCP_ECHO, port)));
  await server.waitFor(/listening/, 10_000, `the TCP echo server in ${pod}`);
  return { stop: () => server.child.kill('SIGTERM') };
}

export async function startTcpChurn(cluster: VrouterCluster, from: string, host: string, port: number): Promise<{ stop(): Promise<TcpChurnResult> }> {
  const client = new ProcessOutput(cluster.spawn(from, nodeScript(TCP_CHURN, host, port)));
  await client.waitFor(/started/, 10_000, `the TCP churn client in ${from}`);
  return { stop: () => stopScript<TcpChurnResult>(client, 'the TCP churn client') };
}

export interface RouteSource {
  /** Publishes or withdraws a probe route; the epoch ms it left. */
  command(op: 'add' | 'del', prefix: string): Promise<number>;
  /** Routes added and removed by the churn. */
  stop(): Promise<{ added: number; removed: number }>;
}

/**
 * route-churn.js in control0's namespace, as route source `name` (the
 * control node must list it: ControlOptions.routeSources): rate routes a
 * second added and removed in vrf, window of them in place, all leading to
 * pod toPod.
 */
export async function startRouteSource(
  cluster: VrouterCluster,
  options: { name: string; vrf: string; vn: string; toPod: string; rate: number; window: number },
): Promise<RouteSource> {
  const control = cluster.controlNode(0);
  const target = cluster.pod(options.toPod);
  const argv = [control.endpoint, options.name, options.vrf, options.vn, cluster.nodes[target.node].underlayIp, target.label, options.rate, options.window].map(String);
  const child = cluster.topology.spawn(control.ns, [process.execPath, ROUTE_CHURN_SCRIPT, ...argv], { stdio: ['pipe', 'pipe', 'pipe'] });
  const output = new ProcessOutput(child);
  await output.waitFor(/"established":true/, 10_000, 'the route source subscribed');
  let commands = 0;
  return {
    async command(op, prefix) {
      const id = `c${commands++}`;
      child.stdin!.write(`${op} ${prefix} ${id}\n`);
      const match = await output.waitFor(new RegExp(`"id":"${id}".*?"at":([\\d.]+)`), 10_000, `the route source's answer to ${op} ${prefix}`);
      return Number(match[1]);
    },
    async stop() {
      child.kill('SIGTERM');
      await output.exited;
      return lastJson<{ added: number; removed: number }>(output, 'the route source');
    },
  };
}

export interface PollResult {
  ok: number;
  failed: number;
  lastError: string | null;
}

/** Polls a node's introspect API (one kept-alive connection) from inside its namespace. */
export async function startIntrospectPoller(cluster: VrouterCluster, nodeIndex: number, intervalMs: number, paths: string[]): Promise<{ stop(): Promise<PollResult> }> {
  const poller = new ProcessOutput(cluster.spawnNode(nodeIndex, nodeScript(INTROSPECT_POLLER, cluster.nodes[nodeIndex].introspect, intervalMs, ...paths)));
  await poller.waitFor(/polling/, 10_000, `the introspect poller of node${nodeIndex}`);
  return { stop: () => stopScript<PollResult>(poller, `the introspect poller of node${nodeIndex}`) };
}

/** A probe still arriving this close to the next change never stopped. */
export const STILL_ARRIVING_MS = 100;

/**
 * When a change took effect, read from a probe's arrival times: for a
 * change that makes the probe arrive ('starts'), ms from `at` to the first
 * arrival after it; for one that ends it ('stops'), ms from `at` to the last
 * arrival before `until` (0 when none came after `at`). null: the change
 * did not take effect before `until` (a probe that should start never
 * arrived; one that should stop still arrived within STILL_ARRIVING_MS of
 * `until`).
 */
export function forwardingChange(times: number[], at: number, until: number, effect: 'starts' | 'stops'): number | null {
  const inWindow = times.filter((time) => time >= at && time < until);
  if (effect === 'starts') return inWindow.length > 0 ? inWindow[0] - at : null;
  if (inWindow.length === 0) return 0;
  const last = inWindow[inWindow.length - 1];
  return last >= until - STILL_ARRIVING_MS ? null : last - at;
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}
