/**
 * CNI conformance of `vrouter-cni`: every command of containernetworking/cni
 * SPEC.md 1.1.0 and 1.0.0 through the plugin's real binary, run the way a
 * runtime runs it, in a node namespace whose loopback serves the agent's port
 * API. The agent there is a STAND-IN (test/support/contrail-agent-standin.ts)
 * that replays the real OpenContrail agent's answers as its sources define
 * them, until vrouter-ts's own agent serves these endpoints.
 *
 * The runtimes on this machine (containerd 1.6, libcni 1.1.2) never call
 * STATUS or GC: this test calls them itself, with the input SPEC.md 1.1.0
 * Section 2 defines (STATUS: the configuration; GC: the configuration plus
 * the still-valid attachments).
 *
 *   <p>-cninode: the node; runs the plugin and the stand-in, holds the host ends
 *     fabric0 (MTU 9000) -- <p>-underlay
 *   <p>-pod-a, <p>-pod-b: the pods' namespaces (CNI_NETNS)
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Topology, requireCommands } from './support/netns';
import { AgentStandinProcess, CniEnvironment, runCni, standinPod } from './support/cni-harness';
import { hostInterfaceName } from '../src/cni/links';
import { TUNNEL_OVERHEAD } from '../src/cni/plugin';

if (process.getuid?.() !== 0) throw new Error('the CNI conformance test needs root (network namespaces, veth pairs): run it as root, as .ci/run does');
requireCommands({ ip: 'iproute2', nsenter: 'util-linux' });

const UNDERLAY_MTU = 9000;
let topology: Topology;
let agent: AgentStandinProcess;
let nodeNs: string;
const podNs: Record<'a' | 'b', string> = { a: '', b: '' };
let stateDir: string;

const pods = {
  a: standinPod({ namespace: 'default', name: 'web-a', uid: '6f1c2a3b-0d4e-4f5a-8b6c-7d8e9f0a1b2c', vmiUuid: 'a1b2c3d4-e5f6-4789-8abc-def012345678', ip: '10.32.0.5', mac: '02:a1:b2:c3:d4:e5' }),
  b: standinPod({ namespace: 'shop', name: 'cart-b', uid: '0e9d8c7b-6a5f-4e3d-9c2b-1a0f9e8d7c6b', vmiUuid: 'b2c3d4e5-f6a7-4890-9bcd-ef0123456789', ip: '10.32.0.9', mac: '02:b2:c3:d4:e5:f6' }),
};

function config(version: string, extra: Record<string, unknown> = {}, settings: Record<string, unknown> = {}): string {
  return JSON.stringify({
    cniVersion: version,
    name: 'vrouter-pods',
    type: 'vrouter-cni',
    contrail: { 'vrouter-port': agent.port, 'poll-timeout': 0.05, 'poll-retries': 2, 'underlay-interface': 'fabric0', 'state-dir': stateDir, ...settings },
    ...extra,
  });
}

function podArgs(pod: (typeof pods)['a']): string {
  // In containerd's order, which is not alphabetical: the plugin parses by key.
  const [namespace, name] = pod.vmName.split('__').slice(1);
  return `IgnoreUnknown=1;K8S_POD_NAMESPACE=${namespace};K8S_POD_NAME=${name};K8S_POD_INFRA_CONTAINER_ID=sandbox;K8S_POD_UID=${pod.vmUuid}`;
}

function env(command: string, containerId: string, which: 'a' | 'b', options: { netns?: boolean } = {}): CniEnvironment {
  return {
    CNI_COMMAND: command,
    CNI_CONTAINERID: containerId,
    CNI_NETNS: options.netns === false ? undefined : `/run/netns/${podNs[which]}`,
    CNI_IFNAME: 'eth0',
    CNI_ARGS: podArgs(pods[which]),
  };
}

async function ipJson(ns: string, args: string[]): Promise<Array<Record<string, unknown>>> {
  return JSON.parse(await topology.exec(ns, ['ip', '-j', ...args])) as Array<Record<string, unknown>>;
}

async function links(ns: string): Promise<string[]> {
  return (await ipJson(ns, ['link', 'show'])).map((link) => link.ifname as string);
}

/** What the agent's client (the plugin) sent, without the free-form `time`. */
function withoutTime(body: string): Record<string, unknown> {
  const { time, ...rest } = JSON.parse(body) as Record<string, unknown>;
  assert.equal(typeof time, 'string');
  return rest;
}

