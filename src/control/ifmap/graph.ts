/**
 * An IF-MAP identifier graph: nodes by (type, FQN) with their properties, and
 * undirected links between them, each with its metadata type. The agent
 * applies what the control node sends into one; the control node builds one
 * from its configuration and sends each vrouter the difference between what
 * the vrouter has and what it should have (`diff`).
 *
 * A link may name a node no update has described yet (the control node sends
 * them in any order): the node then exists with no properties until its
 * update comes. Deleting a node deletes its links.
 */
import type { IfmapChange, IfmapElement, IfmapIdentity, IfmapLink, IfmapNode } from './types';

function keyOf(identity: IfmapIdentity): string {
  return `${identity.type}\0${identity.name}`;
}

function identityOf(key: string): IfmapIdentity {
  const split = key.indexOf('\0');
  return { type: key.slice(0, split), name: key.slice(split + 1) };
}

function sameProperties(a: IfmapElement[], b: IfmapElement[]): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export class IfmapGraph {
  private readonly nodes = new Map<string, IfmapNode>();
  /** node key -> neighbour key -> metadata type of the link between them. */
  private readonly adjacency = new Map<string, Map<string, string>>();

  get nodeCount(): number {
    return this.nodes.size;
  }

  /** Applies one `<update>` (nodes first, then links) or `<delete>` (links first, then nodes). */
  apply(change: IfmapChange): void {
    if (change.op === 'update') {
      for (const node of change.nodes) this.setNode(node);
      for (const link of change.links) this.addLink(link);
    } else {
      for (const link of change.links) this.deleteLink(link.left, link.right);
      for (const node of change.nodes) this.deleteNode(node);
    }
  }

  setNode(node: IfmapNode): void {
    const key = keyOf(node);
    this.nodes.set(key, { type: node.type, name: node.name, properties: node.properties });
    if (!this.adjacency.has(key)) this.adjacency.set(key, new Map());
  }

  addLink(link: IfmapLink): void {
    for (const end of [link.left, link.right]) {
      if (!this.nodes.has(keyOf(end))) this.setNode({ ...end, properties: [] });
    }
    this.adjacency.get(keyOf(link.left))!.set(keyOf(link.right), link.metadata);
    this.adjacency.get(keyOf(link.right))!.set(keyOf(link.left), link.metadata);
  }

  deleteLink(left: IfmapIdentity, right: IfmapIdentity): void {
    this.adjacency.get(keyOf(left))?.delete(keyOf(right));
    this.adjacency.get(keyOf(right))?.delete(keyOf(left));
  }

  deleteNode(identity: IfmapIdentity): void {
    const key = keyOf(identity);
    for (const neighbour of this.adjacency.get(key)?.keys() ?? []) this.adjacency.get(neighbour)?.delete(key);
    this.adjacency.delete(key);
    this.nodes.delete(key);
  }

  node(type: string, name: string): IfmapNode | undefined {
    return this.nodes.get(keyOf({ type, name }));
  }

  /** Nodes linked to (type, name), optionally only those of `neighbourType`, in link order. */
  neighbours(identity: IfmapIdentity, neighbourType?: string): IfmapNode[] {
    const found: IfmapNode[] = [];
    for (const key of this.adjacency.get(keyOf(identity))?.keys() ?? []) {
      const node = this.nodes.get(key)!;
      if (neighbourType === undefined || node.type === neighbourType) found.push(node);
    }
    return found;
  }

  *allNodes(): IterableIterator<IfmapNode> {
    yield* this.nodes.values();
  }

  /** Every link once, as (left, right) in the order it was first seen from the left end. */
  *allLinks(): IterableIterator<IfmapLink> {
    for (const [key, neighbours] of this.adjacency) {
      for (const [other, metadata] of neighbours) {
        if (key < other) yield { left: identityOf(key), right: identityOf(other), metadata };
      }
    }
  }

  /**
   * The nodes reachable from `start` following links for which `follow(from,
   * to, metadata)` is true, and the links followed: what a graph walk from a
   * virtual-router sends that vrouter.
   */
  reachable(start: IfmapIdentity, follow: (from: IfmapNode, to: IfmapNode, metadata: string) => boolean): IfmapGraph {
    const result = new IfmapGraph();
    const startNode = this.nodes.get(keyOf(start));
    if (startNode === undefined) return result;
    result.setNode(startNode);
    const queue = [keyOf(start)];
    while (queue.length > 0) {
      const key = queue.shift()!;
      const from = this.nodes.get(key)!;
      for (const [otherKey, metadata] of this.adjacency.get(key) ?? []) {
        const to = this.nodes.get(otherKey)!;
        if (!follow(from, to, metadata)) continue;
        if (result.node(to.type, to.name) === undefined) {
          result.setNode(to);
          queue.push(otherKey);
        }
        result.addLink({ left: from, right: to, metadata });
      }
    }
    return result;
  }

  /**
   * What turns `before` into this graph: one update (new and changed nodes,
   * then new links) and one delete (gone links, then gone nodes); empty
   * blocks are left out.
   */
  diffFrom(before: IfmapGraph): IfmapChange[] {
    const updatedNodes: IfmapNode[] = [];
    for (const [key, node] of this.nodes) {
      const old = before.nodes.get(key);
      if (old === undefined || !sameProperties(old.properties, node.properties)) updatedNodes.push(node);
    }
    const addedLinks: IfmapLink[] = [];
    for (const link of this.allLinks()) {
      if (before.adjacency.get(keyOf(link.left))?.get(keyOf(link.right)) !== link.metadata) addedLinks.push(link);
    }
    const deletedLinks: IfmapLink[] = [];
    for (const link of before.allLinks()) {
      if (this.adjacency.get(keyOf(link.left))?.get(keyOf(link.right)) === undefined) deletedLinks.push(link);
    }
    const deletedNodes: IfmapNode[] = [];
    for (const [key, node] of before.nodes) if (!this.nodes.has(key)) deletedNodes.push({ type: node.type, name: node.name, properties: [] });
    const changes: IfmapChange[] = [];
    if (updatedNodes.length > 0 || addedLinks.length > 0) changes.push({ op: 'update', nodes: updatedNodes, links: addedLinks });
    if (deletedNodes.length > 0 || deletedLinks.length > 0) changes.push({ op: 'delete', nodes: deletedNodes, links: deletedLinks });
    return changes;
  }
}

/** The first property element called `name` of a node, if any. */
export function property(node: IfmapNode, name: string): IfmapElement | undefined {
  return node.properties.find((element) => element.name === name);
}

/** The child element at `path` below `element` (`child(x, 'subnet', 'ip-prefix')`). */
export function child(element: IfmapElement | undefined, ...path: string[]): IfmapElement | undefined {
  let current = element;
  for (const name of path) current = current?.children.find((c) => c.name === name);
  return current;
}

/** Every child element called `name`. */
export function children(element: IfmapElement | undefined, name: string): IfmapElement[] {
  return element?.children.filter((c) => c.name === name) ?? [];
}
