/**
 * A grammar-directed decoder of the one stanza that is most of the control
 * channel's bytes: the control node's inet route push
 *
 *   <message from=".." to=".."><event xmlns="http://jabber.org/protocol/pubsub"><items node="1/1/<vrf>">
 *   <item id="<prefix>"><entry>..</entry></item>..<retract id="<prefix>"/>..</items></event></message>
 *
 * read straight from the UTF-8 bytes into route columns, with no element
 * tree. It accepts what saxes and decodeStanza accept for that stanza and
 * would decode the same way: whitespace between elements (contrail's
 * tab-indented layout, tungstenfabric/tf-controller
 * 6a674397821187fedfffd9586942b906d3479dbc src/bgp/xmpp_message_builder.cc),
 * children in any order, the entry-level <virtual-network> of pre-2016
 * control nodes, the predefined entities and character references in names,
 * and elements this channel does not use (<mac />, <vni>, <tag-list>,
 * <mobility seqno=..>, ...) skipped after checking they are well formed.
 * Anything else (non-ASCII bytes, other quoting, comments, CDATA, a value
 * decodeStanza would refuse or trim, deeper nesting than the stream parser
 * allows) makes it give the stanza up, and the caller decodes it on the
 * saxes path, which then has the final word: correctness never rests on
 * this file's refusals.
 *
 * A push of 500 routes spans several received chunks: scanning resumes at
 * the first item not complete yet, so no byte is read twice but those of an
 * item cut by a chunk boundary, and bytes outside the grammar are noticed
 * (and handed to saxes) as soon as they arrive, as saxes would notice them.
 */
import { MAX_DEPTH } from './stream-parser';
import { PUBSUB_NS, RefusedItem } from './stanza';

/**
 * A route push as flat columns: the form it crosses threads in, since
 * structured cloning a hundred thousand small objects costs both threads
 * more than decoding them did.
 */
export interface PackedRouteUpdate {
  from: string;
  to: string;
  vrf: string;
  /** Set for an inet6 push, which only the saxes path decodes (the scanner reads "1/1/" pushes). */
  family?: 'inet6';
  prefixes: string[];
  /** Per change: its number of next hops, -1 for a retract. */
  nexthopCounts: Int32Array;
  /** Per change: version, sequence number, local preference, med (zeros for a retract). */
  attributes: Uint32Array;
  /** The next hops' addresses, VNs and encapsulations, each once: a dump repeats a few of them. */
  strings: string[];
  /** Per next hop; addresses and virtualNetworks index strings. */
  addresses: Int32Array;
  labels: Int32Array;
  virtualNetworks: Int32Array;
  encapCounts: Int32Array;
  /** All next hops' encapsulations, in order, as indexes into strings. */
  encaps: Int32Array;
  /** Items decodeStanza dropped for what they hold (the scanner gives such a push up to it). */
  refused?: RefusedItem[];
}

/** Builds a PackedRouteUpdate's string table. */
export class StringTable {
  readonly strings: string[] = [];
  private readonly indexes = new Map<string, number>();

  index(text: string): number {
    let index = this.indexes.get(text);
    if (index === undefined) {
      index = this.strings.length;
      this.strings.push(text);
      this.indexes.set(text, index);
    }
    return index;
  }
}

const MAX_LABEL = 0xfffff;
/** More attributes on one tag than this and saxes decides. */
const MAX_ATTRIBUTES = 16;
const MAX_U32 = 0xffffffff;

const LT = 0x3c;
const GT = 0x3e;
const SLASH = 0x2f;
const QUOTE = 0x22;
const AMP = 0x26;
const EQUALS = 0x3d;
const SEMICOLON = 0x3b;
const HASH = 0x23;
const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;

/** Thrown (one shared instance, no stack) when the bytes leave the grammar; the caller falls back to saxes. */
const UNRECOGNISED = Object.freeze({ unrecognised: true });
/** Thrown when the bytes received so far end inside what is being read. */
const INCOMPLETE = Object.freeze({ incomplete: true });

/** What scan() found: the push, or that more bytes are needed, or that saxes must decode the stanza. */
export type ScanResult = PackedRouteUpdate | 'incomplete' | 'unrecognised';

