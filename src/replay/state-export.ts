/**
 * `vrouter state --export`: a running node's forwarding state as a state
 * file (the format `vrouter run` and `vrouter replay` start from), read
 * through the introspect API: node, VRFs, vifs (with floating IPs), every
 * nexthop, every route of every VRF, MPLS labels, flow-table capacity. The
 * document is built into a dataplane before it is returned, so an export
 * that would not load is an error here, not in a later replay.
 *
 * Not in the API, so not exported: policies between VNs, services and
 * `uses` (a replay applies the default: same VN allowed, between VNs
 * denied), the flow idle timeout (the default), and the flows themselves (a
 * replay starts with an empty flow table).
 */
import { stringify } from 'yaml';
import { buildDataplane } from '../control/config/state-file';
import type { NexthopJson, RouteTableJson, VifJson } from '../daemon/introspect-server';
import { introspectRequest } from '../cli/tools';

interface VrfJson {
  id: number;
  name: string;
  subnets: string[];
  gateway: string | null;
}

interface SummaryJson {
  node: string;
  underlayIp: string;
  flowCapacity: number;
}

const PROTOCOL_NAMES: Record<number, string> = { 6: 'tcp', 17: 'udp' };

export interface ExportedState {
  document: Record<string, unknown>;
  yaml: string;
}

function nexthopOf(nexthop: NexthopJson): Record<string, unknown> {
  switch (nexthop.kind) {
    case 'encap':
      return { id: nexthop.id, kind: 'encap', vif: nexthop.vif, mac: nexthop.mac };
    case 'tunnel':
      return {
        id: nexthop.id,
        kind: 'tunnel',
        dip: nexthop.dip,
        label: nexthop.label,
        encaps: [nexthop.encap],
        vif: nexthop.vif,
        ...(nexthop.sip === null ? {} : { sip: nexthop.sip }),
        mac: nexthop.mac,
        ...(nexthop.vn >= 0 ? { vn: nexthop.vn } : {}),
      };
    case 'composite':
      return { id: nexthop.id, kind: 'composite', members: (nexthop.members ?? []).map((member) => (member < 0 ? null : member)), ...(nexthop.vn >= 0 ? { vn: nexthop.vn } : {}) };
    case 'receive':
      return { id: nexthop.id, kind: 'receive', ...(nexthop.vif >= 0 ? { vif: nexthop.vif } : {}) };
    default:
      return { id: nexthop.id, kind: 'discard' };
  }
}

export async function exportState(introspect: string): Promise<ExportedState> {
  const get = <T>(path: string) => introspectRequest<T>(introspect, 'GET', path);
  const [summary, vrfs, vifs, nexthops, labels] = await Promise.all([
    get<SummaryJson>('/api/summary'),
    get<VrfJson[]>('/api/vrfs'),
    get<VifJson[]>('/api/vifs'),
    get<NexthopJson[]>('/api/nexthops'),
    get<Array<{ label: number; nexthop: number }>>('/api/mpls'),
  ]);
  const tables = await Promise.all(vrfs.map((vrf) => get<RouteTableJson>(`/api/routes?vrf=${vrf.id}`)));
  const document: Record<string, unknown> = {
    node: { name: summary.node, underlayIp: summary.underlayIp, encapPriority: ['udp', 'gre'] },
    flows: { capacity: summary.flowCapacity * 2 },
    vrfs: vrfs.map((vrf) => ({ id: vrf.id, name: vrf.name, subnets: vrf.subnets, ...(vrf.gateway === null ? {} : { gateway: vrf.gateway }) })),
    vifs: vifs.map((vif) => ({
      id: vif.id,
      kind: vif.kind,
      name: vif.name,
      mac: vif.mac,
      ...(vif.ip === null ? {} : { ip: vif.ip }),
      ...(vif.kind === 'virtual' ? { vrf: vif.vrf } : {}),
      mtu: vif.mtu,
      ...(vif.floatingIps.length === 0
        ? {}
        : {
            floatingIps: vif.floatingIps.map((fip) => ({
              ip: fip.ip,
              portMap: (fip.portMap as Array<{ protocol: number; port: number; targetPort: number }>).map((entry) => ({ ...entry, protocol: PROTOCOL_NAMES[entry.protocol] ?? entry.protocol })),
            })),
          }),
    })),
    nexthops: nexthops.map(nexthopOf),
    routes: tables.flatMap((table) => table.routes.map((route) => ({ vrf: table.vrf, prefix: route.prefix, nexthop: route.nexthop }))),
    labels: labels.map((entry) => ({ label: entry.label, nexthop: entry.nexthop })),
  };
  buildDataplane(document, `the state exported from ${introspect}`);
  const header = `# state of node ${summary.node} exported from its introspect API at ${introspect} on ${new Date().toISOString()}\n`;
  return { document, yaml: header + stringify(document, { flowCollectionPadding: false, collectionStyle: 'block' }) };
}
