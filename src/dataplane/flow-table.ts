/**
 * The flow table: one decision per flow, made on its first packet and reused
 * by every later packet of the flow and of its reply direction.
 *
 * Entries come in pairs created together: entry 2k is the forward flow (the
 * direction that made the decision) and 2k+1 its reverse, so an entry's
 * partner is `entry ^ 1` and no link needs storing. Every field is a column
 * of a typed array indexed by entry (or by pair), so a table of 512K entries
 * is a few flat arrays: no per-flow objects, nothing for the GC to trace, and
 * a fixed memory cost per pair (see bytesPerPair).
 *
 * Key: (VRF, protocol, src IP, dst IP, src port << 16 | dst port). ICMP echo
 * uses its identifier as both ports so a reply's key is the request's with
 * the ends swapped. The index is open addressing with linear probing over a
 * power-of-two bucket array twice the entry capacity, keyed by the flow hash
 * the pipeline already computed for ECMP; deletion shifts later entries back
 * (no tombstones), so lookups never slow down as flows come and go.
 *
 * When the table is full, a new flow first evicts the oldest pair that never
 * saw a reply (as Linux conntrack drops unreplied entries first); an
 * established pair is never evicted. Idle pairs are aged by a clock hand that
 * the owner advances with `age(now)`.
 *
 * NAT (as OpenContrail does it): the new address and port come from the
 * partner's key. A DNAT forward entry rewrites the destination to the
 * reverse entry's source; its SNAT reverse rewrites the source to the
 * forward entry's destination.
 *
 * IPv6 pairs use the same entries (so the same index, aging, TCP tracking
 * and eviction) with their 128-bit addresses in a side array of their own
 * capacity: an IPv6 entry's keyVrf carries FLOW_FAMILY_IPV6 (so it never
 * matches an IPv4 lookup) and its keySrc the slot of its two addresses in
 * keyAddress6. IPv4 pairs pay nothing for this (bytesPerPair), an IPv6 pair
 * its 64 bytes of addresses on top (bytesPerIpv6Pair).
 */
import { flowHash, flowHash6 } from './flow-hash';

export const FLOW_FORWARD = 1;
export const FLOW_DROP = 2;
export const FLOW_NAT = 3;
export const FLOW_ACTION_NAMES = ['none', 'forward', 'drop', 'nat'] as const;

export const NAT_SNAT = 1;
export const NAT_DNAT = 2;
export const NAT_SPAT = 4;
export const NAT_DPAT = 8;

/** Pair state bits. */
const PAIR_IN_USE = 1;
const PAIR_REPLIED = 2;
/** A FIN was seen from the forward (4) or the reverse (8) side. */
const PAIR_FIN_FORWARD = 4;
const PAIR_FIN_REVERSE = 8;
const PAIR_CLOSING = 16;
/** The forward (32) or reverse (64) side's FIN was acknowledged by the other side. */
const PAIR_FIN_FORWARD_ACKED = 32;
const PAIR_FIN_REVERSE_ACKED = 64;
const PAIR_BOTH_FINS_ACKED = PAIR_FIN_FORWARD_ACKED | PAIR_FIN_REVERSE_ACKED;
/** The forward (128) or reverse (256) side sent a SYN; the forward (512) or reverse (1024) side sent an ACK. */
const PAIR_SYN_FORWARD = 128;
const PAIR_SYN_REVERSE = 256;
const PAIR_ACK_FORWARD = 512;
const PAIR_ACK_REVERSE = 1024;

/** A pair's policy VN when it is not known (re-evaluation leaves such a pair as it is). */
export const POLICY_VN_UNKNOWN = -2;

export const DEFAULT_FLOW_CAPACITY = 512 * 1024;
export const DEFAULT_IDLE_TIMEOUT_SECONDS = 180;
/** Flow pairs one vif may hold by default (a quarter of the default table); 0 in a vif's setting: no limit. */
export const DEFAULT_VIF_FLOW_LIMIT = 65536;
/** Vif ids are 0-4095 (state-schema.ts). */
const VIF_IDS = 4096;
/** How long a pair lingers after FIN both ways without the last ACK. */
export const CLOSING_TIMEOUT_SECONDS = 10;