function bytes(text: string): Uint8Array {
  return Uint8Array.from(Buffer.from(text, 'latin1'));
}

const MESSAGE = bytes('message');
const EVENT = bytes('event');
const ITEMS = bytes('items');
const ITEM = bytes('item');
const RETRACT = bytes('retract');
const ENTRY = bytes('entry');
const NLRI = bytes('nlri');
const AF = bytes('af');
const SAFI = bytes('safi');
const ADDRESS = bytes('address');
const NEXT_HOPS = bytes('next-hops');
const NEXT_HOP = bytes('next-hop');
const LABEL = bytes('label');
const ENCAP_LIST = bytes('tunnel-encapsulation-list');
const ENCAP = bytes('tunnel-encapsulation');
const VIRTUAL_NETWORK = bytes('virtual-network');
const VERSION = bytes('version');
const SEQUENCE_NUMBER = bytes('sequence-number');
const LOCAL_PREFERENCE = bytes('local-preference');
const MED = bytes('med');
const FROM = bytes('from');
const TO = bytes('to');
const XMLNS = bytes('xmlns');
const NODE = bytes('node');
const ID = bytes('id');
/** Depth of <entry>'s children inside the stanza (message 1, event 2, items 3, item 4, entry 5). */
const ENTRY_CHILD_DEPTH = 6;

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
}

/** The ASCII subset of XML name characters this decoder takes; others give the stanza to saxes. */
function isNameStart(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || c === 0x5f || c === 0x3a;
}

function isNameChar(c: number): boolean {
  return isNameStart(c) || (c >= ZERO && c <= NINE) || c === 0x2d || c === DOT;
}

/** The XML 1.0 Char production. */
function isXmlChar(code: number): boolean {
  return (
    code === 0x9 || code === 0xa || code === 0xd || (code >= 0x20 && code <= 0xd7ff) || (code >= 0xe000 && code <= 0xfffd) || (code >= 0x10000 && code <= 0x10ffff)
  );
}

/** Reusable column builders: one stanza's routes. */
class Columns {
  prefixes: string[] = [];
  nexthopCounts: number[] = [];
  attributes: number[] = [];
  strings = new StringTable();
  addresses: number[] = [];
  labels: number[] = [];
  virtualNetworks: number[] = [];
  encapCounts: number[] = [];
  encaps: number[] = [];

  /** Drops what a change cut short by the end of the bytes had added. */
  truncate(changes: number, nexthops: number, encaps: number): void {
    this.prefixes.length = changes;
    this.nexthopCounts.length = changes;
    this.attributes.length = 4 * changes;
    this.addresses.length = nexthops;
    this.labels.length = nexthops;
    this.virtualNetworks.length = nexthops;
    this.encapCounts.length = nexthops;
    this.encaps.length = encaps;
  }

  reset(): void {
    this.prefixes = [];
    this.nexthopCounts = [];
    this.attributes = [];
    this.strings = new StringTable();
    this.addresses = [];
    this.labels = [];
    this.virtualNetworks = [];
    this.encapCounts = [];
    this.encaps = [];
  }
}

export class RoutePushScanner {
  private buf: Buffer = Buffer.alloc(0);
  private pos = 0;
  private end = 0;
  private readonly columns = new Columns();
  /** The tag being read's attributes: [start, end) of each name and of its value, `attributeCount` pairs. */
  private readonly attributeNames = new Int32Array(2 * MAX_ATTRIBUTES);
  private readonly attributeValues = new Int32Array(2 * MAX_ATTRIBUTES);
  private attributeCount = 0;
  /** The last strings made from bytes, so a dump's repeated VN names and encapsulations are one string each. */
  private readonly recent: string[] = [];
  private recentNext = 0;

  /** Offset from the stanza's start of the first change not scanned yet; 0 before the `<items>` tag is read. */
  private resumeAt = 0;
  private from = '';
  private to = '';
  private vrf = '';
  /** Changes, next hops and encapsulations in the columns before the change being read. */
  private changesBefore = 0;
  private nexthopsBefore = 0;
  private encapsBefore = 0;
  /** Where the stanza scanned last ended. */
  stanzaEnd = 0;

