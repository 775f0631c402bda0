/**
 * The control node's configuration as IF-MAP: from the NetworkManager's
 * decisions, the identifier graph a real agent consumes (node types, link
 * metadata and property names of tungstenfabric/tf-api-client @ c0011de9
 * schema/vnc_cfg.xsd; shapes as in tungstenfabric/tf-controller @ 6a674397
 * src/ifmap/testdata/cli1_vn1_vm3_add.master_output), and per vrouter the
 * part of it that vrouter subscribed to.
 *
 *   virtual-router default-global-system-config:<node>
 *     -- virtual-router-virtual-machine -- virtual-machine <vm uuid> (display-name k8s__<namespace>__<pod>)
 *     -- virtual-machine-interface-virtual-machine -- virtual-machine-interface <vm uuid>:<port id>
 *          (virtual-machine-interface-mac-addresses, annotations)
 *        -- instance-ip (instance-ip-address) -- virtual-network
 *        -- virtual-machine-interface-virtual-network -- virtual-network default-domain:default-project:<vn>
 *        -- attr virtual-machine-interface-routing-instance (direction both) -- routing-instance <vn FQN>:<vn>
 *        -- floating-ip-virtual-machine-interface -- floating-ip (address, port mappings)
 *             -- floating-ip-pool-floating-ip -- floating-ip-pool -- virtual-network-floating-ip-pool -- the default VN
 *   virtual-network -- virtual-network-routing-instance -- its routing-instance
 *                   -- attr virtual-network-network-ipam (ipam-subnets) -- network-ipam
 *                   -- attr virtual-network-network-policy (sequence) -- network-policy (network-policy-entries)
 *
 * Each rule of the NetworkManager is one network-policy with one
 * policy-rule, attached to its source and destination VN with the rule's
 * position as the attachment's sequence, so both VNs give it one name and
 * one order. (contrail-control sends an agent the schema transformer's
 * access-control-list instead, src/ifmap/ifmap_graph_walker.cc; the agent
 * here reads either.)
 */
import { createHash } from 'node:crypto';
import { virtualRouterName } from '../ifmap/codec';
import { IfmapGraph } from '../ifmap/graph';
import { DEFAULT_PROJECT, interfaceFqn, linkAttrName, networkFqns } from '../ifmap/names';
import type { IfmapElement, IfmapIdentity, IfmapNode } from '../ifmap/types';
import { vmUuidOf, type LocalPort, type PortPolicy } from '../agent/agent-interface';
import type { NetworkConfig } from './network-config';
import type { PortDecision } from './network-manager';

/** One configured port: where it is and what the NetworkManager decided for it. */
export interface PublishedPort {
  vrouter: string;
  port: LocalPort;
  config: PortDecision;
}

/** What a vrouter subscribed to: its virtual-router, and VMs by uuid. */
export interface IfmapInterest {
  virtualRouter: boolean;
  vms: Set<string>;
}

const NETWORK_IPAM = `${DEFAULT_PROJECT}:default-network-ipam`;
/**
 * kube-manager's default cluster name: its pod VMs are named and displayed
 * `<cluster>__<namespace>__<pod>` (tungstenfabric/tf-controller @
 * 6a674397821187fedfffd9586942b906d3479dbc,
 * src/container/kube-manager/kube_manager/vnc/vnc_pod.py _create_vm), the
 * name the CNI asks the agent's GET /vm-cfg for.
 */
const CLUSTER_NAME = 'k8s';
/** The pool of services' ClusterIPs, under the default VN. */
const SERVICE_POOL_NAME = 'service-cluster-ips';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The links followed from each node type when walking from a subscribed
 * identifier: the part of src/ifmap/ifmap_graph_walker.cc
 * AddNodesToWhitelist for the types published here, plus the VN's policy
 * links. A floating IP is not walked back to its other interfaces, so a
 * vrouter sees a ClusterIP's backends on its own node only.
 */
const FOLLOWED: Record<string, ReadonlySet<string>> = {
  'virtual-router': new Set(['virtual-router-virtual-machine']),
  'virtual-machine': new Set(['virtual-machine-interface-virtual-machine']),
  'virtual-machine-interface': new Set([
    'virtual-machine-interface-virtual-machine',
    'instance-ip-virtual-machine-interface',
    'virtual-machine-interface-virtual-network',
    'floating-ip-virtual-machine-interface',
    'virtual-machine-interface-routing-instance',
  ]),
  'virtual-machine-interface-routing-instance': new Set(['virtual-machine-interface-routing-instance']),
  'instance-ip': new Set(['instance-ip-virtual-network']),
  'virtual-network': new Set(['virtual-network-floating-ip-pool', 'virtual-network-network-ipam', 'virtual-network-routing-instance', 'virtual-network-network-policy']),
  'virtual-network-network-ipam': new Set(['virtual-network-network-ipam']),
  'virtual-network-network-policy': new Set(['virtual-network-network-policy']),
  'floating-ip': new Set(['floating-ip-pool-floating-ip']),
  'floating-ip-pool': new Set(['virtual-network-floating-ip-pool']),
};