before(async () => {
  topology = new Topology();
  nodeNs = await topology.addNamespace('cninode');
  const underlay = await topology.addNamespace('underlay');
  await topology.addVethPair(nodeNs, 'fabric0', underlay, 'fabric0', { mtu: UNDERLAY_MTU });
  podNs.a = await topology.addNamespace('pod-a');
  podNs.b = await topology.addNamespace('pod-b');
  stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vrouter-cni-state-'));
  agent = await AgentStandinProcess.start(topology, nodeNs);
});

after(async () => {
  await agent?.stop();
  await topology?.destroy();
  if (stateDir) fs.rmSync(stateDir, { recursive: true, force: true });
});

for (const version of ['1.0.0', '1.1.0']) {
  describe(`CNI ${version}`, () => {
    const containerA = `c${version.replace(/\./g, '')}aaaa0123456789`;
    const containerB = `c${version.replace(/\./g, '')}bbbb0123456789`;
    let addResult: Record<string, unknown>;

    test('VERSION answers with the version asked and both versions supported', async () => {
      const run = await runCni(nodeNs, { CNI_COMMAND: 'VERSION' }, JSON.stringify({ cniVersion: version }));
      assert.equal(run.exitCode, 0, run.stdout + run.stderr);
      assert.deepEqual(run.json, { cniVersion: version, supportedVersions: ['1.0.0', '1.1.0'] });
    });

    test('bad input gets the SPEC.md error codes', async () => {
      const cases: Array<[CniEnvironment, string, number, RegExp]> = [
        [{ CNI_COMMAND: 'ADD', CNI_IFNAME: 'eth0' }, config(version), 4, /CNI_CONTAINERID, CNI_NETNS/],
        [{ ...env('ADD', containerA, 'a'), CNI_CONTAINERID: '-bad' }, config(version), 4, /CNI_CONTAINERID/],
        [env('ADD', containerA, 'a'), config('0.9.9'), 1, /cniVersion "0.9.9"/],
        [env('ADD', containerA, 'a'), '{not json', 6, /not JSON/],
        [env('ADD', containerA, 'a'), config(version, {}, { 'vif-type': 'macvlan' }), 2, /contrail.vif-type = "macvlan"/],
        [env('ADD', containerA, 'a'), config(version, {}, { mtu: 100 }), 7, /contrail.mtu 100/],
        [{ ...env('ADD', containerA, 'a'), CNI_ARGS: 'IgnoreUnknown=1' }, config(version), 4, /K8S_POD_NAMESPACE and K8S_POD_NAME/],
      ];
      for (const [environment, stdin, code, message] of cases) {
        const run = await runCni(nodeNs, environment, stdin);
        assert.equal(run.exitCode, 1, run.stdout);
        assert.equal(run.json?.code, code, run.stdout);
        assert.match(String(run.json?.msg), message);
        assert.equal(typeof run.json?.cniVersion, 'string');
      }
      assert.deepEqual(await agent.requests(), [], 'nothing reached the agent');
    });

    test('STATUS: ready while the agent answers (1.1.0); 1.0.0 has no STATUS', async () => {
      const run = await runCni(nodeNs, { CNI_COMMAND: 'STATUS' }, config(version));
      if (version === '1.1.0') {
        assert.equal(run.exitCode, 0, run.stdout + run.stderr);
        assert.equal(run.stdout, '');
      } else {
        assert.equal(run.exitCode, 1);
        assert.deepEqual(run.json, { cniVersion: version, code: 1, msg: 'config version does not allow STATUS', details: 'STATUS and GC are defined from CNI 1.1.0' });
      }
      await agent.requests();
    });

    test('ADD while the agent has no configuration for the pod: 11 (try again later), nothing left behind', async () => {
      await agent.unconfigure(pods.a.vmName);
      const run = await runCni(nodeNs, env('ADD', containerA, 'a'), config(version));
      assert.equal(run.exitCode, 1);
      assert.equal(run.json?.code, 11, run.stdout);
      assert.match(String(run.json?.msg), /no configuration for pod default\/web-a/);
      const requests = await agent.requests();
      assert.deepEqual(
        requests.map((r) => [r.method, r.path, r.status, r.response]),
        [
          ['GET', '/vm-cfg/k8s__default__web-a', 404, '{"error":"{ Not Found }"}'],
          ['GET', '/vm-cfg/k8s__default__web-a', 404, '{"error":"{ Not Found }"}'],
        ],
        'polled poll-retries times',
      );
      assert.deepEqual(await links(podNs.a), ['lo']);
      assert.deepEqual(fs.readdirSync(stateDir), []);
    });

    test('ADD: veth with eth0 in CNI_NETNS, the address, route and MTU the agent gave, the result SPEC.md defines', async () => {
      await agent.configure(pods.a);
      const run = await runCni(nodeNs, env('ADD', containerA, 'a'), config(version));
      assert.equal(run.exitCode, 0, run.stdout + run.stderr);
      const hostIfname = hostInterfaceName('eth0', pods.a.vmUuid);
      assert.equal(hostIfname, 'tapeth0-6f1c2a', 'the Contrail CNI name: tap + (ifname-uuid)[:11]');
      const mtu = UNDERLAY_MTU - TUNNEL_OVERHEAD;
      assert.equal(mtu, 8968);
      const [host] = await ipJson(nodeNs, ['link', 'show', 'dev', hostIfname]);
      const expected = {
        cniVersion: version,
        interfaces: [
          { name: hostIfname, mac: host.address, ...(version === '1.1.0' ? { mtu } : {}) },
          { name: 'eth0', mac: pods.a.mac, ...(version === '1.1.0' ? { mtu } : {}), sandbox: `/run/netns/${podNs.a}` },
        ],
        ips: [{ address: '10.32.0.5/12', gateway: '10.47.255.254', interface: 1 }],
        routes: [{ dst: '0.0.0.0/0', gw: '10.47.255.254' }],
        dns: { nameservers: ['10.47.255.253'] },
      };
      assert.deepEqual(run.json, expected);
      addResult = run.json!;

      // The agent saw the Contrail CNI's three requests, in order, with its bodies.
      const requests = await agent.requests();
      assert.deepEqual(requests.map((r) => [r.method, r.path, r.status]), [
        ['GET', '/vm-cfg/k8s__default__web-a', 200],
        ['POST', '/vm', 200],
        ['GET', `/vm/${pods.a.vmUuid}`, 200],
      ]);
      assert.deepEqual(withoutTime(requests[1].body), {
        'vm-id': containerA,
        'vm-uuid': pods.a.vmUuid,
        'vm-name': 'k8s__default__web-a',
        'host-ifname': hostIfname,
        'vm-ifname': 'eth0',
        'vm-namespace': `/run/netns/${podNs.a}`,
        'vn-uuid': pods.a.vnUuid,
        'vmi-uuid': pods.a.vmiUuid,
      });

      // The host end: in the node's namespace, up, the MTU; its peer is eth0 of the pod.
      assert.equal(host.mtu, mtu);
      assert.ok((host.flags as string[]).includes('UP'));
      const [eth0] = await ipJson(podNs.a, ['address', 'show', 'dev', 'eth0']);
      assert.equal(eth0.address, pods.a.mac);
      assert.equal(eth0.mtu, mtu);
      assert.ok((eth0.flags as string[]).includes('UP'));
      assert.equal(Number(eth0.link_index ?? (await topology.exec(podNs.a, ['cat', '/sys/class/net/eth0/iflink']))), host.ifindex, 'eth0 is the peer of the host end');
      const addresses = (eth0.addr_info as Array<{ family: string; local: string; prefixlen: number }>).filter((a) => a.family === 'inet');
      assert.deepEqual(addresses.map((a) => `${a.local}/${a.prefixlen}`), ['10.32.0.5/12']);
      const routes = await ipJson(podNs.a, ['-4', 'route', 'show', 'default']);
      assert.deepEqual(routes.map((r) => [r.dst, r.gateway, r.dev]), [['default', '10.47.255.254', 'eth0']]);
      assert.deepEqual(await links(podNs.a), ['lo', 'eth0']);
    });

    test('ADD again for the same container and interface is an error (SPEC.md: the interface exists)', async () => {
      const run = await runCni(nodeNs, env('ADD', containerA, 'a'), config(version));
      assert.equal(run.exitCode, 1);
      assert.match(String(run.json?.msg), /eth0 already exists/);
      assert.deepEqual(await agent.requests(), []);
    });

    test('CHECK passes on what ADD made, fails on a missing route, needs prevResult', async () => {
      const good = await runCni(nodeNs, env('CHECK', containerA, 'a'), config(version, { prevResult: addResult }));
      assert.equal(good.exitCode, 0, good.stdout + good.stderr);
      assert.equal(good.stdout, '');
      assert.deepEqual((await agent.requests()).map((r) => [r.method, r.path, r.status]), [['GET', `/vm/${pods.a.vmUuid}`, 200]]);

      await topology.exec(podNs.a, ['ip', 'route', 'del', 'default']);
      const broken = await runCni(nodeNs, env('CHECK', containerA, 'a'), config(version, { prevResult: addResult }));
      assert.equal(broken.exitCode, 1);
      assert.equal(broken.json?.code, 101, broken.stdout);
      assert.match(String(broken.json?.msg), /lacks route 0.0.0.0\/0 via 10.47.255.254/);
      await topology.exec(podNs.a, ['ip', 'route', 'add', 'default', 'via', '10.47.255.254', 'dev', 'eth0']);

      const noPrevious = await runCni(nodeNs, env('CHECK', containerA, 'a'), config(version));
      assert.equal(noPrevious.json?.code, 7);
      await agent.requests();
    });

    test('DEL with prevResult removes the veth and the agent port; later DELs without netns or prevResult succeed', async () => {
      const first = await runCni(nodeNs, env('DEL', containerA, 'a'), config(version, { prevResult: addResult }));
      assert.equal(first.exitCode, 0, first.stdout + first.stderr);
      assert.equal(first.stdout, '');
      const requests = await agent.requests();
      assert.deepEqual(requests.map((r) => [r.method, r.path, r.status, r.response]), [['DELETE', `/vm/${pods.a.vmUuid}`, 200, '{}']]);
      assert.deepEqual(withoutTime(requests[0].body), {
        'vm-id': containerA,
        'vm-uuid': pods.a.vmUuid,
        'vm-name': '',
        'host-ifname': '',
        'vm-ifname': '',
        'vm-namespace': '',
        'vn-uuid': '',
        'vmi-uuid': '',
      });
      for (let i = 0; i < 3; i++) {
        const again = await runCni(nodeNs, env('DEL', containerA, 'a', { netns: false }), config(version));
        assert.equal(again.exitCode, 0, again.stdout + again.stderr);
      }
      assert.deepEqual(await agent.requests(), [], 'the repeated DELs have nothing left to delete');
      assert.deepEqual(await links(podNs.a), ['lo'], 'no interface left in the pod');
      assert.deepEqual(await links(nodeNs), ['lo', 'fabric0'], 'no host end left in the node');
      assert.deepEqual((await ipJson(podNs.a, ['-4', 'address', 'show'])).flatMap((l) => (l.addr_info as Array<{ local: string }>).map((a) => a.local)), ['127.0.0.1']);
      assert.deepEqual(fs.readdirSync(stateDir), []);
    });

    test('GC removes the attachments not in cni.dev/valid-attachments (1.1.0); 1.0.0 has no GC', async () => {
      await agent.configure(pods.b);
      for (const [id, which] of [[containerA, 'a'], [containerB, 'b']] as const) {
        const run = await runCni(nodeNs, env('ADD', id, which), config(version));
        assert.equal(run.exitCode, 0, run.stdout + run.stderr);
      }
      await agent.requests();
      const gcInput = (valid: Array<{ containerID: string; ifname: string }>) => config(version, { 'cni.dev/valid-attachments': valid });
      const run = await runCni(nodeNs, { CNI_COMMAND: 'GC' }, gcInput([{ containerID: containerA, ifname: 'eth0' }]));
      if (version === '1.0.0') {
        assert.equal(run.json?.code, 1, run.stdout);
        assert.equal(run.json?.msg, 'config version does not allow GC');
        for (const [id, which] of [[containerA, 'a'], [containerB, 'b']] as const) {
          assert.equal((await runCni(nodeNs, env('DEL', id, which), config(version))).exitCode, 0);
        }
      } else {
        assert.equal(run.exitCode, 0, run.stdout + run.stderr);
        assert.equal(run.stdout, '');
        assert.deepEqual((await agent.requests()).map((r) => [r.method, r.path]), [['DELETE', `/vm/${pods.b.vmUuid}`]]);
        assert.deepEqual(await links(podNs.b), ['lo'], 'the stale attachment is gone');
        assert.deepEqual(await links(podNs.a), ['lo', 'eth0'], 'the valid one stays');
        // The spec text of spec-v1.1.0 names the key cni.dev/attachments: accepted too.
        const all = await runCni(nodeNs, { CNI_COMMAND: 'GC' }, config(version, { 'cni.dev/attachments': [] }));
        assert.equal(all.exitCode, 0, all.stdout + all.stderr);
        assert.deepEqual((await agent.requests()).map((r) => [r.method, r.path]), [['DELETE', `/vm/${pods.a.vmUuid}`]]);
      }
      await agent.requests();
      assert.deepEqual(await links(podNs.a), ['lo']);
      assert.deepEqual(await links(podNs.b), ['lo']);
      assert.deepEqual(await links(nodeNs), ['lo', 'fabric0']);
      assert.deepEqual(fs.readdirSync(stateDir), []);
    });
  });
}

