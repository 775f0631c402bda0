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
 *   20  link type
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
 *   16  section length (8)       code 2 if_name          24  original length
 *   24  options                  code 9 if_tsresol (1)   28  packet bytes
 *                                code 14 if_tsoffset (8)
 *
 * An EPB timestamp counts units of if_tsresol (bit 7 clear: 10^-n s, set:
 * 2^-n s; 10^-6 s when absent) since the epoch plus if_tsoffset seconds. An
 * SPB has no timestamp, and its captured length is min(original length, the
 * snaplen of interface 0).
 *
 * Link types read (tcpdump.org/linktypes.html): Ethernet (1); raw IP (101,
 * and 228 for IPv4 only), the packet starting at its IP header; Linux
 * cooked capture v1 (113, what `tcpdump -i any` wrote before libpcap 1.10)
 * and v2 (276, `tcpdump -i any` since). Their headers, big-endian:
 *
 *   SLL (16 bytes)                    SLL2 (20 bytes)
 *    0  packet type                    0  protocol (ethertype)
 *    2  ARPHRD type                    2  reserved
 *    4  address length                 4  interface index
 *    6  address (8 bytes, padded)      8  ARPHRD type
 *   14  protocol (ethertype)          10  packet type
 *                                     11  address length
 *                                     12  address (8 bytes, padded)
 */
import * as fs from 'node:fs';
import type { PacketPort } from '../vif';

export interface CapturedFrame {
  /** Capture time in nanoseconds since the Unix epoch. */
  timestampNs: bigint;
  /** The captured bytes. */
  data: Buffer;
  /** Length of the frame on the wire; more than data.length when the capture cut it. */
  originalLength: number;
  /** Link type of the frame's interface (LINKTYPE_*). */
  linkType: number;
  /** pcapng interface id (0 in classic pcap). */
  interfaceId: number;
}

/** An interface of the capture: pcapng describes several, classic pcap one. */
export interface CaptureInterface {
  linkType: number;
  /** 0 means no limit. */
  snapLength: number;
  /** if_name, when the capture gives one. */
  name: string | null;
}

/** Link types (tcpdump.org/linktypes.html) that replay turns into Ethernet frames. */
export const LINKTYPE_ETHERNET = 1;
export const LINKTYPE_RAW = 101;
export const LINKTYPE_LINUX_SLL = 113;
export const LINKTYPE_IPV4 = 228;
export const LINKTYPE_LINUX_SLL2 = 276;
const READABLE_LINK_TYPES = new Set([LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LINUX_SLL, LINKTYPE_IPV4, LINKTYPE_LINUX_SLL2]);
const READABLE_LINK_TYPES_TEXT = 'Ethernet (1), raw IP (101, 228), Linux cooked v1 (113) or v2 (276)';

/** libpcap's largest snaplen: readers refuse Ethernet records longer than this. */
export const MAX_SNAPLEN = 262144;

const NS_PER_SECOND = 1_000_000_000n;

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
const OPT_IF_NAME = 2;
const OPT_IF_TSRESOL = 9;
const OPT_IF_TSOFFSET = 14;
const TSRESOL_POWER_OF_2 = 0x80;
const TSRESOL_EXPONENT = 0x7f;
const DEFAULT_UNITS_PER_SECOND = 1_000_000;
const TWO_TO_32 = 4294967296;

/** Classic pcap magic numbers as read little-endian from the first four bytes. */
const CLASSIC_FORMATS = new Map<number, { littleEndian: boolean; nanosecond: boolean }>([
  [PCAP_MAGIC_MICROSECONDS, { littleEndian: true, nanosecond: false }],
  [0xd4c3b2a1, { littleEndian: false, nanosecond: false }],
  [PCAP_MAGIC_NANOSECONDS, { littleEndian: true, nanosecond: true }],
  [0x4d3cb2a1, { littleEndian: false, nanosecond: true }],
]);

/** A capture file that cannot be read: the message starts with the file's name. */
export class CaptureError extends Error {}

function captureError(file: string, problem: string): Error {
  return new CaptureError(`${file}: ${problem}`);
}

function padTo4(length: number): number {
  return (length + 3) & ~3;
}

