import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { XmlElement, XmppStreamParser } from '../src/control/xmpp/stream-parser';
import { StanzaError } from '../src/control/xmpp/stanza';

/** contrail-control's answer to the open (test/vectors/xmpp/README.md). */
const CONTROL_OPEN = readFileSync(join(__dirname, '..', '..', 'test', 'vectors', 'xmpp', 'control-open.xml'), 'utf8');
/** An IF-MAP message as src/ifmap/ifmap_encoder.cc writes it, with pugixml's `<?xml version="1.0"?>` (ifmap-config.xml). */
const IFMAP_CONFIG = readFileSync(join(__dirname, '..', '..', 'test', 'vectors', 'xmpp', 'ifmap-config.xml'), 'utf8');
const IQ = '<iq type="set" from="network-control@contrailsystems.com" to="node-a/config"><config><update /></config></iq>';

function stanzasOf(stream: string, chunkSize = stream.length): XmlElement[] {
  const stanzas: XmlElement[] = [];
  const parser = new XmppStreamParser({ streamOpen: () => undefined, stanza: (element) => stanzas.push(element), streamClose: () => undefined });
  const bytes = Buffer.from(stream);
  for (let offset = 0; offset < bytes.length; offset += chunkSize) parser.write(bytes.subarray(offset, offset + chunkSize));
  return stanzas;
}

test('declarations before every stanza are accepted: repeated, in double or single quotes, with encoding and standalone', () => {
  // saxes refuses a second declaration's `version` with "expected one of encoding, standalone" (the pairs the first
  // left expected); each variant follows others so that check is exercised.
  const declarations = [
    '<?xml version="1.0"?>',
    "<?xml version='1.0'?>",
    '<?xml version="1.0" encoding="UTF-8"?>',
    "<?xml version='1.0' encoding='utf-8' standalone='yes'?>",
    '<?xml version="1.0"?>',
    '<?xml version="1.0" ?>\n',
  ];
  const stream = `<?xml version="1.0"?>${CONTROL_OPEN}` + IFMAP_CONFIG + IFMAP_CONFIG + declarations.map((declaration) => declaration + IQ).join('');
  for (const chunkSize of [stream.length, 7, 1]) {
    const stanzas = stanzasOf(stream, chunkSize);
    assert.equal(stanzas.length, 2 + declarations.length, `chunks of ${chunkSize}`);
    for (const stanza of stanzas) assert.equal(stanza.children[0].name, 'config');
  }
});

test('a declaration inside a stanza is refused, also after declarations between stanzas', () => {
  for (const prefix of ['', IFMAP_CONFIG, '<?xml version="1.0"?>']) {
    const inside = `${CONTROL_OPEN}${prefix}<iq type="set"><?xml version="1.0"?><config/></iq>`;
    assert.throws(() => stanzasOf(inside), (error: unknown) => error instanceof StanzaError && /XML declaration must be at the start/.test(error.message), prefix);
  }
});

test('a malformed declaration between stanzas is still refused', () => {
  const cases: Array<[string, RegExp]> = [
    ['<?xml version="2.0"?>', /version number must match/],
    ['<?xml version="1.0" encoding="?"?>', /XML declaration is incomplete|encoding value must match/],
    ['<?xml version=1.0?>', /value must be quoted/],
  ];
  for (const [declaration, reason] of cases) {
    assert.throws(() => stanzasOf(CONTROL_OPEN + IFMAP_CONFIG + declaration + IQ), reason, declaration);
  }
});
