/**
 * The port API of a real `vrouter run` in a network namespace, driven by the
 * real clients' bytes over real HTTP (test/vectors/port-ipc/README.md says
 * where each vector comes from): tf-controller's own port files, the real
 * vrouter-port-control script (run from the tf-controller mirror when it is
 * on this machine, its recorded body replayed always), the opencontrail
 * kubelet plugin's body and its Snh_ItfReq read, the Contrail CNI's
 * vm-cfg / vm calls with its Go-encoded bodies. Answers are checked as each
 * client reads them (status, the agent's status line and content type,
 * bodies byte for byte where the agent's are fixed), ports come up on their
 * veth when it appears and carry traffic, and a restarted daemon restores
 * them from its ports directory.
 *
 *   node0 (vrouter run, 127.0.0.1:9091, introspect 127.0.0.1:8085)
 *     vhA-<p> --veth-- eth0 in <p>-pod-a 10.1.1.3     vhB-<p> --veth-- eth0 in <p>-pod-b 10.1.1.4
 *     tap7c2e4a6b-91 --veth-- eth0 in <p>-pod-web 10.1.1.9 (the CNI flow)
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { ChildProcess, execFile, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { Topology, requireCommands } from './support/netns';
import { VrouterCluster } from './support/vrouter-cluster';
import { defaultPortsDir } from '../src/daemon/daemon';
import { RawAnswer, assertAgentAnswer, rawRequest } from './support/port-ipc';

if (process.getuid?.() !== 0) throw new Error('the e2e tests need root (network namespaces, raw sockets): run them as root, as .ci/run does');
requireCommands({ ip: 'iproute2', ping: 'iputils-ping', python3: 'python3' });

const VECTORS = path.resolve(__dirname, '..', '..', 'test', 'vectors', 'port-ipc');
const vector = (name: string) => fs.readFileSync(path.join(VECTORS, name));
const MIRROR = '/work/.mirror/tungstenfabric+tf-controller/repo';
/** Debian's python3 with python3-requests (scripts/setup.sh): what vrouter-port-control imports. */
const PYTHON = '/usr/bin/python3';
const BIN = path.resolve(__dirname, '..', '..', 'bin', 'vrouter.js');

const VN = { name: 'vn1', subnet: '10.1.1.0/24', gateway: '10.1.1.1' };
const tag = String(process.pid % 100000);
const A = { id: 'aaaaaaaa-0000-4000-8000-000000000003', vm: 'a1a1a1a1-0000-4000-8000-000000000003', ip: '10.1.1.3', mac: '02:00:0a:01:01:03', host: `vhA${tag}` };
const B = { id: 'bbbbbbbb-0000-4000-8000-000000000004', vm: 'b1b1b1b1-0000-4000-8000-000000000004', ip: '10.1.1.4', mac: '02:00:0a:01:01:04', host: `vhB${tag}` };
const VN_ID = '56297dc0-5553-4e6a-b87f-8423afc21e9d';

let topology: Topology;
let cluster: VrouterCluster;
let ns: string;
let portsDir: string;
/** The daemon this test starts again after the cluster's is stopped. */
let restarted: ChildProcess | undefined;
let podA: string;

const raw = (method: string, target: string, body?: Buffer | string): Promise<RawAnswer> => rawRequest(topology, ns, method, target, body);

