/**
 * `vrouter-cni`: the CNI plugin of the vrouter. ADD follows the Contrail CNI
 * (tf-controller 6a674397821187fedfffd9586942b906d3479dbc,
 * src/container/cni/contrail/cni.go CmdAdd, lines 448-591): GET /vm-cfg for
 * the pod's interface, a veth pair with the pod end in CNI_NETNS, POST /vm,
 * GET /vm/<vm-uuid> for the address, then the pod end configured. DEL, CHECK,
 * STATUS, GC and VERSION answer as containernetworking/cni SPEC.md 1.1.0 and
 * 1.0.0 say (see spec.ts for the commits).
 */
import { AgentClient, AgentHttpError, AgentUnreachable, parseAnnotations, requestTime } from './agent-client';
import { VmAddRequest, VmCfgEntry, vmName } from './agent-api-types';
import { AttachmentRecord, AttachmentStore } from './attachments';
import { Invocation, NetworkConfig, parseInvocation, parseNetworkConfig, parseVersionRequest, versionOf } from './config';
import {
  addressState,
  configurePodInterface,
  createVethPair,
  deleteLink,
  hostInterfaceName,
  linkState,
  namespaceExists,
  temporaryInterfaceName,
  underlayMtu,
} from './links';
import { CniError, CniResult, ErrorCode, errorResult, resultForVersion, SUPPORTED_VERSIONS } from './spec';
import { IP_MIN_HEADER_LEN } from '../dataplane/protocols/ipv4';
import { UDP_HEADER_LEN } from '../dataplane/protocols/udp';
import { MPLS_HEADER_LEN } from '../dataplane/protocols/mpls';

/**
 * What the vrouter adds in front of a pod's packet on the underlay: outer IPv4
 * + UDP + one MPLS label (MPLS over UDP, the larger of the two encapsulations;
 * over GRE it is 4 + 4). Same sum as the fragment-needed MTU of tunnel-encap.
 */
export const TUNNEL_OVERHEAD = IP_MIN_HEADER_LEN + UDP_HEADER_LEN + MPLS_HEADER_LEN;
const DEFAULT_UNDERLAY_MTU = 1500;

export interface PluginOutput {
  stdout: string;
  exitCode: number;
}

/** Runs one invocation; never throws: failures become SPEC.md error results. */
export async function runPlugin(env: NodeJS.ProcessEnv, stdin: string): Promise<PluginOutput> {
  try {
    const invocation = parseInvocation(env);
    if (invocation.command === 'VERSION') {
      return ok({ cniVersion: parseVersionRequest(stdin), supportedVersions: [...SUPPORTED_VERSIONS] });
    }
    const config = parseNetworkConfig(stdin);
    switch (invocation.command) {
      case 'ADD':
        return ok(resultForVersion(await add(invocation, config), config.cniVersion));
      case 'DEL':
        await del(invocation, config);
        return ok(undefined);
      case 'CHECK':
        await check(invocation, config);
        return ok(undefined);
      case 'STATUS':
        requireVersion(config, 'STATUS');
        await status(config);
        return ok(undefined);
      case 'GC':
        requireVersion(config, 'GC');
        await gc(config);
        return ok(undefined);
    }
  } catch (error) {
    const cniError =
      error instanceof CniError ? error : new CniError(ErrorCode.ioFailure, 'internal error', (error as Error).stack ?? String(error));
    const version = versionOf(stdin) ?? SUPPORTED_VERSIONS[SUPPORTED_VERSIONS.length - 1];
    return { stdout: JSON.stringify(errorResult(version, cniError)), exitCode: 1 };
  }
}

function ok(value: unknown): PluginOutput {
  return { stdout: value === undefined ? '' : JSON.stringify(value), exitCode: 0 };
}

/** STATUS and GC exist from 1.1.0 on (as the reference skel answers, pkg/skel/skel.go lines 293-323). */
function requireVersion(config: NetworkConfig, command: string): void {
  if (config.cniVersion === '1.0.0') {
    throw new CniError(ErrorCode.incompatibleVersion, `config version does not allow ${command}`, 'STATUS and GC are defined from CNI 1.1.0');
  }
}

