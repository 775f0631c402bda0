/**
 * The OpenContrail-style utilities, clients of the daemon's introspect API
 * (`vrouter run --introspect`, 127.0.0.1:8085 by default; run them in the
 * node's namespace, as the daemon's API listens there):
 *
 *   vrouter vif --list | --get <vif>          interfaces, counters, rates
 *   vrouter rt --dump <vrf> [--prefix P]      routes of a VRF (name or id)
 *   vrouter nh --list | --get <id>            nexthops
 *   vrouter mpls --dump | --get <label>       the incoming label map
 *   vrouter flow -l [--match ...]             flows, index<=>rindex, action, NAT, ECMP, stats
 *   vrouter dropstats [--clear]               one counter per drop reason
 *   vrouter vrfstats [--get <vrf>]            per VRF (VN) traffic, flows, drops, rates
 *   vrouter vifdump <vif> [-w file.pcap]      what crosses a vif, live (pcap for tshark)
 *   vrouter trace --vif <vif> '<proto> <src>:<sport> > <dst>:<dport>'
 *                                             a synthetic packet through the live pipeline
 *   vrouter monitor --drops                   dropped packets, live
 *
 * Text output follows the OpenContrail tools' layout; --json prints what
 * the API answered, for scripts. Every command takes --introspect <host:port>.
 */
import type { FlowJson } from '../dataplane/flow-format';
import type { NexthopJson, RouteTableJson, VifJson, VnTrafficJson } from '../daemon/introspect-server';
import * as http from 'node:http';
import { Command, Option } from 'commander';
import { PcapWriter } from '../dataplane/io/pcap';
import { inPrefix6, ip6FromString } from '../dataplane/protocols/ipv6';
import { parseHostPort } from './host-port';

const DEFAULT_INTROSPECT = '127.0.0.1:8085';
const VROUTER_MAC = '00 00 5e 00 01 00';
const PROTOCOL_NUMBERS: Record<string, number> = { icmp: 1, tcp: 6, udp: 17, gre: 47, icmp6: 58 };
function isIpv6(text: string): boolean {
  try {
    ip6FromString(text);
    return true;
  } catch {
    return false;
  }
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const FLOW_PAGE = 1000;

const introspectOption = () => new Option('--introspect <host:port>', 'the daemon introspect API').default(DEFAULT_INTROSPECT);
const jsonOption = () => new Option('--json', 'print the API answer as JSON');

/** A request to the introspect API; resolves to the parsed JSON, rejects with the API's error text. */
export function introspectRequest<T = unknown>(address: string, method: string, path: string, body?: unknown): Promise<T> {
  const { host, port } = parseHostPort(address, '--introspect');
  return new Promise((resolve, reject) => {
    const request = http.request({ host, port, method, path, headers: body === undefined ? {} : { 'content-type': 'application/json' } }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: unknown;
        try {
          parsed = text ? JSON.parse(text) : {};
        } catch {
          return reject(new Error(`introspect API at ${address}: ${method} ${path}: answer is not JSON: ${text.slice(0, 200)}`));
        }
        if ((response.statusCode ?? 500) >= 400) reject(new Error(`${(parsed as { error?: string }).error ?? text} (HTTP ${response.statusCode})`));
        else resolve(parsed as T);
      });
    });
    request.setTimeout(15_000, () => request.destroy(new Error('no answer within 15 s')));
    request.on('error', (error) => reject(new Error(`introspect API at ${address}: ${error.message} (is \`vrouter run\` running in this network namespace?)`)));
    request.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

/**
 * Opens a stream of the API; calls onData with each chunk until the server
 * ends it or stop() is called. Resolves once the headers arrived (the
 * worker side is then enabled).
 */
export function openStream(
  address: string,
  path: string,
  onData: (chunk: Buffer) => void,
): Promise<{ headers: http.IncomingHttpHeaders; stop: () => void; ended: Promise<void> }> {
  const { host, port } = parseHostPort(address, '--introspect');
  return new Promise((resolve, reject) => {
    const request = http.get({ host, port, path }, (response) => {
      if ((response.statusCode ?? 500) >= 400) {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let message = text;
          try {
            message = (JSON.parse(text) as { error?: string }).error ?? text;
          } catch {
            // not JSON: the text itself
          }
          reject(new Error(`${message.trim()} (HTTP ${response.statusCode})`));
        });
        return;
      }
      const ended = new Promise<void>((done) => {
        response.on('end', done);
        response.on('close', done);
        response.on('error', () => done());
      });
      response.on('data', onData);
      resolve({ headers: response.headers, stop: () => request.destroy(), ended });
    });
    request.on('error', (error) => reject(new Error(`introspect API at ${address}: ${error.message} (is \`vrouter run\` running in this network namespace?)`)));
  });
}

/** Splits a byte stream into lines. */
export function lineSplitter(onLine: (line: string) => void): (chunk: Buffer) => void {
  let pending = '';
  return (chunk) => {
    pending += chunk.toString('utf8');
    let at: number;
    while ((at = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, at);
      pending = pending.slice(at + 1);
      if (line.trim()) onLine(line);
    }
  };
}

function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

function pad(text: unknown, width: number): string {
  return String(text).padEnd(width);
}

function padLeft(text: unknown, width: number): string {
  return String(text).padStart(width);
}

/** 1234567 -> "1.23M", for rates. */
function human(value: number): string {
  if (value >= 1e9) return `${(value / 1e9).toFixed(2)}G`;
  if (value >= 1e6) return `${(value / 1e6).toFixed(2)}M`;
  if (value >= 1e3) return `${(value / 1e3).toFixed(2)}K`;
  return value >= 10 || value === 0 ? value.toFixed(0) : value.toFixed(1);
}

