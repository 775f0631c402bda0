/**
 * nd-proxy: neighbour discovery for pods, answered by the vrouter as the ARP
 * proxy answers ARP (RFC 4861; the agent's services/icmpv6_handler.cc in
 * tungstenfabric/tf-controller@6a674397 does the same):
 *
 *   neighbour solicitation for an address in the VN's IPv6 subnets, its
 *   gateway or the router's link-local fe80::5e00:100
 *     -> neighbour advertisement from that address, target link-layer
 *        address 00:00:5e:00:01:00, flags S and O (and R for the router's
 *        own addresses, so a pod keeps it as its default router)
 *   router solicitation -> router advertisement (below)
 *
 * Duplicate address detection probes (source ::) and a pod asking for its
 * own address are not answered: an answer would make it give the address
 * up. Messages that arrive with a hop limit other than 255 or a bad
 * checksum are not neighbour discovery from the link (RFC 4861 7.1.1).
 *
 * Router advertisements (also sent unsolicited to all nodes when a pod's
 * port comes up, see Pipeline.advertiseRouter) come from fe80::5e00:100 (the
 * agent's PKT0_LINKLOCAL_ADDRESS), hop limit 64 for the pod to use, router
 * lifetime 9000 s when the VN has an IPv6 gateway (0: not a default router),
 * source link-layer address 00:00:5e:00:01:00, the vif's MTU, and a prefix
 * information option per IPv6 subnet (on-link, infinite lifetimes, no
 * autoconfiguration: pods are given their address). The agent also sets M
 * and O for DHCPv6; there is no DHCPv6 server here, so both are clear.
 */
import type { Pipeline } from '../pipeline';
import { Drop } from '../drop-reasons';
import { MAX_FRAME } from '../packet-pool';
import { ETH_HEADER_LEN, ETHERTYPE_IPV6, VLAN_TAG_LEN, VROUTER_MAC, writeEthernet } from '../protocols/ethernet';
import {
  ND_HOP_LIMIT,
  ND_NA_FLAG_OVERRIDE,
  ND_NA_FLAG_ROUTER,
  ND_NA_FLAG_SOLICITED,
  ND_NA_LEN,
  ND_NEIGHBOR_ADVERT,
  ND_NEIGHBOR_SOLICIT,
  ND_NS_LEN,
  ND_OPT_LINKADDR_LEN,
  ND_OPT_MTU,
  ND_OPT_MTU_LEN,
  ND_OPT_PREFIX_INFORMATION,
  ND_OPT_PREFIX_INFORMATION_LEN,
  ND_OPT_SOURCE_LINKADDR,
  ND_OPT_TARGET_LINKADDR,
  ND_PI_FLAG_ONLINK,
  ND_RA_LEN,
  ND_ROUTER_ADVERT,
  ND_ROUTER_SOLICIT,
  ND_RS_LEN,
  upperLayerChecksum6,
  upperLayerChecksumValid6,
} from '../protocols/icmpv6';
import {
  IP6_DST,
  IP6_HEADER_LEN,
  IP6_SRC,
  PROTO_ICMPV6,
  ip6FromString,
  ip6ToString,
  isMulticast6,
  isUnspecified6,
  sameAddress6,
} from '../protocols/ipv6';
import { writeU16, writeU32 } from '../protocols/ipv4';
import type { Vif } from '../vif';
import type { Vrf } from '../vrf';
import { TRANSMIT, drop } from './next';

/** The router's link-local address, as the agent's PKT0_LINKLOCAL_ADDRESS "FE80::5E00:0100". */
export const ROUTER_LINK_LOCAL = ip6FromString('fe80::5e00:100');
export const ALL_NODES = ip6FromString('ff02::1');
/** RFC 2464 7: ff02::1 on Ethernet. */
export const ALL_NODES_MAC = Uint8Array.of(0x33, 0x33, 0, 0, 0, 1);
const ROUTER_LIFETIME_SECONDS = 9000;
const RA_HOP_LIMIT = 64;

const peerAddress = new Uint8Array(16);
const peerMac = new Uint8Array(6);

