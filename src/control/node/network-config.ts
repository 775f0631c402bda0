/**
 * The control node's configuration file (YAML or JSON): virtual networks,
 * services and policies in a form close to Kubernetes objects, plus who may
 * connect and how. Validated with a JSON Schema that rejects unknown fields,
 * then checked for what a schema cannot say (addresses, references,
 * duplicates). Every error has the form of the state file's:
 *
 *   <file>: <path>: <what is wrong> (value: <JSON of the value>)
 *
 * Example (docs/control-node.md explains each field):
 *
 *   holdTime: 90
 *   defaultVn: default
 *   vns:
 *     - { name: default, subnet: 10.32.0.0/24 }
 *     - { name: web, subnet: 10.1.1.0/24, gateway: 10.1.1.1 }
 *     - { name: db, subnet: 10.2.0.0/24 }
 *     - { name: dual, subnet: 10.3.0.0/24, subnet6: 'fd00:3::/64' }   # dual stack: pods get an IPv6 address too
 *   services:
 *     - name: db
 *       clusterIP: 10.96.0.20
 *       ports: [{ protocol: TCP, port: 5432, targetPort: 5432 }]
 *       selector: { name: db }
 *   policies:
 *     - { name: web-to-db-admin, from: web, to: db, protocol: tcp, ports: [8080], action: allow }
 *   external:                              # the external VN a software gateway (vrouter run --gateway) serves
 *     name: public
 *     subnet: 203.0.113.0/24               # services' externalIPs are in it (the gateway's ip_blocks)
 *     loadBalancerPool: 203.0.113.128/25   # type: LoadBalancer services get an address from it
 *     gateways: [{ vrouter: gw, routes: [0.0.0.0/0] }]
 *   vrouters: [node-a, node-b]
 *   tls: { cert: control.crt, key: control.key, ca: ca.crt }
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import Ajv, { SchemaObject } from 'ajv';
import ipaddr from 'ipaddr.js';
import { describeSchemaError, formatConfigError, parseYamlText } from '../config/config-errors';
import { prefixMask } from '../../dataplane/lpm/prefix-table';
import { ipFromString, ipToString } from '../../dataplane/protocols/ipv4';
import type { PortMapping } from '../agent/agent-interface';
import { DEFAULT_HOLD_TIME_SECONDS } from '../xmpp/stanza';

export interface VnEntry {
  name: string;
  /** "a.b.c.d/len": pod addresses are allocated from it. */
  subnet: string;
  /** Defaults to the subnet's first address. */
  gateway?: string;
  /** "x:x::/len" (64-120): the VN is dual stack, each pod also gets an IPv6 address from it. */
  subnet6?: string;
  /** Defaults to subnet6's first address. */
  gateway6?: string;
}

export interface ServicePortEntry {
  name?: string;
  /** Kubernetes spelling (TCP, UDP) or lower case; TCP when absent. */
  protocol?: 'TCP' | 'UDP' | 'tcp' | 'udp';
  port: number;
  /** The pod's port; defaults to `port`. */
  targetPort?: number;
}

export interface ServiceEntry {
  name: string;
  clusterIP: string;
  /** Kubernetes' dual-stack spelling: [clusterIP, its IPv6 ClusterIP]. */
  clusterIPs?: string[];
  ports: ServicePortEntry[];
  /** Pods whose labels include all of these back the service. */
  selector: Record<string, string>;
  /** Addresses of the external network the service is reached at from outside (Kubernetes spec.externalIPs). */
  externalIPs?: string[];
  /** LoadBalancer: the service also gets an address of the external network's loadBalancerPool. */
  type?: 'ClusterIP' | 'LoadBalancer';
}

export interface ExternalGatewayEntry {
  /** The gateway's vrouter name (vrouter run --gateway ... --node-name). */
  vrouter: string;
  /** What it may publish in the external VN (its --gateway routes); default 0.0.0.0/0, as the agent's vgw without routes. */
  routes?: string[];
}

export interface ExternalEntry {
  name: string;
  subnet: string;
  loadBalancerPool?: string;
  gateways: ExternalGatewayEntry[];
}

export interface PolicyEntry {
  name?: string;
  from: string;
  to: string;
  protocol?: 'any' | 'tcp' | 'udp' | 'icmp';
  /** Destination ports or inclusive ranges; all ports when absent. */
  ports?: Array<number | { from: number; to: number }>;
  action: 'allow' | 'deny';
}

