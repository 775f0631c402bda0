/**
 * Capture files: read classic pcap and pcapng, write classic pcap.
 *
 * Classic pcap: a 24-byte file header, then one 16-byte header per record.
 * Every field is in the byte order the magic number is read in.
 *
 *   file header                           record header
 *    0  magic: a1b2c3d4 µs, a1b23c4d ns     0  timestamp seconds
 *    4  version major (2)                   4  timestamp µs or ns
 *    6  version minor (4)                   8  captured length
 *    8  thiszone (0)                       12  original length
 *   12  sigfigs (0)                        16  captured bytes
 *   16  snaplen
 *   20  link type (1 = Ethernet)
 *
 * pcapng: a sequence of blocks, each
 *
 *    0  block type
 *    4  block total length (a multiple of 4, at least 12)
 *    8  body, then options (code:2, length:2, value padded to 4; code 0 ends)
 *   -4  block total length again
 *
 * Each section starts with a Section Header Block that sets its byte order
 * and forgets the interfaces of the previous section. Offsets in the block
 * (fields are 4 bytes unless noted):
 *
 *   SHB (0x0a0d0d0a)         IDB (1)                     EPB (6)                SPB (3)
 *    8  byte-order magic      8  link type (2 bytes)      8  interface id        8  original length
 *       1a2b3c4d             10  reserved (2 bytes)      12  timestamp high     12  packet bytes
 *   12  version major (1)    12  snaplen (0 = none)      16  timestamp low
 *   14  version minor        16  options, among them     20  captured length
 *   16  section length (8)       code 9 if_tsresol (1)   24  original length
 *   24  options                  code 14 if_tsoffset (8) 28  packet bytes
 *
 * An EPB timestamp counts units of if_tsresol (bit 7 clear: 10^-n s, set:
 * 2^-n s; 10^-6 s when absent) since the epoch plus if_tsoffset seconds. An
 * SPB has no timestamp, and its captured length is min(original length, the
 * snaplen of interface 0).
 */
import * as fs from 'node:fs';
import type { PacketPort } from '../vif';

export interface CapturedFrame {
  /** Capture time in nanoseconds since the Unix epoch. */
  timestampNs: bigint;
  /** The captured bytes (a view into the buffer holding the whole file). */
  data: Buffer;
  /** Length of the frame on the wire; more than data.length when the capture cut it. */
  originalLength: number;
}

export const LINKTYPE_ETHERNET = 1;
/** libpcap's largest snaplen: readers refuse Ethernet records longer than this. */
export const MAX_SNAPLEN = 262144;

const NS_PER_SECOND = 1_000_000_000n;
const NS_PER_MICROSECOND = 1000n;

const PCAP_MAGIC_MICROSECONDS = 0xa1b2c3d4;
const PCAP_MAGIC_NANOSECONDS = 0xa1b23c4d;
const PCAP_FILE_HEADER_LEN = 24;
const PCAP_RECORD_HEADER_LEN = 16;
const PCAP_VERSION_MAJOR = 2;
const PCAP_VERSION_MINOR = 4;

const PCAPNG_SHB = 0x0a0d0d0a;
const PCAPNG_IDB = 1;
const PCAPNG_SPB = 3;
const PCAPNG_EPB = 6;
const PCAPNG_BYTE_ORDER_MAGIC = 0x1a2b3c4d;
const PCAPNG_VERSION_MAJOR = 1;
const PCAPNG_MIN_BLOCK_LEN = 12;
const PCAPNG_SHB_MIN_LEN = 28;
const PCAPNG_IDB_MIN_LEN = 20;
const PCAPNG_SPB_MIN_LEN = 16;
const PCAPNG_EPB_MIN_LEN = 32;
const OPT_END_OF_OPTIONS = 0;
const OPT_IF_TSRESOL = 9;
const OPT_IF_TSOFFSET = 14;
const TSRESOL_POWER_OF_2 = 0x80;
const TSRESOL_EXPONENT = 0x7f;
const DEFAULT_UNITS_PER_SECOND = 1_000_000n;

