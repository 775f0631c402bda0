/**
 * Incremental parser of one XMPP stream: the `<stream:stream>` root stays
 * open for the whole session and each child element is a stanza. Built on
 * saxes, a strict XML 1.0 parser, so bytes that are not well-formed XML
 * (garbage, mismatched tags, text outside the stream) are errors rather than
 * something guessed at. Between stanzas only whitespace and the keepalive
 * character U+0200 may appear.
 */
import { StringDecoder } from 'node:string_decoder';
import { SaxesParser, SaxesTagPlain } from 'saxes';
import { KEEPALIVE_CHAR, StanzaError } from './stanza';

export interface XmlElement {
  name: string;
  attributes: Record<string, string>;
  children: XmlElement[];
  text: string;
}

export interface StreamParserHandlers {
  streamOpen(element: XmlElement): void;
  stanza(element: XmlElement): void;
  streamClose(): void;
}

/** Limits on what one peer can make this side hold in memory. */
export const MAX_STANZA_BYTES = 16 * 1024 * 1024;
export const MAX_DEPTH = 16;
const STREAM_TAG = 'stream:stream';
const XML_DECLARATION_NOT_AT_START = 'an XML declaration must be at the start of the document.';
/**
 * saxes checks the order of a declaration's pairs against what the previous
 * declaration left expected (after `version`: `encoding, standalone`), so a
 * second declaration's `version` is refused with one of these (saxes 6.0.0,
 * sXMLDeclName).
 */
const XML_DECLARATION_PAIR_ORDER = /(expected one of [a-z, ]*|expected the name [a-z]+\.|did not expect any more name\/value pairs\.)$/;
const BETWEEN_STANZAS = new RegExp(`^[\\s${KEEPALIVE_CHAR}]*$`);

export class XmppStreamParser {
  private readonly decoder = new StringDecoder('utf8');
  private readonly sax = new SaxesParser<{ xmlns: false; position: false }>({ xmlns: false, position: false });
  /** Elements open inside the current stanza; empty between stanzas. */
  private readonly open: XmlElement[] = [];
  private streamOpened = false;
  private streamClosed = false;
  /** Bytes received since the last complete stanza (saxes buffers text and tags until they end). */
  private bytesInStanza = 0;
  private failure: string | null = null;
  /** Inside an XML declaration between stanzas, whose pair-order errors are saxes's leftovers. */
  private inDeclarationBetweenStanzas = false;

  constructor(private readonly handlers: StreamParserHandlers) {
    this.sax.on('opentag', (tag) => this.openTag(tag));
    this.sax.on('closetag', () => this.closeTag());
    this.sax.on('text', (text) => this.text(text));
    this.sax.on('cdata', (text) => this.text(text));
    this.sax.on('doctype', () => this.fail('a DOCTYPE is not allowed in an XMPP stream'));
    this.sax.on('xmldecl', () => (this.inDeclarationBetweenStanzas = false));
    this.sax.on('error', (error) => this.saxError(error.message));
  }

  /** Parses a chunk of the stream, calling the handlers; throws StanzaError at the first malformed byte. */
  write(chunk: Buffer): void {
    if (this.streamClosed) this.fail('data after the end of the stream');
    this.bytesInStanza += chunk.length;
    if (this.bytesInStanza > MAX_STANZA_BYTES) this.fail(`stanza larger than ${MAX_STANZA_BYTES} bytes`);
    if (this.failure === null) this.sax.write(this.decoder.write(chunk));
    if (this.failure !== null) throw new StanzaError(this.failure);
  }

  private openTag(tag: SaxesTagPlain): void {
    if (this.failure !== null) return;
    const element: XmlElement = { name: tag.name, attributes: tag.attributes, children: [], text: '' };
    if (!this.streamOpened) {
      if (tag.name !== STREAM_TAG) return this.fail(`expected <${STREAM_TAG}>, got <${tag.name}>`);
      this.streamOpened = true;
      this.handlers.streamOpen(element);
      return;
    }
    if (this.open.length >= MAX_DEPTH) return this.fail(`elements nested deeper than ${MAX_DEPTH}`);
    if (this.open.length > 0) this.open[this.open.length - 1].children.push(element);
    this.open.push(element);
  }

  private closeTag(): void {
    if (this.failure !== null) return;
    if (this.open.length === 0) {
      // saxes has checked it matches the root: the peer ended the stream.
      this.streamClosed = true;
      this.handlers.streamClose();
      return;
    }
    const element = this.open.pop()!;
    // saxes has checked the tag matches.
    if (this.open.length === 0) {
      this.bytesInStanza = 0;
      this.handlers.stanza(element);
    }
  }

  private text(text: string): void {
    if (this.failure !== null) return;
    if (this.open.length > 0) {
      this.open[this.open.length - 1].text += text;
    } else if (!BETWEEN_STANZAS.test(text)) {
      this.fail(`unexpected text between stanzas: ${JSON.stringify(text.slice(0, 40))}`);
    }
  }

  /**
   * contrail-control prefixes IF-MAP messages (and, before 2016, route pushes)
   * with `<?xml version="1.0"?>`: between stanzas that is allowed
   * (src/xmpp/xmpp_proto.cc frames a stanza from `<iq`/`<message`, skipping
   * what comes before it), and so are later ones (STARTTLS sends one per
   * element). Inside a stanza it is still refused.
   */
  private saxError(message: string): void {
    if (this.open.length === 0 && message.endsWith(XML_DECLARATION_NOT_AT_START)) {
      this.inDeclarationBetweenStanzas = true;
      return;
    }
    if (this.inDeclarationBetweenStanzas && XML_DECLARATION_PAIR_ORDER.test(message)) return;
    this.fail(message);
  }

  private fail(reason: string): void {
    if (this.failure === null) this.failure = reason;
  }
}
