/**
 * The `vrouter` command. Subcommands:
 *   replay   feed pcaps through the dataplane of a state file, write egress pcaps (and compare them: --expect)
 *   test     run scenario directories (replay + golden comparison + assertions), JUnit/JSON reports
 *   capture  record a live node's vifs and state as a scenario directory; state --export: its state file
 *   run      the vrouter daemon of one node (TAP devices, underlay sockets, port API)
 *   port     add, delete and list pod ports through a running daemon's port API
 *   vif, rt, nh, mpls, flow, dropstats, vrfstats, vifdump, trace, monitor:
 *            the OpenContrail-style utilities, clients of the introspect API (tools.ts)
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import type { ReplayInput } from '../dataplane/io/replay';
import { CaptureError } from '../dataplane/io/pcap';
import { compareOutputs, MaskError, parseMasks, updateExpected } from '../replay/compare';
import { FIELD_NAMES } from '../replay/packet-fields';
import type { SuiteScenario } from '../replay/suite';
import { type GatewaySpec, parseGatewayFlag } from '../daemon/gateway';
import { cniCommand } from './cni';
import { portCommand } from './port';
import { routeCommand, statsCommand } from './route';
import { parseHostPort } from './host-port';
import { toolCommands } from './tools';

function collect(value: string, previous: string[]): string[] {
  return previous.concat([value]);
}

/** A usage or configuration error: reported without a stack, exit code 2. */
class UsageError extends Error {}

interface ReplayOptions {
  state: string;
  in: string[];
  inPcapng: string[];
  map: string[];
  out?: string;
  expect?: string;
  ignore: string[];
  update?: boolean;
  trace?: boolean;
}

const MASK_HELP = `fields not compared (comma-separated, repeatable): timestamp, or a header field by its Wireshark name
(${FIELD_NAMES.map(([name]) => name).join(', ')}); "outer." or "inner." before it limits it to the tunnel's outer or inner headers.
A masked checksum is still recomputed and must be valid`;

/** Splits `name=value`, naming the option in the error. */
function splitPair(option: string, spec: string, shape: string): [string, string] {
  const at = spec.indexOf('=');
  if (at <= 0 || at === spec.length - 1) throw new UsageError(`${option} ${spec}: expected ${shape}`);
  return [spec.slice(0, at), spec.slice(at + 1)];
}

