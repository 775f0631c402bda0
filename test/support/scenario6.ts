/**
 * The pipeline-test node of scenario.ts, dual-stack:
 *
 *   vrf 1 "vn1" also fd00:1:1::/64, gateway fd00:1:1::1
 *     pod-a fd00:1:1::3 (nh 1), pod-b fd00:1:1::4 (nh 2, floating IP fd00:96::20 udp 5001 -> 8080)
 *     fd00:1:1::5/128 -> nh 10 (node2, udp), fd00:1:1::6/128 -> nh 11 (node3, gre)
 *     fd00:96::10/128 -> nh 20 (composite of 10, 11, 12)
 *   vrf 2 "vn2" also fd00:2:2::/64: pod-c fd00:2:2::3 (nh 3)
 */
import { buildScenario } from './scenario';
import { ip6FromString } from '../../src/dataplane/protocols/ipv6';

const ip6 = ip6FromString;

export const POD_A6 = 'fd00:1:1::3';
export const POD_B6 = 'fd00:1:1::4';
export const REMOTE6 = 'fd00:1:1::5';
export const REMOTE_GRE6 = 'fd00:1:1::6';
export const GATEWAY6 = 'fd00:1:1::1';
export const CLUSTER6 = 'fd00:96::10';
export const SERVICE6 = 'fd00:96::20';
export const POD_C6 = 'fd00:2:2::3';

/** The IPv4 scenario of test/support/scenario.ts, dual-stack. */
export function buildScenario6(options: { flowCapacity?: number } = {}) {
  const s = buildScenario(options);
  const dp = s.dp;
  dp.setVrfIpv6(1, [{ prefix: ip6('fd00:1:1::'), length: 64 }], ip6(GATEWAY6));
  dp.setVrfIpv6(2, [{ prefix: ip6('fd00:2:2::'), length: 64 }], ip6('fd00:2:2::1'));
  dp.vifs.get(1)!.ip6 = ip6(POD_A6);
  dp.vifs.get(2)!.ip6 = ip6(POD_B6);
  dp.vifs.get(2)!.floatingIps6 = [{ ip: ip6(SERVICE6), portMap: [{ protocol: 17, port: 5001, targetPort: 8080 }] }];
  dp.vifs.get(3)!.ip6 = ip6(POD_C6);
  dp.addRoute6(1, ip6(POD_A6), 128, 1);
  dp.addRoute6(1, ip6(POD_B6), 128, 2);
  dp.addRoute6(1, ip6(REMOTE6), 128, 10);
  dp.addRoute6(1, ip6(REMOTE_GRE6), 128, 11);
  dp.addRoute6(1, ip6(CLUSTER6), 128, 20);
  dp.addRoute6(2, ip6(POD_C6), 128, 3);
  return s;
}