/** Classic pcap magic numbers as read little-endian from the first four bytes. */
const CLASSIC_FORMATS = new Map<number, { littleEndian: boolean; nanosecond: boolean }>([
  [PCAP_MAGIC_MICROSECONDS, { littleEndian: true, nanosecond: false }],
  [0xd4c3b2a1, { littleEndian: false, nanosecond: false }],
  [PCAP_MAGIC_NANOSECONDS, { littleEndian: true, nanosecond: true }],
  [0x4d3cb2a1, { littleEndian: false, nanosecond: true }],
]);

function captureError(file: string, problem: string): Error {
  return new Error(`${file}: ${problem}`);
}

function readU16(bytes: Buffer, offset: number, littleEndian: boolean): number {
  return littleEndian ? bytes.readUInt16LE(offset) : bytes.readUInt16BE(offset);
}

function readU32(bytes: Buffer, offset: number, littleEndian: boolean): number {
  return littleEndian ? bytes.readUInt32LE(offset) : bytes.readUInt32BE(offset);
}

function padTo4(length: number): number {
  return (length + 3) & ~3;
}

/** Reads a whole pcap or pcapng file of Ethernet frames, in file order. */
export function readCapture(file: string): CapturedFrame[] {
  const bytes = fs.readFileSync(file);
  if (bytes.length < 4) throw captureError(file, `file is truncated (${bytes.length} bytes, no magic number)`);
  const magic = bytes.readUInt32LE(0);
  if (magic === PCAPNG_SHB) return readPcapng(file, bytes);
  const classic = CLASSIC_FORMATS.get(magic);
  if (classic) return readClassicPcap(file, bytes, classic.littleEndian, classic.nanosecond);
  throw captureError(file, `unknown magic number 0x${bytes.toString('hex', 0, 4)} (not a pcap or pcapng file)`);
}

function readClassicPcap(file: string, bytes: Buffer, littleEndian: boolean, nanosecond: boolean): CapturedFrame[] {
  if (bytes.length < PCAP_FILE_HEADER_LEN) throw captureError(file, `pcap file header is truncated (${bytes.length} of ${PCAP_FILE_HEADER_LEN} bytes)`);
  const versionMajor = readU16(bytes, 4, littleEndian);
  if (versionMajor !== PCAP_VERSION_MAJOR) {
    throw captureError(file, `unsupported pcap version ${versionMajor}.${readU16(bytes, 6, littleEndian)}`);
  }
  const linkType = readU32(bytes, 20, littleEndian);
  if (linkType !== LINKTYPE_ETHERNET) throw captureError(file, `link type ${linkType} is not Ethernet (${LINKTYPE_ETHERNET})`);
  const nsPerFractionUnit = nanosecond ? 1n : NS_PER_MICROSECOND;

  const frames: CapturedFrame[] = [];
  let offset = PCAP_FILE_HEADER_LEN;
  while (offset < bytes.length) {
    if (offset + PCAP_RECORD_HEADER_LEN > bytes.length) throw captureError(file, `pcap record header at offset ${offset} is truncated`);
    const seconds = readU32(bytes, offset, littleEndian);
    const fraction = readU32(bytes, offset + 4, littleEndian);
    const capturedLength = readU32(bytes, offset + 8, littleEndian);
    const originalLength = readU32(bytes, offset + 12, littleEndian);
    const dataStart = offset + PCAP_RECORD_HEADER_LEN;
    if (dataStart + capturedLength > bytes.length) {
      throw captureError(file, `pcap record at offset ${offset} is truncated (${capturedLength} captured bytes, ${bytes.length - dataStart} left in the file)`);
    }
    frames.push({
      timestampNs: BigInt(seconds) * NS_PER_SECOND + BigInt(fraction) * nsPerFractionUnit,
      data: bytes.subarray(dataStart, dataStart + capturedLength),
      originalLength,
    });
    offset = dataStart + capturedLength;
  }
  return frames;
}

interface PcapngInterface {
  linkType: number;
  /** 0 means no limit. */
  snapLength: number;
  unitsPerSecond: bigint;
  offsetSeconds: bigint;
}

