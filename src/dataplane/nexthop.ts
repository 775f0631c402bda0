/**
 * Nexthops, numbered like OpenContrail's `nh` table, stored as columns of
 * typed arrays so the packet path reads them without touching objects.
 *
 *   encap      deliver to a local vif: source MAC := vrouter, destination MAC := the pod's
 *   tunnel     to a remote node's underlay IP with an MPLS label, over UDP or GRE
 *   composite  ECMP: member slots; a removed member leaves its slot empty (-1) so
 *              the other members keep their index (flows record the index)
 *   receive    for the vrouter itself (delivered to the host vif when there is one)
 *   discard    dropped and counted
 */
export const NH_NONE = 0;
export const NH_ENCAP = 1;
export const NH_TUNNEL = 2;
export const NH_COMPOSITE = 3;
export const NH_RECEIVE = 4;
export const NH_DISCARD = 5;
export const NH_KIND_NAMES = ['none', 'encap', 'tunnel', 'composite', 'receive', 'discard'] as const;
export type NexthopKind = Exclude<(typeof NH_KIND_NAMES)[number], 'none'>;

export const ENCAP_MPLS_UDP = 1;
export const ENCAP_MPLS_GRE = 2;
export const TUNNEL_ENCAP_NAMES = ['none', 'udp', 'gre'] as const;
export type TunnelEncap = 'udp' | 'gre';

export type NexthopSpec =
  | { kind: 'encap'; vif: number; mac: Uint8Array }
  | { kind: 'tunnel'; vif: number; dip: number; sip: number; label: number; encap: TunnelEncap; mac: Uint8Array; vn?: number }
  | { kind: 'composite'; members: number[]; vn?: number }
  | { kind: 'receive'; vif: number }
  | { kind: 'discard' };

const MAX_NEXTHOPS = 1 << 20;

export class NexthopTable {
  capacity: number;
  kind: Uint8Array;
  /** Egress vif: the pod's for encap, the fabric's for tunnel, the host's for receive. */
  vif: Int32Array;
  /** Destination MAC, 6 bytes per nexthop: the pod's (encap) or the underlay next hop's (tunnel). */
  mac: Uint8Array;
  /** Tunnel destination and source underlay IPv4. */
  dip: Uint32Array;
  sip: Uint32Array;
  label: Int32Array;
  encap: Uint8Array;
  /** Composite member nexthop per slot, -1 for an empty slot. */
  members: (Int32Array | null)[];
  /** Composite: slot numbers of the non-empty slots, for hashing onto active members. */
  activeSlots: (Int32Array | null)[];
  /** Routes and labels that point at each nexthop, so a nexthop in use is not deleted. */
  refCount: Int32Array;
  /**
   * Virtual network (VRF id) of what the nexthop leads to, for policy; -1
   * when unknown (the VN of the VRF the route is in is assumed).
   */
  vn: Int32Array;

  constructor(capacity = 1024) {
    this.capacity = capacity;
    this.kind = new Uint8Array(capacity);
    this.vif = new Int32Array(capacity).fill(-1);
    this.mac = new Uint8Array(capacity * 6);
    this.dip = new Uint32Array(capacity);
    this.sip = new Uint32Array(capacity);
    this.label = new Int32Array(capacity).fill(-1);
    this.encap = new Uint8Array(capacity);
    this.refCount = new Int32Array(capacity);
    this.vn = new Int32Array(capacity).fill(-1);
    // Filled to capacity: an array written first at a high id (dynamic nexthops start at 100,000) would be a slow sparse one.
    this.members = new Array<Int32Array | null>(capacity).fill(null);
    this.activeSlots = new Array<Int32Array | null>(capacity).fill(null);
  }

  exists(id: number): boolean {
    return id >= 0 && id < this.capacity && this.kind[id] !== NH_NONE;
  }

  /** Adds or replaces nexthop `id`. A composite's members must exist already. */
  set(id: number, spec: NexthopSpec): void {
    if (!Number.isInteger(id) || id < 0 || id >= MAX_NEXTHOPS) throw new Error(`nexthop id ${id} out of range`);
    this.ensureCapacity(id + 1);
    if (this.kind[id] === NH_COMPOSITE) this.releaseMembers(id);
    this.vif[id] = -1;
    this.label[id] = -1;
    this.encap[id] = 0;
    this.dip[id] = 0;
    this.sip[id] = 0;
    this.mac.fill(0, id * 6, id * 6 + 6);
    this.members[id] = null;
    this.activeSlots[id] = null;
    this.vn[id] = -1;
    switch (spec.kind) {
      case 'encap':
        this.kind[id] = NH_ENCAP;
        this.vif[id] = spec.vif;
        this.mac.set(spec.mac, id * 6);
        break;
      case 'tunnel':
        this.kind[id] = NH_TUNNEL;
        this.vif[id] = spec.vif;
        this.dip[id] = spec.dip >>> 0;
        this.sip[id] = spec.sip >>> 0;
        this.label[id] = spec.label;
        this.encap[id] = spec.encap === 'gre' ? ENCAP_MPLS_GRE : ENCAP_MPLS_UDP;
        this.mac.set(spec.mac, id * 6);
        this.vn[id] = spec.vn ?? -1;
        break;
      case 'composite':
        for (const member of spec.members) {
          if (member >= 0 && !this.exists(member)) throw new Error(`composite ${id}: member nexthop ${member} does not exist`);
          if (member >= 0 && this.kind[member] === NH_COMPOSITE) throw new Error(`composite ${id}: member ${member} is itself a composite`);
        }
        this.kind[id] = NH_COMPOSITE;
        this.vn[id] = spec.vn ?? -1;
        this.members[id] = Int32Array.from(spec.members);
        for (const member of spec.members) if (member >= 0) this.refCount[member]++;
        this.refreshActiveSlots(id);
        break;
      case 'receive':
        this.kind[id] = NH_RECEIVE;
        this.vif[id] = spec.vif;
        break;
      case 'discard':
        this.kind[id] = NH_DISCARD;
        break;
    }
  }