interface PcapngInterface extends CaptureInterface {
  /** Timestamp units per second: 10^n or 2^n. */
  unitsPerSecond: number;
  /** 10^9 / unitsPerSecond when that is an integer (10^0..10^9), else 0. */
  nsPerUnit: number;
  offsetSeconds: number;
}

const READ_CHUNK_BYTES = 1 << 20;

/**
 * Reads a pcap or pcapng file a chunk at a time, one frame per next():
 * memory stays one chunk (or one block, if larger) whatever the file's size.
 * The frame's fields are those of the reader and are valid until the next
 * call; `data[dataOffset, dataOffset + capturedLength)` are its bytes. The
 * timestamp is split in seconds and nanoseconds so no frame allocates.
 */
export class CaptureReader {
  readonly file: string;
  readonly format: 'pcap' | 'pcapng';
  /** Interfaces seen so far (pcapng: of the current section). */
  interfaces: CaptureInterface[] = [];
  /** True when some interface records timestamps finer than microseconds. */
  finerThanMicroseconds = false;

  /** Frames returned so far: the current frame's number, counted from 1 as Wireshark does. */
  frameNumber = 0;
  data: Buffer;
  dataOffset = 0;
  capturedLength = 0;
  originalLength = 0;
  seconds = 0;
  nanoseconds = 0;
  linkType = LINKTYPE_ETHERNET;
  interfaceId = 0;

  private readonly fd: number;
  private readonly fileSize: number;
  /** buffer[0] is at this offset of the file. */
  private bufferFileOffset = 0;
  private position = 0;
  private filled = 0;
  private littleEndian = true;
  private classicNsPerFraction = 1000;
  private pcapngInterfaces: PcapngInterface[] = [];
  private closed = false;

  constructor(file: string) {
    this.file = file;
    this.fd = fs.openSync(file, 'r');
    try {
      this.fileSize = fs.fstatSync(this.fd).size;
      this.data = Buffer.allocUnsafe(Math.min(READ_CHUNK_BYTES, Math.max(this.fileSize, PCAP_FILE_HEADER_LEN)));
      if (!this.ensure(4)) throw captureError(file, `file is truncated (${this.fileSize} bytes, no magic number)`);
      const magic = this.data.readUInt32LE(0);
      if (magic === PCAPNG_SHB) {
        this.format = 'pcapng';
      } else {
        const classic = CLASSIC_FORMATS.get(magic);
        if (!classic) throw captureError(file, `unknown magic number 0x${this.data.toString('hex', 0, 4)} (not a pcap or pcapng file)`);
        this.format = 'pcap';
        this.readClassicHeader(classic.littleEndian, classic.nanosecond);
      }
    } catch (error) {
      fs.closeSync(this.fd);
      throw error;
    }
  }

  /** The current frame's timestamp in nanoseconds (allocates: for tools and tests). */
  get timestampNs(): bigint {
    return BigInt(this.seconds) * NS_PER_SECOND + BigInt(this.nanoseconds);
  }

  /** The next frame; false at the end of the file. Throws on a malformed file, naming it and the offset. */
  next(): boolean {
    return this.format === 'pcap' ? this.nextClassic() : this.nextPcapng();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    fs.closeSync(this.fd);
  }

  /** Offset in the file of the byte at `position` of the buffer. */
  private fileOffset(position = this.position): number {
    return this.bufferFileOffset + position;
  }

  private readU16(at: number): number {
    return this.littleEndian ? this.data.readUInt16LE(at) : this.data.readUInt16BE(at);
  }

  private readU32(at: number): number {
    return this.littleEndian ? this.data.readUInt32LE(at) : this.data.readUInt32BE(at);
  }

  /** Makes `length` bytes from the current position available in the buffer; false when the file ends first. */
  private ensure(length: number): boolean {
    if (this.filled - this.position >= length) return true;
    if (length > this.data.length) {
      const grown = Buffer.allocUnsafe(Math.max(length, this.data.length * 2));
      this.data.copy(grown, 0, this.position, this.filled);
      this.data = grown;
    } else {
      this.data.copyWithin(0, this.position, this.filled);
    }
    this.filled -= this.position;
    this.bufferFileOffset += this.position;
    this.position = 0;
    while (this.filled < length) {
      const read = fs.readSync(this.fd, this.data, this.filled, this.data.length - this.filled, this.bufferFileOffset + this.filled);
      if (read === 0) return false;
      this.filled += read;
    }
    return true;
  }