function readPcapng(file: string, bytes: Buffer): CapturedFrame[] {
  const frames: CapturedFrame[] = [];
  let littleEndian = true;
  let interfaces: PcapngInterface[] = [];
  let offset = 0;
  const truncated = (): Error => captureError(file, `pcapng block at offset ${offset} is truncated`);
  const corrupt = (problem: string): Error => captureError(file, `pcapng block at offset ${offset} is corrupt: ${problem}`);

  const interfaceOf = (interfaceId: number): PcapngInterface => {
    const described = interfaces[interfaceId];
    if (!described) throw corrupt(`packet on interface ${interfaceId}, but the section describes ${interfaces.length}`);
    if (described.linkType !== LINKTYPE_ETHERNET) {
      throw captureError(file, `packet at offset ${offset} is on interface ${interfaceId} with link type ${described.linkType}, not Ethernet (${LINKTYPE_ETHERNET})`);
    }
    return described;
  };

  while (offset < bytes.length) {
    if (offset + PCAPNG_MIN_BLOCK_LEN > bytes.length) throw truncated();
    // The SHB type reads the same in both byte orders; its byte-order magic sets the order for the section.
    const blockType = readU32(bytes, offset, littleEndian);
    if (blockType === PCAPNG_SHB) {
      const byteOrderMagic = bytes.readUInt32LE(offset + 8);
      if (byteOrderMagic === PCAPNG_BYTE_ORDER_MAGIC) littleEndian = true;
      else if (bytes.readUInt32BE(offset + 8) === PCAPNG_BYTE_ORDER_MAGIC) littleEndian = false;
      else throw corrupt(`byte-order magic 0x${bytes.toString('hex', offset + 8, offset + 12)} is neither 1a2b3c4d nor 4d3c2b1a`);
      interfaces = [];
    }
    const blockLength = readU32(bytes, offset + 4, littleEndian);
    if (blockLength < PCAPNG_MIN_BLOCK_LEN || blockLength % 4 !== 0) throw corrupt(`block total length ${blockLength}`);
    if (offset + blockLength > bytes.length) throw truncated();
    const trailingLength = readU32(bytes, offset + blockLength - 4, littleEndian);
    if (trailingLength !== blockLength) throw corrupt(`block total length ${blockLength} at the start but ${trailingLength} at the end`);
    const blockEnd = offset + blockLength - 4;

    switch (blockType) {
      case PCAPNG_SHB: {
        if (blockLength < PCAPNG_SHB_MIN_LEN) throw corrupt(`section header block of ${blockLength} bytes`);
        const versionMajor = readU16(bytes, offset + 12, littleEndian);
        if (versionMajor !== PCAPNG_VERSION_MAJOR) throw corrupt(`unsupported pcapng version ${versionMajor}.${readU16(bytes, offset + 14, littleEndian)}`);
        break;
      }
      case PCAPNG_IDB: {
        if (blockLength < PCAPNG_IDB_MIN_LEN) throw corrupt(`interface description block of ${blockLength} bytes`);
        const described: PcapngInterface = {
          linkType: readU16(bytes, offset + 8, littleEndian),
          snapLength: readU32(bytes, offset + 12, littleEndian),
          unitsPerSecond: DEFAULT_UNITS_PER_SECOND,
          offsetSeconds: 0n,
        };
        let option = offset + 16;
        while (option < blockEnd) {
          const code = readU16(bytes, option, littleEndian);
          const valueLength = readU16(bytes, option + 2, littleEndian);
          const value = option + 4;
          if (code === OPT_END_OF_OPTIONS) break;
          if (value + padTo4(valueLength) > blockEnd) throw corrupt(`option ${code} at offset ${option} runs past the end of the block`);
          if (code === OPT_IF_TSRESOL) {
            if (valueLength !== 1) throw corrupt(`if_tsresol option of ${valueLength} bytes, not 1`);
            const resolution = bytes[value];
            const exponent = BigInt(resolution & TSRESOL_EXPONENT);
            described.unitsPerSecond = resolution & TSRESOL_POWER_OF_2 ? 1n << exponent : 10n ** exponent;
          } else if (code === OPT_IF_TSOFFSET) {
            if (valueLength !== 8) throw corrupt(`if_tsoffset option of ${valueLength} bytes, not 8`);
            described.offsetSeconds = littleEndian ? bytes.readBigInt64LE(value) : bytes.readBigInt64BE(value);
          }
          option = value + padTo4(valueLength);
        }
        interfaces.push(described);
        break;
      }
      case PCAPNG_EPB: {
        if (blockLength < PCAPNG_EPB_MIN_LEN) throw corrupt(`enhanced packet block of ${blockLength} bytes`);
        const described = interfaceOf(readU32(bytes, offset + 8, littleEndian));
        const ticks = (BigInt(readU32(bytes, offset + 12, littleEndian)) << 32n) | BigInt(readU32(bytes, offset + 16, littleEndian));
        const capturedLength = readU32(bytes, offset + 20, littleEndian);
        const dataStart = offset + 28;
        if (dataStart + padTo4(capturedLength) > blockEnd) throw corrupt(`captured length ${capturedLength} does not fit in the block`);
        frames.push({
          // Truncates to the nanosecond, as Wireshark does, so a time never rounds up past the real one.
          timestampNs: (ticks * NS_PER_SECOND) / described.unitsPerSecond + described.offsetSeconds * NS_PER_SECOND,
          data: bytes.subarray(dataStart, dataStart + capturedLength),
          originalLength: readU32(bytes, offset + 24, littleEndian),
        });
        break;
      }
      case PCAPNG_SPB: {
        if (blockLength < PCAPNG_SPB_MIN_LEN) throw corrupt(`simple packet block of ${blockLength} bytes`);
        const described = interfaceOf(0);
        const originalLength = readU32(bytes, offset + 8, littleEndian);
        const capturedLength = described.snapLength === 0 ? originalLength : Math.min(originalLength, described.snapLength);
        const dataStart = offset + 12;
        if (dataStart + padTo4(capturedLength) > blockEnd) throw corrupt(`captured length ${capturedLength} does not fit in the block`);
        frames.push({ timestampNs: 0n, data: bytes.subarray(dataStart, dataStart + capturedLength), originalLength });
        break;
      }
      default:
        break; // name resolution, statistics, custom and obsolete blocks carry no frames to replay
    }
    offset += blockLength;
  }
  return frames;
}

