/**
 * npm run bench:pps: packets per second through real interfaces, in
 * namespaces made and removed here. trafgen floods UDP frames from pod A on
 * CPU 0; the figure is pod B's rx_packets over 5 s. Each case gets a fresh
 * topology, so cases never share state. The machine is noisy: compare the
 * ratios of one run, not figures across runs.
 */
import { Topology, requireCommands } from '../test/support/netns';
import { TrafficPath, buildKernelBridge, buildKernelVxlan } from './pps/kernel-paths';
import { RateMeasurement, measureRate } from './pps/traffic';

/** A forwarding path; vrouter paths also name the daemon whose CPU use is reported. */
interface PathUnderTest {
  name: string;
  build(topology: Topology): Promise<TrafficPath & { forwarderPid?: number }>;
}

const PATHS: PathUnderTest[] = [
  { name: 'kernel-bridge', build: buildKernelBridge },
  { name: 'kernel-vxlan', build: buildKernelVxlan },
];
/** 64 bytes is the case's plain name; other sizes get a suffix (kernel-bridge-512). */
const FRAME_SIZES = [64, 512];
/** Each vrouter path against the kernel path doing the same job, printed when both ran. */
const COMPARISONS: Array<[string, string]> = [
  ['vrouter-local', 'kernel-bridge'],
  ['vrouter-overlay', 'kernel-vxlan'],
];
const SOURCE_PORT = 40000;
const DESTINATION_PORT = 5001;

function caseName(path: string, size: number): string {
  return size === 64 ? path : `${path}-${size}`;
}

async function measureCase(path: PathUnderTest, size: number): Promise<RateMeasurement> {
  const topology = new Topology();
  try {
    const built = await path.build(topology);
    return await measureRate({
      topology,
      ...built,
      frame: { ...built, srcPort: SOURCE_PORT, dstPort: DESTINATION_PORT, size },
    });
  } finally {
    await topology.destroy();
  }
}

function describe(result: RateMeasurement): string {
  const cpu = result.forwarderCpuPercent === undefined ? '' : `, forwarder CPU ${result.forwarderCpuPercent.toFixed(0)}%`;
  return `${Math.round(result.pps)} pps, loss ${(result.loss * 100).toFixed(3)}%${cpu}`;
}

async function main(): Promise<void> {
  requireCommands({ ip: 'iproute2', bridge: 'iproute2', trafgen: 'netsniff-ng', taskset: 'util-linux' });
  const swept = Topology.sweepStale();
  if (swept.length > 0) console.log(`removed namespaces left by dead runs: ${swept.join(' ')}`);

  const pps = new Map<string, number>();
  for (const size of FRAME_SIZES) {
    for (const path of PATHS) {
      const name = caseName(path.name, size);
      const result = await measureCase(path, size);
      pps.set(name, result.pps);
      console.log(`${name}: ${describe(result)}`);
    }
  }
  for (const size of FRAME_SIZES) {
    for (const [vrouter, kernel] of COMPARISONS) {
      const numerator = pps.get(caseName(vrouter, size));
      const denominator = pps.get(caseName(kernel, size));
      if (numerator === undefined || denominator === undefined) continue;
      console.log(`${caseName(vrouter, size)}/${caseName(kernel, size)}: ${(numerator / denominator).toFixed(2)}`);
    }
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
