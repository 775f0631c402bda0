/**
 * Loads a dataplane state file (YAML or JSON, see state-schema.ts) into a
 * freshly programmed Dataplane. Every error names the file, the JSON-pointer
 * path of the offending field and its value, in one form:
 *
 *   <file>: <path>: <what is wrong> (value: <JSON of the value>)
 *
 * so an operator can find the line to fix without reading this code.
 */
import { readFileSync } from 'node:fs';
import type Ajv from 'ajv';
import type { ValidateFunction } from 'ajv';
import ipaddr from 'ipaddr.js';
import { Dataplane } from '../../dataplane/dataplane';
import { describeSchemaError, formatConfigError, parseYamlText } from './config-errors';
import { NexthopSpec, TunnelEncap } from '../../dataplane/nexthop';
import { parseMac } from '../../dataplane/protocols/ethernet';
import { ipToString } from '../../dataplane/protocols/ipv4';
import { prefixMask } from '../../dataplane/lpm/prefix-table';
import { ip6FromString, ip6ToString, maskPrefix6 } from '../../dataplane/protocols/ipv6';
import { Subnet, Subnet6 } from '../../dataplane/vrf';
import { FloatingIp, FloatingIp6, VifKind } from '../../dataplane/vif';
import { ANY_PROTOCOL, ANY_VN, PolicyRule } from '../../dataplane/policy';
import {
  DEFAULT_ENCAP_PRIORITY,
  DEFAULT_MTU,
  DEFAULT_TUNNEL_ENCAPS,
  NexthopEntry,
  PortMapEntry,
  StateDocument,
  TunnelNexthopEntry,
  VrfReference,
  stateFileSchema,
} from './state-schema';

export class StateFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StateFileError';
  }
}

/** Reads, validates and programs a state file. */
export function loadStateFile(file: string): Dataplane {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new StateFileError(`${file}: cannot read: ${(error as Error).message}`);
  }
  return buildDataplane(parseStateText(text, file), file);
}

/** Parses YAML (which includes JSON) into plain data; syntax errors name the line. */
export function parseStateText(text: string, file: string): unknown {
  return parseYamlText(text, file, (message) => new StateFileError(message));
}

// Loaded and compiled on first use: a process that only builds from a validated document (the dataplane worker) starts faster.
let validateDocument: ValidateFunction<StateDocument> | undefined;

function compileValidator(): ValidateFunction<StateDocument> {
  const AjvClass = (require('ajv') as { default: typeof Ajv }).default;
  // verbose: errors carry the offending value and the schema around it, for the messages.
  return new AjvClass({ discriminator: true, verbose: true, allowUnionTypes: true }).compile<StateDocument>(stateFileSchema);
}

/**
 * Validates a parsed document and programs a new Dataplane from it;
 * `validated`: the document passed this validation already (the daemon's
 * worker, on the main thread's document), only programmed.
 */
export function buildDataplane(document: unknown, file: string, options: { validated?: boolean } = {}): Dataplane {
  if (!options.validated) {
    validateDocument ??= compileValidator();
    if (!validateDocument(document)) throw new StateFileError(describeSchemaError(validateDocument.errors![0], file));
  }
  return new StateBuilder(document as StateDocument, file).build();
}

const PROTOCOL_NUMBERS: Record<'any' | 'tcp' | 'udp' | 'icmp' | 'icmp6', number> = { any: ANY_PROTOCOL, icmp: 1, tcp: 6, udp: 17, icmp6: 58 };

/** IPv6 text has a colon, IPv4 text never does. */
function isIpv6Text(text: string): boolean {
  return text.includes(':');
}

/** The dataplane's form of an address: an unsigned 32-bit number. */
function ipv4ToNumber(address: ipaddr.IPv4): number {
  const [a, b, c, d] = address.toByteArray();
  return ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;
}

/** Programs a Dataplane from a schema-valid document, checking what the schema cannot: addresses, uniqueness, references. */
class StateBuilder {
  private readonly dataplane: Dataplane;
  private readonly vrfIdByName = new Map<string, number>();
  /** Nexthop kinds by id, from the document, so composites can be checked before they are programmed. */
  private readonly nexthopKinds = new Map<number, NexthopEntry['kind']>();
  private readonly encapPriority: readonly TunnelEncap[];
  private readonly underlayIp: number;
  private readonly underlayGatewayMac: Uint8Array | null;

