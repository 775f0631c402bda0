/**
 * A STAND-IN for the OpenContrail agent's port API, until vrouter-ts's own
 * agent serves these endpoints: it replays the real agent's answers as the
 * Contrail sources define them (tungstenfabric/tf-controller commit
 * 6a674397821187fedfffd9586942b906d3479dbc):
 *   - the routes, methods and the 404 "Unknown Request" of
 *     src/vnsw/agent/port_ipc/rest_server.cc (RESTHandlers_, lines 242-303;
 *     HandleRequest, lines 319-341);
 *   - the bodies of port_ipc_handler.cc: GET /vm-cfg from
 *     MakeJsonFromVmiConfig (lines 1080-1139), GET /vm from MakeJsonFromVmi
 *     (lines 1176-1255), both pretty-printed objects joined into '[...]' as
 *     GetVmVnCfgPort / GetVmVnPort do (lines 1053-1078, 1141-1174); POST /vm
 *     checked as MakeAddVmVnPortRequest does (lines 865-918) with
 *     check_port=false (rest_server.cc line 148), DELETE /vm always {}
 *     (lines 1042-1051);
 *   - errors as rest_common.cc writes them: {"error":"..."}, 500 unless 404,
 *     and the status line's reason always "OK".
 * What a pod looks like to it (vm uuid = pod uid, VM name
 * `<cluster>__<namespace>__<pod>`, the VMI's annotations cluster, owner,
 * project, namespace, name, index "0/1", network "default") is what
 * kube-manager writes (src/container/kube-manager/kube_manager/vnc/vnc_pod.py
 * _create_vm lines 296-313, vnc_pod_vmi_create lines 270-292 and 520-534;
 * config_db.py get_infra_annotations and _get_annotations lines 34-75).
 *
 * Run as a child process inside the node's network namespace (it listens on
 * that namespace's loopback); driven over the IPC channel:
 *   parent -> {op: 'configure', pod: StandinPod} | {op: 'unconfigure', name} | {op: 'requests'}
 *   child  -> {event: 'listening', port} | {event: 'requests', log: RequestLogEntry[]} | {event: 'done'}
 */
import * as http from 'node:http';
import { AddressInfo } from 'node:net';
import { VmAddRequest, VmCfgEntry, VmPortEntry } from '../../src/cni/agent-api-types';

export interface StandinPod {
  /** `<cluster>__<namespace>__<pod>`. */
  vmName: string;
  /** The pod's uid. */
  vmUuid: string;
  vmiUuid: string;
  vnUuid: string;
  vnName: string;
  projectUuid: string;
  mac: string;
  ip: string;
  plen: number;
  gateway: string;
  dns: string;
  /** The VMI's annotations, in kube-manager's keys. */
  annotations: Record<string, string>;
}

export interface RequestLogEntry {
  method: string;
  path: string;
  body: string;
  status: number;
  response: string;
}

export type StandinCommand = { op: 'configure'; pod: StandinPod } | { op: 'unconfigure'; name: string } | { op: 'requests' };
export type StandinEvent = { event: 'listening'; port: number } | { event: 'requests'; log: RequestLogEntry[] } | { event: 'done' };

const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';
/** The agent's program name in `author` (agent_->program_name()). */
const AUTHOR = '/usr/bin/contrail-vrouter-agent';

/** rapidjson's PrettyWriter: 4-space indent, `"key": value`. */
function pretty(value: unknown): string {
  return JSON.stringify(value, null, 4);
}

/** boost's duration_usecs_to_string of the time (agent/base/time_util.h): the text is not parsed by the CNI. */
function agentTime(): string {
  return new Date().toISOString().replace('T', ' ').replace('Z', '');
}

class AgentStandin {
  private readonly configs = new Map<string, StandinPod>();
  /** vm-uuid -> vmi-uuid -> the POST /vm body. */
  private readonly ports = new Map<string, Map<string, VmAddRequest>>();
  readonly log: RequestLogEntry[] = [];

  configure(pod: StandinPod): void {
    this.configs.set(pod.vmName, pod);
  }

  unconfigure(name: string): void {
    this.configs.delete(name);
  }

  handle(method: string, path: string, body: string): { status: number; text: string } {
    const route = (pattern: string) => new RegExp(`^${pattern}$`).exec(path);
    let match: RegExpExecArray | null;
    if (method === 'POST' && route('/vm')) return this.addPort(body);
    if (method === 'DELETE' && (match = route(`/vm/(${UUID})`))) {
      this.ports.delete(match[1]);
      return ok('{}');
    }
    if (method === 'GET' && (match = route(`/vm/(${UUID})(?:/(${UUID}))?`))) return this.getPorts(match[1], match[2]);
    if (method === 'GET' && (match = route('/vm-cfg/(.*)'))) return this.getConfig(decodeURIComponent(match[1]));
    return failure('Unknown Request', 404);
  }

