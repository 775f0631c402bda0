/**
 * The flow table as JSON for tools, replay output and fixtures: one object
 * per pair, addresses as text, in pair order.
 */
import type { Dataplane } from './dataplane';
import type { FlowEntryView } from './flow-table';
import { ipToString } from './protocols/ipv4';
import { ip6ToString } from './protocols/ipv6';

const PROTOCOL_NAMES: Record<number, string> = { 1: 'icmp', 6: 'tcp', 17: 'udp', 47: 'gre', 58: 'icmp6' };

export interface FlowJson {
  index: number;
  reverseIndex: number;
  vrf: number;
  protocol: string;
  src: string;
  dst: string;
  srcPort: number;
  dstPort: number;
  action: string;
  nat: string[];
  nexthop: number;
  ecmpSlot: number;
  packets: number;
  bytes: number;
}

export function flowToJson(view: FlowEntryView): FlowJson {
  return {
    index: view.index,
    reverseIndex: view.reverseIndex,
    vrf: view.vrf,
    protocol: PROTOCOL_NAMES[view.protocol] ?? String(view.protocol),
    src: view.src6 ? ip6ToString(view.src6) : ipToString(view.src),
    dst: view.dst6 ? ip6ToString(view.dst6) : ipToString(view.dst),
    srcPort: view.srcPort,
    dstPort: view.dstPort,
    action: view.action,
    nat: view.nat,
    nexthop: view.nexthop,
    ecmpSlot: view.ecmpSlot,
    packets: view.packets,
    bytes: view.bytes,
  };
}

export function describeFlows(dp: Dataplane): { activePairs: number; evictions: number; pairs: Array<{ forward: FlowJson; reverse: FlowJson; replied: boolean }> } {
  const entries = dp.flows.entries();
  const pairs = [];
  for (let i = 0; i < entries.length; i += 2) pairs.push({ forward: flowToJson(entries[i]), reverse: flowToJson(entries[i + 1]), replied: entries[i].replied });
  return { activePairs: dp.flows.activePairs, evictions: dp.flows.evictions, pairs };
}