export interface TlsEntry {
  /** PEM files, relative to the configuration file. */
  cert: string;
  key: string;
  /** When set, vrouters must present a certificate signed by it whose name is theirs. */
  ca?: string;
}

export interface NetworkConfigDocument {
  holdTime?: number;
  gracefulRestartTime?: number;
  restartConvergenceTime?: number;
  defaultVn?: string;
  vns: VnEntry[];
  services?: ServiceEntry[];
  policies?: PolicyEntry[];
  vrouters?: string[];
  tls?: TlsEntry;
  external?: ExternalEntry;
}

export interface VnConfig {
  name: string;
  subnet: string;
  /** Network address and length, as unsigned numbers. */
  network: number;
  length: number;
  gateway: string;
  /** Present for a dual-stack VN. */
  ipv6?: VnIpv6Config;
}

/** A VN's IPv6 subnet, its prefix as a 128-bit number. */
export interface VnIpv6Config {
  /** Canonical "x:x::/len". */
  subnet: string;
  network: bigint;
  length: number;
  /** Canonical (RFC 5952) text. */
  gateway: string;
}

export interface ServiceConfig {
  name: string;
  clusterIp: string;
  /** The service's IPv6 ClusterIP (canonical text), for a dual-stack service. */
  clusterIp6?: string;
  ports: PortMapping[];
  selector: Record<string, string>;
  /** Absent: none (kept so, configurations made in code need not name them). */
  externalIps?: string[];
  loadBalancer?: boolean;
}

/** The external VN: floating IPs in it are reached through its gateways. */
export interface ExternalConfig {
  name: string;
  subnet: string;
  network: number;
  length: number;
  /** Network and length of the LoadBalancer pool; null without one. */
  pool: { network: number; length: number } | null;
  /** Gateway vrouter -> the prefixes it may publish in the external VN. */
  gateways: Map<string, string[]>;
}

export interface PolicyConfig {
  name: string;
  from: string;
  to: string;
  protocol: 'any' | 'tcp' | 'udp' | 'icmp';
  /** Inclusive destination port ranges. */
  portRanges: Array<[number, number]>;
  action: 'allow' | 'deny';
}

/** A validated configuration, ready for the control node. */
export interface NetworkConfig {
  file: string;
  /** Seconds. */
  holdTime: number;
  /** Seconds a vrouter's routes and ports are kept after its session drops, waiting for it to come back. */
  gracefulRestartTime: number;
  /**
   * Seconds after start during which End-of-RIB is held back, so vrouters
   * reconnecting after a restart of this node get every vrouter's routes
   * before they sweep their stale ones; ends early once all `vrouters` are back.
   */
  restartConvergenceTime: number;
  defaultVn: string;
  vns: Map<string, VnConfig>;
  services: ServiceConfig[];
  policies: PolicyConfig[];
  /** Names of the vrouters allowed to connect; null lets any connect. */
  vrouters: Set<string> | null;
  tls: { cert: Buffer; key: Buffer; ca: Buffer | null } | null;
  external?: ExternalConfig | null;
}

export const DEFAULT_GRACEFUL_RESTART_SECONDS = 300;
export const DEFAULT_RESTART_CONVERGENCE_SECONDS = 30;
export const DEFAULT_VN_NAME = 'default';

export class NetworkConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NetworkConfigError';
  }
}

const name = { type: 'string', minLength: 1, pattern: '^[^/\\s]+$', description: 'no "/" or spaces: names are XMPP node parts' };
const ipv4 = { type: 'string', description: 'dotted-quad IPv4 address' };
const port = { type: 'integer', minimum: 1, maximum: 65535 };
const seconds = { type: 'number', exclusiveMinimum: 0 };

