/**
 * The OpenContrail agent's port JSON, read and written as its port IPC does
 * (tungstenfabric/tf-controller @ 6a674397821187fedfffd9586942b906d3479dbc,
 * src/vnsw/agent/port_ipc/port_ipc_handler.cc):
 *
 *   - a port (POST /port, a file of the ports directory): MakeAddVmiUuidRequest
 *     reads it, MakeVmiUuidJson writes it;
 *   - a VM's interface (POST /vm, from the Contrail CNI): MakeAddVmVnPortRequest
 *     reads it, MakeVmVnPortJson writes it;
 *   - a configured interface (GET /port/<uuid>, GET /vm/<uuid>): MakeJsonFromVmi;
 *   - a VM's interface configuration (GET /vm-cfg/<name>): MakeJsonFromVmiConfig.
 *
 * The agent takes a missing or mistyped field as an error worded
 * "Invalid or missing field for <name>" ("data" for UUIDs); those words are
 * kept. Where it silently turns a bad value into a zero (an address that
 * does not parse becomes 0.0.0.0, a UUID the nil UUID), this reader refuses
 * the value instead, naming field and value. It accepts everything the real
 * clients send: Python's "None" for an absent address (test/data), "0::0"
 * and 0 VLANs (the opencontrail kubelet plugin), -1 VLANs and an empty
 * project (vrouter-port-control). Unknown keys are ignored, as rapidjson
 * lookups ignore them.
 */
import { isIPv4, isIPv6 } from 'node:net';

/** PortSubscribeEntry::Type (port_subscribe_table.h): 0 VM port, 1 namespace port, 2 remote port. */
export type AgentPortType = 0 | 1 | 2;

/** What vrouter-ts adds to the agent's port for a node without control node (see docs in portapi notes). */
export interface PortExtension {
  /** The VN (the VRF's name) the port goes into when no control node configures it. */
  vn?: string;
  /** The VN's subnet and gateway, when the state file does not define the VN. */
  subnet?: string;
  gateway?: string;
  mtu?: number;
  /** The MPLS label remote nodes use (default: the next free one). */
  label?: number;
  floatingIps?: Array<{ ip: string; portMap?: Array<{ protocol: 'tcp' | 'udp'; port: number; targetPort?: number }> }>;
  /** The VMI's annotations (kube-manager sets them in Contrail), served by GET /vm-cfg. */
  annotations?: Record<string, string>;
}

/** One port as the agent's port subscribe table keeps it (VmiSubscribeEntry). */
export interface AgentPort extends PortExtension {
  /** The VMI UUID, lower case. */
  id: string;
  /** The VM (instance, pod) UUID. */
  instanceId: string;
  /** The VN UUID; the nil UUID when not given (allowed for namespace and remote ports). */
  vnId: string;
  projectId: string;
  /** The VM's name. */
  displayName: string;
  /** "0.0.0.0" when none. */
  ip: string;
  /** "::" when none. */
  ip6: string;
  type: AgentPortType;
  /** The node's interface of the port (the host end of the pod's veth, the TAP). */
  systemName: string;
  mac: string;
  rxVlanId: number;
  txVlanId: number;
  vhostuserMode: number;
  linkState: number;
}

/** A VM's interface as the Contrail CNI announces it (VmVnPortSubscribeEntry). */
export interface VmVnPort {
  vmUuid: string;
  vnUuid: string;
  vmiUuid: string;
  vmId: string;
  vmName: string;
  hostIfname: string;
  vmIfname: string;
  vmNamespace: string;
}

/** A body the agent's reader refuses; `message` is what goes between the braces of its error. */
export class AgentJsonError extends Error {}

export const NIL_UUID = '00000000-0000-0000-0000-000000000000';
/** VmInterface::kInvalidVlanId (oper/vm_interface.h). */
export const INVALID_VLAN_ID = 0xffff;

type Json = Record<string, unknown>;

const UUID = /^([0-9a-f]{8})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{12})$/i;

/** A UUID in the form boost's uuid string_generator reads it (dashes optional, any case), written as UuidToString does. */
export function normalizeUuid(text: string): string | undefined {
  const match = UUID.exec(text);
  return match ? match.slice(1).join('-').toLowerCase() : undefined;
}

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function stringField(body: Json, name: string): string {
  const value = body[name];
  if (typeof value !== 'string') throw new AgentJsonError(`Invalid or missing field for <${name}>`);
  return value;
}

