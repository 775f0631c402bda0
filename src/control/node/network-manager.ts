/**
 * The control node's network manager: from the configuration file and the
 * pods registered on the pod API (with their labels) it decides
 *
 * - each port's VN: the one it asks for, else its `name` label, when that VN
 *   is configured; the default VN otherwise;
 * - its address: the one it asks for when that is inside its VN's subnet and
 *   free, else the first free address of the subnet (freed when the port goes);
 *   in a dual-stack VN (subnet6) also the first free IPv6 address of it, or
 *   the one it had (or a restarted control node read back);
 * - its floating IPs: the ClusterIP, with the port map, of every service
 *   whose selector its labels match (and a dual-stack service's IPv6
 *   ClusterIP too when the port has an IPv6 address);
 * - the policy rules, in order: the file's explicit policies, then for each
 *   VN X with a pod labelled `uses: S` and each VN B holding a backend of S,
 *   "X may reach S's ClusterIP on its ports in B". Policy is per VN in the
 *   dataplane, so a `uses` label opens the service to the pod's whole VN;
 * - which routes each routing instance (VN) sees: its own; all of a VN that
 *   an allow policy joins it to (either way: replies need the route back);
 *   the ClusterIP routes of services it uses; all routes of the VNs that use
 *   services it backs;
 * - with an external network (network.yaml `external`): a service's
 *   externalIPs and, for type LoadBalancer, an address of the pool (the
 *   first free, kept while the service stays LoadBalancer) are floating IPs
 *   in the external VN on every backend, as the ClusterIP is in the
 *   backend's own; the external VN may reach them on the service's ports in
 *   each backend VN, and each backend VN sees the gateways' routes of the
 *   external VN (the way back to external clients).
 */
import ipaddr from 'ipaddr.js';
import type { LocalPort, PortConfig, PortPolicy } from '../agent/agent-interface';
import { ipFromString, ipToString } from '../../dataplane/protocols/ipv4';
import { NetworkConfig, VnConfig, inSubnet, ipv6Number, ipv6Text } from './network-config';

/**
 * What the manager decided for a port, VNs by their network.yaml names (the
 * IF-MAP publisher gives them their FQNs and routing instances).
 */
export interface PortDecision extends Omit<PortConfig, 'vrf'> {
  portId: string;
}

/** What a port gets: its configuration, or why it gets none. */
export type PortOutcome = { config: PortDecision } | { refused: string };

/** Per routing instance, the instances whose routes it sees: all of them, or only these prefixes. */
export type ViewSources = Map<string, 'all' | Set<string>>;

interface PortRecord {
  vrouter: string;
  port: LocalPort;
  vn: string;
  /** Null when refused. */
  ip: string | null;
  /** The IPv6 address in a dual-stack VN, else null. */
  ip6: string | null;
  refusal: string | null;
}

const LABEL_VN = 'name';
const LABEL_USES = 'uses';

export class NetworkManager {
  private config: NetworkConfig;
  /** "vrouter\0portId" -> record. */
  private readonly ports = new Map<string, PortRecord>();
  /** Reserved addresses inside VN subnets -> the port key holding it. */
  private readonly addressOwners = new Map<string, string>();
  private rules: PortPolicy[] = [];
  private rulesJson = '[]';
  /**
   * Changes when the rules change, and with them the leaks (both follow
   * which VNs use which services where): until it does, adding or removing
   * a port changes no other port's configuration.
   */
  rulesVersion = 0;
  /** LoadBalancer service name -> its address of the external pool. */
  private readonly loadBalancerIps = new Map<string, string>();

  constructor(config: NetworkConfig) {
    this.config = config;
    this.assignLoadBalancerIps();
  }

  /**
   * A service's addresses in the external VN: its externalIPs inside the
   * external subnet (a Kubernetes service's are not checked as network.yaml's
   * are), then its LoadBalancer address; none without an external network.
   */
  externalAddresses(service: NetworkConfig['services'][number]): string[] {
    const external = this.config.external;
    if (!external) return [];
    const assigned = this.loadBalancerIps.get(service.name);
    const inside = (service.externalIps ?? []).filter((address) => inSubnet(ipFromString(address), external.network, external.length));
    return [...inside, ...(assigned === undefined ? [] : [assigned])];
  }

