/**
 * The plugin's side of the agent's port API: the requests of the Contrail CNI
 * (tf-controller 6a674397821187fedfffd9586942b906d3479dbc,
 * src/container/cni/contrail/vrouter.go), with its polling: GET /vm-cfg until
 * the agent has every interface of the pod (PollVmCfg, lines 485-525), GET /vm
 * until the agent has the interface up (PollVm, lines 219-235).
 */
import * as http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { VmAddRequest, VmCfgAnnotations, VmCfgEntry, VmPortEntry } from './agent-api-types';
import { PluginSettings } from './config';

/** The agent did not answer at all (no listener, connection reset, timeout). */
export class AgentUnreachable extends Error {}

/** The agent answered with a status other than 200/201. */
export class AgentHttpError extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
    what: string,
  ) {
    super(`${what}: HTTP ${status} ${body.trim()}`);
  }
}

const REQUEST_TIMEOUT_MS = 5000;

/** Go's time.Now().String() layout is not needed by the agent (it ignores `time`); ISO 8601 says the same. */
export function requestTime(): string {
  return new Date().toISOString();
}

export class AgentClient {
  constructor(private readonly settings: PluginSettings) {}

  request(method: string, path: string, body?: unknown): Promise<{ status: number; body: string }> {
    const payload = body === undefined ? undefined : JSON.stringify(body, null, '\t');
    return new Promise((resolve, reject) => {
      const request = http.request(
        {
          host: this.settings.agentHost,
          port: this.settings.agentPort,
          method,
          path,
          headers: payload === undefined ? {} : { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) },
          timeout: REQUEST_TIMEOUT_MS,
          agent: false,
        },
        (response) => {
          const chunks: Buffer[] = [];
          response.on('data', (chunk: Buffer) => chunks.push(chunk));
          response.on('end', () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
          response.on('error', (error) => reject(new AgentUnreachable(`${method} ${path}: ${error.message}`)));
        },
      );
      request.on('timeout', () => request.destroy(new Error(`no answer in ${REQUEST_TIMEOUT_MS} ms`)));
      request.on('error', (error) => reject(new AgentUnreachable(`${method} ${path} to ${this.settings.agentHost}:${this.settings.agentPort}: ${error.message}`)));
      request.end(payload);
    });
  }

  /** Any HTTP answer (the agent says 404 "Unknown Request" to GET /) means it serves the API. */
  async reachable(): Promise<boolean> {
    try {
      await this.request('GET', '/');
      return true;
    } catch (error) {
      if (error instanceof AgentUnreachable) return false;
      throw error;
    }
  }

  private async getArray<T>(path: string): Promise<T[]> {
    const answer = await this.request('GET', path);
    if (answer.status !== 200) throw new AgentHttpError(answer.status, answer.body, `GET ${path}`);
    const parsed: unknown = JSON.parse(answer.body);
    if (!Array.isArray(parsed)) throw new AgentHttpError(answer.status, answer.body, `GET ${path}: not a JSON array`);
    return parsed as T[];
  }

  /**
   * The pod's interfaces once the agent has all of them: `index` says
   * `<i>/<count>` and the answer holds `count` entries. Throws the last
   * failure when the retries run out.
   */
  async pollVmCfg(name: string): Promise<VmCfgEntry[]> {
    let lastError: Error = new Error('no attempt');
    for (let attempt = 0; attempt < this.settings.pollRetries; attempt++) {
      if (attempt > 0) await sleep(this.settings.pollIntervalMs);
      try {
        const entries = await this.getArray<VmCfgEntry>(`/vm-cfg/${encodeURIComponent(name)}`);
        const count = Number(parseAnnotations(entries[0]).index?.split('/')[1]);
        if (entries.length > 0 && entries.length === count) return entries;
        lastError = new AgentHttpError(200, JSON.stringify(entries), `GET /vm-cfg/${name}: ${entries.length} of ${count} interfaces`);
      } catch (error) {
        if (error instanceof AgentUnreachable || error instanceof AgentHttpError) lastError = error;
        else throw error;
      }
    }
    throw lastError;
  }

  async pollVm(vmUuid: string): Promise<VmPortEntry[]> {
    let lastError: Error = new Error('no attempt');
    for (let attempt = 0; attempt < this.settings.pollRetries; attempt++) {
      if (attempt > 0) await sleep(this.settings.pollIntervalMs);
      try {
        return await this.getArray<VmPortEntry>(`/vm/${vmUuid}`);
      } catch (error) {
        if (error instanceof AgentUnreachable || error instanceof AgentHttpError) lastError = error;
        else throw error;
      }
    }
    throw lastError;
  }

  async getVm(vmUuid: string): Promise<VmPortEntry[]> {
    return this.getArray<VmPortEntry>(`/vm/${vmUuid}`);
  }

  async addVm(message: VmAddRequest): Promise<void> {
    const answer = await this.request('POST', '/vm', message);
    if (answer.status !== 200 && answer.status !== 201) throw new AgentHttpError(answer.status, answer.body, 'POST /vm');
  }

  async deleteVm(vmUuid: string, containerId: string): Promise<void> {
    const message: VmAddRequest = {
      time: requestTime(),
      'vm-id': containerId,
      'vm-uuid': vmUuid,
      'vm-name': '',
      'host-ifname': '',
      'vm-ifname': '',
      'vm-namespace': '',
      'vn-uuid': '',
      'vmi-uuid': '',
    };
    const answer = await this.request('DELETE', `/vm/${vmUuid}`, message);
    if (answer.status !== 200) throw new AgentHttpError(answer.status, answer.body, `DELETE /vm/${vmUuid}`);
  }
}

/**
 * The agent writes each annotation as the string `{key:value}`; the Contrail
 * CNI splits it at the first ':' (vrouter.go Get, lines 195-213).
 */
export function parseAnnotations(entry: VmCfgEntry | undefined): VmCfgAnnotations {
  const annotations: Record<string, string> = {};
  for (const text of entry?.annotations ?? []) {
    const inner = text.replace(/^\{/, '').replace(/\}$/, '');
    const colon = inner.indexOf(':');
    if (colon > 0) annotations[inner.slice(0, colon)] = inner.slice(colon + 1);
  }
  return annotations as VmCfgAnnotations;
}
