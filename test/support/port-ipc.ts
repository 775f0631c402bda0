/**
 * Talking to a daemon's port API as the agent's clients do, from inside its
 * node namespace, with the bytes as given, and checking answers as the
 * agent writes them (REST::SendResponse, tungstenfabric/tf-controller @
 * 6a674397821187fedfffd9586942b906d3479dbc, src/vnsw/agent/port_ipc/rest_common.cc).
 */
import assert from 'node:assert/strict';
import type { Topology } from './netns';

/** One HTTP/1.1 exchange: prints the raw answer (base64); the server closes (`Connection: close`). */
const RAW_HTTP = `
const [port, request] = process.argv.slice(1);
const socket = require('net').connect({ host: '127.0.0.1', port: Number(port) }, () => socket.write(Buffer.from(request, 'base64')));
const chunks = [];
socket.on('data', (chunk) => chunks.push(chunk));
socket.on('close', () => console.log(Buffer.concat(chunks).toString('base64')));
socket.setTimeout(10000, () => { console.error('no answer within 10 s'); process.exit(1); });`;

export interface RawAnswer {
  statusLine: string;
  headers: Record<string, string>;
  body: string;
}

/** A request to 127.0.0.1:<port> in namespace `ns`, its answer as it came. */
export async function rawRequest(topology: Topology, ns: string, method: string, target: string, body?: Buffer | string, port = 9091): Promise<RawAnswer> {
  const payload = body === undefined ? Buffer.alloc(0) : Buffer.from(body);
  const head = `${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n` + (body === undefined ? '' : `Content-Type: application/json\r\nContent-Length: ${payload.length}\r\n`) + '\r\n';
  const out = await topology.exec(ns, [process.execPath, '-e', RAW_HTTP, String(port), Buffer.concat([Buffer.from(head), payload]).toString('base64')]);
  const text = Buffer.from(out.trim(), 'base64').toString('utf8');
  const split = text.indexOf('\r\n\r\n');
  const [statusLine, ...lines] = text.slice(0, split).split('\r\n');
  const headers = Object.fromEntries(lines.map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]));
  return { statusLine, headers, body: text.slice(split + 4) };
}

/** What REST::SendResponse writes: "OK" whatever the status, its content type, the exact body. */
export function assertAgentAnswer(answer: RawAnswer, status: number, body?: string): void {
  assert.equal(answer.statusLine, `HTTP/1.1 ${status} OK`, `status line of ${JSON.stringify(answer)}`);
  assert.equal(answer.headers['content-type'], 'application/json; charset=UTF-8');
  assert.equal(Number(answer.headers['content-length']), Buffer.byteLength(answer.body));
  if (body !== undefined) assert.equal(answer.body, body);
}
