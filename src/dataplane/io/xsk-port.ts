/**
 * A veth's host end read and written through an AF_XDP socket in copy mode
 * (native/xsk.cc): the XDP program on the device redirects every frame the
 * pod sends into the socket's RX ring, so none climbs the host stack; the
 * worker copies a batch out with no system call, and transmits a batch with
 * one TX-ring update and a sendto(2) kick. The fd is readable while frames
 * wait, so the worker polls it with its TAPs and sockets.
 */
import type { PortTeardown } from './port-teardown';
import type { NativeIo, XskStats } from './native';
import { QueuedPort } from './live-ports';

export class XskPort extends QueuedPort {
  readonly kind = 'af_xdp';
  readonly fd: number;
  /** Descriptors one kick sends (XDP_MAX_TX_SKB_BUDGET where the kernel has it). */
  readonly txBudget: number;

  constructor(
    private readonly io: NativeIo,
    readonly device: string,
  ) {
    super();
    const handle = io.xskOpen(device, 0);
    this.fd = handle.fd;
    this.txBudget = handle.txBudget;
  }

  receive(buffer: Uint8Array, offsets: Int32Array, lengths: Int32Array, max: number, capacity: number): number {
    return this.io.xskReceive(this.fd, buffer, offsets, lengths, max, capacity);
  }

  stats(): XskStats {
    return this.io.xskStats(this.fd);
  }

  /** Detaches the XDP program and releases the socket, its rings and UMEM. */
  close(): void {
    this.io.xskClose(this.fd);
  }

  /** close, together with the other ports of a stopping worker (the device is the pod's veth: nothing of it to release here). */
  closeInto(teardown: PortTeardown, _releaseDevice: boolean): void {
    teardown.releaseXsk(this.fd);
  }

  protected transmit(data: Buffer, offsets: Int32Array, lengths: Int32Array, count: number): number {
    return this.io.xskSend(this.fd, data, offsets, lengths, count);
  }
}
