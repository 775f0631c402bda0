/**
 * Run inside a node's namespace by test/hostile-daemon.test.ts: throws at a
 * running daemon's port API and introspect API what test/hostile-peers
 * throws at the servers in-process (random bytes, mutated bodies of the
 * real clients, random paths, a slow sender, 10,000 dropped connections),
 * and prints one JSON line: how many inputs, the answers by status, and
 * what answered 500.
 *
 *   node daemon-fuzz-child.js <port-api port> <introspect port> <seed>
 */
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { VECTORS_DIR, bytewise, churn, exchange, inParallel, mutated, randomBytes } from './peer-fuzz';

const [apiPort, introspectPort, seed] = process.argv.slice(2).map(Number);
const INPUTS = 400;
const CONNECTIONS = 10_000;
const statuses: Record<string, number> = {};
/** What answered 500: the request's first line and the answer's body. */
const internalErrors: string[] = [];

function request(method: string, target: string, body = ''): Buffer {
  return Buffer.from(`${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
}

async function send(port: number, bytes: Buffer[], delayMs = 0): Promise<void> {
  const exchanged = await exchange(port, bytes, { then: 'wait', delayMs, timeoutMs: 200, until: (received) => received.includes('\r\n\r\n') });
  const status = /^HTTP\/1\.1 (\d{3})/.exec(exchanged.received.toString('latin1'))?.[1] ?? (exchanged.closedByServer ? 'closed' : 'none');
  statuses[status] = (statuses[status] ?? 0) + 1;
  if (status === '500') internalErrors.push(`${bytes.map((chunk) => chunk.toString('latin1')).join('').split('\r\n')[0].slice(0, 120)} -> ${exchanged.received.toString('latin1').split('\r\n\r\n')[1]?.slice(0, 200)}`);
}

async function main(): Promise<void> {
  const vector = (file: string) => fs.readFileSync(path.join(VECTORS_DIR, 'port-ipc', file), 'utf8');
  const portBodies = [
    request('POST', '/port', vector('vrouter-port-control-add.json')),
    request('POST', '/port', vector('kubelet-add-port.json')),
    request('POST', '/vm', vector('cni-add-vm.json')),
    request('GET', '/vm-cfg/vm3'),
    request('POST', '/syncports'),
  ];
  const introspectRequests = ['/api/summary', '/api/vifs', '/api/routes?vrf=vn1', '/api/flows?limit=10', '/metrics', '/Snh_ItfReq', '/api/monitor/drops', '/api/capture/0?format=pcap'].map((target) =>
    request('GET', target),
  );
  const inputs = (arbitrary: fc.Arbitrary<Buffer>) => fc.sample(arbitrary, { seed, numRuns: INPUTS });
  const tasks: Array<{ port: number; bytes: Buffer }> = [
    ...inputs(randomBytes).map((bytes) => ({ port: apiPort, bytes })),
    ...inputs(mutated(portBodies)).map((bytes) => ({ port: apiPort, bytes })),
    ...inputs(randomBytes).map((bytes) => ({ port: introspectPort, bytes })),
    ...inputs(mutated(introspectRequests)).map((bytes) => ({ port: introspectPort, bytes })),
  ];
  await inParallel(tasks, 16, ({ port, bytes }) => send(port, [bytes]));
  await send(apiPort, bytewise(portBodies[0]), 1);
  await send(introspectPort, bytewise(introspectRequests[0]), 1);
  const prefixes = [Buffer.alloc(0), portBodies[0].subarray(0, 120), introspectRequests[6]];
  await churn(apiPort, CONNECTIONS, 100, (index) => prefixes[index % 2]);
  await churn(introspectPort, CONNECTIONS, 100, (index) => prefixes[index % 3 === 1 ? 2 : 0]);
  process.stdout.write(JSON.stringify({ inputs: tasks.length + 2, connections: 2 * CONNECTIONS, statuses, internalErrors }) + '\n');
}

main().catch((error: unknown) => {
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
