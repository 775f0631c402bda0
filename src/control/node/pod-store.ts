/**
 * vrouter-control's registered pods on disk (`--state <file>`), so that a
 * restart keeps every pod and the address it was given: OpenContrail keeps
 * them in its configuration database, not in the control node's memory.
 *
 *   {"pods": [{"vrouter": "node0", "vmUuid": "…", "vmiUuid": "…", "name": "web-1", "namespace": "default",
 *              "labels": {"name": "web"}, "vn"?: "web", "ip"?: "10.1.1.9", "mac": "02:…", "address"?: "10.1.1.9"}]}
 *
 * `vn` and `ip` are what the registration asked for, `address` what the pod
 * got (absent while a configuration change leaves it refused). The file is
 * written to a temporary name, synced and renamed on every change, so a
 * crash leaves the old state or the new one; one that does not read back
 * fails the start with `<file>: <field>: <problem> (value: <value>)`.
 */
import fs from 'node:fs';
import path from 'node:path';
import Ajv from 'ajv';
import type { LocalPort } from '../agent/agent-interface';
import { describeSchemaError, formatConfigError } from '../config/config-errors';

/** One registered pod: its vrouter, the port as registered, and the address it holds. */
export interface StoredPod {
  vrouter: string;
  port: LocalPort;
  address: string | null;
  /** The IPv6 address it holds in a dual-stack VN. */
  address6?: string | null;
}

interface StoredPodJson {
  vrouter: string;
  vmUuid: string;
  vmiUuid: string;
  name: string;
  namespace: string;
  labels: Record<string, string>;
  vn?: string;
  ip?: string;
  mac: string;
  address?: string;
  address6?: string;
}

export class PodStateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PodStateError';
  }
}

const IPV4 = '^(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)(\\.(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)){3}$';
const identifier = { type: 'string', minLength: 1, maxLength: 255, pattern: '^[^/\\s]+$' };
const stateSchema = {
  type: 'object',
  properties: {
    pods: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          vrouter: identifier,
          vmUuid: identifier,
          vmiUuid: identifier,
          name: { type: 'string', minLength: 1, maxLength: 253 },
          namespace: { type: 'string', minLength: 1, maxLength: 253 },
          labels: { type: 'object', additionalProperties: { type: 'string' } },
          vn: { type: 'string', minLength: 1 },
          ip: { type: 'string', pattern: IPV4 },
          mac: { type: 'string', pattern: '^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$' },
          address: { type: 'string', pattern: IPV4 },
          address6: { type: 'string', pattern: '^[0-9a-fA-F:]{2,39}$' },
        },
        required: ['vrouter', 'vmUuid', 'vmiUuid', 'name', 'namespace', 'labels', 'mac'],
        additionalProperties: false,
      },
    },
  },
  required: ['pods'],
  additionalProperties: false,
} as const;

const validateState = new Ajv({ allErrors: false, verbose: true }).compile<{ pods: StoredPodJson[] }>(stateSchema);

/** The pods of a state file; none when it does not exist yet. Throws PodStateError naming file, field and value. */
export function loadPods(file: string): StoredPod[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new PodStateError(`${file}: ${(error as Error).message}`);
  }
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (error) {
    throw new PodStateError(`${file}: not JSON: ${(error as Error).message}`);
  }
  if (!validateState(document)) throw new PodStateError(describeSchemaError(validateState.errors![0], file));
  const seen = new Map<string, number>();
  return document.pods.map((pod, index) => {
    const key = `${pod.vrouter}\0${pod.vmiUuid}`;
    const first = seen.get(key);
    if (first !== undefined) throw new PodStateError(formatConfigError(file, `/pods/${index}/vmiUuid`, `registered twice on ${pod.vrouter} (first at /pods/${first})`, pod.vmiUuid));
    seen.set(key, index);
    const port: LocalPort = {
      id: pod.vmiUuid,
      vmUuid: pod.vmUuid,
      name: pod.name,
      namespace: pod.namespace,
      labels: { ...pod.labels },
      ...(pod.vn === undefined ? {} : { vn: pod.vn }),
      ...(pod.ip === undefined ? {} : { ip: pod.ip }),
      mac: pod.mac,
      // The MPLS label is the vrouter's to give; the control node never reads it.
      label: 0,
    };
    return { vrouter: pod.vrouter, port, address: pod.address ?? null, address6: pod.address6 ?? null };
  });
}

/** Writes the pods atomically (temporary file, fsync, rename). */
export function savePods(file: string, pods: Iterable<StoredPod>): void {
  const json: StoredPodJson[] = [];
  for (const { vrouter, port, address, address6 } of pods) {
    json.push({
      vrouter,
      vmUuid: port.vmUuid ?? port.id,
      vmiUuid: port.id,
      name: port.name,
      namespace: port.namespace,
      labels: port.labels,
      ...(port.vn === undefined ? {} : { vn: port.vn }),
      ...(port.ip === undefined ? {} : { ip: port.ip }),
      mac: port.mac,
      ...(address === null ? {} : { address }),
      ...(address6 === undefined || address6 === null ? {} : { address6 }),
    });
  }
  const temporary = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  const fd = fs.openSync(temporary, 'w', 0o644);
  try {
    fs.writeSync(fd, JSON.stringify({ pods: json }, null, 2) + '\n');
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(temporary, file);
}
