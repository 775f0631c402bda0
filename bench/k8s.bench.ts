/**
 * `npm run bench:k8s` (as root, after `bash scripts/k8s/build.sh`): figures
 * of the Kubernetes integration on the two-node testbed of `npm run
 * demo:k8s` (a real kubelet + containerd node and a second vrouter node,
 * vrouter-control --kubeconfig as the network manager):
 *
 *   1. pod created -> first packet answered across nodes: `kubectl apply` of
 *      a pod on node 1 until a pod of node 2 gets its first ping reply
 *      (iputils ping every 5 ms from the sandbox), split at the agent's
 *      POST /vm (from its log) and the port active (configured by the control
 *      node): before POST /vm is Kubernetes' (scheduler, kubelet, containerd,
 *      the CNI's GET /vm-cfg), POST /vm -> port active the vrouter's, the rest
 *      the CNI configuring eth0 and the route reaching node 2.
 *   2. a Service backend change -> all dataplanes updated: `kubectl label`
 *      puts a node-2 pod into a Service backed by a node-1 pod until both
 *      vrouters' ClusterIP route (in the client VN of each node) has both
 *      backends (polled every 10 ms on each introspect API).
 *   3. N pod objects created in the apiserver (one `kubectl apply`, spread
 *      bound to node 2) -> every pod's /32 programmed in both vrouters:
 *      node 2 attaches every pod as the CNI does (GET /vm-cfg, then POST /vm
 *      on the host end of a veth pair left in the node's namespace: no sandbox or container, the control path
 *      is what is measured), node 1 learns them over XMPP (a kubelet pod in
 *      their VN). VROUTER_K8S_BENCH_PODS sets N (default 200).
 *
 * Prints `uptime` beside the figures: the machine is shared.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { K8sTestbed, BUSYBOX_IMAGE, CtrPod, POD_API, VrouterOnNode, testbedBinariesMissing } from '../test/support/k8s-testbed';
import { networkFqns } from '../src/control/ifmap/names';
import type { RouteTableJson } from '../src/daemon/introspect-server';

const NS = 'bench';
const SERVICE_IP = '10.96.0.90';
const ROUNDS = Number(process.env.VROUTER_K8S_BENCH_ROUNDS ?? 3);
const PODS = Number(process.env.VROUTER_K8S_BENCH_PODS ?? 200);

const say = (text: string) => process.stdout.write(`${text}\n`);
const uptime = () => execFileSync('uptime').toString().trim();
const vrfOf = (name: string) => networkFqns(`${NS}:${name}`).routingInstance;

function pod(name: string, labels: Record<string, string>, nodeName?: string): object {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: NS, labels },
    spec: {
      ...(nodeName ? { nodeName } : {}),
      terminationGracePeriodSeconds: 1,
      containers: [{ name: 'main', image: BUSYBOX_IMAGE, imagePullPolicy: 'Never', command: ['sleep', '36000'] }],
    },
  };
}
const apply = (bed: K8sTestbed, items: object[]) => bed.kubectl(['apply', '-f', '-'], { input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items }) });

async function podUid(bed: K8sTestbed, name: string): Promise<string> {
  let uid = '';
  await bed.waitFor(`${name} registered`, 60_000, async () => {
    uid = (await bed.kubectl(['get', 'pod', '-n', NS, name, '-o', 'jsonpath={.metadata.uid}'])).trim();
    return uid !== '';
  });
  return uid;
}

/** The manager's decisions (its pod API). */
async function registered(bed: K8sTestbed): Promise<Array<{ name: string; namespace: string; ip?: string; vmiUuid: string }>> {
  return JSON.parse(await bed.exec(['curl', '-sf', `http://${POD_API}/pods`])) as Array<{ name: string; namespace: string; ip?: string; vmiUuid: string }>;
}

async function routes(bed: K8sTestbed, node: VrouterOnNode, vrf: string, prefix?: string): Promise<RouteTableJson | null> {
  const query = `vrf=${encodeURIComponent(vrf)}${prefix ? `&prefix=${encodeURIComponent(prefix)}` : ''}`;
  const text = await bed.topology.exec(node.ns, ['curl', '-s', `http://127.0.0.1:8085/api/routes?${query}`]);
  try {
    const table = JSON.parse(text) as RouteTableJson;
    return Array.isArray(table.routes) ? table : null;
  } catch {
    return null;
  }
}

/** The time (epoch ms) of the first log line of `file` with `msg` and `field` = `value`. */
function logTime(file: string, msg: string, field: string, value: string): number | undefined {
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (!line.includes(value) || !line.includes(msg)) continue;
    const entry = JSON.parse(line) as Record<string, string>;
    if (entry.msg === msg && entry[field] === value) return Date.parse(entry.time);
  }
  return undefined;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

