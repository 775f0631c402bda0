/**
 * The daemon's port API on 127.0.0.1:9091, as the OpenContrail agent serves
 * it (tungstenfabric/tf-controller @ 6a674397821187fedfffd9586942b906d3479dbc,
 * src/vnsw/agent/port_ipc/rest_server.cc and rest_common.cc), for its real
 * clients: vrouter-port-control, the opencontrail kubelet plugin
 * (Juniper/contrail-kubernetes) and the Contrail CNI
 * (src/container/cni/contrail/vrouter.go).
 *
 *   POST   /port                 a port, or an array of ports (all or none)      200 {}
 *   DELETE /port/<uuid>          also for an unknown uuid                        200 {}
 *   GET    /port/<uuid>          the configured interface (MakeJsonFromVmi)     404 {"error":"{ Not Found }"}
 *   POST   /syncports            starts a new port version                       200 {}
 *   PUT    /enable-port/<uuid>, /disable-port/<uuid>   link state of a remote port
 *   GET    /vm-cfg/<vm-name>     the VM's interfaces as configuration has them  (the CNI, before it makes the veth)
 *   POST   /vm                   a VM's interface with its host interface       (the CNI, after)
 *   GET    /vm/<uuid>[/<vmi>]    the VM's configured interfaces                  (the CNI polls it)
 *   DELETE /vm/<uuid>            the VM's interfaces                             200 {}
 *   POST/DELETE /gateway         500 {"error":"{ Operation Not Supported }"}
 *   anything else                404 {"error":"Unknown Request"}
 *
 * Answers are written as the agent's: status line "HTTP/1.1 <code> OK"
 * whatever the code, Content-Type "application/json; charset=UTF-8", errors
 * as {"error":"{ <message> }"} with status 500 unless said otherwise, other
 * bodies as rapidjson's PrettyWriter writes them (agent-port.ts).
 * Deviation: an array with an invalid element is refused with that
 * element's error; the agent adds none of it but answers 200 {}.
 *
 * vrouter-ts's own requests, for nodes without Contrail tooling
 * (`vrouter port add`, scripts, tests):
 *   POST /port with a vrouter-ts body (no field of the agent's body, one of
 *     netns/ifname/vn/ip/mac/labels/attach/...: PortAddRequest), 201 with the port;
 *   DELETE /port/<id> of such a port, GET /ports;
 *   PUT /route, DELETE /route: routes set by hand when no control node distributes them;
 *   GET /stats: counters of the dataplane.
 * Those bodies are checked against a JSON schema; a bad request gets a 4xx
 * whose message names the field and the value.
 */
import * as http from 'node:http';
import Ajv, { ErrorObject } from 'ajv';
import { ApiError } from './api-error';
import { AgentJsonError, AgentPort, VmVnPort, jsonList, readAgentPorts, readVmVnPort } from './agent-port';

export interface PortAddRequest {
  /** The pod's id (unique per node). */
  id: string;
  name?: string;
  namespace?: string;
  labels?: Record<string, string>;
  /** Network namespace (as `ip netns` names it) to create the interface in. */
  netns?: string;
  /** The interface's name inside the pod. */
  ifname?: string;
  vn?: string;
  ip?: string;
  /** The pod's IPv6 address, as the agent's `ip6-address`. */
  ip6?: string;
  mac?: string;
  mtu?: number;
  /** The VN's subnet and gateway, when the state file does not define the VN. */
  subnet?: string;
  gateway?: string;
  /** The pod's interface: a veth pair (AF_XDP, AF_PACKET where refused) or a TAP; default VROUTER_POD_PORT, else veth. */
  kind?: 'veth' | 'tap';
  /** Create and configure the interface in the pod namespace (default true when netns is given; false: a TAP in the node's namespace). */
  configure?: boolean;
  /**
   * Instead of creating a TAP device, attach this existing interface of the
   * node's namespace (e.g. the host side of the pod's veth) through libpcap.
   */
  attach?: string;
  /** The MPLS label remote nodes use to reach the pod (default: the next free one). */
  label?: number;
  /** Service ClusterIPs this pod backs, with their port maps. */
  floatingIps?: Array<{ ip: string; portMap?: Array<{ protocol: 'tcp' | 'udp'; port: number; targetPort?: number }> }>;
}