const EMPTY = -1;

/** In keyVrf: the entry is IPv6 (VRF ids stay below 4096). */
export const FLOW_FAMILY_IPV6 = 0x10000;
/** Bytes of addresses per IPv6 entry in keyAddress6: source, then destination. */
export const ADDRESS6_STRIDE = 32;

export interface FlowKey {
  vrf: number;
  protocol: number;
  src: number;
  dst: number;
  srcPort: number;
  dstPort: number;
}

/** An IPv6 flow key: `addresses` holds the source (bytes 0-15) and destination (16-31). */
export interface FlowKey6 {
  vrf: number;
  protocol: number;
  addresses: Uint8Array;
  srcPort: number;
  dstPort: number;
}

export interface FlowEntryView extends FlowKey {
  index: number;
  reverseIndex: number;
  action: (typeof FLOW_ACTION_NAMES)[number];
  nat: string[];
  nexthop: number;
  ecmpSlot: number;
  packets: number;
  bytes: number;
  replied: boolean;
  lastUsed: number;
  /** IPv6 entries: the addresses (src and dst are 0 then). */
  src6: Uint8Array | null;
  dst6: Uint8Array | null;
}

export class FlowTable {
  readonly capacity: number;
  idleTimeout: number;

  // Per entry.
  readonly keyVrf: Int32Array;
  readonly keySrc: Uint32Array;
  readonly keyDst: Uint32Array;
  /** src port << 16 | dst port, signed (see flow-hash.ts on why signed). */
  readonly keyPorts: Int32Array;
  readonly keyProtocol: Uint8Array;
  readonly keyHash: Int32Array;
  readonly action: Uint8Array;
  readonly natFlags: Uint8Array;
  /** Nexthop decided for the entry's direction (-1: look the route up each time). */
  readonly nexthop: Int32Array;
  /** ECMP member slot recorded for sticky load balancing (-1 when none). */
  readonly ecmpSlot: Int16Array;
  readonly packets: Float64Array;
  readonly bytes: Float64Array;
  /** TCP: the last acknowledgement number this direction sent (the next sequence number it expects). */
  readonly tcpAck: Uint32Array;
  /** TCP: sequence number of this direction's SYN, then of its FIN (the reference's fe_tcp_seq). */
  readonly tcpSeq: Uint32Array;

  // Per pair.
  readonly pairState: Uint16Array;
  /** Coarse clock (seconds) of the pair's last packet. */
  readonly lastUsed: Uint32Array;
  /** The local vif the pair counts against (its pod: the sender's, or the receiver's from the fabric), -1 for none. */
  readonly pairVif: Int16Array;
  /** Pairs each vif holds now, for its flow limit. */
  readonly vifPairs = new Int32Array(VIF_IDS);
  private readonly pairGeneration: Uint32Array;
  /**
   * What the policy verdict was made from, for re-evaluating it when the
   * rules change: the source and destination VN (VRF ids; POLICY_VN_UNKNOWN
   * for a pair restored from a snapshot without them), and the forward
   * entry's NAT flags if the pair is allowed (the reverse's follow).
   */
  readonly policySourceVn: Int32Array;
  readonly policyDestinationVn: Int32Array;
  readonly natWanted: Uint8Array;

  // IPv6 pairs: addresses of entry slot k at keyAddress6[32k .. 32k+31], two slots per pair.
  readonly ipv6Pairs: number;
  readonly keyAddress6: Uint8Array;
  private readonly freeIpv6Pairs: Int32Array;
  private freeIpv6Count: number;

  private readonly buckets: Int32Array;
  private readonly bucketMask: number;
  private readonly freePairs: Int32Array;
  private freeCount: number;
  /** Pairs in creation order with their generation, for evicting unreplied ones. */
  private readonly unreplied: UnrepliedRing;
  /** The IPv6 pairs among them, for when the IPv6 addresses' side array is full. */
  private readonly unreplied6: UnrepliedRing;
  private agingHand = 0;

  activePairs = 0;
  evictions = 0;

