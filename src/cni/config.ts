/**
 * The plugin's input: the network configuration on stdin (SPEC.md Section 1
 * and Section 3 "Deriving request configuration") and the CNI_* environment
 * (Section 2 "Parameters"). Every rejection names the field and its value.
 *
 * Plugin-specific settings sit in a `contrail` object with the key names of
 * the Contrail CNI (tf-controller 6a674397821187fedfffd9586942b906d3479dbc,
 * src/container/cni/contrail/cni.go lines 23-44, vrouter.go lines 36-49):
 *   vrouter-ip, vrouter-port   the agent's port API (default 127.0.0.1:9091)
 *   poll-timeout, poll-retries seconds between polls of the agent, and how many
 *   cluster-name               first part of the VM name (default "k8s")
 *   mtu                        the pod interface's MTU (default: underlay MTU - tunnel overhead)
 * and two of this plugin's own:
 *   underlay-interface         whose MTU the default comes from (default: the default route's)
 *   state-dir                  one file per attachment (default /var/lib/vrouter-ts/cni)
 */
import { CniError, CniResult, CniVersion, ErrorCode, isSupportedVersion, SUPPORTED_VERSIONS } from './spec';
import { AGENT_PORT_API_PORT } from './agent-api-types';

export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'STATUS' | 'GC' | 'VERSION';
const COMMANDS: readonly CniCommand[] = ['ADD', 'DEL', 'CHECK', 'STATUS', 'GC', 'VERSION'];

export interface PluginSettings {
  agentHost: string;
  agentPort: number;
  pollIntervalMs: number;
  pollRetries: number;
  clusterName: string;
  mtu?: number;
  underlayInterface?: string;
  stateDir: string;
}

export interface GcAttachment {
  containerID: string;
  ifname: string;
}

export interface NetworkConfig {
  cniVersion: CniVersion;
  name: string;
  type: string;
  settings: PluginSettings;
  prevResult?: CniResult;
  /** GC: the attachments still valid; undefined when the key is absent. */
  validAttachments?: GcAttachment[];
}

export interface Invocation {
  command: CniCommand;
  containerId?: string;
  netns?: string;
  ifname?: string;
  /** CNI_ARGS as key -> value, parsed by key (the runtimes put them in no fixed order). */
  args: Map<string, string>;
}

export const DEFAULT_STATE_DIR = '/var/lib/vrouter-ts/cni';
const DEFAULT_POLL_INTERVAL_MS = 1000;
const DEFAULT_POLL_RETRIES = 3;

/** SPEC.md Section 2: CNI_CONTAINERID "must start with an alphanumeric character, optionally followed by ... alphanumeric, underscore, dot or hyphen". */
const CONTAINER_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
/** Linux IFNAMSIZ (16 with the NUL); '/', ':' and whitespace are not allowed in a name. */
const INTERFACE_NAME = /^[A-Za-z0-9_.-]{1,15}$/;
/** SPEC.md Section 1: the network name's alphabet. */
const NETWORK_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

function describe(value: unknown): string {
  return JSON.stringify(value) ?? String(value);
}