export const networkConfigSchema: SchemaObject = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  title: 'vrouter-ts control node configuration',
  type: 'object',
  properties: {
    holdTime: seconds,
    gracefulRestartTime: seconds,
    restartConvergenceTime: { type: 'number', minimum: 0 },
    defaultVn: name,
    vns: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        properties: {
          name,
          subnet: { type: 'string', description: 'IPv4 prefix a.b.c.d/len' },
          gateway: ipv4,
          subnet6: { type: 'string', description: 'IPv6 prefix x:x::/len' },
          gateway6: { type: 'string', description: 'IPv6 address' },
        },
        required: ['name', 'subnet'],
        additionalProperties: false,
      },
    },
    services: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          name,
          clusterIP: ipv4,
          clusterIPs: { type: 'array', minItems: 1, maxItems: 2, items: { type: 'string' }, description: '[clusterIP, IPv6 ClusterIP]' },
          ports: {
            type: 'array',
            minItems: 1,
            items: {
              type: 'object',
              properties: { name: { type: 'string' }, protocol: { enum: ['TCP', 'UDP', 'tcp', 'udp'] }, port, targetPort: port },
              required: ['port'],
              additionalProperties: false,
            },
          },
          selector: { type: 'object', minProperties: 1, additionalProperties: { type: 'string' } },
          externalIPs: { type: 'array', items: ipv4, uniqueItems: true },
          type: { enum: ['ClusterIP', 'LoadBalancer'] },
        },
        required: ['name', 'clusterIP', 'ports', 'selector'],
        additionalProperties: false,
      },
    },
    policies: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          name,
          from: name,
          to: name,
          protocol: { enum: ['any', 'tcp', 'udp', 'icmp'] },
          ports: {
            type: 'array',
            minItems: 1,
            items: {
              oneOf: [
                port,
                { type: 'object', properties: { from: port, to: port }, required: ['from', 'to'], additionalProperties: false },
              ],
            },
          },
          action: { enum: ['allow', 'deny'] },
        },
        required: ['from', 'to', 'action'],
        additionalProperties: false,
      },
    },
    vrouters: { type: 'array', items: name, uniqueItems: true },
    external: {
      type: 'object',
      properties: {
        name,
        subnet: { type: 'string', description: 'IPv4 prefix a.b.c.d/len' },
        loadBalancerPool: { type: 'string', description: 'IPv4 prefix a.b.c.d/len inside subnet' },
        gateways: {
          type: 'array',
          minItems: 1,
          items: {
            type: 'object',
            properties: { vrouter: name, routes: { type: 'array', minItems: 1, items: { type: 'string', description: 'IPv4 prefix a.b.c.d/len' } } },
            required: ['vrouter'],
            additionalProperties: false,
          },
        },
      },
      required: ['name', 'subnet', 'gateways'],
      additionalProperties: false,
    },
    tls: {
      type: 'object',
      properties: { cert: { type: 'string', minLength: 1 }, key: { type: 'string', minLength: 1 }, ca: { type: 'string', minLength: 1 } },
      required: ['cert', 'key'],
      additionalProperties: false,
    },
  },
  required: ['vns'],
  additionalProperties: false,
};

const ajv = new Ajv({ verbose: true, allowUnionTypes: true });
const validateDocument = ajv.compile<NetworkConfigDocument>(networkConfigSchema);

/** Reads, validates and checks a configuration file. */
export function loadNetworkConfig(file: string): NetworkConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new NetworkConfigError(`${file}: cannot read: ${(error as Error).message}`);
  }
  return parseNetworkConfig(text, file);
}

/** Parses YAML (or JSON) text; `file` names it in errors and anchors relative TLS paths. */
export function parseNetworkConfig(text: string, file: string): NetworkConfig {
  const data = parseYamlText(text, file, (message) => new NetworkConfigError(message));
  if (!validateDocument(data)) throw new NetworkConfigError(describeSchemaError(validateDocument.errors![0], file));
  return new ConfigChecker(data, file).check();
}

export function inSubnet(address: number, network: number, length: number): boolean {
  return ((address & prefixMask(length)) >>> 0) === network;
}

class ConfigChecker {
  constructor(
    private readonly document: NetworkConfigDocument,
    private readonly file: string,
  ) {}

  check(): NetworkConfig {
    const document = this.document;
    const vns = this.checkVns();
    const defaultVn = document.defaultVn ?? DEFAULT_VN_NAME;
    if (!vns.has(defaultVn)) {
      this.fail(document.defaultVn === undefined ? '/vns' : '/defaultVn', `the default VN "${defaultVn}" is not among vns`, defaultVn);
    }
    const external = this.checkExternal(vns);
    return {
      file: this.file,
      holdTime: document.holdTime ?? DEFAULT_HOLD_TIME_SECONDS,
      gracefulRestartTime: document.gracefulRestartTime ?? DEFAULT_GRACEFUL_RESTART_SECONDS,
      restartConvergenceTime: document.restartConvergenceTime ?? DEFAULT_RESTART_CONVERGENCE_SECONDS,
      defaultVn,
      vns,
      services: this.checkServices(vns, external),
      policies: this.checkPolicies(vns),
      vrouters: document.vrouters === undefined ? null : new Set(document.vrouters),
      tls: this.readTls(),
      external,
    };
  }