  /** `ipv6Capacity`: entries (two per pair) that may be IPv6, default a quarter of the table. */
  constructor(capacity = DEFAULT_FLOW_CAPACITY, idleTimeout = DEFAULT_IDLE_TIMEOUT_SECONDS, ipv6Capacity = 2 * Math.ceil(capacity / 8)) {
    if (!Number.isInteger(capacity) || capacity < 2 || capacity % 2 !== 0) throw new Error(`flow capacity ${capacity} must be an even integer >= 2`);
    if (!Number.isInteger(ipv6Capacity) || ipv6Capacity < 0 || ipv6Capacity % 2 !== 0 || ipv6Capacity > capacity)
      throw new Error(`IPv6 flow capacity ${ipv6Capacity} must be an even integer in [0, ${capacity}]`);
    this.capacity = capacity;
    this.idleTimeout = idleTimeout;
    const pairs = capacity / 2;
    this.keyVrf = new Int32Array(capacity);
    this.keySrc = new Uint32Array(capacity);
    this.keyDst = new Uint32Array(capacity);
    this.keyPorts = new Int32Array(capacity);
    this.keyProtocol = new Uint8Array(capacity);
    this.keyHash = new Int32Array(capacity);
    this.action = new Uint8Array(capacity);
    this.natFlags = new Uint8Array(capacity);
    this.nexthop = new Int32Array(capacity);
    this.ecmpSlot = new Int16Array(capacity);
    this.packets = new Float64Array(capacity);
    this.bytes = new Float64Array(capacity);
    this.tcpAck = new Uint32Array(capacity);
    this.tcpSeq = new Uint32Array(capacity);
    this.pairState = new Uint16Array(pairs);
    this.lastUsed = new Uint32Array(pairs);
    this.pairVif = new Int16Array(pairs);
    this.pairGeneration = new Uint32Array(pairs);
    this.policySourceVn = new Int32Array(pairs);
    this.policyDestinationVn = new Int32Array(pairs);
    this.natWanted = new Uint8Array(pairs);
    let buckets = 1;
    while (buckets < capacity * 2) buckets *= 2;
    this.buckets = new Int32Array(buckets).fill(EMPTY);
    this.bucketMask = buckets - 1;
    this.freePairs = new Int32Array(pairs);
    for (let i = 0; i < pairs; i++) this.freePairs[i] = pairs - 1 - i;
    this.freeCount = pairs;
    this.unreplied = new UnrepliedRing(pairs);
    this.unreplied6 = new UnrepliedRing(ipv6Capacity / 2);
    this.ipv6Pairs = ipv6Capacity / 2;
    this.keyAddress6 = new Uint8Array(ipv6Capacity * ADDRESS6_STRIDE);
    this.freeIpv6Pairs = new Int32Array(this.ipv6Pairs);
    for (let i = 0; i < this.ipv6Pairs; i++) this.freeIpv6Pairs[i] = this.ipv6Pairs - 1 - i;
    this.freeIpv6Count = this.ipv6Pairs;
  }

  /** Bytes per IPv6 pair: an IPv4 pair's plus its addresses, its free-list slot and its unreplied ring record. */
  get bytesPerIpv6Pair(): number {
    return this.bytesPerPair + 2 * ADDRESS6_STRIDE + 4 + 8;
  }

  /** Bytes of typed-array memory per flow pair, index included. */
  get bytesPerPair(): number {
    const perEntry = 4 + 4 + 4 + 4 + 1 + 4 + 1 + 1 + 4 + 2 + 8 + 8 + 4 + 4;
    const perPair = 2 + 4 + 2 + 4 + 4 + 4 + 1 + 4 + 4; // state, lastUsed, vif, generation, policy VNs, NAT wanted, free list, unreplied ring (2)
    return 2 * perEntry + perPair + (this.buckets.length * 4) / (this.capacity / 2);
  }

  /** The entry with this key, or -1. `hash` must be flowHash of the key. */
  lookup(vrf: number, protocol: number, src: number, dst: number, ports: number, hash: number): number {
    const buckets = this.buckets;
    const mask = this.bucketMask;
    let bucket = hash & mask;
    for (;;) {
      const entry = buckets[bucket];
      if (entry === EMPTY) return -1;
      if (
        this.keyHash[entry] === hash &&
        this.keySrc[entry] === src &&
        this.keyDst[entry] === dst &&
        this.keyPorts[entry] === ports &&
        this.keyProtocol[entry] === protocol &&
        this.keyVrf[entry] === vrf
      )
        return entry;
      bucket = (bucket + 1) & mask;
    }
  }