function intField(body: Json, name: string): number {
  const value = body[name];
  // rapidjson's IsInt: an integer that fits in 32 signed bits.
  if (typeof value !== 'number' || !Number.isInteger(value) || value < -0x80000000 || value > 0x7fffffff) {
    throw new AgentJsonError(`Invalid or missing field for <${name}>`);
  }
  return value;
}

function optionalIntField(body: Json, name: string, fallback: number): number {
  const value = body[name];
  return typeof value === 'number' && Number.isInteger(value) ? value : fallback;
}

function invalid(name: string, value: unknown, expected: string): AgentJsonError {
  return new AgentJsonError(`Invalid value for <${name}>: ${JSON.stringify(value)} (${expected})`);
}

function uuidField(body: Json, name: string, options: { nilAllowed: boolean }): string {
  const value = body[name];
  if (typeof value !== 'string') throw new AgentJsonError(`Invalid or missing data for <${name}>`);
  if (value === '' && options.nilAllowed) return NIL_UUID;
  const uuid = normalizeUuid(value);
  if (uuid === undefined || (uuid === NIL_UUID && !options.nilAllowed)) throw invalid(name, value, options.nilAllowed ? 'a UUID or ""' : 'a UUID, not nil');
  return uuid;
}

/** "" and Python's "None" (str(None), as in test/data) are "no address". */
function addressField(body: Json, name: string, family: 4 | 6): string {
  const value = stringField(body, name);
  if (value === '' || value === 'None') return family === 4 ? '0.0.0.0' : '::';
  if (family === 4) {
    if (!isIPv4(value)) throw invalid(name, value, 'an IPv4 address, "" or "None"');
    return value;
  }
  if (!isIPv6(value)) throw invalid(name, value, 'an IPv6 address, "" or "None"');
  // boost's to_string writes the compressed form ("0::0" -> "::").
  return new URL(`http://[${value}]/`).hostname.slice(1, -1);
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;
const IFNAME = /^[^\s/:]{1,15}$/;

function vlanField(body: Json, name: string): number {
  const value = intField(body, name);
  // -1 (vrouter-port-control), 0 (the kubelet plugin) and 0xffff mean untagged; tagging is not implemented.
  if (value !== -1 && value !== 0 && value !== INVALID_VLAN_ID) throw invalid(name, value, 'VLAN-tagged ports are not supported by vrouter-ts: -1, 0 or 65535');
  return value;
}

const EXTENSION_IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** The vrouter-ts fields of a port body, checked when present (documented in the portapi notes). */
export function readExtension(body: Json): PortExtension {
  const extension: PortExtension = {};
  if (body.vn !== undefined) {
    if (typeof body.vn !== 'string' || body.vn.length === 0 || body.vn.length > 253) throw invalid('vn', body.vn, 'a VN name');
    extension.vn = body.vn;
  }
  if (body.subnet !== undefined) {
    const [address, length, ...rest] = typeof body.subnet === 'string' ? body.subnet.split('/') : [];
    if (rest.length > 0 || !EXTENSION_IPV4.test(address ?? '') || !/^\d{1,2}$/.test(length ?? '') || Number(length) > 32) throw invalid('subnet', body.subnet, 'a.b.c.d/len');
    extension.subnet = body.subnet as string;
  }
  if (body.gateway !== undefined) {
    if (typeof body.gateway !== 'string' || !EXTENSION_IPV4.test(body.gateway)) throw invalid('gateway', body.gateway, 'an IPv4 address');
    extension.gateway = body.gateway;
  }
  if (body.mtu !== undefined) {
    if (!Number.isInteger(body.mtu) || (body.mtu as number) < 576 || (body.mtu as number) > 9000) throw invalid('mtu', body.mtu, 'an integer 576..9000');
    extension.mtu = body.mtu as number;
  }
  if (body.label !== undefined) {
    if (!Number.isInteger(body.label) || (body.label as number) < 16 || (body.label as number) > 65535) throw invalid('label', body.label, 'an integer 16..65535');
    extension.label = body.label as number;
  }
  if (body.floatingIps !== undefined) extension.floatingIps = readFloatingIps(body.floatingIps);
  if (body.annotations !== undefined) {
    const annotations = body.annotations;
    if (!isObject(annotations) || Object.values(annotations).some((value) => typeof value !== 'string')) throw invalid('annotations', annotations, 'an object of strings');
    extension.annotations = annotations as Record<string, string>;
  }
  return extension;
}

function readFloatingIps(value: unknown): NonNullable<PortExtension['floatingIps']> {
  if (!Array.isArray(value)) throw invalid('floatingIps', value, 'an array');
  return value.map((entry, index) => {
    if (!isObject(entry) || typeof entry.ip !== 'string' || !EXTENSION_IPV4.test(entry.ip)) throw invalid(`floatingIps/${index}/ip`, isObject(entry) ? entry.ip : entry, 'an IPv4 address');
    const portMap = entry.portMap === undefined ? undefined : entry.portMap;
    if (portMap !== undefined && !Array.isArray(portMap)) throw invalid(`floatingIps/${index}/portMap`, portMap, 'an array');
    return {
      ip: entry.ip,
      ...(portMap
        ? {
            portMap: portMap.map((mapping: unknown, at: number) => {
              const where = `floatingIps/${index}/portMap/${at}`;
              if (!isObject(mapping) || (mapping.protocol !== 'tcp' && mapping.protocol !== 'udp')) throw invalid(`${where}/protocol`, isObject(mapping) ? mapping.protocol : mapping, 'tcp or udp');
              const port = (key: string) => {
                const number = mapping[key];
                if (!Number.isInteger(number) || (number as number) < 0 || (number as number) > 65535) throw invalid(`${where}/${key}`, number, 'a port 0..65535');
                return number as number;
              };
              return { protocol: mapping.protocol, port: port('port'), ...(mapping.targetPort !== undefined ? { targetPort: port('targetPort') } : {}) };
            }),
          }
        : {}),
    };
  });
}

/** MakeAddVmiUuidRequest: one element of a POST /port body or one file of the ports directory. */
export function readAgentPort(value: unknown): AgentPort {
  if (!isObject(value)) throw new AgentJsonError(`Unexpected Json string ==> ${JSON.stringify(value)}`);
  const id = uuidField(value, 'id', { nilAllowed: false });
  const instanceId = uuidField(value, 'instance-id', { nilAllowed: false });
  const vnId = uuidField(value, 'vn-id', { nilAllowed: true });
  const projectId = uuidField(value, 'vm-project-id', { nilAllowed: true });
  const displayName = stringField(value, 'display-name');
  const ip = addressField(value, 'ip-address', 4);
  const ip6 = addressField(value, 'ip6-address', 6);
  const typeValue = intField(value, 'type');
  if (typeValue !== 0 && typeValue !== 1 && typeValue !== 2) throw invalid('type', typeValue, '0 VM port, 1 namespace port, 2 remote port');
  const type = typeValue as AgentPortType;
  if (type === 0 && vnId === NIL_UUID) throw new AgentJsonError('Invalid VN uuid');
  const systemName = stringField(value, 'system-name');
  if (type !== 2 && !IFNAME.test(systemName)) throw invalid('system-name', systemName, 'an interface name of 1..15 characters');
  const mac = stringField(value, 'mac-address');
  if (!MAC.test(mac) || mac === '00:00:00:00:00:00') throw new AgentJsonError(`Invalid MAC, Use xx:xx:xx:xx:xx:xx format (value: ${JSON.stringify(mac)})`);
  const rxVlanId = vlanField(value, 'rx-vlan-id');
  const txVlanId = vlanField(value, 'tx-vlan-id');
  return {
    id,
    instanceId,
    vnId,
    projectId,
    displayName,
    ip,
    ip6,
    type,
    systemName,
    mac: mac.toLowerCase(),
    rxVlanId,
    txVlanId,
    // Optional (DPDK); a remote port starts disabled unless told.
    vhostuserMode: optionalIntField(value, 'vhostuser-mode', 0),
    linkState: optionalIntField(value, 'link-state', type === 2 ? 0 : 1),
    ...readExtension(value),
  };
}

/** AddPortFromJson: one port or an array of ports, all or none. */
export function readAgentPorts(text: string): AgentPort[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new AgentJsonError(`Invalid Json string ==> ${text}`);
  }
  if (Array.isArray(value)) {
    return value.map((element) => {
      if (!isObject(element)) throw new AgentJsonError(`Json Array has invalid element ==> ${text}`);
      return readAgentPort(element);
    });
  }
  if (!isObject(value)) throw new AgentJsonError(`Unexpected Json string ==> ${text}`);
  return [readAgentPort(value)];
}

