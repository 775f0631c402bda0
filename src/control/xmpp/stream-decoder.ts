/**
 * Turns a session's received bytes into decoded events, either on the
 * session's own thread or in a worker thread. Parsing and decoding are most
 * of the cost of a big route dump (100,000 routes are ~50 MB of XML); in a
 * worker they run on another core while this thread programs the routes
 * already decoded. Either way `deliver` is called exactly once per written
 * chunk, in order, with what that chunk completed.
 */
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { StreamErrorInfo, decodeStanza, decodeStreamHeader, isStreamError } from './codec';
import { KEEPALIVE, RouteChange, RouteUpdateStanza, Stanza, StanzaError, StreamHeader, WireNexthop } from './stanza';
import { PackedRouteUpdate, RoutePushScanner, StringTable } from './route-push-scanner';
import { MAX_STANZA_BYTES, XmppStreamParser } from './stream-parser';

export type DecodedEvent =
  | { open: StreamHeader }
  | { stanza: Stanza }
  /** The peer ended its stream with a stream error. */
  | { streamError: StreamErrorInfo }
  /** The peer closed its stream. */
  | { close: true }
  /** What was received is not well formed or not a stanza of this channel. */
  | { malformed: string };

type TransferredEvent = DecodedEvent | { packedRoutes: PackedRouteUpdate };

function packRouteUpdate(stanza: RouteUpdateStanza): PackedRouteUpdate {
  const changes = stanza.changes;
  let nexthopTotal = 0;
  for (const change of changes) nexthopTotal += change.entry?.nexthops.length ?? 0;
  const strings = new StringTable();
  const encaps: number[] = [];
  const packed: PackedRouteUpdate = {
    from: stanza.from,
    to: stanza.to,
    vrf: stanza.vrf,
    prefixes: new Array<string>(changes.length),
    nexthopCounts: new Int32Array(changes.length),
    attributes: new Uint32Array(changes.length * 4),
    strings: strings.strings,
    addresses: new Int32Array(nexthopTotal),
    labels: new Int32Array(nexthopTotal),
    virtualNetworks: new Int32Array(nexthopTotal),
    encapCounts: new Int32Array(nexthopTotal),
    encaps: new Int32Array(0),
  };
  if (stanza.family) packed.family = stanza.family;
  if (stanza.refused) packed.refused = stanza.refused;
  let nexthopIndex = 0;
  changes.forEach(({ prefix, entry }, index) => {
    packed.prefixes[index] = prefix;
    if (entry === null) {
      packed.nexthopCounts[index] = -1;
      return;
    }
    packed.nexthopCounts[index] = entry.nexthops.length;
    packed.attributes.set([entry.version, entry.sequenceNumber, entry.localPreference, entry.med], index * 4);
    for (const nexthop of entry.nexthops) {
      packed.addresses[nexthopIndex] = strings.index(nexthop.address);
      packed.labels[nexthopIndex] = nexthop.label;
      packed.virtualNetworks[nexthopIndex] = strings.index(nexthop.virtualNetwork);
      packed.encapCounts[nexthopIndex] = nexthop.encaps.length;
      for (const encap of nexthop.encaps) encaps.push(strings.index(encap));
      nexthopIndex++;
    }
  });
  packed.encaps = Int32Array.from(encaps);
  return packed;
}

export function unpackRouteUpdate(packed: PackedRouteUpdate): RouteUpdateStanza {
  const { strings, attributes } = packed;
  const changes: RouteChange[] = new Array(packed.prefixes.length);
  let nexthopIndex = 0;
  let encapIndex = 0;
  /** One array per encapsulation for the next hops with only that one: a dump's next hops share them. */
  const singleEncaps: Array<string[] | undefined> = [];
  for (let index = 0; index < changes.length; index++) {
    const prefix = packed.prefixes[index];
    const count = packed.nexthopCounts[index];
    if (count < 0) {
      changes[index] = { prefix, entry: null };
      continue;
    }
    const nexthops: WireNexthop[] = new Array(count);
    for (let n = 0; n < count; n++, nexthopIndex++) {
      const encapCount = packed.encapCounts[nexthopIndex];
      let encaps: string[];
      if (encapCount === 1) {
        const only = packed.encaps[encapIndex++];
        encaps = singleEncaps[only] ??= [strings[only]];
      } else {
        encaps = new Array(encapCount);
        for (let e = 0; e < encapCount; e++) encaps[e] = strings[packed.encaps[encapIndex++]];
      }
      nexthops[n] = {
        address: strings[packed.addresses[nexthopIndex]],
        label: packed.labels[nexthopIndex],
        encaps,
        virtualNetwork: strings[packed.virtualNetworks[nexthopIndex]],
      };
    }
    changes[index] = {
      prefix,
      entry: {
        prefix,
        nexthops,
        version: attributes[index * 4],
        sequenceNumber: attributes[index * 4 + 1],
        localPreference: attributes[index * 4 + 2],
        med: attributes[index * 4 + 3],
      },
    };
  }
  const update: RouteUpdateStanza = { kind: 'route-update', from: packed.from, to: packed.to, vrf: packed.vrf, changes };
  if (packed.family) update.family = packed.family;
  if (packed.refused) update.refused = packed.refused;
  return update;
}

