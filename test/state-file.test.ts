import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Dataplane } from '../src/dataplane/dataplane';
import { ENCAP_MPLS_GRE, ENCAP_MPLS_UDP, NH_COMPOSITE, NH_DISCARD, NH_ENCAP, NH_RECEIVE, NH_TUNNEL } from '../src/dataplane/nexthop';
import { formatMac } from '../src/dataplane/protocols/ethernet';
import { ipFromString } from '../src/dataplane/protocols/ipv4';
import { StateFileError, buildDataplane, loadStateFile, parseStateText } from '../src/control/config/state-file';

const EXAMPLE_YAML = `
node:
  name: node1
  underlayIp: 192.168.0.11
  underlayGatewayMac: 52:54:00:00:00:fe
  encapPriority: [udp, gre]
vrfs:
  - id: 1
    name: default-domain:demo:vn1
    subnets: [10.1.1.0/24]
    gateway: 10.1.1.1
  - { id: 2, name: default-domain:demo:vn2 }
vifs:
  - { id: 0, kind: fabric, name: eth0, mac: "52:54:00:00:00:11", ip: 192.168.0.11 }
  - { id: 3, kind: virtual, name: tap-a, mac: "02:00:0a:01:01:03", ip: 10.1.1.3, vrf: 1, mtu: 1468 }
  - { id: 4, kind: virtual, name: tap-b, mac: "02:00:0a:02:01:04", vrf: default-domain:demo:vn2 }
  - { id: 5, kind: host, name: vhost0, mac: "52:54:00:00:00:11" }
nexthops:
  # the composite comes before its members on purpose
  - { id: 30, kind: composite, members: [20, 21, null] }
  - { id: 10, kind: encap, vif: 3 }
  - { id: 11, kind: encap, vif: 4, mac: "02:00:00:00:00:44" }
  - { id: 20, kind: tunnel, dip: 192.168.0.12, label: 25, encaps: [udp, gre], mac: "52:54:00:00:00:12" }
  - { id: 21, kind: tunnel, dip: 192.168.0.13, label: 26, sip: 192.168.0.99 }
  - { id: 1, kind: receive }
  - { id: 2, kind: discard }
routes:
  - { vrf: 1, prefix: 10.1.1.3/32, nexthop: 10 }
  - { vrf: default-domain:demo:vn1, prefix: 10.1.2.0/24, nexthop: 30 }
  - { vrf: 1, prefix: 10.1.1.1/32, nexthop: 1 }
  - { vrf: 2, prefix: 0.0.0.0/0, nexthop: 2 }
labels:
  - { label: 25, nexthop: 10 }
  - { label: 65535, nexthop: 11 }
`;

function example(): Record<string, any> {
  return parseStateText(EXAMPLE_YAML, 'example.yaml') as Record<string, any>;
}

function nexthopMac(dataplane: Dataplane, id: number): string {
  return formatMac(dataplane.nexthops.mac, id * 6);
}