  constructor(
    private readonly state: StateDocument,
    private readonly file: string,
  ) {
    const node = state.node;
    this.underlayIp = this.parseIpv4(node.underlayIp, '/node/underlayIp');
    this.underlayGatewayMac = node.underlayGatewayMac === undefined ? null : parseMac(node.underlayGatewayMac);
    this.encapPriority = node.encapPriority ?? DEFAULT_ENCAP_PRIORITY;
    this.dataplane = new Dataplane(
      { name: node.name, underlayIp: this.underlayIp, encapPriority: [...this.encapPriority] },
      {
        flowCapacity: state.flows?.capacity,
        flowIdleTimeout: state.flows?.idleTimeout,
        vifFlowLimit: state.flows?.maxFlowsPerVif,
        flowIpv6Capacity: state.flows?.ipv6Capacity,
      },
    );
  }

  build(): Dataplane {
    this.addVrfs();
    this.addVifs();
    this.addNexthops();
    this.addRoutes();
    this.addLabels();
    this.addPolicies();
    return this.dataplane;
  }

  private addVrfs(): void {
    const vrfs = this.state.vrfs ?? [];
    this.requireUnique(vrfs, 'vrfs', 'id');
    this.requireUnique(vrfs, 'vrfs', 'name');
    vrfs.forEach((vrf, index) => {
      const path = `/vrfs/${index}`;
      const subnets: Subnet[] = [];
      const subnets6: Subnet6[] = [];
      (vrf.subnets ?? []).forEach((subnet, subnetIndex) => {
        const subnetPath = `${path}/subnets/${subnetIndex}`;
        if (isIpv6Text(subnet)) subnets6.push(this.parsePrefix6(subnet, subnetPath));
        else subnets.push(this.parsePrefix(subnet, subnetPath));
      });
      const gateway = vrf.gateway === undefined ? 0 : this.parseIpv4(vrf.gateway, `${path}/gateway`);
      const gateway6 = vrf.gateway6 === undefined ? null : this.parseIpv6(vrf.gateway6, `${path}/gateway6`);
      this.program(path, vrf, () => {
        this.dataplane.addVrf(vrf.id, vrf.name, subnets, gateway);
        this.dataplane.setVrfIpv6(vrf.id, subnets6, gateway6);
      });
      this.vrfIdByName.set(vrf.name, vrf.id);
    });
  }

  private addVifs(): void {
    const vifs = this.state.vifs ?? [];
    this.requireUnique(vifs, 'vifs', 'id');
    this.requireUnique(vifs, 'vifs', 'name');
    vifs.forEach((vif, index) => {
      const path = `/vifs/${index}`;
      if (vif.kind === 'virtual' && vif.vrf === undefined) this.fail(path, 'a virtual vif needs "vrf"', vif);
      if (vif.kind === 'fabric' && vif.vrf !== undefined) this.fail(`${path}/vrf`, 'a fabric vif belongs to no VRF', vif.vrf);
      const floatingIps: FloatingIp[] = [];
      const floatingIps6: FloatingIp6[] = [];
      (vif.floatingIps ?? []).forEach((fip, fipIndex) => {
        const fipPath = `${path}/floatingIps/${fipIndex}/ip`;
        const portMap = this.portMap(fip.portMap ?? []);
        if (isIpv6Text(fip.ip)) floatingIps6.push({ ip: this.parseIpv6(fip.ip, fipPath), portMap });
        else floatingIps.push({ ip: this.parseIpv4(fip.ip, fipPath), portMap });
      });
      const config = {
        id: vif.id,
        kind: vif.kind,
        name: vif.name,
        mac: parseMac(vif.mac),
        ip: vif.ip === undefined ? 0 : this.parseIpv4(vif.ip, `${path}/ip`),
        ip6: vif.ip6 === undefined ? null : this.parseIpv6(vif.ip6, `${path}/ip6`),
        vrf: vif.vrf === undefined ? -1 : this.resolveVrf(vif.vrf, `${path}/vrf`),
        mtu: vif.mtu ?? DEFAULT_MTU,
        floatingIps,
        floatingIps6,
        maxFlows: vif.maxFlows,
      };
      this.program(path, vif, () => this.dataplane.addVif(config));
    });
  }

