/**
 * `vrouter port add|delete|list`: a thin client of the daemon's port API,
 * for scripts and tests that run inside the node's namespace. With
 * `--control-api <url>` the pod is first registered on vrouter-control's
 * pod API (its labels, VN and address request), as OpenContrail's plugins
 * create the VM and its interface on the configuration side before binding
 * the interface through the agent. A second `--control-api` (the second
 * control node) gets the pod with the VN and address the first decided, so
 * both agree; a refusal of either is the command's error, and what was
 * registered is deleted again.
 */
import * as http from 'node:http';
import { Command, Option } from 'commander';
import { parseHostPort } from './host-port';

function call(api: string, method: string, path: string, body?: unknown): Promise<unknown> {
  const { host, port } = parseHostPort(api, '--api');
  return new Promise((resolve, reject) => {
    const request = http.request({ host, port, method, path, headers: { 'content-type': 'application/json' } }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const parsed = text ? (JSON.parse(text) as { error?: string }) : {};
        if ((response.statusCode ?? 500) >= 400) reject(new Error(`${response.statusCode}: ${parsed.error ?? text}`));
        else resolve(parsed);
      });
    });
    request.on('error', (error) => reject(new Error(`port API at ${api}: ${error.message}`)));
    request.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

/** A request to vrouter-control's pod API; its `{"error"}` becomes the thrown message. */
async function callControl(url: string, method: string, path: string, body?: unknown): Promise<unknown> {
  let response: Response;
  try {
    response = await fetch(new URL(path, url), { method, ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }) });
  } catch (error) {
    throw new Error(`pod API at ${url}: ${(error as Error).message}`);
  }
  const answer = (await response.json().catch(() => ({}))) as { error?: string };
  if (!response.ok) throw new Error(`pod API at ${url}: ${response.status}: ${answer.error ?? response.statusText}`);
  return answer;
}

function labels(values: string[]): Record<string, string> {
  return Object.fromEntries(
    values.map((value) => {
      const at = value.indexOf('=');
      if (at <= 0) throw new Error(`--label ${value}: expected key=value`);
      return [value.slice(0, at), value.slice(at + 1)];
    }),
  );
}

/** "10.96.0.10,tcp:80:8080,udp:53" -> { ip, portMap } */
function parseFloatingIp(text: string) {
  const [ip, ...ports] = text.split(',');
  return {
    ip,
    portMap: ports.map((entry) => {
      const [protocol, port, targetPort] = entry.split(':');
      if ((protocol !== 'tcp' && protocol !== 'udp') || !/^\d+$/.test(port ?? '')) throw new Error(`--floating-ip ${text}: expected <ip>[,tcp|udp:<port>[:<target>]]`);
      return { protocol, port: Number(port), targetPort: targetPort === undefined ? undefined : Number(targetPort) };
    }),
  };
}

