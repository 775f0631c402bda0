/**
 * Replay: feeds captured frames into named vifs in timestamp order through
 * the real pipeline, and records what each vif transmits into
 * `<out>/<vif-name>.pcap` with the input frame's timestamp, plus a summary
 * (per-vif counters, drops by reason) and the flow table as it stands after
 * the run. The pipeline's clock follows the capture timestamps, so flow
 * aging and fragment timeouts replay exactly too. Same inputs, same output
 * bytes.
 *
 * Inputs and outputs are streamed (a chunk of each input, a chunk of each
 * output in memory), so memory does not grow with the captures. Inputs are
 * merged as mergecap merges them: the input whose next frame is earliest
 * goes first (ties: the input given first), each input in its own order.
 * Frames of other link types than Ethernet get an Ethernet header: the
 * cooked capture's source address (or the pod's MAC on a virtual vif),
 * addressed to the vrouter (a pod's vif) or to the vif's MAC. A frame the
 * capture cut short (snaplen) is never replayed: it is counted, per input,
 * under `truncatedInput` in the summary.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DROP_REASONS } from '../drop-reasons';
import { Dataplane } from '../dataplane';
import { describeFlows } from '../flow-format';
import { MAX_FRAME, PacketPool } from '../packet-pool';
import { Pipeline, TraceSink } from '../pipeline';
import { ETH_HEADER_LEN, ETHERTYPE_IPV4, ETHERTYPE_IPV6, VROUTER_MAC } from '../protocols/ethernet';
import { VIF_VIRTUAL, type PacketPort, type Vif } from '../vif';
import { CaptureReader, copyBytes, LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, LINKTYPE_RAW, PcapWriter } from './pcap';

export interface ReplayInput {
  file: string;
  /** The vif every frame of the file goes into; null when `interfaceVifs` places each frame. */
  vif: number | null;
  /** pcapng interface name (if_name) -> vif id; frames of other interfaces go to `vif`. */
  interfaceVifs?: Map<string, number>;
}

/** A capture that cannot be replayed as given (an interface no vif is mapped to). */
export class ReplayInputError extends Error {}

export interface TruncatedFrames {
  /** Frames the capture cut short. */
  frames: number;
  /** The first few: frame number in the file (from 1), captured and original length. */
  first: Array<{ frame: number; capturedLength: number; originalLength: number }>;
}

export interface ReplaySummary {
  packets: { received: number; transmitted: number; dropped: number; generated: number; held: number };
  vifs: Record<string, { id: number; rxPackets: number; rxBytes: number; txPackets: number; txBytes: number }>;
  drops: Record<string, number>;
  /** Per input file name: frames not replayed because the capture's snaplen cut them (only when there are some). */
  truncatedInput?: Record<string, TruncatedFrames>;
}

const TRUNCATED_LISTED = 10;
const SLL_HEADER_LEN = 16;
const SLL2_HEADER_LEN = 20;
const MAC_LEN = 6;
const ZERO_MAC = new Uint8Array(MAC_LEN);

/** The time of the frame being replayed: what the ports stamp their records with. */
interface ReplayClock {
  seconds: number;
  nanoseconds: number;
}

/** Writes a vif's frames to its pcap, creating the file on the first frame only. */
class ReplayPort implements PacketPort {
  private writer: PcapWriter | null = null;

  constructor(
    private readonly file: string,
    private readonly clock: ReplayClock,
    private readonly nanosecond: boolean,
  ) {}

  send(data: Buffer, offset: number, length: number): void {
    this.writer ??= new PcapWriter(this.file, { nanosecond: this.nanosecond });
    this.writer.writeRecord(this.clock.seconds, this.clock.nanoseconds, data, offset, length);
  }

  flush(): void {}

  close(): void {
    this.writer?.close();
  }
}

/**
 * Copies the reader's frame into the slot as an Ethernet frame; false when
 * it does not fit (the caller then writes what fits, which its headers will
 * show as truncated).
 */
