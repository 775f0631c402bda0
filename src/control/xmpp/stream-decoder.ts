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
import { RefusedItem, RouteChange, RouteUpdateStanza, Stanza, StanzaError, StreamHeader, WireNexthop } from './stanza';
import { XmppStreamParser } from './stream-parser';

export type DecodedEvent =
  | { open: StreamHeader }
  | { stanza: Stanza }
  /** The peer ended its stream with a stream error. */
  | { streamError: StreamErrorInfo }
  /** The peer closed its stream. */
  | { close: true }
  /** What was received is not well formed or not a stanza of this channel. */
  | { malformed: string };

/**
 * A route push as flat columns, the form it crosses threads in: structured
 * cloning a hundred thousand small objects costs both threads more than
 * decoding them did.
 */
interface PackedRouteUpdate {
  from: string;
  to: string;
  vrf: string;
  prefixes: string[];
  /** Per change: its number of next hops, -1 for a retract. */
  nexthopCounts: Int32Array;
  /** Per change: version, sequence number, local preference, med. */
  attributes: Uint32Array;
  /** Per next hop. */
  addresses: string[];
  labels: Int32Array;
  virtualNetworks: string[];
  encapCounts: Int32Array;
  /** All next hops' encapsulations, in order. */
  encaps: string[];
  refused?: RefusedItem[];
}

type TransferredEvent = DecodedEvent | { packedRoutes: PackedRouteUpdate };

function packRouteUpdate(stanza: RouteUpdateStanza): PackedRouteUpdate {
  const changes = stanza.changes;
  let nexthopTotal = 0;
  for (const change of changes) nexthopTotal += change.entry?.nexthops.length ?? 0;
  const packed: PackedRouteUpdate = {
    from: stanza.from,
    to: stanza.to,
    vrf: stanza.vrf,
    prefixes: new Array<string>(changes.length),
    nexthopCounts: new Int32Array(changes.length),
    attributes: new Uint32Array(changes.length * 4),
    addresses: new Array<string>(nexthopTotal),
    labels: new Int32Array(nexthopTotal),
    virtualNetworks: new Array<string>(nexthopTotal),
    encapCounts: new Int32Array(nexthopTotal),
    encaps: [],
  };
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
      packed.addresses[nexthopIndex] = nexthop.address;
      packed.labels[nexthopIndex] = nexthop.label;
      packed.virtualNetworks[nexthopIndex] = nexthop.virtualNetwork;
      packed.encapCounts[nexthopIndex] = nexthop.encaps.length;
      for (const encap of nexthop.encaps) packed.encaps.push(encap);
      nexthopIndex++;
    }
  });
  return packed;
}

function unpackRouteUpdate(packed: PackedRouteUpdate): RouteUpdateStanza {
  const changes: RouteChange[] = new Array(packed.prefixes.length);
  let nexthopIndex = 0;
  let encapIndex = 0;
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
      nexthops[n] = {
        address: packed.addresses[nexthopIndex],
        label: packed.labels[nexthopIndex],
        encaps: packed.encaps.slice(encapIndex, (encapIndex += encapCount)),
        virtualNetwork: packed.virtualNetworks[nexthopIndex],
      };
    }
    const attributes = packed.attributes;
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
  if (packed.refused) update.refused = packed.refused;
  return update;
}

export interface StreamDecoder {
  write(chunk: Buffer): void;
  /** Stops decoding (the session is closed). */
  stop(): void;
}

/** Parses and decodes a stream, returning per chunk the events it completed. */
export class ChunkDecoder {
  private events: DecodedEvent[] = [];
  private failed = false;
  private readonly parser = new XmppStreamParser({
    streamOpen: (element) => this.events.push({ open: decodeStreamHeader(element) }),
    stanza: (element) => {
      const decoded = decodeStanza(element);
      this.events.push(isStreamError(decoded) ? { streamError: decoded } : { stanza: decoded });
    },
    streamClose: () => this.events.push({ close: true }),
  });

  decode(chunk: Buffer): DecodedEvent[] {
    this.events = [];
    if (this.failed) return this.events;
    try {
      this.parser.write(chunk);
    } catch (error) {
      if (!(error instanceof StanzaError)) throw error;
      this.failed = true;
      this.events.push({ malformed: error.message });
    }
    return this.events;
  }
}

export class InlineStreamDecoder implements StreamDecoder {
  private readonly decoder = new ChunkDecoder();

  constructor(private readonly deliver: (events: DecodedEvent[]) => void) {}

  write(chunk: Buffer): void {
    this.deliver(this.decoder.decode(chunk));
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
