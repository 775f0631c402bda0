import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeStanza, decodeStreamHeader, encodeStanza, encodeStreamOpen } from '../src/control/xmpp/codec';
import { XmlElement, XmppStreamParser } from '../src/control/xmpp/stream-parser';
import { CONTROL_NODE_JID, CONTROL_NODE_STREAM, KEEPALIVE, RouteUpdateStanza, SentStanza, Stanza, StanzaError } from '../src/control/xmpp/stanza';

/** The agent's open (see test/vectors/xmpp/README.md): xmlns is its subcluster, '' by default. */
const STREAM_OPEN =
  '<stream:stream from="node-a" to="network-control@contrailsystems.com" version="1.0" xml:lang="en" ' +
  'xmlns="" xmlns:stream="http://etherx.jabber.org/streams"  >';

/** The entry of the reference's "Control channel" section, as one line. */
const REFERENCE_ENTRY =
  '<entry><nlri><af>1</af><safi>1</safi><address>10.1.1.3/32</address></nlri>' +
  '<next-hops><next-hop><af>1</af><address>192.168.0.11</address><label>25</label>' +
  '<tunnel-encapsulation-list><tunnel-encapsulation>udp</tunnel-encapsulation></tunnel-encapsulation-list>' +
  '<virtual-network>default-domain:demo:vn1</virtual-network></next-hop></next-hops>' +
  '<version>1</version><sequence-number>0</sequence-number><local-preference>200</local-preference><med>0</med></entry>';

const SECOND_NEXTHOP =
  '<next-hop><af>1</af><address>192.168.0.12</address><label>31</label>' +
  '<tunnel-encapsulation-list><tunnel-encapsulation>gre</tunnel-encapsulation><tunnel-encapsulation>udp</tunnel-encapsulation>' +
  '</tunnel-encapsulation-list><virtual-network>default-domain:demo:vn1</virtual-network></next-hop>';

const VRF = 'default-domain:demo:vn1:vn1';
const TO_PEER = 'to="network-control@contrailsystems.com/bgp-peer"';
const PUSH = '<message from="network-control@contrailsystems.com" to="node-a/bgp-peer"><event xmlns="http://jabber.org/protocol/pubsub">';

/** Reference examples, each with the kind it must decode to. */
const EXAMPLES: Array<[Stanza['kind'], string]> = [
  [
    'subscribe',
    `<iq type="set" from="node-a" ${TO_PEER} id="subscribe3"><pubsub xmlns="http://jabber.org/protocol/pubsub">` +
      `<subscribe node="${VRF}"><options><instance-id>2</instance-id></options></subscribe></pubsub></iq>`,
  ],
  [
    'unsubscribe',
    `<iq type="set" from="node-a" ${TO_PEER} id="unsubscribe4"><pubsub xmlns="http://jabber.org/protocol/pubsub">` +
      `<unsubscribe node="${VRF}"/></pubsub></iq>`,
  ],
  [
    'publish',
    `<iq type="set" from="node-a" ${TO_PEER} id="pubsub5"><pubsub xmlns="http://jabber.org/protocol/pubsub">` +
      `<publish node="1/1/${VRF}/10.1.1.3/32"><item>${REFERENCE_ENTRY}</item></publish></pubsub></iq>`,
  ],
  [
    'associate',
    `<iq type="set" from="node-a" ${TO_PEER} id="collection6"><pubsub xmlns="http://jabber.org/protocol/pubsub">` +
      `<collection node="${VRF}"><associate node="1/1/${VRF}/10.1.1.3/32"/></collection></pubsub></iq>`,
  ],
  [
    'dissociate',
    `<iq type="set" from="node-a" ${TO_PEER} id="collection8"><pubsub xmlns="http://jabber.org/protocol/pubsub">` +
      `<collection node="${VRF}"><dissociate node="1/1/${VRF}/10.1.1.3/32"/></collection></pubsub></iq>`,
  ],
  [
    'route-update',
    `${PUSH}<items node="1/1/${VRF}"><item id="10.1.1.3/32">` +
      REFERENCE_ENTRY.replace('</next-hop></next-hops>', `</next-hop>${SECOND_NEXTHOP}</next-hops>`) +
      '</item></items></event></message>',
  ],
  ['route-update', `${PUSH}<items node="1/1/${VRF}"><retract id="10.1.1.3/32"/></items></event></message>`],
  ['end-of-rib', `${PUSH}<items node="0/0/EndOfRib"/></event></message>`],
  [
    'end-of-rib',
    '<message from="node-a" to="network-control@contrailsystems.com/bgp-peer"><event xmlns="http://jabber.org/protocol/pubsub">' +
      '<items node="0/0/EndOfRib"/></event></message>',
  ],
];

