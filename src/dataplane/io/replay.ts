/**
 * Replay: feeds captured frames into named vifs in timestamp order through
 * the real pipeline, and records what each vif transmits into
 * `<out>/<vif-name>.pcap` with the input frame's timestamp, plus a summary
 * (per-vif counters, drops by reason) and the flow table as it stands after
 * the run. The pipeline's clock follows the capture timestamps, so flow
 * aging and fragment timeouts replay exactly too. Same inputs, same output
 * bytes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DROP_REASONS } from '../drop-reasons';
import { Dataplane } from '../dataplane';
import { describeFlows } from '../flow-format';
import { MAX_FRAME, PacketPool } from '../packet-pool';
import { Pipeline, TraceSink } from '../pipeline';
import type { PacketPort } from '../vif';
import { CapturedFrame, PcapWriter, mergeByTimestamp, readCapture } from './pcap';

export interface ReplayInput {
  vif: number;
  file: string;
}

export interface ReplaySummary {
  packets: { received: number; transmitted: number; dropped: number; generated: number; held: number };
  vifs: Record<string, { id: number; rxPackets: number; rxBytes: number; txPackets: number; txBytes: number }>;
  drops: Record<string, number>;
}

/** Writes a vif's frames to its pcap, creating the file on the first frame only. */
class ReplayPort implements PacketPort {
  private writer: PcapWriter | null = null;

  constructor(
    private readonly file: string,
    private readonly clock: () => bigint,
    private readonly nanosecond: boolean,
  ) {}

  send(data: Buffer, offset: number, length: number): void {
    this.writer ??= new PcapWriter(this.file, { nanosecond: this.nanosecond });
    this.writer.write(this.clock(), data, offset, length);
  }

  flush(): void {}

  close(): void {
    this.writer?.close();
  }
}

export function replay(dp: Dataplane, inputs: ReplayInput[], outDir: string, trace: TraceSink | null = null): ReplaySummary {
  const captures: CapturedFrame[][] = inputs.map((input) => readCapture(input.file));
  const sequence = mergeByTimestamp(captures);
  // Microsecond files unless an input carries finer timestamps.
  const nanosecond = sequence.some(({ frame }) => frame.timestampNs % 1000n !== 0n);

  fs.mkdirSync(outDir, { recursive: true });
  let now = 0n;
  const clock = () => now;
  const ports: ReplayPort[] = [];
  for (const vif of dp.vifs) {
    const file = path.join(outDir, `${vif.name}.pcap`);
    fs.rmSync(file, { force: true });
    const port = new ReplayPort(file, clock, nanosecond);
    vif.port = port;
    ports.push(port);
  }

  // Spare slots hold fragments that wait for their first fragment.
  const pool = new PacketPool(128);
  const pipeline = new Pipeline(dp, pool);
  pipeline.trace = trace;
  const batch = new Int32Array(1);
  try {
    for (const { input, frame } of sequence) {
      now = frame.timestampNs;
      const seconds = Number(now / 1_000_000_000n);
      if (seconds !== pipeline.now) pipeline.advanceClock(seconds);
      const slot = pool.alloc();
      // A frame larger than a slot is cut, and so seen as truncated by its headers.
      pool.write(slot, frame.data, 0, Math.min(frame.data.length, MAX_FRAME));
      pool.ingressVif[slot] = inputs[input].vif;
      batch[0] = slot;
      pipeline.processBatch(batch, 1);
      pool.free(slot);
    }
  } finally {
    for (const port of ports) port.close();
  }

  const summary: ReplaySummary = {
    packets: {
      received: pipeline.received,
      transmitted: pipeline.transmitted,
      dropped: dp.drops.total(),
      generated: dp.generated,
      held: pipeline.held,
    },
    vifs: {},
    drops: {},
  };
  for (const vif of dp.vifs) summary.vifs[vif.name] = { id: vif.id, ...vif.counters() };
  DROP_REASONS.forEach((reason, i) => {
    if (dp.drops.counts[i] > 0) summary.drops[reason] = dp.drops.counts[i];
  });
  fs.writeFileSync(path.join(outDir, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
  fs.writeFileSync(path.join(outDir, 'flows.json'), JSON.stringify(describeFlows(dp), null, 2) + '\n');
  return summary;
}