async function waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms\n${cluster.logs()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The agent's port body, as vrouter-port-control builds it, with vrouter-ts's `vn` (no control node here). */
function agentPort(pod: { id: string; vm: string; ip: string; mac: string; host: string }, name: string, extra: Record<string, unknown> = {}) {
  return {
    id: pod.id,
    'instance-id': pod.vm,
    'ip-address': pod.ip,
    'ip6-address': 'None',
    'vn-id': VN_ID,
    'display-name': name,
    'vm-project-id': '',
    'mac-address': pod.mac,
    'system-name': pod.host,
    type: 0,
    'rx-vlan-id': -1,
    'tx-vlan-id': -1,
    'vhostuser-mode': 0,
    vn: VN.name,
    ...extra,
  };
}

/** A pod namespace whose eth0 is the peer of `host` in the node namespace, addressed as a CNI would. */
async function addVethPod(role: string, host: string, ip: string, mac: string): Promise<string> {
  const podNs = await topology.addNamespace(role);
  await topology.exec(ns, ['ip', 'link', 'add', host, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', podNs]);
  await topology.exec(ns, ['ip', 'link', 'set', host, 'up']);
  await topology.exec(podNs, ['ip', 'link', 'set', 'eth0', 'address', mac, 'mtu', '1468', 'up']);
  await topology.exec(podNs, ['ip', 'address', 'add', `${ip}/32`, 'dev', 'eth0']);
  await topology.exec(podNs, ['ip', 'route', 'add', VN.gateway, 'dev', 'eth0', 'scope', 'link']);
  await topology.exec(podNs, ['ip', 'route', 'add', 'default', 'via', VN.gateway, 'dev', 'eth0']);
  return podNs;
}

/** ItfSandeshData entries as the kubelet plugin reads them (ElementTree: iter, find, text), from Python in the node namespace. */
async function kubeletView(): Promise<Array<Record<string, string | null>>> {
  const script = [
    'import json, urllib.request, xml.etree.ElementTree as ElementTree',
    "root = ElementTree.fromstring(urllib.request.urlopen('http://localhost:8085/Snh_ItfReq').read().decode())",
    "print(json.dumps([{k: (i.find(k).text if i.find(k) is not None else None) for k in ('vm_name', 'uuid', 'ip_addr', 'mdata_ip_addr', 'active')} for i in root.iter('ItfSandeshData')]))",
  ].join('\n');
  return JSON.parse(await topology.exec(ns, [PYTHON, '-c', script])) as Array<Record<string, string | null>>;
}

before(async () => {
  topology = new Topology();
  cluster = await VrouterCluster.start(topology, { nodes: 1, vns: [VN] });
  ns = cluster.nodes[0].ns;
  portsDir = defaultPortsDir(cluster.nodes[0].stateFile);
});

after(async () => {
  if (restarted && restarted.exitCode === null) {
    restarted.kill('SIGTERM');
    await once(restarted, 'exit');
  }
  await cluster?.stop().catch((error: Error) => process.stderr.write(`${error.message}\n`));
  await topology?.destroy();
});

test("tf-controller's port files (test/data) are accepted, answered 200 {} and kept in the agent's file form", async () => {
  for (const [name, uuid] of [
    ['test-data-93c2c386-6e79-485e-bfa4-b9daa713133b', '93c2c386-6e79-485e-bfa4-b9daa713133b'],
    ['test-data-c8c0a3dd-ae36-4d0d-8952-72623f3f1a83', 'c8c0a3dd-ae36-4d0d-8952-72623f3f1a83'],
  ]) {
    assertAgentAnswer(await raw('POST', '/port', vector(name)), 200, '{}');
    const file = fs.readFileSync(path.join(portsDir, uuid), 'utf8');
    const sent = JSON.parse(vector(name).toString()) as Record<string, unknown>;
    // MakeVmiUuidJson: PrettyWriter, its key order, "None" read as no address, author and time of the writer.
    assert.match(file, /^\{\n {4}"id": "[0-9a-f-]{36}",\n {4}"instance-id": /);
    assert.equal(
      file.replace(/"time": "[^"]*"/, '"time": "T"'),
      [
        '{',
        `    "id": "${uuid}",`,
        `    "instance-id": "${String(sent['instance-id'])}",`,
        `    "display-name": "${String(sent['display-name'])}",`,
        `    "ip-address": "${String(sent['ip-address'])}",`,
        '    "ip6-address": "::",',
        `    "vn-id": "${String(sent['vn-id'])}",`,
        `    "vm-project-id": "${String(sent['vm-project-id'])}",`,
        `    "mac-address": "${String(sent['mac-address'])}",`,
        `    "system-name": "${String(sent['system-name'])}",`,
        '    "type": 0,',
        '    "rx-vlan-id": -1,',
        '    "tx-vlan-id": -1,',
        '    "vhostuser-mode": 0,',
        '    "author": "vrouter run",',
        '    "time": "T"',
        '}',
      ].join('\n'),
    );
    assert.match(file, /"time": "\d{4}-[A-Z][a-z]{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}"/);
    // No interface and no configuration yet: the agent has no VMI to describe.
    assertAgentAnswer(await raw('GET', `/port/${uuid}`), 404, '{"error":"{ Not Found }"}');
  }
  // Posting the same port again (a client's retry) is fine.
  assertAgentAnswer(await raw('POST', '/port', vector('test-data-93c2c386-6e79-485e-bfa4-b9daa713133b')), 200, '{}');
  const listed = await kubeletView();
  assert.deepEqual(
    listed.filter((itf) => itf.vm_name === 'vm1' || itf.vm_name === 'vm2').map((itf) => [itf.vm_name, itf.uuid, itf.ip_addr, itf.active]),
    [
      ['vm1', '93c2c386-6e79-485e-bfa4-b9daa713133b', '11.0.0.3', 'Inactive'],
      ['vm2', 'c8c0a3dd-ae36-4d0d-8952-72623f3f1a83', '11.0.0.4', 'Inactive'],
    ],
  );
});

test('bad bodies get the agent\'s error, 500 {"error":"{ ... }"}, naming field and value; an array is all or none', async () => {
  const good = agentPort({ ...A, id: 'cccccccc-0000-4000-8000-00000000000c' }, 'bad');
  const cases: Array<[unknown, string]> = [
    [{ ...good, 'instance-id': undefined }, '{ Invalid or missing data for <instance-id> }'],
    [{ ...good, 'instance-id': null }, '{ Invalid or missing data for <instance-id> }'],
    [{ ...good, 'rx-vlan-id': null }, '{ Invalid or missing field for <rx-vlan-id> }'],
    [{ ...good, 'display-name': 7 }, '{ Invalid or missing field for <display-name> }'],
    [{ ...good, 'ip-address': '10.1.1' }, '{ Invalid value for <ip-address>: "10.1.1" (an IPv4 address, "" or "None") }'],
    [{ ...good, 'vn-id': '' }, '{ Invalid VN uuid }'],
    [{ ...good, 'mac-address': '02:00:0a:01:01' }, '{ Invalid MAC, Use xx:xx:xx:xx:xx:xx format (value: "02:00:0a:01:01") }'],
    [{ ...good, type: 5 }, '{ Invalid value for <type>: 5 (0 VM port, 1 namespace port, 2 remote port) }'],
    [{ ...good, 'tx-vlan-id': 100 }, '{ Invalid value for <tx-vlan-id>: 100 (VLAN-tagged ports are not supported by vrouter-ts: -1, 0 or 65535) }'],
    [{ ...good, label: 3 }, '{ Invalid value for <label>: 3 (an integer 16..65535) }'],
    ['[1]', '{ Json Array has invalid element ==> [1] }'],
  ];
  for (const [body, error] of cases) {
    const answer = await raw('POST', '/port', typeof body === 'string' ? body : JSON.stringify(body));
    assertAgentAnswer(answer, 500, JSON.stringify({ error }));
  }
  assertAgentAnswer(await raw('POST', '/port', '{"id": '), 500, JSON.stringify({ error: '{ Invalid Json string ==> {"id":  }' }));
  // All or none: the good first element is not kept either.
  const array = [good, { ...good, id: 'dddddddd-0000-4000-8000-00000000000d', 'mac-address': 'zz' }];
  assertAgentAnswer(await raw('POST', '/port', JSON.stringify(array)), 500);
  assert.equal(fs.existsSync(path.join(portsDir, good.id)), false, 'no file for the array');
  // Unknown keys are ignored (the real clients send "author", "time", "hostname"...).
  assertAgentAnswer(await raw('POST', '/port', JSON.stringify([{ ...good, author: 'x', 'no-such-key': [1] }])), 200, '{}');
  assertAgentAnswer(await raw('DELETE', `/port/${good.id}`), 200, '{}');
  assert.equal(fs.existsSync(path.join(portsDir, good.id)), false);
});

test('routes the agent does not serve, unknown ports, and link state are answered as the agent does', async () => {
  assertAgentAnswer(await raw('GET', '/port'), 404, '{"error":"Unknown Request"}');
  assertAgentAnswer(await raw('PATCH', '/nothing'), 404, '{"error":"Unknown Request"}');
  assertAgentAnswer(await raw('POST', '/gateway', '[]'), 500, '{"error":"{ Operation Not Supported }"}');
  const unknown = 'eeeeeeee-0000-4000-8000-00000000000e';
  assertAgentAnswer(await raw('DELETE', `/port/${unknown}`), 200, '{}');
  assertAgentAnswer(await raw('PUT', `/enable-port/${unknown}`), 500, `{"error":"{Port Not found ${unknown}}"}`);
  assertAgentAnswer(await raw('POST', '/syncports'), 200, '{}');
  assertAgentAnswer(await raw('GET', `/vm/${unknown}`), 404, '{"error":"{ Not Found }"}');
  assertAgentAnswer(await raw('GET', '/vm-cfg/nobody'), 404, '{"error":"{ Not Found }"}');
  assertAgentAnswer(await raw('DELETE', `/vm/${unknown}`, '{}'), 200, '{}');
});

test('a port posted before its veth exists comes up when the veth appears, and carries traffic', async () => {
  assertAgentAnswer(await raw('POST', '/port', JSON.stringify(agentPort(A, 'pod-a'))), 200, '{}');
  assertAgentAnswer(await raw('GET', `/port/${A.id}`), 404, '{"error":"{ Not Found }"}');
  podA = await addVethPod('pod-a', A.host, A.ip, A.mac);
  const podB = await addVethPod('pod-b', B.host, B.ip, B.mac);
  assertAgentAnswer(await raw('POST', '/port', JSON.stringify(agentPort(B, 'pod-b'))), 200, '{}');
  const info = await waitFor('port A active', async () => {
    const answer = await raw('GET', `/port/${A.id}`);
    return answer.statusLine === 'HTTP/1.1 200 OK' ? answer : undefined;
  });
  assertAgentAnswer(info, 200);
  // MakeJsonFromVmi, PrettyWriter, IPv4 IPAM of the VN.
  assert.equal(
    info.body.replace(/"time": "[^"]*"/, '"time": "T"'),
    [
      '{',
      `    "id": "${A.id}",`,
      `    "instance-id": "${A.vm}",`,
      `    "vn-id": "${VN_ID}",`,
      `    "vm-project-id": "00000000-0000-0000-0000-000000000000",`,
      `    "mac-address": "${A.mac}",`,
      `    "system-name": "${A.host}",`,
      '    "rx-vlan-id": -1,',
      '    "tx-vlan-id": -1,',
      '    "vhostuser-mode": 0,',
      `    "ip-address": "${A.ip}",`,
      '    "plen": 24,',
      `    "dns-server": "${VN.gateway}",`,
      `    "gateway": "${VN.gateway}",`,
      '    "author": "vrouter run",',
      '    "time": "T"',
      '}',
    ].join('\n'),
  );
  await waitFor('port B active', async () => ((await raw('GET', `/port/${B.id}`)).statusLine === 'HTTP/1.1 200 OK' ? true : undefined));
  await topology.exec(podA, ['ping', '-c', '3', '-i', '0.2', '-W', '2', B.ip]);
  await topology.exec(podB, ['ping', '-c', '1', '-W', '2', A.ip]);
  const view = await kubeletView();
  assert.deepEqual(
    view.find((itf) => itf.uuid === A.id),
    { vm_name: 'pod-a', uuid: A.id, ip_addr: A.ip, mdata_ip_addr: '0.0.0.0', active: 'Active' },
  );
  // `vrouter port list` shows the agent's ports too, with their state.
  const listed = JSON.parse(await cluster.vrouter(0, ['port', 'list'])) as Array<{ id: string; state: string; vif?: number; tapName: string }>;
  assert.deepEqual(
    listed.filter((port) => port.id === A.id || port.id === '93c2c386-6e79-485e-bfa4-b9daa713133b').map(({ id, state, tapName }) => ({ id, state, tapName })),
    [
      { id: '93c2c386-6e79-485e-bfa4-b9daa713133b', state: 'waiting-for-interface', tapName: 'tap93c2c386-6e' },
      { id: A.id, state: 'active', tapName: A.host },
    ],
  );
  // The introspect JSON API keeps its shape and shows the agent's ports behind their vifs.
  const ports = await cluster.introspect<Array<{ id: string; vif: number; name: string; vn: string; ip: string }>>(0, '/api/ports');
  assert.deepEqual(
    ports.filter((port) => port.id === A.id).map(({ name, vn, ip }) => ({ name, vn, ip })),
    [{ name: 'pod-a', vn: VN.name, ip: A.ip }],
  );
  const vifs = await cluster.introspect<Array<{ name: string; pod: { id: string } | null }>>(0, '/api/vifs');
  assert.equal(vifs.find((vif) => vif.name === A.host)?.pod?.id, A.id);
});

test('the real vrouter-port-control adds, enables, disables and deletes ports', async (t) => {
  // Its recorded add body, replayed byte for byte (test/vectors/port-ipc/vrouter-port-control-add.json).
  const recorded = vector('vrouter-port-control-add.json');
  const recordedId = (JSON.parse(recorded.toString()) as { id: string }).id;
  assertAgentAnswer(await raw('POST', '/port', recorded), 200, '{}');
  assert.ok(fs.existsSync(path.join(portsDir, recordedId)));
  assertAgentAnswer(await raw('DELETE', `/port/${recordedId}`), 200, '{}');
  if (!fs.existsSync(MIRROR)) return t.skip(`the tf-controller mirror (${MIRROR}) is not on this machine: only the recorded body was replayed`);
  const script = path.join(cluster.directory, 'vrouter-port-control');
  fs.writeFileSync(script, execFileSync('git', ['-C', MIRROR, 'show', '6a674397821187fedfffd9586942b906d3479dbc:src/vnsw/agent/port_ipc/vrouter-port-control']));
  const run = (args: string[]) =>
    new Promise<{ code: number; stdout: string }>((resolve) => {
      execFile('ip', ['netns', 'exec', ns, PYTHON, script, ...args, '--agent_port=9091', `--port_json_path=${portsDir}/`], (error, stdout, stderr) =>
        resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout: stdout + stderr }),
      );
    });
  const vm = { uuid: '3d5f7a9c-0e1f-4a2b-8c3d-4e5f6a7b8c9d', instance: '9f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f' };
  const add = await run([
    '--oper=add',
    `--uuid=${vm.uuid}`,
    `--instance_uuid=${vm.instance}`,
    `--vn_uuid=${VN_ID}`,
    '--vm_project_uuid=9970147c33b14bf789448968e708d430',
    '--ip_address=10.1.1.21',
    '--ipv6_address=None',
    '--vm_name=vm21',
    '--mac=02:3d:5f:7a:9c:0e',
    '--tap_name=tap3d5f7a9c-0e',
    '--rx_vlan_id=-1',
    '--tx_vlan_id=-1',
  ]);
  assert.equal(add.code, 0, add.stdout);
  assert.match(add.stdout, /Request : \{"id": "3d5f7a9c/);
  assert.match(fs.readFileSync(path.join(portsDir, vm.uuid), 'utf8'), /"vm-project-id": "9970147c-33b1-4bf7-8944-8968e708d430"/);
  // A VM port has no link state to set: the agent refuses, the script exits 1.
  const enable = await run(['--oper=enable', `--uuid=${vm.uuid}`]);
  assert.equal(enable.code, 1);
  assert.match(enable.stdout, new RegExp(`Request failed: \\{"error":"\\{Incorrect Port type for ${vm.uuid}\\}"\\}`));
  // An ESXi (remote) port: no interface, its link state persisted.
  const remote = 'a7b8c9d0-e1f2-4a3b-8c4d-5e6f7a8b9c0d';
  const addRemote = await run([
    '--oper=add',
    `--uuid=${remote}`,
    `--instance_uuid=${vm.instance}`,
    `--vn_uuid=${VN_ID}`,
    '--ip_address=10.1.1.22',
    '--ipv6_address=None',
    '--vm_name=vm22',
    '--mac=02:a7:b8:c9:d0:e1',
    '--tap_name=remote0',
    '--port_type=ESXiPort',
    '--rx_vlan_id=-1',
    '--tx_vlan_id=-1',
  ]);
  assert.equal(addRemote.code, 0, addRemote.stdout);
  assert.match(fs.readFileSync(path.join(portsDir, remote), 'utf8'), /"type": 2,[\s\S]*"link-state": 0,/);
  assert.equal((await run(['--oper=enable', `--uuid=${remote}`])).code, 0);
  assert.match(fs.readFileSync(path.join(portsDir, remote), 'utf8'), /"link-state": 1,/);
  assert.equal((await run(['--oper=disable', `--uuid=${remote}`])).code, 0);
  assert.match(fs.readFileSync(path.join(portsDir, remote), 'utf8'), /"link-state": 0,/);
  for (const uuid of [vm.uuid, remote]) {
    const removed = await run(['--oper=delete', `--uuid=${uuid}`]);
    assert.equal(removed.code, 0, removed.stdout);
    assert.equal(fs.existsSync(path.join(portsDir, uuid)), false);
  }
  assert.equal((await kubeletView()).some((itf) => itf.uuid === vm.uuid || itf.uuid === remote), false);
});

test("the opencontrail kubelet plugin's port add, Snh_ItfReq read and delete", async () => {
  const body = vector('kubelet-add-port.json');
  const sent = JSON.parse(body.toString()) as Record<string, string>;
  const answer = await raw('POST', '/port', body);
  // vrouter_api.py checks r.status_code == requests.codes.ok.
  assertAgentAnswer(answer, 200, '{}');
  // plugin.py's vrouter_interface_by_name(podName) and status(): uuid, then ip_addr.
  const found = (await kubeletView()).find((itf) => itf.vm_name === sent['display-name']);
  assert.ok(found, 'the plugin finds its pod by vm_name');
  assert.equal(found.uuid, sent.id);
  assert.equal(found.ip_addr, '0.0.0.0', 'no control node gave the pod an address');
  assert.equal(found.mdata_ip_addr, '0.0.0.0');
  assertAgentAnswer(await raw('DELETE', `/port/${found.uuid}`), 200, '{}');
  assert.equal((await kubeletView()).some((itf) => itf.uuid === sent.id), false);
});

test("the Contrail CNI's vm-cfg, vm add, vm poll and vm delete, parsed as vrouter.go parses them", async () => {
  const add = JSON.parse(vector('cni-add-vm.json').toString()) as Record<string, string>;
  const annotations = { cluster: 'k8s', kind: 'Pod', name: 'web', namespace: 'default', network: 'default', owner: 'k8s', project: 'k8s-default', index: '0/1', interface: 'eth0' };
  const web = { id: add['vmi-uuid'], vm: add['vm-uuid'], ip: '10.1.1.9', mac: '02:7c:2e:4a:6b:91', host: add['host-ifname'] };
  // What kube-manager would have configured (VMI, its annotations), here through vrouter-ts's fields.
  assertAgentAnswer(await raw('POST', '/port', JSON.stringify(agentPort(web, add['vm-name'], { annotations }))), 200, '{}');
  const config = await raw('GET', `/vm-cfg/${add['vm-name']}`);
  assertAgentAnswer(config, 200);
  // vrouter.go Get: json.Unmarshal into []Result, then each "{k:v}" annotation split on ':'.
  const results = JSON.parse(config.body) as Array<Record<string, unknown>>;
  assert.equal(results.length, 1);
  const result = results[0];
  for (const key of ['id', 'vm-uuid', 'vn-id', 'vn-name', 'mac-address']) assert.equal(typeof result[key], 'string', key);
  assert.equal(typeof result['vlan-id'], 'number');
  assert.equal(typeof result['sub-interface'], 'boolean');
  assert.deepEqual([result.id, result['vm-uuid'], result['mac-address'], result['vn-name']], [web.id, web.vm, web.mac, VN.name]);
  const parsed = Object.fromEntries((result.annotations as string[]).map((text) => text.replace(/^\{|\}$/g, '').split(':')));
  assert.deepEqual(parsed, annotations);
  assert.equal(Number(String(parsed.index).split('/')[1]), results.length, 'PollVmCfg: all interfaces there');
  // The CNI makes the veth, then POSTs /vm (MarshalIndent with tabs), then polls /vm/<vm>/<vmi>.
  const podWeb = await addVethPod('pod-web', web.host, web.ip, web.mac);
  assertAgentAnswer(await raw('POST', '/vm', vector('cni-add-vm.json')), 200, '{}');
  assert.ok(fs.existsSync(path.join(portsDir, 'vm', add['vm-name'], web.id)), 'ports/vm/<vm-name>/<vmi> written');
  const poll = await waitFor('vm interface configured', async () => {
    const answer = await raw('GET', `/vm/${web.vm}/${web.id}`);
    return answer.statusLine === 'HTTP/1.1 200 OK' ? answer : undefined;
  });
  const [vmi] = JSON.parse(poll.body) as Array<Record<string, unknown>>;
  // The fields MakeCniResult uses: ip-address, plen, gateway, dns-server, mac-address.
  assert.deepEqual([vmi['ip-address'], vmi.plen, vmi.gateway, vmi['dns-server'], vmi['mac-address'], vmi.id], [web.ip, 24, VN.gateway, VN.gateway, web.mac, web.id]);
  assert.equal(JSON.parse((await raw('GET', `/vm/${web.vm}`)).body)[0].id, web.id);
  await topology.exec(podWeb, ['ping', '-c', '1', '-W', '2', A.ip]);
  // CmdDel deletes the veth, then tells the agent. Here the agent is told first: an interface deleted
  // under the libpcap attachment aborts the daemon today (the cap binding asserts on the poll error,
  // src/binding.cc:190), which the AF_PACKET / AF_XDP attachment is to fix.
  assertAgentAnswer(await raw('DELETE', `/vm/${web.vm}`, vector('cni-delete-vm.json')), 200, '{}');
  await topology.exec(ns, ['ip', 'link', 'del', web.host]);
  assert.equal(fs.existsSync(path.join(portsDir, 'vm', add['vm-name'])), false);
  assertAgentAnswer(await raw('GET', `/vm/${web.vm}/${web.id}`), 404, '{"error":"{ Not Found }"}');
});

test('a restarted daemon restores its ports from the ports directory: they come up again and carry traffic; a sync drops the ports not posted again', async () => {
  await cluster.stopNode(0);
  const node = cluster.nodes[0];
  const log = fs.openSync(node.logFile, 'a');
  restarted = topology.spawn(ns, [process.execPath, BIN, 'run', '--state', node.stateFile, '--api', node.api, '--stale-port-timeout', '2'], { stdio: ['ignore', log, log] });
  fs.closeSync(log);
  await waitFor('restarted daemon answering', async () => {
    try {
      return (await raw('GET', '/ports')).statusLine.startsWith('HTTP/1.1 200') ? true : undefined;
    } catch {
      return undefined;
    }
  }, 20_000);
  for (const id of [A.id, B.id]) {
    await waitFor(`port ${id} active again`, async () => ((await raw('GET', `/port/${id}`)).statusLine === 'HTTP/1.1 200 OK' ? true : undefined));
  }
  const view = await kubeletView();
  for (const [name, uuid] of [
    ['vm1', '93c2c386-6e79-485e-bfa4-b9daa713133b'],
    ['vm2', 'c8c0a3dd-ae36-4d0d-8952-72623f3f1a83'],
    ['pod-a', A.id],
    ['pod-b', B.id],
    ['k8s__default__web', '7c2e4a6b-913d-4f5a-8b7c-9d0e1f2a3b4c'],
  ]) {
    assert.ok(view.some((itf) => itf.vm_name === name && itf.uuid === uuid), `${name} restored: ${JSON.stringify(view)}`);
  }
  // A freshly opened libpcap attachment loses about its first second of frames (the cap binding; the
  // AF_PACKET / AF_XDP attachment replaces it): wait for a first reply, then every one must come.
  await waitFor('a first reply through the restored ports', async () =>
    (await topology.exec(podA, ['ping', '-c', '1', '-W', '1', B.ip]).then(() => true, () => undefined)),
  );
  const ping = await topology.exec(podA, ['ping', '-c', '3', '-i', '0.2', '-W', '2', B.ip]);
  assert.match(ping, /3 packets transmitted, 3 received/);
  // POST /syncports starts a new version: what is not posted again within the stale timeout goes (the agent's stale cleaner).
  assertAgentAnswer(await raw('POST', '/syncports'), 200, '{}');
  assertAgentAnswer(await raw('POST', '/port', JSON.stringify(agentPort(A, 'pod-a'))), 200, '{}');
  await waitFor('stale ports deleted', async () => (fs.existsSync(path.join(portsDir, B.id)) ? undefined : true));
  assertAgentAnswer(await raw('GET', `/port/${B.id}`), 404, '{"error":"{ Not Found }"}');
  assert.equal(fs.existsSync(path.join(portsDir, '93c2c386-6e79-485e-bfa4-b9daa713133b')), false);
  assertAgentAnswer(await raw('GET', `/port/${A.id}`), 200);
  restarted.kill('SIGTERM');
  const [code] = (await once(restarted, 'exit')) as [number | null];
  assert.equal(code, 0);
});