/** Parses a whole stream, feeding it in chunks of `chunkSize` bytes. */
function parseStream(bytes: Buffer, chunkSize = bytes.length): { header: XmlElement | null; stanzas: XmlElement[]; closed: boolean } {
  const result = { header: null as XmlElement | null, stanzas: [] as XmlElement[], closed: false };
  const parser = new XmppStreamParser({
    streamOpen: (element) => (result.header = element),
    stanza: (element) => result.stanzas.push(element),
    streamClose: () => (result.closed = true),
  });
  for (let offset = 0; offset < bytes.length; offset += chunkSize) parser.write(bytes.subarray(offset, offset + chunkSize));
  return result;
}

function parseOne(xml: string): XmlElement {
  const { stanzas } = parseStream(Buffer.from(STREAM_OPEN + xml));
  assert.equal(stanzas.length, 1);
  return stanzas[0];
}

test('the stream open tag round-trips byte for byte', () => {
  const { header } = parseStream(Buffer.from(STREAM_OPEN));
  const decoded = decodeStreamHeader(header!);
  assert.deepEqual(decoded, { from: 'node-a', to: 'network-control@contrailsystems.com', xmlns: '' });
  assert.equal(encodeStreamOpen(decoded), STREAM_OPEN);
});

for (const [kind, xml] of EXAMPLES) {
  test(`${kind} stanza round-trips byte for byte: ${xml.slice(0, 60)}...`, () => {
    const decoded = decodeStanza(parseOne(xml)) as SentStanza;
    assert.equal(decoded.kind, kind);
    assert.equal(encodeStanza(decoded), xml);
  });
}

test('the reference route entry decodes to its fields; several next hops make one ECMP entry', () => {
  const [, publish] = EXAMPLES[2];
  const decoded = decodeStanza(parseOne(publish));
  assert.deepEqual(decoded, {
    kind: 'publish',
    from: 'node-a',
    to: 'network-control@contrailsystems.com/bgp-peer',
    id: 'pubsub5',
    vrf: VRF,
    entry: {
      prefix: '10.1.1.3/32',
      nexthops: [{ address: '192.168.0.11', label: 25, encaps: ['udp'], virtualNetwork: 'default-domain:demo:vn1' }],
      version: 1,
      sequenceNumber: 0,
      localPreference: 200,
      med: 0,
    },
  });
  const [, push] = EXAMPLES[5];
  const update = decodeStanza(parseOne(push)) as Stanza;
  assert.equal(update.kind, 'route-update');
  if (update.kind !== 'route-update') return;
  assert.equal(update.vrf, VRF);
  assert.deepEqual(
    update.changes[0].entry!.nexthops.map((nexthop) => [nexthop.address, nexthop.label, nexthop.encaps]),
    [
      ['192.168.0.11', 25, ['udp']],
      ['192.168.0.12', 31, ['gre', 'udp']],
    ],
  );
});

test('stanzas split at every byte, with keepalives between them, parse the same', () => {
  const body = EXAMPLES.map(([, xml]) => xml);
  const stream = Buffer.concat([
    Buffer.from(STREAM_OPEN),
    ...body.flatMap((xml) => [Buffer.from(xml), KEEPALIVE, Buffer.from('\n')]),
    Buffer.from('</stream:stream>'),
  ]);
  const whole = parseStream(stream);
  const bytewise = parseStream(stream, 1);
  assert.equal(bytewise.stanzas.length, EXAMPLES.length);
  assert.ok(bytewise.closed);
  assert.deepEqual(bytewise.stanzas, whole.stanzas);
  assert.deepEqual(
    bytewise.stanzas.map((element) => encodeStanza(decodeStanza(element) as SentStanza)),
    body,
  );
});