function assertExampleProgrammed(dataplane: Dataplane): void {
  assert.deepEqual(dataplane.node, { name: 'node1', underlayIp: ipFromString('192.168.0.11'), encapPriority: ['udp', 'gre'] });

  const vn1 = dataplane.vrfs.get(1)!;
  assert.equal(vn1.name, 'default-domain:demo:vn1');
  assert.deepEqual(vn1.subnets, [{ prefix: ipFromString('10.1.1.0'), length: 24 }]);
  assert.equal(vn1.gateway, ipFromString('10.1.1.1'));
  assert.equal(dataplane.vrfs.get(2)!.gateway, 0);

  const fabric = dataplane.vifs.get(0)!;
  assert.equal(fabric.kindName, 'fabric');
  assert.equal(fabric.vrf, -1);
  assert.equal(dataplane.vifs.fabricVif, 0);
  const tapA = dataplane.vifs.get(3)!;
  assert.deepEqual(
    { kind: tapA.kindName, name: tapA.name, mac: formatMac(tapA.mac), ip: tapA.ip, vrf: tapA.vrf, mtu: tapA.mtu },
    { kind: 'virtual', name: 'tap-a', mac: '02:00:0a:01:01:03', ip: ipFromString('10.1.1.3'), vrf: 1, mtu: 1468 },
  );
  const tapB = dataplane.vifs.get(4)!;
  assert.deepEqual({ ip: tapB.ip, vrf: tapB.vrf, mtu: tapB.mtu }, { ip: 0, vrf: 2, mtu: 1500 });
  assert.equal(dataplane.vifs.get(5)!.kindName, 'host');

  const nexthops = dataplane.nexthops;
  assert.deepEqual(nexthops.ids(), [1, 2, 10, 11, 20, 21, 30]);
  assert.equal(nexthops.kind[10], NH_ENCAP);
  assert.equal(nexthops.vif[10], 3);
  assert.equal(nexthopMac(dataplane, 10), '02:00:0a:01:01:03', 'encap MAC defaults to the vif MAC');
  assert.equal(nexthopMac(dataplane, 11), '02:00:00:00:00:44');

  assert.equal(nexthops.kind[20], NH_TUNNEL);
  assert.equal(nexthops.vif[20], 0, 'tunnel vif defaults to the fabric vif');
  assert.equal(nexthops.dip[20], ipFromString('192.168.0.12'));
  assert.equal(nexthops.sip[20], ipFromString('192.168.0.11'), 'tunnel source defaults to node.underlayIp');
  assert.equal(nexthops.label[20], 25);
  assert.equal(nexthops.encap[20], ENCAP_MPLS_UDP);
  assert.equal(nexthopMac(dataplane, 20), '52:54:00:00:00:12');
  assert.equal(nexthops.sip[21], ipFromString('192.168.0.99'));
  assert.equal(nexthops.encap[21], ENCAP_MPLS_UDP, 'encaps defaults to [udp]');
  assert.equal(nexthopMac(dataplane, 21), '52:54:00:00:00:fe', 'tunnel MAC defaults to node.underlayGatewayMac');

  assert.equal(nexthops.kind[30], NH_COMPOSITE);
  assert.deepEqual([...nexthops.members[30]!], [20, 21, -1]);
  assert.deepEqual([...nexthops.activeSlots[30]!], [0, 1]);
  assert.equal(nexthops.kind[1], NH_RECEIVE);
  assert.equal(nexthops.vif[1], 5, 'receive vif defaults to the host vif');
  assert.equal(nexthops.kind[2], NH_DISCARD);

  const lookup = (vrf: number, address: string) => dataplane.vrfs.get(vrf)!.routes.lookup(ipFromString(address));
  assert.equal(lookup(1, '10.1.1.3'), 10);
  assert.equal(lookup(1, '10.1.2.77'), 30);
  assert.equal(lookup(1, '10.1.1.1'), 1);
  assert.equal(lookup(1, '10.1.1.4'), -1);
  assert.equal(lookup(2, '10.1.1.3'), 2);
  assert.equal(nexthops.refCount[10], 2, 'one route and one label');
  assert.equal(nexthops.refCount[20], 1, 'one composite slot');

  assert.equal(dataplane.labels.lookup(25), 10);
  assert.equal(dataplane.labels.lookup(65535), 11);
  assert.deepEqual(dataplane.labels.entries(), [
    { label: 25, nexthop: 10 },
    { label: 65535, nexthop: 11 },
  ]);
}