  /**
   * The IPv6 entry with this key (addresses at data[src] and data[dst]),
   * or -1. `hash` must be flowHash6 of the key.
   */
  lookup6(vrf: number, protocol: number, data: Uint8Array, src: number, dst: number, ports: number, hash: number): number {
    const buckets = this.buckets;
    const mask = this.bucketMask;
    const familyVrf = vrf | FLOW_FAMILY_IPV6;
    const addresses = this.keyAddress6;
    for (let bucket = hash & mask; ; bucket = (bucket + 1) & mask) {
      const entry = buckets[bucket];
      if (entry === EMPTY) return -1;
      if (this.keyHash[entry] !== hash || this.keyPorts[entry] !== ports || this.keyProtocol[entry] !== protocol || this.keyVrf[entry] !== familyVrf) continue;
      const at = this.keySrc[entry] * ADDRESS6_STRIDE;
      let same = true;
      for (let i = 0; i < 16 && same; i++) same = addresses[at + i] === data[src + i] && addresses[at + 16 + i] === data[dst + i];
      if (same) return entry;
    }
  }

  /**
   * Creates a pair: the forward entry with the given key and the reverse
   * entry with `reverse`'s key, counted against `vif` (-1: none). Returns
   * the forward entry, or -1 when the table is full of established flows
   * (the caller counts flow-table-full). The caller must have checked that
   * neither key exists, and the vif's limit.
   */
  create(forward: FlowKey, reverse: FlowKey, now: number, vif = -1): number {
    const entry = this.allocatePair(now, vif);
    if (entry < 0) return -1;
    this.setKey(entry, forward);
    this.setKey(entry + 1, reverse);
    this.insertIntoIndex(entry);
    this.insertIntoIndex(entry + 1);
    return entry;
  }

  /** create() for an IPv6 pair; -1 also when the IPv6 addresses' side array is full. */
  create6(forward: FlowKey6, reverse: FlowKey6, now: number, vif = -1): number {
    if (this.freeIpv6Count === 0 && !this.evictUnreplied(this.unreplied6)) return -1;
    const entry = this.allocatePair(now, vif);
    if (entry < 0) return -1;
    this.unreplied6.push(entry >>> 1, this.pairGeneration[entry >>> 1]);
    const slot = this.freeIpv6Pairs[--this.freeIpv6Count] * 2;
    this.setKey6(entry, forward, slot);
    this.setKey6(entry + 1, reverse, slot + 1);
    this.insertIntoIndex(entry);
    this.insertIntoIndex(entry + 1);
    return entry;
  }

  /** Offset in keyAddress6 of an IPv6 entry's source address (its destination follows). */
  address6Offset(entry: number): number {
    return this.keySrc[entry] * ADDRESS6_STRIDE;
  }

  isIpv6(entry: number): boolean {
    return (this.keyVrf[entry] & FLOW_FAMILY_IPV6) !== 0;
  }

  /** Takes a free pair (evicting the oldest unreplied one when full) and resets it; -1 when none. */
  private allocatePair(now: number, vif: number): number {
    if (this.freeCount === 0 && !this.evictUnreplied(this.unreplied)) return -1;
    const pair = this.freePairs[--this.freeCount];
    const entry = pair * 2;
    for (let e = entry; e <= entry + 1; e++) {
      this.action[e] = FLOW_FORWARD;
      this.natFlags[e] = 0;
      this.nexthop[e] = -1;
      this.ecmpSlot[e] = -1;
      this.packets[e] = 0;
      this.bytes[e] = 0;
      this.tcpAck[e] = 0;
      this.tcpSeq[e] = 0;
    }
    this.pairState[pair] = PAIR_IN_USE;
    this.lastUsed[pair] = now;
    this.pairVif[pair] = vif;
    this.policySourceVn[pair] = POLICY_VN_UNKNOWN;
    this.policyDestinationVn[pair] = POLICY_VN_UNKNOWN;
    this.natWanted[pair] = 0;
    if (vif >= 0) this.vifPairs[vif]++;
    this.unreplied.push(pair, ++this.pairGeneration[pair]);
    this.activePairs++;
    return entry;
  }