function agentFailure(error: unknown, config: NetworkConfig, what: string): CniError {
  const where = `${config.settings.agentHost}:${config.settings.agentPort}`;
  if (error instanceof AgentUnreachable) {
    return new CniError(ErrorCode.tryAgainLater, `the vrouter agent at ${where} is not reachable`, error.message);
  }
  if (error instanceof AgentHttpError && (error.status === 404 || error.status === 200)) {
    // 404: the agent has not got the pod's configuration (or port) yet; 200 with
    // too few interfaces: it has part of it. Both clear up as the manager catches up.
    return new CniError(ErrorCode.tryAgainLater, `the vrouter agent has no ${what} yet`, error.message);
  }
  return new CniError(ErrorCode.agentError, `the vrouter agent refused ${what}`, (error as Error).message);
}

function podIdentity(invocation: Invocation): { namespace: string; pod: string } {
  const namespace = invocation.args.get('K8S_POD_NAMESPACE');
  const pod = invocation.args.get('K8S_POD_NAME');
  if (!namespace || !pod) {
    throw new CniError(ErrorCode.invalidEnvironment, 'CNI_ARGS must carry K8S_POD_NAMESPACE and K8S_POD_NAME', `CNI_ARGS keys: ${[...invocation.args.keys()].join(', ')}`);
  }
  return { namespace, pod };
}

/** The entry for CNI_IFNAME: by its `interface` annotation, else the one of index 0. */
function interfaceFor(entries: VmCfgEntry[], ifname: string): VmCfgEntry {
  return (
    entries.find((entry) => parseAnnotations(entry).interface === ifname) ??
    entries.find((entry) => parseAnnotations(entry).index?.split('/')[0] === '0') ??
    entries[0]
  );
}

async function interfaceMtu(config: NetworkConfig): Promise<number> {
  if (config.settings.mtu !== undefined) return config.settings.mtu;
  return ((await underlayMtu(config.settings.underlayInterface)) ?? DEFAULT_UNDERLAY_MTU) - TUNNEL_OVERHEAD;
}

async function add(invocation: Invocation, config: NetworkConfig): Promise<CniResult> {
  const containerId = invocation.containerId!;
  const netns = invocation.netns!;
  const ifname = invocation.ifname!;
  const { namespace, pod } = podIdentity(invocation);
  if (!namespaceExists(netns)) throw new CniError(ErrorCode.unknownContainer, `CNI_NETNS ${netns} does not exist`);
  // SPEC.md Section 2, ADD: "If an interface of the requested name already exists in the container, the CNI plugin MUST return with an error."
  if ((await linkState(netns, ifname)) !== undefined) {
    throw new CniError(ErrorCode.interfaceSetupFailed, `interface ${ifname} already exists in ${netns}`);
  }
  const store = new AttachmentStore(config.settings.stateDir);
  if (store.get(containerId, ifname) !== undefined) {
    throw new CniError(ErrorCode.interfaceSetupFailed, `container ${containerId} already has ${ifname} (ADD without DEL)`);
  }
  const agent = new AgentClient(config.settings);
  const name = vmName(config.settings.clusterName, namespace, pod);
  let entries: VmCfgEntry[];
  try {
    entries = await agent.pollVmCfg(name);
  } catch (error) {
    throw agentFailure(error, config, `configuration for pod ${namespace}/${pod} (${name})`);
  }
  const cfg = interfaceFor(entries, ifname);
  const vmUuid = cfg['vm-uuid'];
  const hostIfname = hostInterfaceName(ifname, vmUuid);
  if ((await linkState(undefined, hostIfname)) !== undefined) {
    // Another sandbox of the same pod still has it; its DEL is coming.
    throw new CniError(ErrorCode.tryAgainLater, `host interface ${hostIfname} of pod ${namespace}/${pod} still exists`);
  }
  const mtu = await interfaceMtu(config);
  const port: VmAddRequest = {
    time: requestTime(),
    'vm-id': containerId,
    'vm-uuid': vmUuid,
    'vm-name': name,
    'host-ifname': hostIfname,
    'vm-ifname': ifname,
    'vm-namespace': netns,
    'vn-uuid': cfg['vn-id'],
    'vmi-uuid': cfg.id,
  };
  const record: AttachmentRecord = { network: config.name, containerId, ifname, port, posted: false };
  store.put(record);
  try {
    await createVethPair({ netns, ifname, hostIfname, temporaryIfname: temporaryInterfaceName(ifname, vmUuid), mtu });
    try {
      await agent.addVm(port);
    } catch (error) {
      throw agentFailure(error, config, `port ${hostIfname}`);
    }
    record.posted = true;
    store.put(record);
    let vmPort;
    try {
      vmPort = (await agent.pollVm(vmUuid)).find((entry) => entry.id === cfg.id);
    } catch (error) {
      throw agentFailure(error, config, `address for port ${hostIfname}`);
    }
    if (vmPort === undefined || vmPort['ip-address'] === undefined || vmPort.plen === undefined || vmPort.gateway === undefined) {
      throw new CniError(ErrorCode.agentError, `the vrouter agent has no IPv4 address for VMI ${cfg.id}`, JSON.stringify(vmPort ?? null));
    }
    const address = `${vmPort['ip-address']}/${vmPort.plen}`;
    const mac = vmPort['mac-address'] || cfg['mac-address'];
    await configurePodInterface(netns, ifname, { mac, address, gateway: vmPort.gateway });
    const host = await linkState(undefined, hostIfname);
    const result = mergeWithPrevious(config.prevResult, {
      cniVersion: config.cniVersion,
      interfaces: [
        { name: hostIfname, mac: host?.mac, mtu },
        { name: ifname, mac: mac.toLowerCase(), mtu, sandbox: netns },
      ],
      ips: [{ address, gateway: vmPort.gateway, interface: 1 }],
      routes: [{ dst: '0.0.0.0/0', gw: vmPort.gateway }],
      dns: vmPort['dns-server'] && vmPort['dns-server'] !== '0.0.0.0' ? { nameservers: [vmPort['dns-server']] } : {},
    });
    record.result = result;
    store.put(record);
    return result;
  } catch (error) {
    await undo(record, agent, store);
    throw error;
  }
}