export interface StreamDecoder {
  write(chunk: Buffer): void;
  /** Stops decoding (the session is closed). */
  stop(): void;
}

const LT = 0x3c;
const GT = 0x3e;
const QUESTION = 0x3f;
/** parsedStanzaEnd: the stanza's end has not been received. */
const INCOMPLETE = -0.5;
/** The declaration contrail-control puts before IF-MAP messages and old route pushes (pugixml's default). */
const XML_DECLARATION = Buffer.from('<?xml version="1.0"?>');
const MESSAGE_END = Buffer.from('</message');
const IQ_END = Buffer.from('</iq');

/** Whether buf[start, end) is the name in an end tag's opening `</name`. */
function isName(buf: Buffer, start: number, end: number, endTagOpening: Buffer): boolean {
  return end - start === endTagOpening.length - 2 && buf.compare(endTagOpening, 2, endTagOpening.length, start, end) === 0;
}

/** The length of the longest end of `buf` that is a proper start of `tag`. */
function heldBack(buf: Buffer, tag: Buffer): number {
  for (let length = Math.min(tag.length - 1, buf.length); length > 0; length--) {
    if (buf.compare(tag, 0, length, buf.length - length) === 0) return length;
  }
  return 0;
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
}

function isNameByte(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x5f || c === 0x3a || c === 0x2d || c === 0x2e;
}

/**
 * Parses and decodes a stream, returning per chunk the events it completed.
 *
 * After the stream header the bytes are split here into stanzas. Route
 * pushes are decoded straight from the bytes (route-push-scanner.ts). Any
 * other stanza, and a push the scanner gives up, goes to the saxes parser,
 * all its bytes as they arrive but for a tail that could be the start of
 * its end tag `</name S? >`; the parser must complete exactly that one
 * stanza on that end tag's '>', the last byte of a write. If it completes it
 * elsewhere the split was not exact (a self-closed root, say) and the parser
 * reads the rest of the stream. Between stanzas whitespace, keepalives and
 * contrail's declaration are skipped; anything else there (the stream's
 * end, text, comments) also leaves the rest of the stream to the parser.
 */
export class ChunkDecoder {
  private events: TransferredEvent[] = [];
  private failed = false;
  /** header: the parser reads the stream header; stanzas: as above; parser: the parser reads everything. */
  private mode: 'header' | 'stanzas' | 'parser' = 'header';
  /** Received bytes not yet decoded, from `start` (the current stanza's first byte) to `length`; a chunk is copied in once. */
  private buffer: Buffer = Buffer.allocUnsafe(0);
  private start = 0;
  private length = 0;
  /** The stanza at `start`: none begun, being scanned, or being parsed. */
  private current: 'none' | 'scanning' | 'parsing' = 'none';
  /** Parsing: `</name` of the stanza's end tag, how many of its bytes the parser has, and from where to look for the end tag. */
  private endTag: Buffer = IQ_END;
  private fed = 0;
  private searchFrom = 0;
  private parsedBefore = 0;
  private streamOpened = false;
  private stanzasParsed = 0;
  private readonly scanner = new RoutePushScanner();
  private readonly parser = new XmppStreamParser({
    streamOpen: (element) => {
      this.streamOpened = true;
      this.events.push({ open: decodeStreamHeader(element) });
    },
    stanza: (element) => {
      this.stanzasParsed++;
      const decoded = decodeStanza(element);
      this.events.push(isStreamError(decoded) ? { streamError: decoded } : { stanza: decoded });
    },
    streamClose: () => this.events.push({ close: true }),
  });

