/**
 * npm run bench:replay: packets per second through `vrouter replay` (the
 * real CLI process: read, pipeline, write) for captures of 100k and 1M
 * packets, pinned to one core (taskset -c 1), and its peak RSS, to show
 * memory flat in the input's size (inputs and outputs are streamed).
 *
 * Workloads, each a fixture's input repeated with increasing timestamps
 * (1 µs apart) into a classic pcap:
 *   ecmp-encap  pcap-fixtures/15: 1000 UDP flows to a ClusterIP, ECMP over 3 tunnels, MPLS over UDP out
 *   decap       pcap-fixtures/03: MPLS over UDP from node2 delivered to two pods
 *
 * The CLI reports the replay's own wall and CPU time (node's start-up and
 * the state file's load are outside it, and printed apart as the process's
 * wall time). Each case runs 3 times; the median is shown. On a machine
 * shared with other work, CPU time is the steadier figure.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PcapWriter, readCapture } from '../src/dataplane/io/pcap';

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const VROUTER_BIN = path.join(REPO_ROOT, 'bin', 'vrouter.js');
const FIXTURES = path.join(REPO_ROOT, 'pcap-fixtures');
const SIZES = [100_000, 1_000_000];
const RUNS = 3;
const WORKLOADS = [
  { name: 'ecmp-encap', fixture: '15-ecmp-1000-flows-sticky', vif: 'pod-a' },
  { name: 'decap', fixture: '03-decap-to-pod', vif: 'eth0' },
];

function writeRepeated(from: string, to: string, packets: number): void {
  const frames = readCapture(from);
  const writer = new PcapWriter(to, { nanosecond: false });
  let time = 1_700_000_000_000_000_000n;
  for (let i = 0; i < packets; i++) {
    const frame = frames[i % frames.length];
    time += 1000n;
    writer.write(time, frame.data, 0, frame.data.length);
  }
  writer.close();
}

interface Run {
  wall: number;
  cpu: number;
  rateCpu: number;
  rssMiB: number;
  processWall: number;
  transmitted: number;
}

function replayOnce(state: string, vif: string, input: string, out: string): Run {
  const started = process.hrtime.bigint();
  const result = spawnSync('taskset', ['-c', String(Math.min(1, os.availableParallelism() - 1)), process.execPath, VROUTER_BIN, 'replay', '--state', state, '--in', `${vif}=${input}`, '--out', out], { encoding: 'utf8' });
  const processWall = Number(process.hrtime.bigint() - started) / 1e9;
  if (result.status !== 0) throw new Error(`vrouter replay failed: ${result.stderr}`);
  const match = /(\d+) transmitted.* in ([\d.]+) s \(([\d.]+) s CPU, (\d+) packets per CPU second; peak RSS (\d+) MiB\)/.exec(result.stderr);
  if (!match) throw new Error(`unexpected output: ${result.stderr}`);
  return { transmitted: Number(match[1]), wall: Number(match[2]), cpu: Number(match[3]), rateCpu: Number(match[4]), rssMiB: Number(match[5]), processWall };
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-replay-'));
try {
  console.log('workload    packets  input MB  replay wall s  replay CPU s  packets/CPU s  packets/wall s  peak RSS MiB  process wall s');
  for (const workload of WORKLOADS) {
    const fixture = path.join(FIXTURES, workload.fixture);
    const source = path.join(fixture, 'in', `${workload.vif}.pcap`);
    for (const packets of SIZES) {
      const input = path.join(dir, `${workload.name}-${packets}.pcap`);
      writeRepeated(source, input, packets);
      const runs: Run[] = [];
      for (let i = 0; i < RUNS; i++) {
        const out = path.join(dir, 'out');
        runs.push(replayOnce(path.join(fixture, 'state.yaml'), workload.vif, input, out));
        fs.rmSync(out, { recursive: true, force: true });
      }
      if (runs.some((run) => run.transmitted !== packets)) throw new Error(`${workload.name}: not every packet was forwarded (${runs.map((run) => run.transmitted).join(', ')})`);
      const wall = median(runs.map((run) => run.wall));
      const cpu = median(runs.map((run) => run.cpu));
      console.log(
        [
          workload.name.padEnd(10),
          String(packets).padStart(8),
          (fs.statSync(input).size / 1e6).toFixed(1).padStart(9),
          wall.toFixed(3).padStart(14),
          cpu.toFixed(3).padStart(13),
          String(Math.round(packets / cpu)).padStart(14),
          String(Math.round(packets / wall)).padStart(15),
          String(median(runs.map((run) => run.rssMiB))).padStart(13),
          median(runs.map((run) => run.processWall)).toFixed(2).padStart(15),
        ].join(' '),
      );
      fs.rmSync(input);
    }
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