  /** Non-composites first, so composite members may appear anywhere in the file. */
  private addNexthops(): void {
    const nexthops = this.state.nexthops ?? [];
    this.requireUnique(nexthops, 'nexthops', 'id');
    for (const nexthop of nexthops) this.nexthopKinds.set(nexthop.id, nexthop.kind);
    for (const pass of ['members', 'composites'] as const) {
      nexthops.forEach((nexthop, index) => {
        if ((nexthop.kind === 'composite') !== (pass === 'composites')) return;
        const path = `/nexthops/${index}`;
        const spec = this.nexthopSpec(nexthop, path);
        this.program(path, nexthop, () => this.dataplane.setNexthop(nexthop.id, spec));
      });
    }
  }

  private nexthopSpec(nexthop: NexthopEntry, path: string): NexthopSpec {
    switch (nexthop.kind) {
      case 'encap': {
        const vif = this.requireVif(nexthop.vif, `${path}/vif`);
        return { kind: 'encap', vif: vif.id, mac: nexthop.mac === undefined ? vif.mac : parseMac(nexthop.mac) };
      }
      case 'tunnel':
        return this.tunnelSpec(nexthop, path);
      case 'composite':
        return {
          kind: 'composite',
          vn: nexthop.vn === undefined ? undefined : this.resolveVrf(nexthop.vn, `${path}/vn`),
          members: nexthop.members.map((member, slot) => {
            if (member === null) return -1;
            const memberPath = `${path}/members/${slot}`;
            const kind = this.nexthopKinds.get(member);
            if (kind === undefined) this.fail(memberPath, `nexthop ${member} is not defined`, member);
            if (kind === 'composite') this.fail(memberPath, `nexthop ${member} is a composite; composites do not nest`, member);
            return member;
          }),
        };
      case 'receive':
        return {
          kind: 'receive',
          vif: nexthop.vif === undefined ? (this.onlyVifOfKind('host', path, nexthop)?.id ?? -1) : this.requireVif(nexthop.vif, `${path}/vif`).id,
        };
      case 'discard':
        return { kind: 'discard' };
    }
  }

  private tunnelSpec(tunnel: TunnelNexthopEntry, path: string): NexthopSpec {
    let vifId: number;
    if (tunnel.vif === undefined) {
      const fabric = this.onlyVifOfKind('fabric', path, tunnel);
      if (!fabric) this.fail(path, 'no fabric vif for the tunnel to leave by: add one or set "vif"', tunnel);
      vifId = fabric.id;
    } else {
      const vif = this.requireVif(tunnel.vif, `${path}/vif`);
      if (vif.kindName !== 'fabric') this.fail(`${path}/vif`, `vif ${vif.id} is a ${vif.kindName} vif, tunnels leave by a fabric vif`, tunnel.vif);
      vifId = vif.id;
    }
    let mac = this.underlayGatewayMac;
    if (tunnel.mac !== undefined) mac = parseMac(tunnel.mac);
    if (!mac) this.fail(path, 'no destination MAC: set "mac" here or "underlayGatewayMac" in node', tunnel);
    const encaps = tunnel.encaps ?? DEFAULT_TUNNEL_ENCAPS;
    const encap = this.encapPriority.find((candidate) => encaps.includes(candidate));
    if (!encap) this.fail(`${path}/encaps`, `no encapsulation in common with node.encapPriority ${JSON.stringify(this.encapPriority)}`, encaps);
    return {
      kind: 'tunnel',
      vif: vifId,
      dip: this.parseIpv4(tunnel.dip, `${path}/dip`),
      sip: tunnel.sip === undefined ? this.underlayIp : this.parseIpv4(tunnel.sip, `${path}/sip`),
      label: tunnel.label,
      encap,
      mac,
      vn: tunnel.vn === undefined ? undefined : this.resolveVrf(tunnel.vn, `${path}/vn`),
    };
  }

  private portMap(entries: PortMapEntry[]): FloatingIp['portMap'] {
    return entries.map((entry) => ({ protocol: PROTOCOL_NUMBERS[entry.protocol], port: entry.port, targetPort: entry.targetPort ?? entry.port }));
  }

