/**
 * One XMPP session over a connected socket (TCP or TLS), the part both ends
 * share: parsing the peer's stream into typed stanzas, batching what we
 * write, keepalives every hold time / 3, and the hold timer that declares a
 * silent peer dead. Anything malformed, unexpected or failing in a handler
 * closes this session (logged, with a stream error to the peer) and nothing
 * else: the caller decides what a closed session means.
 */
import type { Socket } from 'node:net';
import { STREAM_CLOSE, encodeStanza, encodeStreamError, encodeStreamOpen } from './codec';
import { Logger } from './logger';
import { KEEPALIVE, SentStanza, Stanza, StanzaError, StreamHeader } from './stanza';
import { DecodedEvent, InlineStreamDecoder, StreamDecoder, WorkerStreamDecoder } from './stream-decoder';

export interface SessionHandlers {
  /** The peer's `<stream:stream>` arrived. */
  streamOpen(header: StreamHeader): void;
  stanza(stanza: Stanza): void;
  /** Called once, whoever closed the session and why. */
  closed(reason: string): void;
}

export interface SessionOptions {
  /** Seconds without a byte from the peer before it is declared dead. */
  holdTime: number;
  logger: Logger;
  /** Names the session in log lines, e.g. "control node 127.0.0.1:5269". */
  name: string;
  /** Parse and decode in a worker thread (see stream-decoder.ts); on this thread otherwise. */
  decodeInWorker?: boolean;
}

/** Bytes gathered before they are written without waiting for the end of the tick. */
const FLUSH_BYTES = 256 * 1024;
/** How long a closing session waits for its last bytes to go before dropping the socket. */
const CLOSE_GRACE_MS = 1000;
/** Received chunks not yet decoded above which reading pauses, and below which it resumes. */
const PAUSE_CHUNKS = 32;
const RESUME_CHUNKS = 8;

export class XmppSession {
  private readonly decoder: StreamDecoder;
  private readonly keepaliveTimer: NodeJS.Timeout;
  private readonly holdTimer: NodeJS.Timeout;
  private pending: Array<string | Buffer> = [];
  private pendingBytes = 0;
  private flushScheduled = false;
  private closedReason: string | null = null;
  /** Keepalives may only follow our own stream header. */
  private streamOpened = false;
  /** Chunks handed to the decoder whose events have not come back. */
  private undecodedChunks = 0;
  private closedWhileDecoding = false;

  constructor(
    private readonly socket: Socket,
    private readonly options: SessionOptions,
    private readonly handlers: SessionHandlers,
  ) {
    const deliver = (events: DecodedEvent[]) => this.deliver(events);
    this.decoder = options.decodeInWorker ? new WorkerStreamDecoder(deliver) : new InlineStreamDecoder(deliver);
    const holdMs = options.holdTime * 1000;
    this.keepaliveTimer = setInterval(() => {
      if (this.streamOpened) this.socket.write(KEEPALIVE);
    }, holdMs / 3);
    this.holdTimer = setTimeout(() => this.close(`hold timer expired (${options.holdTime} s without data)`, 'connection-timeout'), holdMs);
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('error', (error) => this.close(`connection error: ${error.message}`, null));
    socket.on('close', () => {
      // What the peer sent last (its reason, with a worker decoder) is read before the close counts.
      if (this.undecodedChunks === 0) this.close('connection closed by peer', null);
      else this.closedWhileDecoding = true;
    });
  }

  get isClosed(): boolean {
    return this.closedReason !== null;
  }

  /** Sends our `<stream:stream>` header; keepalives start with it. */
  openStream(header: StreamHeader): void {
    this.send(encodeStreamOpen(header));
    this.streamOpened = true;
  }

  /** Queues bytes for the peer; they leave together at the end of this tick (or sooner when many). */
  send(xml: string | Buffer): void {
    if (this.closedReason !== null) return;
    this.pending.push(xml);
    this.pendingBytes += xml.length;
    if (this.pendingBytes >= FLUSH_BYTES) this.flush();
    else if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  sendStanza(stanza: SentStanza): void {
    this.send(encodeStanza(stanza));
  }

  /**
   * Resolves once queued bytes are handed to the kernel, so a long dump does
   * not pile up in memory. A peer that reads nothing for the hold time is
   * dead even if it sends keepalives: what waits for it would grow for ever.
   */
  async drained(): Promise<void> {
    this.flush();
    if (this.closedReason !== null || !this.socket.writableNeedDrain) return;
    const holdTime = this.options.holdTime;
    await new Promise<void>((resolve) => {
      const stalled = setTimeout(() => this.close(`peer read nothing for ${holdTime} s`, 'connection-timeout'), holdTime * 1000);
      const done = () => {
        clearTimeout(stalled);
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }

  /**
   * Ends the session: logs the reason, tells the peer (a stream error when
   * `condition` is given, then the stream close) unless the connection is
   * already gone (`condition` null), and reports it once.
   */
  close(reason: string, condition: string | null | undefined = undefined): void {
    if (this.closedReason !== null) return;
    if (condition !== null) {
      if (condition !== undefined) this.pending.push(encodeStreamError(condition, reason));
      this.pending.push(STREAM_CLOSE);
    }
    this.flush();
    this.closedReason = reason;
    this.decoder.stop();
    clearInterval(this.keepaliveTimer);
    clearTimeout(this.holdTimer);
    const line = `${this.options.name}: session closed: ${reason}`;
    if (condition === undefined) this.options.logger.info(line);
    else this.options.logger.warn(line);
    this.socket.end();
    setTimeout(() => this.socket.destroy(), CLOSE_GRACE_MS).unref();
    this.handlers.closed(reason);
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.pending.length === 0 || this.socket.destroyed || !this.socket.writable) {
      this.pending = [];
      this.pendingBytes = 0;
      return;
    }
    if (this.pending.length === 1) this.socket.write(this.pending[0]);
    else if (this.pending.every((piece) => typeof piece === 'string')) this.socket.write(this.pending.join(''));
    else {
      // Encoded pushes go as they are, in one writev.
      this.socket.cork();
      for (const piece of this.pending) this.socket.write(piece);
      this.socket.uncork();
    }
    this.pending = [];
    this.pendingBytes = 0;
  }

  private receive(chunk: Buffer): void {
    if (this.closedReason !== null) return;
    this.holdTimer.refresh();
    if (++this.undecodedChunks >= PAUSE_CHUNKS) this.socket.pause();
    this.decoder.write(chunk);
  }

  private deliver(events: DecodedEvent[]): void {
    // Data waiting in the decoder is data received: the peer is alive.
    this.holdTimer.refresh();
    if (--this.undecodedChunks <= RESUME_CHUNKS && this.socket.isPaused()) this.socket.resume();
    for (const event of events) {
      if (this.closedReason !== null) return;
      try {
        if ('stanza' in event) this.handlers.stanza(event.stanza);
        else if ('open' in event) this.handlers.streamOpen(event.open);
        else if ('close' in event) this.close('peer closed the stream');
        else if ('streamError' in event) this.close(`peer sent stream error ${event.streamError.condition}: ${event.streamError.text}`, null);
        else this.close(`malformed or unexpected stanza: ${event.malformed}`, 'bad-format');
      } catch (error) {
        if (error instanceof StanzaError) this.close(`malformed or unexpected stanza: ${error.message}`, 'bad-format');
        else this.close(`internal error handling a stanza: ${(error as Error).stack ?? String(error)}`, 'internal-server-error');
      }
    }
    if (this.closedWhileDecoding && this.undecodedChunks === 0) this.close('connection closed by peer', null);
  }
}
