/**
 * The pod's veth pair, made as the Contrail CNI makes it
 * (tf-controller 6a674397821187fedfffd9586942b906d3479dbc,
 * src/container/cni/common/veth.go): both ends created in the node's
 * namespace, the peer under a temporary name moved into CNI_NETNS and renamed
 * there (ensureHostIntf, lines 62-128); the host end's name is derived from
 * the pod (buildHostIfName, lines 186-195). Links are driven with iproute2;
 * work inside the pod's namespace runs under nsenter(1) with the path the
 * runtime gave, so namespaces outside /run/netns work too.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import { loadNativeIo } from '../dataplane/io/native';
import { CniError, ErrorCode } from './spec';

/** common/interface.go CNI_UUID_IFNAME_LEN (line 23). */
const UUID_IFNAME_LEN = 11;

/** "tap" + the first 11 characters of `<ifname>-<vm-uuid>` (veth.go InitVEth, lines 197-216). */
export function hostInterfaceName(ifname: string, vmUuid: string): string {
  return 'tap' + `${ifname}-${vmUuid}`.slice(0, UUID_IFNAME_LEN);
}

/** The temporary name of the pod end while it is still in the node's namespace. */
export function temporaryInterfaceName(ifname: string, vmUuid: string): string {
  return 'tmp' + `${ifname}-${vmUuid}`.slice(0, UUID_IFNAME_LEN);
}