test('a complete YAML state file and the same as JSON program the same dataplane', () => {
  const directory = mkdtempSync(join(tmpdir(), 'state-file-'));
  try {
    const yamlFile = join(directory, 'state.yaml');
    const jsonFile = join(directory, 'state.json');
    writeFileSync(yamlFile, EXAMPLE_YAML);
    writeFileSync(jsonFile, JSON.stringify(example(), null, 2));
    assertExampleProgrammed(loadStateFile(yamlFile));
    assertExampleProgrammed(loadStateFile(jsonFile));
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
});

test('the encapsulation is the first of node.encapPriority that the tunnel advertises', () => {
  const encapFor = (encapPriority: string[], encaps: string[]) => {
    const document = example();
    document.node.encapPriority = encapPriority;
    document.nexthops[3].encaps = encaps;
    return buildDataplane(document, 'state.yaml').nexthops.encap[20];
  };
  assert.equal(encapFor(['gre', 'udp'], ['udp', 'gre']), ENCAP_MPLS_GRE);
  assert.equal(encapFor(['gre', 'udp'], ['udp']), ENCAP_MPLS_UDP);
  assert.equal(encapFor(['udp', 'gre'], ['gre', 'udp']), ENCAP_MPLS_UDP);
  assert.equal(encapFor(['udp', 'gre'], ['gre']), ENCAP_MPLS_GRE);
});

test('sections other than node may be left out', () => {
  const dataplane = buildDataplane({ node: { name: 'bare', underlayIp: '10.0.0.1' } }, 'state.yaml');
  assert.deepEqual(dataplane.node.encapPriority, ['udp', 'gre']);
  assert.deepEqual(dataplane.nexthops.ids(), []);
});

const badDocuments: Array<{ name: string; change: (document: Record<string, any>) => void; message: string }> = [
  {
    name: 'unknown field',
    change: (document) => (document.vifs[1].mtuu = 1400),
    message: 'state.yaml: /vifs/1/mtuu: unknown field, expected one of: id, kind, name, mac, ip, ip6, vrf, mtu, floatingIps, maxFlows (value: 1400)',
  },
  {
    name: 'unknown top-level section',
    change: (document) => (document.route = []),
    message: 'state.yaml: /route: unknown field, expected one of: node, flows, vrfs, vifs, nexthops, routes, labels, policies, services (value: [])',
  },
  {
    name: 'bad MAC',
    change: (document) => (document.vifs[1].mac = 'zz:00'),
    message: 'state.yaml: /vifs/1/mac: must match pattern "^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$" (value: "zz:00")',
  },
  {
    name: 'bad IP',
    change: (document) => (document.vifs[1].ip = '10.1.1.300'),
    message: 'state.yaml: /vifs/1/ip: not an IPv4 address (value: "10.1.1.300")',
  },
  {
    name: 'abbreviated IP',
    change: (document) => (document.node.underlayIp = '192.168.11'),
    message: 'state.yaml: /node/underlayIp: not an IPv4 address (value: "192.168.11")',
  },
  {
    name: 'prefix with host bits',
    change: (document) => (document.routes[1].prefix = '10.1.2.5/24'),
    message: 'state.yaml: /routes/1/prefix: host bits set: the prefix is 10.1.2.0/24 (value: "10.1.2.5/24")',
  },
  {
    name: 'subnet that is not a prefix',
    change: (document) => (document.vrfs[0].subnets = ['10.1.1.0/33']),
    message: 'state.yaml: /vrfs/0/subnets/0: not an IPv4 prefix (a.b.c.d/length) (value: "10.1.1.0/33")',
  },
  {
    name: 'unknown VRF name in a route',
    change: (document) => (document.routes[1].vrf = 'default-domain:demo:vn9'),
    message: 'state.yaml: /routes/1/vrf: vrf "default-domain:demo:vn9" is not defined (value: "default-domain:demo:vn9")',
  },
  {
    name: 'unknown VRF id in a vif',
    change: (document) => (document.vifs[1].vrf = 7),
    message: 'state.yaml: /vifs/1/vrf: vrf 7 is not defined (value: 7)',
  },
  {
    name: 'virtual vif without a VRF',
    change: (document) => delete document.vifs[2].vrf,
    message: 'state.yaml: /vifs/2: a virtual vif needs "vrf" (value: {"id":4,"kind":"virtual","name":"tap-b","mac":"02:00:0a:02:01:04"})',
  },
  {
    name: 'fabric vif with a VRF',
    change: (document) => (document.vifs[0].vrf = 1),
    message: 'state.yaml: /vifs/0/vrf: a fabric vif belongs to no VRF (value: 1)',
  },
  {
    name: 'route to a missing nexthop',
    change: (document) => (document.routes[0].nexthop = 99),
    message: 'state.yaml: /routes/0/nexthop: nexthop 99 is not defined (value: 99)',
  },
  {
    name: 'duplicate route',
    change: (document) => document.routes.push({ vrf: 'default-domain:demo:vn1', prefix: '10.1.1.3/32', nexthop: 2 }),
    message: 'state.yaml: /routes/4/prefix: duplicate route in vrf 1, first at /routes/0 (value: "10.1.1.3/32")',
  },
  {
    name: 'composite member undefined',
    change: (document) => (document.nexthops[0].members[1] = 77),
    message: 'state.yaml: /nexthops/0/members/1: nexthop 77 is not defined (value: 77)',
  },
  {
    name: 'composite member that is a composite',
    change: (document) => document.nexthops.push({ id: 31, kind: 'composite', members: [30] }),
    message: 'state.yaml: /nexthops/7/members/0: nexthop 30 is a composite; composites do not nest (value: 30)',
  },
  {
    name: 'encap nexthop on a missing vif',
    change: (document) => (document.nexthops[1].vif = 9),
    message: 'state.yaml: /nexthops/1/vif: vif 9 is not defined (value: 9)',
  },
  {
    name: 'unknown nexthop kind',
    change: (document) => (document.nexthops[6].kind = 'drop'),
    message: 'state.yaml: /nexthops/6/kind: must be one of: encap, tunnel, composite, receive, discard (value: "drop")',
  },
  {
    name: 'tunnel without its label',
    change: (document) => delete document.nexthops[4].label,
    message: 'state.yaml: /nexthops/4: missing required field "label" (value: {"id":21,"kind":"tunnel","dip":"192.168.0.13","sip":"192.168.0.99"})',
  },
  {
    name: 'label 5 (reserved)',
    change: (document) => (document.labels[0].label = 5),
    message: 'state.yaml: /labels/0/label: must be >= 16 (value: 5)',
  },
  {
    name: 'label to a missing nexthop',
    change: (document) => (document.labels[1].nexthop = 12),
    message: 'state.yaml: /labels/1/nexthop: nexthop 12 is not defined (value: 12)',
  },
  {
    name: 'duplicate label',
    change: (document) => (document.labels[1].label = 25),
    message: 'state.yaml: /labels/1/label: duplicate label, first at /labels/0 (value: 25)',
  },
  {
    name: 'duplicate vif id',
    change: (document) => (document.vifs[2].id = 3),
    message: 'state.yaml: /vifs/2/id: duplicate id, first at /vifs/1 (value: 3)',
  },
  {
    name: 'duplicate VRF name',
    change: (document) => (document.vrfs[1].name = 'default-domain:demo:vn1'),
    message: 'state.yaml: /vrfs/1/name: duplicate name, first at /vrfs/0 (value: "default-domain:demo:vn1")',
  },
  {
    name: 'duplicate nexthop id',
    change: (document) => (document.nexthops[6].id = 10),
    message: 'state.yaml: /nexthops/6/id: duplicate id, first at /nexthops/1 (value: 10)',
  },
  {
    name: 'vif id over the cap',
    change: (document) => (document.vifs[1].id = 4096),
    message: 'state.yaml: /vifs/1/id: must be <= 4095 (value: 4096)',
  },
  {
    name: 'tunnel with no MAC available',
    change: (document) => delete document.node.underlayGatewayMac,
    message:
      'state.yaml: /nexthops/4: no destination MAC: set "mac" here or "underlayGatewayMac" in node (value: {"id":21,"kind":"tunnel","dip":"192.168.0.13","label":26,"sip":"192.168.0.99"})',
  },
  {
    name: 'tunnel with no fabric vif',
    change: (document) => document.vifs.shift(),
    message: 'state.yaml: /nexthops/3: no fabric vif for the tunnel to leave by: add one or set "vif" (value: {"id":20,"kind":"tunnel","dip":"192.168.0.12","label":25,"encaps":["udp","gre"],"mac":"52:54:00:00:00:12"})',
  },
  {
    name: 'no common encapsulation',
    change: (document) => {
      document.node.encapPriority = ['gre'];
      document.nexthops[3].encaps = ['udp'];
    },
    message: 'state.yaml: /nexthops/3/encaps: no encapsulation in common with node.encapPriority ["gre"] (value: ["udp"])',
  },
  {
    name: 'unknown encapsulation',
    change: (document) => (document.node.encapPriority = ['vxlan']),
    message: 'state.yaml: /node/encapPriority/0: must be one of: udp, gre (value: "vxlan")',
  },
  {
    name: 'VRF reference of the wrong type',
    change: (document) => (document.routes[0].vrf = true),
    message: 'state.yaml: /routes/0/vrf: must be integer or string (value: true)',
  },
  {
    name: 'missing node',
    change: (document) => delete document.node,
    message: 'state.yaml: /: missing required field "node" (value: {"vrfs":[{"id":1,"name":"default-domain:demo:vn1","subnets":["10.1.1.0/24"],"gateway":"10.1.1.1"},{"id":2,"name":"defaul...)',
  },
];

for (const { name, change, message } of badDocuments) {
  test(`rejects a document with: ${name}`, () => {
    const document = example();
    change(document);
    assert.throws(() => buildDataplane(document, 'state.yaml'), (error: unknown) => {
      assert.ok(error instanceof StateFileError);
      assert.equal(error.message, message);
      return true;
    });
  });
}

test('a YAML syntax error names the file and the line', () => {
  const text = 'node:\n  name: node1\n  underlayIp: [192.168.0.11\nvrfs: []\n';
  assert.throws(() => parseStateText(text, 'state.yaml'), {
    name: 'StateFileError',
    message: 'state.yaml: line 4, column 1: Flow sequence in block collection must be sufficiently indented and end with a ]',
  });
});

test('a duplicate YAML key is a syntax error', () => {
  assert.throws(() => parseStateText('node: {}\nnode: {}\n', 'state.yaml'), {
    name: 'StateFileError',
    message: 'state.yaml: line 2, column 1: Map keys must be unique',
  });
});

test('an unreadable file names the file', () => {
  assert.throws(() => loadStateFile('/nonexistent/state.yaml'), {
    name: 'StateFileError',
    message: /^\/nonexistent\/state\.yaml: cannot read: ENOENT/,
  });
});