function macBytes(mac: string): string {
  return mac.split(':').join(' ');
}

// --- vif ---------------------------------------------------------------------

/** A vif as the introspect API gives it, with its rates and pod. */
interface VifAnswer extends VifJson {
  rates: { rxPps: number; rxBitsPerSecond: number; txPps: number; txBitsPerSecond: number } | null;
  pod: { id: string; name: string | null; namespace: string | null; netns: string | null } | null;
}

const VIF_TYPES: Record<string, string> = { fabric: 'Physical', virtual: 'Virtual', host: 'Host', agent: 'Agent' };

export function formatVif(vif: VifAnswer): string {
  const pod = vif.pod ? ` (pod ${vif.pod.namespace ? `${vif.pod.namespace}/` : ''}${vif.pod.name ?? vif.pod.id}${vif.pod.netns ? `, netns ${vif.pod.netns}` : ''})` : '';
  const indent = ' '.repeat(12);
  const lines = [
    `${pad(`vif0/${vif.id}`, 12)}OS: ${vif.name}${pod}`,
    `${indent}Type:${VIF_TYPES[vif.kind] ?? vif.kind} HWaddr:${vif.mac} IPaddr:${vif.ip ?? '0.0.0.0'}${vif.ip6 ? ` IP6addr:${vif.ip6}` : ''}`,
    `${indent}Vrf:${vif.vrf < 0 ? '-' : `${vif.vrf}${vif.vrfName ? ` (${vif.vrfName})` : ''}`} Mtu:${vif.mtu}${vif.floatingIps.length ? ` FloatingIPs:${vif.floatingIps.map((fip) => fip.ip).join(',')}` : ''}`,
    // After Vrf, so Type and Vrf follow each other as in the kernel vrouter's vif.
    ...(vif.io ? [`${indent}Port:${vif.io}${vif.ioNote ? ` (${vif.ioNote})` : ''}`] : []),
    `${indent}RX packets:${vif.rxPackets}  bytes:${vif.rxBytes} errors:0`,
    `${indent}TX packets:${vif.txPackets}  bytes:${vif.txBytes} errors:0`,
  ];
  if (vif.rates) {
    lines.push(`${indent}RX pps:${human(vif.rates.rxPps)}  bps:${human(vif.rates.rxBitsPerSecond)}  TX pps:${human(vif.rates.txPps)}  bps:${human(vif.rates.txBitsPerSecond)}`);
  }
  return lines.join('\n');
}

function vifCommand(): Command {
  return new Command('vif')
    .description('list the vrouter interfaces (vifs) with counters and rates, or show one')
    .option('-l, --list', 'list every vif')
    .option('-g, --get <vif>', 'show one vif (number or name)')
    .addOption(jsonOption())
    .addOption(introspectOption())
    .action(async (options: { list?: boolean; get?: string; json?: boolean; introspect: string }) => {
      if (options.get !== undefined) {
        const vif = await introspectRequest<VifAnswer>(options.introspect, 'GET', `/api/vifs/${encodeURIComponent(options.get)}`);
        if (options.json) return printJson(vif);
        process.stdout.write(`${formatVif(vif)}\n`);
        return;
      }
      const vifs = await introspectRequest<VifAnswer[]>(options.introspect, 'GET', '/api/vifs');
      if (options.json) return printJson(vifs);
      process.stdout.write(
        [
          'Vrouter Interface Table',
          '',
          'Type: Physical=fabric (underlay), Virtual=pod TAP; pps/bps: rates over the last sample interval',
          '',
          vifs.map(formatVif).join('\n\n'),
          '',
        ].join('\n'),
      );
    });
}

// --- rt ----------------------------------------------------------------------

type RouteAnswer = RouteTableJson;

function ipNumber(text: string): number {
  return text.split('.').reduce((value, octet) => value * 256 + Number(octet), 0);
}

function inSubnet(prefix: string, subnets: string[]): boolean {
  const [address, lengthText] = prefix.split('/');
  const length = Number(lengthText);
  if (address.includes(':')) {
    return subnets.some((subnet) => {
      const [base, baseLength] = subnet.split('/');
      return length >= Number(baseLength) && inPrefix6(ip6FromString(address), 0, ip6FromString(base), Number(baseLength));
    });
  }
  return subnets.some((subnet) => {
    const [base, baseLengthText] = subnet.split('/');
    const baseLength = Number(baseLengthText);
    if (length < baseLength) return false;
    const size = 2 ** (32 - baseLength);
    return Math.floor(ipNumber(address) / size) === Math.floor(ipNumber(base) / size);
  });
}

export function formatRoutes(answer: RouteAnswer, subnets: string[]): string {
  const lines = [
    'Flags: L=Label Valid, P=Proxy ARP, T=Trap ARP, F=Flood ARP',
    `vRouter ${answer.family === 'inet6' ? 'inet6' : 'inet4'} routing table 0/${answer.vrf}/unicast (${answer.vrfName})`,
    'Destination           Flags        Label         Nexthop    Stitched MAC(Index)',
  ];
  for (const route of answer.routes) {
    const flags = `${route.label !== null ? 'L' : ''}${inSubnet(route.prefix, subnets) ? 'P' : ''}`;
    const label = route.label ?? '-';
    const stitched = route.mac !== null ? `${route.mac.split(':').map((octet) => parseInt(octet, 16).toString(16)).join(':')}(${route.vif})` : '-';
    // IPv6 prefixes can be longer than the column: they push the rest along, as the reference's rt does.
    lines.push(`${pad(route.prefix, 22)}${padLeft(flags, 5)}${padLeft(label, 15)}${padLeft(route.nexthop, 16)}        ${stitched}`);
  }
  return lines.join('\n');
}

