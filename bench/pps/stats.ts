/**
 * The arithmetic and parsing behind bench:pps's figures, kept apart from the
 * measurement so that it can be tested without traffic: the median of runs,
 * latency percentiles, and the loss counters read from `ip -s -j link`,
 * /proc/net/snmp and /proc/net/softnet_stat.
 */

/** The median; for an even count, the mean of the two middle values. */
export function median(values: readonly number[]): number {
  if (values.length === 0) throw new Error('median of no values');
  const sorted = [...values].sort((x, y) => x - y);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/**
 * The nearest-rank percentile: the smallest value with at least `fraction`
 * of the values at or below it (P99 of 400 RTTs is the 396th smallest).
 */
export function percentile(values: readonly number[], fraction: number): number {
  if (values.length === 0) throw new Error('percentile of no values');
  if (!(fraction > 0 && fraction <= 1)) throw new Error(`percentile ${fraction}: in (0, 1]`);
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.max(0, Math.ceil(fraction * sorted.length) - 1)];
}

/** Loss counters by name. */
export type CounterSet = Map<string, number>;

/** What moved between two readings: the counters that grew, by how much (counters that appeared count from 0). */
export function counterDeltas(before: CounterSet, after: CounterSet): CounterSet {
  const deltas: CounterSet = new Map();
  for (const [name, value] of after) {
    const delta = value - (before.get(name) ?? 0);
    if (delta > 0) deltas.set(name, delta);
  }
  return deltas;
}

interface IpLinkStats {
  ifname: string;
  stats64?: { rx: Record<string, number>; tx: Record<string, number> };
}

/** A device's counters that count lost frames, as `ip -s -j link show` names them. */
const LINK_LOSS_COUNTERS = { rx: ['dropped', 'errors', 'over_errors', 'missed'], tx: ['dropped', 'errors', 'carrier_errors'] } as const;

/** The loss counters of every device in `ip -s -j link show` output, as "<ifname> rx_dropped". */
export function parseIpLinkStats(json: string): CounterSet {
  const counters: CounterSet = new Map();
  for (const link of JSON.parse(json) as IpLinkStats[]) {
    if (link.stats64 === undefined) continue;
    for (const direction of ['rx', 'tx'] as const) {
      for (const counter of LINK_LOSS_COUNTERS[direction]) {
        const value = link.stats64[direction][counter];
        if (typeof value === 'number') counters.set(`${link.ifname} ${direction}_${counter}`, value);
      }
    }
  }
  return counters;
}

/** The UDP MIB counters (RFC 4113 and Linux's additions) that count datagrams lost. */
const UDP_LOSS_COUNTERS = new Set(['NoPorts', 'InErrors', 'RcvbufErrors', 'SndbufErrors', 'InCsumErrors', 'MemErrors']);

/** The UDP loss counters of /proc/net/snmp: its two "Udp:" lines, names then values. */
export function parseSnmpUdp(snmp: string): CounterSet {
  const counters: CounterSet = new Map();
  const lines = snmp.split('\n').filter((line) => line.startsWith('Udp: '));
  if (lines.length < 2) return counters;
  const names = lines[0].split(/\s+/).slice(1);
  const values = lines[1].split(/\s+/).slice(1).map(Number);
  names.forEach((name, i) => {
    if (UDP_LOSS_COUNTERS.has(name) && Number.isFinite(values[i])) counters.set(name, values[i]);
  });
  return counters;
}

/**
 * Per-CPU backlog losses from /proc/net/softnet_stat (net/core/net-procfs.c:
 * one line per CPU of hex columns; 1 is frames dropped at a full backlog,
 * 10 those dropped by the flow limit, 12 the CPU's number where the kernel
 * prints it), as "cpu1 dropped" and "cpu1 flow_limit".
 */
export function parseSoftnetStat(text: string): CounterSet {
  const counters: CounterSet = new Map();
  text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .forEach((line, index) => {
      const columns = line.trim().split(/\s+/).map((column) => parseInt(column, 16));
      const cpu = columns.length > 12 ? columns[12] : index;
      counters.set(`cpu${cpu} dropped`, columns[1]);
      if (columns.length > 10) counters.set(`cpu${cpu} flow_limit`, columns[10]);
    });
  return counters;
}
