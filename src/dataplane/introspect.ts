/**
 * The dataplane's tables and counters as plain JSON, for the introspect API,
 * the `vif`/`rt`/`nh`/`mpls`/`flow`/`dropstats`/`vrfstats` utilities and the
 * metrics endpoint. Runs in the worker between batches, on request only.
 */
import type { Dataplane } from './dataplane';
import { DROP_REASONS } from './drop-reasons';
import { FlowJson, flowToJson } from './flow-format';
import { prefixMask } from './lpm/prefix-table';
import { NH_KIND_NAMES, TUNNEL_ENCAP_NAMES } from './nexthop';
import type { Pipeline } from './pipeline';
import { formatMac } from './protocols/ethernet';
import { ipFromString, ipToString } from './protocols/ipv4';
import { inPrefix6, ip6FromString, ip6ToString, maskPrefix6 } from './protocols/ipv6';

export type IntrospectQuery =
  | { what: 'vifs' }
  | { what: 'vrfs' }
  | { what: 'routes'; vrf: string; prefix?: string; family?: 'inet' | 'inet6' }
  | { what: 'nexthops' }
  | { what: 'labels' }
  | { what: 'flows'; vrf?: number; ip?: string; port?: number; protocol?: number; offset?: number; limit?: number }
  | { what: 'drops' }
  | { what: 'vn-traffic' }
  | { what: 'summary' };

export function introspect(dp: Dataplane, pipeline: Pipeline, query: IntrospectQuery): unknown {
  switch (query.what) {
    case 'vifs':
      return [...dp.vifs].map((vif) => ({
        id: vif.id,
        name: vif.name,
        kind: vif.kindName,
        mac: formatMac(vif.mac),
        ip: vif.ip === 0 ? null : ipToString(vif.ip),
        ip6: vif.ip6 === null ? null : ip6ToString(vif.ip6),
        vrf: vif.vrf,
        vrfName: dp.vrfs.get(vif.vrf)?.name ?? null,
        mtu: vif.mtu,
        floatingIps: [
          ...vif.floatingIps.map((fip) => ({ ip: ipToString(fip.ip), portMap: fip.portMap })),
          ...vif.floatingIps6.map((fip) => ({ ip: ip6ToString(fip.ip), portMap: fip.portMap })),
        ],
        ...vif.counters(),
      }));
    case 'vrfs':
      return [...dp.vrfs].map((vrf) => ({
        id: vrf.id,
        name: vrf.name,
        subnets: vrf.subnets.map((subnet) => `${ipToString(subnet.prefix)}/${subnet.length}`),
        gateway: vrf.gateway === 0 ? null : ipToString(vrf.gateway),
        routes: vrf.routes.size,
        subnets6: vrf.subnets6.map((subnet) => `${ip6ToString(subnet.prefix)}/${subnet.length}`),
        gateway6: vrf.gateway6 === null ? null : ip6ToString(vrf.gateway6),
        routes6: vrf.routes6.size,
      }));
    case 'routes': {
      const vrf = dp.vrfs.find(query.vrf);
      if (!vrf) throw new Error(`no VRF ${query.vrf}`);
      if (query.family === 'inet6') return routes6(vrf.routes6.entries(), query.prefix);
      let routes = vrf.routes.entries();
      if (query.prefix !== undefined) {
        const [address, lengthText] = query.prefix.split('/');
        const length = lengthText === undefined ? 32 : Number(lengthText);
        const base = (ipFromString(address) & prefixMask(length)) >>> 0;
        // Routes inside the given prefix, and the routes covering it.
        routes = routes.filter(
          (route) =>
            (route.length >= length && ((route.prefix & prefixMask(length)) >>> 0) === base) ||
            (route.length < length && ((base & prefixMask(route.length)) >>> 0) === route.prefix),
        );
      }
      return routes.map((route) => ({ prefix: `${ipToString(route.prefix)}/${route.length}`, nexthop: route.value }));
    }
    case 'nexthops': {
      const n = dp.nexthops;
      return n.ids().map((id) => ({
        id,
        kind: NH_KIND_NAMES[n.kind[id]],
        vif: n.vif[id],
        mac: formatMac(n.mac, id * 6),
        dip: n.dip[id] === 0 ? null : ipToString(n.dip[id]),
        sip: n.sip[id] === 0 ? null : ipToString(n.sip[id]),
        label: n.label[id],
        encap: TUNNEL_ENCAP_NAMES[n.encap[id]],
        members: n.members[id] ? [...n.members[id]!] : null,
        vn: n.vn[id],
        refCount: n.refCount[id],
      }));
    }
    case 'labels':
      return dp.labels.entries();
    case 'flows':
      return flows(dp, query);
    case 'drops': {
      const counts: Record<string, number> = {};
      DROP_REASONS.forEach((reason, i) => (counts[reason] = dp.drops.counts[i]));
      return counts;
    }
    case 'vn-traffic':
      return vnTraffic(dp, pipeline);
    case 'summary':
      return {
        node: dp.node.name,
        underlayIp: ipToString(dp.node.underlayIp),
        received: pipeline.received,
        transmitted: pipeline.transmitted,
        generated: dp.generated,
        held: pipeline.held,
        // Fragment-table occupancy (records of datagrams seen in part), for soak sampling.
        fragmentRecords: [...dp.vifs].reduce((sum, vif) => sum + pipeline.fragments.recordsOf(vif.id), 0),
        dropped: dp.drops.total(),
        flows: dp.flows.activePairs,
        flowCapacity: dp.flows.capacity / 2,
        flowEvictions: dp.flows.evictions,
        // Policy changes: walks of the flow table done, and pair verdicts they changed.
        flowRevaluations: pipeline.revaluation.walks,
        flowVerdictsChanged: pipeline.revaluation.changed,
      };
  }
}

