/**
 * Programs the dataplane from routes as a control plane states them: "in
 * VRF v, prefix p goes to these next hops (underlay address + label +
 * encapsulations + VN)". It keeps the nexthop bookkeeping the control plane
 * should not see:
 *
 * - one tunnel nexthop per (node, label, encapsulation), shared by routes and
 *   deleted when the last route using it goes;
 * - a next hop at this node's own underlay address is a local pod: the label
 *   names its encap nexthop;
 * - several next hops make an ECMP composite owned by the route. When the set
 *   changes, a member that stays keeps its slot, a removed member leaves its
 *   slot empty, a new member fills an empty slot first, so flows recorded on
 *   surviving members keep their index.
 *
 * Prefixes are IPv4 (a.b.c.d/len) or IPv6 (x:x::/len, the VRF's inet6 table).
 *
 * VRFs are created on first use by name. This is the single path by which
 * routes learned at run time reach the tables (the state file loader is the
 * other, for static state).
 */
import { Dataplane } from './dataplane';
import { prefixMask } from './lpm/prefix-table';
import { ENCAP_MPLS_GRE, NH_COMPOSITE, NH_TUNNEL, TunnelEncap } from './nexthop';
import { ipFromString, ipToString } from './protocols/ipv4';
import { ip6FromString, ip6ToString, maskPrefix6 } from './protocols/ipv6';
import type { Vrf } from './vrf';

/** A route's prefix in either family: prefix6 is set (16 bytes) for IPv6. */
interface RoutePrefix {
  prefix: number;
  prefix6: Uint8Array | null;
  length: number;
}

export interface RouteNexthop {
  /** Underlay IPv4 of the node that has the destination. */
  address: string;
  label: number;
  /** Encapsulations that node accepts. */
  encaps: TunnelEncap[];
  /** VN (VRF name) of the destination, for policy. */
  vn?: string;
}

/** First id handed out for nexthops made here, clear of hand-written state files. */
const FIRST_DYNAMIC_NEXTHOP = 100_000;
const NO_MAC = new Uint8Array(6);

export class RouteProgrammer {
  private readonly dp: Dataplane;
  private nextNexthopId = FIRST_DYNAMIC_NEXTHOP;
  /**
   * dip -> tunnelKey(label, encap) -> the tunnel nexthop made for them; the
   * nexthop table has them back from the id. Two levels of small number
   * keys: a route dump makes a tunnel per route, and maps of 100,000 keys
   * cost several times more.
   */
  private readonly tunnels = new Map<number, Map<number, number>>();
  /** "vrf prefix/len" -> the composite owned by that route. */
  private readonly composites = new Map<string, number>();
  /** A local pod's nexthop -> the routes (VRF id, prefix) that lead to it, so the pod can leave cleanly. */
  private readonly localUsers = new Map<number, Map<string, { vrf: number } & RoutePrefix>>();

  constructor(dp: Dataplane) {
    this.dp = dp;
  }

  /** The id of a VRF, created (with no subnets) when it does not exist yet. */
  vrf(name: string): number {
    const found = this.dp.vrfs.find(name);
    if (found && found.name === name) return found.id;
    let id = 1;
    while (this.dp.vrfs.get(id)) id++;
    this.dp.addVrf(id, name);
    return id;
  }

