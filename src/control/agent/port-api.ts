/**
 * The daemon's local API (127.0.0.1 by default):
 *   POST /port, DELETE /port/<id>, GET /ports: the port API the Kubernetes
 *     plugin calls (as OpenContrail's agent served on port 9091);
 *   PUT /route, DELETE /route: routes set by hand or by a script when no
 *     control node distributes them (the same path the control client uses);
 *   GET /stats: counters of the dataplane.
 * Bodies are JSON, checked against a schema; a bad request gets a 4xx whose
 * message names the field.
 */
import * as http from 'node:http';
import Ajv, { ErrorObject } from 'ajv';

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
          ip: { type: 'string', pattern: ipv4Pattern },
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
    prefix: { type: 'string', pattern: '^[0-9.]+/[0-9]{1,2}$' },
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

/** A request the API refuses, with its HTTP status. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
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

export interface LocalApiHandlers {
  addPort(request: PortAddRequest): Promise<unknown>;
  deletePort(id: string): Promise<void>;
  listPorts(): unknown;
  setRoute(request: RouteRequest): Promise<unknown>;
  stats(): Promise<unknown>;
}

async function readJson(request: http.IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > 64 * 1024) throw new ApiError(413, 'request body larger than 64 KiB');
    chunks.push(chunk as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new ApiError(400, 'request body is not JSON');
  }
}

export function createLocalApi(handlers: LocalApiHandlers): http.Server {
  return http.createServer((request, response) => {
    const reply = (status: number, body: unknown) => {
      response.writeHead(status, { 'content-type': 'application/json' });
      response.end(JSON.stringify(body) + '\n');
    };
    const route = async (): Promise<void> => {
      const url = new URL(request.url ?? '/', 'http://localhost');
      if (request.method === 'POST' && url.pathname === '/port') {
        const body = await readJson(request);
        if (!validatePort(body)) throw new ApiError(400, describe(validatePort.errors?.[0]));
        reply(201, await handlers.addPort(body));
      } else if (request.method === 'DELETE' && url.pathname.startsWith('/port/')) {
        await handlers.deletePort(decodeURIComponent(url.pathname.slice('/port/'.length)));
        reply(200, { deleted: true });
      } else if (request.method === 'GET' && url.pathname === '/ports') {
        reply(200, handlers.listPorts());
      } else if ((request.method === 'PUT' || request.method === 'DELETE') && url.pathname === '/route') {
        const body = await readJson(request);
        if (!validateRoute(body)) throw new ApiError(400, describe(validateRoute.errors?.[0]));
        if (request.method === 'DELETE') body.nexthops = [];
        reply(200, { nexthops: await handlers.setRoute(body) });
      } else if (request.method === 'GET' && url.pathname === '/stats') {
        reply(200, await handlers.stats());
      } else {
        throw new ApiError(404, `no ${request.method} ${url.pathname}`);
      }
    };
    route().catch((error: unknown) => {
      const status = error instanceof ApiError ? error.status : 500;
      reply(status, { error: error instanceof Error ? error.message : String(error) });
    });
  });
}
