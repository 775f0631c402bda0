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
 *        -- instance-ip <vmi>:<IPv6> (instance-ip-address, instance-ip-family v6) -- virtual-network   (dual stack)
 *        -- virtual-machine-interface-virtual-network -- virtual-network default-domain:default-project:<vn>
 *        -- attr virtual-machine-interface-routing-instance (direction both) -- routing-instance <vn FQN>:<vn>
 *        -- floating-ip-virtual-machine-interface -- floating-ip (address, port mappings)
 *             -- floating-ip-pool-floating-ip -- floating-ip-pool -- virtual-network-floating-ip-pool -- the default VN
 *                (an external address: the pool of the external VN, which has router-external true)
 *   virtual-network -- virtual-network-routing-instance -- its routing-instance
 *                   -- attr virtual-network-network-ipam (ipam-subnets; a second one with the IPv6 subnet) -- network-ipam
 *                   -- attr virtual-network-network-policy (sequence) -- network-policy (network-policy-entries)
 *                   -- virtual-network-access-control-list -- access-control-list <vn FQN>:<vn> (access-control-list-entries)
 *
 * Each rule of the NetworkManager is one network-policy with one
 * policy-rule, attached to its source and destination VN with the rule's
 * position as the attachment's sequence, so both VNs give it one name and
 * one order. A VN with rules also gets the access-control-list the schema
 * transformer renders from them, which is what contrail-control's graph
 * gives an agent (both are in its graph; ifmap_graph_walker.cc follows
 * virtual-network-access-control-list) and what the agent filters on.
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
/** The pool of services' external addresses, under the external VN. */
const EXTERNAL_POOL_NAME = 'external-ips';
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
  'virtual-network': new Set([
    'virtual-network-floating-ip-pool',
    'virtual-network-network-ipam',
    'virtual-network-routing-instance',
    'virtual-network-network-policy',
    'virtual-network-access-control-list',
  ]),
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
    el('ethertype', rule.destinationPrefix?.includes(':') ? 'IPv6' : 'IPv4'),
  ]);
}

/**
 * The schema transformer's IP protocol in an ACL: a number, or `any`
 * (VirtualNetworkST.protocol_policy_to_acl, tungstenfabric/tf-controller
 * 6a674397821187fedfffd9586942b906d3479dbc,
 * src/config/schema-transformer/schema_transformer/resources/virtual_network.py).
 */
const ACL_PROTOCOLS: Record<PortPolicy['protocol'], string> = { any: 'any', icmp: '1', tcp: '6', udp: '17' };
/** rule-uuid of the rules the schema transformer appends to a static ACL (cfgm_common/__init__.py, same commit). */
const RULE_IMPLICIT_ALLOW_UUID = '00000000-0000-0000-0000-100000000001';
const RULE_IMPLICIT_DENY_UUID = '00000000-0000-0000-0000-100000000002';

/** AddressType in an ACL: an optional subnet, then the VN FQN (or `any`). */
function aclAddress(name: string, vnFqn: string, prefix: string | undefined): IfmapElement {
  return el(name, [...(prefix === undefined ? [] : [subnetElement(prefix)]), el('virtual-network', vnFqn)]);
}

/** AclRuleType: match-condition (MatchConditionType's order), action-list, rule-uuid, direction. */
function aclRule(protocol: string, sourceVn: string, destinationVn: string, ports: [number, number], destinationPrefix: string | undefined, action: 'pass' | 'deny', ruleUuid?: string): IfmapElement {
  return el('acl-rule', [
    el('match-condition', [
      el('protocol', protocol),
      aclAddress('src-address', sourceVn, undefined),
      el('src-port', [el('start-port', '-1'), el('end-port', '-1')]),
      aclAddress('dst-address', destinationVn, destinationPrefix),
      el('dst-port', [el('start-port', String(ports[0])), el('end-port', String(ports[1]))]),
      el('ethertype', 'IPv4'),
    ]),
    el('action-list', [el('simple-action', action)]),
    ...(ruleUuid === undefined ? [] : [el('rule-uuid', ruleUuid)]),
    el('direction', '>'),
  ]);
}

/**
 * The VN's static ACL as the schema transformer renders the policies
 * attached to it (VirtualNetworkST.evaluate and policy_to_acl_rule, file
 * above): in sequence order the rules whose source or destination is the
 * VN, then "this VN to this VN: pass" and "any to any: deny".
 */
