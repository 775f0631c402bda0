/**
 * vrouter-control's pod registration API (`--api <host:port>`): where a
 * pod's labels and its request for an address go, as OpenContrail keeps
 * them on its configuration side (the plugins create the VM, VMI and
 * instance-ip there before the agent binds the interface). The control node
 * decides the pod's VN, address, floating IPs and policies and serves them
 * to the pod's vrouter as IF-MAP.
 *
 *   POST   /pods            {vrouter, vmUuid, vmiUuid?, name, namespace, labels, vn?, ip?, mac?}
 *                           200 the decision; 400 a body that does not validate, 409 a refusal,
 *                           each {"error": "field /<name>: <why>"}
 *   DELETE /pods/<vm uuid>  the VM's pods; 200 {}, 404 when none is registered
 *   GET    /pods            every registered pod and what it got (VN, address, IPv6 address in a dual-stack VN, floating IPs)
 *
 * The pod's VMI (the port id its vrouter knows it by) is `vmiUuid`, else
 * `vmUuid`.
 */
import { createHash } from 'node:crypto';
import * as http from 'node:http';
import Ajv, { ErrorObject } from 'ajv';
import type { LocalPort } from '../agent/agent-interface';
import { networkFqns } from '../ifmap/names';
import type { ControlNode } from './control-node';

export interface PodRegistration {
  vrouter: string;
  vmUuid: string;
  vmiUuid?: string;
  name: string;
  namespace: string;
  labels: Record<string, string>;
  vn?: string;
  ip?: string;
  mac?: string;
}

const identifier = { type: 'string', minLength: 1, maxLength: 255, pattern: '^[^/\\s]+$' };
const podSchema = {
  type: 'object',
  properties: {
    vrouter: identifier,
    vmUuid: identifier,
    vmiUuid: identifier,
    name: { type: 'string', minLength: 1, maxLength: 253 },
    namespace: { type: 'string', minLength: 1, maxLength: 253 },
    labels: { type: 'object', additionalProperties: { type: 'string' }, maxProperties: 64 },
    vn: { type: 'string', minLength: 1 },
    ip: { type: 'string', pattern: '^(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)(\\.(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)){3}$' },
    mac: { type: 'string', pattern: '^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$' },
  },
  required: ['vrouter', 'vmUuid', 'name', 'namespace', 'labels'],
  additionalProperties: false,
} as const;

const validatePod = new Ajv({ allErrors: false }).compile<PodRegistration>(podSchema);
const BODY_LIMIT = 64 * 1024;
const PODS_PATH = /^\/pods\/([^/]+)$/;

class PodApiError extends Error {
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

async function readBody(request: http.IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > BODY_LIMIT) throw new PodApiError(413, `request body larger than ${BODY_LIMIT} bytes`);
    chunks.push(chunk as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new PodApiError(400, 'request body is not JSON');
  }
}

/** A locally administered MAC from the VMI id, for a pod that brings none (the vrouter's port has its own). */
export function macOf(vmiId: string): string {
  const bytes = createHash('sha256').update(vmiId).digest().subarray(0, 5);
  return ['02', ...[...bytes].map((byte) => byte.toString(16).padStart(2, '0'))].join(':');
}

/** The field a NetworkManager refusal is about: an address it cannot have, or a VN without a free one. */
function refusalField(reason: string): string {
  return reason.startsWith('no free address') ? 'vn' : 'ip';
}

function registrationOf(body: PodRegistration): LocalPort {
  const id = body.vmiUuid ?? body.vmUuid;
  return {
    id,
    vmUuid: body.vmUuid,
    name: body.name,
    namespace: body.namespace,
    labels: { ...body.labels },
    ...(body.vn === undefined ? {} : { vn: body.vn }),
    ...(body.ip === undefined ? {} : { ip: body.ip }),
    mac: body.mac ?? macOf(id),
    // The MPLS label is the vrouter's to give; the control node never reads it.
    label: 0,
  };
}

export function createPodApi(node: ControlNode): http.Server {
  return http.createServer((request, response) => {
    const reply = (status: number, body: unknown) => {
      response.writeHead(status, { 'content-type': 'application/json' });
      response.end(JSON.stringify(body) + '\n');
    };
    const route = async (): Promise<void> => {
      const path = new URL(request.url ?? '/', 'http://localhost').pathname;
      const match = PODS_PATH.exec(path);
      if (request.method === 'POST' && path === '/pods') {
        const body = await readBody(request);
        if (!validatePod(body)) throw new PodApiError(400, describe(validatePod.errors?.[0]));
        if (!node.knowsVrouter(body.vrouter)) throw new PodApiError(400, `field /vrouter: ${body.vrouter} is not in the configuration's vrouters`);
        const port = registrationOf(body);
        const outcome = node.registerPod(body.vrouter, port);
        if ('refused' in outcome) throw new PodApiError(409, `field /${refusalField(outcome.refused)}: ${outcome.refused}`);
        const { portId: vmiUuid, vn, ...decided } = outcome.config;
        return reply(200, { vrouter: body.vrouter, vmUuid: body.vmUuid, vmiUuid, vn, ...networkFqnsOf(vn), ...decided, mac: port.mac });
      }
      if (request.method === 'DELETE' && match) {
        const vmUuid = decodeURIComponent(match[1]);
        if (!node.unregisterPods(vmUuid)) throw new PodApiError(404, `no pod of VM ${vmUuid} is registered`);
        return reply(200, {});
      }
      if (request.method === 'GET' && path === '/pods') {
        return reply(
          200,
          node.registeredPods().map(({ vrouter, port, outcome }) => ({
            vrouter, vmUuid: port.vmUuid, vmiUuid: port.id, name: port.name, namespace: port.namespace, labels: port.labels, mac: port.mac,
            ...('config' in outcome
              ? { vn: outcome.config.vn, ip: outcome.config.ip, ...(outcome.config.ip6 === undefined ? {} : { ip6: outcome.config.ip6 }), floatingIps: outcome.config.floatingIps }
              : { refused: outcome.refused }),
          })),
        );
      }
      throw new PodApiError(404, `no ${request.method} ${path}: the API has POST /pods, DELETE /pods/<vm uuid>, GET /pods`);
    };
    route().catch((error: unknown) => {
      if (error instanceof PodApiError) reply(error.status, { error: error.message });
      else reply(500, { error: (error as Error).message });
    });
  });
}

/** The FQNs an answer names the VN by, besides its network.yaml name. */
function networkFqnsOf(vn: string): { virtualNetwork: string; routingInstance: string } {
  const names = networkFqns(vn);
  return { virtualNetwork: names.vn, routingInstance: names.routingInstance };
}