test('malformed input is rejected with a reason', () => {
  const cases: Array<[string, string | Buffer, RegExp]> = [
    ['garbage instead of a stream', Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff, 0x00]), /./],
    ['not a stream root', "<?xml version='1.0'?><iq/>", /expected <stream:stream>/],
    ['text between stanzas', `${STREAM_OPEN}hello<iq/>`, /unexpected text/],
    ['mismatched end tag', `${STREAM_OPEN}<iq type="set"><pubsub></iq>`, /./],
  ];
  for (const [what, input, reason] of cases) {
    assert.throws(() => parseStream(Buffer.isBuffer(input) ? input : Buffer.from(input)), (error: unknown) => {
      assert.ok(error instanceof StanzaError, what);
      assert.match(error.message, reason, what);
      return true;
    });
  }
});

test('well-formed but wrong stanzas are rejected by the decoder; a wrong route item is dropped with the reason', () => {
  const [, publish] = EXAMPLES[2];
  const stanzas: Array<[string, RegExp]> = [
    ['<presence from="a" to="b"/>', /unexpected stanza <presence>/],
    [publish.replace('type="set"', 'type="get"'), /not expected/],
  ];
  for (const [xml, reason] of stanzas) {
    assert.throws(() => decodeStanza(parseOne(xml)), (error: unknown) => error instanceof StanzaError && reason.test(error.message), xml);
  }
  const items: Array<[string, RegExp]> = [
    [publish.replace('<label>25</label>', '<label>2000000</label>'), /larger than/],
    [publish.replace('<label>25</label>', '<label>x</label>'), /not a decimal/],
    [publish.replace('<address>192.168.0.11</address>', '<address>192.168.0</address>'), /not an IPv4 address/],
    [publish.replace('1/1/default-domain:demo:vn1:vn1/10.1.1.3/32', '1/1/x/10.1.1.4/32'), /under node of/],
    [publish.replace('<safi>1</safi>', '<safi>128</safi>'), /unicast/],
    [publish.replace('<med>0</med>', ''), /has no <med>/],
  ];
  for (const [xml, reason] of items) {
    const decoded = decodeStanza(parseOne(xml)) as Stanza;
    assert.ok(decoded.kind === 'refused-publish' && reason.test(decoded.item.reason), xml);
  }
  const push = decodeStanza(parseOne(`${PUSH}<items node="1/1/${VRF}"><item id="10.9.9.9/32">${REFERENCE_ENTRY}</item></items></event></message>`));
  assert.deepEqual(push, {
    kind: 'route-update',
    from: CONTROL_NODE_JID,
    to: 'node-a/bgp-peer',
    vrf: VRF,
    changes: [],
    refused: [{ prefix: '10.9.9.9/32', reason: 'item 10.9.9.9/32 holds the entry of 10.1.1.3/32' }],
  });
});

// ---------------------------------------------------------------- vectors of a real control node (test/vectors/xmpp)

const VECTORS = join(__dirname, '..', '..', 'test', 'vectors', 'xmpp');
const vector = (name: string): Buffer => readFileSync(join(VECTORS, name));
const CONTROL_OPEN = vector('control-open.xml');

/** Decodes every stanza of a control node's stream: its open, then `bytes`. */
function decodeFromControl(bytes: Buffer): Stanza[] {
  return parseStream(Buffer.concat([CONTROL_OPEN, bytes])).stanzas.map((element) => decodeStanza(element) as Stanza);
}

test("both opens are contrail's bytes; either side accepts the other's, in double or single quotes, with or without a declaration", () => {
  const agentOpen = vector('agent-open.xml').toString();
  assert.equal(encodeStreamOpen({ from: 'node-a', to: CONTROL_NODE_JID }), agentOpen);
  assert.equal(agentOpen, STREAM_OPEN);
  assert.equal(encodeStreamOpen({ from: CONTROL_NODE_JID, to: 'node-a', ...CONTROL_NODE_STREAM }), CONTROL_OPEN.toString());
  const answer = decodeStreamHeader(parseStream(CONTROL_OPEN).header!);
  assert.deepEqual(answer, { from: CONTROL_NODE_JID, to: 'node-a', id: '++123', xmlns: 'jabber:client' });
  assert.equal(encodeStreamOpen(answer), CONTROL_OPEN.toString());
  const variants = [
    `<?xml version="1.0"?>${agentOpen}`,
    `<?xml version='1.0'?>${agentOpen.replace(/"/g, "'")}`,
    agentOpen.replace('xmlns=""', 'xmlns="subcluster-1"'),
  ];
  for (const open of variants) assert.equal(decodeStreamHeader(parseStream(Buffer.from(open)).header!).from, 'node-a', open);
});

