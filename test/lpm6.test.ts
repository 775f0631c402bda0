import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { HashedLengths6Table } from '../src/dataplane/lpm/hashed-lengths6';
import { ReferencePrefixTable6 } from '../src/dataplane/lpm/reference-table6';
import { ip6FromString, ip6ToString, maskPrefix6 } from '../src/dataplane/protocols/ipv6';

const ip6 = ip6FromString;

/** First and last address of prefix/length, and their neighbours just outside. */
function boundaries(prefix: Uint8Array, length: number): Uint8Array[] {
  const first = maskPrefix6(Uint8Array.from(prefix), length);
  const last = Uint8Array.from(first);
  for (let bit = length; bit < 128; bit++) last[bit >> 3] |= 0x80 >> (bit & 7);
  const step = (address: Uint8Array, delta: 1 | -1): Uint8Array => {
    const out = Uint8Array.from(address);
    for (let i = 15; i >= 0; i--) {
      const value = out[i] + delta;
      out[i] = value & 0xff;
      if (value >= 0 && value <= 0xff) break;
    }
    return out;
  };
  return [first, last, step(first, -1), step(last, 1)];
}

function assertSameLookups(fast: HashedLengths6Table, reference: ReferencePrefixTable6, addresses: Iterable<Uint8Array>): void {
  for (const address of addresses) assert.equal(fast.lookup(address, 0), reference.lookup(address, 0), `lookup(${ip6ToString(address)})`);
}

// Few distinct groups, so prefixes of different lengths nest and collide.
const group = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(0, 1, 0x2001, 0xdb8, 0x8000, 0xffff) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff }) },
);
const address = fc.array(group, { minLength: 8, maxLength: 8 }).map((groups) => {
  const bytes = new Uint8Array(16);
  groups.forEach((word, i) => {
    bytes[i * 2] = word >>> 8;
    bytes[i * 2 + 1] = word & 0xff;
  });
  return bytes;
});
const prefixLength = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(0, 48, 64, 127, 128) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 128 }) },
);
const routeValue = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 3 }) },
  { weight: 1, arbitrary: fc.constant(0x7fffffff) },
  { weight: 1, arbitrary: fc.nat({ max: 0x7fffffff }) },
);
const scenario = fc.record({
  routes: fc.array(fc.record({ prefix: address, length: prefixLength }), { minLength: 1, maxLength: 40 }),
  operations: fc.array(
    fc.record({ route: fc.nat(), insert: fc.integer({ min: 0, max: 2 }).map((n) => n > 0), value: routeValue }),
    { minLength: 1, maxLength: 120 },
  ),
  probes: fc.array(address, { maxLength: 64 }),
});

test('HashedLengths6Table agrees with the reference table over random inserts and removes', () => {
  fc.assert(
    fc.property(scenario, ({ routes, operations, probes }) => {
      const fast = new HashedLengths6Table();
      const reference = new ReferencePrefixTable6();
      for (const operation of operations) {
        const { prefix, length } = routes[operation.route % routes.length];
        if (operation.insert) {
          fast.insert(prefix, length, operation.value);
          reference.insert(prefix, length, operation.value);
        } else {
          assert.equal(fast.remove(prefix, length), reference.remove(prefix, length), 'remove()');
        }
        assertSameLookups(fast, reference, boundaries(prefix, length));
      }
      const everyBoundary = routes.flatMap(({ prefix, length }) => boundaries(prefix, length));
      assertSameLookups(fast, reference, everyBoundary);
      assertSameLookups(fast, reference, probes);
      assert.equal(fast.size, reference.size, 'size');
      assert.deepEqual(fast.entries(), reference.entries(), 'entries()');
      for (const { prefix, length } of routes) assert.equal(fast.get(prefix, length), reference.get(prefix, length));

      for (const { prefix, length } of fast.entries().reverse()) {
        assert.equal(fast.remove(prefix, length), true);
        reference.remove(prefix, length);
        assertSameLookups(fast, reference, boundaries(prefix, length));
      }
      assert.equal(fast.size, 0);
      assertSameLookups(fast, reference, everyBoundary);
    }),
    { seed: 42, numRuns: 300 },
  );
});

