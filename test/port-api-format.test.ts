/**
 * The agent's port JSON and Sandesh XML as vrouter-ts writes and reads them,
 * without a daemon: rapidjson PrettyWriter's form, boost's names for UUIDs
 * and addresses, the time format, and TXMLProtocol's ItfResp (sources in
 * src/control/agent/agent-port.ts and src/daemon/sandesh-itf.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AgentJsonError, prettyJson, readAgentPort, readAgentPorts, readVmVnPort, simpleTime } from '../src/control/agent/agent-port';
import { itfResponse, SandeshInterface } from '../src/daemon/sandesh-itf';

const PORT = {
  id: '93C2C3866E79485EBFA4B9DAA713133B',
  'instance-id': '69ce06bd-6d1e-43d0-8e48-a30043a49ed8',
  'vn-id': '56297dc0-5553-4e6a-b87f-8423afc21e9d',
  'vm-project-id': '9970147c-33b1-4bf7-8944-8968e708d430',
  'display-name': 'vm1',
  'ip-address': '11.0.0.3',
  'ip6-address': '0::0',
  type: 1,
  'system-name': 'tap93c2c386-6e',
  'mac-address': '02:93:C2:C3:86:6E',
  'rx-vlan-id': 0,
  'tx-vlan-id': 0,
};

test('UUIDs, MACs and addresses are read as boost reads them and written as the agent writes them', () => {
  const port = readAgentPort(PORT);
  assert.equal(port.id, '93c2c386-6e79-485e-bfa4-b9daa713133b');
  assert.equal(port.mac, '02:93:c2:c3:86:6e');
  assert.equal(port.ip6, '::');
  assert.equal(readAgentPort({ ...PORT, 'ip6-address': '2001:DB8:0:0::1' }).ip6, '2001:db8::1');
  // A namespace port may have no VN; a remote port starts with its link down.
  assert.equal(readAgentPort({ ...PORT, 'vn-id': '' }).vnId, '00000000-0000-0000-0000-000000000000');
  assert.equal(readAgentPort({ ...PORT, type: 2 }).linkState, 0);
  assert.equal(readAgentPort({ ...PORT, type: 2, 'link-state': 1 }).linkState, 1);
  assert.throws(() => readAgentPort({ ...PORT, id: '93c2c386' }), (error: Error) => error instanceof AgentJsonError && /<id>: "93c2c386"/.test(error.message));
  assert.throws(() => readAgentPort({ ...PORT, 'mac-address': '00:00:00:00:00:00' }), /Invalid MAC/);
  assert.throws(() => readAgentPort({ ...PORT, 'system-name': 'a/b' }), /<system-name>: "a\/b"/);
  assert.throws(() => readAgentPort({ ...PORT, type: 1.5 }), /Invalid or missing field for <type>/);
  assert.throws(() => readAgentPorts('"text"'), /Unexpected Json string ==> "text"/);
  assert.throws(() => readVmVnPort('{"vm-uuid": "x"}'), /Invalid value for <vm-uuid>: "x"/);
});

test('documents are written as rapidjson PrettyWriter writes them', () => {
  assert.equal(prettyJson({}), '{}');
  assert.equal(prettyJson({ a: [], b: [1, 'x'], c: { d: true } }), '{\n    "a": [],\n    "b": [\n        1,\n        "x"\n    ],\n    "c": {\n        "d": true\n    }\n}');
  // rapidjson escapes: short forms, other control characters upper-case \u00XX, '/' and non-ASCII as they are.
  assert.equal(prettyJson('q"b\\s/\b\f\n\r\t\u0001\u001fé'), '"q\\"b\\\\s/\\b\\f\\n\\r\\t\\u0001\\u001Fé"');
  assert.equal(simpleTime(new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 67))), '2026-Jan-02 03:04:05.067000');
});

test('Snh_ItfReq is ItfResp in Sandesh XML: fields by identifier, links, escapes, more last', () => {
  const itf: SandeshInterface = {
    index: 3,
    name: 'tap1',
    uuid: '93c2c386-6e79-485e-bfa4-b9daa713133b',
    vrfName: 'vn1',
    active: true,
    label: 17,
    vnName: "a&b<'c'>",
    vmUuid: '69ce06bd-6d1e-43d0-8e48-a30043a49ed8',
    vmName: 'vm1',
    ip: '11.0.0.3',
    mac: '02:93:c2:c3:86:6e',
    vmProjectUuid: '',
    txVlanId: -1,
    rxVlanId: -1,
  };
  const xml = itfResponse([itf]);
  assert.ok(
    xml.startsWith(
      '<?xml-stylesheet type="text/xsl" href="/universal_parse.xsl"?><ItfResp type="sandesh"><itf_list type="list" identifier="1"><list type="struct" size="1"><ItfSandeshData>' +
        '<index type="i32" identifier="1">3</index><name type="string" identifier="2">tap1</name><uuid type="string" identifier="3">93c2c386-6e79-485e-bfa4-b9daa713133b</uuid>' +
        '<vrf_name type="string" identifier="4" link="VrfListReq">vn1</vrf_name><active type="string" identifier="5">Active</active>',
    ),
  );
  assert.ok(xml.includes('<vn_name type="string" identifier="10" link="VnListReq">a&amp;b&lt;&apos;c&apos;&gt;</vn_name>'));
  assert.ok(xml.includes('<vm_name type="string" identifier="12">vm1</vm_name><ip_addr type="string" identifier="13">11.0.0.3</ip_addr>'));
  assert.ok(xml.includes('<fip_list type="list" identifier="16"><list type="struct" size="0"></list></fip_list><mdata_ip_addr type="string" identifier="17">0.0.0.0</mdata_ip_addr>'));
  assert.ok(xml.endsWith('</ItfSandeshData></list></itf_list><more type="bool" identifier="0">false</more></ItfResp>'));
  const identifiers = [...xml.matchAll(/<(\w+) type="[a-z0-9]+" identifier="(\d+)"/g)].filter(([, name]) => name !== 'itf_list' && name !== 'more').map(([, , id]) => Number(id));
  assert.deepEqual(identifiers, [...identifiers].sort((a, b) => a - b), 'fields in identifier order');
  assert.equal(itfResponse([]), '<?xml-stylesheet type="text/xsl" href="/universal_parse.xsl"?><ItfResp type="sandesh"><itf_list type="list" identifier="1"><list type="struct" size="0"></list></itf_list><more type="bool" identifier="0">false</more></ItfResp>');
});
