/**
 * A route source for bench:reconfig and bench:soak, run with node inside a
 * namespace of the cluster (it must reach the control node's XMPP port):
 *
 *   node dist/bench/route-churn.js <control host:port> <name> <vrf> <vn> <nexthop address> <label> <rate> <window>
 *
 * Speaks XMPP as a vrouter does (the control node must list <name> as a
 * route source: `vrouter-control --route-source`), subscribes to <vrf> and
 * then, every 10 ms, publishes rate/100 new /32 routes from 10.200.0.0/16
 * (to <nexthop address> with <label>, MPLS over UDP, in VN <vn>) and, once <window>
 * routes are in place, withdraws as many of the oldest: <rate> routes added
 * and <rate> removed per second. Prints `{"established":true}` once
 * subscribed.
 *
 * Probe routes come from stdin, one command a line: `add <prefix> <id>` or
 * `del <prefix> <id>`; each is answered on stdout with
 * `{"id":...,"op":"add","prefix":...,"at":<epoch ms once handed to the socket>}`.
 * On SIGTERM (or stdin closing) it prints `{"added":N,"removed":M}` and exits.
 */
import net from 'node:net';
import readline from 'node:readline';
import { performance } from 'node:perf_hooks';
import { vrouterToControl } from '../src/control/xmpp/codec';
import { silentLogger } from '../src/control/xmpp/logger';
import { XmppSession } from '../src/control/xmpp/session';
import { BGP_PEER_RESOURCE, CONTROL_NODE_JID, RouteEntry } from '../src/control/xmpp/stanza';

const TICK_MS = 10;
const CHURN_BASE = (10 << 24) | (200 << 16);
/** Prefixes are taken modulo this, far more than any window. */
const CHURN_SPACE = 1 << 16;

function main(): void {
  const [endpoint, name, vrf, vn, nexthopAddress, labelText, rateText, windowText] = process.argv.slice(2);
  const [host, portText] = endpoint.split(':');
  const label = Number(labelText);
  const perTick = Math.max(1, Math.round((Number(rateText) * TICK_MS) / 1000));
  const window = Number(windowText);
  const bgp = vrouterToControl(name, BGP_PEER_RESOURCE);
  const now = () => performance.timeOrigin + performance.now();
  let stanzaId = 0;
  const entry = (prefix: string): RouteEntry => ({
    prefix,
    nexthops: [{ address: nexthopAddress, label, encaps: ['udp'], virtualNetwork: vn }],
    version: 1,
    sequenceNumber: 0,
    localPreference: 200,
    med: 0,
  });

  const socket = net.connect(Number(portText), host);
  const session = new XmppSession(socket, { holdTime: 90, logger: silentLogger, name }, {
    streamOpen: () => {
      session.sendStanza({ kind: 'subscribe', ...bgp, id: `subscribe${stanzaId++}`, vrf, instanceId: 1 });
      process.stdout.write('{"established":true}\n');
      startChurn();
    },
    stanza: () => {},
    closed: (reason) => {
      process.stderr.write(`route source session closed: ${reason}\n`);
      process.exit(1);
    },
  });
  const publish = (prefix: string) => {
    session.sendStanza({ kind: 'publish', ...bgp, id: `pubsub${stanzaId++}`, vrf, entry: entry(prefix) });
    session.sendStanza({ kind: 'associate', ...bgp, id: `collection${stanzaId++}`, vrf, prefix });
  };
  const withdraw = (prefix: string) => {
    session.sendStanza({ kind: 'publish', ...bgp, id: `pubsub${stanzaId++}`, vrf, entry: entry(prefix) });
    session.sendStanza({ kind: 'dissociate', ...bgp, id: `collection${stanzaId++}`, vrf, prefix });
  };
  const churnPrefix = (n: number) => {
    const address = CHURN_BASE + (n % CHURN_SPACE);
    return `10.200.${(address >>> 8) & 255}.${address & 255}/32`;
  };

  let added = 0;
  let removed = 0;
  let timer: NodeJS.Timeout | undefined;
  function startChurn(): void {
    timer = setInterval(() => {
      for (let i = 0; i < perTick; i++) publish(churnPrefix(added++));
      while (added - removed > window) withdraw(churnPrefix(removed++));
    }, TICK_MS);
  }

  const input = readline.createInterface({ input: process.stdin });
  input.on('line', (line) => {
    const [op, prefix, id] = line.trim().split(/\s+/);
    if (op === 'add') publish(prefix);
    else if (op === 'del') withdraw(prefix);
    else return;
    process.stdout.write(`${JSON.stringify({ id, op, prefix, at: now() })}\n`);
  });
  const finish = () => {
    if (timer) clearInterval(timer);
    process.stdout.write(`${JSON.stringify({ added, removed })}\n`);
    process.exit(0);
  };
  input.on('close', finish);
  process.on('SIGTERM', finish);
  session.openStream({ from: name, to: CONTROL_NODE_JID });
}

main();