test('a real inet push decodes: ECMP next hops, a retract with " />", elements this channel does not use skipped', () => {
  const [update, ...rest] = decodeFromControl(vector('inet-push.xml'));
  assert.equal(rest.length, 0);
  assert.deepEqual(update, {
    kind: 'route-update',
    from: CONTROL_NODE_JID,
    to: 'node-a/bgp-peer',
    vrf: VRF,
    changes: [
      {
        prefix: '10.1.1.3/32',
        entry: {
          prefix: '10.1.1.3/32',
          nexthops: [
            { address: '192.168.0.11', label: 25, encaps: ['gre', 'udp'], virtualNetwork: 'default-domain:demo:vn1' },
            { address: '192.168.0.12', label: 31, encaps: ['udp'], virtualNetwork: 'default-domain:demo:vn1' },
          ],
          version: 1,
          sequenceNumber: 0,
          localPreference: 200,
          med: 0,
        },
      },
      { prefix: '10.1.1.4/32', entry: null },
    ],
  });
});

test("an older control node's push: a declaration before <message>, next hops without <virtual-network>", () => {
  const [update] = decodeFromControl(vector('inet-push-2015.xml'));
  assert.equal(update.kind, 'route-update');
  if (update.kind !== 'route-update') return;
  // The entry's <virtual-network> stands in for the next hop's; without either it is ''.
  assert.deepEqual(
    update.changes.map((change) => change.entry!.nexthops.map((nexthop) => [nexthop.address, nexthop.label, nexthop.virtualNetwork])),
    [[['192.168.0.11', 26, 'default-domain:demo:vn1']], [['192.168.0.12', 27, '']]],
  );
  // A next hop without a VN is written without <virtual-network>, as it came.
  const bare = { ...update.changes[1].entry!.nexthops[0] };
  assert.ok(!encodeStanza({ ...update, changes: [{ prefix: '10.1.1.6/32', entry: { ...update.changes[1].entry!, nexthops: [bare] } }] }).includes('virtual-network'));
});

test('pushes of families this channel does not carry decode to ignored-items with their family, instance and item count', () => {
  const cases: Array<[string, string, number]> = [
    ['evpn-push.xml', '25/242', 2],
    ['mcast-push.xml', '1/241', 1],
    ['inet-mpls-push.xml', '1/5', 2],
  ];
  for (const [file, family, items] of cases) {
    assert.deepEqual(decodeFromControl(vector(file)), [{ kind: 'ignored-items', from: CONTROL_NODE_JID, to: 'node-a/bgp-peer', family, instance: VRF, items }], file);
  }
  const publish = EXAMPLES[2][1].replace(`node="1/1/${VRF}/10.1.1.3/32"`, `node="25/242/${VRF}/aa:00:00:01:02:03,10.1.1.3/32"`);
  assert.deepEqual(decodeStanza(parseOne(publish)), {
    kind: 'ignored-items',
    from: 'node-a',
    to: 'network-control@contrailsystems.com/bgp-peer',
    family: '25/242',
    instance: VRF,
    items: 1,
  });
});

test('End-of-RIB in the builder layout, and an IF-MAP IQ with a declaration, no id and <config> without namespace', () => {
  assert.deepEqual(decodeFromControl(vector('end-of-rib.xml')), [{ kind: 'end-of-rib', from: CONTROL_NODE_JID, to: 'node-a/bgp-peer' }]);
  assert.deepEqual(decodeFromControl(vector('ifmap-config.xml')), [
    { kind: 'config-update', from: CONTROL_NODE_JID, to: 'node-a/config', changes: [{ op: 'update', nodes: [], links: [] }] },
  ]);
  // Each IF-MAP IQ has its declaration: the second one in a stream is accepted as the first.
  assert.equal(decodeFromControl(Buffer.concat([vector('ifmap-config.xml'), vector('ifmap-config.xml')])).length, 2);
  const withoutId = EXAMPLES[0][1].replace(' id="subscribe3"', '');
  const subscribe = decodeStanza(parseOne(withoutId)) as SentStanza;
  assert.equal(subscribe.kind, 'subscribe');
  assert.equal(encodeStanza(subscribe), withoutId);
});