/** IPv6 routes as text; with a prefix, those inside it and those covering it. */
function routes6(entries: Array<{ prefix: Uint8Array; length: number; value: number }>, prefix: string | undefined) {
  let routes = entries;
  if (prefix !== undefined) {
    const [address, lengthText] = prefix.split('/');
    const length = lengthText === undefined ? 128 : Number(lengthText);
    const base = maskPrefix6(ip6FromString(address), length);
    routes = routes.filter((route) => (route.length >= length ? inPrefix6(route.prefix, 0, base, length) : inPrefix6(base, 0, route.prefix, route.length)));
  }
  return routes.map((route) => ({ prefix: `${ip6ToString(route.prefix)}/${route.length}`, nexthop: route.value }));
}

function flows(dp: Dataplane, query: Extract<IntrospectQuery, { what: 'flows' }>): { total: number; offset: number; flows: Array<FlowJson & { replied: boolean }> } {
  const ip6 = query.ip !== undefined && query.ip.includes(':') ? ip6ToString(ip6FromString(query.ip)) : null;
  const ip = query.ip === undefined || ip6 !== null ? -1 : ipFromString(query.ip);
  const matching = dp.flows.entries().filter(
    (entry) =>
      (query.vrf === undefined || entry.vrf === query.vrf) &&
      (ip6 !== null ? (entry.src6 !== null && ip6ToString(entry.src6) === ip6) || (entry.dst6 !== null && ip6ToString(entry.dst6) === ip6) : true) &&
      (ip < 0 || (entry.src6 === null && (entry.src === ip || entry.dst === ip))) &&
      (query.port === undefined || entry.srcPort === query.port || entry.dstPort === query.port) &&
      (query.protocol === undefined || entry.protocol === query.protocol),
  );
  const offset = query.offset ?? 0;
  const limit = query.limit ?? 100;
  return {
    total: matching.length,
    offset,
    flows: matching.slice(offset, offset + limit).map((entry) => ({ ...flowToJson(entry), replied: entry.replied })),
  };
}

/** Per VN: what its pods sent (rx on their vifs) and received (tx to them), its flows and drops. */
function vnTraffic(dp: Dataplane, pipeline: Pipeline) {
  const flowsPerVrf = new Map<number, number>();
  for (const entry of dp.flows.entries()) if ((entry.index & 1) === 0) flowsPerVrf.set(entry.vrf, (flowsPerVrf.get(entry.vrf) ?? 0) + 1);
  return [...dp.vrfs].map((vrf) => {
    const traffic = { packetsIn: 0, bytesIn: 0, packetsOut: 0, bytesOut: 0 };
    for (const vif of dp.vifs) {
      if (vif.vrf !== vrf.id) continue;
      traffic.packetsIn += vif.rxPackets;
      traffic.bytesIn += vif.rxBytes;
      traffic.packetsOut += vif.txPackets;
      traffic.bytesOut += vif.txBytes;
    }
    return { vrf: vrf.id, vn: vrf.name, ...traffic, flows: flowsPerVrf.get(vrf.id) ?? 0, drops: pipeline.vrfDrops[vrf.id] };
  });
}