  /** The LoadBalancer address given to a service, or undefined (none configured, or the pool is exhausted). */
  loadBalancerIp(serviceName: string): string | undefined {
    return this.loadBalancerIps.get(serviceName);
  }

  /** Keeps the addresses of services still LoadBalancer, gives the others the first free pool addresses in order. */
  private assignLoadBalancerIps(): void {
    const external = this.config.external;
    const pool = external?.pool ?? null;
    const wanted = new Set(this.config.services.filter((service) => service.loadBalancer).map((service) => service.name));
    for (const [name, address] of [...this.loadBalancerIps]) {
      if (!wanted.has(name) || pool === null || !inSubnet(ipFromString(address), pool.network, pool.length)) this.loadBalancerIps.delete(name);
    }
    if (!external || pool === null) return;
    // Neither the external subnet's network nor its broadcast address, should the pool reach them.
    const ends = [external.network, external.network + 2 ** (32 - external.length) - 1].map(ipToString);
    const taken = new Set([...ends, ...this.loadBalancerIps.values(), ...this.config.services.flatMap((service) => service.externalIps ?? [])]);
    const last = pool.network + 2 ** (32 - pool.length) - 1;
    let candidate = pool.network;
    for (const name of wanted) {
      if (this.loadBalancerIps.has(name)) continue;
      while (candidate <= last && taken.has(ipToString(candidate))) candidate++;
      if (candidate > last) return;
      const address = ipToString(candidate++);
      taken.add(address);
      this.loadBalancerIps.set(name, address);
    }
  }

  /**
   * Adds or registers a port again; returns what it gets. Without an
   * address of its own it keeps the one it had, else `restoredIp` (the
   * address a restarted control node read back) when that is still free.
   */
  addPort(vrouter: string, port: LocalPort, restoredIp: string | null = null, restoredIp6: string | null = null): PortOutcome {
    const record = this.putPort(vrouter, port, restoredIp, restoredIp6);
    this.updateRules();
    return this.outcome(record);
  }

  /** addPort for many ports, the rules decided once (they depend on every port: once per port is quadratic). */
  addPorts(entries: Array<{ vrouter: string; port: LocalPort }>): PortOutcome[] {
    const records = entries.map(({ vrouter, port }) => this.putPort(vrouter, port, null, null));
    this.updateRules();
    return records.map((record) => this.outcome(record));
  }

  private putPort(vrouter: string, port: LocalPort, restoredIp: string | null, restoredIp6: string | null): PortRecord {
    const key = portKey(vrouter, port.id);
    const previous = this.ports.get(key);
    const record: PortRecord = { vrouter, port, vn: this.vnFor(port), ip: previous?.ip ?? null, ip6: previous?.ip6 ?? null, refusal: null };
    this.ports.set(key, record);
    this.assignAddress(key, record, port.ip ?? record.ip ?? restoredIp);
    this.assignAddress6(key, record, record.ip6 ?? restoredIp6);
    return record;
  }

  removePort(vrouter: string, portId: string): void {
    const key = portKey(vrouter, portId);
    const record = this.ports.get(key);
    if (!record) return;
    this.releaseAddress(key, record);
    this.releaseAddress6(key, record);
    this.ports.delete(key);
    this.updateRules();
  }

  /** Applies a new configuration: every port's VN and address are decided again, keeping addresses that still fit. */
  setConfig(config: NetworkConfig): void {
    this.config = config;
    this.assignLoadBalancerIps();
    for (const [key, record] of this.ports) {
      record.vn = this.vnFor(record.port);
      this.assignAddress(key, record, record.ip ?? record.port.ip);
      this.assignAddress6(key, record, record.ip6);
    }
    this.updateRules();
  }

  get networkConfig(): NetworkConfig {
    return this.config;
  }

  /** Every port, with what it got. */
  *registeredPorts(): IterableIterator<{ vrouter: string; port: LocalPort; outcome: PortOutcome }> {
    for (const record of this.ports.values()) yield { vrouter: record.vrouter, port: record.port, outcome: this.outcome(record) };
  }