function replayCommand(): Command {
  return new Command('replay')
    .description('replay pcaps through the dataplane described by a state file, writing one pcap per egress vif; with --expect, compare with golden outputs (exit 0 equal, 1 different, 2 usage or input error)')
    .requiredOption('--state <file>', 'dataplane state file (YAML or JSON)')
    .option('--in <vif=pcap>', 'feed a pcap/pcapng (Ethernet, raw IP, Linux cooked v1/v2) into a vif (name or number); repeatable', collect, [])
    .option('--in-pcapng <file>', 'feed a pcapng whose interfaces are vifs: an interface goes to the vif --map names, or to the vif of its own name; repeatable', collect, [])
    .option('--map <interface=vif>', 'with --in-pcapng: the vif the frames of a capture interface (its if_name) go into; repeatable', collect, [])
    .option('--out <dir>', 'directory for <vif-name>.pcap outputs, summary.json and flows.json (default with --expect: a temporary one)')
    .option('--expect <dir>', 'compare the outputs with this directory (pcaps; summary.json and flows.json if it has them)')
    .option('--ignore <fields>', MASK_HELP, collect, [])
    .option('--update', 'with --expect: rewrite the expected directory from this run instead of comparing')
    .option('--trace', 'print every step decision for every packet')
    .action((options: ReplayOptions) => {
      if (options.in.length + options.inPcapng.length === 0) throw new UsageError('give at least one --in <vif>=<pcap> or --in-pcapng <file>');
      if (options.out === undefined && options.expect === undefined) throw new UsageError('give --out <dir>, --expect <dir> or both');
      if (options.update && options.expect === undefined) throw new UsageError('--update rewrites the --expect directory: give --expect <dir>');
      if (options.map.length > 0 && options.inPcapng.length === 0) throw new UsageError('--map applies to --in-pcapng inputs: give --in-pcapng <file>');
      const { loadStateFile } = require('../control/config/state-file') as typeof import('../control/config/state-file');
      const { replay } = require('../dataplane/io/replay') as typeof import('../dataplane/io/replay');
      const masks = parseMasks(options.ignore);
      const dp = loadStateFile(options.state);
      const vifNamed = (option: string, spec: string, name: string): number => {
        const vif = dp.vifs.find(name);
        if (!vif) throw new UsageError(`${option} ${spec}: ${options.state} has no vif named or numbered ${name}`);
        return vif.id;
      };
      const inputs: ReplayInput[] = options.in.map((spec) => {
        const [name, file] = splitPair('--in', spec, '<vif>=<pcap>');
        return { vif: vifNamed('--in', spec, name), file };
      });
      if (options.inPcapng.length > 0) {
        const interfaceVifs = new Map<string, number>();
        for (const vif of dp.vifs) interfaceVifs.set(vif.name, vif.id);
        for (const spec of options.map) {
          const [name, vif] = splitPair('--map', spec, '<interface>=<vif>');
          interfaceVifs.set(name, vifNamed('--map', spec, vif));
        }
        for (const file of options.inPcapng) inputs.push({ file, vif: null, interfaceVifs });
      }
      const out = options.out ?? fs.mkdtempSync(path.join(os.tmpdir(), 'vrouter-replay-'));
      try {
        const started = process.hrtime.bigint();
        const cpuBefore = process.cpuUsage();
        const summary = replay(dp, inputs, out, options.trace ? (line) => process.stdout.write(line + '\n') : null);
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        const cpu = process.cpuUsage(cpuBefore);
        const cpuSeconds = (cpu.user + cpu.system) / 1e6;
        const { received, transmitted, dropped, generated } = summary.packets;
        process.stderr.write(
          `replayed ${received} packets: ${transmitted} transmitted, ${dropped} dropped, ${generated} generated -> ${options.out ?? 'a temporary directory'}` +
            ` in ${seconds.toFixed(3)} s (${cpuSeconds.toFixed(3)} s CPU, ${Math.round(received / cpuSeconds)} packets per CPU second;` +
            ` peak RSS ${Math.round(process.resourceUsage().maxRSS / 1024)} MiB)\n`,
        );
        for (const [file, cut] of Object.entries(summary.truncatedInput ?? {})) {
          const listed = cut.first.map((frame) => `${frame.frame} (${frame.capturedLength} of ${frame.originalLength} bytes)`).join(', ');
          process.stderr.write(`vrouter: ${file}: ${cut.frames} frames cut short by the capture's snaplen were not replayed: frames ${listed}${cut.frames > cut.first.length ? ', ...' : ''}\n`);
        }
        if (options.expect === undefined) return;
        if (options.update) {
          updateExpected(out, options.expect);
          process.stderr.write(`updated ${options.expect}\n`);
          return;
        }
        const differences = compareOutputs(out, options.expect, { masks });
        for (const difference of differences) process.stdout.write(`${difference.message}\n`);
        process.stdout.write(differences.length === 0 ? `equal to ${options.expect}\n` : `${differences.length} differences from ${options.expect}\n`);
        if (differences.length > 0) process.exitCode = 1;
      } finally {
        if (options.out === undefined) fs.rmSync(out, { recursive: true, force: true });
      }
    });
}

function testCommand(): Command {
  return new Command('test')
    .description('run scenario directories (state file, in/ captures, expected/ outputs, optional scenario.yaml) or directories of them, in parallel; exit 0 when all pass, 1 when any fails, 2 on a usage error')
    .argument('<dir...>', 'a scenario directory, or a directory whose subdirectories are scenarios')
    .option('--junit <file>', 'write a JUnit XML report (one testcase per scenario)')
    .option('--json <file>', 'write a JSON report ("-": standard output, instead of the lines)')
    .option('--jobs <n>', 'scenarios run at once (default: the number of cores)', (value: string) => Number(value))
    .option('--update', "rewrite each scenario's expected/ directory from its replay instead of comparing")
    .action(async (dirs: string[], options: { junit?: string; json?: string; jobs?: number; update?: boolean }) => {
      const { findScenarios, formatResult, jsonReport, junitXml, runSuite, summaryLine } = require('../replay/suite') as typeof import('../replay/suite');
      const jobs = options.jobs ?? os.availableParallelism();
      if (!Number.isInteger(jobs) || jobs < 1) throw new UsageError(`--jobs ${options.jobs}: expected a positive integer`);
      let scenarios: SuiteScenario[];
      try {
        scenarios = findScenarios(dirs);
      } catch (error) {
        throw new UsageError(error instanceof Error ? error.message : String(error));
      }
      const quiet = options.json === '-';
      const started = new Date();
      const results = await runSuite(scenarios, {
        jobs,
        update: options.update === true,
        onResult: (result) => {
          if (!quiet) process.stdout.write(`${formatResult(result)}\n`);
        },
      });
      if (!quiet) process.stdout.write(`${summaryLine(results)}\n`);
      if (options.junit !== undefined) fs.writeFileSync(options.junit, junitXml(scenarios, results, started));
      if (options.json === '-') process.stdout.write(jsonReport(results));
      else if (options.json !== undefined) fs.writeFileSync(options.json, jsonReport(results));
      if (results.some((result) => result.status !== 'passed')) process.exitCode = 1;
    });
}

