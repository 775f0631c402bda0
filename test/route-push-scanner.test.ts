/**
 * The stream decoder's fast path (route-push-scanner.ts, framing in
 * stream-decoder.ts) against the saxes path it replaces for route pushes:
 * for contrail's vectors and for generated streams (route pushes in the
 * compact, contrail and pre-2016 layouts, escapes, other stanzas, keepalives
 * and declarations between them, split into random chunks), the events are
 * the same as XmppStreamParser + decodeStanza give, and each generated push
 * took the fast path. Corrupted streams give the same events too, refusal
 * included. fast-check, fixed seed; FUZZ_SEED=<n> runs another.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { decodeStanza, decodeStreamHeader, encodeStanza, escapeXml, isStreamError } from '../src/control/xmpp/codec';
import { CONTROL_NODE_JID, KEEPALIVE, StanzaError } from '../src/control/xmpp/stanza';
import { ChunkDecoder, DecodedEvent, unpackRouteUpdate } from '../src/control/xmpp/stream-decoder';
import { XmppStreamParser } from '../src/control/xmpp/stream-parser';

const SEED = Number(process.env.FUZZ_SEED ?? 0x5eed);
const VECTORS = join(__dirname, '..', '..', 'test', 'vectors', 'xmpp');
const CONTROL_OPEN = readFileSync(join(VECTORS, 'control-open.xml'));
const PUBSUB = 'http://jabber.org/protocol/pubsub';

const DECLARATION = '<?xml version="1.0"?>';

/**
 * What the session got before the fast path: the saxes parser and
 * decodeStanza over the same bytes (the events do not depend on the chunks).
 * Declarations between stanzas are left out: the parser refuses the second
 * one of a stream ("expected one of encoding, standalone", saxes keeps
 * state from the first), where contrail sends one before every IF-MAP
 * message; that is the parser's to fix, and skipping them is right.
 */
function saxesEvents(chunks: Buffer[]): DecodedEvent[] {
  const bytes = Buffer.concat(chunks);
  const header = bytes.indexOf('>') + 1;
  return saxesEventsOf(Buffer.concat([bytes.subarray(0, header), Buffer.from(bytes.subarray(header).toString('latin1').split(DECLARATION).join(''), 'latin1')]));
}

function saxesEventsOf(bytes: Buffer): DecodedEvent[] {
  const chunks = [bytes];
  const events: DecodedEvent[] = [];
  const parser = new XmppStreamParser({
    streamOpen: (element) => events.push({ open: decodeStreamHeader(element) }),
    stanza: (element) => {
      const decoded = decodeStanza(element);
      events.push(isStreamError(decoded) ? { streamError: decoded } : { stanza: decoded });
    },
    streamClose: () => events.push({ close: true }),
  });
  for (const chunk of chunks) {
    try {
      parser.write(chunk);
    } catch (error) {
      if (!(error instanceof StanzaError)) throw error;
      events.push({ malformed: error.message });
      break;
    }
  }
  return events;
}

/** The decoder's events over the chunks, and how many route pushes the fast path decoded. */
function fastEvents(chunks: Buffer[]): { events: DecodedEvent[]; scanned: number } {
  const decoder = new ChunkDecoder();
  const events: DecodedEvent[] = [];
  let scanned = 0;
  for (const chunk of chunks) {
    for (const event of decoder.decode(chunk)) {
      if ('packedRoutes' in event) {
        scanned++;
        events.push({ stanza: unpackRouteUpdate(event.packedRoutes) });
      } else {
        events.push(event);
      }
    }
  }
  return { events, scanned };
}