  /**
   * Sets a pair's action from a policy verdict (its forward entry given):
   * drop, or its wanted NAT (natWanted) and else forward. Returns whether
   * the action changed.
   */
  setVerdict(entry: number, allowed: boolean): boolean {
    const wanted = this.natWanted[entry >>> 1];
    const action = !allowed ? FLOW_DROP : wanted !== 0 ? FLOW_NAT : FLOW_FORWARD;
    const changed = this.action[entry] !== action;
    this.action[entry] = action;
    this.action[entry + 1] = action;
    this.natFlags[entry] = allowed ? wanted : 0;
    this.natFlags[entry + 1] = allowed ? ((wanted & NAT_DNAT) !== 0 ? NAT_SNAT : 0) | ((wanted & NAT_DPAT) !== 0 ? NAT_SPAT : 0) : 0;
    return changed;
  }

  /** Removes the pair an entry belongs to. */
  removePair(entry: number): void {
    const pair = entry >>> 1;
    if ((this.pairState[pair] & PAIR_IN_USE) === 0) return;
    this.removeFromIndex(pair * 2);
    this.removeFromIndex(pair * 2 + 1);
    if (this.isIpv6(pair * 2)) this.freeIpv6Pairs[this.freeIpv6Count++] = this.keySrc[pair * 2] >>> 1;
    this.pairState[pair] = 0;
    const vif = this.pairVif[pair];
    if (vif >= 0) this.vifPairs[vif]--;
    this.pairGeneration[pair]++;
    this.freePairs[this.freeCount++] = pair;
    this.activePairs--;
  }

  isActive(entry: number): boolean {
    return (this.pairState[entry >>> 1] & PAIR_IN_USE) !== 0;
  }

  isReplied(entry: number): boolean {
    return (this.pairState[entry >>> 1] & PAIR_REPLIED) !== 0;
  }

  /** Counts a packet on an entry; a packet on a reverse entry makes the pair established. */
  hit(entry: number, length: number, now: number): void {
    this.packets[entry]++;
    this.bytes[entry] += length;
    this.lastUsed[entry >>> 1] = now;
    if ((entry & 1) === 1) this.pairState[entry >>> 1] |= PAIR_REPLIED;
  }

  /**
   * TCP life cycle, called with each segment's header fields after `hit`.
   * Returns true when the pair must be removed now (an acceptable RST, or
   * both FINs acknowledged).
   *
   * An RST is acceptable as RFC 5961 3.2 and the reference vrouter
   * (tungstenfabric/tf-vrouter@432a8e0c dp-core/vr_flow.c vr_flow_tcp_digest)
   * judge it: answering a SYN this side never answered, only when its ACK
   * acknowledges that SYN; otherwise only when its sequence number is
   * exactly the next one the other side expects (the last it acknowledged).
   * Any other RST leaves the pair: a blind RST cannot remove a connection.
   */
  trackTcp(entry: number, flags: number, seq: number, ack: number, segmentLength: number): boolean {
    const pair = entry >>> 1;
    const partner = entry ^ 1;
    const FIN = 0x01;
    const SYN = 0x02;
    const RST = 0x04;
    const ACK = 0x10;
    const forward = (entry & 1) === 0;
    let state = this.pairState[pair];
    if ((flags & RST) !== 0) {
      if ((state & (forward ? PAIR_SYN_REVERSE : PAIR_SYN_FORWARD)) !== 0 && (state & (forward ? PAIR_SYN_FORWARD : PAIR_SYN_REVERSE)) === 0)
        return (flags & ACK) !== 0 && ack === ((this.tcpSeq[partner] + 1) >>> 0);
      return (state & (forward ? PAIR_ACK_REVERSE : PAIR_ACK_FORWARD)) !== 0 && seq === this.tcpAck[partner];
    }
    if ((flags & ACK) !== 0) {
      this.tcpAck[entry] = ack;
      state |= forward ? PAIR_ACK_FORWARD : PAIR_ACK_REVERSE;
    }
    if ((flags & SYN) !== 0) {
      this.tcpSeq[entry] = seq;
      state |= forward ? PAIR_SYN_FORWARD : PAIR_SYN_REVERSE;
    }
    // An ACK covering the other side's FIN closes that side (also in a FIN+ACK).
    const partnerFin = forward ? PAIR_FIN_REVERSE : PAIR_FIN_FORWARD;
    if ((flags & ACK) !== 0 && (state & partnerFin) !== 0 && ack === ((this.tcpSeq[partner] + 1) >>> 0)) {
      state |= forward ? PAIR_FIN_REVERSE_ACKED : PAIR_FIN_FORWARD_ACKED;
    }
    if ((flags & FIN) !== 0) {
      this.tcpSeq[entry] = (seq + segmentLength) >>> 0;
      state |= forward ? PAIR_FIN_FORWARD : PAIR_FIN_REVERSE;
      if ((state & (PAIR_FIN_FORWARD | PAIR_FIN_REVERSE)) === (PAIR_FIN_FORWARD | PAIR_FIN_REVERSE)) state |= PAIR_CLOSING;
    }
    this.pairState[pair] = state;
    // Both FINs acknowledged, whichever side closed first or both at once.
    return (state & PAIR_BOTH_FINS_ACKED) === PAIR_BOTH_FINS_ACKED;
  }

