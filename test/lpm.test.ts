import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Dir1688Table } from '../src/dataplane/lpm/dir-16-8-8';
import { ReferencePrefixTable } from '../src/dataplane/lpm/reference-table';
import { prefixMask } from '../src/dataplane/lpm/prefix-table';

function ip(text: string): number {
  return text.split('.').reduce((address, octet) => address * 256 + Number(octet), 0);
}

function hex(address: number): string {
  return '0x' + (address >>> 0).toString(16).padStart(8, '0');
}

/** First and last address of prefix/length, and their neighbours just outside. */
function boundaries(prefix: number, length: number): number[] {
  const first = (prefix & prefixMask(length)) >>> 0;
  const last = (first | ~prefixMask(length)) >>> 0;
  return [first, last, (first - 1) >>> 0, (last + 1) >>> 0];
}

function assertSameLookups(fast: Dir1688Table, reference: ReferencePrefixTable, addresses: Iterable<number>): void {
  for (const address of addresses) {
    assert.equal(fast.lookup(address), reference.lookup(address), `lookup(${hex(address)})`);
  }
}

function assertSameRoutes(fast: Dir1688Table, reference: ReferencePrefixTable): void {
  assert.equal(fast.size, reference.size, 'size');
  const routes = reference.entries();
  assert.deepEqual(fast.entries(), routes, 'entries()');
  for (const { prefix, length, value } of routes) assert.equal(fast.get(prefix, length), value);
}

/** Chunks a table built from scratch needs for the same routes: the trie must not depend on history. */
function freshChunkCount(routes: Array<{ prefix: number; length: number; value: number }>): number {
  const fresh = new Dir1688Table();
  for (const { prefix, length, value } of routes) fresh.insert(prefix, length, value);
  return fresh.chunkCount;
}

// Few distinct octets, so prefixes of different lengths nest and collide.
const octet = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(0, 1, 10, 128, 255) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }) },
);
const address = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(octet, octet, octet, octet).map(([a, b, c, d]) => ((a << 24) | (b << 16) | (c << 8) | d) >>> 0) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffffffff }) },
);
const prefixLength = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(8, 16, 24, 32) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 32 }) },
);
// Mostly a handful of values, so neighbouring slots agree and chunks fold back.
const routeValue = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 3 }) },
  { weight: 1, arbitrary: fc.constant(0x7fffffff) },
  { weight: 1, arbitrary: fc.nat({ max: 0x7fffffff }) },
);
const scenario = fc.record({
  routes: fc.array(fc.record({ prefix: address, length: prefixLength }), { minLength: 1, maxLength: 24 }),
  operations: fc.array(
    fc.record({ route: fc.nat(), insert: fc.integer({ min: 0, max: 2 }).map((n) => n > 0), value: routeValue }),
    { minLength: 1, maxLength: 80 },
  ),
  probes: fc.array(address, { maxLength: 64 }),
});

test('Dir1688Table agrees with the reference table over random inserts and removes', () => {
  fc.assert(
    fc.property(scenario, ({ routes, operations, probes }) => {
      const fast = new Dir1688Table();
      const reference = new ReferencePrefixTable();
      for (const operation of operations) {
        const { prefix, length } = routes[operation.route % routes.length];
        if (operation.insert) {
          assert.equal(fast.insert(prefix, length, operation.value), reference.insert(prefix, length, operation.value), 'insert() returns the value replaced');
        } else {
          assert.equal(fast.remove(prefix, length), reference.remove(prefix, length), 'remove()');
        }
        assertSameLookups(fast, reference, boundaries(prefix, length));
      }

      const everyBoundary = routes.flatMap(({ prefix, length }) => boundaries(prefix, length));
      assertSameLookups(fast, reference, everyBoundary);
      assertSameLookups(fast, reference, probes);
      assertSameRoutes(fast, reference);
      for (const { prefix, length } of routes) assert.equal(fast.get(prefix, length), reference.get(prefix, length));
      assert.equal(fast.chunkCount, freshChunkCount(fast.entries()), 'chunkCount against a fresh table');

      for (const { prefix, length } of fast.entries().reverse()) {
        assert.equal(fast.remove(prefix, length), true);
        reference.remove(prefix, length);
        assertSameLookups(fast, reference, boundaries(prefix, length));
      }
      assert.equal(fast.size, 0);
      assert.equal(fast.chunkCount, 0, 'chunks left after removing every route');
      assertSameLookups(fast, reference, everyBoundary);
    }),
    { seed: 42, numRuns: 200 },
  );
});

