/**
 * Runs the real `vrouter-cni` binary the way a runtime does (CNI_* in the
 * environment, the network configuration on stdin, the result on stdout,
 * SPEC.md Section 2), inside a given network namespace, and drives the
 * stand-in agent (contrail-agent-standin.ts) running there.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import * as path from 'node:path';
import { Topology } from './netns';
import type { RequestLogEntry, StandinCommand, StandinEvent, StandinPod } from './contrail-agent-standin';

const REPOSITORY = path.resolve(__dirname, '..', '..', '..');
export const CNI_BINARY = path.join(REPOSITORY, 'bin', 'vrouter-cni.js');

export interface CniRun {
  exitCode: number;
  stdout: string;
  stderr: string;
  /** stdout parsed, when it is JSON. */
  json?: Record<string, unknown>;
}

export interface CniEnvironment {
  CNI_COMMAND: string;
  CNI_CONTAINERID?: string;
  CNI_NETNS?: string;
  CNI_IFNAME?: string;
  CNI_ARGS?: string;
  CNI_PATH?: string;
}

/** Executes the plugin in `ns` (the node's namespace: the runtime's networking domain). */
export function runCni(ns: string, env: CniEnvironment, stdin: string): Promise<CniRun> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, CNI_BINARY], {
      env: { PATH: process.env.PATH, CNI_PATH: '/opt/cni/bin', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      let json: Record<string, unknown> | undefined;
      try {
        json = stdout.trim() === '' ? undefined : (JSON.parse(stdout) as Record<string, unknown>);
      } catch {
        json = undefined;
      }
      resolve({ exitCode: code ?? -1, stdout, stderr, json });
    });
    child.stdin.end(stdin);
  });
}

/** The stand-in agent as a child process of the topology, listening on the namespace's 127.0.0.1. */
export class AgentStandinProcess {
  private constructor(
    private readonly child: ChildProcess,
    readonly port: number,
  ) {}

  static async start(topology: Topology, ns: string, port = 0): Promise<AgentStandinProcess> {
    const script = path.join(__dirname, 'contrail-agent-standin.js');
    const child = topology.spawn(ns, [process.execPath, script, String(port)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const [event] = (await Promise.race([
      once(child, 'message'),
      once(child, 'exit').then(() => {
        throw new Error('the stand-in agent exited before listening');
      }),
    ])) as [StandinEvent];
    if (event.event !== 'listening') throw new Error(`stand-in agent: unexpected ${JSON.stringify(event)}`);
    return new AgentStandinProcess(child, event.port);
  }

  private async call(command: StandinCommand): Promise<StandinEvent> {
    this.child.send(command);
    const [event] = (await once(this.child, 'message')) as [StandinEvent];
    return event;
  }

  async configure(pod: StandinPod): Promise<void> {
    await this.call({ op: 'configure', pod });
  }

  async unconfigure(name: string): Promise<void> {
    await this.call({ op: 'unconfigure', name });
  }

  /** The requests received since the last call, with the answers given. */
  async requests(): Promise<RequestLogEntry[]> {
    const event = await this.call({ op: 'requests' });
    if (event.event !== 'requests') throw new Error(`stand-in agent: unexpected ${JSON.stringify(event)}`);
    return event.log;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = once(this.child, 'exit');
    this.child.disconnect();
    await exited;
  }
}

/** A pod as kube-manager would have configured it in the agent (see contrail-agent-standin.ts). */
export function standinPod(options: { cluster?: string; namespace: string; name: string; uid: string; vmiUuid: string; ip: string; mac: string }): StandinPod {
  const cluster = options.cluster ?? 'k8s';
  return {
    vmName: `${cluster}__${options.namespace}__${options.name}`,
    vmUuid: options.uid,
    vmiUuid: options.vmiUuid,
    vnUuid: '3b4f2a6e-45a1-4c3b-9a61-1c0ba2d9e001',
    vnName: `default-domain:${cluster}-default:${cluster}-default-pod-network`,
    projectUuid: '9a1d6a52-8d0e-4b2e-b5a5-6c3f0e7d1002',
    mac: options.mac,
    ip: options.ip,
    plen: 12,
    gateway: '10.47.255.254',
    dns: '10.47.255.253',
    annotations: {
      cluster,
      owner: cluster,
      project: `${cluster}-${options.namespace}`,
      namespace: options.namespace,
      name: options.name,
      index: '0/1',
      network: 'default',
    },
  };
}