  /** Bytes left in the file from the current position. */
  private remaining(): number {
    return this.fileSize - this.fileOffset();
  }

  private readClassicHeader(littleEndian: boolean, nanosecond: boolean): void {
    this.littleEndian = littleEndian;
    if (!this.ensure(PCAP_FILE_HEADER_LEN)) {
      throw captureError(this.file, `pcap file header is truncated (${this.fileSize} of ${PCAP_FILE_HEADER_LEN} bytes)`);
    }
    const versionMajor = this.readU16(4);
    if (versionMajor !== PCAP_VERSION_MAJOR) throw captureError(this.file, `unsupported pcap version ${versionMajor}.${this.readU16(6)}`);
    const linkType = this.readU32(20);
    if (!READABLE_LINK_TYPES.has(linkType)) throw captureError(this.file, `link type ${linkType} is not ${READABLE_LINK_TYPES_TEXT}`);
    this.linkType = linkType;
    this.interfaces = [{ linkType, snapLength: this.readU32(16), name: null }];
    this.classicNsPerFraction = nanosecond ? 1 : 1000;
    this.finerThanMicroseconds = nanosecond;
    this.position = PCAP_FILE_HEADER_LEN;
  }

  private nextClassic(): boolean {
    if (this.remaining() === 0) return false;
    const record = this.fileOffset();
    if (!this.ensure(PCAP_RECORD_HEADER_LEN)) throw captureError(this.file, `pcap record header at offset ${record} is truncated`);
    const at = this.position;
    const capturedLength = this.readU32(at + 8);
    const left = this.remaining() - PCAP_RECORD_HEADER_LEN;
    if (capturedLength > left) {
      throw captureError(this.file, `pcap record at offset ${record} is truncated (${capturedLength} captured bytes, ${left} left in the file)`);
    }
    this.ensure(PCAP_RECORD_HEADER_LEN + capturedLength);
    const header = this.position;
    this.seconds = this.readU32(header);
    this.nanoseconds = this.readU32(header + 4) * this.classicNsPerFraction;
    this.capturedLength = capturedLength;
    this.originalLength = this.readU32(header + 12);
    this.dataOffset = header + PCAP_RECORD_HEADER_LEN;
    this.position = this.dataOffset + capturedLength;
    this.frameNumber++;
    return true;
  }