/** A chained ADD passes the previous result through with this plugin's interfaces appended. */
function mergeWithPrevious(previous: CniResult | undefined, ours: CniResult): CniResult {
  if (previous === undefined) return ours;
  const offset = previous.interfaces?.length ?? 0;
  return {
    cniVersion: ours.cniVersion,
    interfaces: [...(previous.interfaces ?? []), ...(ours.interfaces ?? [])],
    ips: [...(previous.ips ?? []), ...(ours.ips ?? []).map((ip) => ({ ...ip, interface: (ip.interface ?? 0) + offset }))],
    routes: [...(previous.routes ?? []), ...(ours.routes ?? [])],
    dns: { ...previous.dns, ...ours.dns },
  };
}

/** Removes what ADD made of an attachment; best effort, as DEL must succeed when parts are missing. */
async function undo(record: AttachmentRecord, agent: AgentClient, store: AttachmentStore): Promise<Error | undefined> {
  await deleteLink(record.port['host-ifname']);
  if (record.posted) {
    try {
      await agent.deleteVm(record.port['vm-uuid'], record.containerId);
    } catch (error) {
      // Kept: a later DEL or GC sends DELETE /vm again.
      return error as Error;
    }
  }
  store.remove(record.containerId, record.ifname);
  return undefined;
}

/**
 * DEL comes several times per sandbox, the later ones without CNI_NETNS or
 * prevResult: the attachment record is the authority; with none, there is
 * nothing left to delete. A DEL of another sandbox of the same pod finds no
 * record under its own container id and so never touches this one's port.
 */
async function del(invocation: Invocation, config: NetworkConfig): Promise<void> {
  const store = new AttachmentStore(config.settings.stateDir);
  const record = store.get(invocation.containerId!, invocation.ifname!);
  if (record === undefined) return;
  const failure = await undo(record, new AgentClient(config.settings), store);
  if (failure !== undefined) process.stderr.write(`vrouter-cni: DEL ${record.containerId}: ${failure.message}; DELETE /vm retried by the next DEL or GC\n`);
}

