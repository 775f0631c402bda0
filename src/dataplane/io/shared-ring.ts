/**
 * A single-producer single-consumer ring of fixed-size records in a
 * SharedArrayBuffer: the dataplane worker writes (drop events, captured
 * frames) without a message or an allocation per record, the main thread
 * reads when it likes. A full ring drops the new record and counts it, so
 * the packet path never waits for a slow reader.
 *
 *   header (Int32): [0] head (next record to read), [1] tail (next to write),
 *                   [2] records dropped because the ring was full
 *   records: capacity x recordSize bytes; a record starts with its length (u16)
 *
 * head and tail only grow (wrapping at 2^32); the capacity is a power of two
 * so `index & (capacity - 1)` stays continuous across the wrap.
 */
const HEAD = 0;
const TAIL = 1;
const OVERRUNS = 2;
const HEADER_INTS = 4;

export class SharedRing {
  readonly buffer: SharedArrayBuffer;
  readonly capacity: number;
  readonly recordSize: number;
  private readonly header: Int32Array;
  private readonly bytes: Uint8Array;

  constructor(bufferOrCapacity: SharedArrayBuffer | number, recordSize: number) {
    this.recordSize = recordSize;
    if (typeof bufferOrCapacity === 'number') {
      if (bufferOrCapacity < 1 || (bufferOrCapacity & (bufferOrCapacity - 1)) !== 0) throw new Error(`ring capacity ${bufferOrCapacity} is not a power of two`);
      this.capacity = bufferOrCapacity;
      this.buffer = new SharedArrayBuffer(HEADER_INTS * 4 + bufferOrCapacity * recordSize);
    } else {
      this.buffer = bufferOrCapacity;
      this.capacity = (bufferOrCapacity.byteLength - HEADER_INTS * 4) / recordSize;
    }
    this.header = new Int32Array(this.buffer, 0, HEADER_INTS);
    this.bytes = new Uint8Array(this.buffer, HEADER_INTS * 4);
  }

  /**
   * Offset (in `bytes`) where the producer may write a record of `length`
   * bytes after the 2-byte length field, or -1 when the ring is full (the
   * record is counted as an overrun). Call `commit` once written.
   */
  reserve(length: number): number {
    const tail = Atomics.load(this.header, TAIL);
    const head = Atomics.load(this.header, HEAD);
    if (((tail - head) | 0) >= this.capacity) {
      Atomics.add(this.header, OVERRUNS, 1);
      return -1;
    }
    const at = (tail & (this.capacity - 1)) * this.recordSize;
    const stored = Math.min(length, this.recordSize - 2);
    this.bytes[at] = stored >>> 8;
    this.bytes[at + 1] = stored & 0xff;
    return at + 2;
  }

  commit(): void {
    Atomics.add(this.header, TAIL, 1);
  }

  /** The producer's view of the record area. */
  get data(): Uint8Array {
    return this.bytes;
  }

  /** Reads every record available, oldest first (consumer side). */
  drain(visit: (record: Uint8Array) => void): number {
    let head = Atomics.load(this.header, HEAD);
    const tail = Atomics.load(this.header, TAIL);
    let count = 0;
    while (head !== tail) {
      const at = (head & (this.capacity - 1)) * this.recordSize;
      const length = (this.bytes[at] << 8) | this.bytes[at + 1];
      visit(this.bytes.subarray(at + 2, at + 2 + length));
      head = (head + 1) | 0;
      count++;
    }
    Atomics.store(this.header, HEAD, head);
    return count;
  }

  get overruns(): number {
    return Atomics.load(this.header, OVERRUNS);
  }

  /** Producer: wakes a consumer waiting in `waitForRecords`. */
  notify(): void {
    Atomics.notify(this.header, TAIL);
  }

  /** Consumer: resolves once records may be available (or after `timeoutMs`). */
  async waitForRecords(timeoutMs: number): Promise<void> {
    const tail = Atomics.load(this.header, TAIL);
    if (tail !== Atomics.load(this.header, HEAD)) return;
    const waiting = Atomics.waitAsync(this.header, TAIL, tail, timeoutMs);
    if (waiting.async) await waiting.value;
  }
}
