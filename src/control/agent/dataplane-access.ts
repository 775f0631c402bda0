/**
 * DataplaneAccess over a Dataplane in this process: routes through a
 * RouteProgrammer, ports as vifs. What the daemon's dataplane worker runs
 * behind its messages, and what the tests use (real tables, no mocks).
 *
 * A configured port is a virtual vif (named by the port id) in its routing
 * instance's VRF with its address and floating IPs, an encap nexthop to it,
 * and its MPLS label leading to that nexthop (a gateway's vif, PortConfig
 * vgw, has its ip_blocks as the VRF's subnets). A change of VRF or address
 * re-creates the vif; other changes are made in place. The node's policy
 * table is the union of the configured ports' policies, in the control
 * node's order.
 *
 * A local composite is a label leading to an ECMP composite of configured
 * ports' encap nexthops; a member keeps its slot while it stays, so flows
 * on the other members keep their pod.
 *
 * The dataplane tells VNs apart by VRF id (a packet's VN is its vif's VRF,
 * or its route's next hop's), so a policy's VN FQN is given the id of the
 * VN's own routing instance, as the control client does for next hops.
 */
import { Dataplane } from '../../dataplane/dataplane';
import { ANY_PROTOCOL, ANY_VN, PolicyRule } from '../../dataplane/policy';
import { parseMac } from '../../dataplane/protocols/ethernet';
import { ipFromString } from '../../dataplane/protocols/ipv4';
import { ip6FromString, maskPrefix6 } from '../../dataplane/protocols/ipv6';
import { RouteProgrammer } from '../../dataplane/route-programmer';
import { FloatingIp, FloatingIp6 } from '../../dataplane/vif';
import { ownRoutingInstance } from '../ifmap/names';
import type { DataplaneAccess, LocalPort, PortConfig, PortPolicy, RouteNexthop } from './agent-interface';

const PROTOCOL_NUMBERS: Record<PortPolicy['protocol'], number> = { any: ANY_PROTOCOL, icmp: 1, tcp: 6, udp: 17 };
const DEFAULT_MTU = 1500;

interface ConfiguredPort {
  vif: number;
  encapNexthop: number;
  label: number;
  vrf: number;
  ip: number;
  /** The IPv6 address as configured ('' when single stack). */
  ip6: string;
  policies: PortPolicy[];
}

export class InProcessDataplaneAccess implements DataplaneAccess {
  private readonly ports = new Map<string, ConfiguredPort>();
  /** Local composite label -> its composite nexthop. */
  private readonly composites = new Map<number, number>();

  constructor(
    readonly dataplane: Dataplane,
    readonly routes: RouteProgrammer = new RouteProgrammer(dataplane),
  ) {}

  setRoute(vrf: string, prefix: string, nexthops: RouteNexthop[]): void {
    this.routes.setRoute(vrf, prefix, nexthops);
  }

  deleteRoute(vrf: string, prefix: string): void {
    this.routes.deleteRoute(vrf, prefix);
  }

  configurePort(port: LocalPort, config: PortConfig): void {
    const dp = this.dataplane;
    const vrf = this.routes.vrf(config.vrf);
    const table = dp.vrfs.get(vrf)!;
    table.subnets = (config.vgw?.ipBlocks ?? [config.subnet]).map(parsePrefix);
    table.gateway = ipFromString(config.gateway);
    // A dual-stack VN: the neighbour discovery proxy answers for its IPv6 subnet, router advertisements give the gateway.
    if (config.subnet6 !== undefined && config.gateway6 !== undefined) dp.setVrfIpv6(vrf, [parsePrefix6(config.subnet6)], ip6FromString(config.gateway6));
    const ip = ipFromString(config.ip);
    const ip6 = config.ip6 ?? '';
    const portMapOf = (floatingIp: PortConfig['floatingIps'][number]) =>
      floatingIp.portMap.map((entry) => ({ protocol: PROTOCOL_NUMBERS[entry.protocol], port: entry.port, targetPort: entry.targetPort }));
    const floatingIps: FloatingIp[] = config.floatingIps.filter((floatingIp) => !floatingIp.ip.includes(':')).map((floatingIp) => ({ ip: ipFromString(floatingIp.ip), portMap: portMapOf(floatingIp) }));
    const floatingIps6: FloatingIp6[] = config.floatingIps.filter((floatingIp) => floatingIp.ip.includes(':')).map((floatingIp) => ({ ip: ip6FromString(floatingIp.ip), portMap: portMapOf(floatingIp) }));
    let configured = this.ports.get(port.id);
    if (configured && (configured.vrf !== vrf || configured.ip !== ip || configured.ip6 !== ip6)) {
      this.tearDown(configured);
      configured = undefined;
    }
    if (configured) {
      const vif = dp.vifs.get(configured.vif)!;
      vif.floatingIps = floatingIps;
      vif.floatingIps6 = floatingIps6;
    } else {
      const mac = parseMac(port.mac);
      let vif = 0;
      while (dp.vifs.get(vif)) vif++;
      dp.addVif({ id: vif, kind: 'virtual', name: port.id, mac, ip, vrf, mtu: DEFAULT_MTU, floatingIps, ip6: ip6 === '' ? null : ip6FromString(ip6), floatingIps6, gateway: config.vgw !== undefined });
      const encapNexthop = this.freeNexthop();
      dp.setNexthop(encapNexthop, { kind: 'encap', vif, mac });
      dp.setLabel(port.label, encapNexthop);
      configured = { vif, encapNexthop, label: port.label, vrf, ip, ip6, policies: [] };
      this.ports.set(port.id, configured);
    }
    configured.policies = config.policies;
    this.refreshPolicies();
  }

