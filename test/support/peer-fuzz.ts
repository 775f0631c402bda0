/**
 * What the hostile-peer tests throw at a server over real sockets: raw
 * bytes in one piece, split, or a byte at a time; mutations of valid
 * inputs (fast-check arbitraries); thousands of connections opened and
 * dropped; and the heap measured after a full collection. Inputs that
 * once broke a server live in test/corpus/peers/ (one file each).
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import fc from 'fast-check';

export const PEER_CORPUS_DIR = path.resolve(__dirname, '..', '..', '..', 'test', 'corpus', 'peers');
export const VECTORS_DIR = path.resolve(__dirname, '..', '..', '..', 'test', 'vectors');

/** The seed of every property: fixed, or HOSTILE_SEED to explore others; fast-check prints it with a counterexample. */
export const SEED = Number(process.env.HOSTILE_SEED ?? 20261204);
/** HOSTILE_RUNS=<n> runs every property n times as often (to explore, not in `npm test`). */
export const RUNS_FACTOR = Number(process.env.HOSTILE_RUNS ?? 1);

export interface Exchange {
  /** What the server sent back. */
  received: Buffer;
  /** The server closed (or reset) the connection before we gave up waiting. */
  closedByServer: boolean;
}

export interface SendOptions {
  /** Pause between chunks (a slow sender). */
  delayMs?: number;
  /** After writing: 'end' half-closes and waits for the server to finish, 'destroy' drops (after timeoutMs), 'wait' keeps the connection open. */
  then?: 'end' | 'destroy' | 'wait';
  /** How long to wait for the server after writing. */
  timeoutMs?: number;
  /** Stop waiting as soon as what was received matches. */
  until?: (received: Buffer) => boolean;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Writes `chunks` on a new connection, then waits for the server's answer or close (or gives up after timeoutMs). */
export function exchange(port: number, chunks: Buffer[], options: SendOptions = {}): Promise<Exchange> {
  const { delayMs = 0, then = 'end', timeoutMs = 2000, until } = options;
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const received: Buffer[] = [];
    let done = false;
    let timer: NodeJS.Timeout | null = null;
    const finish = (closedByServer: boolean) => {
      if (done) return;
      done = true;
      if (timer) clearTimeout(timer);
      socket.destroy();
      resolve({ received: Buffer.concat(received), closedByServer });
    };
    socket.on('data', (chunk: Buffer) => {
      received.push(chunk);
      if (until?.(Buffer.concat(received))) finish(false);
    });
    socket.on('error', () => finish(true));
    socket.on('close', () => finish(true));
    socket.once('connect', async () => {
      for (const chunk of chunks) {
        if (done) return;
        if (chunk.length > 0) socket.write(chunk);
        if (delayMs > 0) await sleep(delayMs);
      }
      if (then === 'end') socket.end();
      timer = setTimeout(() => finish(false), then === 'destroy' ? (options.timeoutMs ?? 0) : timeoutMs);
    });
  });
}

/** The input cut in two at byte `at`. */
export function splitAt(bytes: Buffer, at: number): Buffer[] {
  return [bytes.subarray(0, at), bytes.subarray(at)];
}