const DEFAULT_INTROSPECT = '127.0.0.1:8085';

function stateCommand(): Command {
  return new Command('state')
    .description("a running node's state (through its introspect API)")
    .requiredOption('--export', 'write it as a state file that `vrouter run` and `vrouter replay` load')
    .option('-o, --output <file>', 'the file to write (default: standard output)')
    .addOption(new Option('--introspect <host:port>', 'the daemon introspect API').default(DEFAULT_INTROSPECT))
    .action(async (options: { output?: string; introspect: string }) => {
      const { exportState } = require('../replay/state-export') as typeof import('../replay/state-export');
      const { yaml } = await exportState(options.introspect);
      if (options.output === undefined) process.stdout.write(yaml);
      else fs.writeFileSync(options.output, yaml);
    });
}

function captureCommand(): Command {
  return new Command('capture')
    .description('record what crosses every vif of a running node, with its state, as a scenario directory that `vrouter test` replays and compares')
    .argument('<dir>', 'the scenario directory to write (state.yaml, in/capture.pcapng, expected/<vif>.pcap, scenario.yaml)')
    .option('--duration <time>', 'how long to capture: 10s, 500ms, 2m (Ctrl-C stops earlier)', '10s')
    .addOption(new Option('--introspect <host:port>', 'the daemon introspect API').default(DEFAULT_INTROSPECT))
    .action(async (dir: string, options: { duration: string; introspect: string }) => {
      const { captureScenario, parseDuration } = require('../replay/capture') as typeof import('../replay/capture');
      let durationMs: number;
      try {
        durationMs = parseDuration(options.duration);
      } catch (error) {
        throw new UsageError((error as Error).message);
      }
      const stopped = new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      const report = await captureScenario(dir, {
        introspect: options.introspect,
        durationMs,
        stopped,
        onStart: () => process.stderr.write(`capture: recording every vif for ${durationMs / 1000} s into ${dir}\n`),
      });
      process.stderr.write(`capture: ${report.received} frames received, ${report.sent} sent on ${report.vifs.length} vifs -> ${dir}\n`);
      if (report.lost > 0) {
        process.stderr.write(`capture: ${report.lost} frames LOST (the capture ring was full): the scenario misses them and will not replay equal\n`);
        process.exitCode = 1;
      }
      process.exit();
    });
}

interface RunOptions {
  state: string;
  api: string;
  introspect: string | false;
  control: string[];
  nodeName?: string;
  holdTime?: number;
  controlCa?: string;
  controlCert?: string;
  controlKey?: string;
  portsDir?: string;
  stalePortTimeout?: number;
  cleanExit?: boolean;
  snapshot?: string;
  gateway: GatewaySpec[];
}

function controlOptions(options: RunOptions) {
  if (options.control.length === 0) return undefined;
  if (options.control.length > 2) throw new UsageError('--control: at most two control nodes');
  const read = (file: string | undefined) => (file === undefined ? undefined : fs.readFileSync(file));
  const tls = options.controlCa === undefined ? undefined : { ca: read(options.controlCa), cert: read(options.controlCert), key: read(options.controlKey) };
  return {
    servers: options.control.map((server) => ({ ...parseHostPort(server, '--control'), tls })),
    nodeName: options.nodeName,
    holdTime: options.holdTime,
  };
}

