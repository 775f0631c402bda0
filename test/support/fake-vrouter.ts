/**
 * A vrouter as the control node's tests see it: the project's XmppSession
 * over a real TCP socket to a ControlNode, publishing, withdrawing and
 * keeping the routes pushed to it; and the next hops and pods those tests
 * hand it.
 */
import net from 'node:net';
import type { LocalPort } from '../../src/control/agent/agent-interface';
import { networkFqns } from '../../src/control/ifmap/names';
import type { ControlNode } from '../../src/control/node/control-node';
import { XmppSession } from '../../src/control/xmpp/session';
import { CONTROL_NODE_JID, RouteEntry, Stanza, WireNexthop } from '../../src/control/xmpp/stanza';
import { RecordingLogger } from './recording-logger';

const VRF = (vn: string) => networkFqns(vn).routingInstance;
const TO_PEER = `${CONTROL_NODE_JID}/bgp-peer`;

/** A vrouter's session keeping the routes pushed to it per instance, and the family of each push. */
export class FakeVrouter {
  readonly routes = new Map<string, Map<string, RouteEntry>>();
  /** Per prefix, the family of the push that last carried it ('inet' when the push had none). */
  readonly families = new Map<string, string>();
  closedReason: string | null = null;
  private readonly session: XmppSession;
  private nextId = 1;

  private constructor(readonly name: string, socket: net.Socket) {
    this.session = new XmppSession(socket, { holdTime: 90, logger: new RecordingLogger(), name }, {
      streamOpen: () => {},
      stanza: (stanza: Stanza) => {
        if (stanza.kind !== 'route-update') return;
        let table = this.routes.get(stanza.vrf);
        if (!table) this.routes.set(stanza.vrf, (table = new Map()));
        for (const { prefix, entry } of stanza.changes) {
          this.families.set(prefix, stanza.family ?? 'inet');
          if (entry === null) table.delete(prefix);
          else table.set(prefix, entry);
        }
      },
      closed: (reason) => (this.closedReason = reason),
    });
    this.session.openStream({ from: name, to: CONTROL_NODE_JID, xmlns: '' });
  }

  static connect(name: string, port: number): Promise<FakeVrouter> {
    return new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => resolve(new FakeVrouter(name, socket)));
    });
  }

  subscribe(vn: string): void {
    this.session.sendStanza({ kind: 'subscribe', from: this.name, to: TO_PEER, id: this.id(), vrf: VRF(vn), instanceId: 1 });
  }

  /** Publish + associate of `prefix` in a VN's instance with these next hops. */
  publish(vn: string, prefix: string, nexthops: WireNexthop[]): void {
    this.publishEntry(vn, prefix, nexthops);
    this.associate(vn, prefix);
  }

  associate(vn: string, prefix: string): void {
    this.session.sendStanza({ kind: 'associate', from: this.name, to: TO_PEER, id: this.id(), vrf: VRF(vn), prefix });
  }

  /** Publish without next hops + dissociate of `prefix`. */
  withdraw(vn: string, prefix: string): void {
    this.publishEntry(vn, prefix, []);
    this.session.sendStanza({ kind: 'dissociate', from: this.name, to: TO_PEER, id: this.id(), vrf: VRF(vn), prefix });
  }

  /** Raw XML on the stream, for what sendStanza cannot encode. */
  send(xml: string): void {
    this.session.send(xml);
  }

  route(vn: string, prefix: string): RouteEntry | undefined {
    return this.routes.get(VRF(vn))?.get(prefix);
  }

  close(): void {
    this.session.close('test over');
  }

  private publishEntry(vn: string, prefix: string, nexthops: WireNexthop[]): void {
    const entry: RouteEntry = { prefix, nexthops, version: 1, sequenceNumber: 0, localPreference: 200, med: 0 };
    this.session.sendStanza({ kind: 'publish', from: this.name, to: TO_PEER, id: this.id(), vrf: VRF(vn), entry });
  }

  private id(): string {
    return `pubsub${this.nextId++}`;
  }
}

/** Has the control node listen on a free port of 127.0.0.1 and connects one vrouter per name to it, in that order. */
export async function listenWithVrouters(control: ControlNode, ...names: string[]): Promise<{ port: number; vrouters: FakeVrouter[] }> {
  const { port } = await control.listen(0, '127.0.0.1');
  const vrouters: FakeVrouter[] = [];
  for (const name of names) vrouters.push(await FakeVrouter.connect(name, port));
  return { port, vrouters };
}

/** One MPLS over UDP next hop of a VN. */
export function nexthop(address: string, label: number, vn: string): WireNexthop {
  return { address, label, encaps: ['udp'], virtualNetwork: networkFqns(vn).vn };
}

/** A pod's port in namespace default, its MAC's last octet from the label. */
export function pod(id: string, label: number, labels: Record<string, string>, extra: Partial<LocalPort> = {}): LocalPort {
  const octet = (label & 0xff).toString(16).padStart(2, '0');
  return { id, name: id, namespace: 'default', labels, mac: `02:00:00:00:00:${octet}`, label, ...extra };
}
