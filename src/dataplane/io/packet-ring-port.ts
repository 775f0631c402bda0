/**
 * A veth's host end read through an AF_PACKET TPACKET_V2 ring and written
 * with sendmmsg(2) past the qdisc (native/packet_ring.cc): the fallback
 * where AF_XDP is refused. A tc program on the device's ingress drops what
 * the ring has seen, so the pod's frames do not also climb the host stack.
 */
import type { PortTeardown } from './port-teardown';
import type { NativeIo } from './native';
import { QueuedPort } from './live-ports';

export class PacketRingPort extends QueuedPort {
  readonly kind = 'af_packet';
  readonly fd: number;
  /** Frames the kernel dropped because the ring was full (PACKET_STATISTICS, summed). */
  private ringDrops = 0;
  private ringPackets = 0;

  constructor(
    private readonly io: NativeIo,
    readonly device: string,
  ) {
    super();
    this.fd = io.packetRingOpen(device);
  }

  receive(buffer: Uint8Array, offsets: Int32Array, lengths: Int32Array, max: number, capacity: number): number {
    return this.io.packetRingReceive(this.fd, buffer, offsets, lengths, max, capacity);
  }

  /** Cumulative: the kernel resets its counters on every read. */
  stats(): { packets: number; drops: number } {
    const delta = this.io.packetRingStats(this.fd);
    this.ringPackets += delta.packets;
    this.ringDrops += delta.drops;
    return { packets: this.ringPackets, drops: this.ringDrops };
  }

  /** Detaches the drop program, unmaps the ring, closes the socket. */
  close(): void {
    this.io.packetRingClose(this.fd);
  }

  /** close, together with the other ports of a stopping worker (the device is the pod's veth: nothing of it to release here). */
  closeInto(teardown: PortTeardown, _releaseDevice: boolean): void {
    teardown.releaseRing(this.fd);
  }

  protected transmit(data: Buffer, offsets: Int32Array, lengths: Int32Array, count: number): number {
    return this.io.packetSend(this.fd, data, offsets, lengths, count);
  }
}
