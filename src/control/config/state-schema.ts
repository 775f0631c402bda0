/**
 * The dataplane state file: a declarative YAML or JSON document holding one
 * node's whole forwarding state. This module has its shape twice, as
 * TypeScript types and as a JSON Schema (draft-07) that rejects unknown
 * fields, so a typo is an error rather than a silently ignored setting.
 * Addresses stay strings here; state-file.ts parses and checks them.
 */
import type { SchemaObject } from 'ajv';
import type { TunnelEncap } from '../../dataplane/nexthop';
import type { VifKind } from '../../dataplane/vif';
import { DEFAULT_LABEL_TABLE_SIZE } from '../../dataplane/mpls-labels';
import { MPLS_FIRST_UNICAST_LABEL, MPLS_MAX_LABEL } from '../../dataplane/protocols/mpls';

/** A VRF named by its id or by its name. */
export type VrfReference = number | string;

export interface NodeEntry {
  name: string;
  /** Outer source of tunnels; fabric packets to it are decapsulated. */
  underlayIp: string;
  /** Outer destination MAC of tunnels that do not give their own. */
  underlayGatewayMac?: string;
  /** Encapsulations this node uses, best first. */
  encapPriority?: TunnelEncap[];
}

export interface VrfEntry {
  id: number;
  name: string;
  /** Prefixes (IPv4 or IPv6) the ARP and neighbour discovery proxies answer for. */
  subnets?: string[];
  gateway?: string;
  /** IPv6 gateway: the source of ICMPv6 errors; router advertisements make it the pods' default router. */
  gateway6?: string;
  /** Services (by name) this VN may reach, on their ClusterIP and service ports only. */
  uses?: string[];
}

/** A service port and the pod port it maps to (default: the same port). */
export interface PortMapEntry {
  protocol: 'tcp' | 'udp';
  port: number;
  targetPort?: number;
}

export interface FloatingIpEntry {
  /** IPv4 or IPv6. */
  ip: string;
  portMap?: PortMapEntry[];
}

export interface VifEntry {
  id: number;
  kind: VifKind;
  name: string;
  mac: string;
  ip?: string;
  ip6?: string;
  /** Required for a virtual vif, absent for a fabric vif. */
  vrf?: VrfReference;
  mtu?: number;
  /** Addresses (service ClusterIPs) this pod also answers for, translated by the flow table. */
  floatingIps?: FloatingIpEntry[];
  /** Flow pairs this vif may hold (0: no limit); flows.maxFlowsPerVif when absent. */
  maxFlows?: number;
}

export interface EncapNexthopEntry {
  id: number;
  kind: 'encap';
  vif: number;
  /** Defaults to the vif's MAC. */
  mac?: string;
}

export interface TunnelNexthopEntry {
  id: number;
  kind: 'tunnel';
  dip: string;
  label: number;
  /** What the route advertises; the node's encapPriority picks among them. */
  encaps?: TunnelEncap[];
  /** Defaults to the node's single fabric vif. */
  vif?: number;
  /** Defaults to node.underlayIp. */
  sip?: string;
  /** Defaults to node.underlayGatewayMac. */
  mac?: string;
  /** The VN of what the tunnel leads to, for policy; defaults to the VRF of the route. */
  vn?: VrfReference;
}

export interface CompositeNexthopEntry {
  id: number;
  kind: 'composite';
  /** ECMP member nexthops; null is an empty slot. */
  members: (number | null)[];
  vn?: VrfReference;
}

export interface ReceiveNexthopEntry {
  id: number;
  kind: 'receive';
  /** Defaults to the host vif when there is one. */
  vif?: number;
}

export interface DiscardNexthopEntry {
  id: number;
  kind: 'discard';
}

export type NexthopEntry =
  | EncapNexthopEntry
  | TunnelNexthopEntry
  | CompositeNexthopEntry
  | ReceiveNexthopEntry
  | DiscardNexthopEntry;

export interface RouteEntry {
  vrf: VrfReference;
  prefix: string;
  nexthop: number;
}

export interface LabelEntry {
  label: number;
  nexthop: number;
}