const ipv4Pattern = '^(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)(\\.(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)){3}$';
/** The shape of IPv6 text; the dataplane's parser rejects what is not an address. */
const ipv6Pattern = '^[0-9a-fA-F:.]*:[0-9a-fA-F:.]*$';
const name = { type: 'string', minLength: 1, maxLength: 253 };

const portSchema = {
  type: 'object',
  properties: {
    id: { type: 'string', minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9._:-]+$' },
    name,
    namespace: name,
    labels: { type: 'object', additionalProperties: { type: 'string' } },
    netns: { type: 'string', minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9._-]+$' },
    ifname: { type: 'string', minLength: 1, maxLength: 15, pattern: '^[A-Za-z0-9._-]+$' },
    vn: name,
    ip: { type: 'string', pattern: ipv4Pattern },
    ip6: { type: 'string', pattern: ipv6Pattern },
    mac: { type: 'string', pattern: '^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$' },
    mtu: { type: 'integer', minimum: 576, maximum: 9000 },
    subnet: { type: 'string', pattern: '^[0-9.]+/[0-9]{1,2}$' },
    gateway: { type: 'string', pattern: ipv4Pattern },
    configure: { type: 'boolean' },
    kind: { enum: ['veth', 'tap'] },
    attach: { type: 'string', minLength: 1, maxLength: 15, pattern: '^[A-Za-z0-9._@-]+$' },
    label: { type: 'integer', minimum: 16, maximum: 65535 },
    floatingIps: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          ip: { type: 'string', anyOf: [{ pattern: ipv4Pattern }, { pattern: ipv6Pattern }] },
          portMap: {
            type: 'array',
            items: {
              type: 'object',
              properties: {
                protocol: { enum: ['tcp', 'udp'] },
                port: { type: 'integer', minimum: 0, maximum: 65535 },
                targetPort: { type: 'integer', minimum: 0, maximum: 65535 },
              },
              required: ['protocol', 'port'],
              additionalProperties: false,
            },
          },
        },
        required: ['ip'],
        additionalProperties: false,
      },
    },
  },
  required: ['id'],
  additionalProperties: false,
};

export interface RouteRequest {
  vrf: string;
  prefix: string;
  /** Empty (PUT) or absent (DELETE): the route is removed. */
  nexthops?: Array<{ address: string; label: number; encaps?: Array<'udp' | 'gre'>; vn?: string }>;
}

const routeSchema = {
  type: 'object',
  properties: {
    vrf: name,
    prefix: { type: 'string', pattern: '^([0-9.]+/[0-9]{1,2}|[0-9a-fA-F:.]*:[0-9a-fA-F:.]*/[0-9]{1,3})$' },
    nexthops: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          address: { type: 'string', pattern: ipv4Pattern },
          label: { type: 'integer', minimum: 16, maximum: 1048575 },
          encaps: { type: 'array', items: { enum: ['udp', 'gre'] }, minItems: 1 },
          vn: name,
        },
        required: ['address', 'label'],
        additionalProperties: false,
      },
    },
  },
  required: ['vrf', 'prefix'],
  additionalProperties: false,
};

const ajv = new Ajv({ allErrors: false });
const validatePort = ajv.compile<PortAddRequest>(portSchema);
const validateRoute = ajv.compile<RouteRequest>(routeSchema);

// In a module of its own: the restarting daemon throws it before it loads this API.
export { ApiError };

/**
 * A request of the agent's API refused with the agent's status and its
 * error text, braces included: "{ <message> }" from the add handlers,
 * "{<message>}" from delete, enable and disable (rest_server.cc).
 */
export class AgentApiError extends Error {
  constructor(
    message: string,
    readonly status = 500,
  ) {
    super(message);
  }
}

function describe(error: ErrorObject | undefined): string {
  if (!error) return 'invalid request';
  if (error.keyword === 'additionalProperties') return `unknown field ${error.instancePath}/${String(error.params.additionalProperty)}`;
  if (error.keyword === 'required') return `field ${error.instancePath}/${String(error.params.missingProperty)} is required`;
  return `field ${error.instancePath || '/'} ${error.message} (value: ${JSON.stringify(error.data)})`;
}

