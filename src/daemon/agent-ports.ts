/**
 * The ports the agent's API gives `vrouter run` (POST /port, POST /vm), kept
 * in the ports directory and brought up as the agent brings a VMI up: once
 * its interface exists on the node and its addressing is known.
 *
 * The agent does not check that `system-name` exists when a port is posted
 * (RESTServer::VmPortPostHandler calls AddPortFromJson with check_port =
 * false, port_ipc_handler.cc in tungstenfabric/tf-controller @
 * 6a674397821187fedfffd9586942b906d3479dbc): it keeps the port and learns
 * the interface from netlink when it appears. vrouter-ts does the same: it
 * looks for every waiting interface in /sys/class/net twice a second,
 * attaches it when it is there and detaches it when it is gone (a deleted
 * veth), so a port posted before its veth exists, or restored at start,
 * comes up by itself.
 *
 * Addressing: with a control node (`--control`) the port is reported to
 * the control client once its interface is there, and the control node's
 * answer gives VN and address. Without one it comes from the port
 * (ip-address, the vrouter-ts field `vn` naming a VRF, its subnet and
 * gateway from the state file or the `subnet`/`gateway` fields); a port
 * without `vn` waits for configuration, as the agent's VMI without IF-MAP
 * configuration does. A failed attach (no answer, a refusal) is tried again
 * after RETRY_MS. Remote ports (type 2) have no interface: they are kept
 * with their link state only.
 */
import * as fs from 'node:fs';
import type { AgentPort, ConfiguredInterface, VmVnPort, VmiConfig } from '../control/agent/agent-port';
import { NIL_UUID, interfaceJson, vmiConfigJson } from '../control/agent/agent-port';
import { AgentApiError } from '../control/agent/port-api';
import type { PortStore } from '../control/agent/port-store';
import type { Logger } from './log';

/** What the daemon made for an attached port. */
export interface AttachedInterface {
  vif: number;
  label: number;
  vn: string;
  ip: string;
  /** a.b.c.d/len of the VN. */
  subnet: string;
  gateway: string;
}

/** How the daemon attaches and detaches a port's interface (its existing attach path, by interface name). */
export interface InterfaceAttacher {
  /** Undefined: the addressing is not known yet (the port waits for configuration). */
  attach(port: AgentPort): Promise<AttachedInterface | undefined>;
  detach(port: AgentPort, attached: AttachedInterface): Promise<void>;
}

/** Configuration a control node sent for VMs no port was posted for (the CNI's pods): GET /vm-cfg, and the MAC of a POST /vm port. */
export interface VmConfigSource {
  vmConfig(vmName: string): VmiConfig[] | undefined;
}

export type AgentPortState = 'waiting-for-interface' | 'waiting-for-configuration' | 'active' | 'remote';

interface Entry {
  port: AgentPort;
  /** POST /port made it (else it stands for a POST /vm only, which has no addressing of its own). */
  posted: boolean;
  /** The version of POST /syncports it was last posted in. */
  version: number;
  attached?: AttachedInterface;
  state: AgentPortState;
  /** Why the last attach failed, once per cause in the log. */
  lastError?: string;
  /** After a failed attach, not again before (ms since the epoch). */
  retryAt?: number;
}

/** One port as the introspect answers show it. */
export interface AgentPortView {
  port: AgentPort;
  state: AgentPortState;
  attached?: AttachedInterface;
}

const POLL_MS = 500;
/** A port whose attach failed (no control node answer, a refusal, a VN unknown) is tried again after this. */
const RETRY_MS = 5_000;
/** The agent's default stale_interface_cleanup_timeout: ports not posted again after a sync go then. */
export const DEFAULT_STALE_CLEANUP_SECONDS = 60;