function el(name: string, content: string | IfmapElement[] = ''): IfmapElement {
  return typeof content === 'string' ? { name, attributes: {}, text: content, children: [] } : { name, attributes: {}, text: '', children: content };
}

/** id-perms with the uuid as its two unsigned 64-bit halves (IdPermsType, UuidType). */
function idPerms(uuid: string): IfmapElement[] {
  if (!UUID.test(uuid)) return [];
  const hex = uuid.replace(/-/g, '');
  const half = (part: string) => BigInt(`0x${part}`).toString();
  return [el('id-perms', [el('uuid', [el('uuid-mslong', half(hex.slice(0, 16))), el('uuid-lslong', half(hex.slice(16)))]), el('enable', 'true')])];
}

/**
 * A VN's uuid, name-based (RFC 4122 version 5 layout) so every control node
 * and restart gives the same one: the agent's GET /vm-cfg answers it as
 * `vn-id` and the CNI posts it back as POST /vm's `vn-uuid`, which must not be nil.
 */
export function networkUuid(vnFqn: string): string {
  const bytes = createHash('sha1').update(`vrouter-ts vn ${vnFqn}`).digest().subarray(0, 16);
  bytes[6] = (bytes[6] & 0x0f) | 0x50;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** The VMI FQN of a port (interfaceFqn). */
export function interfaceName(port: LocalPort): string {
  return interfaceFqn(vmUuidOf(port), port.id);
}


/**
 * The VMI's annotations as kube-manager writes them (config_db.py
 * add_annotations: the infra cluster/owner/project, namespace, name; and
 * vnc_pod.py's `index` "<i>/<count>"): the CNI reads `index` from GET
 * /vm-cfg to know it has every interface of the pod. One interface per pod here.
 */
function vmiAnnotations(port: LocalPort): IfmapElement {
  const pairs = { cluster: CLUSTER_NAME, owner: CLUSTER_NAME, project: `${CLUSTER_NAME}-${port.namespace}`, namespace: port.namespace, name: port.name, index: '0/1' };
  return el('annotations', Object.entries(pairs).map(([key, value]) => el('key-value-pair', [el('key', key), el('value', value)])));
}

function subnetElement(cidr: string): IfmapElement {
  const [prefix, length] = cidr.split('/');
  return el('subnet', [el('ip-prefix', prefix), el('ip-prefix-len', length)]);
}

/** A NetworkManager rule as a network-policy's policy-rule (PolicyRuleType, AddressType, PortType). */
function policyRule(rule: PortPolicy): IfmapElement {
  // AddressType's order: subnet, then virtual-network.
  const address = (name: string, vn: string, prefix: string | undefined) =>
    el(name, [...(prefix === undefined ? [] : [subnetElement(prefix)]), el('virtual-network', networkFqns(vn).vn)]);
  return el('policy-rule', [
    el('direction', '>'),
    el('protocol', rule.protocol),
    address('src-addresses', rule.sourceVn, undefined),
    el('src-ports', [el('start-port', '-1'), el('end-port', '-1')]),
    address('dst-addresses', rule.destinationVn, rule.destinationPrefix),
    el('dst-ports', [el('start-port', String(rule.portFrom)), el('end-port', String(rule.portTo))]),
    el('action-list', [el('simple-action', rule.action === 'allow' ? 'pass' : 'deny')]),
    el('ethertype', 'IPv4'),
  ]);
}

class GraphBuilder {
  readonly graph = new IfmapGraph();

  node(type: string, name: string, properties: IfmapElement[] = []): IfmapIdentity {
    this.graph.setNode({ type, name, properties });
    return { type, name };
  }

  link(left: IfmapIdentity, right: IfmapIdentity, metadata = `${left.type}-${right.type}`): void {
    this.graph.addLink({ left, right, metadata });
  }

  /** A link with an attribute: a node of the link's type between both ends (see ifmap/types.ts). */
  attrLink(left: IfmapIdentity, right: IfmapIdentity, metadata: string, value: IfmapElement[]): void {
    const attr = this.node(metadata, linkAttrName(left.name, right.name), [el('value', value)]);
    this.link(left, attr, metadata);
    this.link(attr, right, metadata);
  }
}

/** The whole configuration as one graph. */
export function buildConfigGraph(config: NetworkConfig, ports: Iterable<PublishedPort>, rules: readonly PortPolicy[]): IfmapGraph {
  const b = new GraphBuilder();
  const ipam = b.node('network-ipam', NETWORK_IPAM);
  const vns = new Map<string, IfmapIdentity>();
  for (const vn of config.vns.values()) {
    const names = networkFqns(vn.name);
    const vnNode = b.node('virtual-network', names.vn, idPerms(networkUuid(names.vn)));
    vns.set(vn.name, vnNode);
    b.link(vnNode, b.node('routing-instance', names.routingInstance));
    b.attrLink(vnNode, ipam, 'virtual-network-network-ipam', [el('ipam-subnets', [subnetElement(vn.subnet), el('default-gateway', vn.gateway)])]);
  }
  for (const rule of rules) {
    const policy = b.node('network-policy', `${DEFAULT_PROJECT}:${rule.name}`, [el('network-policy-entries', [policyRule(rule)])]);
    const sequence = [el('sequence', [el('major', String(rule.order)), el('minor', '0')])];
    for (const vn of new Set([rule.sourceVn, rule.destinationVn])) {
      const vnNode = vns.get(vn);
      if (vnNode) b.attrLink(vnNode, policy, 'virtual-network-network-policy', sequence);
    }
  }
  const poolVn = vns.get(config.defaultVn)!;
  const pool: IfmapIdentity = { type: 'floating-ip-pool', name: `${poolVn.name}:${SERVICE_POOL_NAME}` };
  const serviceNames = new Map(config.services.map((service) => [service.clusterIp, service.name]));
  for (const { vrouter, port, config: decided } of ports) {
    const names = networkFqns(decided.vn);
    const router = b.node('virtual-router', virtualRouterName(vrouter));
    const vm = b.node('virtual-machine', vmUuidOf(port), [...idPerms(vmUuidOf(port)), el('display-name', `${CLUSTER_NAME}__${port.namespace}__${port.name}`)]);
    b.link(router, vm);
    const vmiName = interfaceName(port);
    const vmi = b.node('virtual-machine-interface', vmiName, [el('virtual-machine-interface-mac-addresses', [el('mac-address', port.mac)]), ...idPerms(port.id), vmiAnnotations(port)]);
    b.link(vmi, vm);
    const vnNode = vns.get(decided.vn)!;
    b.link(vmi, vnNode);
    const instanceIp = b.node('instance-ip', `${vmiName}:${decided.ip}`, [el('instance-ip-address', decided.ip)]);
    b.link(instanceIp, vmi);
    b.link(instanceIp, vnNode);
    b.attrLink(vmi, { type: 'routing-instance', name: names.routingInstance }, 'virtual-machine-interface-routing-instance', [el('direction', 'both')]);
    for (const floatingIp of decided.floatingIps) {
      if (b.graph.node(pool.type, pool.name) === undefined) b.link(poolVn, b.node(pool.type, pool.name));
      const mappings = floatingIp.portMap.map((entry) =>
        el('port-mappings', [el('protocol', entry.protocol), el('src-port', String(entry.port)), el('dst-port', String(entry.targetPort))]),
      );
      const fip = b.node('floating-ip', `${pool.name}:${serviceNames.get(floatingIp.ip) ?? floatingIp.ip}`, [
        el('floating-ip-address', floatingIp.ip),
        el('floating-ip-port-mappings-enable', mappings.length > 0 ? 'true' : 'false'),
        ...(mappings.length > 0 ? [el('floating-ip-port-mappings', mappings)] : []),
      ]);
      b.link(pool, fip);
      b.link(fip, vmi);
    }
  }
  return b.graph;
}

/** Copies `part` into `into`: nodes, then links. */
function merge(into: IfmapGraph, part: IfmapGraph): void {
  for (const node of part.allNodes()) into.setNode(node);
  for (const link of part.allLinks()) into.addLink(link);
}

/**
 * What a vrouter should have: with its virtual-router subscribed, that
 * node and everything the walk reaches from it (its VMs and their
 * interfaces, VNs, addresses: what contrail-control's graph walker sends,
 * so the agent can answer the CNI's GET /vm-cfg before any port exists);
 * for each VM it subscribed, the VM's subgraph.
 */
export function vrouterGraph(global: IfmapGraph, vrouter: string, interest: IfmapInterest): IfmapGraph {
  const result = new IfmapGraph();
  const followed = (from: IfmapNode, _to: IfmapNode, metadata: string) => FOLLOWED[from.type]?.has(metadata) ?? false;
  if (interest.virtualRouter) {
    const router = { type: 'virtual-router', name: virtualRouterName(vrouter) };
    // A vrouter without ports is not in the global graph; its node is sent all the same.
    result.setNode(global.node(router.type, router.name) ?? { ...router, properties: [] });
    merge(result, global.reachable(router, followed));
  }
  for (const vm of interest.vms) merge(result, global.reachable({ type: 'virtual-machine', name: vm }, followed));
  return result;
}
