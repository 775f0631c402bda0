/**
 * Hostile or broken peers against the three listeners of a node, each a
 * real server on a real socket in this process:
 *
 *   - the control node's XMPP listener (ControlNode), while two
 *     well-behaved vrouter sessions established before keep exchanging
 *     routes;
 *   - the daemon's port API (createPortApi over the daemon's AgentPorts and
 *     PortStore, a stand-in attacher instead of a dataplane);
 *   - the introspect HTTP API (IntrospectServer over a stand-in dataplane
 *     that answers after a delay, as a busy worker does).
 *
 * Each gets random bytes, mutations of valid inputs (the vectors of
 * test/vectors), every valid input split at every byte, a byte at a time
 * from a slow sender, oversized elements and bodies, and 10,000
 * connections opened and dropped (some mid-request or mid-stanza).
 * Properties: nothing throws past the server, the heap after a full
 * collection is back within a stated bound of where it was, the same
 * server still serves a well-formed request, and the well-behaved sessions
 * keep their session and get every route update. fast-check runs with a
 * fixed seed (HOSTILE_SEED to change it) and prints it with a
 * counterexample, which is also written to test/corpus/peers/; the corpus
 * is replayed first.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import pino from 'pino';
import { ControlNode } from '../src/control/node/control-node';
import { parseNetworkConfig } from '../src/control/node/network-config';
import { STREAM_CLOSE, encodeStanza, vrouterToControl } from '../src/control/xmpp/codec';
import { BGP_PEER_RESOURCE, CONFIG_RESOURCE, SentStanza } from '../src/control/xmpp/stanza';
import { MAX_STANZA_BYTES } from '../src/control/xmpp/stream-parser';
import { createPortApi } from '../src/control/agent/port-api';
import { PortStore } from '../src/control/agent/port-store';
import { AgentPorts } from '../src/daemon/agent-ports';
import { IntrospectServer } from '../src/daemon/introspect-server';
import { SharedRing } from '../src/dataplane/io/shared-ring';
import {
  Exchange,
  MiB,
  RUNS_FACTOR,
  SEED,
  VECTORS_DIR,
  bytewise,
  churn,
  corpusInputs,
  exchange,
  heapAfterGc,
  mutated,
  randomBytes,
  saveToCorpus,
  everySplit,
  inParallel,
} from './support/peer-fuzz';
import { SimulatedVrouter, routeEntry } from './support/peer-sessions';

/** Heap growth allowed over a whole block of fuzzing (measured growth is printed). */
const HEAP_BOUND = 16 * MiB;
const CHURN_CONNECTIONS = 10_000;
const CHURN_CONCURRENCY = 100;
const log = pino({ level: 'silent' });

/**
 * Runs a fast-check property over real sockets, inputs sent in batches of
 * up to 16 connections at once; the inputs of a counterexample are saved to
 * the corpus as `<target>--<broke>-<n>.bin` and reported with the seed.
 */
async function checkProperty(target: string, broke: string, input: fc.Arbitrary<Buffer>, numRuns: number, predicate: (bytes: Buffer) => Promise<void>): Promise<void> {
  const batch = fc.array(input, { minLength: 1, maxLength: 16 });
  const details = await fc.check(
    fc.asyncProperty(batch, async (inputs) => void (await Promise.all(inputs.map(predicate)))),
    { seed: SEED, numRuns: Math.round(numRuns * RUNS_FACTOR) },
  );
  if (!details.failed) return;
  const inputs = (details.counterexample?.[0] ?? []) as Buffer[];
  const saved = inputs.map((bytes, index) => saveToCorpus(target, `${broke}-${index}`, bytes));
  const error = details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance);
  assert.fail(`${fc.defaultReportMessage(details)}\n\n${error}\n\nSaved to the corpus:\n${saved.join('\n')}`);
}

function heapReport(what: string, before: number, after: number): void {
  const growth = (after - before) / MiB;
  console.log(`# ${what}: heap ${(before / MiB).toFixed(1)} MiB before, ${(after / MiB).toFixed(1)} MiB after (${growth >= 0 ? '+' : ''}${growth.toFixed(1)} MiB, bound ${HEAP_BOUND / MiB} MiB)`);
  assert.ok(after - before < HEAP_BOUND, `${what}: the heap grew by ${growth.toFixed(1)} MiB`);
}