test("contrail-control's bad inet items are dropped with the reason and the rest of the stanza kept, as its ProcessItem drops them", () => {
  // Each file is an agent's <item>; contrail-control's ProcessItem returns false for each (bgp_xmpp_parse_test.cc
  // InetItemError1..6) and ReceiveUpdate goes on with the next item, the session kept (tungstenfabric/tf-controller
  // 6a674397821187fedfffd9586942b906d3479dbc, src/bgp/bgp_xmpp_channel.cc). Pushed here as a control node's, next to a
  // good item; published as an agent's, alone.
  const reasons: Array<[string, RegExp]> = [
    ['bad_inet_item_1.xml', /<version> is not a decimal number/],
    ['bad_inet_item_2.xml', /address family is not IPv4/],
    ['bad_inet_item_3.xml', /nlri address is not an IPv4 prefix/],
    ['bad_inet_item_4.xml', /next-hop address is not an IPv4 address/],
    ['bad_inet_item_5.xml', /next-hop address is 0\.0\.0\.0/],
    ['bad_inet_item_6.xml', /has no <next-hop>/],
  ];
  const good = `<item id="10.1.1.3/32">${REFERENCE_ENTRY}</item>`;
  for (const [file, reason] of reasons) {
    const item = vector(file).toString();
    const push = `${PUSH}<items node="1/1/${VRF}">${item.replace('<item>', '<item id="10.1.1.1/32">')}${good}</items></event></message>`;
    const update = decodeStanza(parseOne(push)) as RouteUpdateStanza;
    assert.equal(update.kind, 'route-update', file);
    assert.deepEqual(update.changes.map((change) => change.prefix), ['10.1.1.3/32'], file);
    assert.equal(update.refused?.length, 1, file);
    assert.equal(update.refused![0].prefix, '10.1.1.1/32', file);
    assert.match(update.refused![0].reason, reason, file);

    const publish = `<iq type="set" from="node-a" ${TO_PEER} id="pubsub5"><pubsub xmlns="http://jabber.org/protocol/pubsub">` +
      `<publish node="1/1/${VRF}/10.1.1.1/32">${item}</publish></pubsub></iq>`;
    const published = decodeStanza(parseOne(publish)) as Stanza;
    assert.equal(published.kind, 'refused-publish', file);
    if (published.kind !== 'refused-publish') continue;
    assert.equal(published.vrf, VRF);
    assert.equal(published.item.prefix, '10.1.1.1/32');
    // None of the files has a <med>: item 6 (whose empty <next-hops> a publish may have) is refused for that.
    assert.match(published.item.reason, file === 'bad_inet_item_6.xml' ? /has no <med>/ : reason, file);
  }
  // A bad <items> child, unlike a bad item, is not a route item: the stanza is refused.
  assert.throws(() => decodeStanza(parseOne(`${PUSH}<items node="1/1/${VRF}"><junk/></items></event></message>`)), StanzaError);
});

