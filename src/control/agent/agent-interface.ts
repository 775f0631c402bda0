/**
 * What the control client needs from the vrouter daemon, and what it is
 * given: the daemon reports local pod ports (LocalPort) and implements
 * DataplaneAccess by forwarding each call to whatever owns its Dataplane
 * (its dataplane worker). dataplane-access.ts implements it over an
 * in-process Dataplane + RouteProgrammer; the worker can run that class as is.
 *
 * Order of calls for one port: configurePort (the vif, its encap nexthop and
 * label exist afterwards), then setRoute for its own addresses; before
 * unconfigurePort every route through the port has been deleted or shrunk.
 */
import type { RouteNexthop } from '../../dataplane/route-programmer';

export type { RouteNexthop };

export interface DataplaneAccess {
  /** Sets a route in the VRF named `vrf` to exactly these next hops (an ECMP composite when several); see RouteProgrammer.setRoute. */
  setRoute(vrf: string, prefix: string, nexthops: RouteNexthop[]): void;
  deleteRoute(vrf: string, prefix: string): void;
  /**
   * Makes the port look like `config`: its vif in the VN's VRF with the IP
   * and floating IPs, the VRF's subnet and gateway, its MPLS label leading
   * to the pod, and the VN's policies in the node's policy table. Called
   * again with a new config when the control node changes it (same port).
   */
  configurePort(port: LocalPort, config: PortConfig): void | Promise<void>;
  /** Undoes configurePort: the port is gone or the control node refused it. */
  unconfigurePort(port: LocalPort): void | Promise<void>;
  /**
   * Points `label` (of LOCAL_COMPOSITE_LABELS) at an ECMP composite of these
   * configured ports' pods, each packet's pod chosen by its flow; an empty
   * list removes the label. Two or more local pods behind one prefix are
   * published as that one label, as the agent does.
   */
  setLocalComposite(label: number, portIds: string[]): void;
}

/**
 * The labels the control client gives local composites: the top of the
 * dataplane's 16-bit label table, above the pod labels the daemon gives
 * from 16 up.
 */
export const LOCAL_COMPOSITE_LABELS = { first: 0xf000, last: 0xffff } as const;

/** A pod's interface on this node, as the daemon reports it (from the CNI add). */
export interface LocalPort {
  /** Unique on this node, stable for the port's life (e.g. the pod UID + interface); the VMI uuid of an agent port. */
  id: string;
  /** The uuid of the port's virtual-machine (the pod), subscribed over IF-MAP; the port id when absent. */
  vmUuid?: string;
  /** The pod's name and namespace. */
  name: string;
  namespace: string;
  /** The pod's labels: `name` picks the VN, `uses` a service it may reach, the rest feed service selectors. */
  labels: Record<string, string>;
  /** A VN asked for explicitly; otherwise the control node decides from the labels. */
  vn?: string;
  /** The pod's address when it already has one; otherwise the control node allocates one. */
  ip?: string;
  mac: string;
  /** The MPLS label the daemon gave the pod (16..1048575); remote nodes tunnel to it with this label. */
  label: number;
}

/** A service port and the pod port it maps to. */
export interface PortMapping {
  protocol: 'tcp' | 'udp';
  port: number;
  targetPort: number;
}

/** A service ClusterIP this pod backs: packets to it are DNATed to the pod, ports mapped. */
export interface FloatingIpConfig {
  /** IPv4, or IPv6 (a dual-stack service's second ClusterIP, NATed to the pod's IPv6 address). */
  ip: string;
  portMap: PortMapping[];
  /**
   * The VN of an external (router-external) floating IP pool: the address is
   * published in that VN's routing instance, as the agent publishes a
   * floating IP in its pool's VN. Absent: in the port's own (a ClusterIP).
   * By FQN in a PortConfig, by network.yaml name in the control node's decisions.
   */
  vn?: string;
}

/**
 * A dataplane PolicyRule with VNs by name. The node's policy table is the
 * union of the policies of its ports' VNs, deduplicated by name and sorted
 * by `order` (first match wins).
 */
export interface PortPolicy {
  name: string;
  order: number;
  sourceVn: string;
  destinationVn: string;
  protocol: 'any' | 'tcp' | 'udp' | 'icmp';
  /** Destination port range, inclusive. */
  portFrom: number;
  portTo: number;
  /** "a.b.c.d/len"; absent for any destination. */
  destinationPrefix?: string;
  action: 'allow' | 'deny';
}

/** What the control node decided for one port, as the agent reads it from IF-MAP. */
export interface PortConfig {
  /** The routing instance's FQN (`default-domain:default-project:web:web`): the VRF, subscribed and published in. */
  vrf: string;
  /** The virtual network's FQN (`default-domain:default-project:web`): what policies and next hops name. */
  vn: string;
  ip: string;
  /** The VN's subnet "a.b.c.d/len" and gateway address. */
  subnet: string;
  gateway: string;
  /** A dual-stack port's IPv6 address, its VN's IPv6 subnet "x:x::/len" and gateway; all three or none. */
  ip6?: string;
  subnet6?: string;
  gateway6?: string;
  floatingIps: FloatingIpConfig[];
  /** Policies naming this VN as source or destination (VNs by FQN, or `any`). */
  policies: PortPolicy[];
  /**
   * A software gateway interface (the agent's vgw, `vrouter run --gateway`),
   * configured on its node and not by the control node: it sends from any
   * address, only to its ip_blocks (the VRF's subnets, ARP answered for them).
   */
  vgw?: { ipBlocks: string[] };
}

/** The virtual-machine a port belongs to: its vmUuid, else its id. */
export function vmUuidOf(port: LocalPort): string {
  return port.vmUuid ?? port.id;
}