function httpRequest(method: string, urlPath: string, body = '', headers: Record<string, string> = {}): Buffer {
  const lines = [`${method} ${urlPath} HTTP/1.1`, 'Host: 127.0.0.1', ...Object.entries(headers).map(([key, value]) => `${key}: ${value}`)];
  if (body !== '' || method === 'POST' || method === 'PUT') lines.push(`Content-Length: ${Buffer.byteLength(body)}`);
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n${body}`);
}

/** Requests of any method to paths made of the servers' words, escapes (good and malformed) and random text. */
function randomPathRequests(words: string[]): fc.Arbitrary<Buffer> {
  const segment = fc.oneof(fc.constantFrom(...words, '%', '%zz', '%E0%A4%A', '%2F', '..', '*', ''), fc.string({ maxLength: 12 }).map(encodeURI));
  const query = fc.array(fc.tuple(fc.constantFrom('vrf', 'prefix', 'ip', 'port', 'protocol', 'offset', 'limit', 'format', 'family', 'name'), segment), { maxLength: 4 });
  return fc
    .tuple(fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'HEAD'), fc.array(segment, { minLength: 1, maxLength: 4 }), query)
    .map(([method, segments, pairs]) => {
      const search = pairs.length === 0 ? '' : `?${pairs.map(([key, value]) => `${key}=${value}`).join('&')}`;
      return httpRequest(method, `/${segments.join('/')}${search}`, method === 'POST' || method === 'PUT' ? '{}' : '', { 'Content-Type': 'application/json' });
    });
}

/** The status of the first HTTP answer in what a server sent, or null. */
function statusOf(received: Buffer): number | null {
  const match = /^HTTP\/1\.1 (\d{3}) /.exec(received.subarray(0, 32).toString('latin1'));
  return match ? Number(match[1]) : null;
}

/**
 * Something over a limit: refused with one of `statuses`, or the connection
 * reset while we still sent (the server answered and closed with our bytes
 * unread; the reset can discard the answer before it is read).
 */
function assertRefusedAsTooLarge(exchanged: Exchange, statuses = [413]): void {
  const status = statusOf(exchanged.received);
  const refused = status === null ? exchanged.closedByServer : statuses.includes(status);
  assert.ok(refused, `an oversized request: ${exchanged.received.toString('latin1').slice(0, 100)}`);
}

/** Messages of exceptions thrown by JavaScript itself: in an answer, a bug let through. */
const JS_EXCEPTION = /URI malformed|Cannot read propert|Cannot set propert|is not a function|is not defined|is not iterable|Maximum call stack|Invalid (array|string) length|Invalid URL/;

/** A whole HTTP answer: its headers and the body they announce (a stream never is: its first bytes are taken as the answer). */
function httpAnswerComplete(received: Buffer): boolean {
  const end = received.indexOf('\r\n\r\n');
  if (end < 0) return false;
  const head = received.subarray(0, end).toString('latin1');
  const length = /\r\ncontent-length: *(\d+)/i.exec(head);
  if (length) return received.length - end - 4 >= Number(length[1]);
  return /\r\ntransfer-encoding: *chunked/i.test(head) && received.length > end + 4;
}

/** Whatever an HTTP server sends back is an HTTP answer (or nothing, when it just closed). */
function assertHttpAnswer(exchanged: Exchange, input: Buffer): void {
  if (exchanged.received.length === 0) return;
  assert.notEqual(statusOf(exchanged.received), null, `not an HTTP answer to ${JSON.stringify(input.toString('latin1').slice(0, 200))}: ${JSON.stringify(exchanged.received.toString('latin1').slice(0, 200))}`);
}

// ------------------------------------------------------------------ introspect API

describe('introspect API under hostile peers', { timeout: 120_000 }, () => {
  /** Worker requests seen, e.g. "monitor-drops:true". */
  const ops: string[] = [];
  const canned: Record<string, unknown> = {
    summary: { node: 'n', underlayIp: '198.18.0.11', received: 1, transmitted: 1, generated: 0, held: 0, dropped: 0, flows: 0, flowCapacity: 1024, flowEvictions: 0 },
    vifs: [{ id: 0, name: 'eth0', kind: 'fabric', mac: '02:00:00:00:00:0b', ip: '198.18.0.11', ip6: null, vrf: -1, vrfName: null, mtu: 1500, floatingIps: [], rxPackets: 0, rxBytes: 0, txPackets: 0, txBytes: 0 }],
    vrfs: [{ id: 0, name: 'vn1', subnets: ['10.1.1.0/24'], gateway: '10.1.1.1', routes: 0, subnets6: [], gateway6: null, routes6: 0 }],
    routes: [],
    nexthops: [],
    labels: [],
    flows: { total: 0, offset: 0, flows: [] },
    'vn-traffic': [],
    drops: {},
  };
  /** A busy worker: every answer comes 20 ms later. */
  const dataplane = {
    dropRing: new SharedRing(16, 32),
    captureRing: new SharedRing(16, 2048),
    request: <T>(request: { op: string; enable?: boolean; query?: { what: string } }): Promise<T> => {
      ops.push(request.enable === undefined ? request.op : `${request.op}:${request.enable}`);
      return new Promise((resolve) => setTimeout(() => resolve((request.query ? canned[request.query.what] : {}) as T), 20));
    },
  };
  let server: IntrospectServer;
  let port: number;
  /** Ring sessions the worker was told to start and not told to stop. */
  const attached = () => {
    const count = (op: string) => ops.filter((seen) => seen === op).length;
    return count('monitor-drops:true') - count('monitor-drops:false') + count('capture:true') - count('capture:false');
  };
  const untilDetached = async (what: string) => {
    const deadline = Date.now() + 3000;
    while (attached() !== 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(attached(), 0, `${what}: a stream session is still attached (${ops.filter((op) => op.includes(':')).join(' ')})`);
  };
  /** Past the worker's answers to whatever the last request started. */
  const settled = () => new Promise((resolve) => setTimeout(resolve, 200));
  const healthy = async () => {
    const answer = await fetch(`http://127.0.0.1:${port}/api/vrfs`);
    assert.equal(answer.status, 200);
    assert.deepEqual(await answer.json(), canned.vrfs);
  };
  /** Sends one input and checks the server answered like an HTTP server, without an internal error. */
  const probe = async (bytes: Buffer, options: Parameters<typeof exchange>[2] = {}) => {
    const exchanged = await exchange(port, [bytes], { then: 'wait', timeoutMs: 100, until: httpAnswerComplete, ...options });
    assertHttpAnswer(exchanged, bytes);
    assert.notEqual(statusOf(exchanged.received), 500, `internal error for ${JSON.stringify(bytes.toString('latin1').slice(0, 200))}`);
    return exchanged;
  };

  const VALID = [
    httpRequest('GET', '/api/summary'),
    httpRequest('GET', '/api/routes?vrf=vn1&prefix=10.1.1.0/24'),
    httpRequest('GET', '/api/flows?vrf=vn1&ip=10.1.1.3&port=80&protocol=tcp&offset=0&limit=10'),
    httpRequest('GET', '/api/monitor/drops'),
    httpRequest('GET', '/api/capture/eth0?format=ndjson'),
    httpRequest('GET', '/api/capture/*?format=ndjson'),
    httpRequest('GET', '/metrics'),
    httpRequest('GET', '/Snh_ItfReq?name=eth0'),
    httpRequest('POST', '/api/trace', JSON.stringify({ vif: 0, protocol: 'udp', src: '10.1.1.3', dst: '10.1.1.5', srcPort: 4000, dstPort: 53 }), { 'Content-Type': 'application/json' }),
    httpRequest('POST', '/api/drops/clear', '{}', { 'Content-Type': 'application/json' }),
  ];

  before(async () => {
    server = new IntrospectServer({ host: '127.0.0.1', port: 0, dataplane, log, node: 'n' });
    port = (await server.listen()).port;
  });
  after(async () => {
    // Keep-alive connections (fetch's) would hold the close back.
    server?.server.closeAllConnections();
    await server?.close();
  });

  test('a stream client that drops before it is attached leaves no session attached (drop monitor, capture)', async () => {
    for (const request of [httpRequest('GET', '/api/monitor/drops'), httpRequest('GET', '/api/capture/eth0?format=pcap'), httpRequest('GET', '/api/capture/*?format=ndjson')]) {
      // Gone while the server waits for the worker (vif names, the vif list).
      await exchange(port, [request], { then: 'destroy', timeoutMs: 5 });
      await settled();
      await untilDetached(request.toString().split('\r\n')[0]);
    }
    await healthy();
  });

  test('a malformed percent-escape, or a path that is not a URL, is a bad request (was: 500)', async () => {
    for (const target of ['/api/vifs/%E0%A4%A', '/%zz/api', '//%20/api']) {
      const exchanged = await probe(httpRequest('GET', target));
      assert.equal(statusOf(exchanged.received), 400, target);
    }
  });

  test('corpus: every input that once broke it, sent whole and dropped at once', async () => {
    for (const { name, bytes } of corpusInputs('introspect')) {
      await probe(bytes);
      await exchange(port, [bytes], { then: 'destroy', timeoutMs: 5 });
      await settled();
      await untilDetached(name);
    }
    await healthy();
  });

  test('random bytes, mutated requests, every split, a slow sender, oversized requests, 10,000 dropped connections', async () => {
    const heapBefore = await heapAfterGc();
    await checkProperty('introspect', 'random-bytes', randomBytes, 60, async (bytes) => void (await probe(bytes)));
    await checkProperty('introspect', 'mutated-request', mutated(VALID), 120, async (bytes) => void (await probe(bytes)));
    const words = ['api', 'summary', 'vifs', 'ports', 'vrfs', 'routes', 'nexthops', 'mpls', 'flows', 'drops', 'clear', 'vn-traffic', 'control-sessions', 'trace', 'monitor', 'capture', 'metrics', 'Snh_ItfReq', 'eth0', '0', 'vn1', 'index.html', 'app.js'];
    await checkProperty('introspect', 'random-path', randomPathRequests(words), 100, async (bytes) => void (await probe(bytes)));
    await settled();
    await untilDetached('random and mutated requests');

    // Each valid request split at every byte gets the answer it gets whole.
    for (const request of VALID.filter((candidate) => !/monitor|capture/.test(candidate.toString()))) {
      const whole = statusOf((await probe(request)).received);
      await inParallel(everySplit(request), 16, async ({ at, chunks }) => {
        const exchanged = await exchange(port, chunks, { then: 'wait', timeoutMs: 5000, until: httpAnswerComplete });
        assert.equal(statusOf(exchanged.received), whole, `${request.toString().split('\r\n')[0]} split at ${at}`);
      });
    }
    // A slow sender: a byte every millisecond or so, then the answer.
    const slow = await exchange(port, bytewise(VALID[1]), { delayMs: 1, then: 'wait', timeoutMs: 1000, until: httpAnswerComplete });
    assert.equal(statusOf(slow.received), 200);
    // Oversized: headers beyond Node's limit, a POST body beyond 64 KiB, a URL of a megabyte.
    assertRefusedAsTooLarge(await probe(httpRequest('GET', '/api/summary', '', { 'X-Big': 'a'.repeat(64 * 1024) }), { timeoutMs: 3000 }), [431]);
    const bigBody = JSON.stringify({ vif: 0, pad: 'x'.repeat(MiB) });
    assertRefusedAsTooLarge(await probe(httpRequest('POST', '/api/trace', bigBody, { 'Content-Type': 'application/json' }), { timeoutMs: 3000 }));
    assertRefusedAsTooLarge(await probe(httpRequest('GET', `/api/routes?vrf=${'v'.repeat(MiB)}`), { timeoutMs: 3000 }), [400, 431]);

    const prefixes = [Buffer.alloc(0), Buffer.from('GET /api/monitor/drops HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'), Buffer.from('GET /api/capture/eth0 HTTP/1.1\r\nHo'), Buffer.from('POST /api/trace HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"vif"')];
    const churnStart = Date.now();
    await churn(port, CHURN_CONNECTIONS, CHURN_CONCURRENCY, (index) => prefixes[index % prefixes.length]);
    console.log(`# introspect: ${CHURN_CONNECTIONS} connections opened and dropped in ${Date.now() - churnStart} ms`);
    await settled();
    await untilDetached('10,000 dropped connections');
    await healthy();
    heapReport('introspect API', heapBefore, await heapAfterGc());
  });
});

