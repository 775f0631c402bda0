/**
 * Capture file tests. The captures read are written by independent tools
 * (scapy, editcap, and pcapng blocks packed by hand in Python), and what
 * PcapWriter and PcapngWriter write is read back by tshark. Captures of
 * other link types made by tcpdump and tshark: test/replay-captures.test.ts.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CaptureReader, CapturedFrame, PcapngWriter, PcapPort, PcapWriter, readCapture } from '../src/dataplane/io/pcap';

/**
 * Writes the test captures and expected.json (per set: timestamp in ns as a
 * string, frame bytes in hex, original length) into the directory argv[1].
 */
const GENERATE_CAPTURES_PY = String.raw`
import json, struct, sys
from decimal import Decimal
from scapy.all import Ether, IP, UDP, Raw, raw, wrpcap, PcapWriter, PcapNgWriter

out = sys.argv[1]

def frame(i, payload_len):
    return Ether(src='02:00:00:00:00:%02x' % i, dst='02:00:00:00:01:00') / IP(src='10.0.0.%d' % i, dst='10.1.0.1') / UDP(sport=1000 + i, dport=4789) / Raw(bytes((i * 7 + k) & 0xff for k in range(payload_len)))

def expected(packets, ns):
    return [{'timestampNs': str(t), 'hex': raw(p).hex(), 'originalLength': p.wirelen or len(raw(p))} for p, t in zip(packets, ns)]

# Microsecond set: fractions are multiples of 1/64 s, exact as floats, because scapy's pcapng writer goes through float.
us_times = [(1700000000, 0), (1700000000, 1), (1700000001, 37), (1699999999, 63), (4000000000, 13), (1700000002, 32)]
us_packets = [frame(i, n) for i, n in enumerate([18, 19, 85, 958, 1472, 0])]
cut = Ether(raw(frame(9, 1472))[:200]); cut.wirelen = 1514
us_packets[4] = cut
for p, (s, k) in zip(us_packets, us_times):
    p.time = Decimal(s) + Decimal(k) / 64
wrpcap(f'{out}/us.pcap', us_packets)
wrpcap(f'{out}/us-be.pcap', us_packets, endianness='>')
writer = PcapNgWriter(f'{out}/scapy.pcapng')
for p in us_packets:
    writer.write(p)
writer.close()

# Nanosecond set: any nanosecond up to the last second a pcap record holds. Seconds and nanoseconds
# are passed apart: scapy's own conversion goes through float, which rounds x.999999999 up.
ns_times = [(1700000000, 1), (1700000000, 123456789), (1700000000, 999999999), (4294967295, 999999999), (1234567890, 500000000)]
ns_packets = [frame(20 + i, n) for i, n in enumerate([21, 100, 333, 1, 1400])]
for name, endianness in [('ns.pcap', '<'), ('ns-be.pcap', '>')]:
    writer = PcapWriter(f'{out}/{name}', nano=True, endianness=endianness)
    writer.write_header(ns_packets[0])
    for p, (s, ns) in zip(ns_packets, ns_times):
        writer.write_packet(p, sec=s, usec=ns)
    writer.close()

wrpcap(f'{out}/raw-ip.pcap', [raw(IP(dst='10.0.0.1') / UDP())], linktype=101)  # LINKTYPE_RAW
wrpcap(f'{out}/wlan.pcap', [raw(IP(dst='10.0.0.1') / UDP())], linktype=105)  # IEEE 802.11: not read

# Hand-made pcapng for what scapy and editcap do not write: two sections of opposite byte order,
# several interfaces, if_tsresol as a power of 2 and of 10, if_tsoffset, SPBs and skipped blocks.
def block(e, block_type, body):
    body += b'\0' * (-len(body) % 4)
    return struct.pack(e + 'II', block_type, len(body) + 12) + body + struct.pack(e + 'I', len(body) + 12)

def option(e, code, value):
    return struct.pack(e + 'HH', code, len(value)) + value + b'\0' * (-len(value) % 4)

def shb(e):
    return block(e, 0x0A0D0D0A, struct.pack(e + 'IHHq', 0x1A2B3C4D, 1, 0, -1) + option(e, 4, b'gen.py') + option(e, 0, b''))

def idb(e, link_type, snaplen, options=b''):
    return block(e, 1, struct.pack(e + 'HHI', link_type, 0, snaplen) + options)

def epb(e, interface, ticks, data, original_length, options=b''):
    body = struct.pack(e + 'IIIII', interface, ticks >> 32, ticks & 0xFFFFFFFF, len(data), original_length) + data
    return block(e, 6, body + b'\0' * (-len(body) % 4) + options)

def spb(e, data, original_length):
    return block(e, 3, struct.pack(e + 'I', original_length) + data)

handmade, handmade_expected = b'', []
def add_packet(encoded, timestamp_ns, data, original_length):
    global handmade
    handmade += encoded
    handmade_expected.append({'timestampNs': str(timestamp_ns), 'hex': data.hex(), 'originalLength': original_length})

le, be = '<', '>'
handmade += shb(le)
handmade += idb(le, 1, 100, option(le, 9, b'\x94') + option(le, 14, struct.pack(le + 'q', 1000)) + option(le, 0, b''))  # 2^-20 s, +1000 s
handmade += idb(le, 1, 0)  # default 10^-6 s
handmade += idb(le, 101, 0)  # raw IP, never used: accepted
handmade += idb(le, 1, 0, option(le, 9, b'\x03'))  # 10^-3 s
f = [raw(frame(40 + i, n)) for i, n in enumerate([30, 19, 200, 50, 77, 300])]
ticks = (1699999000 << 20) + 12345  # 12345 / 2^20 s = 11773109.43... ns
add_packet(epb(le, 0, ticks, f[0], len(f[0])), ticks * 10**9 // 2**20 + 1000 * 10**9, f[0], len(f[0]))
handmade += block(le, 4, option(le, 1, bytes([10, 0, 0, 1]) + b'host\0') + option(le, 0, b''))  # name resolution
add_packet(epb(le, 1, 1700000000123456, f[1], len(f[1]), option(le, 1, b'a comment') + option(le, 0, b'')), 1700000000123456000, f[1], len(f[1]))
handmade += block(le, 5, struct.pack(le + 'III', 1, 0, 0))  # interface statistics
add_packet(spb(le, f[2][:100], len(f[2])), 0, f[2][:100], len(f[2]))  # cut to interface 0's snaplen
handmade += block(le, 0x00000BAD, struct.pack(le + 'I', 32473) + b'custom')
add_packet(epb(le, 3, 1700000000999, f[3], len(f[3])), 1700000000999000000, f[3], len(f[3]))
handmade += shb(be)
handmade += idb(be, 1, 0, option(be, 9, b'\x09'))  # a new interface 0: its SPB is not cut to 100 bytes
add_packet(epb(be, 0, 1700000005000000007, f[4], len(f[4])), 1700000005000000007, f[4], len(f[4]))
add_packet(spb(be, f[5], len(f[5])), 0, f[5], len(f[5]))
with open(f'{out}/handmade.pcapng', 'wb') as handle:
    handle.write(handmade)

with open(f'{out}/expected.json', 'w') as handle:
    json.dump({
        'microsecond': expected(us_packets, [s * 10**9 + k * 15625000 for s, k in us_times]),
        'nanosecond': expected(ns_packets, [s * 10**9 + ns for s, ns in ns_times]),
        'handmade': handmade_expected,
    }, handle)
`;

