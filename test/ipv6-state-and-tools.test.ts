/**
 * IPv6 in the state file, the introspect answers and the utilities' output:
 * a dual-stack node loaded from YAML, its routes dumped per family, its
 * IPv6 flows listed; bad IPv6 configuration named by file, field and value.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildDataplane, parseStateText } from '../src/control/config/state-file';
import { introspect } from '../src/dataplane/introspect';
import { PacketPool } from '../src/dataplane/packet-pool';
import { Pipeline } from '../src/dataplane/pipeline';
import { MemoryPort } from '../src/dataplane/io/memory-port';
import { ip6FromString, ip6ToString } from '../src/dataplane/protocols/ipv6';
import { formatDropstats, formatFlow, formatRoutes, formatVif, parseFlowMatch, parseTraceSpec } from '../src/cli/tools';
import { DROP_REASONS } from '../src/dataplane/drop-reasons';
import { writeSyntheticPacket } from '../src/dataplane/synthetic-packet';
import { ETHERNET_INPUT } from '../src/dataplane/steps/next';
import * as f6 from './support/frames6';

const STATE = `
node: { name: node1, underlayIp: 192.168.0.11, underlayGatewayMac: "52:54:00:00:00:fe" }
vrfs:
  - { id: 1, name: vn1, subnets: [10.1.1.0/24, "fd00:1:1::/64"], gateway: 10.1.1.1, gateway6: "fd00:1:1::1" }
vifs:
  - { id: 0, kind: fabric, name: eth0, mac: "52:54:00:00:00:11", ip: 192.168.0.11 }
  - { id: 1, kind: virtual, name: pod-a, mac: "02:00:0a:01:01:03", ip: 10.1.1.3, ip6: "fd00:1:1::3", vrf: 1 }
  - id: 2
    kind: virtual
    name: pod-b
    mac: "02:00:0a:01:01:04"
    ip: 10.1.1.4
    ip6: "fd00:1:1::4"
    vrf: 1
    floatingIps: [{ ip: "fd00:96::10", portMap: [{ protocol: tcp, port: 80, targetPort: 8080 }] }, { ip: 10.96.0.10 }]
nexthops:
  - { id: 1, kind: encap, vif: 1 }
  - { id: 2, kind: encap, vif: 2 }
  - { id: 10, kind: tunnel, dip: 192.168.0.12, label: 25 }
routes:
  - { vrf: 1, prefix: 10.1.1.3/32, nexthop: 1 }
  - { vrf: 1, prefix: "fd00:1:1::3/128", nexthop: 1 }
  - { vrf: 1, prefix: "fd00:1:1::4/128", nexthop: 2 }
  - { vrf: vn1, prefix: "fd00:1:2::/64", nexthop: 10 }
  - { vrf: 1, prefix: "::/0", nexthop: 10 }
labels:
  - { label: 17, nexthop: 1 }
policies:
  - { source: vn1, destination: vn1, protocol: icmp6, destinationPrefix: "fd00:1:1::4/128", action: deny }
`;

function load(text: string) {
  return buildDataplane(parseStateText(text, 'state.yaml'), 'state.yaml');
}

test('a dual-stack state file programs IPv6 subnets, gateway, addresses, floating IPs, routes and policy', () => {
  const dp = load(STATE);
  const vrf = dp.vrfs.get(1)!;
  assert.equal(vrf.subnets.length, 1);
  assert.deepEqual(vrf.subnets6.map((s) => `${ip6ToString(s.prefix)}/${s.length}`), ['fd00:1:1::/64']);
  assert.equal(ip6ToString(vrf.gateway6!), 'fd00:1:1::1');
  assert.equal(ip6ToString(dp.vifs.get(1)!.ip6!), 'fd00:1:1::3');
  assert.equal(dp.vifs.get(2)!.floatingIps.length, 1);
  assert.equal(ip6ToString(dp.vifs.get(2)!.floatingIps6[0].ip), 'fd00:96::10');
  assert.equal(vrf.routes6.size, 4);
  assert.equal(vrf.routes.size, 1);
  assert.equal(vrf.routes6.lookup(ip6FromString('fd00:1:2::9'), 0), 10);
  assert.equal(vrf.routes6.lookup(ip6FromString('2001:db8::1'), 0), 10, 'the default route');
  const rule = dp.policy.rules[0];
  assert.equal(rule.protocol, 58);
  assert.equal(ip6ToString(rule.destinationPrefix6!), 'fd00:1:1::4');
  assert.equal(rule.destinationLength, 128);
});

for (const [name, patch, message] of [
  ['a bad IPv6 address', ['ip6: "fd00:1:1::3"', 'ip6: "fd00::1::3"'], 'state.yaml: /vifs/1/ip6: not an IPv6 address (value: "fd00::1::3")'],
  ['an IPv6 prefix with host bits', ['"fd00:1:2::/64"', '"fd00:1:2::1/64"'], 'state.yaml: /routes/3/prefix: host bits set: the prefix is fd00:1:2::/64 (value: "fd00:1:2::1/64")'],
  ['an IPv6 prefix length over 128', ['"::/0"', '"::/129"'], 'state.yaml: /routes/4/prefix: not an IPv6 prefix (x:x::/length, length 0-128) (value: "::/129")'],
  ['a duplicate IPv6 route', ['"fd00:1:1::4/128"', '"fd00:1:1:0::3/128"'], 'state.yaml: /routes/2/prefix: duplicate route in vrf 1, first at /routes/1 (value: "fd00:1:1:0::3/128")'],
  ['a bad IPv6 gateway', ['gateway6: "fd00:1:1::1"', 'gateway6: "10.1.1.1"'], 'state.yaml: /vrfs/0/gateway6: not an IPv6 address (value: "10.1.1.1")'],
] as const) {
  test(`the state file rejects ${name}, naming file, field and value`, () => {
    assert.throws(() => load(STATE.replace(patch[0], patch[1])), (error: Error) => error.message === message);
  });
}

test('introspect and the utilities show IPv6: rt --dump per family, flow -l with IPv6 endpoints', () => {
  const dp = load(STATE);
  const pool = new PacketPool(64);
  const pipeline = new Pipeline(dp, pool);
  for (const vif of dp.vifs) vif.port = new MemoryPort();
  const frame = f6.frame6('02:00:0a:01:01:03', '00:00:5e:00:01:00', f6.ipv6({ src: 'fd00:1:1::3', dst: 'fd00:1:2::9', nextHeader: 6, payload: f6.tcp6('fd00:1:1::3', 'fd00:1:2::9', 40000, 443, 0x02) }));
  const slot = pool.alloc();
  pool.write(slot, frame);
  pool.ingressVif[slot] = 1;
  pipeline.processBatch(Int32Array.of(slot), 1);
  assert.equal(dp.vifs.get(0)!.txPackets, 1, 'the SYN left through the tunnel');

  const routes6 = introspect(dp, pipeline, { what: 'routes', vrf: 'vn1', family: 'inet6' }) as Array<{ prefix: string; nexthop: number }>;
  assert.deepEqual(routes6, [
    { prefix: '::/0', nexthop: 10 },
    { prefix: 'fd00:1:1::3/128', nexthop: 1 },
    { prefix: 'fd00:1:1::4/128', nexthop: 2 },
    { prefix: 'fd00:1:2::/64', nexthop: 10 },
  ]);
  const inside = introspect(dp, pipeline, { what: 'routes', vrf: 'vn1', family: 'inet6', prefix: 'fd00:1:1::/64' }) as Array<{ prefix: string }>;
  assert.deepEqual(inside.map((route) => route.prefix), ['::/0', 'fd00:1:1::3/128', 'fd00:1:1::4/128'], 'inside, and the route covering it');
  const routes4 = introspect(dp, pipeline, { what: 'routes', vrf: 'vn1' }) as Array<{ prefix: string }>;
  assert.deepEqual(routes4.map((route) => route.prefix), ['10.1.1.3/32']);
  const vrfs = introspect(dp, pipeline, { what: 'vrfs' }) as Array<{ subnets6: string[]; gateway6: string; routes6: number }>;
  assert.deepEqual([vrfs[0].subnets6, vrfs[0].gateway6, vrfs[0].routes6], [['fd00:1:1::/64'], 'fd00:1:1::1', 4]);
  const vifs = introspect(dp, pipeline, { what: 'vifs' }) as Array<Parameters<typeof formatVif>[0]>;
  assert.equal(vifs[1].ip6, 'fd00:1:1::3');
  assert.match(formatVif({ ...vifs[1], rates: null, pod: null }), /HWaddr:02:00:0a:01:01:03 IPaddr:10\.1\.1\.3 IP6addr:fd00:1:1::3$/m);
  assert.deepEqual(vifs[2].floatingIps.map((fip) => fip.ip), ['10.96.0.10', 'fd00:96::10']);

  const dump = formatRoutes(
    {
      vrf: 1,
      vrfName: 'vn1',
      family: 'inet6',
      routes: routes6.map((route) => ({ ...route, kind: null, label: route.nexthop === 10 ? 25 : null, vif: null, mac: null, dip: null, encap: null, members: null })),
    },
    ['fd00:1:1::/64'],
  );
  assert.match(dump, /^vRouter inet6 routing table 0\/1\/unicast \(vn1\)$/m);
  assert.match(dump, /^fd00:1:1::3\/128\s+P\s+-\s+1/m, 'proxied: inside the VN subnet');
  assert.match(dump, /^fd00:1:2::\/64\s+L\s+25\s+10/m);

  const flows = introspect(dp, pipeline, { what: 'flows', ip: 'fd00:1:2::9' }) as { total: number; flows: Array<Parameters<typeof formatFlow>[0]> };
  assert.equal(flows.total, 2);
  assert.equal(flows.flows[0].protocol, 'tcp');
  const listed = formatFlow({ ...flows.flows[0], vrfName: 'vn1' });
  assert.match(listed, /\[fd00:1:1::3\]:40000\s+6 \(1\)/);
  assert.match(listed, /\[fd00:1:2::9\]:443/);
  assert.equal((introspect(dp, pipeline, { what: 'flows', ip: '10.1.1.3' }) as { total: number }).total, 0, 'an IPv4 filter does not match IPv6 flows');
  assert.deepEqual(parseFlowMatch('[fd00:1:2::9]:443 & vrf 1 & proto tcp'), { ip: 'fd00:1:2::9', port: '443', vrf: '1', protocol: 'tcp' });
  assert.deepEqual(parseFlowMatch('fd00:1:2::9'), { ip: 'fd00:1:2::9' });
});

test('trace: an IPv6 packet through the real steps, described step by step, nothing kept', () => {
  const dp = load(STATE);
  const pool = new PacketPool(64);
  const pipeline = new Pipeline(dp, pool);
  const spec = parseTraceSpec('tcp [fd00:1:1::3]:40000 > [fd00:1:2::9]:443');
  assert.deepEqual(spec, { protocol: 'tcp', src: 'fd00:1:1::3', dst: 'fd00:1:2::9', srcPort: 40000, dstPort: 443 });
  assert.throws(() => parseTraceSpec('tcp [fd00:1:1::3]:40000 > 10.1.1.5:80'), /expected/);
  const slot = pool.alloc();
  writeSyntheticPacket(dp, pool, slot, { vif: 'pod-a', ...spec });
  const lines: string[] = [];
  pipeline.traceOnly(slot, ETHERNET_INPUT, (line) => lines.push(line));
  const text = lines.join('\n');
  assert.match(text, /ethernet-input: ethertype 0x86dd/);
  assert.match(text, /ipv6-input: fd00:1:1::3 > fd00:1:2::9 next header 6 hop limit 64/);
  assert.match(text, /ipv6-lookup: vrf 1 \(vn1\) fd00:1:2::9 matched fd00:1:2::\/64 -> nh 10/);
  assert.match(text, /hop-limit-decrement: hop limit now 63/);
  assert.match(text, /tunnel-encap: mpls-over-udp 192\.168\.0\.11 > 192\.168\.0\.12 label 25/);
  assert.equal(dp.flows.activePairs, 0, 'the traced flow is removed again');
});

test('dropstats gives every drop reason a label of its own, the IPv6 extension-header reasons included', () => {
  const text = formatDropstats(Object.fromEntries(DROP_REASONS.map((reason, i) => [reason, i + 1])));
  const lines = text.split('\n').filter((line) => line.trim() !== '');
  assert.equal(lines.length, DROP_REASONS.length);
  const labels = lines.map((line) => line.replace(/ +\d+$/, ''));
  for (const reason of DROP_REASONS) assert.ok(!labels.includes(reason), `${reason} is printed without a label`);
  assert.equal(new Set(labels).size, DROP_REASONS.length, 'labels are distinct');
  assert.match(text, /^IPv6 Header Chain Cut Short +\d+$/m);
  assert.match(text, /^No L2 Route +\d+$/m);
});
