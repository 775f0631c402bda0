/**
 * STARTTLS as OpenContrail does it when XMPP authentication is on
 * (`xmpp_auth_enable`): the session starts in plain TCP and is upgraded to
 * TLS on the same connection before any stanza. From
 * tungstenfabric/tf-controller 6a674397821187fedfffd9586942b906d3479dbc
 * src/xmpp/xmpp_state_machine.cc (test/vectors/xmpp/README.md has the steps):
 *
 *   agent         open
 *   control node  answering open, then the features with <required/>
 *   agent         <starttls/>
 *   control node  <proceed/>, then the TLS handshake
 *   over TLS      the agent opens again and the control node answers: the session proper
 *
 * This is the plain-text part, up to a connected TLSSocket; the caller runs
 * the XMPP session over that socket, starting with the second open. A peer
 * that does anything else (a stanza before TLS, garbage, `<failure/>`, a
 * stream error, silence past the timeout, a failed handshake or a refused
 * certificate) makes the promise reject with the reason, after the peer is
 * told (a stream error while the stream is still plain) and the connection
 * closed.
 */
import type { Socket } from 'node:net';
import tls, { TLSSocket } from 'node:tls';
import { STREAM_CLOSE, decodeStanza, decodeStreamHeader, encodeStreamError, encodeStreamOpen, isStreamError } from './codec';
import { StanzaError, StreamHeader } from './stanza';
import { XmlElement, XmppStreamParser } from './stream-parser';

const TLS_NS = 'urn:ietf:params:xml:ns:xmpp-tls';

/**
 * The wire forms (test/vectors/xmpp/starttls-*.xml): xmpp_str.h's strings
 * printed by xml_pugi.cc WriteDoc, i.e. pugixml 1.2 `save` with an empty
 * indent: a declaration line, one element per line, `" />"` for empty ones.
 */
const TLS_FEATURES =
  `<?xml version="1.0"?>\n<stream:features>\n<starttls xmlns="${TLS_NS}">\n<required />\n</starttls>\n</stream:features>\n`;
const STARTTLS = `<?xml version="1.0"?>\n<starttls xmlns="${TLS_NS}" />\n`;
const PROCEED = `<?xml version="1.0"?>\n<proceed xmlns="${TLS_NS}" />\n`;

/** How long a closing connection waits for its last bytes to go before it is dropped. */
const CLOSE_GRACE_MS = 1000;

/**
 * The agent's side: sends `header`, waits for the control node's open and
 * features, sends `<starttls/>`, and on `<proceed/>` runs the TLS handshake
 * as client with `options`. Resolves with the TLS socket, on which the
 * caller opens the stream again.
 */
export function startTlsAsClient(socket: Socket, header: StreamHeader, options: tls.ConnectionOptions, timeoutMs: number): Promise<TLSSocket> {
  return new PlainStream(socket, timeoutMs, (plain) => {
    socket.write(encodeStreamOpen(header));
    return {
      // The answering open carries nothing the agent acts on (OpenSent -> OpenConfirm).
      open: () => {},
      element: (element) => {
        if (element.name === 'stream:features') {
          const offered = element.children.some((child) => child.name === 'starttls' && child.attributes.xmlns === TLS_NS);
          if (!offered) return plain.fail('the control node offers no STARTTLS, which this vrouter requires', 'policy-violation');
          socket.write(STARTTLS);
          return;
        }
        if (element.name === 'proceed' && element.attributes.xmlns === TLS_NS) {
          plain.detach();
          const secure = tls.connect({ ...options, socket });
          return plain.awaitHandshake(
            new Promise((resolve, reject) => {
              secure.once('secureConnect', () => resolve(secure));
              secure.once('error', reject);
            }),
          );
        }
        if (element.name === 'failure' && element.attributes.xmlns === TLS_NS) return plain.fail('the control node refused STARTTLS (<failure/>)');
        return plain.fail(`expected STARTTLS negotiation, got <${element.name}>`, 'not-authorized');
      },
    };
  }).result;
}

/**
 * The control node's side: answers the vrouter's open with `answer(its
 * header)` and the features, waits for `<starttls/>`, sends `<proceed/>` and
 * runs the TLS handshake as server with `options` (a `tls.createServer`
 * option set: certificate, key, CA, requestCert...). Resolves with the TLS
 * socket, on which the vrouter opens its stream again.
 */