interface ExpectedFrame {
  timestampNs: string;
  hex: string;
  originalLength: number;
}

let dir = '';
let expected: { microsecond: ExpectedFrame[]; nanosecond: ExpectedFrame[]; handmade: ExpectedFrame[] };

function run(command: string, args: string[]): string {
  // stderr is piped so tshark's "running as root" notice stays out of the test output.
  return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function capture(name: string): string {
  return path.join(dir, name);
}

function editcap(format: 'pcapng' | 'nsecpcap', from: string, to: string): void {
  run('editcap', ['-F', format, capture(from), capture(to)]);
}

function asExpected(frames: CapturedFrame[]): ExpectedFrame[] {
  return frames.map((frame) => ({ timestampNs: frame.timestampNs.toString(), hex: frame.data.toString('hex'), originalLength: frame.originalLength }));
}

/** Parses tshark's "seconds.fraction" epoch time exactly; null when tshark shows none. */
function epochToNs(text: string): bigint | null {
  if (text === '') return null;
  const [seconds, fraction = ''] = text.split('.');
  return BigInt(seconds) * 1_000_000_000n + BigInt(fraction.padEnd(9, '0'));
}

/** Each Ethernet frame as tshark sees it ("-Y eth" leaves out pcapng custom-block records). */
function tsharkFrames(file: string): Array<{ timestampNs: bigint | null; length: number; capturedLength: number }> {
  const output = run('tshark', ['-r', file, '-Y', 'eth', '-T', 'fields', '-e', 'frame.time_epoch', '-e', 'frame.len', '-e', 'frame.cap_len']);
  return output
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => {
      const [time, length, capturedLength] = line.split('\t');
      return { timestampNs: epochToNs(time), length: Number(length), capturedLength: Number(capturedLength) };
    });
}