  /** Explicit rules first (first match wins), then the rules each VN's "uses" implies. */
  private addPolicies(): void {
    const rules: PolicyRule[] = [];
    (this.state.policies ?? []).forEach((policy, index) => {
      const path = `/policies/${index}`;
      const [portFrom, portTo] = policy.ports === undefined ? [0, 65535] : typeof policy.ports === 'number' ? [policy.ports, policy.ports] : policy.ports;
      if (portFrom > portTo) this.fail(`${path}/ports`, 'the range ends before it starts', policy.ports);
      const prefixPath = `${path}/destinationPrefix`;
      const destination6 = policy.destinationPrefix !== undefined && isIpv6Text(policy.destinationPrefix) ? this.parsePrefix6(policy.destinationPrefix, prefixPath) : null;
      const destination =
        policy.destinationPrefix === undefined ? { prefix: 0, length: 0 } : destination6 !== null ? { prefix: 0, length: destination6.length } : this.parsePrefix(policy.destinationPrefix, prefixPath);
      rules.push({
        name: policy.name ?? `policy ${index}`,
        sourceVn: policy.source === 'any' ? ANY_VN : this.resolveVrf(policy.source, `${path}/source`),
        destinationVn: policy.destination === 'any' ? ANY_VN : this.resolveVrf(policy.destination, `${path}/destination`),
        protocol: PROTOCOL_NUMBERS[policy.protocol ?? 'any'],
        portFrom,
        portTo,
        destinationPrefix: destination.prefix,
        destinationLength: destination.length,
        destinationPrefix6: destination6?.prefix ?? null,
        allow: policy.action === 'allow',
      });
    });
    const services = this.state.services ?? [];
    this.requireUnique(services, 'services', 'name');
    const serviceByName = new Map(services.map((service, index) => [service.name, { service, index }]));
    (this.state.vrfs ?? []).forEach((vrf, vrfIndex) => {
      (vrf.uses ?? []).forEach((serviceName, useIndex) => {
        const path = `/vrfs/${vrfIndex}/uses/${useIndex}`;
        const found = serviceByName.get(serviceName);
        if (!found) this.fail(path, `service ${JSON.stringify(serviceName)} is not defined`, serviceName);
        const servicePath = `/services/${found.index}`;
        const clusterIpText = found.service.clusterIp;
        const clusterIp6 = isIpv6Text(clusterIpText) ? this.parseIpv6(clusterIpText, `${servicePath}/clusterIp`) : null;
        const clusterIp = clusterIp6 === null ? this.parseIpv4(clusterIpText, `${servicePath}/clusterIp`) : 0;
        const serviceVn = this.resolveVrf(found.service.vn, `${servicePath}/vn`);
        for (const servicePort of found.service.ports) {
          rules.push({
            name: `${vrf.name} uses ${serviceName}`,
            sourceVn: vrf.id,
            destinationVn: serviceVn,
            protocol: PROTOCOL_NUMBERS[servicePort.protocol],
            portFrom: servicePort.port,
            portTo: servicePort.port,
            destinationPrefix: clusterIp,
            destinationLength: clusterIp6 === null ? 32 : 128,
            destinationPrefix6: clusterIp6,
            allow: true,
          });
        }
      });
    });
    this.dataplane.policy.setRules(rules);
  }

  private addRoutes(): void {
    /** "vrf prefix/length" -> path of the route that first set it. */
    const seen = new Map<string, string>();
    (this.state.routes ?? []).forEach((route, index) => {
      const path = `/routes/${index}`;
      const vrf = this.resolveVrf(route.vrf, `${path}/vrf`);
      const ipv6 = isIpv6Text(route.prefix);
      const route6 = ipv6 ? this.parsePrefix6(route.prefix, `${path}/prefix`) : null;
      const { prefix, length } = ipv6 ? { prefix: 0, length: route6!.length } : this.parsePrefix(route.prefix, `${path}/prefix`);
      this.requireNexthop(route.nexthop, `${path}/nexthop`);
      const key = `${vrf} ${route6 ? ip6ToString(route6.prefix) : prefix}/${length}`;
      const first = seen.get(key);
      if (first !== undefined) this.fail(`${path}/prefix`, `duplicate route in vrf ${vrf}, first at ${first}`, route.prefix);
      seen.set(key, path);
      this.program(path, route, () =>
        route6 ? this.dataplane.addRoute6(vrf, route6.prefix, length, route.nexthop) : this.dataplane.addRoute(vrf, prefix, length, route.nexthop),
      );
    });
  }