function run(file: string, args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(file, args, { timeout: 10_000, killSignal: 'SIGKILL' }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${file} ${args.join(' ')}: ${stderr.trim() || error.message}`));
      else resolve(stdout);
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}

/** `ip` in the pod's namespace (netns = CNI_NETNS) or in the node's (netns undefined). */
function ip(netns: string | undefined, args: string[], input?: string): Promise<string> {
  if (netns === undefined) return run('ip', args, input);
  return run('nsenter', [`--net=${netns}`, 'ip', ...args], input);
}

export function namespaceExists(netns: string): boolean {
  return fs.existsSync(netns);
}

export interface LinkState {
  name: string;
  mac: string;
  mtu: number;
  up: boolean;
}

interface IpLinkJson {
  ifname: string;
  address?: string;
  mtu: number;
  flags?: string[];
}

/** The link, or undefined when there is none of that name. */
export async function linkState(netns: string | undefined, name: string): Promise<LinkState | undefined> {
  let text: string;
  try {
    text = await ip(netns, ['-j', 'link', 'show', 'dev', name]);
  } catch (error) {
    if (/does not exist|Cannot find device/.test((error as Error).message)) return undefined;
    throw error;
  }
  const [link] = JSON.parse(text) as IpLinkJson[];
  if (link === undefined) return undefined;
  return { name: link.ifname, mac: link.address ?? '', mtu: link.mtu, up: (link.flags ?? []).includes('UP') };
}

export interface PodInterface {
  netns: string;
  ifname: string;
  hostIfname: string;
  temporaryIfname: string;
  mtu: number;
}

/** Creates the pair; the pod end is up in the pod's namespace under `ifname`, the host end up in the node's. */
export async function createVethPair(link: PodInterface): Promise<void> {
  const mtu = String(link.mtu);
  try {
    await ip(undefined, ['link', 'add', link.hostIfname, 'mtu', mtu, 'type', 'veth', 'peer', 'name', link.temporaryIfname, 'mtu', mtu]);
    // The vrouter reads the host end from userspace (AF_XDP, AF_PACKET) and forwards frames as they are:
    // a TCP segment the pod left to checksum offload would arrive at its peer with a partial checksum and be
    // dropped. The pod end checksums in software (the setting moves with it into the pod's namespace).
    loadNativeIo().disableTxOffloads(link.temporaryIfname);
    // iproute2 opens a netns argument containing '/' as a path.
    await ip(undefined, ['link', 'set', link.temporaryIfname, 'netns', link.netns]);
    await ip(link.netns, ['-batch', '-'], `link set ${link.temporaryIfname} name ${link.ifname}\nlink set ${link.ifname} up\n`);
    await ip(undefined, ['link', 'set', link.hostIfname, 'up']);
  } catch (error) {
    await deleteLink(link.hostIfname);
    throw new CniError(ErrorCode.interfaceSetupFailed, `could not create the veth pair ${link.hostIfname} / ${link.ifname}`, (error as Error).message);
  }
  // veth.go updateProc (lines 33-43): no router advertisements on the host end.
  try {
    fs.writeFileSync(`/proc/sys/net/ipv6/conf/${link.hostIfname}/accept_ra`, '0');
  } catch {
    // IPv6 disabled in this namespace: nothing to turn off.
  }
}

export interface PodAddress {
  mac: string;
  /** CIDR, e.g. 10.32.0.5/12. */
  address: string;
  gateway: string;
}

/** Sets the pod end's MAC, address and default route (common/interface.go Configure, lines 107-150). */
export async function configurePodInterface(netns: string, ifname: string, address: PodAddress): Promise<void> {
  const onLink = gatewayIsOnLink(address.address, address.gateway) ? '' : ' onlink';
  const commands = [
    `link set ${ifname} down`,
    `link set ${ifname} address ${address.mac}`,
    `link set ${ifname} up`,
    `address add ${address.address} dev ${ifname}`,
    `route add default via ${address.gateway} dev ${ifname}${onLink}`,
  ];
  try {
    await ip(netns, ['-batch', '-'], commands.join('\n') + '\n');
  } catch (error) {
    throw new CniError(ErrorCode.interfaceSetupFailed, `could not configure ${ifname} in ${netns}`, (error as Error).message);
  }
}

function toNumber(address: string): number {
  return address.split('.').reduce((value, octet) => value * 256 + Number(octet), 0);
}

/** Whether the gateway is inside the interface's subnet (else the default route needs `onlink`). */
function gatewayIsOnLink(cidr: string, gateway: string): boolean {
  const [address, length] = cidr.split('/');
  const size = 2 ** (32 - Number(length));
  return Math.floor(toNumber(address) / size) === Math.floor(toNumber(gateway) / size);
}

/** Deletes a link of the node's namespace; a missing link is not an error (DEL and GC are idempotent). */
export async function deleteLink(name: string): Promise<void> {
  try {
    await ip(undefined, ['link', 'del', name]);
  } catch (error) {
    if (!/does not exist|Cannot find device/.test((error as Error).message)) throw error;
  }
}

export interface AddressState {
  addresses: string[];
  routes: Array<{ dst: string; gateway?: string }>;
}

interface IpAddressJson {
  addr_info?: Array<{ family: string; local: string; prefixlen: number }>;
}
interface IpRouteJson {
  dst: string;
  gateway?: string;
}

/** The IPv4 addresses and routes on a pod interface, as `a.b.c.d/n` and `default` -> 0.0.0.0/0. */
export async function addressState(netns: string, ifname: string): Promise<AddressState> {
  const [addresses] = JSON.parse(await ip(netns, ['-j', '-4', 'address', 'show', 'dev', ifname])) as IpAddressJson[];
  const routes = JSON.parse(await ip(netns, ['-j', '-4', 'route', 'show', 'dev', ifname])) as IpRouteJson[];
  return {
    addresses: (addresses?.addr_info ?? []).filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`),
    routes: routes.map((r) => ({ dst: r.dst === 'default' ? '0.0.0.0/0' : r.dst.includes('/') ? r.dst : `${r.dst}/32`, gateway: r.gateway })),
  };
}

/** The MTU of the named interface, or of the interface of the default route. */
export async function underlayMtu(name: string | undefined): Promise<number | undefined> {
  let device = name;
  if (device === undefined) {
    const routes = JSON.parse(await ip(undefined, ['-j', '-4', 'route', 'show', 'default'])) as Array<{ dev?: string }>;
    device = routes[0]?.dev;
    if (device === undefined) return undefined;
  }
  const state = await linkState(undefined, device);
  if (state === undefined) {
    throw new CniError(ErrorCode.invalidNetworkConfig, `contrail.underlay-interface ${JSON.stringify(device)} does not exist`);
  }
  return state.mtu;
}
