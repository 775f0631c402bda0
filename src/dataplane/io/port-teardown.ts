/**
 * The ports of a stopping worker, released together. Each close of a TAP, an
 * AF_XDP or an AF_PACKET socket and each device deletion waits for an RCU
 * grace period (16-23 ms on this kernel), so 500 ports released one by one
 * take 8-11 s; collected here, they go by one native call per kind, whose
 * threads wait for their grace periods at the same time.
 */
import type { NativeIo } from './native';

export class PortTeardown {
  private readonly fds: number[] = [];
  private readonly xsks: number[] = [];
  private readonly rings: number[] = [];
  private readonly devices: string[] = [];

  constructor(private readonly io: NativeIo) {}

  closeFd(fd: number): void {
    this.fds.push(fd);
  }

  releaseXsk(fd: number): void {
    this.xsks.push(fd);
  }

  releaseRing(fd: number): void {
    this.rings.push(fd);
  }

  /** A device deleted once the sockets on it are released (a veth's host end: its pod end goes along). */
  deleteDevice(name: string): void {
    this.devices.push(name);
  }

  run(): void {
    this.io.closeMany(Int32Array.from(this.fds));
    this.io.xskCloseMany(Int32Array.from(this.xsks));
    this.io.packetRingCloseMany(Int32Array.from(this.rings));
    this.io.linkDeleteMany(this.devices);
  }
}
