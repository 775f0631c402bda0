/**
 * What the agent needs for one port, read from the IF-MAP graph the control
 * node sent: the walk the real agent makes from a virtual-machine-interface
 * (tungstenfabric/tf-controller @ 6a674397, src/vnsw/agent/oper/
 * ifmap_dependency_manager.cc lists the links it follows; vm_interface_config.cc,
 * vn.cc read the properties). Nodes and links may come in any order, so a
 * view is partial until the last piece arrives: `reason` then names what is
 * missing instead of throwing.
 */
import { child, children, property, type IfmapGraph } from '../ifmap/graph';
import type { IfmapElement, IfmapNode } from '../ifmap/types';
import type { FloatingIpConfig, PortConfig, PortMapping, PortPolicy } from './agent-interface';

/** A route of an interface-route-table: the prefix is reached through this port. */
export interface StaticRoute {
  prefix: string;
  /** `next-hop` of the route, '' when the table names none (the port itself). */
  nextHop: string;
}

export interface IfmapFloatingIp extends FloatingIpConfig {
  /** The VN of the floating-ip-pool, '' until the pool and its VN arrive. */
  vn: string;
  /** That VN has `router-external` true (tungstenfabric/tf-api-client c0011de9 schema/vnc_cfg.xsd): an external address. */
  external: boolean;
}

/** The port as the graph describes it; fields are '' or empty until their node arrives. */
export interface IfmapPortView {
  /** The VMI's FQN and uuid (from `id-perms`). */
  vmi: string;
  uuid: string;
  mac: string;
  /** The virtual-machine's FQN (its uuid for an OpenStack or k8s VM). */
  vm: string;
  vn: string;
  routingInstance: string;
  ip: string;
  ip6: string;
  /** The IPAM subnet holding `ip` ("a.b.c.d/len") and its default gateway. */
  subnet: string;
  gateway: string;
  subnet6: string;
  gateway6: string;
  floatingIps: IfmapFloatingIp[];
  staticRoutes: StaticRoute[];
  policies: PortPolicy[];
  /** Why the port cannot be configured yet; absent when vn, ip, routing instance and subnet are all known. */
  reason?: string;
}

const VMI = 'virtual-machine-interface';