  private nextPcapng(): boolean {
    for (;;) {
      if (this.remaining() === 0) return false;
      const blockOffset = this.fileOffset();
      const truncated = (): Error => captureError(this.file, `pcapng block at offset ${blockOffset} is truncated`);
      const corrupt = (problem: string): Error => captureError(this.file, `pcapng block at offset ${blockOffset} is corrupt: ${problem}`);
      if (!this.ensure(PCAPNG_MIN_BLOCK_LEN)) throw truncated();
      let at = this.position;
      // The SHB type reads the same in both byte orders; its byte-order magic sets the order for the section.
      const blockType = this.readU32(at);
      if (blockType === PCAPNG_SHB) {
        if (this.data.readUInt32LE(at + 8) === PCAPNG_BYTE_ORDER_MAGIC) this.littleEndian = true;
        else if (this.data.readUInt32BE(at + 8) === PCAPNG_BYTE_ORDER_MAGIC) this.littleEndian = false;
        else throw corrupt(`byte-order magic 0x${this.data.toString('hex', at + 8, at + 12)} is neither 1a2b3c4d nor 4d3c2b1a`);
      }
      const blockLength = this.readU32(at + 4);
      if (blockLength < PCAPNG_MIN_BLOCK_LEN || blockLength % 4 !== 0) throw corrupt(`block total length ${blockLength}`);
      if (blockLength > this.remaining()) throw truncated();
      this.ensure(blockLength);
      at = this.position;
      const trailingLength = this.readU32(at + blockLength - 4);
      if (trailingLength !== blockLength) throw corrupt(`block total length ${blockLength} at the start but ${trailingLength} at the end`);
      const blockEnd = at + blockLength - 4;
      this.position = at + blockLength;

      switch (blockType) {
        case PCAPNG_SHB: {
          if (blockLength < PCAPNG_SHB_MIN_LEN) throw corrupt(`section header block of ${blockLength} bytes`);
          const versionMajor = this.readU16(at + 12);
          if (versionMajor !== PCAPNG_VERSION_MAJOR) throw corrupt(`unsupported pcapng version ${versionMajor}.${this.readU16(at + 14)}`);
          this.pcapngInterfaces = [];
          this.interfaces = this.pcapngInterfaces;
          break;
        }
        case PCAPNG_IDB:
          if (blockLength < PCAPNG_IDB_MIN_LEN) throw corrupt(`interface description block of ${blockLength} bytes`);
          this.pcapngInterfaces.push(this.readInterface(at, blockEnd, corrupt));
          break;
        case PCAPNG_EPB: {
          if (blockLength < PCAPNG_EPB_MIN_LEN) throw corrupt(`enhanced packet block of ${blockLength} bytes`);
          const interfaceId = this.readU32(at + 8);
          const described = this.interfaceOf(interfaceId, blockOffset, corrupt);
          const capturedLength = this.readU32(at + 20);
          const dataStart = at + 28;
          if (dataStart + padTo4(capturedLength) > blockEnd) throw corrupt(`captured length ${capturedLength} does not fit in the block`);
          this.setPcapngTimestamp(described, this.readU32(at + 12), this.readU32(at + 16));
          this.frame(interfaceId, described, dataStart, capturedLength, this.readU32(at + 24));
          return true;
        }
        case PCAPNG_SPB: {
          if (blockLength < PCAPNG_SPB_MIN_LEN) throw corrupt(`simple packet block of ${blockLength} bytes`);
          const described = this.interfaceOf(0, blockOffset, corrupt);
          const originalLength = this.readU32(at + 8);
          const capturedLength = described.snapLength === 0 ? originalLength : Math.min(originalLength, described.snapLength);
          const dataStart = at + 12;
          if (dataStart + padTo4(capturedLength) > blockEnd) throw corrupt(`captured length ${capturedLength} does not fit in the block`);
          this.seconds = 0;
          this.nanoseconds = 0;
          this.frame(0, described, dataStart, capturedLength, originalLength);
          return true;
        }
        default:
          break; // name resolution, statistics, custom and obsolete blocks carry no frames to replay
      }
    }
  }

  private frame(interfaceId: number, described: PcapngInterface, dataStart: number, capturedLength: number, originalLength: number): void {
    this.interfaceId = interfaceId;
    this.linkType = described.linkType;
    this.dataOffset = dataStart;
    this.capturedLength = capturedLength;
    this.originalLength = originalLength;
    this.frameNumber++;
  }

  private readInterface(at: number, blockEnd: number, corrupt: (problem: string) => Error): PcapngInterface {
    const described: PcapngInterface = {
      linkType: this.readU16(at + 8),
      snapLength: this.readU32(at + 12),
      name: null,
      unitsPerSecond: DEFAULT_UNITS_PER_SECOND,
      nsPerUnit: 1000,
      offsetSeconds: 0,
    };
    let option = at + 16;
    while (option < blockEnd) {
      const code = this.readU16(option);
      const valueLength = this.readU16(option + 2);
      const value = option + 4;
      if (code === OPT_END_OF_OPTIONS) break;
      if (value + padTo4(valueLength) > blockEnd) throw corrupt(`option ${code} at offset ${this.fileOffset(option)} runs past the end of the block`);
      if (code === OPT_IF_NAME) {
        described.name = this.data.toString('utf8', value, value + valueLength).replace(/\0+$/, '');
      } else if (code === OPT_IF_TSRESOL) {
        if (valueLength !== 1) throw corrupt(`if_tsresol option of ${valueLength} bytes, not 1`);
        const resolution = this.data[value];
        const exponent = resolution & TSRESOL_EXPONENT;
        described.unitsPerSecond = resolution & TSRESOL_POWER_OF_2 ? 2 ** exponent : 10 ** exponent;
        described.nsPerUnit = !(resolution & TSRESOL_POWER_OF_2) && exponent <= 9 ? 10 ** (9 - exponent) : 0;
      } else if (code === OPT_IF_TSOFFSET) {
        if (valueLength !== 8) throw corrupt(`if_tsoffset option of ${valueLength} bytes, not 8`);
        described.offsetSeconds = Number(this.littleEndian ? this.data.readBigInt64LE(value) : this.data.readBigInt64BE(value));
      }
      option = value + padTo4(valueLength);
    }
    if (described.unitsPerSecond > DEFAULT_UNITS_PER_SECOND) this.finerThanMicroseconds = true;
    return described;
  }