function writeAsEthernet(pool: PacketPool, slot: number, reader: CaptureReader, vif: Vif): boolean {
  const data = reader.data;
  const at = reader.dataOffset;
  const length = reader.capturedLength;
  let payload: number;
  let etherType: number;
  let source: Buffer | null = null;
  let sourceAt = 0;
  switch (reader.linkType) {
    case LINKTYPE_ETHERNET:
      if (length > MAX_FRAME) return false;
      copyBytes(data, at, length, pool.data, pool.start[slot]);
      pool.length[slot] = length;
      return true;
    case LINKTYPE_RAW:
    case LINKTYPE_IPV4: {
      payload = at;
      const version = length > 0 ? data[at] >> 4 : 0;
      etherType = version === 4 ? ETHERTYPE_IPV4 : version === 6 ? ETHERTYPE_IPV6 : 0;
      break;
    }
    case LINKTYPE_LINUX_SLL:
      if (length < SLL_HEADER_LEN) return pool.write(slot, data, at, 0);
      payload = at + SLL_HEADER_LEN;
      etherType = data.readUInt16BE(at + 14);
      if (data.readUInt16BE(at + 4) === MAC_LEN) ((source = data), (sourceAt = at + 6));
      break;
    case LINKTYPE_LINUX_SLL2:
      if (length < SLL2_HEADER_LEN) return pool.write(slot, data, at, 0);
      payload = at + SLL2_HEADER_LEN;
      etherType = data.readUInt16BE(at);
      if (data[at + 11] === MAC_LEN) ((source = data), (sourceAt = at + 12));
      break;
    default:
      throw new Error(`link type ${reader.linkType} reached replay`);
  }
  const payloadLength = at + length - payload;
  if (payloadLength + ETH_HEADER_LEN > MAX_FRAME) return false;
  const d = pool.data;
  const start = pool.start[slot];
  const pod = vif.kind === VIF_VIRTUAL;
  d.set(pod ? VROUTER_MAC : vif.mac, start);
  if (source !== null) source.copy(d, start + MAC_LEN, sourceAt, sourceAt + MAC_LEN);
  else d.set(pod ? vif.mac : ZERO_MAC, start + MAC_LEN);
  d[start + 12] = etherType >> 8;
  d[start + 13] = etherType & 0xff;
  copyBytes(data, payload, payloadLength, d, start + ETH_HEADER_LEN);
  pool.length[slot] = ETH_HEADER_LEN + payloadLength;
  return true;
}

/** The vif a frame of this input goes into. */
function vifOfFrame(input: ReplayInput, reader: CaptureReader): number {
  if (input.interfaceVifs !== undefined) {
    const name = reader.interfaces[reader.interfaceId]?.name;
    const mapped = name === null || name === undefined ? undefined : input.interfaceVifs.get(name);
    if (mapped !== undefined) return mapped;
  }
  if (input.vif !== null) return input.vif;
  const name = reader.interfaces[reader.interfaceId]?.name;
  throw new ReplayInputError(
    `${input.file}: frame ${reader.frameNumber} is on interface ${reader.interfaceId}${name ? ` (${name})` : ' (no if_name)'}, which no --map names`,
  );
}

export function replay(dp: Dataplane, inputs: ReplayInput[], outDir: string, trace: TraceSink | null = null): ReplaySummary {
  const readers: CaptureReader[] = [];
  try {
    for (const input of inputs) readers.push(new CaptureReader(input.file));
    return replayReaders(dp, inputs, readers, outDir, trace);
  } finally {
    for (const reader of readers) reader.close();
  }
}

function replayReaders(dp: Dataplane, inputs: ReplayInput[], readers: CaptureReader[], outDir: string, trace: TraceSink | null): ReplaySummary {
  const pending = readers.map((reader) => reader.next());
  // Microsecond files unless an input records finer timestamps.
  const nanosecond = readers.some((reader) => reader.finerThanMicroseconds);

  fs.mkdirSync(outDir, { recursive: true });
  const clock: ReplayClock = { seconds: 0, nanoseconds: 0 };
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
  const truncated = new Map<string, TruncatedFrames>();
  try {
    for (;;) {
      let next = -1;
      for (let i = 0; i < readers.length; i++) {
        if (!pending[i]) continue;
        if (next < 0) next = i;
        else {
          const reader = readers[i];
          const best = readers[next];
          if (reader.seconds < best.seconds || (reader.seconds === best.seconds && reader.nanoseconds < best.nanoseconds)) next = i;
        }
      }
      if (next < 0) break;
      const reader = readers[next];
      if (reader.capturedLength < reader.originalLength) {
        noteTruncated(truncated, inputs[next].file, reader);
      } else {
        const vifId = vifOfFrame(inputs[next], reader);
        clock.seconds = reader.seconds;
        clock.nanoseconds = reader.nanoseconds;
        if (reader.seconds >>> 0 !== pipeline.now) pipeline.advanceClock(reader.seconds);
        const slot = pool.alloc();
        const vif = dp.vifs.byId[vifId]!;
        // A frame larger than a slot is cut, and so seen as truncated by its headers.
        if (!writeAsEthernet(pool, slot, reader, vif)) pool.write(slot, reader.data, reader.dataOffset, Math.min(reader.capturedLength, MAX_FRAME));
        pool.ingressVif[slot] = vifId;
        batch[0] = slot;
        pipeline.processBatch(batch, 1);
        pool.free(slot);
      }
      pending[next] = reader.next();
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
  if (truncated.size > 0) summary.truncatedInput = Object.fromEntries(truncated);
  fs.writeFileSync(path.join(outDir, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
  fs.writeFileSync(path.join(outDir, 'flows.json'), JSON.stringify(describeFlows(dp), null, 2) + '\n');
  return summary;
}

function noteTruncated(truncated: Map<string, TruncatedFrames>, file: string, reader: CaptureReader): void {
  const name = path.basename(file);
  let entry = truncated.get(name);
  if (entry === undefined) truncated.set(name, (entry = { frames: 0, first: [] }));
  entry.frames++;
  if (entry.first.length < TRUNCATED_LISTED) {
    entry.first.push({ frame: reader.frameNumber, capturedLength: reader.capturedLength, originalLength: reader.originalLength });
  }
}