  private prefix(text: string, path: string): { network: number; length: number } {
    if (!ipaddr.IPv4.isValidCIDRFourPartDecimal(text)) this.fail(path, 'not an IPv4 prefix (a.b.c.d/length)', text);
    const [address, length] = ipaddr.IPv4.parseCIDR(text);
    const network = ipFromString(address.toString());
    if (!inSubnet(network, network, length)) this.fail(path, `host bits set: the prefix is ${ipToString((network & prefixMask(length)) >>> 0)}/${length}`, text);
    return { network, length };
  }

  private checkExternal(vns: Map<string, VnConfig>): ExternalConfig | null {
    const external = this.document.external;
    if (external === undefined) return null;
    if (vns.has(external.name)) this.fail('/external/name', 'already the name of a VN of vns', external.name);
    const { network, length } = this.prefix(external.subnet, '/external/subnet');
    for (const vn of vns.values()) {
      if (inSubnet(network, vn.network, Math.min(length, vn.length)) || inSubnet(vn.network, network, Math.min(length, vn.length))) {
        this.fail('/external/subnet', `overlaps the subnet ${vn.subnet} of VN ${vn.name}`, external.subnet);
      }
    }
    let pool: ExternalConfig['pool'] = null;
    if (external.loadBalancerPool !== undefined) {
      pool = this.prefix(external.loadBalancerPool, '/external/loadBalancerPool');
      if (pool.length < length || !inSubnet(pool.network, network, length)) this.fail('/external/loadBalancerPool', `not inside the subnet ${external.subnet}`, external.loadBalancerPool);
    }
    const gateways = new Map<string, string[]>();
    external.gateways.forEach((gateway, index) => {
      if (gateways.has(gateway.vrouter)) this.fail(`/external/gateways/${index}/vrouter`, 'duplicate gateway', gateway.vrouter);
      const routes = gateway.routes ?? ['0.0.0.0/0'];
      routes.forEach((route, routeIndex) => this.prefix(route, `/external/gateways/${index}/routes/${routeIndex}`));
      gateways.set(gateway.vrouter, routes);
    });
    return { name: external.name, subnet: external.subnet, network, length, pool, gateways };
  }

  private checkVns(): Map<string, VnConfig> {
    const vns = new Map<string, VnConfig>();
    this.document.vns.forEach((vn, index) => {
      const path = `/vns/${index}`;
      if (vns.has(vn.name)) this.fail(`${path}/name`, 'duplicate VN name', vn.name);
      if (!ipaddr.IPv4.isValidCIDRFourPartDecimal(vn.subnet)) this.fail(`${path}/subnet`, 'not an IPv4 prefix (a.b.c.d/length)', vn.subnet);
      const [address, length] = ipaddr.IPv4.parseCIDR(vn.subnet);
      const network = ipFromString(address.toString());
      if (!inSubnet(network, network, length)) this.fail(`${path}/subnet`, `host bits set: the prefix is ${ipToString((network & prefixMask(length)) >>> 0)}/${length}`, vn.subnet);
      if (length > 30) this.fail(`${path}/subnet`, 'too small for a gateway and pods: use /30 or larger', vn.subnet);
      for (const other of vns.values()) {
        if (inSubnet(network, other.network, Math.min(length, other.length)) || inSubnet(other.network, network, Math.min(length, other.length))) {
          this.fail(`${path}/subnet`, `overlaps the subnet ${other.subnet} of VN ${other.name}`, vn.subnet);
        }
      }
      const gateway = vn.gateway ?? ipToString(network + 1);
      const gatewayNumber = this.ipv4(gateway, `${path}/gateway`);
      if (!inSubnet(gatewayNumber, network, length)) this.fail(`${path}/gateway`, `not inside the subnet ${vn.subnet}`, gateway);
      const config: VnConfig = { name: vn.name, subnet: vn.subnet, network, length, gateway };
      if (vn.subnet6 !== undefined) config.ipv6 = this.checkSubnet6(vn, path, vns);
      else if (vn.gateway6 !== undefined) this.fail(`${path}/gateway6`, 'a gateway6 needs a subnet6', vn.gateway6);
      vns.set(vn.name, config);
    });
    return vns;
  }

