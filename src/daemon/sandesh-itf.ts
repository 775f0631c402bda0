/**
 * The agent's `GET /Snh_ItfReq` answer on its introspect port (8085), the
 * one the opencontrail kubelet plugin reads
 * (Juniper/contrail-kubernetes @ 814f54797796cc6c1351a5c7afea0201bb693e33,
 * scripts/opencontrail-kubelet/opencontrail_kubelet/plugin.py: it walks
 * every ItfSandeshData and takes vm_name, uuid, ip_addr, mdata_ip_addr).
 *
 * The shape is Sandesh's XML protocol: ItfResp and ItfSandeshData as
 * src/vnsw/agent/oper/agent.sandesh (tungstenfabric/tf-controller @
 * 6a674397821187fedfffd9586942b906d3479dbc) declares them, fields in
 * identifier order, optional fields left out, `more` last with identifier 0,
 * written as Juniper/contrail-sandesh's TXMLProtocol writes (library/cpp/
 * protocol/TXMLProtocol.cpp @ 049921a8b3e20e11f195cdee66a7f3037348fb72: no
 * whitespace, `<f type=".." identifier="..">`, link annotations as
 * attributes, & ' < > escaped) behind the stylesheet line SandeshHttp sends
 * (library/cpp/sandesh_http.cc @ 0a9bd40771a01c20ebfeb4bb54355d0b82d50c61)
 * with Content-Type text/xml.
 */

/** One interface as the daemon knows it. */
export interface SandeshInterface {
  /** The vif (the agent's interface index); -1 when not attached. */
  index: number;
  name: string;
  uuid: string;
  vrfName: string;
  active: boolean;
  label: number;
  vnName: string;
  vmUuid: string;
  vmName: string;
  ip: string;
  mac: string;
  vmProjectUuid: string;
  txVlanId: number;
  rxVlanId: number;
}

/** The ItfReq fields that filter (substring matches, as the agent's filters). */
const FILTERS: Array<[string, (itf: SandeshInterface) => string]> = [
  ['name', (itf) => itf.name],
  ['uuid', (itf) => itf.uuid],
  ['vn', (itf) => itf.vnName],
  ['mac', (itf) => itf.mac],
  ['ipv4_address', (itf) => itf.ip],
];

export function filterInterfaces(interfaces: SandeshInterface[], query: URLSearchParams): SandeshInterface[] {
  return interfaces.filter((itf) => FILTERS.every(([key, value]) => !query.get(key) || value(itf).includes(query.get(key)!)));
}