  setLocalComposite(label: number, portIds: string[]): void {
    const dp = this.dataplane;
    const composite = this.composites.get(label);
    const wanted = portIds.map((id) => this.ports.get(id)?.encapNexthop ?? -1).filter((nexthop) => nexthop >= 0);
    if (wanted.length === 0) {
      if (composite === undefined) return;
      dp.deleteLabel(label);
      dp.deleteNexthop(composite);
      this.composites.delete(label);
      return;
    }
    if (composite === undefined) {
      const nexthop = this.freeNexthop();
      dp.setNexthop(nexthop, { kind: 'composite', members: wanted });
      dp.setLabel(label, nexthop);
      this.composites.set(label, nexthop);
      return;
    }
    dp.nexthops.members[composite]!.forEach((member, slot) => {
      if (member >= 0 && !wanted.includes(member)) dp.nexthops.removeMember(composite, slot);
    });
    for (const member of wanted) if (!dp.nexthops.members[composite]!.includes(member)) dp.nexthops.addMember(composite, member);
  }

  unconfigurePort(port: LocalPort): void {
    const configured = this.ports.get(port.id);
    if (!configured) return;
    this.tearDown(configured);
    this.ports.delete(port.id);
    this.refreshPolicies();
  }

  /** The vif of a configured port, -1 when it is not configured. */
  vifOf(portId: string): number {
    return this.ports.get(portId)?.vif ?? -1;
  }

  private freeNexthop(): number {
    let id = 1;
    while (this.dataplane.nexthops.exists(id)) id++;
    return id;
  }

  private tearDown(configured: ConfiguredPort): void {
    const dp = this.dataplane;
    // Routes still leading to the pod (leaked into other VNs) and local composites let go of it first.
    this.routes.releaseLocal(configured.encapNexthop);
    for (const nexthop of this.composites.values()) {
      const slot = dp.nexthops.members[nexthop]!.indexOf(configured.encapNexthop);
      if (slot >= 0) dp.nexthops.removeMember(nexthop, slot);
    }
    dp.deleteLabel(configured.label);
    dp.deleteNexthop(configured.encapNexthop);
    dp.removeVif(configured.vif);
  }

  /** A policy's VN (FQN, or contrail's `any`) as the dataplane compares it. */
  private policyVn(vnFqn: string): number {
    return vnFqn === 'any' ? ANY_VN : this.routes.vrf(ownRoutingInstance(vnFqn));
  }

  private refreshPolicies(): void {
    const byName = new Map<string, PortPolicy>();
    for (const configured of this.ports.values()) for (const policy of configured.policies) byName.set(policy.name, policy);
    this.dataplane.policy.setRules([...byName.values()]
      .sort((a, b) => a.order - b.order)
      .map((policy): PolicyRule => {
        const v6 = policy.destinationPrefix?.includes(':') === true;
        const destination = policy.destinationPrefix === undefined ? { prefix: 0, length: 0 } : v6 ? { prefix: 0, length: parsePrefix6(policy.destinationPrefix).length } : parsePrefix(policy.destinationPrefix);
        return {
          name: policy.name,
          sourceVn: this.policyVn(policy.sourceVn),
          destinationVn: this.policyVn(policy.destinationVn),
          protocol: PROTOCOL_NUMBERS[policy.protocol],
          portFrom: policy.portFrom,
          portTo: policy.portTo,
          destinationPrefix: destination.prefix,
          destinationLength: destination.length,
          // An IPv6 destination makes the rule one for IPv6 flows (the dataplane's Policy.match6).
          ...(v6 ? { destinationPrefix6: parsePrefix6(policy.destinationPrefix!).prefix } : {}),
          allow: policy.action === 'allow',
        };
      }));
  }
}

function parsePrefix(text: string): { prefix: number; length: number } {
  const [address, length] = text.split('/');
  return { prefix: ipFromString(address), length: Number(length) };
}

function parsePrefix6(text: string): { prefix: Uint8Array; length: number } {
  const [address, length] = text.split('/');
  return { prefix: maskPrefix6(ip6FromString(address), Number(length)), length: Number(length) };
}