  private addPort(body: string): { status: number; text: string } {
    let d: unknown;
    try {
      d = JSON.parse(body);
    } catch {
      return failure(`{ Invalid Json string ==> ${body} }`);
    }
    if (typeof d !== 'object' || d === null || Array.isArray(d)) {
      return failure(Array.isArray(d) ? `{ Arrays not supported in json for vm ==> ${body} }` : `{ Unexpected Json string ==> ${body} }`);
    }
    const message = d as Record<string, unknown>;
    // MakeAddVmVnPortRequest's order and wording: uuids "Invalid or missing data", strings "Invalid or missing field".
    const required: Array<[string, 'data' | 'field']> = [
      ['vm-uuid', 'data'],
      ['host-ifname', 'field'],
      ['vm-name', 'field'],
      ['vn-uuid', 'data'],
      ['vmi-uuid', 'data'],
    ];
    for (const [member, kind] of required) {
      if (typeof message[member] !== 'string') return failure(`{ Invalid or missing ${kind} for <${member}> }`);
    }
    const port = message as unknown as VmAddRequest;
    let vmis = this.ports.get(port['vm-uuid']);
    if (vmis === undefined) this.ports.set(port['vm-uuid'], (vmis = new Map()));
    vmis.set(port['vmi-uuid'], port);
    return ok('{}');
  }

  private podByUuid(vmUuid: string): StandinPod | undefined {
    return [...this.configs.values()].find((pod) => pod.vmUuid === vmUuid);
  }

  private getConfig(name: string): { status: number; text: string } {
    const pod = this.configs.get(name);
    if (pod === undefined) return failure('{ Not Found }', 404);
    const entry: VmCfgEntry = {
      id: pod.vmiUuid,
      'vm-uuid': pod.vmUuid,
      'vn-id': pod.vnUuid,
      'vn-name': pod.vnName,
      'mac-address': pod.mac,
      'sub-interface': false,
      'vlan-id': 0,
      annotations: Object.entries(pod.annotations).map(([key, value]) => `{${key}:${value}}`),
    };
    return ok(`[${pretty(entry)}]`);
  }

  /** The VMI is in the agent's interface table once the port is added and its config is known. */
  private getPorts(vmUuid: string, vmiUuid: string | undefined): { status: number; text: string } {
    const pod = this.podByUuid(vmUuid);
    const vmis = this.ports.get(vmUuid);
    if (pod === undefined || vmis === undefined || !vmis.has(pod.vmiUuid) || (vmiUuid !== undefined && vmiUuid !== pod.vmiUuid)) {
      return failure('{ Not Found }', 404);
    }
    const port = vmis.get(pod.vmiUuid)!;
    const entry: VmPortEntry = {
      id: pod.vmiUuid,
      'instance-id': pod.vmUuid,
      'vn-id': pod.vnUuid,
      'vm-project-id': pod.projectUuid,
      'mac-address': pod.mac,
      'system-name': port['host-ifname'],
      'rx-vlan-id': 65535,
      'tx-vlan-id': 65535,
      'vhostuser-mode': 0,
      'ip-address': pod.ip,
      plen: pod.plen,
      'dns-server': pod.dns,
      gateway: pod.gateway,
      author: AUTHOR,
      time: agentTime(),
    };
    return ok(`[${pretty(entry)}]`);
  }
}

function ok(text: string): { status: number; text: string } {
  return { status: 200, text };
}

function failure(message: string, status = 500): { status: number; text: string } {
  return { status, text: JSON.stringify({ error: message }) };
}

function main(): void {
  const standin = new AgentStandin();
  const send = (event: StandinEvent) => process.send?.(event);
  const server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const path = (request.url ?? '/').split('?')[0];
      const answer = standin.handle(request.method ?? 'GET', path, body);
      standin.log.push({ method: request.method ?? '', path, body, status: answer.status, response: answer.text });
      response.writeHead(answer.status, 'OK', { 'Content-Type': 'application/json; charset=UTF-8', 'Content-Length': Buffer.byteLength(answer.text) });
      response.end(answer.text);
    });
  });
  const port = Number(process.argv[2] ?? 0);
  server.listen(port, '127.0.0.1', () => send({ event: 'listening', port: (server.address() as AddressInfo).port }));
  process.on('message', (command: StandinCommand) => {
    if (command.op === 'requests') {
      send({ event: 'requests', log: standin.log.splice(0) });
      return;
    }
    if (command.op === 'configure') standin.configure(command.pod);
    else standin.unconfigure(command.name);
    send({ event: 'done' });
  });
  process.on('disconnect', () => process.exit(0));
}

if (require.main === module) main();
