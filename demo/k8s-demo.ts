/**
 * `npm run demo:k8s` (as root, after `bash scripts/k8s/build.sh`): the
 * multi-tier example OpenContrail's Kubernetes integration was shown with,
 * deployed with `kubectl apply` onto two nodes networked by vrouter-ts alone
 * (`vrouter-control --kubeconfig` as the network manager, `vrouter run
 * --control` on each node, vrouter-cni):
 *
 *   loadgen (uses: frontend) --ClusterIP 10.96.0.80:80--> frontend x2, then x4 (uses: redis-master)
 *                                                           --ClusterIP 10.96.0.79:6379--> redis-master
 *
 *   node 1 (namespace <p>-k8s): the Kubernetes node: apiserver, etcd, controllers, scheduler, containerd,
 *          kubelet (runs the frontend Deployment), its vrouter, the network manager
 *   node 2 (namespace <p>-node2): its vrouter; redis-master and loadgen are Pods bound to it
 *          (spec.nodeName) whose containers containerd starts with `ctr run` after vrouter-cni ADD:
 *          a second kubelet cannot share this machine (K8sTestbed.startCtrPod says why)
 *   the vrouters' fabric: 198.18.0.11 and .12 on a bridge, MPLS over UDP between them
 *
 * Images are the locally built busybox; nothing is pulled. Printed: each
 * tier's answers through the ClusterIPs (which frontend answered, and that
 * it reached redis-master), connections without `uses` denied and the
 * drops counted by the vrouter, and the spread of new flows over the
 * frontends before and after `kubectl scale --replicas=4`. The gateway /
 * ExternalIP part is not here (built separately). Everything is removed on
 * exit, also on failure and on Ctrl-C. Exit code 0 only when every check held.
 */
import { stringify } from 'yaml';
import { K8sTestbed, BUSYBOX_IMAGE, CtrPod, VrouterOnNode, testbedBinariesMissing } from '../test/support/k8s-testbed';
import { POD_STATE_ANNOTATION } from '../src/control/node/kube/mapping';

const NS = 'guestbook';
const FRONTEND_IP = '10.96.0.80';
const REDIS_IP = '10.96.0.79';
const REDIS_PORT = 6379;
const REQUESTS = 24;

/** busybox's httpd, its CGI asking redis-master through its ClusterIP for every request. */
const FRONTEND_SCRIPT = [
  'mkdir -p /www/cgi-bin',
  `printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho "$(hostname) $(printf "GET / HTTP/1.0\\\\r\\\\n\\\\r\\\\n" | nc -w 2 ${REDIS_IP} ${REDIS_PORT} | tail -n 1)"\\n' > /www/cgi-bin/index`,
  'chmod +x /www/cgi-bin/index',
  'exec httpd -f -p 8080 -h /www',
].join(' && ');
const REDIS_SCRIPT = `mkdir -p /www && echo redis-master:PONG > /www/index.html && exec httpd -f -p ${REDIS_PORT} -h /www`;

function manifest(node2: string): object[] {
  const container = (script: string) => [{ name: 'main', image: BUSYBOX_IMAGE, imagePullPolicy: 'Never', command: ['sh', '-c', script] }];
  return [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } },
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'frontend', namespace: NS },
      spec: {
        replicas: 2,
        selector: { matchLabels: { app: 'frontend' } },
        template: {
          metadata: { labels: { name: 'frontend', app: 'frontend', uses: 'redis-master' } },
          spec: { terminationGracePeriodSeconds: 1, containers: container(FRONTEND_SCRIPT) },
        },
      },
    },
    // Bound to node 2, whose containers ctr starts: the command is what startCtrPod runs.
    { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'redis-master', namespace: NS, labels: { name: 'redis-master', app: 'redis-master' } }, spec: { nodeName: node2, containers: container(REDIS_SCRIPT) } },
    { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'loadgen', namespace: NS, labels: { name: 'loadgen', uses: 'frontend' } }, spec: { nodeName: node2, containers: container('exec sleep 36000') } },
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'frontend', namespace: NS }, spec: { clusterIP: FRONTEND_IP, selector: { app: 'frontend' }, ports: [{ protocol: 'TCP', port: 80, targetPort: 8080 }] } },
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'redis-master', namespace: NS }, spec: { clusterIP: REDIS_IP, selector: { app: 'redis-master' }, ports: [{ protocol: 'TCP', port: REDIS_PORT, targetPort: REDIS_PORT }] } },
  ];
}