// ------------------------------------------------------------------ port API

describe('port API under hostile peers', { timeout: 120_000 }, () => {
  const PORT_ADD = fs.readFileSync(path.join(VECTORS_DIR, 'port-ipc', 'vrouter-port-control-add.json'));
  const PORT_ID = (JSON.parse(PORT_ADD.toString()) as { id: string }).id;
  const VM_ADD = fs.readFileSync(path.join(VECTORS_DIR, 'port-ipc', 'cni-add-vm.json'));
  const VM_ID = (JSON.parse(VM_ADD.toString()) as { 'vm-uuid': string })['vm-uuid'];
  let scratch: string;
  let agentPorts: AgentPorts;
  let api: ReturnType<typeof createPortApi>;
  let port: number;
  let attaches = 0;
  /** Attaches what it is asked to (the daemon asks once the port's interface exists, which here it never does). */
  const attacher = {
    attach: async (agentPort: { ip: string }) => ({ vif: ++attaches, label: 16 + attaches, vn: 'vn1', ip: agentPort.ip, subnet: '10.1.1.0/24', gateway: '10.1.1.1' }),
    detach: async () => undefined,
  };
  const healthy = async () => {
    const added = await fetch(`http://127.0.0.1:${port}/port`, { method: 'POST', body: PORT_ADD, headers: { 'content-type': 'application/json' } });
    assert.equal(added.status, 200);
    assert.equal(await added.text(), '{}');
    // Not attached (there is no such interface here): the agent's "not found".
    const info = await fetch(`http://127.0.0.1:${port}/port/${PORT_ID}`);
    assert.deepEqual([info.status, await info.text()], [404, '{"error":"{ Not Found }"}']);
    const deleted = await fetch(`http://127.0.0.1:${port}/port/${PORT_ID}`, { method: 'DELETE' });
    assert.deepEqual([deleted.status, await deleted.text()], [200, '{}']);
  };
  /** The agent answers its errors with 500 too, but never with the words of a JavaScript exception. */
  const probe = async (bytes: Buffer, options: Parameters<typeof exchange>[2] = {}) => {
    const exchanged = await exchange(port, [bytes], { then: 'wait', timeoutMs: 100, until: httpAnswerComplete, ...options });
    assertHttpAnswer(exchanged, bytes);
    const body = exchanged.received.toString('latin1');
    if (statusOf(exchanged.received) === 500) assert.doesNotMatch(body, JS_EXCEPTION, `an exception answered for ${JSON.stringify(bytes.toString('latin1').slice(0, 200))}`);
    return exchanged;
  };

  const json = { 'Content-Type': 'application/json' };
  const VALID = [
    httpRequest('POST', '/port', PORT_ADD.toString(), json),
    httpRequest('POST', '/port', fs.readFileSync(path.join(VECTORS_DIR, 'port-ipc', 'kubelet-add-port.json'), 'utf8'), json),
    httpRequest('POST', '/port', fs.readFileSync(path.join(VECTORS_DIR, 'port-ipc', 'test-data-93c2c386-6e79-485e-bfa4-b9daa713133b'), 'utf8'), json),
    httpRequest('POST', '/vm', VM_ADD.toString(), json),
    httpRequest('DELETE', `/vm/${VM_ID}`, fs.readFileSync(path.join(VECTORS_DIR, 'port-ipc', 'cni-delete-vm.json'), 'utf8'), json),
    httpRequest('GET', `/vm/${VM_ID}`),
    httpRequest('GET', `/port/${PORT_ID}`),
    httpRequest('PUT', `/enable-port/${PORT_ID}`, ''),
    httpRequest('POST', '/syncports', ''),
    httpRequest('DELETE', `/port/${PORT_ID}`),
  ];

  before(async () => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'vrouter-hostile-ports-'));
    agentPorts = new AgentPorts(new PortStore(scratch, () => ({ author: 'hostile-peers', now: new Date(0) })), attacher as never, log);
    api = createPortApi({
      addPorts: (ports) => agentPorts.addPorts(ports),
      deletePort: (id) => agentPorts.deletePort(id),
      portInfo: (id) => agentPorts.portInfo(id),
      syncPorts: () => agentPorts.sync(),
      setLinkState: (id, up) => agentPorts.setLinkState(id, up),
      vmConfig: (name) => agentPorts.vmConfig(name),
      addVmVnPort: (vmPort) => agentPorts.addVmVnPort(vmPort),
      vmInterfaces: (vm, vmi) => agentPorts.vmInterfaces(vm, vmi),
      deleteVm: (vm) => agentPorts.deleteVm(vm),
      addLocalPort: async (request) => request,
      deleteLocalPort: async () => false,
      listPorts: () => [],
      setRoute: async () => [],
      stats: async () => ({}),
    });
    await new Promise<void>((resolve) => api.listen(0, '127.0.0.1', resolve));
    port = (api.address() as net.AddressInfo).port;
  });
  after(async () => {
    agentPorts?.stop();
    api?.closeAllConnections();
    await new Promise((resolve) => api?.close(resolve));
    if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
  });

  test('a malformed percent-escape, or a path that is not a URL, is refused as the client\'s (was: 500 "URI malformed")', async () => {
    const answer = async (method: string, target: string) => {
      const exchanged = await probe(httpRequest(method, target, '', { Connection: 'close' }), { timeoutMs: 1000, until: undefined });
      // The body, without the chunk framing of vrouter-ts's own answers.
      return [statusOf(exchanged.received), exchanged.received.toString().split('\r\n\r\n')[1].replace(/^[0-9a-f]+\r\n|\r\n0$/g, '')];
    };
    assert.deepEqual(await answer('DELETE', '/port/%zz'), [400, '{"error":"malformed percent-escape in port id %zz"}\n']);
    // The agent's answers: no VM has that name; nothing routes there.
    assert.deepEqual(await answer('GET', '/vm-cfg/%E0%A4%A'), [404, '{"error":"{ Not Found }"}']);
    assert.deepEqual(await answer('GET', '//%20/port'), [404, '{"error":"Unknown Request"}']);
  });

  test('corpus: every input that once broke it', async () => {
    for (const { bytes } of corpusInputs('port-api')) {
      await probe(bytes);
      await exchange(port, [bytes], { then: 'destroy' });
    }
    await healthy();
  });

  test('random bytes, mutated bodies of the real clients, every split, a slow sender, oversized bodies, 10,000 dropped connections', async () => {
    await healthy();
    const heapBefore = await heapAfterGc();
    await checkProperty('port-api', 'random-bytes', randomBytes, 60, async (bytes) => void (await probe(bytes)));
    await checkProperty('port-api', 'mutated-request', mutated(VALID), 120, async (bytes) => void (await probe(bytes)));
    const words = ['port', 'vm', 'vm-cfg', 'syncports', 'enable-port', 'disable-port', 'gateway', 'ports', 'route', 'stats', PORT_ID, VM_ID];
    await checkProperty('port-api', 'random-path', randomPathRequests(words), 100, async (bytes) => void (await probe(bytes)));
    await healthy();

    for (const request of VALID.slice(0, 4)) {
      const whole = statusOf((await probe(request)).received);
      await inParallel(everySplit(request), 16, async ({ at, chunks }) => {
        const exchanged = await exchange(port, chunks, { then: 'wait', timeoutMs: 5000, until: httpAnswerComplete });
        assert.equal(statusOf(exchanged.received), whole, `${request.toString().split('\r\n')[0]} split at ${at}`);
      });
    }
    const slow = await exchange(port, bytewise(VALID[0]), { delayMs: 1, then: 'wait', timeoutMs: 1000, until: httpAnswerComplete });
    assert.equal(statusOf(slow.received), 200);
    assertRefusedAsTooLarge(await probe(httpRequest('POST', '/port', `[${'{},'.repeat(400_000)}{}]`, json), { timeoutMs: 3000 }));
    assertRefusedAsTooLarge(await probe(httpRequest('GET', '/port', '', { 'X-Big': 'a'.repeat(64 * 1024) }), { timeoutMs: 3000 }), [431]);
    // A body that says it is longer than it is: the server waits, the client leaves; nothing stays.
    await probe(Buffer.from(`POST /port HTTP/1.1\r\nHost: x\r\nContent-Length: ${MiB}\r\n\r\n{"id":`), { then: 'destroy' });

    const prefixes = [Buffer.alloc(0), Buffer.from('POST /port HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 400\r\n\r\n{"id": "3c4f0b5a'), Buffer.from('GET /port/3c4f0b5a-1d6e-4c8a-9a3b'), VALID[0]];
    const churnStart = Date.now();
    await churn(port, CHURN_CONNECTIONS, CHURN_CONCURRENCY, (index) => prefixes[index % prefixes.length]);
    console.log(`# port API: ${CHURN_CONNECTIONS} connections opened and dropped in ${Date.now() - churnStart} ms`);
    await healthy();
    heapReport('port API', heapBefore, await heapAfterGc());
  });
});