  /**
   * Advances the aging clock hand over up to `budget` pairs, removing those
   * idle past the timeout (a closing TCP pair: past CLOSING_TIMEOUT_SECONDS).
   * Returns the number removed. Called once a second, the default budget
   * sweeps the whole table within the shorter timeout, so a pair outlives
   * its timeout by at most that long (a fixed 4096 took 64 s over the
   * default table: closed TCP pairs lingered six times their 10 s).
   */
  age(now: number, budget = Math.max(4096, Math.ceil(this.capacity / 2 / Math.min(this.idleTimeout, CLOSING_TIMEOUT_SECONDS)))): number {
    const pairs = this.capacity / 2;
    let removed = 0;
    for (let i = 0; i < budget && i < pairs; i++) {
      const pair = this.agingHand;
      this.agingHand = (pair + 1) % pairs;
      const state = this.pairState[pair];
      if ((state & PAIR_IN_USE) === 0) continue;
      const timeout = (state & PAIR_CLOSING) !== 0 ? Math.min(CLOSING_TIMEOUT_SECONDS, this.idleTimeout) : this.idleTimeout;
      if (now - this.lastUsed[pair] >= timeout) {
        this.removePair(pair * 2);
        removed++;
      }
    }
    return removed;
  }

  /** Every active entry, forward then reverse, in pair order (tools and tests). */
  entries(): FlowEntryView[] {
    const out: FlowEntryView[] = [];
    for (let pair = 0; pair < this.capacity / 2; pair++) {
      if ((this.pairState[pair] & PAIR_IN_USE) === 0) continue;
      out.push(this.view(pair * 2), this.view(pair * 2 + 1));
    }
    return out;
  }

  view(entry: number): FlowEntryView {
    const nat: string[] = [];
    const flags = this.natFlags[entry];
    if (flags & NAT_SNAT) nat.push('snat');
    if (flags & NAT_DNAT) nat.push('dnat');
    if (flags & NAT_SPAT) nat.push('spat');
    if (flags & NAT_DPAT) nat.push('dpat');
    const ipv6 = this.isIpv6(entry);
    const at = ipv6 ? this.address6Offset(entry) : 0;
    return {
      index: entry,
      reverseIndex: entry ^ 1,
      vrf: this.keyVrf[entry] & ~FLOW_FAMILY_IPV6,
      protocol: this.keyProtocol[entry],
      src: ipv6 ? 0 : this.keySrc[entry],
      dst: this.keyDst[entry],
      srcPort: this.keyPorts[entry] >>> 16,
      dstPort: this.keyPorts[entry] & 0xffff,
      action: FLOW_ACTION_NAMES[this.action[entry]],
      nat,
      nexthop: this.nexthop[entry],
      ecmpSlot: this.ecmpSlot[entry],
      packets: this.packets[entry],
      bytes: this.bytes[entry],
      replied: this.isReplied(entry),
      lastUsed: this.lastUsed[entry >>> 1],
      src6: ipv6 ? this.keyAddress6.slice(at, at + 16) : null,
      dst6: ipv6 ? this.keyAddress6.slice(at + 16, at + 32) : null,
    };
  }