export function parseInvocation(env: NodeJS.ProcessEnv): Invocation {
  const command = env.CNI_COMMAND;
  if (!COMMANDS.includes(command as CniCommand)) {
    throw new CniError(ErrorCode.invalidEnvironment, `CNI_COMMAND ${describe(command ?? '')} is not one of ${COMMANDS.join(', ')}`);
  }
  const invocation: Invocation = {
    command: command as CniCommand,
    containerId: env.CNI_CONTAINERID || undefined,
    netns: env.CNI_NETNS || undefined,
    ifname: env.CNI_IFNAME || undefined,
    args: parseCniArgs(env.CNI_ARGS ?? ''),
  };
  // SPEC.md Section 2: the required parameters of each operation.
  const required: Record<CniCommand, Array<'CNI_CONTAINERID' | 'CNI_NETNS' | 'CNI_IFNAME'>> = {
    ADD: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'],
    DEL: ['CNI_CONTAINERID', 'CNI_IFNAME'],
    CHECK: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'],
    STATUS: [],
    GC: [],
    VERSION: [],
  };
  const missing = required[invocation.command].filter((name) => !env[name]);
  if (missing.length > 0) {
    throw new CniError(ErrorCode.invalidEnvironment, `${invocation.command} needs ${missing.join(', ')}`, `missing environment variables: ${missing.join(', ')}`);
  }
  if (invocation.containerId !== undefined && !CONTAINER_ID.test(invocation.containerId)) {
    throw new CniError(ErrorCode.invalidEnvironment, `CNI_CONTAINERID ${describe(invocation.containerId)} is not a valid container id`);
  }
  if (invocation.ifname !== undefined && !INTERFACE_NAME.test(invocation.ifname)) {
    throw new CniError(ErrorCode.invalidEnvironment, `CNI_IFNAME ${describe(invocation.ifname)} is not a valid interface name`);
  }
  if (invocation.netns !== undefined && !invocation.netns.startsWith('/')) {
    throw new CniError(ErrorCode.invalidEnvironment, `CNI_NETNS ${describe(invocation.netns)} is not an absolute path`);
  }
  return invocation;
}

/** "FOO=BAR;ABC=123" -> map; a pair without '=' is an error naming it. */
export function parseCniArgs(text: string): Map<string, string> {
  const args = new Map<string, string>();
  for (const pair of text.split(';')) {
    if (pair === '') continue;
    const equals = pair.indexOf('=');
    if (equals <= 0) throw new CniError(ErrorCode.invalidEnvironment, `CNI_ARGS: ${describe(pair)} is not KEY=VALUE`);
    args.set(pair.slice(0, equals), pair.slice(equals + 1));
  }
  return args;
}

/** VERSION reads only cniVersion, and answers with whatever was given. */
export function parseVersionRequest(stdin: string): string {
  if (stdin.trim() === '') return SUPPORTED_VERSIONS[SUPPORTED_VERSIONS.length - 1];
  const parsed = decode(stdin);
  const version = parsed.cniVersion;
  if (version === undefined) return SUPPORTED_VERSIONS[SUPPORTED_VERSIONS.length - 1];
  if (typeof version !== 'string') throw new CniError(ErrorCode.decodingFailure, `cniVersion ${describe(version)} is not a string`);
  return version;
}

function decode(stdin: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(stdin);
  } catch (error) {
    throw new CniError(ErrorCode.decodingFailure, 'the network configuration on stdin is not JSON', (error as Error).message);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new CniError(ErrorCode.decodingFailure, 'the network configuration on stdin is not a JSON object');
  }
  return parsed as Record<string, unknown>;
}

/** The cniVersion to answer errors in, when the configuration can be read that far. */
export function versionOf(stdin: string): string | undefined {
  try {
    const version = decode(stdin).cniVersion;
    return typeof version === 'string' ? version : undefined;
  } catch {
    return undefined;
  }
}

export function parseNetworkConfig(stdin: string): NetworkConfig {
  const raw = decode(stdin);
  if (!isSupportedVersion(raw.cniVersion)) {
    throw new CniError(
      ErrorCode.incompatibleVersion,
      `cniVersion ${describe(raw.cniVersion)} is not supported`,
      `supported versions: ${SUPPORTED_VERSIONS.join(', ')}`,
    );
  }
  if (typeof raw.name !== 'string' || !NETWORK_NAME.test(raw.name)) {
    throw new CniError(ErrorCode.invalidNetworkConfig, `name ${describe(raw.name)} is not a valid network name`);
  }
  if (typeof raw.type !== 'string' || raw.type === '') {
    throw new CniError(ErrorCode.invalidNetworkConfig, `type ${describe(raw.type)} is not a plugin name`);
  }
  const config: NetworkConfig = {
    cniVersion: raw.cniVersion,
    name: raw.name,
    type: raw.type,
    settings: parseSettings(raw.contrail),
  };
  if (raw.prevResult !== undefined) config.prevResult = parsePrevResult(raw.prevResult);
  // spec-v1.1.0 SPEC.md (line 387) names the GC key `cni.dev/attachments`;
  // libcni at that same commit (libcni/api.go line 812) sends
  // `cni.dev/valid-attachments`, the name the spec took later (commit
  // 6a68851 "SPEC: use correct GC field name"). Both are read.
  const attachments = raw['cni.dev/valid-attachments'] ?? raw['cni.dev/attachments'];
  if (attachments !== undefined) config.validAttachments = parseAttachments(attachments);
  return config;
}

