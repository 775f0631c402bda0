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

/** Whether two property lists are the same elements, compared in place (a diff compares every node it sends). */
function sameProperties(a: IfmapElement[], b: IfmapElement[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let index = 0; index < a.length; index++) if (!sameElement(a[index], b[index])) return false;
  return true;
}

function sameElement(a: IfmapElement, b: IfmapElement): boolean {
  if (a.name !== b.name || a.text !== b.text || !sameProperties(a.children, b.children)) return false;
  const names = Object.keys(a.attributes);
  if (names.length !== Object.keys(b.attributes).length) return false;
  for (const name of names) if (a.attributes[name] !== b.attributes[name]) return false;
  return true;
}

export class IfmapGraph {
  private readonly nodes = new Map<string, IfmapNode>();
  /** node key -> neighbour key -> metadata type of the link between them. */
  private readonly adjacency = new Map<string, Map<string, string>>();

  /** Goes up on every change of a node or link: what a cache of a view of the graph (an index) is valid for. */
  version = 0;
  private typedNeighbours: { version: number; byNode: Map<string, Map<string, IfmapNode[]>> } = { version: -1, byNode: new Map() };

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
    this.version++;
    const key = keyOf(node);
    this.nodes.set(key, { type: node.type, name: node.name, properties: node.properties });
    if (!this.adjacency.has(key)) this.adjacency.set(key, new Map());
  }

  addLink(link: IfmapLink): void {
    this.version++;
    const left = keyOf(link.left);
    const right = keyOf(link.right);
    this.linksOf(left, link.left).set(right, link.metadata);
    this.linksOf(right, link.right).set(left, link.metadata);
  }

  /** A node's links; a node only named by a link so far is made without properties. */
  private linksOf(key: string, identity: IfmapIdentity): Map<string, string> {
    let links = this.adjacency.get(key);
    if (links === undefined) {
      this.nodes.set(key, { type: identity.type, name: identity.name, properties: [] });
      this.adjacency.set(key, (links = new Map()));
    }
    return links;
  }

  deleteLink(left: IfmapIdentity, right: IfmapIdentity): void {
    this.version++;
    this.adjacency.get(keyOf(left))?.delete(keyOf(right));
    this.adjacency.get(keyOf(right))?.delete(keyOf(left));
  }

  deleteNode(identity: IfmapIdentity): void {
    this.version++;
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
    const key = keyOf(identity);
    if (neighbourType !== undefined) return [...(this.neighboursByType(key).get(neighbourType) ?? [])];
    const found: IfmapNode[] = [];
    for (const other of this.adjacency.get(key)?.keys() ?? []) found.push(this.nodes.get(other)!);
    return found;
  }

  /**
   * A node's neighbours grouped by type, kept until the graph changes: a
   * virtual-network links every interface and address in it, and each of
   * its ports asks it for its one network-ipam.
   */
  private neighboursByType(key: string): Map<string, IfmapNode[]> {
    if (this.typedNeighbours.version !== this.version) this.typedNeighbours = { version: this.version, byNode: new Map() };
    let byType = this.typedNeighbours.byNode.get(key);
    if (byType === undefined) {
      byType = new Map();
      for (const other of this.adjacency.get(key)?.keys() ?? []) {
        const node = this.nodes.get(other)!;
        const ofType = byType.get(node.type);
        if (ofType === undefined) byType.set(node.type, [node]);
        else ofType.push(node);
      }
      this.typedNeighbours.byNode.set(key, byType);
    }
    return byType;
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
   * Adds to `into` the nodes reachable from `start` following links for
   * which `follow(from, to, metadata)` is true, and the links followed: what
   * a graph walk from a virtual-router sends that vrouter. A node already in
   * `into` is not walked again: what it reaches was added when it was.
   */
  walkInto(into: IfmapGraph, start: IfmapIdentity, follow: (from: IfmapNode, to: IfmapNode, metadata: string) => boolean): void {
    const startKey = keyOf(start);
    const startNode = this.nodes.get(startKey);
    if (startNode === undefined || into.nodes.get(startKey) === startNode) return;
    into.setNodeByKey(startKey, startNode);
    const queue = [startKey];
    for (let head = 0; head < queue.length; head++) {
      const key = queue[head];
      const from = this.nodes.get(key)!;
      const fromLinks = into.adjacency.get(key)!;
      for (const [otherKey, metadata] of this.adjacency.get(key) ?? []) {
        const to = this.nodes.get(otherKey)!;
        if (!follow(from, to, metadata)) continue;
        if (!into.nodes.has(otherKey)) {
          into.setNodeByKey(otherKey, to);
          queue.push(otherKey);
        }
        fromLinks.set(otherKey, metadata);
        into.adjacency.get(otherKey)!.set(key, metadata);
      }
    }
  }

  private setNodeByKey(key: string, node: IfmapNode): void {
    this.version++;
    this.nodes.set(key, node);
    if (!this.adjacency.has(key)) this.adjacency.set(key, new Map());
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
    for (const [key, neighbours] of this.adjacency) {
      const old = before.adjacency.get(key);
      for (const [other, metadata] of neighbours) {
        if (key < other && old?.get(other) !== metadata) addedLinks.push({ left: identityOf(key), right: identityOf(other), metadata });
      }
    }
    const deletedLinks: IfmapLink[] = [];
    for (const [key, neighbours] of before.adjacency) {
      const now = this.adjacency.get(key);
      for (const [other, metadata] of neighbours) {
        if (key < other && now?.get(other) === undefined) deletedLinks.push({ left: identityOf(key), right: identityOf(other), metadata });
      }
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
