/**
 * Worker thread of WorkerStreamDecoder: parses and decodes one session's
 * stream, posting back per received chunk the events it completed.
 */
import { parentPort } from 'node:worker_threads';
import { ChunkDecoder, decodeForTransfer } from './stream-decoder';

const decoder = new ChunkDecoder();
parentPort!.on('message', (chunk: Uint8Array) => {
  parentPort!.postMessage(decodeForTransfer(decoder, Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)));
});
