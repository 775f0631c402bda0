/**
 * Virtual interfaces (vifs): numbered like OpenContrail's `vif` table. A vif
 * is what the pipeline knows of an interface (kind, MAC, IP, VRF, MTU,
 * counters); how its bytes move is its port, behind one small type, so a TAP
 * device, a UDP socket, a pcap file and an in-memory queue are interchangeable.
 */
import { sameAddress6 } from './protocols/ipv6';

export type VifKind = 'virtual' | 'fabric' | 'host' | 'agent';

export const VIF_VIRTUAL = 0;
export const VIF_FABRIC = 1;
export const VIF_HOST = 2;
export const VIF_AGENT = 3;
const KIND_CODES: Record<VifKind, number> = { virtual: VIF_VIRTUAL, fabric: VIF_FABRIC, host: VIF_HOST, agent: VIF_AGENT };
export const VIF_KIND_NAMES: readonly VifKind[] = ['virtual', 'fabric', 'host', 'agent'];

/** Where a vif's transmitted frames go. */
export interface PacketPort {
  /**
   * Sends the frame at data[offset, offset + length). The bytes belong to the
   * pipeline again once send returns, so a port that queues must copy them.
   */
  send(data: Buffer, offset: number, length: number): void;
  /** End of a batch: a port that queues sends what it holds. */
  flush(): void;
}

/** A port that discards what it is given (a vif with nothing attached yet). */
export const NULL_PORT: PacketPort = { send() {}, flush() {} };

/** A floating IP (a service ClusterIP) a pod answers for, with its service port map. */
export interface FloatingIp {
  ip: number;
  /** Service port -> the pod's target port, per protocol. Empty: ports unchanged. */
  portMap: Array<{ protocol: number; port: number; targetPort: number }>;
}

/** An IPv6 floating IP (16 bytes). */
export interface FloatingIp6 {
  ip: Uint8Array;
  portMap: FloatingIp['portMap'];
}

export interface VifConfig {
  id: number;
  kind: VifKind;
  name: string;
  mac: Uint8Array;
  /** IPv4 address as an unsigned 32-bit number, 0 when none. */
  ip: number;
  /** VRF id, -1 for none (the fabric). */
  vrf: number;
  mtu: number;
  floatingIps?: FloatingIp[];
  /** Flow pairs this vif may hold (0: no limit); the dataplane's default when absent. */
  maxFlows?: number;
  /** IPv6 address (16 bytes), absent or null when none. */
  ip6?: Uint8Array | null;
  floatingIps6?: FloatingIp6[];
  /** A software gateway's interface (vgw): it sends from any address, to its VRF's subnets only. */
  gateway?: boolean;
}

export class Vif {
  readonly id: number;
  readonly kind: number;
  readonly kindName: VifKind;
  readonly name: string;
  readonly mac: Uint8Array;
  readonly ip: number;
  readonly vrf: number;
  readonly mtu: number;
  floatingIps: FloatingIp[];
  /** Flow pairs the vif may hold, 0 for no limit. */
  readonly maxFlows: number;
  /** The pod's IPv6 address; it may arrive after the port (the agent learns it with the VMI's instance IPs). */
  ip6: Uint8Array | null;
  floatingIps6: FloatingIp6[];
  readonly gateway: boolean;
  port: PacketPort = NULL_PORT;
  rxPackets = 0;
  rxBytes = 0;
  txPackets = 0;
  txBytes = 0;

  constructor(config: VifConfig) {
    this.id = config.id;
    this.kind = KIND_CODES[config.kind];
    this.kindName = config.kind;
    this.name = config.name;
    this.mac = Uint8Array.from(config.mac);
    this.ip = config.ip >>> 0;
    this.vrf = config.vrf;
    this.mtu = config.mtu;
    this.floatingIps = config.floatingIps ?? [];
    this.maxFlows = config.maxFlows ?? 0;
    this.ip6 = config.ip6 ? Uint8Array.from(config.ip6) : null;
    this.floatingIps6 = config.floatingIps6 ?? [];
    this.gateway = config.gateway === true;
  }

  /** The floating IP entry for an address this vif answers for, or null. */
  floatingIp(address: number): FloatingIp | null {
    for (const fip of this.floatingIps) if (fip.ip === address) return fip;
    return null;
  }

  /** The IPv6 floating IP entry for the address at data[offset], or null. */
  floatingIp6(data: Uint8Array, offset: number): FloatingIp6 | null {
    const fips = this.floatingIps6;
    for (let i = 0; i < fips.length; i++) if (sameAddress6(fips[i].ip, 0, data, offset)) return fips[i];
    return null;
  }

  counters(): { rxPackets: number; rxBytes: number; txPackets: number; txBytes: number } {
    return { rxPackets: this.rxPackets, rxBytes: this.rxBytes, txPackets: this.txPackets, txBytes: this.txBytes };
  }
}

export class VifTable {
  /** Indexed by vif id; holes are null. */
  readonly byId: (Vif | null)[] = [];
  private readonly byName = new Map<string, Vif>();
  /** The underlay interface tunnels leave by, -1 until one is added. */
  fabricVif = -1;

  add(config: VifConfig): Vif {
    if (this.get(config.id)) throw new Error(`vif ${config.id} already exists`);
    if (this.byName.has(config.name)) throw new Error(`vif name ${config.name} already in use`);
    const vif = new Vif(config);
    while (this.byId.length <= config.id) this.byId.push(null);
    this.byId[config.id] = vif;
    this.byName.set(config.name, vif);
    if (vif.kind === VIF_FABRIC && this.fabricVif < 0) this.fabricVif = vif.id;
    return vif;
  }

  remove(id: number): boolean {
    const vif = this.get(id);
    if (!vif) return false;
    this.byId[id] = null;
    this.byName.delete(vif.name);
    if (this.fabricVif === id) this.fabricVif = -1;
    return true;
  }

  get(id: number): Vif | null {
    return id >= 0 && id < this.byId.length ? this.byId[id] : null;
  }

  /** Finds a vif by name, or by number given as text. */
  find(nameOrId: string): Vif | null {
    const named = this.byName.get(nameOrId);
    if (named) return named;
    return /^\d+$/.test(nameOrId) ? this.get(Number(nameOrId)) : null;
  }

  *[Symbol.iterator](): IterableIterator<Vif> {
    for (const vif of this.byId) if (vif) yield vif;
  }
}