function splitAt(bytes: Buffer, cuts: number[]): Buffer[] {
  const offsets = [...new Set(cuts.map((cut) => cut % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let start = 0;
  for (const offset of [...offsets, bytes.length]) {
    if (offset > start) chunks.push(bytes.subarray(start, offset));
    start = offset;
  }
  return chunks;
}

// ------------------------------------------------------------ contrail's vectors

const vector = (file: string) => readFileSync(join(VECTORS, file));

test("contrail's pushes, its IF-MAP IQ and End-of-RIB decode as on the saxes path; its inet pushes on the fast path", () => {
  const fastFiles = ['inet-push.xml', 'inet-push-2015.xml'];
  const files = [...fastFiles, 'inet-mpls-push.xml', 'evpn-push.xml', 'inet6-push.xml', 'mcast-push.xml', 'end-of-rib.xml', 'ifmap-config.xml'];
  for (const file of files) {
    const stream = Buffer.concat([CONTROL_OPEN, vector(file), KEEPALIVE, vector(file)]);
    for (const chunks of [[stream], splitAt(stream, [...Array(stream.length).keys()])]) {
      const { events, scanned } = fastEvents(chunks);
      assert.deepEqual(events, saxesEvents(chunks), file);
      assert.equal(events.length, 3, file);
      assert.equal(scanned, fastFiles.includes(file) ? 2 : 0, file);
    }
  }
});

test("contrail-control's bad inet items are dropped as on the saxes path, the push kept", () => {
  for (let index = 1; index <= 6; index++) {
    const item = vector(`bad_inet_item_${index}.xml`).toString().replace('<item>', '<item id="10.1.1.1/32">');
    const push = `<message from="${CONTROL_NODE_JID}" to="node-a/bgp-peer"><event xmlns="${PUBSUB}"><items node="1/1/vn1">${item}</items></event></message>`;
    const chunks = [Buffer.concat([CONTROL_OPEN, Buffer.from(push)])];
    const { events } = fastEvents(chunks);
    assert.deepEqual(events, saxesEvents(chunks));
    assert.equal(itemsDropped(events[events.length - 1]), 1, `bad_inet_item_${index}`);
  }
});

/** How many items of a route push decodeStanza dropped (see RefusedItem); -1 for any other event. */
function itemsDropped(event: DecodedEvent): number {
  return 'stanza' in event && event.stanza.kind === 'route-update' ? (event.stanza.refused?.length ?? 0) : -1;
}

// ------------------------------------------------------------ generated streams

interface Nexthop {
  address: string;
  label: number;
  encaps: string[];
  /** null: none of its own (the entry's, or none). */
  vn: string | null;
}

interface Change {
  prefix: string;
  /** null: a retract. */
  entry: { nexthops: Nexthop[]; entryVn: string | null; attributes: [number, number, number, number] } | null;
}

interface Push {
  from: string;
  to: string;
  vrf: string;
  changes: Change[];
  layout: 'compact' | 'contrail' | 'pre-2016';
}

const octet = fc.integer({ min: 0, max: 255 });
const address = fc.tuple(octet, octet, octet, octet).map((parts) => parts.join('.'));
const prefix = fc.tuple(address, fc.integer({ min: 0, max: 32 })).map(([a, length]) => `${a}/${length}`);
/** Names with characters that need escaping, and some written as character references. */
const name = fc
  .array(fc.constantFrom('a', 'b', 'v', 'n', '1', ':', '-', '_', '.', ' ', '&', '<', '>', '"', "'"), { minLength: 1, maxLength: 12 })
  .map((chars) => chars.join(''));
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const nexthop: fc.Arbitrary<Nexthop> = fc.record({
  address: address.filter((a) => a !== '0.0.0.0'),
  label: fc.integer({ min: 0, max: 0xfffff }),
  encaps: fc.array(fc.constantFrom('udp', 'gre', 'vxlan', 'mpls&udp'), { maxLength: 3 }),
  vn: fc.option(name, { nil: null }),
});
const change: fc.Arbitrary<Change> = fc.record({
  prefix,
  entry: fc.option(
    fc.record({ nexthops: fc.array(nexthop, { minLength: 1, maxLength: 3 }), entryVn: fc.option(name, { nil: null }), attributes: fc.tuple(u32, u32, u32, u32) }),
    { nil: null, freq: 4 },
  ),
});
const push: fc.Arbitrary<Push> = fc.record({
  from: fc.constantFrom(CONTROL_NODE_JID, 'control&1'),
  to: name.map((n) => `${n}/bgp-peer`),
  vrf: name.filter((n) => !n.includes('/')),
  changes: fc.array(change, { maxLength: 6 }),
  layout: fc.constantFrom('compact', 'contrail', 'pre-2016'),
});

/** Escapes as the encoder does, and sometimes writes letters as character references. */
function text(value: string, references: boolean): string {
  if (!references) return escapeXml(value);
  return [...value].map((c) => (c === 'a' ? '&#97;' : c === 'b' ? '&#x62;' : escapeXml(c))).join('');
}

/** A push as this project's control node (compact) or contrail-control (tab-indented, unused elements, old or new VN placement) writes it. */
function pushXml(p: Push, references: boolean): string {
  const contrail = p.layout !== 'compact';
  const t = (depth: number) => (contrail ? `\n${'\t'.repeat(depth)}` : '');
  let items = '';
  for (const c of p.changes) {
    if (c.entry === null) {
      items += `${t(3)}<retract id="${c.prefix}"${contrail ? ' />' : '/>'}`;
      continue;
    }
    let nexthops = '';
    for (const n of c.entry.nexthops) {
      const encaps = n.encaps.map((e) => `${t(8)}<tunnel-encapsulation>${text(e, references)}</tunnel-encapsulation>`).join('');
      const vn = n.vn !== null && p.layout !== 'pre-2016' ? `${t(7)}<virtual-network>${text(n.vn, references)}</virtual-network>` : '';
      nexthops +=
        `${t(6)}<next-hop>${t(7)}<af>1</af>${t(7)}<address>${n.address}</address>` +
        (contrail ? `${t(7)}<mac />` : '') +
        `${t(7)}<label>${n.label}</label>` +
        (contrail ? `${t(7)}<vni>0</vni>` : '') +
        `${t(7)}<tunnel-encapsulation-list>${encaps}${t(7)}</tunnel-encapsulation-list>${vn}` +
        (contrail ? `${t(7)}<tag-list />${t(7)}<local-sequence-number>0</local-sequence-number>` : '') +
        `${t(6)}</next-hop>`;
    }
    const [version, sequence, preference, med] = c.entry.attributes;
    const entryVn = c.entry.entryVn !== null && p.layout === 'pre-2016' ? `${t(5)}<virtual-network>${text(c.entry.entryVn, references)}</virtual-network>` : '';
    items +=
      `${t(3)}<item id="${c.prefix}">${t(4)}<entry>${t(5)}<nlri>${t(6)}<af>1</af>${t(6)}<safi>1</safi>${t(6)}<address>${c.prefix}</address>${t(5)}</nlri>` +
      `${t(5)}<next-hops>${nexthops}${t(5)}</next-hops>${t(5)}<version>${version}</version>${entryVn}` +
      `${t(5)}<sequence-number>${sequence}</sequence-number>${t(5)}<local-preference>${preference}</local-preference>${t(5)}<med>${med}</med>` +
      `${t(4)}</entry>${t(3)}</item>`;
  }
  const message =
    `${contrail ? '\n' : ''}<message from="${text(p.from, references)}" to="${text(p.to, references)}">${t(1)}<event xmlns="${PUBSUB}">` +
    `${t(2)}<items node="1/1/${text(p.vrf, references)}">${items}${contrail ? '\n\t\t' : ''}</items>${t(1)}</event>${contrail ? '\n' : ''}</message>${contrail ? '\n' : ''}`;
  return p.layout === 'pre-2016' ? `${DECLARATION}${message}` : message;
}

/** Stanzas of other kinds between the pushes: the saxes path's. */
const OTHER_STANZAS = [
  encodeStanza({ kind: 'end-of-rib', from: CONTROL_NODE_JID, to: 'node-a/bgp-peer' }),
  encodeStanza({ kind: 'subscribe', from: 'node-a', to: `${CONTROL_NODE_JID}/bgp-peer`, id: 'subscribe1', vrf: 'p</iq> a > b', instanceId: 1 }),
  vector('evpn-push.xml').toString(),
  vector('ifmap-config.xml').toString(),
];

const between = fc.constantFrom('', '\n', ' \t', KEEPALIVE.toString(), DECLARATION);
const part = fc.oneof(
  { weight: 4, arbitrary: fc.record({ push, references: fc.boolean() }) },
  { weight: 1, arbitrary: fc.constantFrom(...OTHER_STANZAS.keys()) },
);
const stream = fc.record({ parts: fc.array(fc.tuple(between, part), { minLength: 1, maxLength: 6 }), cuts: fc.array(fc.nat(), { maxLength: 12 }) });

type Part = { push: Push; references: boolean } | number;

function streamBytes(parts: Array<[string, Part]>): { bytes: Buffer; pushes: number } {
  let xml = '';
  let pushes = 0;
  for (const [gap, item] of parts) {
    xml += gap;
    if (typeof item === 'number') {
      xml += OTHER_STANZAS[item];
    } else {
      xml += pushXml(item.push, item.references);
      pushes++;
    }
  }
  return { bytes: Buffer.concat([CONTROL_OPEN, Buffer.from(xml)]), pushes };
}

test('generated streams decode as on the saxes path, every route push on the fast path, however the chunks fall', () => {
  fc.assert(
    fc.property(stream, ({ parts, cuts }) => {
      const { bytes, pushes } = streamBytes(parts);
      const chunks = splitAt(bytes, cuts);
      const { events, scanned } = fastEvents(chunks);
      assert.deepEqual(events, saxesEvents(chunks));
      assert.equal(scanned, pushes);
      assert.ok(events.every((event) => !('malformed' in event)));
    }),
    { seed: SEED, numRuns: 400 },
  );
});

/**
 * Refusals with their reason left out: where the parser starts reading can
 * change what it quotes (text between stanzas the fast path skipped).
 */
function refusalsAlike(events: DecodedEvent[]): DecodedEvent[] {
  return events.map((event) => ('malformed' in event ? { malformed: 'refused' } : event));
}

/** Corruptions aimed at what the scanner checks, and plain byte edits. */
const REPLACEMENTS = ['<', '>', '&', '"', "'", '/', ' ', '\t', '\r', '0', '9', '.', 'x', '\u0001', ']]>', '<!-- c -->', '<![CDATA[1]]>', '&bogus;', '&#0;', 'é', '0.0.0.0', '1048576', '4294967296', '33'];

test('corrupted streams give the same events as on the saxes path, refusals included', () => {
  let refused = 0;
  fc.assert(
    fc.property(
      stream,
      fc.array(fc.tuple(fc.nat(), fc.nat({ max: 3 }), fc.constantFrom(...REPLACEMENTS)), { minLength: 1, maxLength: 3 }),
      ({ parts, cuts }, edits) => {
        // Without declarations: the parser would refuse a second one (see saxesEvents) once it reads the rest of the stream.
        let bytes = Buffer.from(streamBytes(parts).bytes.toString('latin1').split(DECLARATION).join(''), 'latin1');
        for (const [at, remove, insert] of edits) {
          // Past the stream header, which only the parser reads.
          const offset = CONTROL_OPEN.length + (at % (bytes.length - CONTROL_OPEN.length + 1));
          bytes = Buffer.concat([bytes.subarray(0, offset), Buffer.from(insert), bytes.subarray(offset + remove)]);
        }
        const chunks = splitAt(bytes, cuts);
        const expected = refusalsAlike(saxesEvents(chunks));
        assert.deepEqual(refusalsAlike(fastEvents(chunks).events), expected);
        if (expected.some((event) => 'malformed' in event)) refused++;
      },
    ),
    { seed: SEED, numRuns: 1500 },
  );
  // The corruptions reach the refusals, not only elements decodeStanza ignores.
  assert.ok(refused > 750, `${refused} of 1500 refused`);
});

/**
 * Defects put into a push's first item, and what becomes of the push: decodeStanza drops the item and
 * keeps the rest ('item'), the stanza is refused by decodeStanza or saxes ('stanza'), or it is accepted.
 */
const DEFECTS: Array<[string, RegExp, string, 'item' | 'stanza' | 'accepted']> = [
  ['next hop 0.0.0.0', /(<next-hop>\s*<af>1<\/af>\s*<address>)[^<]*/, '$10.0.0.0', 'item'],
  ['label above 20 bits', /<label>\d+/, '<label>1048576', 'item'],
  ['prefix length 33', /(<item id="[^"/]*\/)\d+"/, '$133"', 'item'],
  ['octet 256', /<item id="\d+/, '<item id="256', 'item'],
  ['octet with a leading zero', /<item id="\d+/, '<item id="01', 'item'],
  ['item id not the entry prefix', /<item id="/, '<item id="1', 'item'],
  ['nlri af 2', /<af>1</, '<af>2<', 'item'],
  ['nlri safi 2', /<safi>1</, '<safi>2<', 'item'],
  ['next-hop af 2', /(<next-hop>\s*<af>)1/, '$12', 'item'],
  ['no next hops', /<next-hops>[\s\S]*?<\/next-hops>/, '<next-hops></next-hops>', 'item'],
  ['no version', /<version>\d+<\/version>/, '', 'item'],
  ['version above 32 bits', /<version>\d+/, '<version>4294967296', 'item'],
  ['duplicate attribute', /<item id="/, '<item id="1.1.1.1/32" id="', 'stanza'],
  ['"]]>" in text', /<entry>/, '<entry>]]>', 'stanza'],
  ['an unknown entity', /<entry>/, '<entry><x>&bogus;</x>', 'stanza'],
  ['nesting deeper than the parser allows', /<entry>/, `<entry>${'<x>'.repeat(12)}${'</x>'.repeat(12)}`, 'stanza'],
  ['an element in the encapsulation list', /<tunnel-encapsulation-list>/, '$&<x/>', 'item'],
  ['mismatched end tag', /<\/nlri>/, '</nrli>', 'stanza'],
  ['event in another namespace', /xmlns="http:\/\/jabber.org\/protocol\/pubsub"/, 'xmlns="urn:x"', 'stanza'],
  // decodeStanza takes the first of each, saxes the nesting: not refused, and not for the scanner either.
  ['two versions', /<version>/, '<version>1</version><version>', 'accepted'],
  ['nesting as deep as the parser allows', /<entry>/, `<entry>${'<x>'.repeat(11)}${'</x>'.repeat(11)}`, 'accepted'],
];

const defectivePush = fc.record({
  push: push.map((p) => ({ ...p, changes: [{ prefix: '10.1.1.3/32', entry: { nexthops: [{ address: '192.0.2.1', label: 16, encaps: ['udp'], vn: 'vn1' }], entryVn: null, attributes: [1, 0, 100, 0] }} as Change, ...p.changes] })),
  defect: fc.constantFrom(...DEFECTS),
  cuts: fc.array(fc.nat(), { maxLength: 8 }),
});

test('pushes with defects decode (or are refused) as on the saxes path, however the chunks fall', () => {
  fc.assert(
    fc.property(defectivePush, ({ push: p, defect: [what, pattern, replacement, outcome], cuts }) => {
      const xml = pushXml({ ...p, layout: p.layout === 'pre-2016' ? 'contrail' : p.layout }, false);
      const broken = xml.replace(pattern, replacement);
      assert.notEqual(broken, xml, what);
      const chunks = splitAt(Buffer.concat([CONTROL_OPEN, Buffer.from(broken)]), cuts);
      const expected = saxesEvents(chunks);
      assert.deepEqual(fastEvents(chunks).events, expected, what);
      const last = expected[expected.length - 1];
      assert.equal('malformed' in last, outcome === 'stanza', what);
      if (outcome !== 'stanza') assert.equal(itemsDropped(last), outcome === 'item' ? 1 : 0, what);
    }),
    { seed: SEED, numRuns: 600 },
  );
});

test('a stanza the framing cannot delimit exactly leaves the rest of the stream to the parser', () => {
  const push = pushXml(
    {
      from: CONTROL_NODE_JID,
      to: 'node-a/bgp-peer',
      vrf: 'vn1',
      changes: [{ prefix: '10.1.1.3/32', entry: null }],
      layout: 'compact',
    },
    false,
  );
  const inputs = [
    // A root closed with whitespace in its end tag, then a push.
    `<iq type="set" from="a" to="b/config" id="c"><pubsub xmlns="http://jabber.org/protocol/pubsub"><unsubscribe node="x"/></pubsub></iq >${push}`,
    // "</iq>" in a comment inside the stanza.
    `<iq type="set" from="a" to="b/config" id="c"><!-- </iq> --><pubsub xmlns="http://jabber.org/protocol/pubsub"><unsubscribe node="x"/></pubsub></iq>${push}`,
    // A comment between stanzas, holding what looks like a push.
    `<!-- ${push} -->${push}`,
    // The end of the stream, then bytes after it.
    `${push}</stream:stream>${push}`,
  ];
  for (const input of inputs) {
    const chunks = [Buffer.concat([CONTROL_OPEN, Buffer.from(input)])];
    assert.deepEqual(fastEvents(chunks).events, saxesEvents(chunks), input);
  }
});