  /** Every port with a configuration, and where it is. */
  *configuredPorts(): IterableIterator<{ vrouter: string; port: LocalPort; config: PortDecision }> {
    for (const record of this.ports.values()) {
      const outcome = this.outcome(record);
      if ('config' in outcome) yield { vrouter: record.vrouter, port: record.port, config: outcome.config };
    }
  }

  /** The rules in force, in order (the union of what outcomes list per VN). */
  get policyRules(): readonly PortPolicy[] {
    return this.rules;
  }

  outcomeOf(vrouter: string, portId: string): PortOutcome | null {
    const record = this.ports.get(portKey(vrouter, portId));
    return record ? this.outcome(record) : null;
  }

  /** The routes each configured VN sees, see the module comment. */
  viewSources(): Map<string, ViewSources> {
    const views = new Map<string, ViewSources>();
    const sourcesOf = (view: string): ViewSources => {
      let sources = views.get(view);
      if (!sources) views.set(view, (sources = new Map([[view, 'all']])));
      return sources;
    };
    const addAll = (view: string, instance: string) => sourcesOf(view).set(instance, 'all');
    const addPrefix = (view: string, instance: string, prefix: string) => {
      const sources = sourcesOf(view);
      const existing = sources.get(instance);
      if (existing === 'all') return;
      if (existing) existing.add(prefix);
      else sources.set(instance, new Set([prefix]));
    };
    for (const vn of this.config.vns.keys()) sourcesOf(vn);
    for (const policy of this.config.policies) {
      if (policy.action !== 'allow' || policy.from === policy.to) continue;
      addAll(policy.from, policy.to);
      addAll(policy.to, policy.from);
    }
    for (const { user, service, backendVns } of this.serviceUses()) {
      for (const backendVn of backendVns) {
        addPrefix(user, backendVn, `${service.clusterIp}/32`);
        if (service.clusterIp6 !== undefined) addPrefix(user, backendVn, `${service.clusterIp6}/128`);
        if (backendVn !== user) addAll(backendVn, user);
      }
    }
    const external = this.config.external;
    if (external) {
      sourcesOf(external.name);
      const gatewayRoutes = new Set([...external.gateways.values()].flat());
      for (const { backendVns } of this.externalServices()) {
        for (const backendVn of backendVns) for (const route of gatewayRoutes) addPrefix(backendVn, external.name, route);
      }
    }
    return views;
  }

  private outcome(record: PortRecord): PortOutcome {
    if (record.refusal !== null) return { refused: record.refusal };
    const vn = this.config.vns.get(record.vn)!;
    const labels = record.port.labels;
    const external = this.config.external?.name;
    const floatingIps = this.config.services
      .filter((service) => selects(service.selector, labels))
      .flatMap((service) => {
        const portMap = () => service.ports.map((entry) => ({ ...entry }));
        const v4 = { ip: service.clusterIp, portMap: portMap() };
        const v6 = service.clusterIp6 === undefined || record.ip6 === null ? [] : [{ ip: service.clusterIp6, portMap: portMap() }];
        return [v4, ...v6, ...this.externalAddresses(service).map((ip) => ({ ip, portMap: portMap(), vn: external }))];
      });
    const ipv6 = record.ip6 === null || vn.ipv6 === undefined ? {} : { ip6: record.ip6, subnet6: vn.ipv6.subnet, gateway6: vn.ipv6.gateway };
    return {
      config: {
        portId: record.port.id,
        vn: vn.name,
        ip: record.ip!,
        subnet: vn.subnet,
        gateway: vn.gateway,
        ...ipv6,
        floatingIps,
        policies: this.rules.filter((rule) => rule.sourceVn === vn.name || rule.destinationVn === vn.name),
      },
    };
  }

  private vnFor(port: LocalPort): string {
    const wanted = port.vn ?? port.labels[LABEL_VN];
    return wanted !== undefined && this.config.vns.has(wanted) ? wanted : this.config.defaultVn;
  }