  private interfaceOf(interfaceId: number, blockOffset: number, corrupt: (problem: string) => Error): PcapngInterface {
    const described = this.pcapngInterfaces[interfaceId];
    if (!described) throw corrupt(`packet on interface ${interfaceId}, but the section describes ${this.pcapngInterfaces.length}`);
    if (!READABLE_LINK_TYPES.has(described.linkType)) {
      throw captureError(this.file, `packet at offset ${blockOffset} is on interface ${interfaceId} with link type ${described.linkType}, not ${READABLE_LINK_TYPES_TEXT}`);
    }
    return described;
  }

  /**
   * ticks (high:low, 64 bits) units of the interface since the epoch, plus
   * if_tsoffset seconds. Long division by 16-bit limbs keeps every step
   * exact in a double; only a resolution that is not 10^0..10^9 s takes
   * BigInt. Truncates to the nanosecond, as Wireshark does, so a time never
   * rounds up past the real one.
   */
  private setPcapngTimestamp(described: PcapngInterface, high: number, low: number): void {
    const units = described.unitsPerSecond;
    if (described.nsPerUnit === 0 || units >= TWO_TO_32) {
      const ticks = (BigInt(high) << 32n) | BigInt(low);
      const unitsBig = BigInt(units);
      this.seconds = Number(ticks / unitsBig) + described.offsetSeconds;
      this.nanoseconds = Number(((ticks % unitsBig) * NS_PER_SECOND) / unitsBig);
      return;
    }
    // 64-bit ticks as four 16-bit limbs, divided one at a time.
    let current = high >>> 16;
    let quotient = Math.floor(current / units);
    let remainder = current - quotient * units;
    current = remainder * 65536 + (high & 0xffff);
    let digit = Math.floor(current / units);
    remainder = current - digit * units;
    quotient = quotient * 65536 + digit;
    current = remainder * 65536 + (low >>> 16);
    digit = Math.floor(current / units);
    remainder = current - digit * units;
    quotient = quotient * 65536 + digit;
    current = remainder * 65536 + (low & 0xffff);
    digit = Math.floor(current / units);
    remainder = current - digit * units;
    quotient = quotient * 65536 + digit;
    this.seconds = quotient + described.offsetSeconds;
    this.nanoseconds = remainder * described.nsPerUnit;
  }
}

