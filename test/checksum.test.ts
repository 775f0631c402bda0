import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checksum, checksumUpdate16, checksumUpdate32 } from '../src/dataplane/protocols/checksum';
import { internetChecksum } from './support/frames';

function randomBytes(length: number, seed: number): Buffer {
  const bytes = Buffer.alloc(length);
  let state = seed;
  for (let i = 0; i < length; i++) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    bytes[i] = state >>> 24;
  }
  return bytes;
}

test('checksum matches the plain RFC 1071 sum, odd lengths included', () => {
  for (let length = 0; length < 64; length++) {
    const bytes = randomBytes(length, length + 1);
    assert.equal(checksum(bytes, 0, length), internetChecksum(bytes), `length ${length}`);
  }
});

test('checksum of an IPv4 header with its checksum in place is zero', () => {
  const header = Buffer.from('450000730000400040110000c0a80001c0a800c7', 'hex');
  header.writeUInt16BE(checksum(header, 0, 20), 10);
  assert.equal(header.readUInt16BE(10), 0xb861); // the worked example of the IPv4 checksum
  assert.equal(checksum(header, 0, 20), 0);
});

test('RFC 1624 incremental update equals a full recompute (16-bit and 32-bit fields)', () => {
  for (let seed = 1; seed <= 2000; seed++) {
    const header = randomBytes(20, seed);
    header.writeUInt16BE(0, 10);
    const before = checksum(header, 0, 20);
    header.writeUInt16BE(before, 10);

    const wordAt = 2 * (seed % 5);
    const oldWord = header.readUInt16BE(wordAt);
    const newWord = (seed * 7919) & 0xffff;
    header.writeUInt16BE(newWord, wordAt);
    const incremental16 = checksumUpdate16(before, oldWord, newWord);
    header.writeUInt16BE(0, 10);
    assert.equal(incremental16, checksum(header, 0, 20), `16-bit update, seed ${seed}`);
    header.writeUInt16BE(incremental16, 10);

    const oldAddress = header.readUInt32BE(12);
    const newAddress = (Math.imul(seed, 2654435761) >>> 0) as number;
    header.writeUInt32BE(newAddress, 12);
    const incremental32 = checksumUpdate32(incremental16, oldAddress, newAddress);
    header.writeUInt16BE(0, 10);
    assert.equal(incremental32, checksum(header, 0, 20), `32-bit update, seed ${seed}`);
  }
});
