/**
 * The ports of the live daemon, used inside the dataplane worker:
 *
 *   TapPort     a pod's TAP device: each transmitted frame is one write(2),
 *               queued during a batch and written with one writeBatch call.
 *   RingPort    an interface attached through libpcap (`cap`) on the main
 *               thread, such as the host side of a pod's veth: frames go
 *               into a shared ring that the main thread drains and injects.
 *   FabricPort  the underlay: the pipeline's tunnel frames lose their
 *               Ethernet header and leave as complete IPv4 packets through a
 *               raw IP socket, so the outer header is exactly ours (the RFC
 *               7510 entropy source port, the GRE header) while the kernel
 *               routes and resolves the underlay neighbour.
 *
 * Both queue references into the packet pool, not copies: the pipeline
 * flushes its ports at the end of every batch, before the slots are reused.
 */
import type { NativeIo } from './native';
import type { SharedRing } from './shared-ring';
import type { PacketPort } from '../vif';
import { ETH_HEADER_LEN } from '../protocols/ethernet';
import { readU32 } from '../protocols/ipv4';

const QUEUE = 256;

export class TapPort implements PacketPort {
  readonly fd: number;
  /** Frames the device would not take (queue full): dropped, counted. */
  dropped = 0;
  private readonly io: NativeIo;
  private readonly offsets = new Int32Array(QUEUE);
  private readonly lengths = new Int32Array(QUEUE);
  private count = 0;
  private data: Buffer | null = null;

  constructor(io: NativeIo, fd: number) {
    this.io = io;
    this.fd = fd;
  }

  send(data: Buffer, offset: number, length: number): void {
    if (this.count === QUEUE) this.flush();
    this.data = data;
    this.offsets[this.count] = offset;
    this.lengths[this.count] = length;
    this.count++;
  }

  flush(): void {
    if (this.count === 0 || this.data === null) return;
    const written = this.io.writeBatch(this.fd, this.data, this.offsets, this.lengths, this.count);
    this.dropped += this.count - written;
    this.count = 0;
  }
}

export class RingPort implements PacketPort {
  dropped = 0;
  private pending = false;

  constructor(private readonly ring: SharedRing) {}

  send(data: Buffer, offset: number, length: number): void {
    const at = this.ring.reserve(length);
    if (at < 0) {
      this.dropped++;
      return;
    }
    this.ring.data.set(data.subarray(offset, offset + length), at);
    this.ring.commit();
    this.pending = true;
  }

  flush(): void {
    if (!this.pending) return;
    this.pending = false;
    this.ring.notify();
  }
}

export class FabricPort implements PacketPort {
  dropped = 0;
  private readonly io: NativeIo;
  private readonly rawFd: number;
  private readonly offsets = new Int32Array(QUEUE);
  private readonly lengths = new Int32Array(QUEUE);
  private readonly destinations = new Uint32Array(QUEUE);
  private count = 0;
  private data: Buffer | null = null;

  constructor(io: NativeIo, rawFd: number) {
    this.io = io;
    this.rawFd = rawFd;
  }

  send(data: Buffer, offset: number, length: number): void {
    if (this.count === QUEUE) this.flush();
    const ip = offset + ETH_HEADER_LEN;
    this.data = data;
    this.offsets[this.count] = ip;
    this.lengths[this.count] = length - ETH_HEADER_LEN;
    this.destinations[this.count] = readU32(data, ip + 16);
    this.count++;
  }

  flush(): void {
    if (this.count === 0 || this.data === null) return;
    const sent = this.io.sendBatch(this.rawFd, this.data, this.offsets, this.lengths, this.destinations, null, this.count);
    this.dropped += this.count - sent;
    this.count = 0;
  }
}
