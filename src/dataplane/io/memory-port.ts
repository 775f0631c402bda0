/**
 * In-memory ports: one keeps a copy of every frame (tests, tools), one only
 * counts (benchmarks, where copying would measure memcpy, not the pipeline).
 */
import type { PacketPort } from '../vif';

export class MemoryPort implements PacketPort {
  readonly frames: Buffer[] = [];

  send(data: Buffer, offset: number, length: number): void {
    this.frames.push(Buffer.from(data.subarray(offset, offset + length)));
  }

  flush(): void {}
}

export class CountingPort implements PacketPort {
  packets = 0;
  bytes = 0;

  send(_data: Buffer, _offset: number, length: number): void {
    this.packets++;
    this.bytes += length;
  }

  flush(): void {}
}
