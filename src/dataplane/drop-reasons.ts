/**
 * Named drop reasons, as OpenContrail's `dropstats` counts them. Every packet
 * the pipeline does not forward ends here under exactly one reason.
 */
export const DROP_REASONS = [
  'truncated', // frame shorter than the headers it claims
  'unknown-ethertype',
  'ipv6-unsupported', // IPv6 with an extension header the vrouter does not walk (ESP, AH, mobility, HIP, shim6, experimental)
  'bad-ip-header', // version not 4, IHL < 5, total length inconsistent
  'bad-checksum', // IPv4 header checksum wrong
  'invalid-vif', // arrived on or sent to an interface that does not exist
  'arp-not-proxied', // ARP the proxy does not answer (not a request, not in the VN, from the fabric)
  'no-route',
  'ttl-expired', // inner TTL would reach 0 on this hop
  'discard', // discard nexthop
  'invalid-nexthop', // nexthop missing or of a kind that cannot forward here
  'ecmp-no-member', // composite nexthop with every slot empty
  'not-for-vrouter', // fabric packet that is not a tunnel to this node
  'invalid-protocol', // tunnel with an inner payload other than IPv4 or IPv6
  'invalid-label', // label reserved, out of range or not in the label table
  'invalid-mpls-stack', // label without the bottom-of-stack bit
  'mpls-ttl-expired',
  'bad-gre-header', // GRE flags/version set or protocol not MPLS
  'fragmented-tunnel', // outer tunnel packet fragmented (the vrouter does not reassemble)
  'fragment-needed', // too big for the egress MTU with DF set
  'no-headroom', // no room to push the outer headers
  'spoofed-source', // a pod sent from an address or MAC that is not its own
  'invalid-tunnel-source', // tunnel from a node the VRF does not route the inner source to
  'flow-action-drop', // the flow's policy verdict is deny
  'flow-table-full', // no room for a new flow and no unreplied flow to evict
  'vif-flow-limit', // the pod the new flow counts against holds its limit of flows (OpenContrail's max-flows per interface)
  'icmp-error-no-flow', // an ICMP error quoting a packet of no known flow
  'fragment-overlap', // a fragment overlapping one already seen
  'fragment-timeout', // a fragment held for its head until the head never came
  'fragment-hold-full', // no room to hold a fragment that came before its head
  'fragment-vif-limit', // the fragment's vif already has its share of the fragment table's records
  'fragment-hold-vif-limit', // the fragment's vif already has its share of the held fragments
  'nd-not-proxied', // neighbour discovery the proxy does not answer (DAD probe, not in the VN, not from the link)
  'ipv6-chain-truncated', // an IPv6 extension header past the packet's end, or a first fragment without the whole chain (RFC 7112)
  'ipv6-chain-too-long', // more IPv6 extension headers than MAX_EXTENSION_HEADERS
  'ipv6-bad-extension-header', // hop-by-hop not first, a second fragment header, a fragment of a bad size (RFC 8200 4.1, 4.5)
  'multicast-not-forwarded', // IPv6 multicast from a pod that is not neighbour discovery (MLD reports, mDNS): nothing is flooded
] as const;

export type DropReason = (typeof DROP_REASONS)[number];

/** Numeric code of each reason, for the packet path (no strings there). */
export const Drop: { readonly [K in DropReason]: number } = Object.fromEntries(
  DROP_REASONS.map((name, index) => [name, index]),
) as { [K in DropReason]: number };

export class DropStats {
  readonly counts = new Float64Array(DROP_REASONS.length);

  count(reason: number): void {
    this.counts[reason]++;
  }

  total(): number {
    let sum = 0;
    for (let i = 0; i < this.counts.length; i++) sum += this.counts[i];
    return sum;
  }

  /** Reasons with a non-zero count, in declaration order. */
  toJSON(): Record<string, number> {
    const out: Record<string, number> = {};
    DROP_REASONS.forEach((name, i) => {
      if (this.counts[i] > 0) out[name] = this.counts[i];
    });
    return out;
  }

  clear(): void {
    this.counts.fill(0);
  }
}