function rtCommand(): Command {
  return new Command('rt')
    .description('dump the routes of a VRF (name or id), optionally those inside or covering a prefix')
    .requiredOption('--dump <vrf>', 'the VRF (VN name or VRF id)')
    .option('--prefix <a.b.c.d/len>', 'only routes inside, or covering, this prefix')
    .addOption(new Option('--family <family>', 'inet (IPv4) or inet6').choices(['inet', 'inet6']).default('inet'))
    .addOption(jsonOption())
    .addOption(introspectOption())
    .action(async (options: { dump: string; prefix?: string; family: string; json?: boolean; introspect: string }) => {
      const query = new URLSearchParams({ vrf: options.dump, family: options.family, ...(options.prefix ? { prefix: options.prefix } : {}) });
      const [answer, vrfs] = await Promise.all([
        introspectRequest<RouteAnswer>(options.introspect, 'GET', `/api/routes?${query}`),
        introspectRequest<Array<{ id: number; subnets: string[]; subnets6: string[] }>>(options.introspect, 'GET', '/api/vrfs'),
      ]);
      if (options.json) return printJson(answer);
      const vrf = vrfs.find((candidate) => candidate.id === answer.vrf);
      process.stdout.write(`${formatRoutes(answer, (options.family === 'inet6' ? vrf?.subnets6 : vrf?.subnets) ?? [])}\n`);
    });
}

// --- nh ----------------------------------------------------------------------

/** A nexthop as the introspect API gives it. */
type NexthopAnswer = NexthopJson;

const NH_TYPES: Record<string, string> = { encap: 'Encap', tunnel: 'Tunnel', composite: 'Composite', receive: 'Receive', discard: 'Drop', none: 'Invalid' };

export function formatNexthop(nexthop: NexthopAnswer, all: NexthopAnswer[]): string {
  const indent = ' '.repeat(14);
  const head = `${pad(`Id:${nexthop.id}`, 14)}${pad(`Type:${NH_TYPES[nexthop.kind] ?? nexthop.kind}`, 20)}Fmly: AF_INET  Rid:0  ${pad(`Ref_cnt:${nexthop.refCount}`, 19)}Vrf:${nexthop.vn < 0 ? 0 : nexthop.vn}`;
  const lines = [head];
  switch (nexthop.kind) {
    case 'encap':
      lines.push(`${indent}Flags:Valid, Policy, `, `${indent}EncapFmly:0806 Oif:${nexthop.vif} Len:14`, `${indent}Encap Data: ${macBytes(nexthop.mac)} ${VROUTER_MAC} 08 00 `);
      break;
    case 'tunnel':
      lines.push(
        `${indent}Flags:Valid, ${nexthop.encap === 'gre' ? 'MPLSoGRE' : 'MPLSoUDP'}, `,
        `${indent}Oif:${nexthop.vif} Len:14 Data:${macBytes(nexthop.mac)} ${VROUTER_MAC} 08 00 `,
        `${indent}Sip:${nexthop.sip ?? '0.0.0.0'} Dip:${nexthop.dip ?? '0.0.0.0'}`,
        `${indent}Label:${nexthop.label}`,
      );
      break;
    case 'composite': {
      const members = (nexthop.members ?? []).map((member) => {
        if (member < 0) return '-';
        const sub = all.find((candidate) => candidate.id === member);
        return `${member}(${sub && sub.kind === 'tunnel' ? sub.label : '-'})`;
      });
      lines.push(`${indent}Flags:Valid, Policy, Ecmp, `, `${indent}Valid Hash Key Parameters: Proto,SrcIP,SrcPort,DstIp,DstPort`, `${indent}Sub NH(label): ${members.join(' ')}`);
      break;
    }
    default:
      lines.push(`${indent}Flags:Valid, `);
  }
  return lines.join('\n');
}

function nhCommand(): Command {
  return new Command('nh')
    .description('list the nexthops, or show one')
    .option('-l, --list', 'list every nexthop')
    .option('-g, --get <id>', 'show one nexthop')
    .addOption(jsonOption())
    .addOption(introspectOption())
    .action(async (options: { list?: boolean; get?: string; json?: boolean; introspect: string }) => {
      const all = await introspectRequest<NexthopAnswer[]>(options.introspect, 'GET', '/api/nexthops');
      let shown = all;
      if (options.get !== undefined) {
        const one = all.find((nexthop) => String(nexthop.id) === options.get);
        if (!one) throw new Error(`no nexthop ${options.get} (nexthops: ${all.map((nexthop) => nexthop.id).join(', ')})`);
        if (options.json) return printJson(one);
        shown = [one];
      } else if (options.json) {
        return printJson(all);
      }
      process.stdout.write(shown.map((nexthop) => formatNexthop(nexthop, all)).join('\n\n') + '\n');
    });
}

// --- mpls --------------------------------------------------------------------

function mplsCommand(): Command {
  return new Command('mpls')
    .description('dump the MPLS incoming label map (label -> nexthop)')
    .option('-d, --dump', 'every label (the default)')
    .option('-g, --get <label>', 'one label')
    .addOption(jsonOption())
    .addOption(introspectOption())
    .action(async (options: { dump?: boolean; get?: string; json?: boolean; introspect: string }) => {
      let labels = await introspectRequest<Array<{ label: number; nexthop: number }>>(options.introspect, 'GET', '/api/mpls');
      labels.sort((a, b) => a.label - b.label);
      if (options.get !== undefined) {
        labels = labels.filter((entry) => String(entry.label) === options.get);
        if (labels.length === 0) throw new Error(`no label ${options.get} in the label map`);
      }
      if (options.json) return printJson(options.get !== undefined ? labels[0] : labels);
      const lines = ['MPLS Input Label Map', '', '   Label    NextHop', '-------------------'];
      for (const entry of labels) lines.push(`${padLeft(entry.label, 8)}${padLeft(entry.nexthop, 11)}`);
      process.stdout.write(lines.join('\n') + '\n');
    });
}

