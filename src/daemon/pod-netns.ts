/**
 * Moving a pod's TAP device into the pod's network namespace and
 * configuring it there as the kubelet plugin did: renamed (eth0), MAC and
 * MTU set, `ip/32`, a host route to the gateway and the default route via
 * it. iproute2 does the work: the move, then one `ip -n <pod> -batch` run
 * for the rest (two processes instead of six: a port add is on the path to
 * a pod's first packet); a failure names the command.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';

export interface PodInterface {
  tapName: string;
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

export async function moveIntoPod(pod: PodInterface): Promise<void> {
  await ipBatch([], [['link', 'set', 'dev', pod.tapName, 'netns', pod.netns]]);
  await ipBatch(
    ['-n', pod.netns],
    [
      ['link', 'set', 'dev', pod.tapName, 'name', pod.ifname],
      ['link', 'set', 'dev', pod.ifname, 'address', pod.mac, 'mtu', String(pod.mtu), 'up'],
      ['address', 'add', `${pod.ip}/32`, 'dev', pod.ifname],
      ['route', 'add', pod.gateway, 'dev', pod.ifname, 'scope', 'link'],
      ['route', 'add', 'default', 'via', pod.gateway, 'dev', pod.ifname],
    ],
  );
}

/** True when the named network namespace exists (`ip netns add` made it). */
export function netnsExists(name: string): boolean {
  return fs.existsSync(`/run/netns/${name}`) || fs.existsSync(`/var/run/netns/${name}`);
}