export function startTlsAsServer(
  socket: Socket,
  answer: (peer: StreamHeader) => StreamHeader,
  options: tls.TlsOptions,
  timeoutMs: number,
): Promise<TLSSocket> {
  return new PlainStream(socket, timeoutMs, (plain) => ({
    open: (peer) => {
      socket.write(encodeStreamOpen(answer(peer)));
      socket.write(TLS_FEATURES);
    },
    element: (element) => {
      if (element.name !== 'starttls' || element.attributes.xmlns !== TLS_NS) {
        return plain.fail(`<${element.name}> before STARTTLS, which this control node requires`, 'not-authorized');
      }
      plain.detach();
      socket.write(PROCEED);
      // A tls.Server that never listens does the server handshake and checks the client's certificate.
      const handshaker = tls.createServer(options);
      const secured = new Promise<TLSSocket>((resolve, reject) => {
        handshaker.once('secureConnection', resolve);
        handshaker.once('tlsClientError', (error, tlsSocket) => {
          // A certificate that fails the CA check ends the handshake as a hang-up; its reason is here.
          reject(new Error(tlsSocket.authorizationError ? `certificate refused: ${tlsSocket.authorizationError}` : error.message));
        });
      });
      handshaker.emit('connection', socket);
      plain.awaitHandshake(secured);
    },
  })).result;
}

interface PlainHandlers {
  open(header: StreamHeader): void;
  element(element: XmlElement): void;
}

/** The plain-text stream before TLS: a parser of its own (the TLS stream starts a new one), a deadline, one outcome. */
class PlainStream {
  readonly result: Promise<TLSSocket>;
  private readonly parser: XmppStreamParser;
  private readonly timer: NodeJS.Timeout;
  private resolve!: (socket: TLSSocket) => void;
  private reject!: (error: Error) => void;
  private settled = false;
  /** Set once the socket is handed to TLS: what the parser still sees is not ours. */
  private detached = false;
  private readonly onData = (chunk: Buffer) => this.receive(chunk);
  private readonly onError = (error: Error) => this.fail(`connection error: ${error.message}`, null);
  private readonly onClose = () => this.fail('connection closed by peer', null);

  constructor(
    private readonly socket: Socket,
    timeoutMs: number,
    start: (plain: PlainStream) => PlainHandlers,
  ) {
    this.result = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    this.timer = setTimeout(() => this.fail(`STARTTLS not completed within ${timeoutMs / 1000} s`, 'connection-timeout'), timeoutMs);
    socket.setNoDelay(true);
    socket.on('data', this.onData);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
    const handlers = start(this);
    // The parser reads its chunk to the end; once detached, the rest is not the plain stream's.
    this.parser = new XmppStreamParser({
      streamOpen: (element) => handlers.open(decodeStreamHeader(element)),
      stanza: (element) => {
        if (this.detached) return;
        if (element.name !== 'stream:error') return handlers.element(element);
        const error = decodeStanza(element);
        if (isStreamError(error)) this.fail(`peer sent stream error ${error.condition}: ${error.text}`);
      },
      streamClose: () => {
        if (!this.detached) this.fail('peer closed the stream before STARTTLS');
      },
    });
  }

  /** Stops reading plain text: what arrives from now on is TLS, read by the TLS socket (buffered bytes included). */
  detach(): void {
    this.detached = true;
    this.socket.pause();
    this.socket.off('data', this.onData);
    this.socket.off('close', this.onClose);
  }

  /** The outcome is the handshake's (unless the deadline passes first). */
  awaitHandshake(secured: Promise<TLSSocket>): void {
    secured.then(
      (secure) => {
        if (this.settled) {
          secure.destroy();
          return;
        }
        this.settle();
        this.resolve(secure);
      },
      (error: Error) => this.fail(`TLS handshake failed: ${error.message}`, null),
    );
  }

  /**
   * Gives up: tells the peer while the stream is plain (a stream error when
   * `condition` is given, then the stream close; nothing when null or after
   * the handshake began, which contrail also closes without a stream close)
   * and closes the connection.
   */
  fail(reason: string, condition: string | null | undefined = undefined): void {
    if (this.settled) return;
    this.settle();
    if (condition !== null && !this.detached && this.socket.writable) {
      this.socket.write((condition === undefined ? '' : encodeStreamError(condition, reason)) + STREAM_CLOSE);
    }
    this.socket.end();
    setTimeout(() => this.socket.destroy(), CLOSE_GRACE_MS).unref();
    this.reject(new Error(reason));
  }

  private settle(): void {
    this.settled = true;
    clearTimeout(this.timer);
    this.socket.off('data', this.onData);
    this.socket.off('close', this.onClose);
    // Errors of a connection given up (or handed to TLS) are the TLS socket's or nobody's concern.
    this.socket.off('error', this.onError);
    this.socket.on('error', () => {});
  }

  private receive(chunk: Buffer): void {
    try {
      this.parser.write(chunk);
    } catch (error) {
      if (this.detached) return;
      if (error instanceof StanzaError) this.fail(`malformed or unexpected data: ${error.message}`, 'bad-format');
      else this.fail(`internal error in STARTTLS: ${(error as Error).stack ?? String(error)}`, 'internal-server-error');
    }
  }
}