/** MakeAddVmVnPortRequest: the Contrail CNI's POST /vm body (or a file of ports/vm/<name>/). */
export function readVmVnPort(text: string): VmVnPort {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new AgentJsonError(`Invalid Json string ==> ${text}`);
  }
  if (!isObject(value)) throw new AgentJsonError(`Unexpected Json string ==> ${text}`);
  const vmUuid = uuidField(value, 'vm-uuid', { nilAllowed: false });
  const hostIfname = stringField(value, 'host-ifname');
  if (!IFNAME.test(hostIfname)) throw invalid('host-ifname', hostIfname, 'an interface name of 1..15 characters');
  const vmName = stringField(value, 'vm-name');
  const optional = (name: string) => (typeof value[name] === 'string' ? (value[name] as string) : '');
  return {
    vmUuid,
    hostIfname,
    vmName,
    vmId: optional('vm-id'),
    vmIfname: optional('vm-ifname'),
    vmNamespace: optional('vm-namespace'),
    vnUuid: uuidField(value, 'vn-uuid', { nilAllowed: false }),
    vmiUuid: uuidField(value, 'vmi-uuid', { nilAllowed: false }),
  };
}

// --- Writing, as rapidjson's PrettyWriter does ------------------------------

type Pretty = string | number | boolean | Pretty[] | { [key: string]: Pretty };