  /** The events the chunk completed; route pushes the scanner decoded come as packed columns. */
  decode(chunk: Buffer): TransferredEvent[] {
    this.events = [];
    if (this.failed) return this.events;
    try {
      if (this.mode === 'parser') this.parser.write(chunk);
      else this.split(chunk);
    } catch (error) {
      if (!(error instanceof StanzaError)) throw error;
      this.failed = true;
      this.events.push({ malformed: error.message });
    }
    return this.events;
  }

  private split(chunk: Buffer): void {
    this.append(chunk);
    const buf = this.buffer.subarray(0, this.length);
    let p = this.mode === 'header' ? this.header(buf, this.start) : this.start;
    if (this.mode === 'stanzas') p = this.stanzas(buf, p);
    if (this.mode === 'parser') {
      if (p < buf.length) this.parser.write(buf.subarray(p));
      this.buffer = Buffer.allocUnsafe(0);
      return;
    }
    this.start = p;
  }

  private append(chunk: Buffer): void {
    if (this.start === this.length) this.start = this.length = 0;
    if (this.length + chunk.length > this.buffer.length) {
      const kept = this.length - this.start;
      const target = kept + chunk.length > this.buffer.length ? Buffer.allocUnsafe(Math.max(2 * this.buffer.length, kept + chunk.length)) : this.buffer;
      this.buffer.copy(target, 0, this.start, this.length);
      this.buffer = target;
      this.start = 0;
      this.length = kept;
    }
    chunk.copy(this.buffer, this.length);
    this.length += chunk.length;
  }

  /** Gives the parser the bytes up to each '>' until one of them completed the stream header; returns where it stopped. */
  private header(buf: Buffer, from: number): number {
    let p = from;
    while (!this.streamOpened) {
      const gt = buf.indexOf(GT, p);
      const end = gt < 0 ? buf.length : gt + 1;
      this.parser.write(buf.subarray(p, end));
      p = end;
      if (gt < 0) return p;
    }
    this.mode = 'stanzas';
    return p;
  }

  /** Decodes the stanzas from `from`; returns where the first incomplete one starts (in parser mode: what the parser must read). */
  private stanzas(buf: Buffer, from: number): number {
    let p = from;
    for (;;) {
      if (this.current === 'none') {
        p = this.skipBetweenStanzas(buf, p);
        if (p < 0) return -p - 1;
        if (p === buf.length) return p;
        if (buf[p] !== LT) return this.toParser(p);
        let nameEnd = p + 1;
        while (nameEnd < buf.length && isNameByte(buf[nameEnd])) nameEnd++;
        if (nameEnd === buf.length) return p;
        if (nameEnd === p + 1) return this.toParser(p);
        if (isName(buf, p + 1, nameEnd, MESSAGE_END)) {
          this.current = 'scanning';
          this.scanner.begin();
        } else {
          this.parse(isName(buf, p + 1, nameEnd, IQ_END) ? IQ_END : Buffer.concat([Buffer.from('</'), buf.subarray(p + 1, nameEnd)]));
        }
      }
      if (this.current === 'scanning') {
        const scanned = this.scanner.scan(buf, p, buf.length);
        if (scanned === 'incomplete') {
          if (buf.length - p <= MAX_STANZA_BYTES) return p;
          this.parse(MESSAGE_END); // the parser refuses it
        } else if (scanned === 'unrecognised' || this.scanner.stanzaEnd - p > MAX_STANZA_BYTES) {
          this.parse(MESSAGE_END);
        } else {
          this.events.push({ packedRoutes: scanned });
          p = this.scanner.stanzaEnd;
          this.current = 'none';
          continue;
        }
      }
      const parsed = this.parsedStanzaEnd(buf, p);
      if (parsed === INCOMPLETE) return p;
      if (parsed < 0) return this.toParser(-parsed - 1);
      p = parsed;
      this.current = 'none';
    }
  }

  /** The stanza at `start` goes to the parser; `endTag` is its `</name`. */
  private parse(endTag: Buffer): void {
    this.current = 'parsing';
    this.endTag = endTag;
    this.fed = 0;
    this.searchFrom = 0;
    this.parsedBefore = this.stanzasParsed;
  }