  /** A new stanza: the next scan starts at its beginning. */
  begin(): void {
    this.resumeAt = 0;
    this.changesBefore = this.nexthopsBefore = this.encapsBefore = 0;
    this.columns.reset();
  }

  /**
   * Scans the `<message>` stanza at buf[start] with the bytes received so
   * far (up to `end`), from where the last scan of it stopped; on success
   * `stanzaEnd` is where it ends.
   */
  scan(buf: Buffer, start: number, end: number): ScanResult {
    this.buf = buf;
    this.end = end;
    const c = this.columns;
    try {
      if (this.resumeAt === 0) {
        this.pos = start;
        this.openTags();
        this.resumeAt = this.pos - start;
      }
      this.pos = start + this.resumeAt;
      return this.changes(start);
    } catch (error) {
      if (error === INCOMPLETE) {
        // Drop what the change cut short had added: it is read again from its start.
        c.truncate(this.changesBefore, this.nexthopsBefore, this.encapsBefore);
        return 'incomplete';
      }
      if (error === UNRECOGNISED) return 'unrecognised';
      throw error;
    }
  }

  // ------------------------------------------------------------ the stanza

  /** `<message from to><event xmlns><items node>`. */
  private openTags(): void {
    this.expectOpen(MESSAGE);
    this.attributes();
    const from = this.attribute(FROM);
    const to = this.attribute(TO);
    if (this.closesEmpty()) throw UNRECOGNISED;
    this.skipSpace();
    this.expectOpen(EVENT);
    this.attributes();
    if (this.attribute(XMLNS) !== PUBSUB_NS || this.closesEmpty()) throw UNRECOGNISED;
    this.skipSpace();
    this.expectOpen(ITEMS);
    this.attributes();
    const vrf = this.vrfOfNode(this.attribute(NODE));
    if (this.closesEmpty()) throw UNRECOGNISED;
    this.from = from;
    this.to = to;
    this.vrf = vrf;
  }

  /** The items and retracts from pos, each remembered once complete, then the end tags. */
  private changes(start: number): PackedRouteUpdate {
    this.skipSpace();
    const c = this.columns;
    while (this.peekOpen()) {
      this.change();
      this.resumeAt = this.pos - start;
      this.changesBefore = c.prefixes.length;
      this.nexthopsBefore = c.addresses.length;
      this.encapsBefore = c.encaps.length;
      this.skipSpace();
    }
    this.expectClose(ITEMS);
    this.skipSpace();
    this.expectClose(EVENT);
    this.skipSpace();
    this.expectClose(MESSAGE);
    this.stanzaEnd = this.pos;
    return {
      from: this.from,
      to: this.to,
      vrf: this.vrf,
      prefixes: c.prefixes,
      nexthopCounts: Int32Array.from(c.nexthopCounts),
      attributes: Uint32Array.from(c.attributes),
      strings: c.strings.strings,
      addresses: Int32Array.from(c.addresses),
      labels: Int32Array.from(c.labels),
      virtualNetworks: Int32Array.from(c.virtualNetworks),
      encapCounts: Int32Array.from(c.encapCounts),
      encaps: Int32Array.from(c.encaps),
    };
  }

  /** "1/1/<vrf>" with no further '/'; anything else (End-of-RIB, other families) is saxes's. */
  private vrfOfNode(node: string): string {
    if (!node.startsWith('1/1/') || node.length === 4 || node.indexOf('/', 4) >= 0) throw UNRECOGNISED;
    return node.slice(4);
  }

  /** One <item> or <retract>. */
  private change(): void {
    const nameStart = ++this.pos;
    const nameEnd = this.name();
    const isItem = this.rangeIs(nameStart, nameEnd, ITEM);
    if (!isItem && !this.rangeIs(nameStart, nameEnd, RETRACT)) throw UNRECOGNISED;
    this.attributes();
    const id = this.attributeIndex(ID);
    const values = this.attributeValues;
    const prefix = this.prefixValue(values[id], values[id + 1]);
    const c = this.columns;
    if (!isItem) {
      if (!this.closesEmpty()) {
        this.skipSpace();
        this.expectClose(RETRACT);
      }
      c.prefixes.push(prefix);
      c.nexthopCounts.push(-1);
      c.attributes.push(0, 0, 0, 0);
      return;
    }
    if (this.closesEmpty()) throw UNRECOGNISED;
    this.skipSpace();
    this.expectOpen(ENTRY);
    this.noAttributes();
    this.entry(prefix);
    this.skipSpace();
    this.expectClose(ITEM);
  }