test('nested IPv6 prefixes: the longest wins, removal falls back to the next covering one', () => {
  const table = new HashedLengths6Table();
  const routes: Array<[string, number, number]> = [
    ['::', 0, 1],
    ['2001:db8::', 32, 2],
    ['2001:db8:1::', 64, 3],
    ['2001:db8:1::3', 128, 4],
  ];
  for (const [prefix, length, value] of routes) table.insert(ip6(prefix), length, value);
  const probes = ['2001:db8:1::3', '2001:db8:1::4', '2001:db8:2::1', '2001:db9::1'].map(ip6);
  assert.deepEqual(probes.map((a) => table.lookup(a, 0)), [4, 3, 2, 1]);
  // Lookups read the address where it lies, e.g. inside a packet.
  const packet = new Uint8Array(64);
  packet.set(probes[0], 24);
  assert.equal(table.lookup(packet, 24), 4);
  for (const [prefix, length] of [...routes].reverse()) assert.equal(table.remove(ip6(prefix), length), true);
  assert.deepEqual(probes.map((a) => table.lookup(a, 0)), [-1, -1, -1, -1]);
  assert.equal(table.remove(ip6('::'), 0), false);
});

test('host bits of an inserted prefix are ignored, values are replaced, bad lengths and values throw', () => {
  const table = new HashedLengths6Table();
  table.insert(ip6('2001:db8::ffff'), 64, 5);
  assert.equal(table.get(ip6('2001:db8::'), 64), 5);
  table.insert(ip6('2001:db8::'), 64, 6);
  assert.equal(table.size, 1);
  assert.equal(table.lookup(ip6('2001:db8::1234'), 0), 6);
  assert.throws(() => table.insert(ip6('::'), 129, 1), /prefix length/);
  assert.throws(() => table.insert(ip6('::'), 0, -1), /route value/);
});

test('100,000 host routes load and all resolve; the table grows and shrinks back to the same answers', () => {
  const table = new HashedLengths6Table();
  const reference = new Map<string, number>();
  const address = new Uint8Array(16);
  address.set(ip6('fd00:10:1::'));
  for (let i = 0; i < 100_000; i++) {
    address[12] = (i >>> 24) & 0xff;
    address[13] = (i >>> 16) & 0xff;
    address[14] = (i >>> 8) & 0xff;
    address[15] = i & 0xff;
    table.insert(address, 128, i);
    if (i % 997 === 0) reference.set(ip6ToString(address), i);
  }
  table.insert(ip6('fd00:10:1::'), 64, 200_000);
  assert.equal(table.size, 100_001);
  for (const [text, value] of reference) assert.equal(table.lookup(ip6(text), 0), value);
  assert.equal(table.lookup(ip6('fd00:10:1::1:0:0'), 0), 200_000);
  for (const text of reference.keys()) table.remove(ip6(text), 128);
  for (const text of reference.keys()) assert.equal(table.lookup(ip6(text), 0), 200_000);
});

test('IPv6 text round-trips in RFC 5952 form', () => {
  for (const [text, canonical] of [
    ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['::', '::'],
    ['::1', '::1'],
    ['fe80::200:5eff:fe00:100', 'fe80::200:5eff:fe00:100'],
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'],
    ['::ffff:10.1.2.3', '::ffff:a01:203'],
  ]) {
    assert.equal(ip6ToString(ip6(text)), canonical);
  }
  for (const bad of ['1::2::3', '12345::', '1:2:3:4:5:6:7', 'g::', '1:2:3:4:5:6:7:8:9', '::1.2.3']) assert.throws(() => ip6(bad), /not an IPv6/);
});