export interface PortApiHandlers {
  /** The agent's ports, all or none; a port known already is replaced. Throws AgentApiError("{ <why> }"). */
  addPorts(ports: AgentPort[]): Promise<void>;
  /** Also for an unknown uuid. */
  deletePort(id: string): Promise<void>;
  /** MakeJsonFromVmi of a configured port; undefined: not configured (404). */
  portInfo(id: string): string | undefined;
  syncPorts(): void;
  /** Throws AgentApiError("{Port Not found <uuid>}") or ("{Incorrect Port type for <uuid>}"). */
  setLinkState(id: string, up: boolean): Promise<void>;
  /** MakeJsonFromVmiConfig of each VMI of the VM named so; undefined: unknown (404). */
  vmConfig(vmName: string): string[] | undefined;
  addVmVnPort(port: VmVnPort): Promise<void>;
  /** MakeJsonFromVmi of the VM's (or this one VMI's) configured interfaces; undefined: not (yet) configured (404). */
  vmInterfaces(vmUuid: string, vmiUuid?: string): string[] | undefined;
  deleteVm(vmUuid: string): Promise<void>;
  /** vrouter-ts's own port add (PortAddRequest), its delete and list. */
  addLocalPort(request: PortAddRequest): Promise<unknown>;
  /** False when there is no such port. */
  deleteLocalPort(id: string): Promise<boolean>;
  listPorts(): unknown;
  setRoute(request: RouteRequest): Promise<unknown>;
  stats(): Promise<unknown>;
}

const BODY_LIMIT = 1024 * 1024;

async function readBody(request: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > BODY_LIMIT) throw new ApiError(413, 'request body larger than 1 MiB');
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError(400, 'request body is not JSON');
  }
}

/** A percent-encoded path segment decoded, null when an escape is malformed (%zz). */
function decodeSegment(text: string): string | null {
  try {
    return decodeURIComponent(text);
  } catch {
    return null;
  }
}

/** The fields only the agent's port body has: a body with any of them is the agent's. */
const AGENT_FIELDS = ['instance-id', 'vn-id', 'vm-project-id', 'display-name', 'ip-address', 'ip6-address', 'type', 'system-name', 'mac-address', 'rx-vlan-id', 'tx-vlan-id'];

/** A vrouter-ts body: an object with none of the agent's fields and some of its own. */
function isLocalBody(value: unknown): boolean {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const keys = Object.keys(value);
  return !keys.some((key) => AGENT_FIELDS.includes(key)) && keys.some((key) => key !== 'id' && key in portSchema.properties);
}

/** The agent's UUID in a path ([0-9a-f] only, as its regexes). */
const UUID_PATH = '([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})';
const PORT_PATH = new RegExp(`^/port/${UUID_PATH}$`);
const VM_PATH = new RegExp(`^/vm/${UUID_PATH}(?:/${UUID_PATH})?$`);
const LINK_PATH = new RegExp(`^/(enable|disable)-port/${UUID_PATH}$`);

/** REST::SendResponse: "OK" whatever the status, the agent's content type, no date. */
function sendAgent(response: http.ServerResponse, status: number, body: string): void {
  response.sendDate = false;
  response.writeHead(status, 'OK', { 'Content-Type': 'application/json; charset=UTF-8', 'Content-Length': Buffer.byteLength(body) });
  response.end(body);
}

/** REST::SendErrorResponse: {"error":"<message>"} as rapidjson's Writer writes it (no spaces). */
function sendAgentError(response: http.ServerResponse, message: string, status = 500): void {
  sendAgent(response, status, JSON.stringify({ error: message }));
}