  /**
   * Keeps `wanted` when it is in the VN's subnet and free, else allocates.
   * An address the pod itself reports cannot be replaced, so when it does
   * not fit the port is refused instead.
   */
  private assignAddress(key: string, record: PortRecord, wanted: string | null | undefined): void {
    const vn = this.config.vns.get(record.vn)!;
    record.refusal = null;
    if (wanted !== undefined && wanted !== null) {
      const owner = this.addressOwners.get(wanted);
      const fits = inSubnet(ipFromString(wanted), vn.network, vn.length) && wanted !== vn.gateway;
      if (fits && (owner === undefined || owner === key)) {
        if (record.ip !== wanted) this.releaseAddress(key, record);
        this.addressOwners.set(wanted, key);
        record.ip = wanted;
        return;
      }
      if (wanted === record.port.ip) {
        this.releaseAddress(key, record);
        record.refusal = fits
          ? `address ${wanted} is already used by port ${owner!.split('\0').join(' ')}`
          : `address ${wanted} is not a pod address of the subnet ${vn.subnet} of VN ${vn.name}`;
        return;
      }
    }
    this.releaseAddress(key, record);
    record.ip = this.allocate(vn, key);
    if (record.ip === null) record.refusal = `no free address in the subnet ${vn.subnet} of VN ${vn.name}`;
  }

  private allocate(vn: VnConfig, key: string): string | null {
    const first = vn.network + 1;
    const last = vn.network + 2 ** (32 - vn.length) - 2; // below the broadcast address
    for (let candidate = first; candidate <= last; candidate++) {
      const address = ipToString(candidate);
      if (address === vn.gateway || this.addressOwners.has(address)) continue;
      this.addressOwners.set(address, key);
      return address;
    }
    return null;
  }

  /**
   * In a dual-stack VN: keeps `wanted` when it is a free pod address of the
   * subnet6, else allocates its first free one; outside one, holds none.
   */
  private assignAddress6(key: string, record: PortRecord, wanted: string | null): void {
    const ipv6 = record.refusal === null ? this.config.vns.get(record.vn)!.ipv6 : undefined;
    if (ipv6 === undefined) return this.releaseAddress6(key, record);
    const inSubnet6 = (address: bigint) => address >> BigInt(128 - ipv6.length) === ipv6.network >> BigInt(128 - ipv6.length);
    if (wanted !== null && ipaddr.IPv6.isValid(wanted)) {
      const number = ipv6Number(ipaddr.IPv6.parse(wanted));
      const canonical = ipv6Text(number);
      const owner = this.addressOwners.get(canonical);
      if (inSubnet6(number) && number !== ipv6.network && canonical !== ipv6.gateway && (owner === undefined || owner === key)) {
        if (record.ip6 !== canonical) this.releaseAddress6(key, record);
        this.addressOwners.set(canonical, key);
        record.ip6 = canonical;
        return;
      }
    }
    this.releaseAddress6(key, record);
    // The subnet is at least 256 addresses (/120): the first free one after the network address.
    const size = 1n << BigInt(128 - ipv6.length);
    for (let candidate = ipv6.network + 1n; candidate < ipv6.network + size; candidate++) {
      const address = ipv6Text(candidate);
      if (address === ipv6.gateway || this.addressOwners.has(address)) continue;
      this.addressOwners.set(address, key);
      record.ip6 = address;
      return;
    }
  }

  private releaseAddress6(key: string, record: PortRecord): void {
    if (record.ip6 !== null && this.addressOwners.get(record.ip6) === key) this.addressOwners.delete(record.ip6);
    record.ip6 = null;
  }

  private releaseAddress(key: string, record: PortRecord): void {
    if (record.ip !== null && this.addressOwners.get(record.ip) === key) this.addressOwners.delete(record.ip);
    record.ip = null;
  }