let failures = 0;
function check(ok: boolean, what: string): void {
  if (!ok) failures++;
  process.stdout.write(`${ok ? '\u2713' : '\u2717'} ${what}\n`);
}
const say = (text: string) => process.stdout.write(`${text}\n`);

/** An HTTP GET with busybox nc (busybox-static's wget crashes without NSS): the body's last line, '' when refused. */
function httpGet(bed: K8sTestbed, from: CtrPod, ip: string, port: number, target = '/'): Promise<string> {
  return bed
    .ctrExec(from, ['sh', '-c', `printf 'GET ${target} HTTP/1.0\\r\\n\\r\\n' | nc -w 2 ${ip} ${port} | tail -n 1`])
    .then((body) => body.trim(), () => '');
}

async function drops(bed: K8sTestbed, node: VrouterOnNode): Promise<Record<string, number>> {
  const answer = JSON.parse(await bed.topology.exec(node.ns, ['curl', '-sf', 'http://127.0.0.1:8085/api/drops'])) as { reasons: Record<string, number> };
  return answer.reasons;
}

/** Which frontend answered each of `count` new connections (each nc is a new flow). */
async function spread(bed: K8sTestbed, loadgen: CtrPod, count: number): Promise<Map<string, number>> {
  const answered = new Map<string, number>();
  for (let i = 0; i < count; i++) {
    const [frontend = '(no answer)'] = (await httpGet(bed, loadgen, FRONTEND_IP, 80, '/cgi-bin/index')).split(' ');
    answered.set(frontend, (answered.get(frontend) ?? 0) + 1);
  }
  return answered;
}

const describe = (answered: Map<string, number>) => [...answered].sort().map(([name, n]) => `${name} ${n}`).join(', ');

async function runningFrontends(bed: K8sTestbed): Promise<string[]> {
  const list = JSON.parse(await bed.kubectl(['get', 'pods', '-n', NS, '-l', 'app=frontend', '-o', 'json'])) as {
    items: Array<{ metadata: { name: string; annotations?: Record<string, string> }; status: { phase: string } }>;
  };
  return list.items.filter((pod) => pod.status.phase === 'Running' && pod.metadata.annotations?.[POD_STATE_ANNOTATION]).map((pod) => pod.metadata.name);
}

/** The pod's uid once the network manager has annotated it (it has its address). */
async function annotatedUid(bed: K8sTestbed, name: string): Promise<string> {
  let uid = '';
  await bed.waitFor(`${name} annotated by the network manager`, 60_000, async () => {
    const pod = JSON.parse(await bed.kubectl(['get', 'pod', '-n', NS, name, '-o', 'json'])) as { metadata: { uid: string; annotations?: Record<string, string> } };
    uid = pod.metadata.uid;
    return pod.metadata.annotations?.[POD_STATE_ANNOTATION] !== undefined;
  });
  return uid;
}

