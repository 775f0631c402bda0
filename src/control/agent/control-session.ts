/**
 * The control client's connection to one control node: connects (TCP, then
 * with TLS configured STARTTLS as the agent does it, see xmpp/starttls.ts),
 * opens the stream, reports when the session is established and when
 * it went down, and reconnects with exponential backoff (with jitter, so a
 * restarted control node is not hit by every vrouter at once) until stopped.
 */
import net, { Socket } from 'node:net';
import { Logger } from '../xmpp/logger';
import { XmppSession } from '../xmpp/session';
import { CONTROL_NODE_JID, SentStanza, Stanza, StreamHeader } from '../xmpp/stanza';
import { startTlsAsClient } from '../xmpp/starttls';

/** TLS by STARTTLS, as the agent's xmpp_auth_enable with xmpp_ca_cert, xmpp_server_cert and xmpp_server_key. */
export interface ControlServerTls {
  /** CA certificate(s) (PEM) the control node's certificate must be signed by; the system's when absent. */
  ca?: string | Buffer;
  /** This vrouter's certificate and key (PEM), for control nodes that require one. */
  cert?: string | Buffer;
  key?: string | Buffer;
  /** The name the control node's certificate must carry; the host by default. */
  serverName?: string;
}

export interface ControlServer {
  host: string;
  /** Default 5269. */
  port?: number;
  tls?: ControlServerTls;
}

export interface ConnectionOptions {
  nodeName: string;
  holdTime: number;
  /** Seconds before the first reconnect attempt, doubled per failure up to maxDelay. */
  reconnectDelay: { initial: number; max: number };
  logger: Logger;
}

export interface ConnectionHandlers {
  established(connection: ServerConnection): void;
  stanza(connection: ServerConnection, stanza: Stanza): void;
  down(connection: ServerConnection, reason: string): void;
}

export const CONTROL_PORT = 5269;

export class ServerConnection {
  readonly name: string;
  private session: XmppSession | null = null;
  private established = false;
  private stopped = false;
  private failures = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  /** The connection while STARTTLS is under way. */
  private negotiating: Socket | null = null;

  constructor(
    /** This connection's number among the client's control nodes. */
    readonly index: number,
    private readonly server: ControlServer,
    private readonly options: ConnectionOptions,
    private readonly handlers: ConnectionHandlers,
  ) {
    this.name = `control node ${server.host}:${server.port ?? CONTROL_PORT}`;
  }

  get isEstablished(): boolean {
    return this.established;
  }

  start(): void {
    const { host, port = CONTROL_PORT, tls: tlsOptions } = this.server;
    const socket = net.connect({ host, port });
    const failedBeforeSession = (error: Error) => this.retry(`cannot connect: ${error.message}`);
    socket.once('error', failedBeforeSession);
    socket.once('connect', () => {
      socket.off('error', failedBeforeSession);
      // Stopped while connecting: openSession drops the socket.
      if (!tlsOptions || this.stopped) return this.openSession(socket);
      // As the agent with xmpp_auth_enable: STARTTLS on this connection, then the session over TLS.
      this.negotiating = socket;
      const clientTls = { ca: tlsOptions.ca, cert: tlsOptions.cert, key: tlsOptions.key, servername: tlsOptions.serverName ?? host };
      startTlsAsClient(socket, this.streamHeader(), clientTls, this.options.holdTime * 1000).then(
        (secure) => {
          this.negotiating = null;
          this.openSession(secure);
        },
        (error: Error) => {
          this.negotiating = null;
          this.retry(`STARTTLS failed: ${error.message}`);
        },
      );
    });
  }

  send(stanza: SentStanza): void {
    if (this.established) this.session!.sendStanza(stanza);
  }

  /** Closes the session with a stream close and stops reconnecting. */
  stop(): void {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.session?.close('vrouter shutting down');
    this.negotiating?.destroy();
  }

  private openSession(socket: Socket): void {
    if (this.stopped) {
      socket.destroy();
      return;
    }
    const session = new XmppSession(
      socket,
      // A route dump is decoded on another core while this thread programs what is decoded.
      { holdTime: this.options.holdTime, logger: this.options.logger, name: this.name, decodeInWorker: true },
      {
        streamOpen: () => {
          this.established = true;
          this.failures = 0;
          this.options.logger.info(`${this.name}: session established`);
          this.handlers.established(this);
        },
        stanza: (stanza) => this.handlers.stanza(this, stanza),
        closed: (reason) => {
          this.session = null;
          const wasEstablished = this.established;
          this.established = false;
          if (wasEstablished) this.handlers.down(this, reason);
          this.retry(reason);
        },
      },
    );
    this.session = session;
    session.openStream(this.streamHeader());
  }

  private streamHeader(): StreamHeader {
    return { from: this.options.nodeName, to: CONTROL_NODE_JID };
  }

  private retry(reason: string): void {
    if (this.stopped) return;
    const { initial, max } = this.options.reconnectDelay;
    const delay = Math.min(max, initial * 2 ** this.failures) * (0.75 + Math.random() * 0.25);
    this.failures++;
    this.options.logger.warn(`${this.name}: ${reason}; reconnecting in ${delay.toFixed(2)} s`);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.start();
    }, delay * 1000);
  }
}