  /** An <entry>'s children, in any order; decodeStanza takes each by name. */
  private entry(prefix: string): void {
    const c = this.columns;
    const firstNexthop = c.addresses.length;
    let nlriSeen = false;
    let nexthopsSeen = false;
    let entryVn: string | null = null;
    let version = -1;
    let sequenceNumber = -1;
    let localPreference = -1;
    let med = -1;
    /** Next hops without their own <virtual-network>: they take the entry's, which may come after them. */
    const withoutVn: number[] = [];
    for (this.skipSpace(); this.peekOpen(); this.skipSpace()) {
      const nameStart = ++this.pos;
      const nameEnd = this.name();
      const length = nameEnd - nameStart;
      if (length === NLRI.length && this.rangeIs(nameStart, nameEnd, NLRI)) {
        if (nlriSeen) throw UNRECOGNISED;
        nlriSeen = true;
        this.nlri(prefix);
      } else if (length === NEXT_HOPS.length && this.rangeIs(nameStart, nameEnd, NEXT_HOPS)) {
        if (nexthopsSeen) throw UNRECOGNISED;
        nexthopsSeen = true;
        this.nexthops(withoutVn);
      } else if (length === VERSION.length && this.rangeIs(nameStart, nameEnd, VERSION)) {
        if (version >= 0) throw UNRECOGNISED;
        version = this.leafNumber(VERSION, MAX_U32);
      } else if (length === SEQUENCE_NUMBER.length && this.rangeIs(nameStart, nameEnd, SEQUENCE_NUMBER)) {
        if (sequenceNumber >= 0) throw UNRECOGNISED;
        sequenceNumber = this.leafNumber(SEQUENCE_NUMBER, MAX_U32);
      } else if (length === LOCAL_PREFERENCE.length && this.rangeIs(nameStart, nameEnd, LOCAL_PREFERENCE)) {
        if (localPreference >= 0) throw UNRECOGNISED;
        localPreference = this.leafNumber(LOCAL_PREFERENCE, MAX_U32);
      } else if (length === MED.length && this.rangeIs(nameStart, nameEnd, MED)) {
        if (med >= 0) throw UNRECOGNISED;
        med = this.leafNumber(MED, MAX_U32);
      } else if (length === VIRTUAL_NETWORK.length && this.rangeIs(nameStart, nameEnd, VIRTUAL_NETWORK)) {
        if (entryVn !== null) throw UNRECOGNISED;
        entryVn = this.leafText(VIRTUAL_NETWORK);
      } else {
        this.skipElement(nameStart, nameEnd, ENTRY_CHILD_DEPTH);
      }
    }
    this.expectClose(ENTRY);
    const count = c.addresses.length - firstNexthop;
    if (!nlriSeen || count === 0 || version < 0 || sequenceNumber < 0 || localPreference < 0 || med < 0) throw UNRECOGNISED;
    for (const index of withoutVn) c.virtualNetworks[index] = c.strings.index(entryVn ?? '');
    c.prefixes.push(prefix);
    c.nexthopCounts.push(count);
    c.attributes.push(version, sequenceNumber, localPreference, med);
  }

  /** <nlri>: af 1, safi 1, and the item's own prefix. */
  private nlri(prefix: string): void {
    this.noAttributes();
    let af = false;
    let safi = false;
    let address = false;
    for (this.skipSpace(); this.peekOpen(); this.skipSpace()) {
      const nameStart = ++this.pos;
      const nameEnd = this.name();
      if (this.rangeIs(nameStart, nameEnd, AF)) {
        if (af || this.leafNumber(AF, MAX_U32) !== 1) throw UNRECOGNISED;
        af = true;
      } else if (this.rangeIs(nameStart, nameEnd, SAFI)) {
        if (safi || this.leafNumber(SAFI, MAX_U32) !== 1) throw UNRECOGNISED;
        safi = true;
      } else if (this.rangeIs(nameStart, nameEnd, ADDRESS)) {
        if (address) throw UNRECOGNISED;
        this.noAttributes();
        const valueStart = this.pos;
        const valueEnd = this.textEnd();
        if (!this.textIs(valueStart, valueEnd, prefix)) throw UNRECOGNISED;
        this.pos = valueEnd;
        this.expectClose(ADDRESS);
        address = true;
      } else {
        this.skipElement(nameStart, nameEnd, ENTRY_CHILD_DEPTH + 1);
      }
    }
    this.expectClose(NLRI);
    if (!af || !safi || !address) throw UNRECOGNISED;
  }

