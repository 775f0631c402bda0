/**
 * What the IPv6 end-to-end tests do inside pods: wait for the default route
 * a router advertisement gives, and move bytes over TCP between two pods
 * (node scripts run with `node -e`, the server reporting what it received),
 * directly or through a ClusterIP.
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { ProcessOutput, VrouterCluster } from './vrouter-cluster';

/** Waits until the pod has a default route learned by router advertisement; returns it. */
export async function defaultRouteByRa(cluster: VrouterCluster, pod: string): Promise<string> {
  let shown = '';
  for (let attempt = 0; attempt < 100; attempt++) {
    shown = (await cluster.exec(pod, ['ip', '-6', 'route', 'show', 'default'])).trim();
    if (/proto ra/.test(shown)) return shown;
    await sleep(200);
  }
  throw new Error(`${pod}: no default route from a router advertisement after 20 s (ip -6 route show default: ${JSON.stringify(shown)})`);
}

/** Accepts one connection on `port` (all IPv6 addresses), hashes what comes until its end and answers with that. */
const TCP_SERVER = (port: number) => `const net = require('net'), crypto = require('crypto');
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    const hash = crypto.createHash('sha256'); let bytes = 0;
    socket.on('data', (chunk) => { hash.update(chunk); bytes += chunk.length; });
    socket.on('end', () => {
      const line = JSON.stringify({ sha256: hash.digest('hex'), bytes, peer: socket.remoteAddress, local: socket.localAddress, localPort: socket.localPort });
      console.log(line); socket.end(line); server.close();
    });
  });
  server.listen(${port}, '::', () => console.log('listening'));`;

/** Sends `bytes` random bytes to host:port, then prints its own hash, the address it reached and the server's answer. */
const TCP_CLIENT = (host: string, port: number, bytes: number) => `const net = require('net'), crypto = require('crypto');
  const data = crypto.randomBytes(${bytes});
  let remote = null;
  const socket = net.connect({ host: '${host}', port: ${port}, allowHalfOpen: true }, () => { remote = socket.remoteAddress; socket.end(data); });
  let reply = '';
  socket.setEncoding('utf8');
  socket.on('data', (text) => (reply += text));
  socket.on('end', () => console.log(JSON.stringify({ sha256: crypto.createHash('sha256').update(data).digest('hex'), bytes: data.length, remote, reply: JSON.parse(reply) })));
  socket.on('error', (error) => { console.error(error.message); process.exit(1); });`;

export interface TcpTransfer {
  /** The client's view: the hash and size of what it sent and the address it reached. */
  sha256: string;
  bytes: number;
  remote: string;
  /** The server's view: what it received, from which address, on which local address and port. */
  reply: { sha256: string; bytes: number; peer: string; local: string; localPort: number };
  /** How the server process ended. */
  serverExit: { code: number | null; signal: NodeJS.Signals | null };
}

export interface TcpTransferSpec {
  server: string;
  listenPort: number;
  client: string;
  /** Where the client connects: the server pod's address or a ClusterIP. */
  host: string;
  port: number;
  bytes: number;
}

/** Starts the server in its pod, sends from the client pod, and returns both views once the server has exited. */
export async function tcpTransfer(cluster: VrouterCluster, spec: TcpTransferSpec): Promise<TcpTransfer> {
  const server = new ProcessOutput(cluster.spawn(spec.server, [process.execPath, '-e', TCP_SERVER(spec.listenPort)]));
  await server.waitFor(/listening/, 10_000, 'the TCP server listening');
  const output = await cluster.exec(spec.client, [process.execPath, '-e', TCP_CLIENT(spec.host, spec.port, spec.bytes)], { timeoutMs: 60_000 });
  const client = JSON.parse(output) as Omit<TcpTransfer, 'serverExit'>;
  return { ...client, serverExit: await server.exited };
}

export interface ClusterIpTransferSpec {
  client: { name: string; ip6: string };
  backend: { name: string; ip6: string };
  clusterIp6: string;
  /** The service port the client connects to, and the backend's port DNAT leads to. */
  port: number;
  targetPort: number;
  bytes: number;
}

/** TCP from the client pod to the ClusterIP: the bytes arrive intact at the backend's own address and target port, from the client's address, and the client sees only the ClusterIP. */
export async function assertTcpThroughClusterIp(cluster: VrouterCluster, spec: ClusterIpTransferSpec): Promise<void> {
  const { client, backend } = spec;
  const result = await tcpTransfer(cluster, { server: backend.name, listenPort: spec.targetPort, client: client.name, host: spec.clusterIp6, port: spec.port, bytes: spec.bytes });
  assert.equal(result.reply.sha256, result.sha256);
  assert.equal(result.remote, spec.clusterIp6, 'the client talks to the ClusterIP');
  assert.deepEqual([result.reply.peer, result.reply.local, result.reply.localPort], [client.ip6, backend.ip6, spec.targetPort], 'the backend sees the client, at its own address and port');
  assert.deepEqual(result.serverExit, { code: 0, signal: null });
}
