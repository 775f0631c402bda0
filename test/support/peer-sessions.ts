/**
 * A simulated vrouter for control-node tests: one real XMPP session over a
 * real socket (the project's XmppSession), which subscribes to routing
 * instances, publishes routes (publish + associate, as the agent does) and
 * keeps what the control node pushes through the project's LearnedRoutes
 * into a DataplaneAccess that records every call. Lighter than a
 * ControlClient (no ports, no worker decoder), so hundreds fit in one
 * process.
 */
import net from 'node:net';
import type { DataplaneAccess, RouteNexthop } from '../../src/control/agent/agent-interface';
import { LearnedRoutes } from '../../src/control/agent/learned-routes';
import { vrouterToControl } from '../../src/control/xmpp/codec';
import { silentLogger } from '../../src/control/xmpp/logger';
import { XmppSession } from '../../src/control/xmpp/session';
import { BGP_PEER_RESOURCE, CONTROL_NODE_JID, RouteEntry, SentStanza, Stanza } from '../../src/control/xmpp/stanza';

/** A DataplaneAccess that only records: the routes it holds, and how many calls it got. */
export class RecordingAccess implements DataplaneAccess {
  /** "vrf prefix" -> next hops as "address/label", sorted. */
  readonly routes = new Map<string, string>();
  calls = 0;

  setRoute(vrf: string, prefix: string, nexthops: RouteNexthop[]): void {
    this.calls++;
    this.routes.set(`${vrf} ${prefix}`, nexthops.map((nexthop) => `${nexthop.address}/${nexthop.label}`).sort().join(','));
  }

  deleteRoute(vrf: string, prefix: string): void {
    this.calls++;
    this.routes.delete(`${vrf} ${prefix}`);
  }

  configurePort(): void {
    this.calls++;
  }

  unconfigurePort(): void {
    this.calls++;
  }

  setLocalComposite(): void {
    this.calls++;
  }
}

export function routeEntry(prefix: string, address: string, label: number): RouteEntry {
  return {
    prefix,
    nexthops: [{ address, label, encaps: ['udp', 'gre'], virtualNetwork: 'web' }],
    version: 1,
    sequenceNumber: 0,
    localPreference: 200,
    med: 0,
  };
}

export class SimulatedVrouter {
  readonly access = new RecordingAccess();
  private readonly learned: LearnedRoutes;
  private session: XmppSession | null = null;
  private nextId = 1;
  private established = false;
  /** Set when the session ends, with its reason. */
  closedReason: string | null = null;
  private readonly waiters: Array<() => void> = [];

  constructor(readonly name: string) {
    // No underlay address of its own: it keeps the echo of its own routes too, so all vrouters converge to one table.
    this.learned = new LearnedRoutes(this.access, '0.0.0.0');
  }

  get isEstablished(): boolean {
    return this.established && this.closedReason === null;
  }

  /** Connects and opens the stream; resolves when the control node's open arrived. */
  connect(port: number, holdTime = 90): Promise<void> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port });
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        const session = new XmppSession(
          socket,
          { holdTime, logger: silentLogger, name: this.name },
          {
            streamOpen: () => {
              this.established = true;
              resolve();
            },
            stanza: (stanza) => this.receive(stanza),
            closed: (reason) => {
              this.closedReason = reason;
              if (!this.established) reject(new Error(`${this.name}: ${reason}`));
              this.wake();
            },
          },
        );
        this.session = session;
        session.openStream({ from: this.name, to: CONTROL_NODE_JID });
      });
    });
  }

  subscribe(vrf: string, instanceId = 1): void {
    this.send({ kind: 'subscribe', ...this.address(), id: `subscribe${this.nextId++}`, vrf, instanceId });
  }

  publish(vrf: string, entry: RouteEntry): void {
    this.send({ kind: 'publish', ...this.address(), id: `pubsub${this.nextId++}`, vrf, entry });
    this.send({ kind: 'associate', ...this.address(), id: `collection${this.nextId++}`, vrf, prefix: entry.prefix });
  }

  endOfRib(): void {
    this.send({ kind: 'end-of-rib', ...this.address() });
  }

  /** Ends the session with a stream close (its routes are withdrawn at once). */
  close(): void {
    this.session?.close('test done');
  }

  /** Drops the connection without a stream close, as a crashed vrouter (graceful restart keeps its routes). */
  drop(): void {
    this.session?.close('dropped', null);
  }

  /** Resolves once `check` holds, re-checked on every stanza; rejects after `timeoutMs`. */
  async until(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!check()) {
      if (this.closedReason !== null) throw new Error(`${this.name}: session closed (${this.closedReason}) while waiting for ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${this.name}: no ${what} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  private address() {
    return vrouterToControl(this.name, BGP_PEER_RESOURCE);
  }

  private send(stanza: SentStanza): void {
    if (!this.session || this.session.isClosed) throw new Error(`${this.name}: no session`);
    this.session.sendStanza(stanza);
  }

  private receive(stanza: Stanza): void {
    if (stanza.kind === 'route-update') {
      for (const { prefix, entry } of stanza.changes) {
        if (entry === null) this.learned.forget(0, stanza.vrf, prefix);
        else this.learned.learn(0, stanza.vrf, prefix, entry.nexthops.map((nexthop) => ({ address: nexthop.address, label: nexthop.label, encaps: ['udp'], vn: stanza.vrf })));
      }
    }
    this.wake();
  }

  private wake(): void {
    for (const waiter of this.waiters.splice(0)) waiter();
  }
}