export class AgentPorts {
  private readonly entries = new Map<string, Entry>();
  /** POST /vm's interfaces by VMI. */
  private readonly vmVnPorts = new Map<string, VmVnPort>();
  private version = 0;
  /** Every change runs in turn, so the poll and the API never race on one port. */
  private queue: Promise<unknown> = Promise.resolve();
  private readonly timer: NodeJS.Timeout;
  private staleTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: PortStore,
    private readonly attacher: InterfaceAttacher,
    private readonly log: Logger,
    private readonly staleCleanupSeconds = DEFAULT_STALE_CLEANUP_SECONDS,
    /** With a control node: POST /vm ports without a posted port are attached, the control node configures them. */
    private readonly configuration?: VmConfigSource,
  ) {
    this.timer = setInterval(() => void this.serialize(() => this.poll()), POLL_MS);
    this.timer.unref();
  }

  /** Reads the ports directory back (at start); files that do not read are logged and skipped. */
  restore(): Promise<void> {
    return this.serialize(async () => {
      const { ports, vmVnPorts, problems } = this.store.load();
      for (const problem of problems) this.log.warn({ component: 'ports', file: problem.file, err: problem.error }, 'port file skipped');
      for (const port of ports) this.entries.set(port.id, { port, posted: true, version: this.version, state: initialState(port) });
      for (const vmVn of vmVnPorts) this.linkVmVn(vmVn);
      this.log.info({ component: 'ports', dir: this.store.dir, ports: ports.length, vmInterfaces: vmVnPorts.length }, 'ports restored');
      await this.poll();
    });
  }

  stop(): void {
    clearInterval(this.timer);
    clearTimeout(this.staleTimer);
  }

  /** AddPortFromJson: every port is written, then kept (a port known already is replaced). */
  addPorts(ports: AgentPort[]): Promise<void> {
    return this.serialize(async () => {
      for (const port of ports) {
        const known = this.entries.get(port.id);
        if (known && samePort(known.port, port)) {
          known.version = this.version;
          continue;
        }
        if (known) await this.detach(known);
        try {
          this.store.savePort(port);
        } catch (error) {
          throw new AgentApiError(`{ Writing of Json string to file failed for ${port.id}: ${(error as Error).message} }`);
        }
        this.entries.set(port.id, { port, posted: true, version: this.version, state: initialState(port) });
        this.log.info({ component: 'ports', id: port.id, vm: port.displayName, ifname: port.systemName, type: port.type }, 'port added');
      }
      await this.poll();
    });
  }

  /** DeleteVmiUuidEntry: also for an unknown port. */
  deletePort(id: string): Promise<void> {
    return this.serialize(async () => {
      const entry = this.entries.get(id);
      this.store.removePort(id);
      if (!entry) return;
      await this.detach(entry);
      this.entries.delete(id);
      this.log.info({ component: 'ports', id }, 'port deleted');
    });
  }

  /** SyncHandler: a new version; ports not posted again within the stale timeout are deleted. */
  sync(): void {
    this.version++;
    const version = this.version;
    clearTimeout(this.staleTimer);
    this.staleTimer = setTimeout(() => {
      const stale = [...this.entries.values()].filter((entry) => entry.posted && entry.version < version);
      if (stale.length > 0) this.log.info({ component: 'ports', version, ports: stale.length }, 'stale ports deleted after sync');
      for (const entry of stale) void this.deletePort(entry.port.id);
    }, this.staleCleanupSeconds * 1000);
    this.staleTimer.unref();
  }

  /** EnablePort / DisablePort: remote ports only; the link state is persisted. */
  setLinkState(id: string, up: boolean): Promise<void> {
    return this.serialize(async () => {
      const entry = this.entries.get(id);
      if (!entry) throw new AgentApiError(`{Port Not found ${id}}`);
      if (entry.port.type !== 2) throw new AgentApiError(`{Incorrect Port type for ${id}}`);
      const linkState = up ? 1 : 0;
      if (entry.port.linkState === linkState) return;
      entry.port = { ...entry.port, linkState };
      this.store.savePort(entry.port);
    });
  }

  /** GetPortInfo: MakeJsonFromVmi of an active port. */
  portInfo(id: string): string | undefined {
    const entry = this.entries.get(id);
    return entry?.attached ? interfaceJson(configured(entry.port, entry.attached), this.meta()) : undefined;
  }

  /** GetVmVnCfgPort: the VMIs of the VM named so, from the ports posted for it. */
  vmConfig(vmName: string): string[] | undefined {
    const vmis = [...this.entries.values()].filter((entry) => entry.posted && entry.port.displayName === vmName);
    if (vmis.length === 0) return this.configuration?.vmConfig(vmName)?.map(vmiConfigJson);
    return vmis.map(({ port }) => vmiConfigJson(vmiConfig(port)));
  }

  /** AddVmVnPort: the CNI's host interface for a VMI; the port comes up on it. */
  addVmVnPort(vmVn: VmVnPort): Promise<void> {
    return this.serialize(async () => {
      this.store.saveVmVnPort(vmVn);
      const entry = this.entries.get(vmVn.vmiUuid);
      if (entry?.attached && entry.port.systemName !== vmVn.hostIfname) await this.detach(entry);
      this.linkVmVn(vmVn);
      this.log.info({ component: 'ports', vm: vmVn.vmName, vmi: vmVn.vmiUuid, ifname: vmVn.hostIfname }, 'vm interface added');
      await this.poll();
    });
  }

  /** GetVmVnPort: one VMI, or every VMI POST /vm gave the VM; each must be active. */
  vmInterfaces(vmUuid: string, vmiUuid?: string): string[] | undefined {
    const ids = vmiUuid !== undefined ? [vmiUuid] : [...this.vmVnPorts.values()].filter((vmVn) => vmVn.vmUuid === vmUuid).map((vmVn) => vmVn.vmiUuid);
    if (ids.length === 0) return undefined;
    const documents: string[] = [];
    for (const id of ids) {
      const entry = this.entries.get(id);
      if (!entry?.attached) return undefined;
      documents.push(interfaceJson(configured(entry.port, entry.attached), this.meta()));
    }
    return documents;
  }

  /** DeleteVmVnPort: the VM's interfaces go; a port also posted with POST /port stays, waiting for its interface. */
  deleteVm(vmUuid: string): Promise<void> {
    return this.serialize(async () => {
      const gone = [...this.vmVnPorts.values()].filter((vmVn) => vmVn.vmUuid === vmUuid);
      this.store.removeVmVnPorts(gone);
      for (const vmVn of gone) {
        this.vmVnPorts.delete(vmVn.vmiUuid);
        const entry = this.entries.get(vmVn.vmiUuid);
        if (!entry) continue;
        await this.detach(entry);
        if (!entry.posted) this.entries.delete(vmVn.vmiUuid);
        else entry.state = initialState(entry.port);
      }
      if (gone.length > 0) this.log.info({ component: 'ports', vm: vmUuid, interfaces: gone.length }, 'vm deleted');
    });
  }

  list(): AgentPortView[] {
    return [...this.entries.values()].map(({ port, state, attached }) => ({ port, state, attached }));
  }

  private meta() {
    return { author: 'vrouter run', now: new Date() };
  }

  /** A POST /vm gives a posted port its host interface; alone, it waits for configuration. */
  private linkVmVn(vmVn: VmVnPort): void {
    this.vmVnPorts.set(vmVn.vmiUuid, vmVn);
    const entry = this.entries.get(vmVn.vmiUuid);
    if (entry) {
      entry.port = { ...entry.port, systemName: vmVn.hostIfname };
      return;
    }
    this.entries.set(vmVn.vmiUuid, {
      port: {
        id: vmVn.vmiUuid,
        instanceId: vmVn.vmUuid,
        vnId: vmVn.vnUuid,
        projectId: NIL_UUID,
        displayName: vmVn.vmName,
        ip: '0.0.0.0',
        ip6: '::',
        type: 0,
        systemName: vmVn.hostIfname,
        mac: '00:00:00:00:00:00',
        rxVlanId: -1,
        txVlanId: -1,
        vhostuserMode: 0,
        linkState: 1,
      },
      posted: false,
      version: this.version,
      state: 'waiting-for-configuration',
    });
  }

  /** Attaches what waits and has its interface, detaches what lost it. */
  private async poll(): Promise<void> {
    for (const entry of this.entries.values()) {
      if (entry.state === 'remote') continue;
      const present = fs.existsSync(`/sys/class/net/${entry.port.systemName}`);
      if (entry.attached) {
        if (!present) {
          await this.detach(entry);
          this.log.info({ component: 'ports', id: entry.port.id, ifname: entry.port.systemName }, 'interface gone: port waits for it');
        }
        continue;
      }
      if (!present) {
        if (entry.state !== 'waiting-for-configuration') entry.state = 'waiting-for-interface';
        continue;
      }
      if ((!entry.posted && !this.takeConfiguredMac(entry)) || (entry.retryAt ?? 0) > Date.now()) continue;
      try {
        const attached = await this.attacher.attach(entry.port);
        entry.lastError = undefined;
        entry.retryAt = undefined;
        if (!attached) {
          entry.state = 'waiting-for-configuration';
          continue;
        }
        entry.attached = attached;
        entry.state = 'active';
        this.log.info({ component: 'ports', id: entry.port.id, ifname: entry.port.systemName, vif: attached.vif, label: attached.label, vn: attached.vn, ip: attached.ip }, 'port active');
      } catch (error) {
        const message = (error as Error).message;
        if (entry.lastError !== message) this.log.warn({ component: 'ports', id: entry.port.id, ifname: entry.port.systemName, err: message }, 'port not attached');
        entry.lastError = message;
        entry.retryAt = Date.now() + RETRY_MS;
      }
    }
  }

  /**
   * A POST /vm port has no MAC of its own: with a control node it takes its
   * VMI's from the configuration (the CNI gives the pod's eth0 the one GET
   * /vm answers). False while there is none, or without a control node.
   */
  private takeConfiguredMac(entry: Entry): boolean {
    const vmVn = this.vmVnPorts.get(entry.port.id);
    const mac = vmVn && this.configuration?.vmConfig(vmVn.vmName)?.find((vmi) => vmi.id === entry.port.id)?.mac;
    if (!mac) return false;
    entry.port = { ...entry.port, mac };
    return true;
  }

  private async detach(entry: Entry): Promise<void> {
    if (!entry.attached) return;
    const attached = entry.attached;
    entry.attached = undefined;
    entry.state = initialState(entry.port);
    await this.attacher.detach(entry.port, attached);
  }

  private serialize<T>(work: () => Promise<T>): Promise<T> {
    const run = this.queue.then(work);
    this.queue = run.catch(() => undefined);
    return run;
  }
}

function initialState(port: AgentPort): AgentPortState {
  return port.type === 2 ? 'remote' : 'waiting-for-interface';
}

/** Same port but for when and by whom it was written. */
function samePort(a: AgentPort, b: AgentPort): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function configured(port: AgentPort, attached: AttachedInterface): ConfiguredInterface {
  // vrouter-ts serves no DNS of its own: the gateway (whose ARP the vrouter answers) stands for the IPAM's DNS server.
  return { port, ip: attached.ip, plen: Number(attached.subnet.split('/')[1]), gateway: attached.gateway, dnsServer: attached.gateway };
}

function vmiConfig(port: AgentPort): VmiConfig {
  return { id: port.id, vmUuid: port.instanceId, vnId: port.vnId, vnName: port.vn ?? '', mac: port.mac, subInterface: false, vlanId: 0, annotations: port.annotations ?? {} };
}