// ------------------------------------------------------------------ control node XMPP

describe('control node XMPP listener under hostile peers', { timeout: 120_000 }, () => {
  const CONFIG = `
holdTime: 90
gracefulRestartTime: 2
restartConvergenceTime: 0
vns:
  - { name: default, subnet: 10.32.0.0/24 }
  - { name: web, subnet: 10.1.1.0/24 }
`;
  /** The agent's open as contrail writes it (test/vectors/xmpp/agent-open.xml), from node-a. */
  const OPEN = fs.readFileSync(path.join(VECTORS_DIR, 'xmpp', 'agent-open.xml'));
  const FUZZ_NAME = 'node-a';
  const bgp = vrouterToControl(FUZZ_NAME, BGP_PEER_RESOURCE);
  const stanza = (value: SentStanza) => Buffer.from(encodeStanza(value));
  const SUBSCRIBE = stanza({ kind: 'subscribe', ...bgp, id: 'subscribe1', vrf: 'fuzz-vn', instanceId: 1 });
  const PUBLISH = Buffer.concat([
    stanza({ kind: 'publish', ...bgp, id: 'pubsub2', vrf: 'fuzz-vn', entry: routeEntry('10.9.0.1/32', '198.18.0.99', 99) }),
    stanza({ kind: 'associate', ...bgp, id: 'collection3', vrf: 'fuzz-vn', prefix: '10.9.0.1/32' }),
  ]);
  const END_OF_RIB = stanza({ kind: 'end-of-rib', ...bgp });
  const CONFIG_SUBSCRIBE = stanza({ kind: 'config-subscribe', ...vrouterToControl(FUZZ_NAME, CONFIG_RESOURCE), node: `virtual-router:default-global-system-config:${FUZZ_NAME}`, subscribe: true });
  const PUSHES = ['inet-push.xml', 'inet-push-2015.xml', 'evpn-push.xml', 'end-of-rib.xml', 'ifmap-config.xml', 'bad_inet_item_3.xml'].map((file) =>
    fs.readFileSync(path.join(VECTORS_DIR, 'xmpp', file)),
  );
  /** A whole well-behaved session: open, subscribe, a route, End-of-RIB. */
  const SESSION = Buffer.concat([OPEN, SUBSCRIBE, PUBLISH, END_OF_RIB]);
  const VALID = [SESSION, Buffer.concat([OPEN, CONFIG_SUBSCRIBE]), Buffer.concat([OPEN, SUBSCRIBE, Buffer.from(STREAM_CLOSE)]), ...PUSHES.map((push) => Buffer.concat([OPEN, push]))];

  /** Well-formed stanzas whose values are odd: prefixes, labels, addresses, names and ids from anywhere. */
  const text = fc.oneof(fc.string({ maxLength: 20 }), fc.constantFrom('', ' ', '0', '-1', '4294967296', '1e3', '0x10', '10.1.1.1/33', '300.1.1.1/32', '::1/128', 'fuzz-vn', 'web', '1/1/web', '\u0200'));
  const number = fc.oneof(fc.integer(), fc.constantFrom(-1, 0, 15, 16, 0xfffff, 0x100000, 2 ** 32, Number.MAX_SAFE_INTEGER));
  const oddStanza: fc.Arbitrary<SentStanza> = fc.oneof(
    fc.record({ vrf: text, instanceId: number, id: text }).map(({ vrf, instanceId, id }): SentStanza => ({ kind: 'subscribe', ...bgp, id, vrf, instanceId })),
    fc.record({ vrf: text, id: text }).map(({ vrf, id }): SentStanza => ({ kind: 'unsubscribe', ...bgp, id, vrf })),
    fc
      .record({ vrf: text, prefix: text, address: text, label: number, encaps: fc.array(text, { maxLength: 3 }), vn: text, version: number, preference: number })
      .map(({ vrf, prefix, address, label, encaps, vn, version, preference }): SentStanza => ({
        kind: 'publish',
        ...bgp,
        id: 'p',
        vrf,
        entry: { prefix, nexthops: [{ address, label, encaps, virtualNetwork: vn }], version, sequenceNumber: version, localPreference: preference, med: 0 },
      })),
    fc.record({ vrf: text, prefix: text, kind: fc.constantFrom<'associate' | 'dissociate'>('associate', 'dissociate') }).map(({ vrf, prefix, kind }): SentStanza => ({ kind, ...bgp, id: 'c', vrf, prefix })),
    fc.record({ node: text, subscribe: fc.boolean() }).map(({ node, subscribe }): SentStanza => ({ kind: 'config-subscribe', ...vrouterToControl(FUZZ_NAME, CONFIG_RESOURCE), node, subscribe })),
    fc.constant<SentStanza>({ kind: 'end-of-rib', ...bgp }),
  );
  const oddSessions = fc.array(oddStanza, { minLength: 1, maxLength: 8 }).map((stanzas) => Buffer.concat([OPEN, SUBSCRIBE, ...stanzas.map(stanza)]));

  let node: ControlNode;
  let port: number;
  const watcher = new SimulatedVrouter('watcher');
  const publisher = new SimulatedVrouter('publisher');
  let published = 0;
  let publishTimer: NodeJS.Timeout | null = null;
  /** Per route the publisher sent: when it was published, and when the watcher had it. */
  const latencies: number[] = [];

  /** Publishes one more route every 100 ms; the watcher must get each of them. */
  const startPublishing = () => {
    publishTimer = setInterval(() => {
      const index = ++published;
      const prefix = `10.1.${index >> 8}.${index & 0xff}/32`;
      const at = Date.now();
      publisher.publish('web', routeEntry(prefix, '198.18.0.2', 1000 + index));
      void watcher.until(() => watcher.access.routes.has(`web ${prefix}`), 10_000, `route ${prefix}`).then(
        () => latencies.push(Date.now() - at),
        () => latencies.push(Infinity),
      );
    }, 100);
  };
  const sessionsIntact = () => {
    assert.ok(watcher.isEstablished, `the watcher's session: ${watcher.closedReason}`);
    assert.ok(publisher.isEstablished, `the publisher's session: ${publisher.closedReason}`);
    assert.deepEqual(node.connectedVrouters().filter((name) => name !== FUZZ_NAME).sort(), ['publisher', 'watcher']);
  };
  /** A new session still gets its open answered and its own route echoed. */
  const healthy = async () => {
    const exchanged = await exchange(port, [SESSION], { then: 'wait', timeoutMs: 3000, until: (received) => received.includes('<item id="10.9.0.1/32">') });
    assert.ok(exchanged.received.includes('<item id="10.9.0.1/32">'), `a well-formed session: ${exchanged.received.toString().slice(0, 300)}`);
    sessionsIntact();
  };
  /** Sends a fuzz input and ends the connection: the server must close its side, with nothing thrown. */
  const probe = async (bytes: Buffer) => {
    const exchanged = await exchange(port, [bytes], { timeoutMs: 3000 });
    const shown = JSON.stringify(bytes.toString('latin1').slice(0, 200));
    assert.ok(exchanged.closedByServer, `the session was not closed after ${shown}`);
    // Bad input is refused as such (bad-format, not-authorized...), never an exception in the server's own code.
    assert.ok(!exchanged.received.includes('internal-server-error'), `an internal error for ${shown}: ${exchanged.received.toString().slice(-400)}`);
  };

  /** Why the control node closed sessions, by the reason's first words: what the fuzzing reached. */
  const closeReasons = new Map<string, number>();
  const countingLogger = {
    info: (line: string) => countReason(line),
    warn: (line: string) => countReason(line),
  };
  const countReason = (line: string) => {
    const reason = /session closed: ([^:(]*)/.exec(line)?.[1]?.trim();
    if (reason) closeReasons.set(reason, (closeReasons.get(reason) ?? 0) + 1);
  };

  before(async () => {
    // The fuzzed sessions and the publisher are route sources without pods, so what the listener judges is the
    // fuzzing's stanzas, not a missing registration (publish-authorization.test.ts checks what vrouters may publish).
    node = new ControlNode({ config: parseNetworkConfig(CONFIG, 'hostile.yaml'), logger: countingLogger, unrestrictedPublishers: new Set([publisher.name, FUZZ_NAME]) });
    port = (await node.listen(0, '127.0.0.1')).port;
    for (const vrouter of [watcher, publisher]) {
      await vrouter.connect(port);
      vrouter.subscribe('web');
      vrouter.endOfRib();
    }
    publisher.publish('web', routeEntry('10.1.0.0/32', '198.18.0.2', 1000));
    await watcher.until(() => watcher.access.routes.has('web 10.1.0.0/32'), 5000, 'the first route');
    startPublishing();
  });
  after(async () => {
    if (publishTimer) clearInterval(publishTimer);
    watcher.close();
    publisher.close();
    await node?.close();
  });

  test('corpus: every input that once broke it', async () => {
    for (const { bytes } of corpusInputs('xmpp')) {
      await probe(bytes);
      await exchange(port, [bytes], { then: 'destroy' });
    }
    await healthy();
  });

  test('random bytes, mutated stanzas, every split, a slow sender, oversized elements, 10,000 dropped connections; other sessions unaffected', async () => {
    const heapBefore = await heapAfterGc();
    await checkProperty('xmpp', 'random-bytes', fc.oneof(randomBytes, randomBytes.map((bytes) => Buffer.concat([OPEN, bytes]))), 150, probe);
    await checkProperty('xmpp', 'mutated-stanza', mutated(VALID), 400, probe);
    await checkProperty('xmpp', 'odd-values', oddSessions, 150, probe);
    sessionsIntact();

    // The whole session split at every byte: the route is echoed every time.
    await inParallel(everySplit(SESSION), 8, async ({ at, chunks }) => {
      const exchanged = await exchange(port, chunks, { then: 'wait', timeoutMs: 3000, until: (received) => received.includes('<item id="10.9.0.1/32">') });
      assert.ok(exchanged.received.includes('<item id="10.9.0.1/32">'), `split at ${at}: ${exchanged.received.toString().slice(0, 200)}`);
    });
    // A slow sender, a byte per millisecond or so.
    const slow = await exchange(port, bytewise(SESSION), { delayMs: 1, then: 'wait', timeoutMs: 3000, until: (received) => received.includes('<item id="10.9.0.1/32">') });
    assert.ok(slow.received.includes('<item id="10.9.0.1/32">'), 'a slow sender');
    sessionsIntact();

    // Oversized: a stanza beyond the parser's limit is refused before it is whole.
    const text = Buffer.alloc(MiB, 'a');
    const oversized = [OPEN, Buffer.from('<iq type="set" from="node-a" to="network-control@contrailsystems.com/bgp-peer" id="x"><pubsub>')];
    for (let sent = 0; sent <= MAX_STANZA_BYTES; sent += text.length) oversized.push(text);
    const refused = await exchange(port, oversized, { then: 'wait', timeoutMs: 5000 });
    // Closed before its end; the reason is read unless the reset (our bytes unread) discarded it.
    assert.ok(refused.closedByServer, 'an oversized stanza was not refused');
    if (refused.received.includes('<stream:error>')) assert.ok(refused.received.includes('stanza larger than'), refused.received.toString().slice(-300));
    // Nested deeper than the limit, an attribute of a megabyte, a name of 100 KB.
    await probe(Buffer.concat([OPEN, Buffer.from('<iq>'.repeat(10_000))]));
    await probe(Buffer.concat([OPEN, Buffer.from(`<iq type="set" from="node-a" id="${'i'.repeat(MiB)}"/>`)]));
    await probe(Buffer.from(OPEN.toString().replace('from="node-a"', `from="${'n'.repeat(100_000)}"`)));
    sessionsIntact();

    const mid = [Buffer.alloc(0), OPEN, Buffer.concat([OPEN, SUBSCRIBE.subarray(0, 40)]), Buffer.concat([OPEN, SUBSCRIBE, PUBLISH.subarray(0, 200)]), OPEN.subarray(0, 60)];
    const churnStart = Date.now();
    await churn(port, CHURN_CONNECTIONS, CHURN_CONCURRENCY, (index) => mid[index % mid.length]);
    console.log(`# control node: ${CHURN_CONNECTIONS} connections opened and dropped in ${Date.now() - churnStart} ms`);
    await healthy();

    // Every route published meanwhile reached the watcher.
    if (publishTimer) clearInterval(publishTimer);
    publishTimer = null;
    const last = `10.1.${published >> 8}.${published & 0xff}/32`;
    await watcher.until(() => watcher.access.routes.has(`web ${last}`), 5000, 'the last route');
    await watcher.until(() => latencies.length === published, 5000, 'every route');
    assert.equal(latencies.filter((latency) => latency === Infinity).length, 0, 'routes the watcher never got');
    assert.equal([...watcher.access.routes.keys()].filter((key) => key.startsWith('web 10.1.')).length, published + 1);
    console.log(`# control node: ${published} routes published during the fuzzing, all received; latency max ${Math.max(...latencies)} ms, median ${latencies.sort((a, b) => a - b)[latencies.length >> 1]} ms`);
    sessionsIntact();
    console.log(`# control node: sessions closed by reason: ${[...closeReasons].sort((a, b) => b[1] - a[1]).map(([reason, count]) => `${reason} ${count}`).join('; ')}`);
    assert.equal(closeReasons.get('internal error handling a stanza'), undefined, 'a stanza made the control node throw');
    // The fuzz vrouter's state is gone after its grace period; the heap is back.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    heapReport('control node', heapBefore, await heapAfterGc());
  });
});
