/**
 * source-check: a pod may only send from its own IP (or a floating IP it
 * owns) and its own MAC. A gateway's vif (vgw) sends from anywhere outside,
 * but only to its VRF's subnets (its ip_blocks): nothing else is routed in.
 * tunnel-source-check: a tunnel is accepted only from a node that the
 * receiving VRF routes the inner source to (any member of an ECMP route),
 * so one node cannot inject traffic on behalf of another's pods.
 */
import type { Pipeline } from '../pipeline';
import { Drop } from '../drop-reasons';
import { NH_COMPOSITE, NH_TUNNEL } from '../nexthop';
import { ipToString, readU32 } from '../protocols/ipv4';
import { IP6_SRC, ip6ToString, sameAddress6 } from '../protocols/ipv6';
import { FLOW_LOOKUP, drop } from './next';

export function sourceCheck(c: Pipeline, p: number): number {
  const pool = c.pool;
  const d = pool.data;
  const vif = c.vifs[pool.ingressVif[p]]!;
  const l3 = pool.l3[p];
  if (d[l3] >>> 4 === 6) {
    const ip6 = vif.ip6;
    if ((ip6 === null || !sameAddress6(ip6, 0, d, l3 + IP6_SRC)) && vif.floatingIp6(d, l3 + IP6_SRC) === null) return drop(Drop['spoofed-source']);
  } else if (vif.gateway) {
    if (!c.vrfs[vif.vrf]?.inSubnets(readU32(d, l3 + 16))) return drop(Drop['no-route']);
  } else {
    const src = readU32(d, l3 + 12);
    if (src !== vif.ip && vif.floatingIp(src) === null) return drop(Drop['spoofed-source']);
  }
  const mac = vif.mac;
  const at = pool.start[p] + 6;
  for (let i = 0; i < 6; i++) if (d[at + i] !== mac[i]) return drop(Drop['spoofed-source']);
  return FLOW_LOOKUP;
}

/** The packet's source address as text, either family. */
function sourceText(c: Pipeline, p: number): string {
  const d = c.pool.data;
  const l3 = c.pool.l3[p];
  return d[l3] >>> 4 === 6 ? ip6ToString(d, l3 + IP6_SRC) : ipToString(readU32(d, l3 + 12));
}

export function describeSourceCheck(c: Pipeline, p: number, next: number): string {
  if (c.vifs[c.pool.ingressVif[p]]?.gateway) return next === FLOW_LOOKUP ? "to the gateway's ip_blocks, from its MAC" : "not to the gateway's ip_blocks, or not from its MAC";
  return next === FLOW_LOOKUP ? 'source address and MAC belong to the vif' : `${sourceText(c, p)} is not this vif's`;
}

export function tunnelSourceCheck(c: Pipeline, p: number): number {
  const pool = c.pool;
  const nexthops = c.nexthops;
  const outer = pool.outerSrc[p];
  const vrf = c.vrfs[pool.vrf[p]];
  const l3 = pool.l3[p];
  const ipv6 = pool.data[l3] >>> 4 === 6;
  const nexthop = vrf === null || vrf === undefined ? -1 : ipv6 ? vrf.routes6.lookup(pool.data, l3 + IP6_SRC) : vrf.routes.lookup(readU32(pool.data, l3 + 12));
  if (nexthop < 0) return drop(Drop['invalid-tunnel-source']);
  const kind = nexthops.kind[nexthop];
  if (kind === NH_TUNNEL) return nexthops.dip[nexthop] === outer ? FLOW_LOOKUP : drop(Drop['invalid-tunnel-source']);
  if (kind === NH_COMPOSITE) {
    const members = nexthops.members[nexthop]!;
    for (let i = 0; i < members.length; i++) {
      const member = members[i];
      if (member >= 0 && nexthops.kind[member] === NH_TUNNEL && nexthops.dip[member] === outer) return FLOW_LOOKUP;
    }
  }
  return drop(Drop['invalid-tunnel-source']);
}

export function describeTunnelSourceCheck(c: Pipeline, p: number, next: number): string {
  const source = sourceText(c, p);
  const node = ipToString(c.pool.outerSrc[p]);
  return next === FLOW_LOOKUP ? `node ${node} is a next hop of ${source}` : `node ${node} is not a next hop of ${source}`;
}