  /**
   * Sets the route to exactly these next hops (replacing what it had); an
   * empty list deletes it. Next hops this node cannot use (no common
   * encapsulation, unknown local label) are skipped; returns how many were used.
   */
  setRoute(vrfName: string, prefixText: string, nexthops: RouteNexthop[]): number {
    const vrf = this.vrf(vrfName);
    const route = parsePrefix(prefixText);
    // Only routes with a composite, a previous nexthop or a local member need their key: not those of a route dump.
    let key: string | undefined;
    const routeKey = () => (key ??= `${vrf} ${formatPrefix(route)}`);
    let members: number[];
    if (nexthops.length === 1) {
      // A route dump's common case: one next hop, an exact one-element list.
      const id = this.resolve(nexthops[0]);
      members = id >= 0 ? [id] : [];
    } else {
      members = [];
      for (const nexthop of nexthops) {
        const id = this.resolve(nexthop);
        if (id >= 0 && !members.includes(id)) members.push(id);
      }
    }
    // This node's own next hop may be the label of a local composite (several local pods, as the agent
    // publishes them): the route takes its members, as composites do not nest and the agent deletes
    // the local composite when its pods go, whatever routes still name it.
    members = this.flattenLocalComposites(members);
    if (members.length === 0) {
      this.deleteRoute(vrfName, prefixText);
      return 0;
    }
    let target: number;
    if (members.length === 1) {
      target = members[0];
    } else {
      let composite = this.composites.get(routeKey()) ?? -1;
      if (composite < 0) {
        composite = this.nextNexthopId++;
        this.composites.set(routeKey(), composite);
        this.dp.setNexthop(composite, { kind: 'composite', members, vn: this.vnOf(nexthops[0]) });
      } else {
        this.updateMembers(composite, members);
      }
      target = composite;
    }
    let previous: number;
    if (route.prefix6) {
      previous = routeOf(this.dp.vrfs.get(vrf)!, route);
      this.dp.addRoute6(vrf, route.prefix6, route.length, target);
    } else {
      // The IPv4 table hands back what it replaced: one lookup less per route of a dump.
      previous = this.dp.addRoute(vrf, route.prefix, route.length, target);
    }
    if (previous >= 0 && previous !== target) this.release(previous, routeKey());
    if (members.length === 1 && this.composites.size > 0) this.dropComposite(routeKey());
    for (const member of members) {
      if (this.dp.nexthops.kind[member] === NH_TUNNEL) continue;
      let users = this.localUsers.get(member);
      if (!users) this.localUsers.set(member, (users = new Map()));
      users.set(routeKey(), { vrf, ...route });
    }
    return members.length;
  }

  /**
   * A local pod's nexthop is going away: routes that lead only to it are
   * deleted, ECMP routes lose that member (its slot left empty).
   */
  releaseLocal(nexthop: number): void {
    const users = this.localUsers.get(nexthop);
    if (!users) return;
    this.localUsers.delete(nexthop);
    const nexthops = this.dp.nexthops;
    for (const [key, route] of users) {
      const table = this.dp.vrfs.get(route.vrf);
      const current = table ? routeOf(table, route) : -1;
      if (current === nexthop) {
        this.removeRoute(route.vrf, route);
      } else if (current >= 0 && this.composites.get(key) === current) {
        const members = nexthops.members[current]!;
        const slot = members.indexOf(nexthop);
        if (slot >= 0) nexthops.removeMember(current, slot);
      }
    }
  }

  deleteRoute(vrfName: string, prefixText: string): boolean {
    const vrf = this.dp.vrfs.find(vrfName);
    if (!vrf) return false;
    const route = parsePrefix(prefixText);
    const previous = routeOf(vrf, route);
    if (previous < 0) return false;
    this.removeRoute(vrf.id, route);
    this.release(previous, `${vrf.id} ${formatPrefix(route)}`);
    return true;
  }

  private removeRoute(vrf: number, route: RoutePrefix): void {
    if (route.prefix6) this.dp.deleteRoute6(vrf, route.prefix6, route.length);
    else this.dp.deleteRoute(vrf, route.prefix, route.length);
  }

  private flattenLocalComposites(ids: number[]): number[] {
    const nexthops = this.dp.nexthops;
    if (!ids.some((id) => nexthops.kind[id] === NH_COMPOSITE)) return ids;
    const flat: number[] = [];
    for (const id of ids) {
      for (const member of nexthops.kind[id] === NH_COMPOSITE ? nexthops.members[id]! : [id]) if (member >= 0 && !flat.includes(member)) flat.push(member);
    }
    return flat;
  }

  /** Keeps surviving members in their slots; removed ones leave holes; new ones fill holes first. */
  private updateMembers(composite: number, wanted: number[]): void {
    const nexthops = this.dp.nexthops;
    const current = nexthops.members[composite]!;
    for (let slot = 0; slot < current.length; slot++) {
      const member = current[slot];
      if (member >= 0 && !wanted.includes(member)) {
        nexthops.removeMember(composite, slot);
        this.releaseIfUnused(member);
      }
    }
    for (const member of wanted) {
      if (!nexthops.members[composite]!.includes(member)) nexthops.addMember(composite, member);
    }
  }

