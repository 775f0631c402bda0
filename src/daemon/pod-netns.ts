/**
 * Moving a pod's TAP device into the pod's network namespace and
 * configuring it there as the kubelet plugin did: renamed (eth0), MAC and
 * MTU set, `ip/32`, a host route to the gateway and the default route via
 * it. iproute2 does the work; every failure names the command.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface PodInterface {
  tapName: string;
  netns: string;
  ifname: string;
  mac: string;
  ip: string;
  gateway: string;
  mtu: number;
}

async function ip(args: string[]): Promise<void> {
  try {
    await run('ip', args, { timeout: 10_000 });
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr?.trim();
    throw new Error(`ip ${args.join(' ')}: ${stderr || (error as Error).message}`);
  }
}

export async function moveIntoPod(pod: PodInterface): Promise<void> {
  await ip(['link', 'set', 'dev', pod.tapName, 'netns', pod.netns]);
  await ip(['-n', pod.netns, 'link', 'set', 'dev', pod.tapName, 'name', pod.ifname]);
  await ip(['-n', pod.netns, 'link', 'set', 'dev', pod.ifname, 'address', pod.mac, 'mtu', String(pod.mtu), 'up']);
  await ip(['-n', pod.netns, 'address', 'add', `${pod.ip}/32`, 'dev', pod.ifname]);
  await ip(['-n', pod.netns, 'route', 'add', pod.gateway, 'dev', pod.ifname, 'scope', 'link']);
  await ip(['-n', pod.netns, 'route', 'add', 'default', 'via', pod.gateway, 'dev', pod.ifname]);
}

/** True when the named network namespace exists (ip netns add made it). */
export async function netnsExists(name: string): Promise<boolean> {
  try {
    await run('ip', ['netns', 'exec', name, 'true'], { timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}
