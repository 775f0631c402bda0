/**
 * npm run bench:reconfig [-- --pps 2000 --route-rate 1000 --rounds 5 --scale-to 10 --hold-ms 1500]:
 * what reconfiguring a control-mode cluster costs traffic that has nothing
 * to do with the change (bench/reconfig-core.ts has the topology and how
 * each figure is probed). Floor: no unrelated datagram lost. Prints, for
 * each change, the time until the new state forwarded (median and worst of
 * the rounds), with the load average. Needs root, iproute2, iputils-ping.
 */
import os from 'node:os';
import { Topology } from '../test/support/netns';
import { RECONFIG_DEFAULTS, ReconfigOptions, runReconfig } from './reconfig-core';
import { median } from './reconfig-workload';

const args = process.argv.slice(2);
const option = (name: string, fallback: number) => {
  const at = args.indexOf(`--${name}`);
  return at >= 0 ? Number(args[at + 1]) : fallback;
};

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench:reconfig needs root (network namespaces)');
  const options: ReconfigOptions = {
    ...RECONFIG_DEFAULTS,
    pps: option('pps', RECONFIG_DEFAULTS.pps),
    routeRate: option('route-rate', RECONFIG_DEFAULTS.routeRate),
    routeWindow: option('route-window', RECONFIG_DEFAULTS.routeWindow),
    rounds: option('rounds', RECONFIG_DEFAULTS.rounds),
    scaleTo: option('scale-to', RECONFIG_DEFAULTS.scaleTo),
    holdMs: option('hold-ms', RECONFIG_DEFAULTS.holdMs),
  };
  if (options.scaleTo < 2) throw new Error('--scale-to: at least 2');
  const topology = new Topology();
  let result;
  try {
    result = await runReconfig(topology, options);
  } finally {
    await topology.destroy();
  }
  console.log(JSON.stringify(result.streams));
  console.log(
    `\nreconfiguration under 2 unrelated UDP streams of ${options.pps} pps (node0 <-> node1), route source ${result.routeChangesPerSecond.toFixed(0)} route changes/s ` +
      `(${result.routeChurn.added} added, ${result.routeChurn.removed} removed), ${options.rounds} rounds, probes every ${options.probeIntervalMs} ms ` +
      `(${os.cpus().length} cores, load average ${os.loadavg().map((load) => load.toFixed(2)).join(' ')})`,
  );
  const sent = result.streams.reduce((sum, stream) => sum + stream.sent, 0);
  const receiveBuffer = result.streams.reduce((sum, stream) => sum + stream.droppedInPods.receiveBuffer, 0);
  const sendBuffer = result.streams.reduce((sum, stream) => sum + stream.droppedInPods.sendBuffer, 0);
  // What the pods' own kernels dropped (a receiver too slow to empty its socket, a send refused) is not the vrouters' loss.
  const lostInVrouters = Math.max(0, result.lost - receiveBuffer - sendBuffer);
  console.log(
    `unrelated datagrams: ${sent} sent, ${result.lost} lost, of which ${receiveBuffer} dropped by a receiving pod's full socket buffer and ${sendBuffer} refused ` +
      `by a sending pod's: ${lostInVrouters} lost in the vrouters (floor 0); longest gap ${Math.max(...result.streams.map((stream) => stream.longestGapMs)).toFixed(1)} ms`,
  );
  console.log(`longest dataplane worker turn (epoll wait to epoll wait): ${result.longestWorkerTurnMs.map((ms, node) => `node${node} ${ms.toFixed(1)} ms`).join(', ')}`);
  console.log('| change | rounds | median ms | worst ms | never |');
  console.log('|---|---:|---:|---:|---:|');
  let never = 0;
  for (const [change, values] of Object.entries(result.changes)) {
    const measured = values.filter((ms): ms is number => ms !== null);
    never += values.length - measured.length;
    const show = (ms: number | undefined) => (ms === undefined ? '-' : ms.toFixed(1));
    console.log(`| ${change} | ${values.length} | ${show(measured.length ? median(measured) : undefined)} | ${show(measured.length ? Math.max(...measured) : undefined)} | ${values.length - measured.length} |`);
  }
  if (lostInVrouters > 0 || never > 0) {
    console.error(`over the floor: ${lostInVrouters} unrelated datagrams lost in the vrouters, ${never} changes that never took effect`);
    process.exitCode = 1;
  }
}

main().catch((error: Error) => {
  console.error(error.stack ?? error.message);
  process.exit(1);
});