export interface PcapWriterOptions {
  /** Nanosecond timestamps (magic a1b23c4d); otherwise microseconds, truncated. */
  nanosecond: boolean;
  /** Longest record kept; longer frames are cut to it. Default and maximum MAX_SNAPLEN. */
  snaplen?: number;
}

const WRITE_CHUNK_BYTES = 64 * 1024;

/**
 * Writes a little-endian classic pcap file of Ethernet frames. Records are
 * staged in memory and written with fs.writeSync a chunk at a time, so the
 * bytes depend only on the calls made, never on timing.
 */
export class PcapWriter {
  readonly file: string;
  private readonly nanosecond: boolean;
  private readonly snaplen: number;
  private readonly fd: number;
  private readonly staging: Buffer;
  private staged = 0;
  private closed = false;

  constructor(file: string, options: PcapWriterOptions) {
    const snaplen = options.snaplen ?? MAX_SNAPLEN;
    if (!Number.isInteger(snaplen) || snaplen < 1 || snaplen > MAX_SNAPLEN) {
      throw new RangeError(`${file}: snaplen ${snaplen} is outside 1..${MAX_SNAPLEN}`);
    }
    this.file = file;
    this.nanosecond = options.nanosecond;
    this.snaplen = snaplen;
    // Room for the largest record, so a record never has to be split across writes.
    this.staging = Buffer.alloc(Math.max(WRITE_CHUNK_BYTES, PCAP_RECORD_HEADER_LEN + snaplen));
    this.fd = fs.openSync(file, 'w');
    const header = this.staging;
    header.writeUInt32LE(this.nanosecond ? PCAP_MAGIC_NANOSECONDS : PCAP_MAGIC_MICROSECONDS, 0);
    header.writeUInt16LE(PCAP_VERSION_MAJOR, 4);
    header.writeUInt16LE(PCAP_VERSION_MINOR, 6);
    // thiszone and sigfigs stay 0 (Buffer.alloc zeroes them)
    header.writeUInt32LE(snaplen, 16);
    header.writeUInt32LE(LINKTYPE_ETHERNET, 20);
    this.staged = PCAP_FILE_HEADER_LEN;
  }