  /**
   * Gives the parser the stanza at p as far as received; returns where it
   * ends once the parser completed it there, INCOMPLETE, or -(where the
   * parser must go on reading)-1 when it completed a stanza anywhere else.
   */
  private parsedStanzaEnd(buf: Buffer, p: number): number {
    const endTag = this.endTag;
    for (;;) {
      const found = buf.indexOf(endTag, p + Math.max(this.fed, this.searchFrom));
      if (found < 0) {
        // All but a tail that may be the start of the end tag, so that the parser refuses what it would refuse.
        const safe = buf.length - heldBack(buf, endTag);
        if (!this.feed(buf, p, safe)) return -safe - 1;
        this.searchFrom = Math.max(this.fed, safe - p);
        return INCOMPLETE;
      }
      let q = found + endTag.length;
      while (q < buf.length && isSpace(buf[q])) q++;
      if (!this.feed(buf, p, found)) return -found - 1;
      if (q === buf.length) {
        this.searchFrom = found - p;
        return INCOMPLETE;
      }
      if (buf[q] !== GT) {
        this.searchFrom = found + 1 - p;
        continue;
      }
      this.parser.write(buf.subarray(found, q + 1));
      this.fed = q + 1 - p;
      if (this.stanzasParsed === this.parsedBefore + 1) return q + 1;
      // An element of the stanza's own name closed inside it: go on.
      this.searchFrom = this.fed;
    }
  }

  /** Writes the stanza's bytes up to `until` the parser does not have yet; false if that completed a stanza. */
  private feed(buf: Buffer, p: number, until: number): boolean {
    if (until > p + this.fed) {
      this.parser.write(buf.subarray(p + this.fed, until));
      this.fed = until - p;
    }
    return this.stanzasParsed === this.parsedBefore;
  }

  /**
   * Skips whitespace, keepalives and the declaration from `p`; returns where
   * they end, or -(where)-1 when the bytes there may be the start of one.
   */
  private skipBetweenStanzas(buf: Buffer, from: number): number {
    let p = from;
    while (p < buf.length) {
      const c = buf[p];
      if (isSpace(c)) p++;
      else if (c === KEEPALIVE[0]) {
        if (p + 1 === buf.length) return -p - 1;
        if (buf[p + 1] !== KEEPALIVE[1]) return p;
        p += 2;
      } else if (c === LT && p + 1 < buf.length && buf[p + 1] === QUESTION) {
        const available = Math.min(XML_DECLARATION.length, buf.length - p);
        if (buf.compare(XML_DECLARATION, 0, available, p, p + available) !== 0) return p;
        if (available < XML_DECLARATION.length) return -p - 1;
        p += XML_DECLARATION.length;
      } else {
        return p;
      }
    }
    return p;
  }

  /** From `p` on, the parser reads the stream. */
  private toParser(p: number): number {
    this.mode = 'parser';
    return p;
  }
}

export class InlineStreamDecoder implements StreamDecoder {
  private readonly decoder = new ChunkDecoder();

  constructor(private readonly deliver: (events: DecodedEvent[]) => void) {}

  write(chunk: Buffer): void {
    this.deliver(this.decoder.decode(chunk).map((event) => ('packedRoutes' in event ? { stanza: unpackRouteUpdate(event.packedRoutes) } : event)));
  }

  stop(): void {}
}

/** The worker thread's side: events of a chunk in the form they cross threads in. */
export function decodeForTransfer(decoder: ChunkDecoder, chunk: Buffer): TransferredEvent[] {
  return decoder
    .decode(chunk)
    .map((event) => ('stanza' in event && event.stanza.kind === 'route-update' ? { packedRoutes: packRouteUpdate(event.stanza) } : event));
}

export class WorkerStreamDecoder implements StreamDecoder {
  private readonly worker = new Worker(join(__dirname, 'decode-worker.js'));

  constructor(deliver: (events: DecodedEvent[]) => void) {
    this.worker.on('message', (events: TransferredEvent[]) =>
      deliver(events.map((event) => ('packedRoutes' in event ? { stanza: unpackRouteUpdate(event.packedRoutes) } : event))),
    );
    this.worker.on('error', (error) => deliver([{ malformed: `decoder failed: ${error.message}` }]));
    this.worker.unref();
  }

  write(chunk: Buffer): void {
    this.worker.postMessage(chunk);
  }

  stop(): void {
    void this.worker.terminate();
  }
}