test('an empty table finds nothing', () => {
  const table = new Dir1688Table();
  assert.equal(table.size, 0);
  assert.equal(table.chunkCount, 0);
  assert.deepEqual(table.entries(), []);
  for (const address of [0, ip('10.1.2.3'), 0xffffffff]) assert.equal(table.lookup(address), -1);
  assert.equal(table.get(0, 0), -1);
  assert.equal(table.remove(ip('10.0.0.0'), 8), false);
});

test('the default route catches every address until it is removed', () => {
  const table = new Dir1688Table();
  table.insert(0, 0, 7);
  for (const address of [0, ip('10.1.2.3'), 0x7fffffff, 0x80000000, 0xffffffff]) assert.equal(table.lookup(address), 7);
  table.insert(ip('10.1.2.3'), 32, 9);
  assert.equal(table.lookup(ip('10.1.2.3')), 9);
  assert.equal(table.lookup(ip('10.1.2.4')), 7);
  assert.equal(table.remove(0, 0), true);
  assert.equal(table.lookup(ip('10.1.2.4')), -1);
  assert.equal(table.lookup(ip('10.1.2.3')), 9);
  assert.equal(table.get(0, 0), -1);
});

const nested: Array<[string, number, number]> = [
  ['10.0.0.0', 8, 1],
  ['10.1.0.0', 16, 2],
  ['10.1.2.0', 24, 3],
  ['10.1.2.3', 32, 4],
];
const nestedProbes = ['10.1.2.3', '10.1.2.4', '10.1.3.1', '10.2.0.1', '11.0.0.1'].map(ip);

for (const [order, routes] of [
  ['shortest first', nested],
  ['longest first', [...nested].reverse()],
] as const) {
  test(`nested prefixes removed ${order} fall back to the next covering prefix`, () => {
    const table = new Dir1688Table();
    const reference = new ReferencePrefixTable();
    // Insert in the opposite order to removal, so both insertion orders are covered too.
    for (const [prefix, length, value] of [...routes].reverse()) {
      table.insert(ip(prefix), length, value);
      reference.insert(ip(prefix), length, value);
    }
    assert.deepEqual(nestedProbes.map((address) => table.lookup(address)), [4, 3, 2, 1, -1]);
    for (const [prefix, length] of routes) {
      assert.equal(table.remove(ip(prefix), length), true);
      reference.remove(ip(prefix), length);
      assertSameLookups(table, reference, nestedProbes);
    }
    assert.equal(table.chunkCount, 0);
  });
}

test('inserting a prefix again replaces its value and leaves longer prefixes alone', () => {
  const table = new Dir1688Table();
  table.insert(ip('10.0.0.0'), 8, 1);
  table.insert(ip('10.1.2.3'), 32, 2);
  table.insert(ip('10.0.0.0'), 8, 5);
  table.insert(ip('10.1.2.3'), 32, 6);
  assert.equal(table.size, 2);
  assert.equal(table.lookup(ip('10.1.2.3')), 6);
  assert.equal(table.lookup(ip('10.1.2.4')), 5);
  assert.equal(table.lookup(ip('10.200.0.1')), 5);
  assert.equal(table.get(ip('10.0.0.0'), 8), 5);
});

test('a shorter prefix inserted later does not hide a longer one', () => {
  const table = new Dir1688Table();
  table.insert(ip('10.1.2.3'), 32, 1);
  table.insert(ip('10.1.2.0'), 24, 2);
  table.insert(ip('10.0.0.0'), 8, 3);
  table.insert(0, 0, 4);
  assert.equal(table.lookup(ip('10.1.2.3')), 1);
  assert.equal(table.lookup(ip('10.1.2.9')), 2);
  assert.equal(table.lookup(ip('10.9.9.9')), 3);
  assert.equal(table.lookup(ip('11.0.0.0')), 4);
});