  /** A VN's IPv6 subnet: a prefix without host bits, /64 to /120, overlapping no other VN's, its gateway inside. */
  private checkSubnet6(vn: VnEntry, path: string, vns: Map<string, VnConfig>): VnIpv6Config {
    const text = vn.subnet6!;
    let parsed: [ipaddr.IPv6, number];
    try {
      parsed = ipaddr.IPv6.parseCIDR(text);
    } catch {
      return this.fail(`${path}/subnet6`, 'not an IPv6 prefix (x:x::/length)', text);
    }
    const [address, length] = parsed;
    if (address.zoneId !== undefined) this.fail(`${path}/subnet6`, 'not an IPv6 prefix (x:x::/length)', text);
    if (length < 64 || length > 120) this.fail(`${path}/subnet6`, 'use a prefix length from 64 to 120', text);
    const network = ipv6Number(address);
    const hostMask = (1n << BigInt(128 - length)) - 1n;
    if ((network & hostMask) !== 0n) this.fail(`${path}/subnet6`, `host bits set: the prefix is ${ipv6Text(network & ~hostMask)}/${length}`, text);
    for (const other of vns.values()) {
      if (other.ipv6 === undefined) continue;
      const shorter = BigInt(128 - Math.min(length, other.ipv6.length));
      if (network >> shorter === other.ipv6.network >> shorter) this.fail(`${path}/subnet6`, `overlaps the subnet6 ${other.ipv6.subnet} of VN ${other.name}`, text);
    }
    const gatewayText = vn.gateway6 ?? ipv6Text(network + 1n);
    const gateway = this.ipv6(gatewayText, `${path}/gateway6`);
    if (gateway >> BigInt(128 - length) !== network >> BigInt(128 - length)) this.fail(`${path}/gateway6`, `not inside the subnet6 ${text}`, gatewayText);
    return { subnet: `${ipv6Text(network)}/${length}`, network, length, gateway: ipv6Text(gateway) };
  }

  private checkServices(vns: Map<string, VnConfig>, external: ExternalConfig | null): ServiceConfig[] {
    const seenNames = new Set<string>();
    const seenIps = new Map<string, string>();
    return (this.document.services ?? []).map((service, index) => {
      const path = `/services/${index}`;
      if (seenNames.has(service.name)) this.fail(`${path}/name`, 'duplicate service name', service.name);
      seenNames.add(service.name);
      const clusterIp = this.ipv4(service.clusterIP, `${path}/clusterIP`);
      const owner = seenIps.get(service.clusterIP);
      if (owner !== undefined) this.fail(`${path}/clusterIP`, `already the ClusterIP of service ${owner}`, service.clusterIP);
      seenIps.set(service.clusterIP, service.name);
      for (const vn of vns.values()) {
        if (inSubnet(clusterIp, vn.network, vn.length)) this.fail(`${path}/clusterIP`, `inside the subnet ${vn.subnet} of VN ${vn.name}, where pods get addresses`, service.clusterIP);
      }
      const clusterIp6 = this.checkClusterIp6(service, path, vns, seenIps);
      const ports = service.ports.map((entry) => ({
        protocol: (entry.protocol ?? 'TCP').toLowerCase() as PortMapping['protocol'],
        port: entry.port,
        targetPort: entry.targetPort ?? entry.port,
      }));
      ports.forEach((entry, portIndex) => {
        if (ports.findIndex((other) => other.protocol === entry.protocol && other.port === entry.port) !== portIndex) {
          this.fail(`${path}/ports/${portIndex}`, `duplicate ${entry.protocol} port ${entry.port}`, service.ports[portIndex]);
        }
      });
      const externalIps = service.externalIPs ?? [];
      externalIps.forEach((address, addressIndex) => {
        const path = `/services/${index}/externalIPs/${addressIndex}`;
        if (external === null) this.fail(path, 'no external network is configured (external)', address);
        const number = this.ipv4(address, path);
        if (!inSubnet(number, external.network, external.length)) this.fail(path, `not inside the external subnet ${external.subnet}`, address);
        if (external.pool !== null && inSubnet(number, external.pool.network, external.pool.length)) this.fail(path, 'inside the loadBalancerPool, whose addresses are given to LoadBalancer services', address);
        const owner = seenIps.get(address);
        if (owner !== undefined) this.fail(path, `already an address of service ${owner}`, address);
        seenIps.set(address, service.name);
      });
      const loadBalancer = service.type === 'LoadBalancer';
      if (loadBalancer && external?.pool == null) this.fail(`${path}/type`, 'LoadBalancer needs external.loadBalancerPool', service.type);
      return { name: service.name, clusterIp: service.clusterIP, ...(clusterIp6 === undefined ? {} : { clusterIp6 }), ports, selector: service.selector, externalIps, loadBalancer };
    });
  }