function runCommand(): Command {
  return new Command('run')
    .description('run the vrouter of one node: TAP devices per pod, MPLS over UDP/GRE on the underlay, the port API')
    .requiredOption('--state <file>', 'dataplane state file (YAML or JSON)')
    .addOption(new Option('--api <host:port>', 'where the port API listens').default('127.0.0.1:9091'))
    .addOption(new Option('--introspect <host:port>', 'where the introspect API, its page and /metrics listen').default('127.0.0.1:8085'))
    .option('--no-introspect', 'serve no introspect API')
    .option('--control <host:port>', 'a control node (XMPP, port 5269) to learn routes and port configuration from; repeat for a second', collect, [])
    .option('--node-name <name>', 'this vrouter\'s name on the control channel (default: node.name of the state file)')
    .option('--hold-time <seconds>', 'control channel hold time (keepalives every third of it)', (value: string) => Number(value))
    .option('--control-ca <file>', 'upgrade the control channel to TLS by STARTTLS (as the agent\'s xmpp_auth_enable), trusting control nodes signed by this CA (PEM)')
    .option('--control-cert <file>', "this vrouter's TLS certificate (PEM), for control nodes that require one")
    .option('--control-key <file>', "this vrouter's TLS key (PEM)")
    .option('--ports-dir <dir>', "where ports are kept and restored from, as the agent's /var/lib/contrail/ports (default: <state file without extension>.ports)")
    .option('--stale-port-timeout <seconds>', 'after POST /syncports, ports not posted again within this are deleted (the agent\'s stale_interface_cleanup_timeout)', (value: string) => {
      if (!/^\d+$/.test(value) || Number(value) < 1) throw new UsageError(`--stale-port-timeout ${value}: a whole number of seconds, at least 1`);
      return Number(value);
    }, 60)
    .option('--clean-exit', "on SIGTERM/SIGINT remove the pods' devices and the restart snapshot (default: keep them, so a restarted daemon re-attaches the pods without losing a connection)")
    .option('--gateway <keys>', 'a software gateway (the agent\'s [GATEWAY-n]): routing_instance=<fqn>,interface=<ifname>,ip_blocks=<prefix ...>[,routes=<prefix ...>],mac=<external side MAC>; repeatable; needs --control', (value: string, previous: GatewaySpec[]) => {
      try {
        return [...previous, parseGatewayFlag(value)];
      } catch (error) {
        throw new UsageError((error as Error).message);
      }
    }, [])
    .option('--snapshot <file>', 'the restart snapshot: ports, routes and flows, saved every 500 ms and on SIGTERM, restored at start (default: <state file>.snapshot.json)')
    .action(async (options: RunOptions) => {
      // Loaded here, and the other subcommands' modules by them: a restarting daemon loads only its own.
      const { Daemon } = require('../daemon/daemon') as typeof import('../daemon/daemon');
      const { host, port } = parseHostPort(options.api, '--api');
      const introspect = options.introspect === false ? undefined : parseHostPort(options.introspect, '--introspect');
      if (options.gateway.length > 0 && options.control.length === 0) throw new UsageError('--gateway needs --control: its routes reach the other nodes through the control node');
      await Daemon.start({ gateways: options.gateway, stateFile: options.state, apiHost: host, apiPort: port, introspect, control: controlOptions(options), portsDir: options.portsDir, stalePortTimeout: options.stalePortTimeout, cleanExit: options.cleanExit === true, snapshotFile: options.snapshot });
    });
}

/** Exit 2: the command line or an input is wrong, as opposed to 1: the run found a problem (or failed). */
function isUsageOrInputError(error: unknown): boolean {
  return (
    error instanceof UsageError ||
    error instanceof MaskError ||
    error instanceof CaptureError ||
    error instanceof (require('../dataplane/io/replay') as typeof import('../dataplane/io/replay')).ReplayInputError ||
    (error instanceof Error && (error.name === 'StateFileError' || (error as NodeJS.ErrnoException).code === 'ENOENT'))
  );
}

function fail(error: unknown): never {
  if (error instanceof CommanderError) process.exit(error.exitCode === 0 ? 0 : 2);
  const known = isUsageOrInputError(error);
  process.stderr.write(`vrouter: ${error instanceof Error ? error.message : String(error)}\n`);
  if (!known && error instanceof Error && process.env.VROUTER_DEBUG) process.stderr.write(`${error.stack}\n`);
  process.exit(known ? 2 : 1);
}

export function main(argv: string[]): void {
  const program = new Command('vrouter')
    .description('vrouter-ts: a userspace overlay vrouter')
    .exitOverride()
    .addCommand(replayCommand())
    .addCommand(testCommand())
    .addCommand(captureCommand())
    .addCommand(stateCommand())
    .addCommand(runCommand())
    .addCommand(portCommand())
    .addCommand(routeCommand())
    .addCommand(statsCommand())
    .addCommand(cniCommand());
  for (const command of toolCommands()) program.addCommand(command);
  // A usage error of any subcommand exits 2 (through fail), as `vrouter replay --expect` documents.
  for (const command of program.commands) command.exitOverride();
  try {
    program.parseAsync(argv).catch(fail);
  } catch (error) {
    fail(error);
  }
}