/** rapidjson's string escapes: \" \\ \b \f \n \r \t, other control characters as \u00XX (upper-case hex); '/' and non-ASCII as is. */
function prettyString(text: string): string {
  let out = '"';
  for (const char of text) {
    const code = char.codePointAt(0)!;
    if (char === '"') out += '\\"';
    else if (char === '\\') out += '\\\\';
    else if (code < 0x20) {
      const short = { 8: '\\b', 9: '\\t', 10: '\\n', 12: '\\f', 13: '\\r' }[code];
      out += short ?? `\\u00${code.toString(16).toUpperCase().padStart(2, '0')}`;
    } else out += char;
  }
  return out + '"';
}

/** PrettyWriter with its defaults: four spaces a level, `"key": value`, no newline at the end. */
export function prettyJson(value: Pretty, indent = ''): string {
  if (typeof value === 'string') return prettyString(value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  const inner = indent + '    ';
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]';
    return `[\n${value.map((element) => inner + prettyJson(element, inner)).join(',\n')}\n${indent}]`;
  }
  const entries = Object.entries(value);
  if (entries.length === 0) return '{}';
  return `{\n${entries.map(([key, element]) => `${inner}${prettyString(key)}: ${prettyJson(element, inner)}`).join(',\n')}\n${indent}}`;
}