  private nexthops(withoutVn: number[]): void {
    this.noAttributes();
    for (this.skipSpace(); this.peekOpen(); this.skipSpace()) {
      this.pos++;
      this.expectName(NEXT_HOP);
      this.noAttributes();
      this.nexthop(withoutVn);
    }
    this.expectClose(NEXT_HOPS);
  }

  private nexthop(withoutVn: number[]): void {
    const c = this.columns;
    let af = false;
    let address: string | null = null;
    let label = -1;
    let encapCount = -1;
    let vn: string | null = null;
    for (this.skipSpace(); this.peekOpen(); this.skipSpace()) {
      const nameStart = ++this.pos;
      const nameEnd = this.name();
      if (this.rangeIs(nameStart, nameEnd, AF)) {
        if (af || this.leafNumber(AF, MAX_U32) !== 1) throw UNRECOGNISED;
        af = true;
      } else if (this.rangeIs(nameStart, nameEnd, ADDRESS)) {
        if (address !== null) throw UNRECOGNISED;
        this.noAttributes();
        const valueEnd = this.textEnd();
        address = this.addressValue(this.pos, valueEnd);
        this.pos = valueEnd;
        this.expectClose(ADDRESS);
      } else if (this.rangeIs(nameStart, nameEnd, LABEL)) {
        if (label >= 0) throw UNRECOGNISED;
        label = this.leafNumber(LABEL, MAX_LABEL);
      } else if (this.rangeIs(nameStart, nameEnd, ENCAP_LIST)) {
        if (encapCount >= 0) throw UNRECOGNISED;
        encapCount = this.encapsulations();
      } else if (this.rangeIs(nameStart, nameEnd, VIRTUAL_NETWORK)) {
        if (vn !== null) throw UNRECOGNISED;
        vn = this.leafText(VIRTUAL_NETWORK);
      } else {
        this.skipElement(nameStart, nameEnd, ENTRY_CHILD_DEPTH + 2);
      }
    }
    this.expectClose(NEXT_HOP);
    if (!af || address === null || label < 0 || encapCount < 0) throw UNRECOGNISED;
    if (vn === null) withoutVn.push(c.addresses.length);
    c.addresses.push(c.strings.index(address));
    c.labels.push(label);
    c.virtualNetworks.push(vn === null ? -1 : c.strings.index(vn)); // -1: the entry's, set once it is read
    c.encapCounts.push(encapCount);
  }

  /** <tunnel-encapsulation-list>: only <tunnel-encapsulation> children; returns how many. */
  private encapsulations(): number {
    this.noAttributes();
    let count = 0;
    for (this.skipSpace(); this.peekOpen(); this.skipSpace()) {
      this.pos++;
      this.expectName(ENCAP);
      this.columns.encaps.push(this.columns.strings.index(this.leafText(ENCAP)));
      count++;
    }
    this.expectClose(ENCAP_LIST);
    return count;
  }

  // ------------------------------------------------------------ values

  /** A leaf's decimal text (1-10 digits, leading zeros allowed as decodeStanza allows them), at most `max`. */
  private leafNumber(name: Uint8Array, max: number): number {
    this.noAttributes();
    const buf = this.buf;
    const start = this.pos;
    let value = 0;
    let p = start;
    for (; ; p++) {
      if (p >= this.end) throw INCOMPLETE;
      const digit = buf[p] - ZERO;
      if (digit < 0 || digit > 9) break;
      value = value * 10 + digit;
    }
    const digits = p - start;
    if (digits === 0 || digits > 10 || value > max) throw UNRECOGNISED;
    this.pos = p;
    this.expectClose(name);
    return value;
  }