export function ndProxy(c: Pipeline, p: number): number {
  const pool = c.pool;
  const d = pool.data;
  const l3 = pool.l3[p];
  const l4 = pool.l4[p];
  const length = (d[l3 + 4] << 8) | d[l3 + 5];
  const vif = c.vifs[pool.ingressVif[p]]!;
  const vrf = c.vrfs[vif.vrf];
  if (vrf === null || vrf === undefined || d[l3 + 7] !== ND_HOP_LIMIT || d[l4 + 1] !== 0) return drop(Drop['nd-not-proxied']);
  if (!upperLayerChecksumValid6(d, l3, l4, length, PROTO_ICMPV6)) return drop(Drop['bad-checksum']);
  const type = d[l4];
  if (type === ND_NEIGHBOR_SOLICIT && length >= ND_NS_LEN) return neighborAdvertisement(c, p, vif, vrf);
  if (type === ND_ROUTER_SOLICIT && length >= ND_RS_LEN) {
    const start = pool.start[p];
    if (isUnspecified6(d, l3 + IP6_SRC)) {
      peerAddress.set(ALL_NODES);
      peerMac.set(ALL_NODES_MAC);
    } else {
      for (let i = 0; i < 16; i++) peerAddress[i] = d[l3 + IP6_SRC + i];
      for (let i = 0; i < 6; i++) peerMac[i] = d[start + 6 + i];
    }
    const frameStart = l3 - ETH_HEADER_LEN;
    pool.start[p] = frameStart;
    pool.length[p] = writeRouterAdvertisement(d, frameStart, vif, vrf, peerAddress, peerMac);
    pool.egressVif[p] = vif.id;
    return TRANSMIT;
  }
  return drop(Drop['nd-not-proxied']);
}

function neighborAdvertisement(c: Pipeline, p: number, vif: Vif, vrf: Vrf): number {
  const pool = c.pool;
  const d = pool.data;
  const l3 = pool.l3[p];
  const l4 = pool.l4[p];
  const target = l4 + 8;
  if (isUnspecified6(d, l3 + IP6_SRC) || isMulticast6(d, target)) return drop(Drop['nd-not-proxied']);
  if (vif.ip6 !== null && sameAddress6(vif.ip6, 0, d, target)) return drop(Drop['nd-not-proxied']);
  const router = sameAddress6(ROUTER_LINK_LOCAL, 0, d, target) || (vrf.gateway6 !== null && sameAddress6(vrf.gateway6, 0, d, target));
  if (!router && !vrf.inSubnets6(d, target)) return drop(Drop['nd-not-proxied']);

  // The advertisement goes back to the solicitation's source, from the target.
  const start = pool.start[p];
  for (let i = 0; i < 6; i++) peerMac[i] = d[start + 6 + i];
  d.copyWithin(l3 + IP6_DST, l3 + IP6_SRC, l3 + IP6_SRC + 16);
  d.copyWithin(l3 + IP6_SRC, target, target + 16);
  const length = ND_NA_LEN + ND_OPT_LINKADDR_LEN;
  writeU32(d, l3, 0x60000000);
  writeU16(d, l3 + 4, length);
  d[l3 + 6] = PROTO_ICMPV6;
  d[l3 + 7] = ND_HOP_LIMIT;
  d[l4] = ND_NEIGHBOR_ADVERT;
  d[l4 + 1] = 0;
  writeU16(d, l4 + 2, 0);
  writeU32(d, l4 + 4, ((router ? ND_NA_FLAG_ROUTER : 0) | ND_NA_FLAG_SOLICITED | ND_NA_FLAG_OVERRIDE) << 24);
  const option = l4 + ND_NA_LEN;
  d[option] = ND_OPT_TARGET_LINKADDR;
  d[option + 1] = 1;
  d.set(VROUTER_MAC, option + 2);
  writeU16(d, l4 + 2, upperLayerChecksum6(d, l3, l4, length, PROTO_ICMPV6));
  // Like the ARP proxy: only the MACs change in front of the packet (an 802.1Q tag stays).
  for (let i = 0; i < 6; i++) {
    d[start + i] = peerMac[i];
    d[start + 6 + i] = VROUTER_MAC[i];
  }
  pool.length[p] = l3 + IP6_HEADER_LEN + length - start;
  pool.egressVif[p] = vif.id;
  return TRANSMIT;
}