export interface PolicyEntry {
  name?: string;
  /** Source and destination VN, or "any". */
  source: VrfReference;
  destination: VrfReference;
  protocol?: 'any' | 'tcp' | 'udp' | 'icmp' | 'icmp6';
  /** Destination port or inclusive [from, to] range; any when absent. */
  ports?: number | [number, number];
  destinationPrefix?: string;
  action: 'allow' | 'deny';
}

export interface ServiceEntry {
  name: string;
  clusterIp: string;
  /** The VN of the pods behind the service. */
  vn: VrfReference;
  ports: PortMapEntry[];
}

export interface FlowsEntry {
  /** Flow entries (two per flow pair). */
  capacity?: number;
  /** Seconds before an idle flow pair is removed. */
  idleTimeout?: number;
  /** Flow pairs each vif may hold unless it says otherwise (0: no limit), as OpenContrail's max-flows per interface. */
  maxFlowsPerVif?: number;
  /** Entries (two per pair) that may be IPv6; default a quarter of capacity. */
  ipv6Capacity?: number;
}

export interface StateDocument {
  node: NodeEntry;
  flows?: FlowsEntry;
  vrfs?: VrfEntry[];
  vifs?: VifEntry[];
  nexthops?: NexthopEntry[];
  routes?: RouteEntry[];
  labels?: LabelEntry[];
  policies?: PolicyEntry[];
  services?: ServiceEntry[];
}

export const DEFAULT_ENCAP_PRIORITY: readonly TunnelEncap[] = ['udp', 'gre'];
export const DEFAULT_TUNNEL_ENCAPS: readonly TunnelEncap[] = ['udp'];
export const DEFAULT_MTU = 1500;
export const MAX_VRF_ID = 4095;
export const MAX_VIF_ID = 4095;
export const MAX_NEXTHOP_ID = (1 << 20) - 1;
/** Labels this node accepts: the unicast range of its label table. */
export const MIN_LABEL = MPLS_FIRST_UNICAST_LABEL;
export const MAX_LABEL = DEFAULT_LABEL_TABLE_SIZE - 1;
export const MAC_PATTERN = '^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$';

const ENCAP_NAMES: TunnelEncap[] = ['udp', 'gre'];
const VIF_KINDS: VifKind[] = ['virtual', 'fabric', 'host', 'agent'];

const name = { type: 'string', minLength: 1 };
const ipv4 = { type: 'string', description: 'dotted-quad IPv4 address' };
const ipv6 = { type: 'string', description: 'IPv6 address' };
const ipAddress = { type: 'string', description: 'IPv4 or IPv6 address' };
const prefix = { type: 'string', description: 'IPv4 prefix a.b.c.d/len or IPv6 prefix x:x::/len' };
const mac = { type: 'string', pattern: MAC_PATTERN };
const vrfReference = {
  type: ['integer', 'string'],
  minimum: 0,
  maximum: MAX_VRF_ID,
  minLength: 1,
  description: 'VRF id or name',
};
const vifId = { type: 'integer', minimum: 0, maximum: MAX_VIF_ID };
const port = { type: 'integer', minimum: 0, maximum: 65535 };
const portMap = {
  type: 'array',
  items: {
    type: 'object',
    properties: { protocol: { enum: ['tcp', 'udp'] }, port, targetPort: port },
    required: ['protocol', 'port'],
    additionalProperties: false,
  },
};
const nexthopId = { type: 'integer', minimum: 0, maximum: MAX_NEXTHOP_ID };
const encapList = (defaults: readonly TunnelEncap[]) => ({
  type: 'array',
  items: { enum: ENCAP_NAMES },
  minItems: 1,
  uniqueItems: true,
  default: defaults,
});

/** One nexthop kind: its own fields plus the id and kind every nexthop has. */
function nexthopSchema(kind: NexthopEntry['kind'], properties: Record<string, unknown> = {}, required: string[] = []) {
  return {
    type: 'object',
    properties: { id: nexthopId, kind: { const: kind }, ...properties },
    required: ['id', 'kind', ...required],
    additionalProperties: false,
  };
}