test("an agent's inet6 publish: node 2/1/<instance>/<address>/128, nlri af 2, an IPv4 next hop (af 1); our encoder writes the vector's bytes", () => {
  // tungstenfabric/tf-controller 6a674397821187fedfffd9586942b906d3479dbc, src/vnsw/agent/controller/controller_peer.cc
  // ControllerSendV4V6UnicastRouteCommon (see test/vectors/xmpp/README.md, inet6-publish.xml).
  const bytes = vector('inet6-publish.xml').toString();
  const address = { from: 'node-a', to: `${CONTROL_NODE_JID}/bgp-peer` };
  const entry = {
    prefix: 'fd00:1:1::3/128',
    nexthops: [{ address: '192.168.0.11', label: 25, encaps: ['gre', 'udp'], virtualNetwork: 'default-domain:demo:vn1' }],
    version: 1,
    sequenceNumber: 0,
    localPreference: 200,
    med: 0,
  };
  const publish: SentStanza = { kind: 'publish', ...address, id: 'pubsub7', vrf: VRF, entry };
  const associate: SentStanza = { kind: 'associate', ...address, id: 'collection7', vrf: VRF, prefix: entry.prefix };
  assert.equal(encodeStanza(publish) + encodeStanza(associate), bytes);
  const decoded = parseStream(Buffer.from(STREAM_OPEN + bytes)).stanzas.map((element) => decodeStanza(element));
  assert.deepEqual(decoded, [publish, associate]);
  // An inet entry under an inet6 node is refused, the session kept; an IPv6 prefix in an inet node is no route node.
  const publishXml = bytes.slice(0, bytes.indexOf('</iq>') + 5);
  assert.equal((decodeStanza(parseOne(publishXml.replace('<af>2</af>', '<af>1</af>'))) as Stanza).kind, 'refused-publish');
  assert.throws(() => decodeStanza(parseOne(publishXml.replace('node="2/1/', 'node="1/1/'))), StanzaError);
});

test("contrail-control's inet6 push decodes to an inet6 route update (ECMP, a retract) and re-encodes under 2/1", () => {
  const [update, ...rest] = decodeFromControl(vector('inet6-push.xml'));
  assert.equal(rest.length, 0);
  const expected: RouteUpdateStanza = {
    kind: 'route-update',
    from: CONTROL_NODE_JID,
    to: 'node-a/bgp-peer',
    vrf: VRF,
    family: 'inet6',
    changes: [
      {
        prefix: 'fd00:1:1::3/128',
        entry: {
          prefix: 'fd00:1:1::3/128',
          nexthops: [
            { address: '192.168.0.11', label: 25, encaps: ['gre', 'udp'], virtualNetwork: 'default-domain:demo:vn1' },
            { address: '192.168.0.12', label: 31, encaps: ['udp'], virtualNetwork: 'default-domain:demo:vn1' },
          ],
          version: 1,
          sequenceNumber: 0,
          localPreference: 200,
          med: 0,
        },
      },
      { prefix: 'fd00:1:1::4/128', entry: null },
    ],
  };
  assert.deepEqual(update, expected);
  const encoded = encodeStanza(expected);
  assert.match(encoded, /<items node="2\/1\/default-domain:demo:vn1:vn1"><item id="fd00:1:1::3\/128"><entry><nlri><af>2<\/af>/);
  assert.deepEqual(decodeStanza(parseOne(encoded)), { ...expected, from: CONTROL_NODE_JID });
});

test("contrail-control's bad inet6 items are dropped with the reason, the rest of the push kept", () => {
  // src/bgp/testdata/bad_inet6_item_1..6.xml (bgp_xmpp_parse_test.cc Inet6ItemError1..6 expect ProcessInet6Item to refuse each).
  const reasons: Array<[string, RegExp]> = [
    ['bad_inet6_item_1.xml', /<version> is not a decimal number/],
    ['bad_inet6_item_2.xml', /address family is not IPv4 \(af 1\) nor IPv6/],
    ['bad_inet6_item_3.xml', /nlri address is not an IPv6 prefix/],
    ['bad_inet6_item_4.xml', /next-hop address is not an IPv4 address/],
    ['bad_inet6_item_5.xml', /next-hop address is 0\.0\.0\.0/],
    ['bad_inet6_item_6.xml', /has no <next-hop>/],
  ];
  const good = `<item id="fd00::3/128">${REFERENCE_ENTRY.replace('<af>1</af><safi>', '<af>2</af><safi>').replace('10.1.1.3/32', 'fd00::3/128')}</item>`;
  for (const [file, reason] of reasons) {
    const item = vector(file).toString().replace('<item>', '<item id="abcd::1/128">');
    const update = decodeStanza(parseOne(`${PUSH}<items node="2/1/${VRF}">${item}${good}</items></event></message>`)) as RouteUpdateStanza;
    assert.equal(update.kind, 'route-update', file);
    assert.deepEqual(update.changes.map((change) => change.prefix), ['fd00::3/128'], file);
    assert.equal(update.refused?.length, 1, file);
    assert.match(update.refused![0].reason, reason, file);
  }
});
