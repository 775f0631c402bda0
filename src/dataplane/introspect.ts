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

export type IntrospectQuery =
  | { what: 'vifs' }
  | { what: 'vrfs' }
  | { what: 'routes'; vrf: string; prefix?: string }
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
        vrf: vif.vrf,
        vrfName: dp.vrfs.get(vif.vrf)?.name ?? null,
        mtu: vif.mtu,
        floatingIps: vif.floatingIps.map((fip) => ({ ip: ipToString(fip.ip), portMap: fip.portMap })),
        ...vif.counters(),
      }));
    case 'vrfs':
      return [...dp.vrfs].map((vrf) => ({
        id: vrf.id,
        name: vrf.name,
        subnets: vrf.subnets.map((subnet) => `${ipToString(subnet.prefix)}/${subnet.length}`),
        gateway: vrf.gateway === 0 ? null : ipToString(vrf.gateway),
        routes: vrf.routes.size,
      }));
    case 'routes': {
      const vrf = dp.vrfs.find(query.vrf);
      if (!vrf) throw new Error(`no VRF ${query.vrf}`);
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
        dropped: dp.drops.total(),
        flows: dp.flows.activePairs,
        flowCapacity: dp.flows.capacity / 2,
        flowEvictions: dp.flows.evictions,
      };
  }
}

function flows(dp: Dataplane, query: Extract<IntrospectQuery, { what: 'flows' }>): { total: number; offset: number; flows: Array<FlowJson & { replied: boolean }> } {
  const ip = query.ip === undefined ? -1 : ipFromString(query.ip);
  const matching = dp.flows.entries().filter(
    (entry) =>
      (query.vrf === undefined || entry.vrf === query.vrf) &&
      (ip < 0 || entry.src === ip || entry.dst === ip) &&
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