describe('without the agent', () => {
  test('STATUS says 50 and ADD says 11 when nothing listens on the agent port', async () => {
    await agent.stop();
    const status = await runCni(nodeNs, { CNI_COMMAND: 'STATUS' }, config('1.1.0'));
    assert.equal(status.exitCode, 1);
    assert.equal(status.json?.code, 50, status.stdout);
    assert.match(String(status.json?.msg), /not reachable/);
    const add = await runCni(nodeNs, env('ADD', 'nosuchagent01', 'a'), config('1.0.0'));
    assert.equal(add.json?.code, 11, add.stdout);
    assert.deepEqual(await links(podNs.a), ['lo']);
  });

  test('no namespace, interface or record is left behind', async () => {
    assert.deepEqual(fs.readdirSync(stateDir), []);
    // The runtime owns CNI_NETNS: the pods' namespaces are still there (empty), and no other appeared.
    const ours = fs.readdirSync('/run/netns').filter((name) => name.startsWith(`${topology.prefix}-`));
    assert.deepEqual(ours.sort(), [nodeNs, podNs.a, podNs.b, `${topology.prefix}-underlay`].sort());
    for (const ns of [podNs.a, podNs.b]) assert.deepEqual(await links(ns), ['lo']);
    assert.deepEqual(await links(nodeNs), ['lo', 'fabric0']);
  });
});