function parseSettings(value: unknown): PluginSettings {
  const settings: PluginSettings = {
    agentHost: '127.0.0.1',
    agentPort: AGENT_PORT_API_PORT,
    pollIntervalMs: DEFAULT_POLL_INTERVAL_MS,
    pollRetries: DEFAULT_POLL_RETRIES,
    clusterName: 'k8s',
    stateDir: DEFAULT_STATE_DIR,
  };
  if (value === undefined) return settings;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new CniError(ErrorCode.invalidNetworkConfig, `contrail ${describe(value)} is not an object`);
  }
  for (const [key, field] of Object.entries(value as Record<string, unknown>)) {
    const bad = (what: string) => new CniError(ErrorCode.invalidNetworkConfig, `contrail.${key} ${describe(field)} is not ${what}`);
    const integer = (min: number, max: number): number => {
      if (typeof field !== 'number' || !Number.isInteger(field) || field < min || field > max) throw bad(`an integer in ${min}..${max}`);
      return field;
    };
    const text = (pattern: RegExp, what: string): string => {
      if (typeof field !== 'string' || !pattern.test(field)) throw bad(what);
      return field;
    };
    switch (key) {
      case 'vrouter-ip':
        settings.agentHost = text(/^[0-9A-Za-z.:-]+$/, 'a host address');
        break;
      case 'vrouter-port':
        settings.agentPort = integer(1, 65535);
        break;
      case 'poll-timeout':
        // Contrail's unit is seconds; fractions are accepted for tests.
        if (typeof field !== 'number' || !(field > 0) || field > 60) throw bad('a number of seconds in (0, 60]');
        settings.pollIntervalMs = Math.round(field * 1000);
        break;
      case 'poll-retries':
        settings.pollRetries = integer(1, 100);
        break;
      case 'cluster-name':
        settings.clusterName = text(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'a cluster name');
        break;
      case 'mtu':
        settings.mtu = integer(576, 65535);
        break;
      case 'underlay-interface':
        settings.underlayInterface = text(INTERFACE_NAME, 'an interface name');
        break;
      case 'state-dir':
        settings.stateDir = text(/^\/[^\0]*$/, 'an absolute path');
        break;
      default:
        throw new CniError(ErrorCode.unsupportedField, `unsupported field contrail.${key} = ${describe(field)}`);
    }
  }
  return settings;
}

function parsePrevResult(value: unknown): CniResult {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new CniError(ErrorCode.decodingFailure, `prevResult ${describe(value)} is not an object`);
  }
  const result = value as CniResult;
  for (const list of ['interfaces', 'ips', 'routes'] as const) {
    if (result[list] !== undefined && !Array.isArray(result[list])) {
      throw new CniError(ErrorCode.decodingFailure, `prevResult.${list} ${describe(result[list])} is not an array`);
    }
  }
  return result;
}

function parseAttachments(value: unknown): GcAttachment[] {
  if (!Array.isArray(value)) throw new CniError(ErrorCode.decodingFailure, `cni.dev/valid-attachments ${describe(value)} is not an array`);
  return value.map((item, index) => {
    const entry = item as Partial<GcAttachment> | null;
    if (typeof entry !== 'object' || entry === null || typeof entry.containerID !== 'string' || typeof entry.ifname !== 'string') {
      throw new CniError(ErrorCode.decodingFailure, `cni.dev/valid-attachments[${index}] ${describe(item)} is not {containerID, ifname}`);
    }
    return { containerID: entry.containerID, ifname: entry.ifname };
  });
}