/** Runs `task` for each item, `concurrency` at a time. */
export async function inParallel<T>(items: T[], concurrency: number, task: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await task(items[next++]);
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

/** Every way of cutting the input in two. */
export function everySplit(bytes: Buffer): Array<{ at: number; chunks: Buffer[] }> {
  return Array.from({ length: bytes.length - 1 }, (_, index) => ({ at: index + 1, chunks: splitAt(bytes, index + 1) }));
}

/** One chunk per byte. */
export function bytewise(bytes: Buffer): Buffer[] {
  return [...bytes].map((byte) => Buffer.of(byte));
}

/**
 * Opens `count` connections, `concurrency` at a time; each writes what
 * `prefix(i)` gives (nothing, half a request, half a stanza) and is dropped,
 * some at once (a reset), some after a short wait for the server.
 */
export async function churn(port: number, count: number, concurrency: number, prefix: (index: number) => Buffer): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const index = next++;
      await new Promise<void>((resolve) => {
        const socket = net.connect({ host: '127.0.0.1', port });
        socket.on('error', () => undefined);
        socket.once('close', () => resolve());
        socket.once('connect', () => {
          const bytes = prefix(index);
          if (bytes.length > 0) socket.write(bytes);
          if (index % 3 === 0) socket.resetAndDestroy();
          else if (index % 3 === 1) socket.destroy();
          else setTimeout(() => socket.destroy(), 5);
        });
      });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

let collect: (() => void) | null = null;

/** Heap in use after a full collection (the flag is set at run time, so `node --test` needs no --expose-gc). */
export async function heapAfterGc(): Promise<number> {
  if (collect === null) {
    v8.setFlagsFromString('--expose-gc');
    collect = vm.runInNewContext('gc') as () => void;
  }
  // Let closed sockets and timers of the last connections go first.
  await sleep(50);
  collect();
  await sleep(0);
  collect();
  return process.memoryUsage().heapUsed;
}

export const MiB = 1024 * 1024;

type MutationKind = 'flip' | 'set' | 'insert' | 'delete' | 'duplicate' | 'truncate';

const position = fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true });
/** One edit at a relative position: flip a bit, set a byte, insert bytes, delete, duplicate or cut off the rest. */
interface Mutation {
  kind: MutationKind;
  at: number;
  bit: number;
  byte: number;
  bytes: number[];
  length: number;
}

const mutation: fc.Arbitrary<Mutation> = fc.record({
  kind: fc.constantFrom<MutationKind>('flip', 'set', 'insert', 'delete', 'duplicate', 'truncate'),
  at: position,
  bit: fc.integer({ min: 0, max: 7 }),
  // Bytes that matter to XML, HTTP and JSON, and any other.
  byte: fc.oneof(fc.constantFrom(...Buffer.from('<>/"\'=&;:{}[],%?\r\n \t\0')), fc.integer({ min: 0, max: 255 })),
  bytes: fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 16 }),
  length: fc.integer({ min: 1, max: 64 }),
});

function applyMutation(bytes: Buffer, m: Mutation): Buffer {
  const at = Math.floor(m.at * (bytes.length + 1));
  switch (m.kind) {
    case 'flip': {
      if (at >= bytes.length) return bytes;
      const copy = Buffer.from(bytes);
      copy[at] ^= 1 << m.bit;
      return copy;
    }
    case 'set': {
      if (at >= bytes.length) return bytes;
      const copy = Buffer.from(bytes);
      copy[at] = m.byte;
      return copy;
    }
    case 'insert':
      return Buffer.concat([bytes.subarray(0, at), Buffer.from(m.bytes), bytes.subarray(at)]);
    case 'delete':
      return Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + m.length)]);
    case 'duplicate':
      return Buffer.concat([bytes.subarray(0, at + m.length), bytes.subarray(at)]);
    case 'truncate':
      return bytes.subarray(0, at);
  }
}

/** One of `seeds` with one to four mutations applied. */
export function mutated(seeds: Buffer[]): fc.Arbitrary<Buffer> {
  return fc
    .tuple(fc.constantFrom(...seeds), fc.array(mutation, { minLength: 1, maxLength: 4 }))
    .map(([seed, mutations]) => mutations.reduce(applyMutation, seed));
}

export const randomBytes: fc.Arbitrary<Buffer> = fc.uint8Array({ minLength: 1, maxLength: 2048 }).map((bytes) => Buffer.from(bytes));

/** The corpus inputs of one target (files named `<target>--<what it broke>.bin`). */
export function corpusInputs(target: string): Array<{ name: string; bytes: Buffer }> {
  if (!fs.existsSync(PEER_CORPUS_DIR)) return [];
  return fs
    .readdirSync(PEER_CORPUS_DIR)
    .filter((file) => file.startsWith(`${target}--`) && file.endsWith('.bin'))
    .sort()
    .map((file) => ({ name: file, bytes: fs.readFileSync(path.join(PEER_CORPUS_DIR, file)) }));
}

/** Keeps a failing input for replay: test/corpus/peers/<target>--<broke>.bin; returns the path. */
export function saveToCorpus(target: string, broke: string, bytes: Buffer): string {
  fs.mkdirSync(PEER_CORPUS_DIR, { recursive: true });
  const file = path.join(PEER_CORPUS_DIR, `${target}--${broke.replace(/[^A-Za-z0-9._-]+/g, '-').slice(0, 80)}.bin`);
  fs.writeFileSync(file, bytes);
  return file;
}