  /** Which VN uses which service, and the VNs of that service's backends (both sorted, for stable rule order). */
  private serviceUses(): Array<{ user: string; service: NetworkConfig['services'][number]; backendVns: string[] }> {
    const usersByService = new Map<string, Set<string>>();
    const backendVnsByService = new Map<string, Set<string>>();
    for (const record of this.ports.values()) {
      if (record.refusal !== null) continue;
      const used = record.port.labels[LABEL_USES];
      if (used !== undefined) getOrCreate(usersByService, used).add(record.vn);
      for (const service of this.config.services) {
        if (selects(service.selector, record.port.labels)) getOrCreate(backendVnsByService, service.name).add(record.vn);
      }
    }
    const uses: Array<{ user: string; service: NetworkConfig['services'][number]; backendVns: string[] }> = [];
    for (const service of this.config.services) {
      const backendVns = [...(backendVnsByService.get(service.name) ?? [])].sort();
      for (const user of [...(usersByService.get(service.name) ?? [])].sort()) uses.push({ user, service, backendVns });
    }
    return uses;
  }

  /** The services with addresses in the external VN, and the VNs of their backends (sorted). */
  private externalServices(): Array<{ service: NetworkConfig['services'][number]; addresses: string[]; backendVns: string[] }> {
    if (!this.config.external) return [];
    const found: Array<{ service: NetworkConfig['services'][number]; addresses: string[]; backendVns: string[] }> = [];
    for (const service of this.config.services) {
      const addresses = this.externalAddresses(service);
      if (addresses.length === 0) continue;
      const backendVns = new Set<string>();
      for (const record of this.ports.values()) if (record.refusal === null && selects(service.selector, record.port.labels)) backendVns.add(record.vn);
      if (backendVns.size > 0) found.push({ service, addresses, backendVns: [...backendVns].sort() });
    }
    return found;
  }

  private updateRules(): void {
    const rules = this.computeRules();
    const json = JSON.stringify(rules);
    if (json === this.rulesJson) return;
    this.rules = rules;
    this.rulesJson = json;
    this.rulesVersion++;
  }

  private computeRules(): PortPolicy[] {
    const rules: PortPolicy[] = [];
    for (const policy of this.config.policies) {
      for (const [portFrom, portTo] of policy.portRanges) {
        const suffix = policy.portRanges.length > 1 ? ` ${portFrom}-${portTo}` : '';
        rules.push({
          name: `${policy.name}${suffix}`,
          order: rules.length,
          sourceVn: policy.from,
          destinationVn: policy.to,
          protocol: policy.protocol,
          portFrom,
          portTo,
          action: policy.action,
        });
      }
    }
    for (const { user, service, backendVns } of this.serviceUses()) {
      for (const backendVn of backendVns) {
        const clusterIps = [`${service.clusterIp}/32`, ...(service.clusterIp6 === undefined ? [] : [`${service.clusterIp6}/128`])];
        for (const [family, destinationPrefix] of clusterIps.entries()) for (const entry of service.ports) {
          rules.push({
            name: `${user} uses ${service.name}${family === 0 ? '' : ' (IPv6)'} in ${backendVn} ${entry.protocol}/${entry.port}`,
            order: rules.length,
            sourceVn: user,
            destinationVn: backendVn,
            protocol: entry.protocol,
            portFrom: entry.port,
            portTo: entry.port,
            destinationPrefix,
            action: 'allow',
          });
        }
      }
    }
    const external = this.config.external?.name;
    for (const { service, addresses, backendVns } of this.externalServices()) {
      for (const backendVn of backendVns) {
        for (const address of addresses) {
          for (const entry of service.ports) {
            rules.push({
              name: `${external} reaches ${service.name} at ${address} in ${backendVn} ${entry.protocol}/${entry.port}`,
              order: rules.length,
              sourceVn: external!,
              destinationVn: backendVn,
              protocol: entry.protocol,
              portFrom: entry.port,
              portTo: entry.port,
              destinationPrefix: `${address}/32`,
              action: 'allow',
            });
          }
        }
      }
    }
    return rules;
  }
}

function portKey(vrouter: string, portId: string): string {
  return `${vrouter}\0${portId}`;
}

function selects(selector: Record<string, string>, labels: Record<string, string>): boolean {
  const entries = Object.entries(selector);
  return entries.length > 0 && entries.every(([key, value]) => labels[key] === value);
}

function getOrCreate<K, V>(map: Map<K, Set<V>>, key: K): Set<V> {
  let set = map.get(key);
  if (!set) map.set(key, (set = new Set()));
  return set;
}