async function demo(bed: K8sTestbed, node1: VrouterOnNode, node2: VrouterOnNode): Promise<void> {
  const started = Date.now();
  const objects = manifest(node2.nodeName);
  say(`\nkubectl apply -f - <<EOF\n${objects.map((object) => stringify(object)).join('---\n')}EOF`);
  await bed.kubectl(['apply', '-f', '-'], { input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }) });

  const node2Pods: Record<string, CtrPod> = {};
  for (const [name, script] of [['redis-master', REDIS_SCRIPT], ['loadgen', 'exec sleep 36000']] as const) {
    node2Pods[name] = await bed.startCtrPod(node2, { namespace: NS, name, uid: await annotatedUid(bed, name) }, script);
    say(`${name}: started on ${node2.nodeName} by ctr run, ${node2Pods[name].result?.ips?.[0]?.address} from vrouter-cni`);
  }
  await bed.waitFor('2 frontends Running', 120_000, async () => (await runningFrontends(bed)).length === 2);
  say(`frontend: 2 replicas Running on ${bed.nodeName} (${Date.now() - started} ms after kubectl apply)`);
  say('\nkubectl get pods -o wide:\n' + (await bed.kubectl(['get', 'pods', '-n', NS, '-o', 'wide'])));

  const loadgen = node2Pods.loadgen;
  let first = '';
  await bed
    .waitFor('a first answer through both ClusterIPs', 30_000, async () => (first = await httpGet(bed, loadgen, FRONTEND_IP, 80, '/cgi-bin/index')).includes('redis-master'))
    .catch(() => undefined);
  check(/^frontend-\S+ redis-master:PONG$/.test(first), `loadgen (${node2.nodeName}) -> frontend ClusterIP ${FRONTEND_IP}:80 -> redis-master ClusterIP ${REDIS_IP}:${REDIS_PORT}: "${first}"`);

  const before = await drops(bed, node2);
  const denied1 = await httpGet(bed, loadgen, REDIS_IP, REDIS_PORT);
  const denied2 = await httpGet(bed, loadgen, node2Pods['redis-master'].result!.ips![0].address.split('/')[0], REDIS_PORT);
  const after = await drops(bed, node2);
  const counted = Object.keys(after).filter((reason) => after[reason] > (before[reason] ?? 0)).map((reason) => `${reason} +${after[reason] - (before[reason] ?? 0)}`);
  check(denied1 === '' && denied2 === '' && counted.length > 0, `loadgen -> redis-master (ClusterIP and pod address, no uses): denied, counted by ${node2.nodeName}'s vrouter: ${counted.join(', ')}`);

  const two = await spread(bed, loadgen, REQUESTS);
  check(two.size === 2 && ![...two.keys()].includes('(no answer)'), `${REQUESTS} new connections over 2 frontends: ${describe(two)}`);

  const scaledAt = Date.now();
  await bed.kubectl(['scale', 'deployment', 'frontend', '-n', NS, '--replicas=4']);
  say('\nkubectl scale deployment frontend --replicas=4');
  await bed.waitFor('4 frontends Running', 120_000, async () => (await runningFrontends(bed)).length === 4);
  let four = new Map<string, number>();
  await bed.waitFor('new flows reaching all 4 frontends', 60_000, async () => (four = await spread(bed, loadgen, REQUESTS)).size === 4);
  check(four.size === 4 && ![...four.keys()].includes('(no answer)'), `${REQUESTS} new connections over 4 frontends (${Date.now() - scaledAt} ms after kubectl scale): ${describe(four)}`);

  for (const node of [node1, node2]) {
    const reasons = Object.entries(await drops(bed, node)).filter(([, n]) => n > 0).map(([reason, n]) => `${reason} ${n}`);
    say(`${node.nodeName} drops: ${reasons.join(', ') || 'none'}`);
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('npm run demo:k8s needs root (network namespaces, containerd, kubelet)');
  const missing = testbedBinariesMissing();
  if (missing.length > 0) throw new Error(`the Kubernetes testbed is not built (missing ${missing.join(', ')}): run bash scripts/k8s/setup.sh && bash scripts/k8s/build.sh`);
  let node1: VrouterOnNode | undefined;
  let node2: VrouterOnNode | undefined;
  say('starting the Kubernetes node, the network manager and two vrouters ...');
  const bed = await K8sTestbed.start({
    cniPlugin: { type: 'vrouter-cni', contrail: { 'poll-timeout': 0.3, 'poll-retries': 100 } },
    beforeNode: async (testbed) => {
      testbed.startNetworkManager();
      node1 = await testbed.startVrouter(testbed.ns, testbed.nodeName);
      const host = await testbed.addHost('node2', 0);
      node2 = await testbed.startVrouter(host.ns, `vrt-node2-${testbed.runId}`);
    },
  });
  const interrupted = (signal: NodeJS.Signals) => {
    say(`\n${signal}: removing everything`);
    void bed.stop().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  try {
    say(`node ${bed.nodeName} Ready; vrouters ${node1!.nodeName} (${node1!.fabricIp}) and ${node2!.nodeName} (${node2!.fabricIp})`);
    await demo(bed, node1!, node2!);
  } finally {
    await bed.stop();
    const left = bed.leftovers();
    check(left.length === 0, `everything removed${left.length > 0 ? `; left: ${left.join(', ')}` : ''}`);
  }
}

main()
  .then(() => process.exit(failures === 0 ? 0 : 1))
  .catch((error: Error) => {
    process.stderr.write(`demo:k8s: ${error.stack ?? error.message}\n`);
    process.exit(1);
  });