export function portCommand(): Command {
  const api = () => new Option('--api <host:port>', 'the daemon port API').default('127.0.0.1:9091');
  const port = new Command('port').description("add, delete and list pod ports of the running daemon");
  port
    .command('add')
    .description('create a pod interface (a veth pair or a TAP) in the pod namespace and configure it there')
    .requiredOption('--id <id>', "the pod's id")
    .option('--name <name>', "the pod's name")
    .option('--namespace <namespace>', "the pod's Kubernetes namespace")
    .option('--label <key=value>', 'a pod label; repeatable', (value: string, all: string[]) => all.concat([value]), [])
    .option('--netns <name>', 'network namespace to create the interface in')
    .option('--attach <interface>', 'attach an existing interface of the node (e.g. a veth) through libpcap instead of creating a TAP')
    .option('--ifname <name>', 'interface name inside the pod', 'eth0')
    .option('--kind <kind>', 'the pod interface: veth (read with AF_XDP, AF_PACKET where refused) or tap (default: veth, or VROUTER_POD_PORT of the daemon)')
    .option('--vn <name>', 'virtual network')
    .option('--ip <address>', 'pod IPv4 address')
    .option('--ip6 <address>', 'pod IPv6 address (its VN needs an IPv6 subnet and gateway in the state file)')
    .option('--mac <mac>', 'pod MAC (default derived from the IP)')
    .option('--mtu <bytes>', 'interface MTU (default: underlay MTU - 32)', (value: string) => Number(value))
    .option('--subnet <prefix>', "the VN's subnet, when the state file does not define the VN")
    .option('--gateway <address>', "the VN's gateway, when the state file does not define the VN")
    .option('--mpls-label <label>', 'the MPLS label for the pod (default: the next free one)', (value: string) => Number(value))
    .option('--floating-ip <ip[,proto:port:target...]>', 'a ClusterIP the pod backs, e.g. 10.96.0.10,tcp:80:8080; repeatable', (value: string, all: string[]) => all.concat([value]), [])
    .option('--control-api <url>', "vrouter-control's pod API (e.g. http://198.18.0.2:8082): the pod is registered there first; once per control node", (value: string, all: string[]) => all.concat([value]), [])
    .option('--vrouter <name>', 'the node the pod is on, as the control node knows it (required with --control-api)')
    .addOption(api())
    .action(async (options: Record<string, unknown> & { label: string[]; api: string; mplsLabel?: number; floatingIp: string[]; controlApi: string[]; vrouter?: string }) => {
      const { api: address, label, mplsLabel, floatingIp, controlApi, vrouter, ...fields } = options;
      const body = Object.fromEntries(
        Object.entries({ ...fields, labels: labels(label), label: mplsLabel, floatingIps: floatingIp.length ? floatingIp.map(parseFloatingIp) : undefined }).filter(
          ([, value]) => value !== undefined,
        ),
      );
      if (controlApi.length > 2) throw new Error('--control-api: at most two control nodes');
      if (controlApi.length > 0) {
        if (vrouter === undefined) throw new Error('--control-api needs --vrouter <name>');
        const id = String(fields.id);
        let registration: Record<string, unknown> = { vrouter, vmUuid: id, vmiUuid: id, name: fields.name ?? id, namespace: fields.namespace ?? 'default', labels: body.labels, vn: fields.vn, ip: fields.ip, mac: fields.mac };
        const registered: string[] = [];
        try {
          for (const url of controlApi) {
            const decided = (await callControl(url, 'POST', '/pods', Object.fromEntries(Object.entries(registration).filter(([, value]) => value !== undefined)))) as { vn: string; ip: string; mac: string };
            registered.push(url);
            registration = { ...registration, vn: decided.vn, ip: decided.ip, mac: decided.mac };
          }
          process.stdout.write(JSON.stringify(await call(address, 'POST', '/port', body)) + '\n');
        } catch (error) {
          await Promise.all(registered.map((url) => callControl(url, 'DELETE', `/pods/${encodeURIComponent(id)}`).catch(() => undefined)));
          throw error;
        }
        return;
      }
      process.stdout.write(JSON.stringify(await call(address, 'POST', '/port', body)) + '\n');
    });
  port
    .command('delete <id>')
    .description('remove a pod interface')
    .option('--control-api <url>', "vrouter-control's pod API: the pod's registration is removed there too; once per control node", (value: string, all: string[]) => all.concat([value]), [])
    .addOption(api())
    .action(async (id: string, options: { api: string; controlApi: string[] }) => {
      await call(options.api, 'DELETE', `/port/${encodeURIComponent(id)}`);
      // Every control node is asked, even when one fails; the first failure is the command's error.
      const outcomes = await Promise.allSettled(options.controlApi.map((url) => callControl(url, 'DELETE', `/pods/${encodeURIComponent(id)}`)));
      const failed = outcomes.find((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected');
      if (failed) throw failed.reason;
    });
  port
    .command('list')
    .description('list pod interfaces')
    .addOption(api())
    .action(async (options: { api: string }) => {
      process.stdout.write(JSON.stringify(await call(options.api, 'GET', '/ports'), null, 2) + '\n');
    });
  return port;
}
