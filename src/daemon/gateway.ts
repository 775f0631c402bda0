/**
 * The software gateway (vgw) of `vrouter run --gateway`: OpenContrail's
 * agent takes it from a `[GATEWAY-n]` section of contrail-vrouter-agent.conf
 * (tungstenfabric/tf-controller 6a674397821187fedfffd9586942b906d3479dbc,
 * src/vnsw/agent/contrail-vrouter-agent.conf; read by
 * src/vnsw/agent/vgw/cfg_vgw.cc, made by src/vnsw/agent/vgw/vgw.cc):
 *
 *   routing_instance  the external VN's routing instance the interface sits in
 *   interface         the gateway interface
 *   ip_blocks         the subnets routed from outside into that instance (the floating IPs'),
 *                     space separated
 *   routes            what the gateway publishes in the instance, pointing at the interface
 *                     (space separated); without any, a default route 0.0.0.0/0 (vgw.cc RouteUpdate)
 *
 * The flag takes the same keys, comma separated:
 *
 *   --gateway 'routing_instance=default-domain:default-project:public:public,interface=vgw0,ip_blocks=203.0.113.0/24,routes=0.0.0.0/0,mac=02:00:c0:00:02:02'
 *
 * The agent's vgw is an L3 interface into the host's stack; here the
 * interface is the host end of a veth (or any link) to the external
 * network, attached as a port (AF_XDP, else AF_PACKET: cap-attachment.ts),
 * so `mac` names the external side's MAC that frames out of it go to (the
 * only key the agent has not). The vrouter answers the external side's ARP
 * for addresses of the ip_blocks. As cfg_vgw.cc, a prefix's host bits are
 * cleared and a /32 is refused.
 */
import ipaddr from 'ipaddr.js';
import type { LocalPort, PortConfig } from '../control/agent/agent-interface';
import { prefixMask } from '../dataplane/lpm/prefix-table';
import { ipFromString, ipToString } from '../dataplane/protocols/ipv4';

export interface GatewaySpec {
  routingInstance: string;
  interface: string;
  ipBlocks: string[];
  routes: string[];
  mac: string;
}

export class GatewayFlagError extends Error {
  constructor(value: string, problem: string) {
    super(`--gateway ${value}: ${problem}`);
    this.name = 'GatewayFlagError';
  }
}

const KEYS = ['routing_instance', 'interface', 'ip_blocks', 'routes', 'mac'] as const;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;
/** domain:project:network:instance, as the agent's example `default-domain:admin:public:public`. */
const ROUTING_INSTANCE = /^[^:\s,]+(:[^:\s,]+){3}$/;
const INTERFACE = /^[A-Za-z0-9_.-]{1,15}$/;
const DEFAULT_ROUTE = '0.0.0.0/0';

/** Parses one --gateway value; a bad one fails naming the flag, the value and what is wrong. */
export function parseGatewayFlag(value: string): GatewaySpec {
  const fields = new Map<string, string>();
  for (const part of value.split(',')) {
    const at = part.indexOf('=');
    const key = at < 0 ? part.trim() : part.slice(0, at).trim();
    if (!(KEYS as readonly string[]).includes(key)) throw new GatewayFlagError(value, `unknown key "${key}" (keys: ${KEYS.join(', ')}, each key=value, comma separated)`);
    if (at < 0) throw new GatewayFlagError(value, `${key} has no value (key=value)`);
    if (fields.has(key)) throw new GatewayFlagError(value, `${key} given twice`);
    fields.set(key, part.slice(at + 1).trim());
  }
  const required = (key: (typeof KEYS)[number]): string => {
    const text = fields.get(key);
    if (text === undefined || text === '') throw new GatewayFlagError(value, `${key} is required`);
    return text;
  };
  const routingInstance = required('routing_instance');
  if (!ROUTING_INSTANCE.test(routingInstance)) throw new GatewayFlagError(value, `routing_instance ${routingInstance}: expected domain:project:network:instance`);
  const device = required('interface');
  if (!INTERFACE.test(device)) throw new GatewayFlagError(value, `interface ${device}: not an interface name`);
  const ipBlocks = prefixList(value, 'ip_blocks', required('ip_blocks'));
  const routesText = fields.get('routes');
  const routes = routesText === undefined || routesText === '' ? [DEFAULT_ROUTE] : prefixList(value, 'routes', routesText);
  const mac = required('mac');
  if (!MAC.test(mac)) throw new GatewayFlagError(value, `mac ${mac}: expected six hex bytes aa:bb:cc:dd:ee:ff`);
  return { routingInstance, interface: device, ipBlocks, routes, mac: mac.toLowerCase() };
}

/** Space separated prefixes, host bits cleared, sorted and deduplicated (cfg_vgw.cc sorts them). */
function prefixList(value: string, key: string, text: string): string[] {
  const prefixes = new Set<string>();
  for (const item of text.split(/\s+/).filter(Boolean)) {
    if (!ipaddr.IPv4.isValidCIDRFourPartDecimal(item)) throw new GatewayFlagError(value, `${key} ${item}: not an IPv4 prefix (a.b.c.d/length)`);
    const [address, length] = ipaddr.IPv4.parseCIDR(item);
    if (length >= 32) throw new GatewayFlagError(value, `${key} ${item}: a /32 is refused, as the agent refuses it (cfg_vgw.cc BuildSubnetList)`);
    prefixes.add(`${ipToString((ipFromString(address.toString()) & prefixMask(length)) >>> 0)}/${length}`);
  }
  return [...prefixes].sort();
}

/** The gateway's port as the control client knows it: named after its interface, with the label the daemon gave it. */
export function gatewayPort(spec: GatewaySpec, label: number): LocalPort {
  return { id: `vgw-${spec.interface}`, name: spec.interface, namespace: '', labels: {}, mac: spec.mac, label };
}

/** Its configuration: in the routing instance, of that instance's VN, no address of its own. */
export function gatewayConfig(spec: GatewaySpec): PortConfig {
  const vn = spec.routingInstance.slice(0, spec.routingInstance.lastIndexOf(':'));
  return { vrf: spec.routingInstance, vn, ip: '0.0.0.0', subnet: spec.ipBlocks[0], gateway: '0.0.0.0', floatingIps: [], policies: [], vgw: { ipBlocks: spec.ipBlocks } };
}