  /** Empties one composite slot, keeping every other member's index. */
  removeMember(id: number, slot: number): void {
    const members = this.members[id];
    if (!members || slot < 0 || slot >= members.length || members[slot] < 0) return;
    this.refCount[members[slot]]--;
    members[slot] = -1;
    this.refreshActiveSlots(id);
  }

  /** Puts a member into the first empty slot (or a new one); returns its slot. */
  addMember(id: number, member: number): number {
    const members = this.members[id];
    if (!members) throw new Error(`nexthop ${id} is not a composite`);
    if (!this.exists(member) || this.kind[member] === NH_COMPOSITE) throw new Error(`composite ${id}: bad member ${member}`);
    let slot = members.indexOf(-1);
    if (slot < 0) {
      const grown = new Int32Array(members.length + 1);
      grown.set(members);
      this.members[id] = grown;
      slot = members.length;
      grown[slot] = member;
    } else {
      members[slot] = member;
    }
    this.refCount[member]++;
    this.refreshActiveSlots(id);
    return slot;
  }

  delete(id: number): void {
    if (!this.exists(id)) throw new Error(`nexthop ${id} does not exist`);
    if (this.refCount[id] > 0) throw new Error(`nexthop ${id} is still in use (${this.refCount[id]} references)`);
    if (this.kind[id] === NH_COMPOSITE) this.releaseMembers(id);
    this.kind[id] = NH_NONE;
    this.members[id] = null;
    this.activeSlots[id] = null;
  }

  /**
   * ECMP member slot for a flow hash: the hashed slot when it holds a member,
   * otherwise one of the active slots (so flows on surviving members keep
   * theirs); -1 when every slot is empty.
   */
  selectSlot(id: number, hash: number): number {
    const members = this.members[id]!;
    const slot = (hash >>> 0) % members.length;
    if (members[slot] >= 0) return slot;
    const active = this.activeSlots[id]!;
    return active.length === 0 ? -1 : active[(hash >>> 0) % active.length];
  }

  /** Ids of all existing nexthops. */
  ids(): number[] {
    const ids: number[] = [];
    for (let id = 0; id < this.capacity; id++) if (this.kind[id] !== NH_NONE) ids.push(id);
    return ids;
  }

  private releaseMembers(id: number): void {
    const members = this.members[id];
    if (members) for (const member of members) if (member >= 0) this.refCount[member]--;
  }

  private refreshActiveSlots(id: number): void {
    const members = this.members[id]!;
    const active: number[] = [];
    members.forEach((member, slot) => {
      if (member >= 0) active.push(slot);
    });
    this.activeSlots[id] = Int32Array.from(active);
  }

  private ensureCapacity(needed: number): void {
    if (needed <= this.capacity) return;
    let capacity = this.capacity;
    while (capacity < needed) capacity *= 2;
    const grow = <T extends Uint8Array | Int32Array | Uint32Array>(old: T, make: (n: number) => T, fill = 0): T => {
      const next = make(capacity);
      if (fill !== 0) next.fill(fill);
      next.set(old);
      return next;
    };
    this.kind = grow(this.kind, (n) => new Uint8Array(n));
    this.vif = grow(this.vif, (n) => new Int32Array(n), -1);
    this.dip = grow(this.dip, (n) => new Uint32Array(n));
    this.sip = grow(this.sip, (n) => new Uint32Array(n));
    this.label = grow(this.label, (n) => new Int32Array(n), -1);
    this.encap = grow(this.encap, (n) => new Uint8Array(n));
    this.refCount = grow(this.refCount, (n) => new Int32Array(n));
    this.vn = grow(this.vn, (n) => new Int32Array(n), -1);
    const mac = new Uint8Array(capacity * 6);
    mac.set(this.mac);
    this.mac = mac;
    // In one step: pushing slot by slot regrew the two arrays' backing stores many times over a route dump.
    const added = new Array<null>(capacity - this.capacity).fill(null);
    this.members = this.members.concat(added);
    this.activeSlots = this.activeSlots.concat(added);
    this.capacity = capacity;
  }
}