  private addLabels(): void {
    const labels = this.state.labels ?? [];
    this.requireUnique(labels, 'labels', 'label');
    labels.forEach((entry, index) => {
      const path = `/labels/${index}`;
      this.requireNexthop(entry.nexthop, `${path}/nexthop`);
      this.program(path, entry, () => this.dataplane.setLabel(entry.label, entry.nexthop));
    });
  }

  /** Reports the second of two items that share a key, at that key's path. */
  private requireUnique<Item, Key extends keyof Item & string>(items: readonly Item[], section: string, key: Key): void {
    const firstIndex = new Map<Item[Key], number>();
    items.forEach((item, index) => {
      const value = item[key];
      const first = firstIndex.get(value);
      if (first !== undefined) this.fail(`/${section}/${index}/${key}`, `duplicate ${key}, first at /${section}/${first}`, value);
      firstIndex.set(value, index);
    });
  }

  private resolveVrf(reference: VrfReference, path: string): number {
    const id = typeof reference === 'number' ? reference : this.vrfIdByName.get(reference);
    if (id === undefined || !this.dataplane.vrfs.get(id)) this.fail(path, `vrf ${JSON.stringify(reference)} is not defined`, reference);
    return id;
  }

  private requireVif(id: number, path: string) {
    const vif = this.dataplane.vifs.get(id);
    if (!vif) this.fail(path, `vif ${id} is not defined`, id);
    return vif;
  }

  private requireNexthop(id: number, path: string): void {
    if (!this.dataplane.nexthops.exists(id)) this.fail(path, `nexthop ${id} is not defined`, id);
  }

  /** The vif of a kind when there is exactly one, null when none; several make the default ambiguous. */
  private onlyVifOfKind(kind: VifKind, path: string, nexthop: NexthopEntry) {
    const found = [...this.dataplane.vifs].filter((vif) => vif.kindName === kind);
    if (found.length > 1) this.fail(path, `several ${kind} vifs (${found.map((vif) => vif.id).join(', ')}): set "vif"`, nexthop);
    return found[0] ?? null;
  }

  /** Four-part decimal only: ipaddr.js would also take "10.1" and hex forms, which are more likely typos. */
  private parseIpv4(text: string, path: string): number {
    if (!ipaddr.IPv4.isValidFourPartDecimal(text)) this.fail(path, 'not an IPv4 address', text);
    return ipv4ToNumber(ipaddr.IPv4.parse(text));
  }

  private parsePrefix(text: string, path: string): Subnet {
    if (!ipaddr.IPv4.isValidCIDRFourPartDecimal(text)) this.fail(path, 'not an IPv4 prefix (a.b.c.d/length)', text);
    const [address, length] = ipaddr.IPv4.parseCIDR(text);
    const prefix = ipv4ToNumber(address);
    const network = (prefix & prefixMask(length)) >>> 0;
    if (network !== prefix) {
      this.fail(path, `host bits set: the prefix is ${ipToString(network)}/${length}`, text);
    }
    return { prefix, length };
  }

  private parseIpv6(text: string, path: string): Uint8Array {
    try {
      return ip6FromString(text);
    } catch {
      return this.fail(path, 'not an IPv6 address', text);
    }
  }

  private parsePrefix6(text: string, path: string): Subnet6 {
    const slash = text.indexOf('/');
    const lengthText = slash < 0 ? '' : text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(lengthText) || Number(lengthText) > 128) this.fail(path, 'not an IPv6 prefix (x:x::/length, length 0-128)', text);
    const length = Number(lengthText);
    const prefix = this.parseIpv6(text.slice(0, slash), path);
    const network = maskPrefix6(Uint8Array.from(prefix), length);
    if (ip6ToString(network) !== ip6ToString(prefix)) this.fail(path, `host bits set: the prefix is ${ip6ToString(network)}/${length}`, text);
    return { prefix, length };
  }

  /** Runs one Dataplane call, blaming the item being programmed for what it throws. */
  private program(path: string, item: unknown, action: () => void): void {
    try {
      action();
    } catch (error) {
      this.fail(path, (error as Error).message, item);
    }
  }

  private fail(path: string, problem: string, value: unknown): never {
    throw new StateFileError(formatConfigError(this.file, path, problem, value));
  }
}
