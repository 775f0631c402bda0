/**
 * The ports of the live daemon, used inside the dataplane worker:
 *
 *   TapPort     a pod's TAP device: each transmitted frame is one write(2),
 *               queued during a batch and written with one writeBatch call.
 *   XskPort     a veth's host end read and written through AF_XDP (xsk-port.ts)
 *   PacketRingPort  the same through AF_PACKET, where AF_XDP is refused
 *               (packet-ring-port.ts); interface-port.ts picks one of the two.
 *   FabricPort  the underlay (fabric-port.ts): tunnel frames through a raw
 *               IP socket, or MPLS over UDP in runs with UDP_SEGMENT.
 *
 * All queue references into the packet pool, not copies: the pipeline
 * flushes its ports at the end of every batch, before the slots are reused.
 */
import type { PortTeardown } from './port-teardown';
import type { NativeIo } from './native';
import type { PacketPort } from '../vif';

const QUEUE = 256;

/** A port that queues a batch's frames and hands them to the kernel in one call at flush. */
export abstract class QueuedPort implements PacketPort {
  /** Frames the device would not take (queue full): dropped, counted. */
  dropped = 0;
  private readonly offsets = new Int32Array(QUEUE);
  private readonly lengths = new Int32Array(QUEUE);
  private count = 0;
  private data: Buffer | null = null;

  send(data: Buffer, offset: number, length: number): void {
    if (this.count === QUEUE) this.flush();
    this.data = data;
    this.offsets[this.count] = offset;
    this.lengths[this.count] = length;
    this.count++;
  }

  flush(): void {
    if (this.count === 0 || this.data === null) return;
    const done = this.transmit(this.data, this.offsets, this.lengths, this.count);
    this.dropped += this.count - done;
    this.count = 0;
  }

  /** Hands frames [0, count) to the kernel; returns how many it took or dropped-and-counted itself. */
  protected abstract transmit(data: Buffer, offsets: Int32Array, lengths: Int32Array, count: number): number;
}

export class TapPort extends QueuedPort {
  readonly kind = 'tap';

  /** persistent: a pod's TAP (podTapOpen), which outlives this port unless released. */
  constructor(
    private readonly io: NativeIo,
    readonly fd: number,
    readonly persistent = false,
  ) {
    super();
  }

  /** A batch of frames from the TAP into the buffer (see NativeIo.readBatch). */
  receive(buffer: Uint8Array, offsets: Int32Array, lengths: Int32Array, max: number, capacity: number): number {
    return this.io.readBatch(this.fd, buffer, offsets, lengths, max, capacity);
  }

  /** Closes the fd; releaseDevice: a persistent TAP goes too (the port is deleted, not the daemon restarted). */
  close(releaseDevice = true): void {
    if (releaseDevice && this.persistent) this.io.tapRelease(this.fd);
    this.io.close(this.fd);
  }

  /** close, with the fd closed by the teardown together with the other ports'. */
  closeInto(teardown: PortTeardown, releaseDevice: boolean): void {
    if (releaseDevice && this.persistent) this.io.tapRelease(this.fd);
    teardown.closeFd(this.fd);
  }

  protected transmit(data: Buffer, offsets: Int32Array, lengths: Int32Array, count: number): number {
    return this.io.writeBatch(this.fd, data, offsets, lengths, count);
  }
}