function accessControlListEntries(vnFqn: string, rules: readonly PortPolicy[]): IfmapElement {
  const fqn = (vn: string) => networkFqns(vn).vn;
  const entries = rules.map((rule) =>
    aclRule(ACL_PROTOCOLS[rule.protocol], fqn(rule.sourceVn), fqn(rule.destinationVn), [rule.portFrom, rule.portTo], rule.destinationPrefix, rule.action === 'allow' ? 'pass' : 'deny'),
  );
  return el('access-control-list-entries', [
    el('dynamic', 'false'),
    ...entries,
    aclRule('any', vnFqn, vnFqn, [-1, -1], undefined, 'pass', RULE_IMPLICIT_ALLOW_UUID),
    aclRule('any', 'any', 'any', [-1, -1], undefined, 'deny', RULE_IMPLICIT_DENY_UUID),
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
    // VnSubnetsType: one ipam-subnets (IpamSubnetType) per subnet, the IPv6 one beside the IPv4 one (vnc_cfg.xsd).
    const subnets = [el('ipam-subnets', [subnetElement(vn.subnet), el('default-gateway', vn.gateway)])];
    if (vn.ipv6) subnets.push(el('ipam-subnets', [subnetElement(vn.ipv6.subnet), el('default-gateway', vn.ipv6.gateway)]));
    b.attrLink(vnNode, ipam, 'virtual-network-network-ipam', subnets);
  }
  const external = config.external;
  if (external) {
    const names = networkFqns(external.name);
    // router-external: tungstenfabric/tf-api-client c0011de96de769774283b5167aa0ecdd216dbe92 schema/vnc_cfg.xsd, a virtual-network property.
    const vnNode = b.node('virtual-network', names.vn, [el('router-external', 'true')]);
    vns.set(external.name, vnNode);
    b.link(vnNode, b.node('routing-instance', names.routingInstance));
    b.attrLink(vnNode, ipam, 'virtual-network-network-ipam', [el('ipam-subnets', [subnetElement(external.subnet)])]);
  }
  for (const rule of rules) {
    const policy = b.node('network-policy', `${DEFAULT_PROJECT}:${rule.name}`, [el('network-policy-entries', [policyRule(rule)])]);
    const sequence = [el('sequence', [el('major', String(rule.order)), el('minor', '0')])];
    for (const vn of new Set([rule.sourceVn, rule.destinationVn])) {
      const vnNode = vns.get(vn);
      if (vnNode) b.attrLink(vnNode, policy, 'virtual-network-network-policy', sequence);
    }
  }
  for (const [vn, vnNode] of vns) {
    const attached = rules.filter((rule) => rule.sourceVn === vn || rule.destinationVn === vn);
    if (attached.length === 0) continue;
    const shortName = vnNode.name.slice(vnNode.name.lastIndexOf(':') + 1);
    b.link(vnNode, b.node('access-control-list', `${vnNode.name}:${shortName}`, [accessControlListEntries(vnNode.name, attached)]));
  }
  const poolVn = vns.get(config.defaultVn)!;
  const servicePool: IfmapIdentity = { type: 'floating-ip-pool', name: `${poolVn.name}:${SERVICE_POOL_NAME}` };
  const serviceNames = new Map(config.services.flatMap((service) => [
    [service.clusterIp, service.name],
    ...(service.clusterIp6 === undefined ? [] : [[service.clusterIp6, `${service.name}-v6`] as [string, string]]),
  ]));
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
    if (decided.ip6 !== undefined) {
      // contrail's second instance-ip of a dual-stack port (instance-ip-family, IpAddressFamilyType of vnc_cfg.xsd).
      const instanceIp6 = b.node('instance-ip', `${vmiName}:${decided.ip6}`, [el('instance-ip-address', decided.ip6), el('instance-ip-family', 'v6')]);
      b.link(instanceIp6, vmi);
      b.link(instanceIp6, vnNode);
    }
    b.attrLink(vmi, { type: 'routing-instance', name: names.routingInstance }, 'virtual-machine-interface-routing-instance', [el('direction', 'both')]);
    for (const floatingIp of decided.floatingIps) {
      const fipVn = floatingIp.vn === undefined ? undefined : vns.get(floatingIp.vn);
      const pool: IfmapIdentity = fipVn === undefined ? servicePool : { type: 'floating-ip-pool', name: `${fipVn.name}:${EXTERNAL_POOL_NAME}` };
      if (b.graph.node(pool.type, pool.name) === undefined) b.link(fipVn ?? poolVn, b.node(pool.type, pool.name));
      const mappings = floatingIp.portMap.map((entry) =>
        el('port-mappings', [el('protocol', entry.protocol), el('src-port', String(entry.port)), el('dst-port', String(entry.targetPort))]),
      );
      const fip = b.node('floating-ip', `${pool.name}:${serviceNames.get(floatingIp.ip) ?? floatingIp.ip}`, [
        el('floating-ip-address', floatingIp.ip),
        ...(floatingIp.ip.includes(':') ? [el('floating-ip-address-family', 'v6')] : []),
        el('floating-ip-port-mappings-enable', mappings.length > 0 ? 'true' : 'false'),
        ...(mappings.length > 0 ? [el('floating-ip-port-mappings', mappings)] : []),
      ]);
      b.link(pool, fip);
      b.link(fip, vmi);
    }
  }
  return b.graph;
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
    global.walkInto(result, router, followed);
  }
  for (const vm of interest.vms) global.walkInto(result, { type: 'virtual-machine', name: vm }, followed);
  return result;
}