  /** A leaf's text, as decodeStanza takes it (trimmed). */
  private leafText(name: Uint8Array): string {
    this.noAttributes();
    const start = this.pos;
    const end = this.textEnd();
    const value = this.stringValue(start, end).trim();
    this.pos = end;
    this.expectClose(name);
    return value;
  }

  /** "a.b.c.d/len" as decodeStanza's IPV4_PREFIX takes it, untrimmed; the text of those bytes. */
  private prefixValue(start: number, end: number): string {
    const slash = this.dottedQuad(start, end);
    if (slash >= end || this.buf[slash] !== SLASH) throw UNRECOGNISED;
    const length = this.decimalPart(slash + 1, end);
    if (length > 32) throw UNRECOGNISED;
    return this.latin1(start, end);
  }

  /** An IPv4 address as decodeStanza's IPV4 takes it, and not 0.0.0.0 (which it refuses). */
  private addressValue(start: number, end: number): string {
    if (this.dottedQuad(start, end) !== end) throw UNRECOGNISED;
    const text = this.interned(start, end);
    if (text === '0.0.0.0') throw UNRECOGNISED;
    return text;
  }

  /** Four dot-separated octets from `start`; returns where they end. */
  private dottedQuad(start: number, end: number): number {
    let p = start;
    for (let part = 0; part < 4; part++) {
      if (part > 0) {
        if (p >= end || this.buf[p] !== DOT) throw UNRECOGNISED;
        p++;
      }
      const partEnd = this.digitsEnd(p, end);
      if (this.decimalPart(p, partEnd) > 255) throw UNRECOGNISED;
      p = partEnd;
    }
    return p;
  }

  private digitsEnd(start: number, end: number): number {
    let p = start;
    while (p < end && this.buf[p] >= ZERO && this.buf[p] <= NINE) p++;
    return p;
  }

  /** 1-3 digits without a leading zero (the regexes' octet and length forms); the whole range must be digits. */
  private decimalPart(start: number, end: number): number {
    const length = end - start;
    if (length < 1 || length > 3 || (length > 1 && this.buf[start] === ZERO) || this.digitsEnd(start, end) !== end) throw UNRECOGNISED;
    let value = 0;
    for (let p = start; p < end; p++) value = value * 10 + this.buf[p] - ZERO;
    return value;
  }

  /**
   * Checks text or attribute bytes: printable ASCII, which saxes passes
   * unchanged, and well-formed references; true when there are none.
   */
  private checkText(start: number, end: number): boolean {
    const buf = this.buf;
    let plain = true;
    for (let p = start; p < end; p++) {
      const c = buf[p];
      if (c === AMP) plain = false;
      else if (c < 0x20 || c > 0x7e || c === LT || c === 0x5d) throw UNRECOGNISED; // ']' could start "]]>"
    }
    if (!plain) this.withEntities(start, end);
    return plain;
  }

  /** Checked text or attribute bytes [start, end) as a string, references decoded. */
  private stringValue(start: number, end: number): string {
    return this.checkText(start, end) ? this.interned(start, end) : this.withEntities(start, end);
  }

  private withEntities(start: number, end: number): string {
    const buf = this.buf;
    let text = '';
    let p = start;
    while (p < end) {
      const amp = buf.indexOf(AMP, p);
      if (amp < 0 || amp >= end) {
        text += this.latin1(p, end);
        break;
      }
      text += this.latin1(p, amp);
      const semicolon = buf.indexOf(SEMICOLON, amp);
      if (semicolon < 0 || semicolon >= end) throw UNRECOGNISED;
      text += this.entity(amp + 1, semicolon);
      p = semicolon + 1;
    }
    return text;
  }