async function podToFirstReply(bed: K8sTestbed, node1: VrouterOnNode, prober: CtrPod): Promise<void> {
  say(`\n1. pod created -> first packet answered across nodes (${ROUNDS} rounds; ${uptime()})`);
  const rows: Array<{ total: number; kube: number; vrouter: number; rest: number }> = [];
  for (let round = 1; round <= ROUNDS; round++) {
    const name = `target-${round}`;
    const started = Date.now();
    await apply(bed, [pod(name, { name: 'probe' })]);
    let ip: string | undefined;
    let vmi = '';
    await bed.waitFor(`${name} addressed`, 60_000, async () => {
      const entry = (await registered(bed)).find((candidate) => candidate.namespace === NS && candidate.name === name);
      ip = entry?.ip;
      vmi = entry?.vmiUuid ?? '';
      return ip !== undefined;
    });
    // iputils ping: -D prints each reply's time; with -c 1 -w it sends every 5 ms until the first reply.
    const output = await bed.topology.exec(prober.netns.split('/').pop()!, ['ping', '-D', '-n', '-i', '0.005', '-c', '1', '-w', '90', ip!]);
    const reply = /^\[(\d+\.\d+)\] \d+ bytes from/m.exec(output);
    if (!reply) throw new Error(`no reply from ${name}: ${output}`);
    const repliedAt = Number(reply[1]) * 1000;
    const posted = logTime(node1.logFile, 'vm interface added', 'vmi', vmi);
    const active = logTime(node1.logFile, 'port active', 'id', vmi);
    if (posted === undefined || active === undefined) throw new Error(`${name}: no POST /vm or port active in ${node1.logFile}`);
    rows.push({ total: repliedAt - started, kube: posted - started, vrouter: active - posted, rest: repliedAt - active });
    say(`   ${name}: ${(repliedAt - started).toFixed(0)} ms = Kubernetes to POST /vm ${(posted - started).toFixed(0)} + vrouter (POST /vm -> port active) ${(active - posted).toFixed(0)} + eth0 configured, route to node 2, ping ${(repliedAt - active).toFixed(0)}`);
  }
  say(`   median ${median(rows.map((r) => r.total)).toFixed(0)} ms; vrouter's share median ${median(rows.map((r) => r.vrouter)).toFixed(0)} ms (${((100 * median(rows.map((r) => r.vrouter))) / median(rows.map((r) => r.total))).toFixed(1)} %)`);
}

async function backendChange(bed: K8sTestbed, node1: VrouterOnNode, node2: VrouterOnNode, node2Pod: (name: string, labels: Record<string, string>) => Promise<CtrPod>): Promise<void> {
  say(`\n2. a Service backend change -> all dataplanes updated (${ROUNDS} rounds; ${uptime()})`);
  await apply(bed, [
    pod('svc-a', { name: 'svc', app: 'svc' }),
    pod('client-1', { name: 'client', uses: 'svc' }),
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'svc', namespace: NS }, spec: { clusterIP: SERVICE_IP, selector: { app: 'svc' }, ports: [{ protocol: 'TCP', port: 80, targetPort: 8080 }] } },
  ]);
  await node2Pod('client-2', { name: 'client', uses: 'svc' });
  await node2Pod('svc-b', { name: 'svc' });
  const vrf = vrfOf('client');
  const members = async (node: VrouterOnNode) => {
    const route = (await routes(bed, node, vrf, `${SERVICE_IP}/32`))?.routes.find((candidate) => candidate.prefix === `${SERVICE_IP}/32`);
    return route === undefined ? 0 : (route.members?.filter((member) => member.kind !== null).length ?? 1);
  };
  await bed.waitFor('the ClusterIP routed on both nodes', 90_000, async () => (await members(node1)) === 1 && (await members(node2)) === 1);
  const figures: number[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    for (const [value, want] of [['svc', 2], ['none', 1]] as const) {
      const started = Date.now();
      await bed.kubectl(['label', 'pod', '-n', NS, 'svc-b', `app=${value}`, '--overwrite']);
      const done = { node1: 0, node2: 0 };
      await bed.waitFor(`both dataplanes with ${want} backends`, 30_000, async () => {
        for (const [key, node] of [['node1', node1], ['node2', node2]] as const) if (done[key] === 0 && (await members(node)) === want) done[key] = Date.now();
        return done.node1 > 0 && done.node2 > 0;
      });
      const ms = Math.max(done.node1, done.node2) - started;
      if (value === 'svc') figures.push(ms);
      say(`   backend ${value === 'svc' ? 'added' : 'removed'}: node 1 ${done.node1 - started} ms, node 2 ${done.node2 - started} ms (from kubectl label, incl. its ~100+ ms)`);
    }
  }
  say(`   median (added) ${median(figures)} ms`);
}