/** What the agent writes as "author" (its program name) and "time" (duration_usecs_to_string: boost's to_simple_string). */
export interface WriteMeta {
  author: string;
  now: Date;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** boost::posix_time::to_simple_string of a UTC time: "2026-Dec-03 17:35:27.123000". */
export function simpleTime(date: Date): string {
  const two = (value: number) => String(value).padStart(2, '0');
  return (
    `${date.getUTCFullYear()}-${MONTHS[date.getUTCMonth()]}-${two(date.getUTCDate())} ` +
    `${two(date.getUTCHours())}:${two(date.getUTCMinutes())}:${two(date.getUTCSeconds())}.${String(date.getUTCMilliseconds() * 1000).padStart(6, '0')}`
  );
}

function extensionJson(port: PortExtension): Record<string, Pretty> {
  const out: Record<string, Pretty> = {};
  for (const key of ['vn', 'subnet', 'gateway', 'mtu', 'label'] as const) if (port[key] !== undefined) out[key] = port[key]!;
  if (port.floatingIps) out.floatingIps = port.floatingIps.map((fip) => ({ ip: fip.ip, ...(fip.portMap ? { portMap: fip.portMap.map((entry) => ({ ...entry })) } : {}) }));
  if (port.annotations) out.annotations = { ...port.annotations };
  return out;
}

/** MakeVmiUuidJson(entry, meta_info = true): a file of the ports directory; vrouter-ts's own fields follow the agent's. */
export function agentPortFile(port: AgentPort, meta: WriteMeta): string {
  return prettyJson({
    id: port.id,
    'instance-id': port.instanceId,
    'display-name': port.displayName,
    'ip-address': port.ip,
    'ip6-address': port.ip6,
    'vn-id': port.vnId,
    'vm-project-id': port.projectId,
    'mac-address': port.mac,
    'system-name': port.systemName,
    type: port.type,
    'rx-vlan-id': port.rxVlanId,
    'tx-vlan-id': port.txVlanId,
    'vhostuser-mode': port.vhostuserMode,
    // Persisted for remote ports only: they have no interface to read it from.
    ...(port.type === 2 ? { 'link-state': port.linkState } : {}),
    author: meta.author,
    time: simpleTime(meta.now),
    ...extensionJson(port),
  });
}

/** MakeVmVnPortJson(entry, meta_info = true): a file of ports/vm/<vm-name>/. */
export function vmVnPortFile(port: VmVnPort, meta: WriteMeta): string {
  return prettyJson({
    'vm-uuid': port.vmUuid,
    'vn-uuid': port.vnUuid,
    'vmi-uuid': port.vmiUuid,
    'vm-id': port.vmId,
    'vm-name': port.vmName,
    'host-ifname': port.hostIfname,
    'vm-ifname': port.vmIfname,
    'vm-namespace': port.vmNamespace,
    author: meta.author,
    time: simpleTime(meta.now),
  });
}

/** A configured interface: what GET /port and GET /vm report (its VN's IPAM gave plen, gateway, DNS). */
export interface ConfiguredInterface {
  port: AgentPort;
  ip: string;
  plen: number;
  gateway: string;
  dnsServer: string;
}

/** MakeJsonFromVmi (IPv4 IPAM only: vrouter-ts forwards IPv4). */
export function interfaceJson(configured: ConfiguredInterface, meta: WriteMeta): string {
  const { port } = configured;
  return prettyJson({
    id: port.id,
    'instance-id': port.instanceId,
    'vn-id': port.vnId,
    'vm-project-id': port.projectId,
    'mac-address': port.mac,
    'system-name': port.systemName,
    'rx-vlan-id': port.rxVlanId,
    'tx-vlan-id': port.txVlanId,
    'vhostuser-mode': port.vhostuserMode,
    'ip-address': configured.ip,
    plen: configured.plen,
    'dns-server': configured.dnsServer,
    gateway: configured.gateway,
    author: meta.author,
    time: simpleTime(meta.now),
  });
}

/** A VMI of a VM as configuration describes it, before any port exists (GET /vm-cfg). */
export interface VmiConfig {
  id: string;
  vmUuid: string;
  vnId: string;
  /** The VN's name (VnEntry::GetName, its FQN in Contrail). */
  vnName: string;
  mac: string;
  subInterface: boolean;
  vlanId: number;
  annotations: Record<string, string>;
}

/** MakeJsonFromVmiConfig; annotations as "{key:value}" strings, the form the CNI splits on ':'. */
export function vmiConfigJson(config: VmiConfig): string {
  const annotations = Object.entries(config.annotations).map(([key, value]) => `{${key}:${value}}`);
  return prettyJson({
    id: config.id,
    'vm-uuid': config.vmUuid,
    'vn-id': config.vnId,
    'vn-name': config.vnName,
    'mac-address': config.mac,
    'sub-interface': config.subInterface,
    'vlan-id': config.vlanId,
    ...(annotations.length > 0 ? { annotations } : {}),
  });
}

/** The agent joins the pretty documents of a list with ',' inside '[' ']' (GetVmVnPort, GetVmVnCfgPort). */
export function jsonList(documents: string[]): string {
  return `[${documents.join(',')}]`;
}