  /** The entity or character reference between '&' and ';'. */
  private entity(start: number, end: number): string {
    const name = this.latin1(start, end);
    switch (name) {
      case 'amp':
        return '&';
      case 'lt':
        return '<';
      case 'gt':
        return '>';
      case 'quot':
        return '"';
      case 'apos':
        return "'";
    }
    if (this.buf[start] !== HASH) throw UNRECOGNISED;
    const code = /^#[0-9]{1,7}$/.test(name) ? Number(name.slice(1)) : /^#x[0-9a-fA-F]{1,6}$/.test(name) ? parseInt(name.slice(2), 16) : -1;
    // Control characters saxes would pass, but that decodeStanza's trimming or the attribute rules treat apart: saxes decides.
    if (code < 0x20 || !isXmlChar(code)) throw UNRECOGNISED;
    return String.fromCodePoint(code);
  }

  private latin1(start: number, end: number): string {
    return this.buf.toString('latin1', start, end);
  }

  /** The string of these ASCII bytes, reusing a recent one with the same bytes. */
  private interned(start: number, end: number): string {
    const buf = this.buf;
    const length = end - start;
    const recent = this.recent;
    for (let i = 0; i < recent.length; i++) {
      const candidate = recent[i];
      if (candidate.length !== length) continue;
      let same = true;
      for (let k = 0; k < length; k++) {
        if (candidate.charCodeAt(k) !== buf[start + k]) {
          same = false;
          break;
        }
      }
      if (same) return candidate;
    }
    const text = this.latin1(start, end);
    if (recent.length < 8) recent.push(text);
    else recent[this.recentNext++ & 7] = text;
    return text;
  }

  // ------------------------------------------------------------ markup

  /** The byte at p, which must have been received. */
  private byte(p: number): number {
    if (p >= this.end) throw INCOMPLETE;
    return this.buf[p];
  }

  private skipSpace(): void {
    const buf = this.buf;
    while (this.pos < this.end && isSpace(buf[this.pos])) this.pos++;
  }

  /** At a child's start tag (and not at an end tag). */
  private peekOpen(): boolean {
    return this.byte(this.pos) === LT && this.byte(this.pos + 1) !== SLASH;
  }

  /** Reads a name from pos; returns its end. */
  private name(): number {
    const start = this.pos;
    if (!isNameStart(this.byte(start))) throw UNRECOGNISED;
    let p = start + 1;
    while (isNameChar(this.byte(p))) p++;
    this.pos = p;
    return p;
  }

  private sameBytes(start: number, end: number, otherStart: number, otherEnd: number): boolean {
    if (end - start !== otherEnd - otherStart) return false;
    const buf = this.buf;
    for (let k = 0; k < end - start; k++) if (buf[start + k] !== buf[otherStart + k]) return false;
    return true;
  }

  /** Whether bytes [start, end) are the ASCII text `text` (a prefix already checked). */
  private textIs(start: number, end: number, text: string): boolean {
    if (end - start !== text.length) return false;
    const buf = this.buf;
    for (let k = 0; k < text.length; k++) if (buf[start + k] !== text.charCodeAt(k)) return false;
    return true;
  }

  private rangeIs(start: number, end: number, name: Uint8Array): boolean {
    if (end - start !== name.length) return false;
    const buf = this.buf;
    for (let k = 0; k < name.length; k++) if (buf[start + k] !== name[k]) return false;
    return true;
  }

  /** Where the attribute is in attributeValues; decodeStanza refuses a stanza without it. */
  private attributeIndex(name: Uint8Array): number {
    const names = this.attributeNames;
    for (let i = 0; i < 2 * this.attributeCount; i += 2) if (this.rangeIs(names[i], names[i + 1], name)) return i;
    throw UNRECOGNISED;
  }

  private attribute(name: Uint8Array): string {
    const index = this.attributeIndex(name);
    return this.stringValue(this.attributeValues[index], this.attributeValues[index + 1]);
  }

  /** The name at pos is `name`: its bytes, then no further name character (what name() would read, compared as it goes). */
  private expectName(name: Uint8Array): void {
    const buf = this.buf;
    const start = this.pos;
    const length = name.length;
    if (start + length < this.end) {
      for (let k = 0; k < length; k++) if (buf[start + k] !== name[k]) throw UNRECOGNISED;
    } else {
      for (let k = 0; k < length; k++) if (this.byte(start + k) !== name[k]) throw UNRECOGNISED;
    }
    if (isNameChar(this.byte(start + length))) throw UNRECOGNISED;
    this.pos = start + length;
  }

