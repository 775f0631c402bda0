/**
 * One node's forwarding state: interfaces, VRFs with their routes, nexthops,
 * the MPLS label table and drop counters. The state file loader, the replay
 * CLI and (later) the control client program it through these methods; the
 * pipeline reads it.
 */
import { DropStats } from './drop-reasons';
import { DEFAULT_FLOW_CAPACITY, DEFAULT_IDLE_TIMEOUT_SECONDS, DEFAULT_VIF_FLOW_LIMIT, FlowTable } from './flow-table';
import { PolicyTable } from './policy';
import { MplsLabelTable } from './mpls-labels';
import { NexthopSpec, NexthopTable, TunnelEncap } from './nexthop';
import { Subnet, Subnet6, VrfTable } from './vrf';
import { VifConfig, VifTable } from './vif';

export interface NodeConfig {
  name: string;
  /** Underlay IPv4 of this node: the outer source of tunnels and the address decapsulated for. */
  underlayIp: number;
  /** Encapsulations this node sends and accepts, best first. */
  encapPriority: TunnelEncap[];
}

export interface DataplaneOptions {
  labelTableSize?: number;
  /** Flow entries (two per flow pair); default 512K. */
  flowCapacity?: number;
  /** Seconds before an idle flow pair is removed; default 180. */
  flowIdleTimeout?: number;
  /** Flow pairs a vif may hold unless its own maxFlows says otherwise (0: no limit); default 65536. */
  vifFlowLimit?: number;
  /** Flow entries that may be IPv6 (two per pair); default a quarter of flowCapacity. */
  flowIpv6Capacity?: number;
}

export class Dataplane {
  readonly node: NodeConfig;
  readonly vifs = new VifTable();
  readonly vrfs = new VrfTable();
  readonly nexthops = new NexthopTable();
  readonly labels: MplsLabelTable;
  readonly drops = new DropStats();
  readonly flows: FlowTable;
  readonly policy = new PolicyTable();
  /** Packets the vrouter made itself (ICMP errors), so rx + generated = tx + dropped. */
  generated = 0;
  /** Flow pairs a vif added without a maxFlows of its own may hold (0: no limit). */
  readonly vifFlowLimit: number;

  constructor(node: NodeConfig, options: DataplaneOptions = {}) {
    this.node = { ...node, underlayIp: node.underlayIp >>> 0 };
    this.labels = new MplsLabelTable(options.labelTableSize);
    const capacity = options.flowCapacity ?? DEFAULT_FLOW_CAPACITY;
    this.flows = new FlowTable(capacity, options.flowIdleTimeout ?? DEFAULT_IDLE_TIMEOUT_SECONDS, options.flowIpv6Capacity ?? 2 * Math.ceil(capacity / 8));
    this.vifFlowLimit = options.vifFlowLimit ?? DEFAULT_VIF_FLOW_LIMIT;
  }

  addVif(config: VifConfig): void {
    if (config.vrf >= 0 && !this.vrfs.get(config.vrf)) throw new Error(`vif ${config.id}: vrf ${config.vrf} does not exist`);
    this.vifs.add({ ...config, maxFlows: config.maxFlows ?? this.vifFlowLimit });
  }

  removeVif(id: number): void {
    if (!this.vifs.remove(id)) throw new Error(`vif ${id} does not exist`);
  }

  addVrf(id: number, name: string, subnets: Subnet[] = [], gateway = 0): void {
    this.vrfs.add(id, name, subnets, gateway);
  }

  /** The VRF's IPv6 subnets (for the neighbour discovery proxy) and gateway (the source of ICMPv6 errors). */
  setVrfIpv6(id: number, subnets6: Subnet6[], gateway6: Uint8Array | null): void {
    const vrf = this.vrfs.get(id);
    if (!vrf) throw new Error(`vrf ${id} does not exist`);
    vrf.subnets6 = subnets6;
    vrf.gateway6 = gateway6;
  }

  setNexthop(id: number, spec: NexthopSpec): void {
    // A receive nexthop may have no host vif to deliver to (vif -1): such packets are dropped.
    const optionalVif = spec.kind === 'receive' && spec.vif < 0;
    if ('vif' in spec && !optionalVif && !this.vifs.get(spec.vif)) throw new Error(`nexthop ${id}: vif ${spec.vif} does not exist`);
    this.nexthops.set(id, spec);
    // A local pod's nexthop leads into its own VN.
    if (spec.kind === 'encap') this.nexthops.vn[id] = this.vifs.get(spec.vif)!.vrf;
    // Packets for the vrouter itself go to the host vif, addressed to its MAC.
    if (spec.kind === 'receive' && !optionalVif) this.nexthops.mac.set(this.vifs.get(spec.vif)!.mac, id * 6);
  }

  deleteNexthop(id: number): void {
    this.nexthops.delete(id);
  }

  /** Adds or replaces a route; the nexthop must exist. */
  /** Returns the nexthop the route had, -1 when it is new. */
  addRoute(vrf: number, prefix: number, length: number, nexthop: number): number {
    const table = this.vrfTable(vrf);
    if (!this.nexthops.exists(nexthop)) throw new Error(`route in vrf ${vrf}: nexthop ${nexthop} does not exist`);
    const previous = table.insert(prefix, length, nexthop);
    if (previous >= 0) this.nexthops.refCount[previous]--;
    this.nexthops.refCount[nexthop]++;
    return previous;
  }

  deleteRoute(vrf: number, prefix: number, length: number): boolean {
    const table = this.vrfTable(vrf);
    const previous = table.get(prefix, length);
    if (previous < 0) return false;
    table.remove(prefix, length);
    this.nexthops.refCount[previous]--;
    return true;
  }

  /** Adds or replaces an IPv6 route (prefix: 16 bytes); the nexthop must exist. */
  addRoute6(vrf: number, prefix: Uint8Array, length: number, nexthop: number): void {
    const table = this.vrfRecord(vrf).routes6;
    if (!this.nexthops.exists(nexthop)) throw new Error(`route in vrf ${vrf}: nexthop ${nexthop} does not exist`);
    const previous = table.get(prefix, length);
    if (previous >= 0) this.nexthops.refCount[previous]--;
    table.insert(prefix, length, nexthop);
    this.nexthops.refCount[nexthop]++;
  }

  deleteRoute6(vrf: number, prefix: Uint8Array, length: number): boolean {
    const table = this.vrfRecord(vrf).routes6;
    const previous = table.get(prefix, length);
    if (previous < 0) return false;
    table.remove(prefix, length);
    this.nexthops.refCount[previous]--;
    return true;
  }

  setLabel(label: number, nexthop: number): void {
    if (!this.nexthops.exists(nexthop)) throw new Error(`label ${label}: nexthop ${nexthop} does not exist`);
    const previous = this.labels.lookup(label);
    this.labels.set(label, nexthop);
    if (previous >= 0) this.nexthops.refCount[previous]--;
    this.nexthops.refCount[nexthop]++;
  }

  deleteLabel(label: number): boolean {
    const previous = this.labels.delete(label);
    if (previous < 0) return false;
    this.nexthops.refCount[previous]--;
    return true;
  }

  private vrfTable(vrf: number) {
    return this.vrfRecord(vrf).routes;
  }

  private vrfRecord(vrf: number) {
    const found = this.vrfs.get(vrf);
    if (!found) throw new Error(`vrf ${vrf} does not exist`);
    return found;
  }
}