  /** Appends the frame at data[offset, offset + length), cut to the snaplen. */
  write(timestampNs: bigint, data: Uint8Array, offset: number, length: number): void {
    if (this.closed) throw new Error(`${this.file}: write after close`);
    if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0 || offset + length > data.length) {
      throw new RangeError(`${this.file}: frame [${offset}, ${offset} + ${length}) is outside a buffer of ${data.length} bytes`);
    }
    const seconds = timestampNs / NS_PER_SECOND;
    if (timestampNs < 0n || seconds > 0xffffffffn) {
      throw new RangeError(`${this.file}: timestamp ${timestampNs} ns does not fit a pcap record (0 to 2^32 - 1 seconds)`);
    }
    const nanoseconds = timestampNs % NS_PER_SECOND;
    const capturedLength = Math.min(length, this.snaplen);
    if (this.staged + PCAP_RECORD_HEADER_LEN + capturedLength > this.staging.length) this.flush();

    const record = this.staged;
    this.staging.writeUInt32LE(Number(seconds), record);
    this.staging.writeUInt32LE(Number(this.nanosecond ? nanoseconds : nanoseconds / NS_PER_MICROSECOND), record + 4);
    this.staging.writeUInt32LE(capturedLength, record + 8);
    this.staging.writeUInt32LE(length, record + 12);
    this.staging.set(data.subarray(offset, offset + capturedLength), record + PCAP_RECORD_HEADER_LEN);
    this.staged = record + PCAP_RECORD_HEADER_LEN + capturedLength;
  }

  /** Writes the staged records to the file. */
  flush(): void {
    let written = 0;
    while (written < this.staged) written += fs.writeSync(this.fd, this.staging, written, this.staged - written);
    this.staged = 0;
  }

  /** Writes what is staged and closes the file; closing again does nothing. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.flush();
    } finally {
      fs.closeSync(this.fd);
    }
  }
}

/**
 * A port that records every frame sent to it into a pcap file, stamped with
 * the time its clock gives (a test's virtual clock makes the file
 * reproducible byte for byte).
 */
export class PcapPort implements PacketPort {
  private readonly writer: PcapWriter;
  private readonly clock: () => bigint;
  private framesWritten = 0;

  constructor(file: string, clock: () => bigint, options: PcapWriterOptions = { nanosecond: true }) {
    this.writer = new PcapWriter(file, options);
    this.clock = clock;
  }

  /** Frames written so far. */
  get count(): number {
    return this.framesWritten;
  }

  send(data: Buffer, offset: number, length: number): void {
    // The writer copies the bytes before returning, as PacketPort requires.
    this.writer.write(this.clock(), data, offset, length);
    this.framesWritten++;
  }

  flush(): void {
    this.writer.flush();
  }

  close(): void {
    this.writer.close();
  }
}

/**
 * Interleaves several captures into one sequence in timestamp order; equal
 * timestamps keep input order, then file order, so the result is the same on
 * every run. A full sort: an input whose timestamps go backwards is
 * reordered too (mergecap, by contrast, keeps each input's own order).
 */
export function mergeByTimestamp(inputs: CapturedFrame[][]): Array<{ input: number; frame: CapturedFrame }> {
  const tagged = inputs.flatMap((frames, input) => frames.map((frame, position) => ({ input, position, frame })));
  tagged.sort(
    (a, b) =>
      (a.frame.timestampNs < b.frame.timestampNs ? -1 : a.frame.timestampNs > b.frame.timestampNs ? 1 : 0) ||
      a.input - b.input ||
      a.position - b.position,
  );
  return tagged.map(({ input, frame }) => ({ input, frame }));
}