function assertCaptureError(file: string, problem: RegExp): void {
  assert.throws(
    () => readCapture(file),
    (error: unknown) => {
      assert.ok(error instanceof Error);
      assert.ok(error.message.startsWith(`${file}: `), `"${error.message}" should start with the file name`);
      assert.match(error.message, problem);
      return true;
    },
  );
}

/** A copy of a capture cut or patched, to make broken files from good ones. */
function brokenCopy(from: string, to: string, damage: (bytes: Buffer) => Buffer): string {
  fs.writeFileSync(capture(to), damage(fs.readFileSync(capture(from))));
  return capture(to);
}

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pcap-test-'));
  run('/usr/bin/python3', ['-c', GENERATE_CAPTURES_PY, dir]);
  editcap('nsecpcap', 'us.pcap', 'us-as-ns.pcap');
  editcap('pcapng', 'us.pcap', 'us.pcapng');
  editcap('pcapng', 'ns.pcap', 'ns.pcapng');
  editcap('pcapng', 'raw-ip.pcap', 'raw-ip.pcapng');
  editcap('pcapng', 'wlan.pcap', 'wlan.pcapng');
  expected = JSON.parse(fs.readFileSync(capture('expected.json'), 'utf8'));
});

after(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('readCapture', () => {
  it('reads the same frames from classic µs (both byte orders), classic ns and pcapng', () => {
    for (const name of ['us.pcap', 'us-be.pcap', 'us-as-ns.pcap', 'us.pcapng', 'scapy.pcapng']) {
      assert.deepEqual(asExpected(readCapture(capture(name))), expected.microsecond, name);
    }
  });

  it('keeps nanosecond timestamps from classic ns (both byte orders) and pcapng with if_tsresol 9', () => {
    for (const name of ['ns.pcap', 'ns-be.pcap', 'ns.pcapng']) {
      assert.deepEqual(asExpected(readCapture(capture(name))), expected.nanosecond, name);
    }
  });

  it('reads pcapng sections of both byte orders, both if_tsresol forms, if_tsoffset and SPBs, skipping other blocks', () => {
    const frames = readCapture(capture('handmade.pcapng'));
    assert.deepEqual(asExpected(frames), expected.handmade);
    const seenByTshark = tsharkFrames(capture('handmade.pcapng'));
    assert.equal(seenByTshark.length, frames.length);
    frames.forEach((frame, i) => {
      // tshark shows no time for an SPB; ours is 0.
      assert.equal(frame.timestampNs, seenByTshark[i].timestampNs ?? 0n, `frame ${i} time`);
      assert.equal(frame.originalLength, seenByTshark[i].length, `frame ${i} length`);
      assert.equal(frame.data.length, seenByTshark[i].capturedLength, `frame ${i} captured length`);
    });
  });
});

describe('CaptureReader', () => {
  it('reads raw IP (link type 101) from classic pcap and pcapng, the frame starting at the IP header', () => {
    for (const name of ['raw-ip.pcap', 'raw-ip.pcapng']) {
      const [frame] = readCapture(capture(name));
      assert.equal(frame.linkType, 101, name);
      assert.equal(frame.data[0] >> 4, 4, `${name}: an IPv4 header first`);
      assert.equal(frame.data.length, 28);
    }
  });

  it('streams a file many read chunks long, frame by frame as tshark sees it', () => {
    const file = capture('long.pcap');
    const writer = new PcapWriter(file, { nanosecond: true });
    const buffer = Buffer.alloc(1514);
    for (let i = 0; i < 5000; i++) {
      buffer.fill(i & 0xff);
      writer.write(1_700_000_000_000_000_000n + BigInt(i) * 7n, buffer, 0, 60 + ((i * 977) % 1455));
    }
    writer.close();
    assert.ok(fs.statSync(file).size > 3 * 1024 * 1024, 'longer than three read chunks');
    const reader = new CaptureReader(file);
    const seen: Array<{ timestampNs: bigint; length: number; capturedLength: number }> = [];
    while (reader.next()) {
      assert.equal(reader.data[reader.dataOffset], (reader.frameNumber - 1) & 0xff, `frame ${reader.frameNumber} bytes`);
      seen.push({ timestampNs: reader.timestampNs, length: reader.originalLength, capturedLength: reader.capturedLength });
    }
    reader.close();
    assert.deepEqual(seen, tsharkFrames(file));
  });
});

describe('PcapngWriter', () => {
  it('writes interfaces by name and frames in order, as tshark reads them', () => {
    const file = capture('named.pcapng');
    const writer = new PcapngWriter(file);
    const frames = [
      { name: 'pod-a', seconds: 1_700_000_000, microseconds: 1, length: 60 },
      { name: 'eth0', seconds: 1_700_000_000, microseconds: 2, length: 97 },
      { name: 'pod-a', seconds: 1_700_000_001, microseconds: 999_999, length: 1514 },
    ];
    for (const [i, frame] of frames.entries()) writer.write(frame.name, frame.seconds, frame.microseconds, Buffer.alloc(frame.length, i + 1));
    writer.close();
    const output = run('tshark', ['-r', file, '-T', 'fields', '-e', 'frame.interface_name', '-e', 'frame.time_epoch', '-e', 'frame.len']);
    assert.deepEqual(
      output.trim().split('\n').map((line) => line.split('\t')),
      frames.map((frame) => [frame.name, `${frame.seconds}.${String(frame.microseconds).padStart(6, '0')}000`, String(frame.length)]),
    );
    const reader = new CaptureReader(file);
    const names: string[] = [];
    while (reader.next()) names.push(reader.interfaces[reader.interfaceId].name ?? '');
    reader.close();
    assert.deepEqual(names, ['pod-a', 'eth0', 'pod-a']);
  });
});

describe('readCapture errors name the file and the problem', () => {
  it('truncated files', () => {
    assertCaptureError(brokenCopy('us.pcap', 'empty.pcap', () => Buffer.alloc(0)), /truncated/);
    assertCaptureError(brokenCopy('us.pcap', 'short-header.pcap', (bytes) => bytes.subarray(0, 10)), /file header is truncated/);
    assertCaptureError(brokenCopy('us.pcap', 'cut-record.pcap', (bytes) => bytes.subarray(0, bytes.length - 5)), /record at offset \d+ is truncated/);
    assertCaptureError(brokenCopy('us.pcap', 'cut-record-header.pcap', (bytes) => bytes.subarray(0, 24 + 7)), /record header at offset 24 is truncated/);
    assertCaptureError(brokenCopy('us.pcapng', 'cut-block.pcapng', (bytes) => bytes.subarray(0, bytes.length - 4)), /pcapng block at offset \d+ is truncated/);
  });

  it('corrupt pcapng block lengths', () => {
    const trailerMismatch = brokenCopy('us.pcapng', 'bad-trailer.pcapng', (bytes) => {
      const patched = Buffer.from(bytes);
      patched.writeUInt32LE(patched.readUInt32LE(patched.length - 4) + 4, patched.length - 4);
      return patched;
    });
    assertCaptureError(trailerMismatch, /pcapng block at offset \d+ is corrupt/);
  });

  it('unknown magic number', () => {
    assertCaptureError(brokenCopy('us.pcap', 'text.pcap', () => Buffer.from('this is not a capture file\n')), /unknown magic number 0x74686973/);
  });

  it('a link type replay does not read', () => {
    assertCaptureError(capture('wlan.pcap'), /link type 105 is not Ethernet \(1\), raw IP \(101, 228\), Linux cooked v1 \(113\) or v2 \(276\)/);
    assertCaptureError(capture('wlan.pcapng'), /link type 105, not Ethernet \(1\), raw IP/);
  });
});

/** Frames of varied lengths cut from one buffer at varied offsets, with their timestamps. */
function sampleFrames(): { buffer: Buffer; frames: Array<{ timestampNs: bigint; offset: number; length: number }> } {
  const buffer = Buffer.alloc(8192);
  for (let i = 0; i < buffer.length; i++) buffer[i] = (i * 31 + 7) & 0xff;
  const frames = [
    { timestampNs: 1_700_000_000_123_456_789n, offset: 3, length: 60 },
    { timestampNs: 1_700_000_000_123_456_999n, offset: 100, length: 1514 },
    { timestampNs: 0n, offset: 0, length: 61 },
    { timestampNs: 4_294_967_295_999_999_999n, offset: 2000, length: 300 },
    { timestampNs: 1_234_567_890_000_001_000n, offset: 4097, length: 3903 }, // jumbo
  ];
  return { buffer, frames };
}

describe('PcapWriter', () => {
  it('writes nanosecond pcap that tshark and readCapture read back exactly', () => {
    const { buffer, frames } = sampleFrames();
    const file = capture('written-ns.pcap');
    const writer = new PcapWriter(file, { nanosecond: true });
    for (const frame of frames) writer.write(frame.timestampNs, buffer, frame.offset, frame.length);
    writer.close();

    assert.deepEqual(
      tsharkFrames(file),
      frames.map((frame) => ({ timestampNs: frame.timestampNs, length: frame.length, capturedLength: frame.length })),
    );
    assert.deepEqual(
      readCapture(file).map((frame) => ({ timestampNs: frame.timestampNs, hex: frame.data.toString('hex'), originalLength: frame.originalLength })),
      frames.map((frame) => ({ timestampNs: frame.timestampNs, hex: buffer.toString('hex', frame.offset, frame.offset + frame.length), originalLength: frame.length })),
    );
  });

  it('truncates timestamps to microseconds and cuts frames to the snaplen', () => {
    const { buffer, frames } = sampleFrames();
    const snaplen = 128;
    const file = capture('written-us.pcap');
    const writer = new PcapWriter(file, { nanosecond: false, snaplen });
    for (const frame of frames) writer.write(frame.timestampNs, buffer, frame.offset, frame.length);
    writer.close();

    const toMicroseconds = (ns: bigint): bigint => (ns / 1000n) * 1000n;
    assert.deepEqual(
      tsharkFrames(file),
      frames.map((frame) => ({ timestampNs: toMicroseconds(frame.timestampNs), length: frame.length, capturedLength: Math.min(frame.length, snaplen) })),
    );
    assert.deepEqual(
      readCapture(file).map((frame) => ({ timestampNs: frame.timestampNs, hex: frame.data.toString('hex'), originalLength: frame.originalLength })),
      frames.map((frame) => ({
        timestampNs: toMicroseconds(frame.timestampNs),
        hex: buffer.toString('hex', frame.offset, frame.offset + Math.min(frame.length, snaplen)),
        originalLength: frame.length,
      })),
    );
  });

  it('gives the same bytes for the same calls, across many write chunks', () => {
    const { buffer } = sampleFrames();
    const writeMany = (name: string): Buffer => {
      const writer = new PcapWriter(capture(name), { nanosecond: true });
      for (let i = 0; i < 400; i++) writer.write(1_700_000_000_000_000_000n + BigInt(i) * 1_000_333n, buffer, i % 97, 60 + ((i * 389) % 1455));
      writer.close();
      return fs.readFileSync(capture(name));
    };
    const first = writeMany('same-1.pcap');
    assert.ok(first.length > 256 * 1024, 'spans several chunks');
    assert.ok(first.equals(writeMany('same-2.pcap')));
    assert.equal(readCapture(capture('same-1.pcap')).length, 400);
    assert.equal(tsharkFrames(capture('same-1.pcap')).length, 400);
  });

  it('refuses timestamps a pcap record cannot hold and writes after close', () => {
    const writer = new PcapWriter(capture('refused.pcap'), { nanosecond: true });
    const frame = Buffer.alloc(60);
    assert.throws(() => writer.write(-1n, frame, 0, 60), RangeError);
    assert.throws(() => writer.write(4_294_967_296n * 1_000_000_000n, frame, 0, 60), RangeError);
    assert.throws(() => writer.write(0n, frame, 10, 60), RangeError);
    writer.close();
    assert.throws(() => writer.write(0n, frame, 0, 60), /write after close/);
    assert.deepEqual(readCapture(capture('refused.pcap')), []);
  });
});

describe('PcapPort', () => {
  it('records each frame sent, stamped by its clock, as it was when sent', () => {
    let now = 1_700_000_000_000_000_000n;
    const port = new PcapPort(capture('port.pcap'), () => (now += 1_500n));
    const buffer = Buffer.alloc(256);
    const sent: string[] = [];
    for (let i = 0; i < 5; i++) {
      buffer.fill(i + 1);
      port.send(buffer, 10 + i, 60 + i * 20);
      sent.push(buffer.toString('hex', 10 + i, 10 + i + 60 + i * 20));
      if (i % 2 === 1) port.flush();
    }
    buffer.fill(0xee); // the port must have copied the bytes
    assert.equal(port.count, 5);
    port.close();

    const frames = readCapture(capture('port.pcap'));
    assert.deepEqual(frames.map((frame) => frame.data.toString('hex')), sent);
    assert.deepEqual(
      frames.map((frame) => frame.timestampNs),
      [1n, 2n, 3n, 4n, 5n].map((tick) => 1_700_000_000_000_000_000n + tick * 1_500n),
    );
  });
});
