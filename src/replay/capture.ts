/**
 * `vrouter capture <dir>`: turns what a live node does into a replayable
 * scenario directory. For the given time it records every frame crossing
 * every vif (the worker's capture tap, as `vifdump` sees them; a pod's
 * frames before encapsulation, the fabric's encapsulated ones):
 *
 *   state.yaml            the node's state, exported before the capture (`vrouter state --export`)
 *   in/capture.pcapng     what the vifs received, one pcapng interface per vif, in the order the node processed them
 *   expected/<vif>.pcap   what each vif sent
 *   scenario.yaml         the input mapped to the vifs; masks for what a replay cannot reproduce
 *
 * A replay starts where the capture started, with an empty flow table and
 * its IPv4 identification counter at 1, and time-stamps outputs with the
 * input's time: so the masks are timestamp, ip.id and ip.checksum (the
 * checksums are still checked for validity).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { stringify } from 'yaml';
import { lineSplitter, openStream } from '../cli/tools';
import { PcapngWriter, PcapWriter } from '../dataplane/io/pcap';
import { exportState } from './state-export';
import { SCENARIO_FILE } from './scenario';

export const CAPTURE_MASKS = ['timestamp', 'ip.id', 'ip.checksum'];
const CAPTURE_INPUT = 'in/capture.pcapng';

export interface CaptureReport {
  received: number;
  sent: number;
  /** Frames the capture ring or the stream dropped: the scenario misses them. */
  lost: number;
  vifs: string[];
}

interface FrameLine {
  type: string;
  vif?: number;
  vifs?: Array<{ id: number; name: string }>;
  seconds?: number;
  microseconds?: number;
  direction?: 'rx' | 'tx';
  data?: string;
  count?: number;
}

export async function captureScenario(
  dir: string,
  options: { introspect: string; durationMs: number; stopped?: Promise<void>; onStart?: () => void },
): Promise<CaptureReport> {
  fs.mkdirSync(path.join(dir, 'in'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'expected'), { recursive: true });
  for (const stale of fs.readdirSync(path.join(dir, 'expected'))) fs.rmSync(path.join(dir, 'expected', stale));
  const state = await exportState(options.introspect);
  fs.writeFileSync(path.join(dir, 'state.yaml'), state.yaml);

  const names = new Map<number, string>();
  const input = new PcapngWriter(path.join(dir, CAPTURE_INPUT));
  const outputs = new Map<string, PcapWriter>();
  const report: CaptureReport = { received: 0, sent: 0, lost: 0, vifs: [] };
  const onLine = (line: string) => {
    const message = JSON.parse(line) as FrameLine;
    if (message.type === 'start') for (const vif of message.vifs ?? []) names.set(vif.id, vif.name);
    else if (message.type === 'lost') report.lost += message.count ?? 0;
    else if (message.type === 'frame') {
      const name = names.get(message.vif ?? -1) ?? String(message.vif);
      const frame = Buffer.from(message.data ?? '', 'base64');
      const seconds = message.seconds ?? 0;
      const microseconds = message.microseconds ?? 0;
      if (message.direction === 'rx') {
        input.write(name, seconds, microseconds, frame);
        report.received++;
      } else {
        let writer = outputs.get(name);
        if (writer === undefined) outputs.set(name, (writer = new PcapWriter(path.join(dir, 'expected', `${name}.pcap`), { nanosecond: false })));
        writer.writeRecord(seconds, microseconds * 1000, frame, 0, frame.length);
        report.sent++;
      }
    }
  };
  const stream = await openStream(options.introspect, '/api/capture/*?format=ndjson', lineSplitter(onLine));
  options.onStart?.();
  await Promise.race([new Promise((resolve) => setTimeout(resolve, options.durationMs)), stream.ended, options.stopped ?? new Promise(() => undefined)]);
  // What the server drained last is still on its way: a moment for it to arrive.
  await new Promise((resolve) => setTimeout(resolve, 250));
  stream.stop();
  input.close();
  for (const writer of outputs.values()) writer.close();

  report.vifs = [...names.values()];
  const scenario = {
    description: `captured on node ${String((state.document.node as { name: string }).name)} at ${new Date().toISOString()} for ${options.durationMs / 1000} s: ${report.received} frames received, ${report.sent} sent${report.lost ? `, ${report.lost} LOST` : ''}`,
    inputs: [{ file: CAPTURE_INPUT, map: Object.fromEntries(report.vifs.map((name) => [name, name])) }],
    ignore: CAPTURE_MASKS,
  };
  fs.writeFileSync(path.join(dir, SCENARIO_FILE), stringify(scenario));
  return report;
}

/** "10s", "500ms", "2m", or plain seconds, as milliseconds. */
export function parseDuration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  if (!match) throw new Error(`--duration ${text}: expected a number of seconds, or with ms, s or m after it`);
  const value = Number(match[1]);
  return match[2] === 'ms' ? value : match[2] === 'm' ? value * 60_000 : value * 1000;
}
