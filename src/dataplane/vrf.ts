/**
 * VRFs: one routing instance per virtual network, each with its own IPv4
 * and IPv6 longest-prefix-match tables (route -> nexthop id), its subnets
 * (which the ARP and neighbour discovery proxies answer for) and its
 * gateway addresses (the source of the ICMP errors the vrouter sends to pods).
 */
import { Dir1688Table } from './lpm/dir-16-8-8';
import { HashedLengths6Table } from './lpm/hashed-lengths6';
import { prefixMask } from './lpm/prefix-table';
import { inPrefix6 } from './protocols/ipv6';

export interface Subnet {
  prefix: number;
  length: number;
}

export interface Subnet6 {
  prefix: Uint8Array;
  length: number;
}

export class Vrf {
  readonly id: number;
  readonly name: string;
  readonly routes = new Dir1688Table();
  readonly routes6 = new HashedLengths6Table();
  subnets: Subnet[];
  /** Gateway IPv4, 0 when the VN has none. */
  gateway: number;
  subnets6: Subnet6[] = [];
  /** Gateway IPv6 (16 bytes), null when the VN has none. */
  gateway6: Uint8Array | null = null;

  constructor(id: number, name: string, subnets: Subnet[], gateway: number) {
    this.id = id;
    this.name = name;
    this.subnets = subnets;
    this.gateway = gateway >>> 0;
  }

  /** True when address falls in one of the VN's subnets. */
  inSubnets(address: number): boolean {
    const subnets = this.subnets;
    for (let i = 0; i < subnets.length; i++) {
      if (((address & prefixMask(subnets[i].length)) >>> 0) === subnets[i].prefix) return true;
    }
    return false;
  }

  /** True when the IPv6 address at data[offset] falls in one of the VN's IPv6 subnets. */
  inSubnets6(data: Uint8Array, offset: number): boolean {
    const subnets = this.subnets6;
    for (let i = 0; i < subnets.length; i++) if (inPrefix6(data, offset, subnets[i].prefix, subnets[i].length)) return true;
    return false;
  }
}

export class VrfTable {
  /** Indexed by VRF id; holes are null. */
  readonly byId: (Vrf | null)[] = [];
  private readonly byName = new Map<string, Vrf>();

  add(id: number, name: string, subnets: Subnet[] = [], gateway = 0): Vrf {
    if (this.get(id)) throw new Error(`vrf ${id} already exists`);
    if (this.byName.has(name)) throw new Error(`vrf name ${name} already in use`);
    const vrf = new Vrf(id, name, subnets, gateway);
    while (this.byId.length <= id) this.byId.push(null);
    this.byId[id] = vrf;
    this.byName.set(name, vrf);
    return vrf;
  }

  remove(id: number): boolean {
    const vrf = this.get(id);
    if (!vrf) return false;
    this.byId[id] = null;
    this.byName.delete(vrf.name);
    return true;
  }

  get(id: number): Vrf | null {
    return id >= 0 && id < this.byId.length ? this.byId[id] : null;
  }

  find(nameOrId: string): Vrf | null {
    const named = this.byName.get(nameOrId);
    if (named) return named;
    return /^\d+$/.test(nameOrId) ? this.get(Number(nameOrId)) : null;
  }

  *[Symbol.iterator](): IterableIterator<Vrf> {
    for (const vrf of this.byId) if (vrf) yield vrf;
  }
}