  private setKey(entry: number, key: FlowKey): void {
    this.keyVrf[entry] = key.vrf;
    this.keyProtocol[entry] = key.protocol;
    this.keySrc[entry] = key.src >>> 0;
    this.keyDst[entry] = key.dst >>> 0;
    this.keyPorts[entry] = (key.srcPort << 16) | key.dstPort;
    this.keyHash[entry] = flowHash(key.vrf, key.src, key.dst, key.protocol, key.srcPort, key.dstPort);
  }

  private setKey6(entry: number, key: FlowKey6, slot: number): void {
    const at = slot * ADDRESS6_STRIDE;
    this.keyVrf[entry] = key.vrf | FLOW_FAMILY_IPV6;
    this.keyProtocol[entry] = key.protocol;
    this.keySrc[entry] = slot;
    this.keyDst[entry] = 0;
    this.keyPorts[entry] = (key.srcPort << 16) | key.dstPort;
    for (let i = 0; i < ADDRESS6_STRIDE; i++) this.keyAddress6[at + i] = key.addresses[i];
    this.keyHash[entry] = flowHash6(key.vrf, this.keyAddress6, at, at + 16, key.protocol, key.srcPort, key.dstPort);
  }

  private insertIntoIndex(entry: number): void {
    let bucket = this.keyHash[entry] & this.bucketMask;
    while (this.buckets[bucket] !== EMPTY) bucket = (bucket + 1) & this.bucketMask;
    this.buckets[bucket] = entry;
  }

  /** Linear-probing deletion by backward shift: later entries of the run move up. */
  private removeFromIndex(entry: number): void {
    const mask = this.bucketMask;
    let bucket = this.keyHash[entry] & mask;
    while (this.buckets[bucket] !== entry) bucket = (bucket + 1) & mask;
    let hole = bucket;
    let next = (hole + 1) & mask;
    while (this.buckets[next] !== EMPTY) {
      const home = this.keyHash[this.buckets[next]] & mask;
      // Move it into the hole unless its home lies cyclically in (hole, next].
      const homeAfterHole = (home - hole - 1 + mask + 1) & mask;
      const distance = (next - hole - 1 + mask + 1) & mask;
      if (homeAfterHole > distance) {
        this.buckets[hole] = this.buckets[next];
        hole = next;
      }
      next = (next + 1) & mask;
    }
    this.buckets[hole] = EMPTY;
  }

  /** Frees the oldest pair of the ring that never saw a reply; false when there is none. */
  private evictUnreplied(ring: UnrepliedRing): boolean {
    while (ring.count > 0) {
      const at = ring.shift();
      const pair = ring.pair[at];
      const state = this.pairState[pair];
      if (ring.generation[at] === this.pairGeneration[pair] && (state & PAIR_IN_USE) !== 0 && (state & PAIR_REPLIED) === 0) {
        this.removePair(pair * 2);
        this.evictions++;
        return true;
      }
    }
    return false;
  }
}

/** Pairs in creation order with their generation (a record is stale once its pair's generation moved on). */
class UnrepliedRing {
  readonly pair: Int32Array;
  readonly generation: Uint32Array;
  head = 0;
  count = 0;

  constructor(size: number) {
    this.pair = new Int32Array(size);
    this.generation = new Uint32Array(size);
  }

  push(pair: number, generation: number): void {
    const size = this.pair.length;
    // A full ring holds stale records too: forget the oldest (it can still age out).
    if (this.count === size) this.shift();
    const tail = (this.head + this.count) % size;
    this.pair[tail] = pair;
    this.generation[tail] = generation;
    this.count++;
  }

  /** Takes the oldest record; returns its index (valid until the next push). */
  shift(): number {
    const at = this.head;
    this.head = (at + 1) % this.pair.length;
    this.count--;
    return at;
  }
}