/** Reads a whole pcap or pcapng file, in file order (tools and tests; replay streams with CaptureReader). */
export function readCapture(file: string): CapturedFrame[] {
  const reader = new CaptureReader(file);
  const frames: CapturedFrame[] = [];
  try {
    while (reader.next()) {
      frames.push({
        timestampNs: reader.timestampNs,
        data: Buffer.from(reader.data.subarray(reader.dataOffset, reader.dataOffset + reader.capturedLength)),
        originalLength: reader.originalLength,
        linkType: reader.linkType,
        interfaceId: reader.interfaceId,
      });
    }
  } finally {
    reader.close();
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
/** Below this length a byte loop beats TypedArray.set, which needs a subarray view made per call. */
const SHORT_COPY_BYTES = 160;

/** Copies from[offset, offset + length) to to[at...] without making a view for short frames. */
export function copyBytes(from: Uint8Array, offset: number, length: number, to: Uint8Array, at: number): void {
  if (length > SHORT_COPY_BYTES) {
    to.set(from.subarray(offset, offset + length), at);
    return;
  }
  for (let i = 0; i < length; i++) to[at + i] = from[offset + i];
}

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
    const seconds = timestampNs / NS_PER_SECOND;
    if (timestampNs < 0n || seconds > 0xffffffffn) {
      throw new RangeError(`${this.file}: timestamp ${timestampNs} ns does not fit a pcap record (0 to 2^32 - 1 seconds)`);
    }
    this.writeRecord(Number(seconds), Number(timestampNs % NS_PER_SECOND), data, offset, length);
  }

  /** write() with the timestamp as seconds and nanoseconds, so a record allocates nothing. */
  writeRecord(seconds: number, nanoseconds: number, data: Uint8Array, offset: number, length: number): void {
    if (this.closed) throw new Error(`${this.file}: write after close`);
    if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0 || offset + length > data.length) {
      throw new RangeError(`${this.file}: frame [${offset}, ${offset} + ${length}) is outside a buffer of ${data.length} bytes`);
    }
    if (!(seconds >= 0 && seconds <= 0xffffffff)) {
      throw new RangeError(`${this.file}: timestamp ${seconds} s does not fit a pcap record (0 to 2^32 - 1 seconds)`);
    }
    const capturedLength = Math.min(length, this.snaplen);
    if (this.staged + PCAP_RECORD_HEADER_LEN + capturedLength > this.staging.length) this.flush();

    const record = this.staged;
    this.staging.writeUInt32LE(seconds, record);
    this.staging.writeUInt32LE(this.nanosecond ? nanoseconds : Math.floor(nanoseconds / 1000), record + 4);
    this.staging.writeUInt32LE(capturedLength, record + 8);
    this.staging.writeUInt32LE(length, record + 12);
    copyBytes(data, offset, capturedLength, this.staging, record + PCAP_RECORD_HEADER_LEN);
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
 * Writes a little-endian pcapng file of Ethernet frames on named interfaces
 * (an IDB with if_name and if_tsresol 6 per interface, added when first
 * used), so frames of several vifs keep the one order they were seen in.
 */
export class PcapngWriter {
  readonly file: string;
  private readonly fd: number;
  private readonly interfaces = new Map<string, number>();

  constructor(file: string) {
    this.file = file;
    this.fd = fs.openSync(file, 'w');
    // SHB: byte-order magic, version 1.0, section length unknown (-1), no options.
    const body = Buffer.alloc(16);
    body.writeUInt32LE(PCAPNG_BYTE_ORDER_MAGIC, 0);
    body.writeUInt16LE(PCAPNG_VERSION_MAJOR, 4);
    body.writeBigInt64LE(-1n, 8);
    this.block(PCAPNG_SHB, body);
  }

  /** Appends a frame seen on `interfaceName` at seconds + microseconds. */
  write(interfaceName: string, seconds: number, microseconds: number, frame: Uint8Array): void {
    let id = this.interfaces.get(interfaceName);
    if (id === undefined) {
      id = this.interfaces.size;
      this.interfaces.set(interfaceName, id);
      const name = Buffer.from(interfaceName, 'utf8');
      const options = Buffer.alloc(4 + padTo4(name.length) + 4 + 4 + 4);
      options.writeUInt16LE(OPT_IF_NAME, 0);
      options.writeUInt16LE(name.length, 2);
      name.copy(options, 4);
      let at = 4 + padTo4(name.length);
      options.writeUInt16LE(OPT_IF_TSRESOL, at);
      options.writeUInt16LE(1, at + 2);
      options[at + 4] = 6;
      at += 8;
      options.writeUInt16LE(OPT_END_OF_OPTIONS, at); // and a zero length
      const header = Buffer.alloc(8);
      header.writeUInt16LE(LINKTYPE_ETHERNET, 0);
      header.writeUInt32LE(MAX_SNAPLEN, 4);
      this.block(PCAPNG_IDB, Buffer.concat([header, options]));
    }
    const ticks = seconds * 1_000_000 + microseconds; // below 2^53 until the year 2255
    const header = Buffer.alloc(20);
    header.writeUInt32LE(id, 0);
    header.writeUInt32LE(Math.floor(ticks / TWO_TO_32), 4);
    header.writeUInt32LE(ticks % TWO_TO_32, 8);
    header.writeUInt32LE(frame.length, 12);
    header.writeUInt32LE(frame.length, 16);
    this.block(PCAPNG_EPB, Buffer.concat([header, frame, Buffer.alloc(padTo4(frame.length) - frame.length)]));
  }

  close(): void {
    fs.closeSync(this.fd);
  }

  private block(type: number, body: Buffer): void {
    const length = 12 + body.length;
    const block = Buffer.alloc(length);
    block.writeUInt32LE(type, 0);
    block.writeUInt32LE(length, 4);
    body.copy(block, 8);
    block.writeUInt32LE(length, length - 4);
    fs.writeSync(this.fd, block);
  }
}