test('/0 and /32 edges: extreme addresses, host bits ignored, bad input rejected', () => {
  const table = new Dir1688Table();
  table.insert(0, 32, 1);
  table.insert(0xffffffff, 32, 2);
  table.insert(0x7fffffff, 32, 0x7fffffff);
  assert.equal(table.lookup(0), 1);
  assert.equal(table.lookup(1), -1);
  assert.equal(table.lookup(0xffffffff), 2);
  assert.equal(table.lookup(0xfffffffe), -1);
  assert.equal(table.lookup(0x7fffffff), 0x7fffffff);

  table.insert(ip('192.168.77.1'), 16, 3);
  assert.equal(table.get(ip('192.168.0.0'), 16), 3);
  assert.equal(table.get(ip('192.168.1.1'), 16), 3);
  table.insert(0xdeadbeef, 0, 4);
  assert.equal(table.get(0, 0), 4);
  assert.deepEqual(table.entries(), [
    { prefix: 0, length: 0, value: 4 },
    { prefix: 0, length: 32, value: 1 },
    { prefix: 0x7fffffff, length: 32, value: 0x7fffffff },
    { prefix: ip('192.168.0.0'), length: 16, value: 3 },
    { prefix: 0xffffffff, length: 32, value: 2 },
  ]);
  assert.equal(table.remove(ip('192.168.255.255'), 16), true);
  assert.equal(table.remove(ip('192.168.0.0'), 16), false);

  assert.throws(() => table.insert(0, 33, 1), RangeError);
  assert.throws(() => table.insert(0, -1, 1), RangeError);
  assert.throws(() => table.insert(0, 8, -1), RangeError);
  assert.throws(() => table.insert(0, 8, 2 ** 31), RangeError);
  assert.throws(() => table.insert(0, 8, 1.5), RangeError);
  assert.throws(() => table.get(0, 33), RangeError);
});

test('chunks are given back when the routes that needed them go', () => {
  const table = new Dir1688Table();
  table.insert(ip('10.1.2.3'), 32, 1);
  assert.equal(table.chunkCount, 2);
  table.insert(ip('10.1.2.4'), 32, 1);
  table.insert(ip('10.1.3.0'), 24, 2);
  assert.equal(table.chunkCount, 2);
  table.insert(ip('10.2.0.0'), 17, 3);
  assert.equal(table.chunkCount, 3);
  table.remove(ip('10.1.2.3'), 32);
  table.remove(ip('10.1.2.4'), 32);
  assert.equal(table.chunkCount, 2, 'the /24 chunk folds back once its /32s are gone');
  table.remove(ip('10.1.3.0'), 24);
  table.remove(ip('10.2.0.0'), 17);
  assert.equal(table.chunkCount, 0);
  assert.equal(table.lookup(ip('10.1.2.3')), -1);

  // Freed chunks are reused rather than leaked.
  table.insert(ip('10.1.2.3'), 32, 1);
  assert.equal(table.chunkCount, 2);
  assert.equal(table.lookup(ip('10.1.2.3')), 1);
});

test('sibling halves with one value fold into their parent slot and split again', () => {
  const table = new Dir1688Table();
  table.insert(ip('10.1.0.0'), 17, 5);
  table.insert(ip('10.1.128.0'), 17, 5);
  assert.equal(table.chunkCount, 0);
  table.insert(ip('10.1.0.0'), 16, 6);
  assert.equal(table.lookup(ip('10.1.200.1')), 5, 'the /17s still win over the /16');
  table.remove(ip('10.1.128.0'), 17);
  assert.equal(table.chunkCount, 1);
  assert.equal(table.lookup(ip('10.1.200.1')), 6);
  assert.equal(table.lookup(ip('10.1.0.1')), 5);
});

test('100,000 routes inserted then removed leave an empty table', () => {
  const table = new Dir1688Table();
  const hosts: number[] = [];
  for (let block = 0; block < 400; block++) {
    for (let host = 1; host <= 250; host++) hosts.push(ip(`10.${(block * 37) & 0xff}.${block >> 8}.${host}`));
  }
  hosts.forEach((host, index) => table.insert(host, 32, index));
  table.insert(ip('10.0.0.0'), 8, 100_000);
  assert.equal(table.size, 100_001);
  hosts.forEach((host, index) => assert.equal(table.lookup(host), index));
  assert.equal(table.lookup(ip('10.0.0.0')), 100_000);

  for (const host of hosts) assert.equal(table.remove(host, 32), true);
  assert.equal(table.remove(ip('10.0.0.0'), 8), true);
  assert.equal(table.size, 0);
  assert.equal(table.chunkCount, 0);
  assert.deepEqual(table.entries(), []);
  for (const host of hosts.slice(0, 1000)) assert.equal(table.lookup(host), -1);
});