export const stateFileSchema: SchemaObject = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  title: 'vrouter-ts dataplane state',
  type: 'object',
  properties: {
    node: {
      type: 'object',
      properties: {
        name,
        underlayIp: ipv4,
        underlayGatewayMac: mac,
        encapPriority: encapList(DEFAULT_ENCAP_PRIORITY),
      },
      required: ['name', 'underlayIp'],
      additionalProperties: false,
    },
    flows: {
      type: 'object',
      properties: {
        capacity: { type: 'integer', minimum: 2, maximum: 16 * 1024 * 1024, multipleOf: 2 },
        idleTimeout: { type: 'integer', minimum: 1 },
        maxFlowsPerVif: { type: 'integer', minimum: 0 },
        ipv6Capacity: { type: 'integer', minimum: 0, maximum: 16 * 1024 * 1024, multipleOf: 2 },
      },
      additionalProperties: false,
    },
    vrfs: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          id: { type: 'integer', minimum: 0, maximum: MAX_VRF_ID },
          name,
          subnets: { type: 'array', items: prefix },
          gateway: ipv4,
          gateway6: ipv6,
          uses: { type: 'array', items: name, uniqueItems: true },
        },
        required: ['id', 'name'],
        additionalProperties: false,
      },
    },
    vifs: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          id: vifId,
          kind: { enum: VIF_KINDS },
          name,
          mac,
          ip: ipv4,
          ip6: ipv6,
          vrf: vrfReference,
          mtu: { type: 'integer', minimum: 68, maximum: 65535, default: DEFAULT_MTU },
          floatingIps: {
            type: 'array',
            items: { type: 'object', properties: { ip: ipAddress, portMap }, required: ['ip'], additionalProperties: false },
          },
          maxFlows: { type: 'integer', minimum: 0 },
        },
        required: ['id', 'kind', 'name', 'mac'],
        additionalProperties: false,
      },
    },
    nexthops: {
      type: 'array',
      items: {
        type: 'object',
        // Validates only the branch named by kind, so errors are about that kind's fields.
        discriminator: { propertyName: 'kind' },
        required: ['kind'],
        oneOf: [
          nexthopSchema('encap', { vif: vifId, mac }, ['vif']),
          nexthopSchema(
            'tunnel',
            {
              dip: ipv4,
              label: { type: 'integer', minimum: MPLS_FIRST_UNICAST_LABEL, maximum: MPLS_MAX_LABEL },
              encaps: encapList(DEFAULT_TUNNEL_ENCAPS),
              vif: vifId,
              sip: ipv4,
              mac,
              vn: vrfReference,
            },
            ['dip', 'label'],
          ),
          nexthopSchema(
            'composite',
            {
              members: { type: 'array', items: { type: ['integer', 'null'], minimum: 0, maximum: MAX_NEXTHOP_ID }, minItems: 1 },
              vn: vrfReference,
            },
            ['members'],
          ),
          nexthopSchema('receive', { vif: vifId }),
          nexthopSchema('discard'),
        ],
      },
    },
    routes: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          vrf: vrfReference,
          prefix,
          nexthop: nexthopId,
        },
        required: ['vrf', 'prefix', 'nexthop'],
        additionalProperties: false,
      },
    },
    labels: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          label: { type: 'integer', minimum: MIN_LABEL, maximum: MAX_LABEL },
          nexthop: nexthopId,
        },
        required: ['label', 'nexthop'],
        additionalProperties: false,
      },
    },
    policies: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          name,
          source: vrfReference,
          destination: vrfReference,
          protocol: { enum: ['any', 'tcp', 'udp', 'icmp', 'icmp6'] },
          ports: { oneOf: [port, { type: 'array', items: port, minItems: 2, maxItems: 2 }] },
          destinationPrefix: prefix,
          action: { enum: ['allow', 'deny'] },
        },
        required: ['source', 'destination', 'action'],
        additionalProperties: false,
      },
    },
    services: {
      type: 'array',
      items: {
        type: 'object',
        properties: { name, clusterIp: ipAddress, vn: vrfReference, ports: portMap },
        required: ['name', 'clusterIp', 'vn', 'ports'],
        additionalProperties: false,
      },
    },
  },
  required: ['node'],
  additionalProperties: false,
};