/** Prefix information options that fit in one frame beside the other options (a solicitation's 802.1Q tag included). */
const MAX_PREFIX_OPTIONS = Math.floor(
  (MAX_FRAME - VLAN_TAG_LEN - ETH_HEADER_LEN - IP6_HEADER_LEN - ND_RA_LEN - ND_OPT_LINKADDR_LEN - ND_OPT_MTU_LEN) / ND_OPT_PREFIX_INFORMATION_LEN,
);

/** Writes a whole router advertisement frame for the vif at data[frame]; returns its length. */
export function writeRouterAdvertisement(d: Buffer, frame: number, vif: Vif, vrf: Vrf, destination: Uint8Array, destinationMac: Uint8Array): number {
  writeEthernet(d, frame, destinationMac, VROUTER_MAC, ETHERTYPE_IPV6);
  const ip = frame + ETH_HEADER_LEN;
  const prefixes = Math.min(vrf.subnets6.length, MAX_PREFIX_OPTIONS);
  const length = ND_RA_LEN + ND_OPT_LINKADDR_LEN + ND_OPT_MTU_LEN + prefixes * ND_OPT_PREFIX_INFORMATION_LEN;
  writeU32(d, ip, 0x60000000);
  writeU16(d, ip + 4, length);
  d[ip + 6] = PROTO_ICMPV6;
  d[ip + 7] = ND_HOP_LIMIT;
  d.set(ROUTER_LINK_LOCAL, ip + IP6_SRC);
  d.set(destination, ip + IP6_DST);
  const ra = ip + IP6_HEADER_LEN;
  d[ra] = ND_ROUTER_ADVERT;
  d[ra + 1] = 0;
  writeU16(d, ra + 2, 0);
  d[ra + 4] = RA_HOP_LIMIT;
  d[ra + 5] = 0; // M and O clear: no DHCPv6
  writeU16(d, ra + 6, vrf.gateway6 !== null ? ROUTER_LIFETIME_SECONDS : 0);
  writeU32(d, ra + 8, 0); // reachable time: unspecified
  writeU32(d, ra + 12, 0); // retransmission timer: unspecified
  let option = ra + ND_RA_LEN;
  d[option] = ND_OPT_SOURCE_LINKADDR;
  d[option + 1] = 1;
  d.set(VROUTER_MAC, option + 2);
  option += ND_OPT_LINKADDR_LEN;
  d[option] = ND_OPT_MTU;
  d[option + 1] = 1;
  writeU16(d, option + 2, 0);
  writeU32(d, option + 4, vif.mtu);
  option += ND_OPT_MTU_LEN;
  for (let i = 0; i < prefixes; i++) {
    const subnet = vrf.subnets6[i];
    d[option] = ND_OPT_PREFIX_INFORMATION;
    d[option + 1] = 4;
    d[option + 2] = subnet.length;
    d[option + 3] = ND_PI_FLAG_ONLINK;
    writeU32(d, option + 4, 0xffffffff); // valid lifetime: infinite
    writeU32(d, option + 8, 0xffffffff); // preferred lifetime: infinite
    writeU32(d, option + 12, 0);
    d.set(subnet.prefix, option + 16);
    option += ND_OPT_PREFIX_INFORMATION_LEN;
  }
  writeU16(d, ra + 2, upperLayerChecksum6(d, ip, ra, length, PROTO_ICMPV6));
  return ETH_HEADER_LEN + IP6_HEADER_LEN + length;
}

export function describeNdProxy(c: Pipeline, p: number, next: number): string {
  const d = c.pool.data;
  const l3 = c.pool.l3[p];
  const l4 = c.pool.l4[p];
  if (next !== TRANSMIT) return `icmpv6 type ${d[l4]} from ${ip6ToString(d, l3 + IP6_SRC)}: not answered`;
  if (d[l4] === ND_NEIGHBOR_ADVERT) return `${ip6ToString(d, l4 + 8)} is-at 00:00:5e:00:01:00, told ${ip6ToString(d, l3 + IP6_DST)}`;
  return `router advertisement to ${ip6ToString(d, l3 + IP6_DST)}`;
}
