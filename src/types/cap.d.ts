/** The parts of the `cap` package (libpcap binding) this project uses. */
declare module 'cap' {
  import { EventEmitter } from 'node:events';
  export class Cap extends EventEmitter {
    /** Opens a live capture on `device` with a BPF `filter`; frames are copied into `buffer`. Returns the link type. */
    open(device: string, filter: string, bufferSize: number, buffer: Buffer): string;
    setMinBytes?(bytes: number): void;
    /** Injects a frame (the first `length` bytes of `buffer`). */
    send(buffer: Buffer, length?: number): void;
    close(): void;
    on(event: 'packet', listener: (bytes: number, truncated: boolean) => void): this;
    static deviceList(): Array<{ name: string }>;
  }
}
