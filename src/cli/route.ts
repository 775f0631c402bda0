/**
 * `vrouter route set|delete` and `vrouter stats`: thin clients of the
 * daemon's local API for routes programmed by hand or by a script when no
 * control node distributes them, and for the dataplane counters.
 *
 *   vrouter route set --vrf vn1 --prefix 10.1.1.5/32 --nexthop 198.18.0.12:30
 *   vrouter route set --vrf vn1 --prefix 10.96.0.10/32 \
 *       --nexthop 198.18.0.11:40:udp,gre --nexthop 198.18.0.12:41:udp,gre --vn vn1
 *   vrouter route delete --vrf vn1 --prefix 10.1.1.5/32
 *   vrouter stats
 *
 * A next hop is `<underlay address>:<label>[:<encap>[,<encap>...]]`, the
 * encapsulations (`udp`, `gre`) being those the remote node accepts
 * (default: the daemon's, udp). Several --nexthop make an ECMP route. The
 * node picks the first encapsulation of its own priority list that the next
 * hop accepts; a next hop it cannot use is skipped, and set fails when none
 * is left.
 */
import * as http from 'node:http';
import { Command, Option } from 'commander';
import { parseHostPort } from './host-port';

type Encap = 'udp' | 'gre';

export interface CliNexthop {
  address: string;
  label: number;
  encaps?: Encap[];
  vn?: string;
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const ENCAPS: readonly Encap[] = ['udp', 'gre'];

/** "198.18.0.12:30:gre,udp" -> { address, label, encaps }; the error names the value and the expected form. */
export function parseNexthop(text: string): CliNexthop {
  const usage = `--nexthop ${text}: expected <address>:<label>[:udp|gre[,...]]`;
  const [address, labelText, encapText, ...rest] = text.split(':');
  if (rest.length > 0 || address === undefined || !IPV4.test(address)) throw new Error(usage);
  if (labelText === undefined || !/^\d+$/.test(labelText)) throw new Error(usage);
  const label = Number(labelText);
  if (label < 16 || label > 1048575) throw new Error(`--nexthop ${text}: label ${label} is outside the unicast range 16-1048575`);
  if (encapText === undefined) return { address, label };
  const encaps = encapText.split(',');
  for (const encap of encaps) if (!ENCAPS.includes(encap as Encap)) throw new Error(`${usage} (unknown encapsulation ${JSON.stringify(encap)})`);
  return { address, label, encaps: [...new Set(encaps)] as Encap[] };
}

/** One request to the local API; resolves to the parsed JSON answer, rejects with the API's error text. */
export function callApi(api: string, method: string, path: string, body?: unknown): Promise<unknown> {
  const { host, port } = parseHostPort(api, '--api');
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  // An explicit length: Node sends DELETE bodies neither chunked nor with a length by default.
  const headers = { 'content-type': 'application/json', 'content-length': String(payload?.length ?? 0) };
  return new Promise((resolve, reject) => {
    const request = http.request({ host, port, method, path, headers }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: { error?: string } = {};
        try {
          parsed = text ? (JSON.parse(text) as { error?: string }) : {};
        } catch {
          return reject(new Error(`API at ${api}: ${method} ${path}: answer is not JSON: ${text.slice(0, 200)}`));
        }
        if ((response.statusCode ?? 500) >= 400) reject(new Error(`${response.statusCode}: ${parsed.error ?? text}`));
        else resolve(parsed);
      });
    });
    request.setTimeout(10_000, () => request.destroy(new Error('no answer within 10 s')));
    request.on('error', (error) => reject(new Error(`API at ${api}: ${error.message}`)));
    request.end(payload);
  });
}

const apiOption = () => new Option('--api <host:port>', 'the daemon local API').default('127.0.0.1:9091');

export function routeCommand(): Command {
  const route = new Command('route').description('set and delete routes of the running daemon (when no control node distributes them)');
  route
    .command('set')
    .description('set a route to exactly these next hops (several make an ECMP route)')
    .requiredOption('--vrf <name>', 'VRF (virtual network) name; created when unknown')
    .requiredOption('--prefix <prefix>', 'IPv4 prefix a.b.c.d/len')
    .requiredOption(
      '--nexthop <address:label[:encaps]>',
      'remote node underlay address, MPLS label, accepted encapsulations (udp,gre); repeatable',
      (value: string, all: string[]) => all.concat([value]),
      [],
    )
    .option('--vn <name>', 'the VN of the destination, for policy (default: the VRF)')
    .addOption(apiOption())
    .action(async (options: { vrf: string; prefix: string; nexthop: string[]; vn?: string; api: string }) => {
      const nexthops = options.nexthop.map((text) => ({ ...parseNexthop(text), ...(options.vn === undefined ? {} : { vn: options.vn }) }));
      const answer = (await callApi(options.api, 'PUT', '/route', { vrf: options.vrf, prefix: options.prefix, nexthops })) as { nexthops: number };
      process.stdout.write(JSON.stringify(answer) + '\n');
      const distinct = new Set(nexthops.map((nexthop) => `${nexthop.address}:${nexthop.label}`)).size;
      if (answer.nexthops === 0) {
        throw new Error(`route ${options.vrf} ${options.prefix}: the daemon could use none of the next hops (no common encapsulation, or an unknown local label); the route is absent`);
      }
      if (answer.nexthops < distinct) {
        process.stderr.write(`vrouter: route ${options.vrf} ${options.prefix}: the daemon uses ${answer.nexthops} of ${distinct} next hops\n`);
      }
    });
  route
    .command('delete')
    .description('delete a route')
    .requiredOption('--vrf <name>', 'VRF (virtual network) name')
    .requiredOption('--prefix <prefix>', 'IPv4 prefix a.b.c.d/len')
    .addOption(apiOption())
    .action(async (options: { vrf: string; prefix: string; api: string }) => {
      await callApi(options.api, 'DELETE', '/route', { vrf: options.vrf, prefix: options.prefix });
    });
  return route;
}

export function statsCommand(): Command {
  return new Command('stats')
    .description('print the dataplane counters (packets, drops by reason, vifs, VRFs) as JSON')
    .addOption(apiOption())
    .action(async (options: { api: string }) => {
      process.stdout.write(JSON.stringify(await callApi(options.api, 'GET', '/stats'), null, 2) + '\n');
    });
}
