/**
 * Names of IF-MAP identifiers as contrail's schema forms them
 * (tungstenfabric/tf-api-client @ c0011de9 schema/vnc_cfg.xsd: a child's FQN
 * is its parent's plus its own name; tungstenfabric/tf-controller @ 6a674397
 * src/ifmap/ifmap_server_table.cc LinkAttrKey for link attributes).
 */

/** Where vrouter-control puts what its network.yaml names: contrail's default domain and project. */
export const DEFAULT_PROJECT = 'default-domain:default-project';

/**
 * A VN's own routing instance: `<vn FQN>:<vn name>`, as the schema
 * transformer names it (`default-domain:demo:vn1` -> `default-domain:demo:vn1:vn1`).
 */
export function ownRoutingInstance(vnFqn: string): string {
  return `${vnFqn}:${vnFqn.slice(vnFqn.lastIndexOf(':') + 1)}`;
}

/** The FQNs of a network.yaml VN: its virtual-network and its routing-instance. */
export function networkFqns(vnName: string): { vn: string; routingInstance: string } {
  const vn = `${DEFAULT_PROJECT}:${vnName}`;
  return { vn, routingInstance: ownRoutingInstance(vn) };
}

/** The name of the node carrying a link's attribute: `attr(<lesser FQN>,<greater FQN>)`, whatever the link's direction. */
export function linkAttrName(a: string, b: string): string {
  return a < b ? `attr(${a},${b})` : `attr(${b},${a})`;
}

/**
 * The VMI FQN vrouter-control gives a port: `<vm uuid>:<port id>`, as
 * contrail names an OpenStack VM's interfaces (cli1_vn1_vm3_add.master_output).
 * The agent finds its VMI by uuid (what a real control node's id-perms
 * carry) or, for a port id that is no uuid, by this name.
 */
export function interfaceFqn(vmUuid: string, portId: string): string {
  return `${vmUuid}:${portId}`;
}
