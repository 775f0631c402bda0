/**
 * Configuring a pod's interface inside the pod's network namespace as the
 * kubelet plugin did: MAC and MTU set, `ip/32`, a host route to the gateway
 * and the default route via it. The dataplane worker has already created
 * the TAP device there under its final name (eth0): moving a device between
 * namespaces costs the kernel tens of milliseconds, and a port add is on the
 * path to a pod's first packet. iproute2 does the rest in one
 * `ip -n <pod> -batch` run; a failure names the commands.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';

export interface PodInterface {
  netns: string;
  ifname: string;
  mac: string;
  ip: string;
  gateway: string;
  mtu: number;
}

/** Runs iproute2 commands in one process (`ip [global options] -batch -`). */
function ipBatch(globalOptions: string[], commands: string[][]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = execFile('ip', [...globalOptions, '-batch', '-'], { timeout: 10_000 }, (error, _stdout, stderr) => {
      const what = commands.map((command) => command.join(' ')).join('; ');
      if (error) reject(new Error(`ip ${globalOptions.join(' ')} -batch (${what}): ${stderr.trim() || error.message}`));
      else resolve();
    });
    child.stdin!.end(commands.map((command) => command.join(' ')).join('\n') + '\n');
  });
}

export async function configurePodInterface(pod: PodInterface): Promise<void> {
  await ipBatch(
    ['-n', pod.netns],
    [
      ['link', 'set', 'dev', pod.ifname, 'address', pod.mac, 'mtu', String(pod.mtu), 'up'],
      ['address', 'add', `${pod.ip}/32`, 'dev', pod.ifname],
      ['route', 'add', pod.gateway, 'dev', pod.ifname, 'scope', 'link'],
      ['route', 'add', 'default', 'via', pod.gateway, 'dev', pod.ifname],
    ],
  );
}

/** The file of the named network namespace (`ip netns add` made it), or undefined when there is none. */
export function netnsPath(name: string): string | undefined {
  return [`/run/netns/${name}`, `/var/run/netns/${name}`].find((file) => fs.existsSync(file));
}