function escape(text: string): string {
  return text.replace(/[&'<>]/g, (char) => ({ '&': '&amp;', "'": '&apos;', '<': '&lt;', '>': '&gt;' })[char]!);
}

type Field = [name: string, type: 'i32' | 'i16' | 'byte' | 'bool' | 'string' | 'list', value: string | number | boolean | { element: 'struct' | 'string' }, link?: string];

function field([name, type, value, link]: Field, id: number): string {
  const attributes = `type="${type}" identifier="${id}"${link ? ` link="${link}"` : ''}`;
  const content = typeof value === 'object' ? `<list type="${value.element}" size="0"></list>` : typeof value === 'string' ? escape(value) : String(value);
  return `<${name} ${attributes}>${content}</${name}>`;
}

const NONE_STRUCTS = { element: 'struct' } as const;
const NONE_STRINGS = { element: 'string' } as const;

/** ItfSandeshData of one interface: every non-optional field, by identifier. */
function itfSandeshData(itf: SandeshInterface): string {
  const active = itf.active ? 'Active' : 'Inactive';
  const fields: Record<number, Field> = {
    1: ['index', 'i32', itf.index],
    2: ['name', 'string', itf.name],
    3: ['uuid', 'string', itf.uuid],
    4: ['vrf_name', 'string', itf.vrfName, 'VrfListReq'],
    5: ['active', 'string', active],
    6: ['dhcp_service', 'string', 'Disable'],
    7: ['dns_service', 'string', 'Disable'],
    8: ['type', 'string', 'vport'],
    9: ['label', 'i32', itf.label],
    10: ['vn_name', 'string', itf.vnName, 'VnListReq'],
    11: ['vm_uuid', 'string', itf.vmUuid, 'VmListReq'],
    12: ['vm_name', 'string', itf.vmName],
    13: ['ip_addr', 'string', itf.ip],
    14: ['mac_addr', 'string', itf.mac],
    15: ['policy', 'string', 'Enable'],
    16: ['fip_list', 'list', NONE_STRUCTS],
    // No metadata service: no link-local address.
    17: ['mdata_ip_addr', 'string', '0.0.0.0'],
    18: ['service_vlan_list', 'list', NONE_STRUCTS],
    19: ['os_ifindex', 'i32', -1],
    20: ['fabric_port', 'string', 'NotFabricPort'],
    21: ['alloc_linklocal_ip', 'string', 'LL-Disable'],
    22: ['analyzer_name', 'string', ''],
    23: ['config_name', 'string', itf.uuid],
    24: ['sg_uuid_list', 'list', NONE_STRUCTS],
    25: ['l2_label', 'i32', -1],
    26: ['vxlan_id', 'i32', 0],
    27: ['static_route_list', 'list', NONE_STRUCTS],
    28: ['l2_active', 'string', active],
    30: ['vm_project_uuid', 'string', itf.vmProjectUuid],
    31: ['admin_state', 'string', 'Enabled'],
    32: ['flow_key_idx', 'i32', -1],
    36: ['local_preference', 'i32', 0],
    37: ['tx_vlan_id', 'i16', itf.txVlanId],
    38: ['rx_vlan_id', 'i16', itf.rxVlanId],
    39: ['parent_interface', 'string', ''],
    44: ['transport', 'string', 'Ethernet'],
    45: ['logical_interface_uuid', 'string', '00000000-0000-0000-0000-000000000000'],
    47: ['physical_device', 'string', ''],
    48: ['physical_interface', 'string', ''],
    50: ['fixed_ip4_list', 'list', NONE_STRINGS],
    51: ['fixed_ip6_list', 'list', NONE_STRINGS],
    52: ['fat_flow_list', 'list', NONE_STRINGS],
    57: ['alias_ip_list', 'list', NONE_STRUCTS],
    58: ['drop_new_flows', 'bool', false],
    59: ['bridge_domain_list', 'list', NONE_STRUCTS],
    60: ['vmi_tag_list', 'list', NONE_STRUCTS],
    61: ['policy_set_acl_list', 'list', NONE_STRINGS],
    62: ['slo_list', 'list', NONE_STRUCTS],
    63: ['vhostuser_mode', 'byte', 0],
    64: ['si_other_end_vmi', 'string', ''],
    65: ['cfg_igmp_enable', 'bool', false],
    66: ['igmp_enabled', 'bool', false],
    67: ['max_flows', 'i32', 0],
    68: ['policy_set_fwaas_list', 'list', NONE_STRINGS],
    69: ['bond_interface_list', 'list', NONE_STRUCTS],
    70: ['mac_ip_learning_enable', 'bool', false],
    71: ['mac_ip_list', 'list', NONE_STRUCTS],
    72: ['dhcp_service_v6', 'string', 'Disable'],
  };
  return `<ItfSandeshData>${Object.entries(fields)
    .map(([id, entry]) => field(entry, Number(id)))
    .join('')}</ItfSandeshData>`;
}

/** The HTTP body of the answer to Snh_ItfReq. */
export function itfResponse(interfaces: SandeshInterface[]): string {
  return (
    '<?xml-stylesheet type="text/xsl" href="/universal_parse.xsl"?>' +
    `<ItfResp type="sandesh"><itf_list type="list" identifier="1"><list type="struct" size="${interfaces.length}">` +
    interfaces.map(itfSandeshData).join('') +
    '</list></itf_list><more type="bool" identifier="0">false</more></ItfResp>'
  );
}
