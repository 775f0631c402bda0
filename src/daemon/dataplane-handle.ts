/**
 * The main thread's handle on the dataplane worker: starts it, and turns
 * requests into promises. A request is posted on a MessagePort and the
 * worker woken through an eventfd, since it sleeps in epoll, not in the
 * event loop.
 */
import * as path from 'node:path';
import { MessageChannel, MessagePort, Worker } from 'node:worker_threads';
import { loadNativeIo, NativeIo } from '../dataplane/io/native';
import { SharedRing } from '../dataplane/io/shared-ring';
import {
  CAPTURE_RECORD_SIZE,
  CAPTURE_RING_RECORDS,
  DROP_RECORD_SIZE,
  DROP_RING_RECORDS,
  type WorkerRequest,
  type WorkerResponse,
  type WorkerStart,
} from './worker';

export class DataplaneHandle {
  private readonly io: NativeIo;
  private readonly worker: Worker;
  private readonly port: MessagePort;
  private readonly wakeFd: number;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  private readonly stopped: Promise<void>;

  private constructor(
    io: NativeIo,
    worker: Worker,
    port: MessagePort,
    wakeFd: number,
    stopped: Promise<void>,
    /** Drop events and captured frames the worker writes (drain them to read). */
    readonly dropRing: SharedRing,
    readonly captureRing: SharedRing,
  ) {
    this.io = io;
    this.worker = worker;
    this.port = port;
    this.wakeFd = wakeFd;
    this.stopped = stopped;
    port.on('message', (response: WorkerResponse) => {
      const waiting = this.pending.get(response.id);
      if (!waiting) return;
      this.pending.delete(response.id);
      if (response.ok) waiting.resolve(response.result);
      else waiting.reject(new Error(response.error));
    });
  }

  /** Starts the worker on a validated state document; resolves once its sockets and TAPs are open. */
  static async start(stateDocument: unknown, stateFile: string): Promise<DataplaneHandle> {
    const io = loadNativeIo();
    const wakeFd = io.eventfdCreate();
    const channel = new MessageChannel();
    const dropRing = new SharedRing(DROP_RING_RECORDS, DROP_RECORD_SIZE);
    const captureRing = new SharedRing(CAPTURE_RING_RECORDS, CAPTURE_RECORD_SIZE);
    const start: WorkerStart = { stateDocument, stateFile, wakeFd, requests: channel.port2, dropRing: dropRing.buffer, captureRing: captureRing.buffer };
    const worker = new Worker(path.join(__dirname, 'worker.js'), { workerData: start, transferList: [channel.port2] });
    let markStopped: () => void = () => {};
    const stopped = new Promise<void>((resolve) => (markStopped = resolve));
    await new Promise<void>((resolve, reject) => {
      worker.on('message', (message: { ready?: boolean; failed?: string; stopped?: boolean }) => {
        if (message.ready) resolve();
        if (message.failed) reject(new Error(message.failed));
        if (message.stopped) markStopped();
      });
      worker.on('error', reject);
      worker.on('exit', () => {
        markStopped();
        reject(new Error('the dataplane worker exited'));
      });
    });
    return new DataplaneHandle(io, worker, channel.port1, wakeFd, stopped, dropRing, captureRing);
  }

  request<T = unknown>(request: WorkerRequest): Promise<T> {
    const id = this.nextId++;
    const answer = new Promise<T>((resolve, reject) => this.pending.set(id, { resolve: resolve as (value: unknown) => void, reject }));
    this.port.postMessage({ id, request });
    this.io.eventfdSignal(this.wakeFd);
    return answer;
  }

  /** Wakes the worker (frames are waiting in a shared ring). */
  wake(): void {
    this.io.eventfdSignal(this.wakeFd);
  }

  /**
   * Stops the worker: it closes its TAP devices (which removes them) and
   * sockets, and deletes the veth pairs it made unless keepDevices (a
   * restart: the next daemon re-attaches them).
   */
  async stop(options: { keepDevices?: boolean } = {}): Promise<void> {
    await this.request({ op: 'shutdown', keepDevices: options.keepDevices }).catch(() => undefined);
    await Promise.race([this.stopped, new Promise((resolve) => setTimeout(resolve, 2000))]);
    await this.worker.terminate();
    this.port.close();
    this.io.close(this.wakeFd);
  }
}