  /** Kubernetes' clusterIPs: the clusterIP first, then (dual stack) one IPv6 address outside every VN's subnet6. */
  private checkClusterIp6(service: ServiceEntry, path: string, vns: Map<string, VnConfig>, seenIps: Map<string, string>): string | undefined {
    const clusterIps = service.clusterIPs;
    if (clusterIps === undefined) return undefined;
    if (clusterIps[0] !== service.clusterIP) this.fail(`${path}/clusterIPs/0`, 'must be the clusterIP, as in Kubernetes', clusterIps[0]);
    if (clusterIps.length < 2) return undefined;
    const number = this.ipv6(clusterIps[1], `${path}/clusterIPs/1`);
    const text = ipv6Text(number);
    const owner = seenIps.get(text);
    if (owner !== undefined) this.fail(`${path}/clusterIPs/1`, `already the ClusterIP of service ${owner}`, clusterIps[1]);
    seenIps.set(text, service.name);
    for (const vn of vns.values()) {
      const ipv6 = vn.ipv6;
      if (ipv6 !== undefined && number >> BigInt(128 - ipv6.length) === ipv6.network >> BigInt(128 - ipv6.length)) {
        this.fail(`${path}/clusterIPs/1`, `inside the subnet6 ${ipv6.subnet} of VN ${vn.name}, where pods get addresses`, clusterIps[1]);
      }
    }
    return text;
  }
  private checkPolicies(vns: Map<string, VnConfig>): PolicyConfig[] {
    return (this.document.policies ?? []).map((policy, index) => {
      const path = `/policies/${index}`;
      if (!vns.has(policy.from)) this.fail(`${path}/from`, 'not a configured VN', policy.from);
      if (!vns.has(policy.to)) this.fail(`${path}/to`, 'not a configured VN', policy.to);
      const portRanges = (policy.ports ?? [{ from: 0, to: 65535 }]).map((entry, portIndex): [number, number] => {
        const range: [number, number] = typeof entry === 'number' ? [entry, entry] : [entry.from, entry.to];
        if (range[0] > range[1]) this.fail(`${path}/ports/${portIndex}`, 'the range ends before it starts', entry);
        return range;
      });
      return {
        name: policy.name ?? `policy ${index}`,
        from: policy.from,
        to: policy.to,
        protocol: policy.protocol ?? 'any',
        portRanges,
        action: policy.action,
      };
    });
  }

  private readTls(): NetworkConfig['tls'] {
    const tls = this.document.tls;
    if (tls === undefined) return null;
    const read = (path: string, field: string): Buffer => {
      try {
        return readFileSync(resolve(dirname(this.file), path));
      } catch (error) {
        return this.fail(`/tls/${field}`, `cannot read: ${(error as Error).message}`, path);
      }
    };
    return { cert: read(tls.cert, 'cert'), key: read(tls.key, 'key'), ca: tls.ca === undefined ? null : read(tls.ca, 'ca') };
  }

  /** Four-part decimal only: ipaddr.js would also take "10.1" and hex forms, which are more likely typos. */
  private ipv4(text: string, path: string): number {
    if (!ipaddr.IPv4.isValidFourPartDecimal(text)) this.fail(path, 'not an IPv4 address', text);
    return ipFromString(text);
  }

  /** An IPv6 address as a number; no zone, no IPv4 dotted form. */
  private ipv6(text: string, path: string): bigint {
    if (!ipaddr.IPv6.isValid(text) || text.includes('%') || text.includes('.')) this.fail(path, 'not an IPv6 address', text);
    return ipv6Number(ipaddr.IPv6.parse(text));
  }

  private fail(path: string, problem: string, value: unknown): never {
    throw new NetworkConfigError(formatConfigError(this.file, path, problem, value));
  }
}

/** An IPv6 address as a 128-bit number. */
export function ipv6Number(address: ipaddr.IPv6): bigint {
  let value = 0n;
  for (const part of address.parts) value = (value << 16n) | BigInt(part);
  return value;
}

/** A 128-bit number as canonical IPv6 text (RFC 5952, as the dataplane and contrail print it). */
export function ipv6Text(value: bigint): string {
  const parts: number[] = [];
  for (let shift = 112n; shift >= 0n; shift -= 16n) parts.push(Number((value >> shift) & 0xffffn));
  return new ipaddr.IPv6(parts).toRFC5952String();
}