// --- flow --------------------------------------------------------------------

/** A flow entry as the introspect API gives it. */
interface FlowAnswer extends FlowJson {
  vrfName: string | null;
  replied: boolean;
}

const NAT_FLAGS: Record<string, string> = { snat: 'S', dnat: 'D', spat: 'Ps', dpat: 'Pd' };

function flowAction(flow: FlowAnswer): string {
  switch (flow.action) {
    case 'forward':
      return 'F';
    case 'drop':
      return 'D';
    case 'nat':
      return `N(${flow.nat.map((flag) => NAT_FLAGS[flag] ?? flag).join('')})`;
    default:
      return flow.action === 'none' ? 'H' : flow.action;
  }
}

/** address:port, the IPv6 address in brackets (RFC 5952 6). */
function endpoint(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

export function formatFlow(flow: FlowAnswer): string {
  const protocol = PROTOCOL_NUMBERS[flow.protocol] ?? flow.protocol;
  const index = `${padLeft(flow.index, 9)}<=>${pad(flow.reverseIndex, 9)}`;
  return [
    `${index}${pad(endpoint(flow.src, flow.srcPort), 52)}${padLeft(protocol, 3)} (${flow.vrf})`,
    `${' '.repeat(21)}${endpoint(flow.dst, flow.dstPort)}`,
    `(K(nh):${flow.nexthop >= 0 ? flow.nexthop : "-"}, Action:${flowAction(flow)}, Flags:${flow.replied ? '' : 'N'}, E:${flow.ecmpSlot >= 0 ? flow.ecmpSlot : '-'}, Stats:${flow.packets}/${flow.bytes})`,
  ].join('\n');
}

/** `--match "10.1.1.3:80 & vrf 1 & proto tcp"` (the OpenContrail flow tool's form) as API query parameters. */
export function parseFlowMatch(text: string): Record<string, string> {
  const query: Record<string, string> = {};
  for (const clause of text.split('&').map((part) => part.trim()).filter(Boolean)) {
    const words = clause.split(/\s+/);
    if (words[0] === 'vrf' && words.length === 2) query.vrf = words[1];
    else if ((words[0] === 'proto' || words[0] === 'protocol') && words.length === 2) query.protocol = words[1];
    else if (words[0] === 'port' && words.length === 2 && /^\d+$/.test(words[1])) query.port = words[1];
    else if (words.length === 1) {
      // [v6]:port, a bare IPv6 address, or a.b.c.d[:port].
      const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(words[0]);
      const [ip, port] = bracketed ? [bracketed[1], bracketed[2]] : words[0].includes('::') || words[0].split(':').length > 2 ? [words[0], undefined] : words[0].split(':');
      if (!(IPV4.test(ip) || isIpv6(ip)) || (port !== undefined && !/^\d+$/.test(port))) throw new Error(`--match ${text}: ${clause}: expected <ip>[:<port>], vrf <vrf>, proto <tcp|udp|icmp> or port <n>, joined with &`);
      query.ip = ip;
      if (port !== undefined) query.port = port;
    } else throw new Error(`--match ${text}: ${clause}: expected <ip>[:<port>], vrf <vrf>, proto <tcp|udp|icmp> or port <n>, joined with &`);
  }
  return query;
}

function flowCommand(): Command {
  return new Command('flow')
    .description('list the flow table (forward and reverse entries, action, NAT, ECMP index, stats)')
    .option('-l, --list', 'list flows (the default)')
    .option('--match <filter>', 'only flows matching "<ip>[:<port>] & vrf <vrf> & proto <tcp|udp|icmp>"')
    .option('--vrf <vrf>', 'only flows of this VRF (name or id)')
    .option('--offset <n>', 'skip the first n matching entries', (value: string) => Number(value))
    .option('--limit <n>', 'at most n entries', (value: string) => Number(value))
    .addOption(jsonOption())
    .addOption(introspectOption())
    .action(async (options: { list?: boolean; match?: string; vrf?: string; offset?: number; limit?: number; json?: boolean; introspect: string }) => {
      const filter = { ...(options.match ? parseFlowMatch(options.match) : {}), ...(options.vrf ? { vrf: options.vrf } : {}) };
      const limit = options.limit ?? Number.MAX_SAFE_INTEGER;
      let offset = options.offset ?? 0;
      const flows: FlowAnswer[] = [];
      let total = 0;
      for (;;) {
        const page = Math.min(FLOW_PAGE, limit - flows.length);
        const query = new URLSearchParams({ ...filter, offset: String(offset), limit: String(page) });
        const answer = await introspectRequest<{ total: number; flows: FlowAnswer[] }>(options.introspect, 'GET', `/api/flows?${query}`);
        total = answer.total;
        flows.push(...answer.flows);
        offset += answer.flows.length;
        if (answer.flows.length < page || flows.length >= limit || offset >= total) break;
      }
      if (options.json) return printJson({ total, offset: options.offset ?? 0, flows });
      const summary = await introspectRequest<{ flows: number; flowCapacity: number; flowEvictions: number }>(options.introspect, 'GET', '/api/summary');
      const lines = [
        `Flow table(entries ${summary.flowCapacity * 2})`,
        '',
        `Entries: Active pairs ${summary.flows}, Evicted ${summary.flowEvictions}${Object.keys(filter).length ? `, Matching ${total}` : ''}`,
        '',
        'Action:F=Forward, D=Drop N=NAT(S=SNAT, D=DNAT, Ps=SPAT, Pd=DPAT) H=Hold',
        ' Other:K(nh)=Key_Nexthop, E=ECMP index',
        ' Flags:N=No reply seen yet',
        '',
        '    Index                Source:Port/Destination:Port                      Proto(V)',
        '-----------------------------------------------------------------------------------',
      ];
      for (const flow of flows) lines.push(formatFlow(flow), '');
      process.stdout.write(lines.join('\n') + '\n');
    });
}

// --- dropstats ---------------------------------------------------------------

/** OpenContrail's dropstats names where one exists, in its groups. */
export const DROP_LABELS: Array<Array<[string, string]>> = [
  [
    ['invalid-vif', 'Invalid IF'],
    ['no-headroom', 'Push Fails'],
    ['truncated', 'Pull Fails'],
  ],
  [
    ['flow-action-drop', 'Flow Action Drop'],
    ['flow-table-full', 'Flow Table Full'],
    ['vif-flow-limit', 'Flow Limit Exceeded'],
    ['icmp-error-no-flow', 'Flow ICMP Error No Flow'],
  ],
  [
    ['discard', 'Discards'],
    ['ttl-expired', 'TTL Exceeded'],
    ['invalid-nexthop', 'Invalid NH'],
    ['ecmp-no-member', 'ECMP No Member'],
    ['no-route', 'No L3 Route'],
    ['not-for-vrouter', 'Nowhere to go'],
    ['spoofed-source', 'Invalid Source'],
    ['invalid-tunnel-source', 'Invalid Tunnel Source'],
  ],
  [
    ['invalid-label', 'Invalid Label'],
    ['invalid-mpls-stack', 'Invalid MPLS Stack'],
    ['mpls-ttl-expired', 'MPLS TTL Exceeded'],
    ['invalid-protocol', 'Invalid Protocol'],
    ['bad-gre-header', 'Invalid GRE Header'],
    ['fragmented-tunnel', 'Fragmented Tunnel'],
  ],
  [
    ['unknown-ethertype', 'Invalid Ethertype'],
    ['ipv6-unsupported', 'IPv6 Unsupported'],
    ['ipv6-chain-truncated', 'IPv6 Header Chain Cut Short'],
    ['ipv6-chain-too-long', 'IPv6 Header Chain Too Long'],
    ['ipv6-bad-extension-header', 'IPv6 Bad Extension Header'],
    ['multicast-not-forwarded', 'No L2 Route'],
    ['bad-ip-header', 'Invalid Packets'],
    ['bad-checksum', 'Checksum errors'],
    ['arp-not-proxied', 'ARP notme'],
    ['nd-not-proxied', 'ND notme'],
  ],
  [
    ['fragment-needed', 'Fragment Needed (DF)'],
    ['fragment-overlap', 'Fragment Overlap'],
    ['fragment-timeout', 'Fragment Timeout'],
    ['fragment-hold-full', 'Fragment Queueing Failures'],
    ['fragment-vif-limit', 'Fragment Intf Limit'],
    ['fragment-hold-vif-limit', 'Fragment Queue Intf Limit'],
  ],
];

export function formatDropstats(reasons: Record<string, number>): string {
  const known = new Set(DROP_LABELS.flat().map(([reason]) => reason));
  const groups = DROP_LABELS.map((group) => group.map(([reason, label]) => `${pad(label, 31)}${reasons[reason] ?? 0}`));
  const others = Object.keys(reasons).filter((reason) => !known.has(reason));
  if (others.length) groups.push(others.map((reason) => `${pad(reason, 31)}${reasons[reason]}`));
  return groups.map((group) => group.join('\n')).join('\n\n');
}

function dropstatsCommand(): Command {
  return new Command('dropstats')
    .description('print one counter per drop reason, or clear them')
    .option('--clear', 'zero every drop counter')
    .addOption(jsonOption())
    .addOption(introspectOption())
    .action(async (options: { clear?: boolean; json?: boolean; introspect: string }) => {
      if (options.clear) {
        await introspectRequest(options.introspect, 'POST', '/api/drops/clear', {});
        if (options.json) printJson({ cleared: true });
        else process.stdout.write('Drop statistics cleared\n');
        return;
      }
      const drops = await introspectRequest<{ total: number; reasons: Record<string, number> }>(options.introspect, 'GET', '/api/drops');
      if (options.json) return printJson(drops);
      process.stdout.write(`${formatDropstats(drops.reasons)}\n\n${pad('Total', 31)}${drops.total}\n`);
    });
}

// --- vrfstats ----------------------------------------------------------------

interface VnTrafficAnswer extends VnTrafficJson {
  rates: { inPps: number; inBitsPerSecond: number; outPps: number; outBitsPerSecond: number; dropsPerSecond: number } | null;
}

export function formatVrfstats(vn: VnTrafficAnswer): string {
  const lines = [
    `Vrf: ${vn.vrf} (${vn.vn})`,
    `Packets In ${vn.packetsIn}, Bytes In ${vn.bytesIn}, Packets Out ${vn.packetsOut}, Bytes Out ${vn.bytesOut}`,
    `Flows ${vn.flows}, Discards ${vn.drops}`,
  ];
  if (vn.rates) {
    lines.push(`Rate In ${human(vn.rates.inPps)} pps ${human(vn.rates.inBitsPerSecond)} bps, Rate Out ${human(vn.rates.outPps)} pps ${human(vn.rates.outBitsPerSecond)} bps, Discards ${human(vn.rates.dropsPerSecond)}/s`);
  }
  return lines.join('\n');
}

function vrfstatsCommand(): Command {
  return new Command('vrfstats')
    .description('per VRF (VN): packets and bytes in (from its pods) and out (to them), flows, drops, rates')
    .option('--dump', 'every VRF (the default)')
    .option('--get <vrf>', 'one VRF (name or id)')
    .addOption(jsonOption())
    .addOption(introspectOption())
    .action(async (options: { dump?: boolean; get?: string; json?: boolean; introspect: string }) => {
      let vns = await introspectRequest<VnTrafficAnswer[]>(options.introspect, 'GET', '/api/vn-traffic');
      if (options.get !== undefined) {
        vns = vns.filter((vn) => vn.vn === options.get || String(vn.vrf) === options.get);
        if (vns.length === 0) throw new Error(`no VRF ${options.get}`);
      }
      if (options.json) return printJson(options.get !== undefined ? vns[0] : vns);
      process.stdout.write(vns.map(formatVrfstats).join('\n\n') + '\n');
    });
}

// --- vifdump -----------------------------------------------------------------

function ip4(bytes: Buffer, at: number): string {
  return `${bytes[at]}.${bytes[at + 1]}.${bytes[at + 2]}.${bytes[at + 3]}`;
}

function describeIpv4(frame: Buffer, at: number, depth = 0): string {
  if (frame.length < at + 20) return 'IPv4 (truncated)';
  const headerLength = (frame[at] & 0x0f) * 4;
  const protocol = frame[at + 9];
  const src = ip4(frame, at + 12);
  const dst = ip4(frame, at + 16);
  const total = frame.readUInt16BE(at + 2);
  const l4 = at + headerLength;
  const fragment = frame.readUInt16BE(at + 6) & 0x1fff;
  if (fragment !== 0) return `IPv4 ${src} > ${dst}: fragment offset ${fragment * 8}, proto ${protocol}, length ${total}`;
  if (protocol === 1 && frame.length >= l4 + 8) {
    const type = frame[l4];
    const kinds: Record<number, string> = { 0: 'echo reply', 3: 'destination unreachable', 8: 'echo request', 11: 'time exceeded' };
    const echo = type === 0 || type === 8 ? `, id ${frame.readUInt16BE(l4 + 4)}, seq ${frame.readUInt16BE(l4 + 6)}` : '';
    return `IPv4 ${src} > ${dst}: ICMP ${kinds[type] ?? `type ${type}`}${echo}, length ${total - headerLength}`;
  }
  if (protocol === 6 && frame.length >= l4 + 14) {
    const flags = frame[l4 + 13];
    const names = [
      [0x02, 'S'],
      [0x01, 'F'],
      [0x04, 'R'],
      [0x08, 'P'],
      [0x10, '.'],
    ] as const;
    const text = names.filter(([bit]) => flags & bit).map(([, name]) => name).join('');
    const payload = total - headerLength - ((frame[l4 + 12] >>> 4) * 4);
    return `IPv4 ${src}.${frame.readUInt16BE(l4)} > ${dst}.${frame.readUInt16BE(l4 + 2)}: TCP Flags [${text}], seq ${frame.readUInt32BE(l4 + 4)}, length ${payload}`;
  }
  if (protocol === 17 && frame.length >= l4 + 8) {
    const dstPort = frame.readUInt16BE(l4 + 2);
    const base = `IPv4 ${src}.${frame.readUInt16BE(l4)} > ${dst}.${dstPort}: UDP, length ${frame.readUInt16BE(l4 + 4) - 8}`;
    if ((dstPort === 6635 || dstPort === 51234) && depth === 0 && frame.length >= l4 + 12) return `${base}, ${describeMpls(frame, l4 + 8)}`;
    return base;
  }
  if (protocol === 47 && depth === 0 && frame.length >= l4 + 8 && frame.readUInt16BE(l4 + 2) === 0x8847) return `IPv4 ${src} > ${dst}: GRE, ${describeMpls(frame, l4 + 4)}`;
  return `IPv4 ${src} > ${dst}: proto ${protocol}, length ${total}`;
}

function describeMpls(frame: Buffer, at: number): string {
  const word = frame.readUInt32BE(at);
  const label = word >>> 12;
  const bottom = (word >>> 8) & 1;
  const ttl = word & 0xff;
  return `MPLS (label ${label}, S ${bottom}, ttl ${ttl}) ${describeIpv4(frame, at + 4, 1)}`;
}

/** One line per frame, tcpdump style. */
export function describeFrame(frame: Buffer): string {
  if (frame.length < 14) return `truncated frame, ${frame.length} bytes`;
  const mac = (at: number) => [...frame.subarray(at, at + 6)].map((byte) => byte.toString(16).padStart(2, '0')).join(':');
  const type = frame.readUInt16BE(12);
  const link = `${mac(6)} > ${mac(0)}`;
  if (type === 0x0800) return `${link}, ${describeIpv4(frame, 14)}`;
  if (type === 0x0806 && frame.length >= 42) {
    const op = frame.readUInt16BE(20);
    return op === 1 ? `${link}, ARP, Request who-has ${ip4(frame, 38)} tell ${ip4(frame, 28)}` : `${link}, ARP, Reply ${ip4(frame, 28)} is-at ${mac(22)}`;
  }
  if (type === 0x86dd) return `${link}, IPv6, length ${frame.length - 14}`;
  return `${link}, ethertype 0x${type.toString(16).padStart(4, '0')}, length ${frame.length}`;
}

function timeOfDay(seconds: number, microseconds: number): string {
  const date = new Date(seconds * 1000);
  const two = (value: number) => String(value).padStart(2, '0');
  return `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}.${String(microseconds).padStart(6, '0')}`;
}

/** How long a stream is still read after Ctrl-C: what the server drained meanwhile (every 50 ms) arrives. */
const LINGER_MS = 250;

/** Stops on SIGINT/SIGTERM (after LINGER_MS) or when `ended` resolves; runs finish once. */
function untilStopped(stop: () => void, ended: Promise<void>, finish: () => void): Promise<void> {
  return new Promise((resolve) => {
    let done = false;
    const end = () => {
      if (done) return;
      done = true;
      process.off('SIGINT', interrupted);
      process.off('SIGTERM', interrupted);
      stop();
      finish();
      resolve();
    };
    const interrupted = () => setTimeout(end, LINGER_MS);
    process.once('SIGINT', interrupted);
    process.once('SIGTERM', interrupted);
    void ended.then(end);
  });
}

function vifdumpCommand(): Command {
  return new Command('vifdump')
    .description('capture what crosses a vif: frames as the pod sends and receives them (before encapsulation), the encapsulated frames on the fabric')
    .argument('<vif>', 'vif number or name')
    .option('-w, --write <file>', 'write the frames to a pcap file (- for stdout) instead of printing them')
    .option('-c, --count <n>', 'stop after n frames', (value: string) => Number(value))
    .addOption(jsonOption())
    .addOption(introspectOption())
    .action(async (vif: string, options: { write?: string; count?: number; json?: boolean; introspect: string }) => {
      let captured = 0;
      let lost = 0;
      const toStdout = options.write === '-';
      const writer = options.write !== undefined && !toStdout ? new PcapWriter(options.write, { nanosecond: false, snaplen: 65535 }) : null;
      let limitReached: () => void = () => undefined;
      const reachedLimit = new Promise<void>((resolve) => (limitReached = resolve));
      const onLine = (line: string) => {
        if (options.count !== undefined && captured >= options.count) return;
        const message = JSON.parse(line) as { type: string; seconds?: number; microseconds?: number; direction?: string; data?: string; count?: number; name?: string; kind?: string; vif?: number; captures?: string };
        if (message.type === 'start') {
          const target = `vif ${message.vif} (${message.name}, ${message.kind})`;
          const where = writer ? `, writing to ${options.write}` : '';
          process.stderr.write(`vifdump: listening on ${target}: ${message.captures}${where}\n`);
          return;
        }
        if (message.type === 'lost') {
          lost += message.count ?? 0;
          return;
        }
        if (message.type !== 'frame') return;
        captured++;
        const frame = Buffer.from(message.data ?? '', 'base64');
        if (writer) writer.write(BigInt(message.seconds ?? 0) * 1_000_000_000n + BigInt(message.microseconds ?? 0) * 1000n, frame, 0, frame.length);
        else if (toStdout) {
          const header = Buffer.alloc(16);
          header.writeUInt32LE(message.seconds ?? 0, 0);
          header.writeUInt32LE(message.microseconds ?? 0, 4);
          header.writeUInt32LE(frame.length, 8);
          header.writeUInt32LE(frame.length, 12);
          process.stdout.write(Buffer.concat([header, frame]));
        } else if (options.json) process.stdout.write(line + '\n');
        else process.stdout.write(`${timeOfDay(message.seconds ?? 0, message.microseconds ?? 0)} ${message.direction === 'tx' ? 'Out' : 'In '} ${describeFrame(frame)}\n`);
        if (options.count !== undefined && captured >= options.count) limitReached();
      };
      if (toStdout) {
        const header = Buffer.alloc(24);
        header.writeUInt32LE(0xa1b2c3d4, 0);
        header.writeUInt16LE(2, 4);
        header.writeUInt16LE(4, 6);
        header.writeUInt32LE(65535, 16);
        header.writeUInt32LE(1, 20);
        process.stdout.write(header);
      }
      const split = lineSplitter(onLine);
      const stream = await openStream(options.introspect, `/api/capture/${encodeURIComponent(vif)}?format=ndjson`, (chunk) => {
        split(chunk);
        writer?.flush();
      });
      await untilStopped(
        () => stream.stop(),
        Promise.race([stream.ended, reachedLimit]),
        () => {
          writer?.close();
          process.stderr.write(`vifdump: ${captured} packets captured${lost ? `, ${lost} lost (the capture ring was full)` : ''}\n`);
        },
      );
    });
}

// --- trace -------------------------------------------------------------------

/** "tcp 10.1.1.3:40000 > 10.1.1.5:80", "icmp 10.1.1.3 > 10.1.1.5" -> the synthetic packet's fields. */
export function parseTraceSpec(text: string): { protocol: 'tcp' | 'udp' | 'icmp'; src: string; dst: string; srcPort?: number; dstPort?: number } {
  // a.b.c.d[:port], or an IPv6 address in brackets with an optional port: [fd00::3]:40000.
  const endpoint = '(?:([\\d.]+)|\\[([0-9a-fA-F:.]+)\\])(?::(\\d+))?';
  const parsed = new RegExp(`^\\s*(tcp|udp|icmp)\\s+${endpoint}\\s*>\\s*${endpoint}\\s*$`, 'i').exec(text);
  const match = parsed && [parsed[0], parsed[1], parsed[2] ?? parsed[3], parsed[4], parsed[5] ?? parsed[6], parsed[7]];
  const valid = (address: string, bracketed: boolean) => (bracketed ? isIpv6(address) : IPV4.test(address));
  if (!match || !parsed || !valid(match[2], parsed[3] !== undefined) || !valid(match[4], parsed[6] !== undefined) || (parsed[3] === undefined) !== (parsed[6] === undefined)) {
    throw new Error(`${JSON.stringify(text)}: expected '<tcp|udp|icmp> <src>[:<sport>] > <dst>[:<dport>]', e.g. 'tcp 10.1.1.3:40000 > 10.1.1.5:80' or 'tcp [fd00::3]:40000 > [fd00::5]:80'`);
  }
  const port = (value: string | undefined) => {
    if (value === undefined) return undefined;
    const number = Number(value);
    if (number > 65535) throw new Error(`${JSON.stringify(text)}: port ${value} is outside 0..65535`);
    return number;
  };
  return {
    protocol: match[1].toLowerCase() as 'tcp' | 'udp' | 'icmp',
    src: match[2],
    dst: match[4],
    ...(match[3] !== undefined ? { srcPort: port(match[3]) } : {}),
    ...(match[5] !== undefined ? { dstPort: port(match[5]) } : {}),
  };
}

function traceCommand(): Command {
  return new Command('trace')
    .description("run a synthetic packet through the live pipeline's steps (not sent, no state changed) and print each step's decision")
    .argument('<packet>', "'<tcp|udp|icmp> <src>[:<sport>] > <dst>[:<dport>]' (IPv6 in brackets; for icmp the source port is the echo id)")
    .requiredOption('--vif <vif>', 'the vif the packet comes in on (number or name)')
    .option('--ttl <n>', 'IP TTL (default 64)', (value: string) => Number(value))
    .option('--node <address>', 'for the fabric vif: the sending node underlay address')
    .option('--label <label>', 'for the fabric vif: the MPLS label', (value: string) => Number(value))
    .addOption(jsonOption())
    .addOption(introspectOption())
    .action(async (text: string, options: { vif: string; ttl?: number; node?: string; label?: number; json?: boolean; introspect: string }) => {
      const packet = {
        vif: options.vif,
        ...parseTraceSpec(text),
        ...(options.ttl !== undefined ? { ttl: options.ttl } : {}),
        ...(options.node !== undefined ? { node: options.node } : {}),
        ...(options.label !== undefined ? { label: options.label } : {}),
      };
      const answer = await introspectRequest<{ steps: string[] }>(options.introspect, 'POST', '/api/trace', packet);
      const final = [...answer.steps].reverse().find((line) => /^\s*(transmit|drop|held)\b/.test(line))?.trim() ?? 'unknown';
      if (options.json) return printJson({ ...answer, final });
      const ports = packet.protocol === 'icmp' ? `,icmp_id=${packet.srcPort ?? 1}` : `,tp_src=${packet.srcPort ?? 40000},tp_dst=${packet.dstPort ?? 80}`;
      const outer = packet.node !== undefined ? `,tun_src=${packet.node},mpls_label=${packet.label}` : '';
      const lines = [`Flow: ${packet.protocol},in_vif=${packet.vif}${outer},nw_src=${packet.src},nw_dst=${packet.dst},nw_ttl=${packet.ttl ?? 64}${ports}`, '', ...answer.steps, '', `Final decision: ${final}`];
      process.stdout.write(lines.join('\n') + '\n');
    });
}

// --- monitor -----------------------------------------------------------------

interface DropEventAnswer {
  type: 'drop';
  time: number;
  reason: string;
  vif: number;
  vifName: string | null;
  pod: string | null;
  vrf: number;
  vn: string | null;
  protocol: string | null;
  src: string | null;
  dst: string | null;
  srcPort: number | null;
  dstPort: number | null;
}

export function formatDropEvent(event: DropEventAnswer): string {
  const vif = `vif ${event.vif}${event.vifName ? ` (${event.vifName})` : ''}`;
  const pod = event.pod ? ` pod ${event.pod}` : '';
  const vrf = event.vrf >= 0 ? `, vrf ${event.vrf}${event.vn ? ` (${event.vn})` : ''}` : '';
  const endpoint = (ip: string | null, port: number | null) => `${ip ?? '?'}${port !== null && event.protocol !== 'icmp' ? `:${port}` : ''}`;
  const tuple = event.src === null ? 'no IPv4 header' : `${endpoint(event.src, event.srcPort)} -> ${endpoint(event.dst, event.dstPort)} ${event.protocol ?? ''}${event.protocol === 'icmp' && event.srcPort !== null ? ` id ${event.srcPort}` : ''}`;
  return `xx drop (${event.reason}) ${vif}${pod}${vrf}: ${tuple.trim()}`;
}

function monitorCommand(): Command {
  return new Command('monitor')
    .description('stream events of the live dataplane: dropped packets with reason, vif, pod and 5-tuple (rate-limited in the worker)')
    .option('--drops', 'dropped packets (the default and only kind for now)')
    .option('-c, --count <n>', 'stop after n events', (value: string) => Number(value))
    .addOption(jsonOption())
    .addOption(introspectOption())
    .action(async (options: { drops?: boolean; count?: number; json?: boolean; introspect: string }) => {
      let events = 0;
      let limitReached: () => void = () => undefined;
      const reachedLimit = new Promise<void>((resolve) => (limitReached = resolve));
      const onLine = (line: string) => {
        if (options.count !== undefined && events >= options.count) return;
        const message = JSON.parse(line) as { type: string; node?: string | null; count?: number };
        if (message.type === 'start') {
          process.stderr.write(`Listening for dropped packets on ${message.node ?? 'the vrouter'} (${options.introspect})\nPress Ctrl-C to quit\n`);
          return;
        }
        if (message.type === 'lost') {
          if (options.json) process.stdout.write(line + '\n');
          else process.stdout.write(`Lost ${message.count} events (the monitor ring was full)\n`);
          return;
        }
        if (message.type !== 'drop') return;
        events++;
        process.stdout.write(options.json ? line + '\n' : formatDropEvent(message as unknown as DropEventAnswer) + '\n');
        if (options.count !== undefined && events >= options.count) limitReached();
      };
      const stream = await openStream(options.introspect, '/api/monitor/drops', lineSplitter(onLine));
      await untilStopped(
        () => stream.stop(),
        Promise.race([stream.ended, reachedLimit]),
        () => undefined,
      );
    });
}

export function toolCommands(): Command[] {
  return [vifCommand(), rtCommand(), nhCommand(), mplsCommand(), flowCommand(), dropstatsCommand(), vrfstatsCommand(), vifdumpCommand(), traceCommand(), monitorCommand()];
}

