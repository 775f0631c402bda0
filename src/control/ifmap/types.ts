/**
 * The IF-MAP identifier graph as it travels over XMPP (`<config><update>` /
 * `<delete>` of `<node>` and `<link>`, src/ifmap/ifmap_encoder.cc in
 * tungstenfabric/tf-controller): the shared vocabulary of the codec
 * (ifmap/codec.ts), the agent's configuration graph and the control node's
 * publisher.
 *
 * Properties are kept as the XML elements they arrived as, so a property or
 * an identifier type this project does not interpret survives a round trip.
 */

/** One XML element of a property or a link attribute, whole. */
export interface IfmapElement {
  name: string;
  attributes: Record<string, string>;
  /** Character data directly inside the element (trimmed), '' when none. */
  text: string;
  children: IfmapElement[];
}

/** A node's identity: its type (`virtual-machine-interface`) and FQN (`default-domain:k8s:pod-uid`). */
export interface IfmapIdentity {
  type: string;
  name: string;
}

export interface IfmapNode extends IfmapIdentity {
  /** The node's property elements in wire order (`id-perms`, `virtual-machine-interface-mac-addresses`, ...). */
  properties: IfmapElement[];
}

/**
 * A link carries no data of its own (IFMapLink::EncodeLinkInfo writes an empty
 * `<metadata type=...>`): a link attribute such as the VN-IPAM link's
 * `ipam-subnets` travels as a node of the link's type named
 * `attr(<ipam FQN>,<vn FQN>)` with a `<value>` property, linked to both ends.
 */
export interface IfmapLink {
  left: IfmapIdentity;
  right: IfmapIdentity;
  /** The metadata type, `<left type>-<right type>` in the schema (`virtual-network-network-ipam`). */
  metadata: string;
}

/** One `<update>` or `<delete>` block. */
export interface IfmapChange {
  op: 'update' | 'delete';
  nodes: IfmapNode[];
  links: IfmapLink[];
}