/** Runs inside a node namespace: for each pod name, the CNI's GET /vm-cfg then POST /vm on a veth's host end (this kernel has no dummy links). */
const ATTACH_PROGRAM = `
const http = require('node:http');
const { execFileSync } = require('node:child_process');
const [namespace, ...names] = process.argv.slice(1);
const call = (method, path, body) => new Promise((resolve, reject) => {
  const request = http.request({ host: '127.0.0.1', port: 9091, method, path, agent: false, headers: body ? { 'Content-Type': 'application/json' } : {} }, (response) => {
    let text = ''; response.on('data', (c) => (text += c)); response.on('end', () => resolve({ status: response.statusCode, text }));
  });
  request.on('error', reject); request.end(body);
});
async function attach(name, index) {
  const vmName = 'k8s__' + namespace + '__' + name;
  for (;;) {
    const answer = await call('GET', '/vm-cfg/' + vmName);
    if (answer.status === 200) {
      const [cfg] = JSON.parse(answer.text);
      const host = 'bk' + index.toString(36);
      execFileSync('ip', ['link', 'add', host, 'type', 'veth', 'peer', 'name', 'bp' + index.toString(36)]);
      execFileSync('ip', ['link', 'set', host, 'up']);
      const port = { time: new Date().toISOString(), 'vm-id': cfg['vm-uuid'], 'vm-uuid': cfg['vm-uuid'], 'vm-name': vmName, 'host-ifname': host, 'vm-ifname': 'eth0', 'vm-namespace': '', 'vn-uuid': cfg['vn-id'], 'vmi-uuid': cfg.id };
      const posted = await call('POST', '/vm', JSON.stringify(port));
      if (posted.status !== 200) throw new Error(posted.text);
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
(async () => {
  let next = 0;
  await Promise.all(Array.from({ length: 16 }, async () => { while (next < names.length) { const i = next++; await attach(names[i], i); } }));
})().catch((error) => { console.error(error.message); process.exit(1); });
`;

async function manyPods(bed: K8sTestbed, node1: VrouterOnNode, node2: VrouterOnNode): Promise<void> {
  say(`\n3. ${PODS} pod objects -> all routes programmed in both vrouters (${uptime()})`);
  // Node 1's kubelet would start a sandbox for every pod bound to it: the N pods are node 2's, and a
  // kubelet pod in their VN makes node 1 subscribe to it (and so program the N remote routes).
  await apply(bed, [pod('bulk-anchor', { name: 'bulk' })]);
  const vrf = vrfOf('bulk');
  await bed.waitFor('the anchor pod routed', 90_000, async () => ((await routes(bed, node1, vrf))?.routes.length ?? 0) > 0);
  const names = Array.from({ length: PODS }, (_, i) => `bulk-${i}`);
  const started = Date.now();
  await apply(bed, names.map((name) => pod(name, { name: 'bulk' }, node2.nodeName)));
  const applied = Date.now();
  const attacher = bed.topology.exec(node2.ns, [process.execPath, '-e', ATTACH_PROGRAM, NS, ...names], { timeoutMs: 600_000 });
  const done = { node1: 0, node2: 0 };
  const bulkRoutes = async (node: VrouterOnNode) => (await routes(bed, node, vrf))?.routes.filter((route) => route.prefix.startsWith('10.32.') && route.prefix.endsWith('/32')).length ?? 0;
  await bed.waitFor(`${PODS} routes in both vrouters`, 600_000, async () => {
    for (const [key, node] of [['node1', node1], ['node2', node2]] as const) if (done[key] === 0 && (await bulkRoutes(node)) >= PODS + 1) done[key] = Date.now();
    return done.node1 > 0 && done.node2 > 0;
  });
  await attacher;
  say(`   kubectl apply of ${PODS} pods: ${applied - started} ms; all ${PODS} /32 routes programmed (node 2: its attached ports, node 1: learned over XMPP): node 2 ${done.node2 - started} ms, node 1 ${done.node1 - started} ms after the apply began`);
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('npm run bench:k8s needs root');
  const missing = testbedBinariesMissing();
  if (missing.length > 0) throw new Error(`the Kubernetes testbed is not built (missing ${missing.join(', ')}): run bash scripts/k8s/build.sh`);
  let node1: VrouterOnNode | undefined;
  let node2: VrouterOnNode | undefined;
  const bed = await K8sTestbed.start({
    cniPlugin: { type: 'vrouter-cni', contrail: { 'poll-timeout': 0.05, 'poll-retries': 100 } },
    beforeNode: async (testbed) => {
      testbed.startNetworkManager();
      node1 = await testbed.startVrouter(testbed.ns, testbed.nodeName);
      node2 = await testbed.startVrouter((await testbed.addHost('node2', 0)).ns, `vrt-node2-${testbed.runId}`);
    },
  });
  const interrupted = () => void bed.stop().finally(() => process.exit(130));
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  try {
    await bed.kubectl(['create', 'namespace', NS]);
    const node2Pod = async (name: string, labels: Record<string, string>) => {
      await apply(bed, [pod(name, labels, node2!.nodeName)]);
      return bed.startCtrPod(node2!, { namespace: NS, name, uid: await podUid(bed, name) }, 'exec sleep 36000');
    };
    const prober = await node2Pod('prober', { name: 'probe' });
    await podToFirstReply(bed, node1!, prober);
    await backendChange(bed, node1!, node2!, node2Pod);
    await manyPods(bed, node1!, node2!);
  } finally {
    await bed.stop();
    const left = bed.leftovers();
    if (left.length > 0) throw new Error(`left behind: ${left.join(', ')}`);
  }
}

main().catch((error: Error) => {
  process.stderr.write(`bench:k8s: ${error.stack ?? error.message}\n`);
  process.exit(1);
});