  private resolve(nexthop: RouteNexthop): number {
    const dip = ipFromString(nexthop.address);
    if (dip === this.dp.node.underlayIp) return this.dp.labels.lookup(nexthop.label);
    const encap = this.preferredEncap(nexthop.encaps);
    if (encap === undefined) return -1;
    const key = tunnelKey(nexthop.label, encap);
    let tunnels = this.tunnels.get(dip);
    const existing = tunnels?.get(key);
    if (existing !== undefined) return existing;
    const fabric = this.dp.vifs.fabricVif;
    if (fabric < 0) return -1;
    const id = this.nextNexthopId++;
    this.dp.setNexthop(id, {
      kind: 'tunnel',
      vif: fabric,
      dip,
      sip: this.dp.node.underlayIp,
      label: nexthop.label,
      encap,
      mac: NO_MAC, // the daemon sends IP packets; the kernel resolves the underlay neighbour
      vn: this.vnOf(nexthop),
    });
    if (!tunnels) this.tunnels.set(dip, (tunnels = new Map()));
    tunnels.set(key, id);
    return id;
  }

  /** This node's most preferred encapsulation of those a next hop accepts. */
  private preferredEncap(accepted: TunnelEncap[]): TunnelEncap | undefined {
    for (const candidate of this.dp.node.encapPriority) if (accepted.includes(candidate)) return candidate;
    return undefined;
  }

  private vnOf(nexthop: RouteNexthop): number | undefined {
    return nexthop.vn === undefined ? undefined : this.vrf(nexthop.vn);
  }

  /** A nexthop a route stopped using: its composite goes, tunnels nobody uses go. */
  private release(nexthop: number, routeKey: string): void {
    if (this.dp.nexthops.kind[nexthop] === NH_COMPOSITE && this.composites.get(routeKey) === nexthop) {
      this.dropComposite(routeKey);
    }
    this.releaseIfUnused(nexthop);
  }

  private dropComposite(routeKey: string): void {
    const composite = this.composites.get(routeKey);
    if (composite === undefined || this.dp.nexthops.refCount[composite] > 0) return;
    const members = [...this.dp.nexthops.members[composite]!];
    this.dp.deleteNexthop(composite);
    this.composites.delete(routeKey);
    for (const member of members) if (member >= 0) this.releaseIfUnused(member);
  }

  private releaseIfUnused(id: number): void {
    const nexthops = this.dp.nexthops;
    if (nexthops.kind[id] !== NH_TUNNEL || nexthops.refCount[id] > 0) return;
    const dip = nexthops.dip[id];
    const tunnels = this.tunnels.get(dip);
    const key = tunnelKey(nexthops.label[id], nexthops.encap[id] === ENCAP_MPLS_GRE ? 'gre' : 'udp');
    // A tunnel of a state file is not ours to delete.
    if (tunnels?.get(key) !== id) return;
    this.dp.deleteNexthop(id);
    tunnels.delete(key);
    if (tunnels.size === 0) this.tunnels.delete(dip);
  }
}

/** A tunnel's key among those to one dip. */
function tunnelKey(label: number, encap: TunnelEncap): number {
  return label * 2 + (encap === 'gre' ? 1 : 0);
}

function parsePrefix(text: string): RoutePrefix {
  // As text.split('/')'s first two parts, without the array (a dump parses one prefix per route).
  const slash = text.indexOf('/');
  const address = slash < 0 ? text : text.slice(0, slash);
  const lengthEnd = slash < 0 ? -1 : text.indexOf('/', slash + 1);
  const lengthText = slash < 0 ? undefined : text.slice(slash + 1, lengthEnd < 0 ? text.length : lengthEnd);
  if (address.includes(':')) {
    const length = lengthText === undefined ? 128 : Number(lengthText);
    if (!Number.isInteger(length) || length < 0 || length > 128) throw new Error(`not an IPv6 prefix: ${text}`);
    return { prefix: 0, prefix6: maskPrefix6(ip6FromString(address), length), length };
  }
  const length = lengthText === undefined ? 32 : Number(lengthText);
  if (!Number.isInteger(length) || length < 0 || length > 32) throw new Error(`not an IPv4 prefix: ${text}`);
  return { prefix: (ipFromString(address) & prefixMask(length)) >>> 0, prefix6: null, length };
}

/** The nexthop a VRF's table of the prefix's family holds for exactly that prefix, or -1. */
function routeOf(vrf: Vrf, route: RoutePrefix): number {
  return route.prefix6 ? vrf.routes6.get(route.prefix6, route.length) : vrf.routes.get(route.prefix, route.length);
}

/** The prefix as text in its canonical form (RFC 5952 for IPv6): one route, one key, however it was written. */
function formatPrefix(route: RoutePrefix): string {
  return `${route.prefix6 ? ip6ToString(route.prefix6) : ipToString(route.prefix)}/${route.length}`;
}