async function check(invocation: Invocation, config: NetworkConfig): Promise<void> {
  const containerId = invocation.containerId!;
  const netns = invocation.netns!;
  const ifname = invocation.ifname!;
  const previous = config.prevResult;
  if (previous === undefined) throw new CniError(ErrorCode.invalidNetworkConfig, 'CHECK needs prevResult (SPEC.md Section 2, CHECK)');
  const record = new AttachmentStore(config.settings.stateDir).get(containerId, ifname);
  if (record === undefined) throw new CniError(ErrorCode.unknownContainer, `no attachment ${containerId}/${ifname} was added`);
  const mismatch = (what: string, details = '') => new CniError(ErrorCode.attachmentMismatch, what, details);

  const interfaces = previous.interfaces ?? [];
  const podIndex = interfaces.findIndex((i) => i.name === ifname && i.sandbox === netns);
  if (podIndex < 0) throw mismatch(`prevResult has no interface ${ifname} in ${netns}`);
  const expected = interfaces[podIndex];
  const podLink = await linkState(netns, ifname);
  if (podLink === undefined || !podLink.up) throw mismatch(`${ifname} in ${netns} is ${podLink === undefined ? 'missing' : 'down'}`);
  if (expected.mac !== undefined && podLink.mac !== expected.mac.toLowerCase()) throw mismatch(`${ifname} has MAC ${podLink.mac}, prevResult says ${expected.mac}`);
  if (expected.mtu !== undefined && podLink.mtu !== expected.mtu) throw mismatch(`${ifname} has MTU ${podLink.mtu}, prevResult says ${expected.mtu}`);
  const hostIfname = record.port['host-ifname'];
  const hostLink = await linkState(undefined, hostIfname);
  if (hostLink === undefined || !hostLink.up) throw mismatch(`host interface ${hostIfname} is ${hostLink === undefined ? 'missing' : 'down'}`);

  const state = await addressState(netns, ifname);
  const ours = (previous.ips ?? []).filter((ip) => ip.interface === podIndex);
  for (const ip of ours) {
    if (!state.addresses.includes(ip.address)) throw mismatch(`${ifname} lacks address ${ip.address}`, `has ${state.addresses.join(', ')}`);
  }
  // Routes of this attachment must be there; a later chained plugin may have added more.
  for (const route of previous.routes ?? []) {
    const gw = route.gw ?? ours[0]?.gateway;
    if (!state.routes.some((r) => r.dst === route.dst && (gw === undefined || r.gateway === gw))) {
      throw mismatch(`${ifname} lacks route ${route.dst} via ${gw}`, JSON.stringify(state.routes));
    }
  }

  // The external dependency: the agent must still have the port, with this address.
  let ports;
  try {
    ports = await new AgentClient(config.settings).getVm(record.port['vm-uuid']);
  } catch (error) {
    throw new CniError(ErrorCode.agentError, `the vrouter agent does not have port ${hostIfname}`, (error as Error).message);
  }
  const port = ports.find((p) => p.id === record.port['vmi-uuid']);
  const agentAddress = port && `${port['ip-address']}/${port.plen}`;
  if (agentAddress === undefined || !ours.some((ip) => ip.address === agentAddress)) {
    throw mismatch(`the vrouter agent has ${agentAddress ?? 'no address'} for ${hostIfname}`, `prevResult: ${ours.map((ip) => ip.address).join(', ')}`);
  }
}

async function status(config: NetworkConfig): Promise<void> {
  if (!(await new AgentClient(config.settings).reachable())) {
    throw new CniError(
      ErrorCode.pluginNotAvailable,
      `the vrouter agent at ${config.settings.agentHost}:${config.settings.agentPort} is not reachable`,
      'ADD cannot be serviced until the local vrouter runs',
    );
  }
}

/** Removes every port whose attachment is not in cni.dev/valid-attachments; reports what it could not remove. */
async function gc(config: NetworkConfig): Promise<void> {
  if (config.validAttachments === undefined) {
    throw new CniError(ErrorCode.invalidNetworkConfig, 'GC needs cni.dev/valid-attachments (SPEC.md Section 2, GC)');
  }
  const valid = new Set(config.validAttachments.map((a) => `${a.containerID}\n${a.ifname}`));
  const store = new AttachmentStore(config.settings.stateDir);
  const agent = new AgentClient(config.settings);
  const failures: string[] = [];
  for (const record of store.all()) {
    if (record.network !== config.name || valid.has(`${record.containerId}\n${record.ifname}`)) continue;
    try {
      const failure = await undo(record, agent, store);
      if (failure !== undefined) failures.push(`${record.containerId}/${record.ifname}: ${failure.message}`);
    } catch (error) {
      failures.push(`${record.containerId}/${record.ifname}: ${(error as Error).message}`);
    }
  }
  if (failures.length > 0) throw new CniError(ErrorCode.agentError, `GC could not remove ${failures.length} attachment(s)`, failures.join('; '));
}