/** id-perms carries the uuid as two unsigned 64-bit halves (autogen IdPermsType). */
function uuidOf(node: IfmapNode): string {
  const uuid = child(property(node, 'id-perms'), 'uuid');
  const ms = child(uuid, 'uuid-mslong')?.text;
  const ls = child(uuid, 'uuid-lslong')?.text;
  // BigInt throws on anything but digits; a malformed id-perms is only an unknown uuid.
  if (!ms || !ls || !/^\d+$/.test(ms) || !/^\d+$/.test(ls)) return '';
  const hex = BigInt(ms).toString(16).padStart(16, '0') + BigInt(ls).toString(16).padStart(16, '0');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** Per graph, its VMIs by uuid as of a version: every port of a node is looked up after each update. */
const vmisByUuid = new WeakMap<IfmapGraph, { version: number; vmis: Map<string, IfmapNode> }>();

function findVmi(graph: IfmapGraph, fqnOrUuid: string): IfmapNode | undefined {
  const byName = graph.node(VMI, fqnOrUuid);
  if (byName !== undefined) return byName;
  let index = vmisByUuid.get(graph);
  if (index === undefined || index.version !== graph.version) {
    index = { version: graph.version, vmis: new Map() };
    for (const node of graph.allNodes()) {
      if (node.type !== VMI) continue;
      const uuid = uuidOf(node);
      if (!index.vmis.has(uuid)) index.vmis.set(uuid, node);
    }
    vmisByUuid.set(graph, index);
  }
  return index.vmis.get(fqnOrUuid);
}

/**
 * Nodes of `type` across a link that carries an attribute: the attribute is
 * a node of the link's type between the two ends (see ifmap/types.ts).
 * A link the schema gives no attribute is also accepted directly.
 */
function across(graph: IfmapGraph, from: IfmapNode, linkType: string, type: string): { node: IfmapNode; attr?: IfmapNode }[] {
  const found: { node: IfmapNode; attr?: IfmapNode }[] = graph.neighbours(from, type).map((node) => ({ node }));
  for (const attr of graph.neighbours(from, linkType)) {
    for (const node of graph.neighbours(attr, type)) found.push({ node, attr });
  }
  return found;
}

/** IPv4 or IPv6 text to a bigint, for the subnet test; undefined when neither. */
function addressBits(address: string): { v6: boolean; bits: bigint } | undefined {
  const v4 = /^(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(address);
  if (v4) return { v6: false, bits: v4.slice(1).reduce((acc, octet) => (acc << 8n) | BigInt(Number(octet)), 0n) };
  if (!address.includes(':')) return undefined;
  const halves = address.split('::');
  if (halves.length > 2) return undefined;
  const [head, tail = ''] = halves;
  const groups = (part: string) => (part === '' ? [] : part.split(':'));
  const left = groups(head);
  const right = address.includes('::') ? groups(tail) : [];
  const all = [...left, ...Array(8 - left.length - right.length).fill('0'), ...right];
  if (all.length !== 8 || all.some((g) => !/^[0-9a-fA-F]{1,4}$/.test(g))) return undefined;
  return { v6: true, bits: all.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n) };
}

function inSubnet(address: string, prefix: string, length: number): boolean {
  const a = addressBits(address);
  const p = addressBits(prefix);
  const width = a?.v6 ? 128 : 32;
  if (a === undefined || p === undefined || a.v6 !== p.v6 || length < 0 || length > width) return false;
  const shift = BigInt(width - length);
  return a.bits >> shift === p.bits >> shift;
}

/** The VN's `ipam-subnets` from each VN-IPAM link attribute (vn.cc BuildVnIpamData). */
function ipamSubnets(graph: IfmapGraph, vn: IfmapNode): { prefix: string; length: number; gateway: string }[] {
  const subnets: { prefix: string; length: number; gateway: string }[] = [];
  for (const attr of graph.neighbours(vn, 'virtual-network-network-ipam')) {
    for (const entry of children(property(attr, 'value'), 'ipam-subnets')) {
      const prefix = child(entry, 'subnet', 'ip-prefix')?.text ?? '';
      const length = Number(child(entry, 'subnet', 'ip-prefix-len')?.text ?? '');
      if (prefix === '' || !Number.isInteger(length)) continue;
      subnets.push({ prefix, length, gateway: child(entry, 'default-gateway')?.text ?? '' });
    }
  }
  return subnets;
}

/**
 * The port's VRF is the routing instance across its VMI-RI link whose
 * attribute has a direction and no service VLAN (vm_interface_config.cc
 * BuildVrfAndServiceVlanInfo; an attribute not yet arrived is skipped as
 * there). Until that link comes the VN's own instance, `<vn>:<last name of
 * vn>`, stands in: others linked to the VN are service chains' (vn.cc skips
 * them, IsVRFServiceChainingInstance).
 */
function routingInstanceOf(graph: IfmapGraph, vmi: IfmapNode, vn: IfmapNode | undefined): string {
  for (const { node, attr } of across(graph, vmi, 'virtual-machine-interface-routing-instance', 'routing-instance')) {
    const rule = property(attr ?? node, 'value');
    const plain = !child(rule, 'protocol')?.text && !child(rule, 'service-chain-address')?.text && Number(child(rule, 'vlan-tag')?.text ?? '0') === 0;
    if (child(rule, 'direction')?.text && plain) return node.name;
  }
  if (vn === undefined) return '';
  const own = `${vn.name}:${vn.name.slice(vn.name.lastIndexOf(':') + 1)}`;
  return graph.neighbours(vn, 'routing-instance').some((ri) => ri.name === own) ? own : '';
}

function floatingIps(graph: IfmapGraph, vmi: IfmapNode): IfmapFloatingIp[] {
  return graph.neighbours(vmi, 'floating-ip').flatMap((fip) => {
    const ip = property(fip, 'floating-ip-address')?.text ?? '';
    if (ip === '') return [];
    const portMap: PortMapping[] = [];
    for (const mapping of children(property(fip, 'floating-ip-port-mappings'), 'port-mappings')) {
      const protocol = child(mapping, 'protocol')?.text.toLowerCase();
      // The agent keys the map by protocol number; only TCP and UDP have ports.
      const name = protocol === 'tcp' || protocol === '6' ? 'tcp' : protocol === 'udp' || protocol === '17' ? 'udp' : undefined;
      const port = Number(child(mapping, 'src-port')?.text);
      const targetPort = Number(child(mapping, 'dst-port')?.text);
      if (name === undefined || !Number.isInteger(port) || !Number.isInteger(targetPort)) continue;
      portMap.push({ protocol: name, port, targetPort });
    }
    const pool = graph.neighbours(fip, 'floating-ip-pool')[0];
    const vnNode = pool === undefined ? undefined : graph.neighbours(pool, 'virtual-network')[0];
    return [{ ip, portMap, vn: vnNode?.name ?? '', external: vnNode !== undefined && property(vnNode, 'router-external')?.text === 'true' }];
  });
}

function staticRoutes(graph: IfmapGraph, vmi: IfmapNode): StaticRoute[] {
  return graph.neighbours(vmi, 'interface-route-table').flatMap((table) =>
    children(property(table, 'interface-route-table-routes'), 'route').flatMap((route) => {
      const prefix = child(route, 'prefix')?.text ?? '';
      return prefix === '' ? [] : [{ prefix, nextHop: child(route, 'next-hop')?.text ?? '' }];
    }),
  );
}

function protocolOf(text: string | undefined): PortPolicy['protocol'] | undefined {
  switch (text?.toLowerCase()) {
    case 'any': return 'any';
    case 'tcp': case '6': return 'tcp';
    case 'udp': case '17': return 'udp';
    case 'icmp': case '1': return 'icmp';
    default: return undefined;
  }
}

function actionOf(actions: IfmapElement | undefined): PortPolicy['action'] | undefined {
  const simple = child(actions, 'simple-action')?.text;
  return simple === 'pass' ? 'allow' : simple === 'deny' ? 'deny' : undefined;
}

/** A port range; -1 (the schema's "any") is the whole range. */
function portsOf(range: IfmapElement | undefined): [number, number] {
  const start = Number(child(range, 'start-port')?.text ?? '-1');
  const end = Number(child(range, 'end-port')?.text ?? '-1');
  return start < 0 ? [0, 65535] : [start, end < 0 ? 65535 : end];
}

function prefixOf(address: IfmapElement | undefined): string | undefined {
  const prefix = child(address, 'subnet', 'ip-prefix')?.text ?? '';
  return prefix === '' ? undefined : `${prefix}/${child(address, 'subnet', 'ip-prefix-len')?.text ?? ''}`;
}

/** Room in `order` for the minors of a major and the rules of a policy. */
const RULES_PER_SEQUENCE = 1024;

/** A sequence's major or minor; absent or malformed counts as 0. */
function sequenceNumber(element: IfmapElement | undefined): number {
  const value = Number(element?.text ?? '0');
  return Number.isSafeInteger(value) && value > 0 ? value : 0;
}

/**
 * rule-uuid of the two rules the schema transformer ends a static ACL with
 * ("this VN to this VN: pass", "any to any: deny"; tungstenfabric/tf-controller
 * 6a674397821187fedfffd9586942b906d3479dbc, src/config/common/cfgm_common/__init__.py,
 * schema_transformer/resources/virtual_network.py evaluate). They restate the
 * dataplane's default, and kept in the node's table, the union of its VNs'
 * rules, one VN's "deny all" would shadow the next VN's rules.
 */
const IMPLICIT_RULE_UUIDS: ReadonlySet<string> = new Set(['00000000-0000-0000-0000-100000000001', '00000000-0000-0000-0000-100000000002']);

/**
 * The schema transformer's ACL of the VN (access-control-list-entries), the
 * one vn.cc reads. A `<>` rule is followed by its reverse, addresses and
 * ports swapped, as AclTable::IFNodeToReq adds it (src/vnsw/agent/filter/acl.cc).
 */
function aclPolicies(graph: IfmapGraph, vn: IfmapNode): PortPolicy[] {
  const policies: PortPolicy[] = [];
  for (const acl of graph.neighbours(vn, 'access-control-list')) {
    const entries = property(acl, 'access-control-list-entries');
    // A dynamic ACL is the mirror ACL (vn.cc mirror_cfg_acl_uuid), not a filter.
    if (child(entries, 'dynamic')?.text === 'true') continue;
    children(entries, 'acl-rule').forEach((rule, index) => {
      if (IMPLICIT_RULE_UUIDS.has(child(rule, 'rule-uuid')?.text.trim() ?? '')) return;
      const match = child(rule, 'match-condition');
      const protocol = protocolOf(child(match, 'protocol')?.text);
      const action = actionOf(child(rule, 'action-list'));
      if (protocol === undefined || action === undefined) return;
      const oneWay = (name: string, source: string, destination: string, destinationPort: string) => {
        const [portFrom, portTo] = portsOf(child(match, destinationPort));
        const destinationPrefix = prefixOf(child(match, destination));
        policies.push({
          name,
          order: policies.length,
          sourceVn: child(match, source, 'virtual-network')?.text ?? '',
          destinationVn: child(match, destination, 'virtual-network')?.text ?? '',
          protocol, portFrom, portTo, action,
          ...(destinationPrefix === undefined ? {} : { destinationPrefix }),
        });
      };
      oneWay(`${acl.name}/${index}`, 'src-address', 'dst-address', 'dst-port');
      if (child(rule, 'direction')?.text === '<>') oneWay(`${acl.name}/${index}/reverse`, 'dst-address', 'src-address', 'src-port');
    });
  }
  return policies;
}

/**
 * The network-policies attached to the VN (`network-policy-entries`), in
 * the attachment's sequence order; `local` is the VN itself and a `<>` rule
 * holds both ways, so it becomes two one-way rules. A rule's `order` comes
 * from the sequence and its place in the policy, not from its place in this
 * VN's list: a policy attached to two VNs then has the same order in both,
 * and the node's table (their union, by name) keeps it.
 */
function networkPolicies(graph: IfmapGraph, vn: IfmapNode): PortPolicy[] {
  const attached = across(graph, vn, 'virtual-network-network-policy', 'network-policy').map(({ node, attr }) => ({
    node,
    major: sequenceNumber(child(property(attr ?? node, 'value'), 'sequence', 'major')),
    minor: sequenceNumber(child(property(attr ?? node, 'value'), 'sequence', 'minor')),
  }));
  attached.sort((a, b) => a.major - b.major || a.minor - b.minor);
  const policies: PortPolicy[] = [];
  const vnOf = (address: IfmapElement | undefined) => {
    const name = child(address, 'virtual-network')?.text ?? 'any';
    return name === 'local' ? vn.name : name;
  };
  for (const { node, major, minor } of attached) {
    children(property(node, 'network-policy-entries'), 'policy-rule').forEach((rule, index) => {
      const protocol = protocolOf(child(rule, 'protocol')?.text);
      const action = actionOf(child(rule, 'action-list'));
      if (protocol === undefined || action === undefined) return;
      const [portFrom, portTo] = portsOf(child(rule, 'dst-ports'));
      const src = child(rule, 'src-addresses');
      const dst = child(rule, 'dst-addresses');
      const order = ((major * RULES_PER_SEQUENCE + minor) * RULES_PER_SEQUENCE + index) * 2;
      const base = { order, protocol, portFrom, portTo, action };
      const destinationPrefix = prefixOf(dst);
      policies.push({
        ...base, name: `${node.name}/${index}`, sourceVn: vnOf(src), destinationVn: vnOf(dst),
        ...(destinationPrefix === undefined ? {} : { destinationPrefix }),
      });
      if (child(rule, 'direction')?.text === '<>') {
        const sourcePrefix = prefixOf(src);
        policies.push({
          ...base, order: order + 1, name: `${node.name}/${index}/reverse`, sourceVn: vnOf(dst), destinationVn: vnOf(src),
          ...(sourcePrefix === undefined ? {} : { destinationPrefix: sourcePrefix }),
        });
      }
    });
  }
  return policies;
}

/** The view of the VMI named by FQN or uuid; `reason` says what is still missing. */
export function derivePortView(graph: IfmapGraph, fqnOrUuid: string): IfmapPortView {
  const vmi = findVmi(graph, fqnOrUuid);
  const view: IfmapPortView = {
    vmi: vmi?.name ?? '', uuid: vmi === undefined ? '' : uuidOf(vmi), mac: '', vm: '', vn: '', routingInstance: '',
    ip: '', ip6: '', subnet: '', gateway: '', subnet6: '', gateway6: '', floatingIps: [], staticRoutes: [], policies: [],
  };
  // A VMI with no properties is only the end of a link whose node update has not come.
  if (vmi === undefined || vmi.properties.length === 0) return { ...view, reason: 'no virtual-machine-interface yet' };
  view.mac = child(property(vmi, 'virtual-machine-interface-mac-addresses'), 'mac-address')?.text ?? '';
  view.vm = graph.neighbours(vmi, 'virtual-machine')[0]?.name ?? '';
  const vn = graph.neighbours(vmi, 'virtual-network')[0];
  view.vn = vn?.name ?? '';
  view.routingInstance = routingInstanceOf(graph, vmi, vn);
  for (const iip of graph.neighbours(vmi, 'instance-ip')) {
    const address = property(iip, 'instance-ip-address')?.text ?? '';
    const bits = addressBits(address);
    if (bits === undefined) continue;
    if (bits.v6 && view.ip6 === '') view.ip6 = address;
    if (!bits.v6 && view.ip === '') view.ip = address;
  }
  if (vn !== undefined) {
    for (const subnet of ipamSubnets(graph, vn)) {
      if (view.subnet === '' && inSubnet(view.ip, subnet.prefix, subnet.length)) {
        view.subnet = `${subnet.prefix}/${subnet.length}`;
        view.gateway = subnet.gateway;
      }
      if (view.subnet6 === '' && inSubnet(view.ip6, subnet.prefix, subnet.length)) {
        view.subnet6 = `${subnet.prefix}/${subnet.length}`;
        view.gateway6 = subnet.gateway;
      }
    }
    // The ACLs are the schema transformer's rendering of the attached policies: reading both would count each rule twice.
    const acl = aclPolicies(graph, vn);
    view.policies = acl.length > 0 ? acl : networkPolicies(graph, vn);
  }
  view.floatingIps = floatingIps(graph, vmi);
  view.staticRoutes = staticRoutes(graph, vmi);
  const reason =
    vn === undefined ? 'no virtual-network yet'
    : view.ip === '' && view.ip6 === '' ? 'no instance-ip yet'
    : view.routingInstance === '' ? 'no routing-instance yet'
    : view.subnet === '' && view.subnet6 === '' ? 'no ipam subnet holding the instance-ip yet'
    : undefined;
  return reason === undefined ? view : { ...view, reason };
}

/** The view as the PortConfig configurePort takes, once it is complete. */
export function portConfigOf(view: IfmapPortView): PortConfig | undefined {
  if (view.reason !== undefined || view.ip === '') return undefined;
  // Dual stack once the IPv6 address, its subnet and that subnet's gateway are all known.
  const ipv6 = view.ip6 !== '' && view.subnet6 !== '' && view.gateway6 !== '' ? { ip6: view.ip6, subnet6: view.subnet6, gateway6: view.gateway6 } : {};
  return {
    vrf: view.routingInstance, vn: view.vn, ip: view.ip, subnet: view.subnet, gateway: view.gateway, ...ipv6,
    floatingIps: view.floatingIps.map(({ ip, portMap, vn, external }) => (external ? { ip, portMap, vn } : { ip, portMap })),
    policies: view.policies,
  };
}

/** One VMI of a VM as configuration has it, before any port exists: what GET /vm-cfg answers. */
export interface IfmapVmiConfig {
  uuid: string;
  mac: string;
  vn: string;
  /** The VN's uuid from its id-perms, '' when the control node sent none. */
  vnUuid: string;
  /** The VMI's `annotations` key-value pairs (KeyValuePairs), as kube-manager writes them. */
  annotations: Record<string, string>;
}

/**
 * The interfaces of the VM named `vmName` (its identifier, as kube-manager
 * names pod VMs, or its `display-name`) in the graph, as the agent's
 * GetVmVnCfgPort reads them (tungstenfabric/tf-controller @ 6a674397,
 * src/vnsw/agent/port_ipc/port_ipc_handler.cc: VmTable::GetVmUuid by name,
 * then MakeJsonFromVmiConfig for each VMI, failing while a VMI's VN is not
 * known). Undefined: no such VM, or a VMI not complete yet.
 */
export function deriveVmConfig(graph: IfmapGraph, vmName: string): { vmUuid: string; vmis: IfmapVmiConfig[] } | undefined {
  for (const vm of graph.allNodes()) {
    if (vm.type !== 'virtual-machine' || (vm.name !== vmName && property(vm, 'display-name')?.text !== vmName)) continue;
    const vmis: IfmapVmiConfig[] = [];
    for (const vmi of graph.neighbours(vm, VMI)) {
      const view = derivePortView(graph, vmi.name);
      const vn = graph.node('virtual-network', view.vn);
      if (view.uuid === '' || vn === undefined) return undefined;
      const annotations: Record<string, string> = {};
      for (const pair of children(property(vmi, 'annotations'), 'key-value-pair')) {
        const key = child(pair, 'key')?.text;
        if (key) annotations[key] = child(pair, 'value')?.text ?? '';
      }
      vmis.push({ uuid: view.uuid, mac: view.mac, vn: view.vn, vnUuid: uuidOf(vn), annotations });
    }
    return vmis.length === 0 ? undefined : { vmUuid: uuidOf(vm) || vm.name, vmis };
  }
  return undefined;
}