export function createPortApi(handlers: PortApiHandlers): http.Server {
  return http.createServer((request, response) => {
    const reply = (status: number, body: unknown) => {
      response.writeHead(status, { 'content-type': 'application/json' });
      response.end(JSON.stringify(body) + '\n');
    };
    /** Whether the request is one of the agent's, whose failures are written as the agent writes them. */
    let agentRequest = true;
    const route = async (): Promise<void> => {
      let url: URL;
      try {
        url = new URL(request.url ?? '/', 'http://localhost');
      } catch {
        // A path that is not a URL ("//%20/") routes nowhere, as in the agent.
        return sendAgentError(response, 'Unknown Request', 404);
      }
      const where = url.pathname;
      const method = request.method;
      let match: RegExpExecArray | null;
      if (method === 'POST' && where === '/port') {
        const text = await readBody(request);
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          // Not JSON: the agent's reader words the error.
        }
        if (isLocalBody(body)) {
          agentRequest = false;
          if (!validatePort(body)) throw new ApiError(400, describe(validatePort.errors?.[0]));
          return reply(201, await handlers.addLocalPort(body));
        }
        let ports: AgentPort[];
        try {
          ports = readAgentPorts(text);
        } catch (error) {
          if (error instanceof AgentJsonError) return sendAgentError(response, `{ ${error.message} }`);
          throw error;
        }
        await handlers.addPorts(ports);
        return sendAgent(response, 200, '{}');
      }
      if (method === 'POST' && where === '/syncports') {
        handlers.syncPorts();
        return sendAgent(response, 200, '{}');
      }
      if (method === 'DELETE' && (match = PORT_PATH.exec(where))) {
        await handlers.deletePort(match[1]);
        return sendAgent(response, 200, '{}');
      }
      if (method === 'DELETE' && where.startsWith('/port/')) {
        agentRequest = false;
        const text = where.slice('/port/'.length);
        const id = decodeSegment(text);
        if (id === null) throw new ApiError(400, `malformed percent-escape in port id ${text}`);
        if (!(await handlers.deleteLocalPort(id))) throw new ApiError(404, `no port ${id}`);
        return reply(200, { deleted: true });
      }
      if (method === 'GET' && (match = PORT_PATH.exec(where))) {
        const info = handlers.portInfo(match[1]);
        return info === undefined ? sendAgentError(response, '{ Not Found }', 404) : sendAgent(response, 200, info);
      }
      if (method === 'PUT' && (match = LINK_PATH.exec(where))) {
        await handlers.setLinkState(match[2], match[1] === 'enable');
        return sendAgent(response, 200, '{}');
      }
      if (method === 'GET' && where.startsWith('/vm-cfg/')) {
        // A name that does not decode names no VM (the agent looks the text up as it is).
        const vmName = decodeSegment(where.slice('/vm-cfg/'.length));
        const documents = vmName === null ? undefined : handlers.vmConfig(vmName);
        return documents === undefined ? sendAgentError(response, '{ Not Found }', 404) : sendAgent(response, 200, jsonList(documents));
      }
      if (method === 'POST' && where === '/vm') {
        let port: VmVnPort;
        try {
          port = readVmVnPort(await readBody(request));
        } catch (error) {
          if (error instanceof AgentJsonError) return sendAgentError(response, `{ ${error.message} }`);
          throw error;
        }
        await handlers.addVmVnPort(port);
        return sendAgent(response, 200, '{}');
      }
      if (method === 'GET' && (match = VM_PATH.exec(where))) {
        const documents = handlers.vmInterfaces(match[1], match[2]);
        return documents === undefined ? sendAgentError(response, '{ Not Found }', 404) : sendAgent(response, 200, jsonList(documents));
      }
      if (method === 'DELETE' && (match = VM_PATH.exec(where)) && match[2] === undefined) {
        await readBody(request); // the CNI sends its add message again; the agent ignores it
        await handlers.deleteVm(match[1]);
        return sendAgent(response, 200, '{}');
      }
      if ((method === 'POST' || method === 'DELETE') && where === '/gateway') return sendAgentError(response, '{ Operation Not Supported }');
      agentRequest = false;
      if (method === 'GET' && where === '/ports') return reply(200, handlers.listPorts());
      if ((method === 'PUT' || method === 'DELETE') && where === '/route') {
        const body = parseJson(await readBody(request));
        if (!validateRoute(body)) throw new ApiError(400, describe(validateRoute.errors?.[0]));
        if (method === 'DELETE') body.nexthops = [];
        return reply(200, { nexthops: await handlers.setRoute(body) });
      }
      if (method === 'GET' && where === '/stats') return reply(200, await handlers.stats());
      agentRequest = true;
      sendAgentError(response, 'Unknown Request', 404);
    };
    route().catch((error: unknown) => {
      if (response.headersSent) return void response.destroy();
      if (error instanceof AgentApiError) return sendAgentError(response, error.message, error.status);
      if (agentRequest && !(error instanceof ApiError)) return sendAgentError(response, `{ ${error instanceof Error ? error.message : String(error)} }`);
      const status = error instanceof ApiError ? error.status : 500;
      reply(status, { error: error instanceof Error ? error.message : String(error) });
    });
  });
}