  /** `<name`, the attributes left to read. */
  private expectOpen(name: Uint8Array): void {
    if (this.byte(this.pos) !== LT) throw UNRECOGNISED;
    this.pos++;
    this.expectName(name);
  }

  /** `</name S? >`. */
  private expectClose(name: Uint8Array): void {
    if (this.byte(this.pos) !== LT || this.byte(this.pos + 1) !== SLASH) throw UNRECOGNISED;
    this.pos += 2;
    this.expectName(name);
    this.skipSpace();
    if (this.byte(this.pos) !== GT) throw UNRECOGNISED;
    this.pos++;
  }

  /** Reads a start tag's attributes, checked, up to its `>` or `/>` (left to closesEmpty). */
  private attributes(): void {
    const buf = this.buf;
    const names = this.attributeNames;
    const values = this.attributeValues;
    this.attributeCount = 0;
    for (;;) {
      const beforeSpace = this.pos;
      this.skipSpace();
      const c = this.byte(this.pos);
      if (c === GT || c === SLASH) return;
      if (this.pos === beforeSpace) throw UNRECOGNISED; // attributes are separated by whitespace
      const nameStart = this.pos;
      const nameEnd = this.name();
      const count = this.attributeCount;
      if (count === MAX_ATTRIBUTES) throw UNRECOGNISED;
      for (let i = 0; i < 2 * count; i += 2) if (this.sameBytes(names[i], names[i + 1], nameStart, nameEnd)) throw UNRECOGNISED;
      this.skipSpace();
      if (this.byte(this.pos) !== EQUALS) throw UNRECOGNISED;
      this.pos++;
      this.skipSpace();
      if (this.byte(this.pos) !== QUOTE) throw UNRECOGNISED;
      const valueStart = ++this.pos;
      const quote = buf.indexOf(QUOTE, valueStart);
      if (quote < 0) throw INCOMPLETE;
      this.checkText(valueStart, quote);
      names[2 * count] = nameStart;
      names[2 * count + 1] = nameEnd;
      values[2 * count] = valueStart;
      values[2 * count + 1] = quote;
      this.attributeCount = count + 1;
      this.pos = quote + 1;
    }
  }

  /** After the attributes: true for `/>`, false for `>`; both consumed. */
  private closesEmpty(): boolean {
    const c = this.byte(this.pos);
    if (c === GT) {
      this.pos++;
      return false;
    }
    if (c === SLASH && this.byte(this.pos + 1) === GT) {
      this.pos += 2;
      return true;
    }
    throw UNRECOGNISED;
  }

  /** A known element's start tag ends here: attributes are allowed (decodeStanza ignores them), content must follow. */
  private noAttributes(): void {
    this.attributes();
    if (this.closesEmpty()) throw UNRECOGNISED;
  }

  /** Where the text from pos ends: at the next '<', which must not start a child or anything but an end tag. */
  private textEnd(): number {
    const lt = this.buf.indexOf(LT, this.pos);
    if (lt < 0) throw INCOMPLETE;
    if (this.byte(lt + 1) !== SLASH) throw UNRECOGNISED;
    return lt;
  }

  /**
   * An element this channel does not use, its name already read: checked to
   * be well formed (attributes, text, nested elements, matching end tags),
   * within the stream parser's depth limit.
   */
  private skipElement(nameStart: number, nameEnd: number, depth: number): void {
    if (depth > MAX_DEPTH) throw UNRECOGNISED;
    this.attributes();
    if (this.closesEmpty()) return;
    const buf = this.buf;
    for (;;) {
      const lt = buf.indexOf(LT, this.pos);
      if (lt < 0) throw INCOMPLETE;
      this.checkText(this.pos, lt);
      this.pos = lt;
      if (this.byte(lt + 1) === SLASH) break;
      const childStart = ++this.pos;
      this.skipElement(childStart, this.name(), depth + 1);
    }
    this.pos += 2;
    const closeStart = this.pos;
    if (!this.sameBytes(nameStart, nameEnd, closeStart, this.name())) throw UNRECOGNISED;
    this.skipSpace();
    if (this.byte(this.pos) !== GT) throw UNRECOGNISED;
    this.pos++;
  }
}
