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
import type { WorkerRequest, WorkerResponse, WorkerStart, WorkerTimeline } from './worker';

/** Record sizes of the shared rings the worker fills (here, not in worker.ts: the main thread loads none of the worker's modules). */
export const DROP_RECORD_SIZE = 32;
export const CAPTURE_RECORD_SIZE = 2048;
const DROP_RING_RECORDS = 1024;
const CAPTURE_RING_RECORDS = 1024;

export class DataplaneHandle {
  private readonly io: NativeIo;
  private readonly worker: Worker;
  private readonly port: MessagePort;
  private readonly wakeFd: number;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  private readonly stopped: Promise<void>;
  /** Why the worker is gone, once it is: later requests fail with it. */
  private failure: Error | null = null;
  /** Drop events and captured frames the worker writes (drain them to read). */
  readonly dropRing = new SharedRing(DROP_RING_RECORDS, DROP_RECORD_SIZE);
  readonly captureRing = new SharedRing(CAPTURE_RING_RECORDS, CAPTURE_RECORD_SIZE);
  /** Resolves with the epoch ms of the worker's start phases once its sockets and TAPs are open. */
  readonly ready: Promise<WorkerTimeline>;
  /**
   * When the worker transmitted its first packet (epoch ms) and the CPU the
   * process had spent by then, every thread (ms since start follows the
   * machine's load, this does not).
   */
  readonly firstForward: Promise<{ at: number; cpuMs: number }>;

  /**
   * Starts the worker on a state file's text (validated by the caller, or
   * to be). Requests may be sent at once: the worker serves them when it
   * runs; a worker that fails to start fails them.
   */
  constructor(stateText: string, stateFile: string) {
    this.io = loadNativeIo();
    this.wakeFd = this.io.eventfdCreate();
    const channel = new MessageChannel();
    this.port = channel.port1;
    const start: WorkerStart = { stateText, stateFile, wakeFd: this.wakeFd, requests: channel.port2, dropRing: this.dropRing.buffer, captureRing: this.captureRing.buffer };
    this.worker = new Worker(path.join(__dirname, 'worker.js'), { workerData: start, transferList: [channel.port2] });
    let markStopped: () => void = () => {};
    this.stopped = new Promise<void>((resolve) => (markStopped = resolve));
    let markFirstForward: (first: { at: number; cpuMs: number }) => void = () => {};
    this.firstForward = new Promise((resolve) => (markFirstForward = resolve));
    this.ready = new Promise<WorkerTimeline>((resolve, reject) => {
      const fail = (error: Error) => {
        this.failure ??= error;
        reject(error);
        for (const waiting of this.pending.values()) waiting.reject(error);
        this.pending.clear();
      };
      this.worker.on('message', (message: { ready?: boolean; timeline?: WorkerTimeline; failed?: string; stopped?: boolean; firstForward?: { at: number; cpuMs: number } }) => {
        if (message.ready) resolve(message.timeline!);
        if (message.failed) fail(new Error(message.failed));
        if (message.stopped) markStopped();
        if (message.firstForward !== undefined) markFirstForward(message.firstForward);
      });
      this.worker.on('error', fail);
      this.worker.on('exit', () => {
        markStopped();
        fail(new Error('the dataplane worker exited'));
      });
    });
    // Whoever awaits ready sees a failure; a request's own promise fails with it too.
    this.ready.catch(() => undefined);
    this.port.on('message', (response: WorkerResponse) => {
      const waiting = this.pending.get(response.id);
      if (!waiting) return;
      this.pending.delete(response.id);
      if (response.ok) waiting.resolve(response.result);
      else waiting.reject(new Error(response.error));
    });
  }

  request<T = unknown>(request: WorkerRequest): Promise<T> {
    if (this.failure) return Promise.reject(this.failure);
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
