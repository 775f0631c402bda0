/**
 * The `vrouter` command. Subcommands:
 *   replay   feed pcaps through the dataplane of a state file, write egress pcaps
 *   run      the vrouter daemon of one node (TAP devices, underlay sockets, port API)
 *   port     add, delete and list pod ports through a running daemon's port API
 *   vif, rt, nh, mpls, flow, dropstats, vrfstats, vifdump, trace, monitor:
 *            the OpenContrail-style utilities, clients of the introspect API (tools.ts)
 */
import * as fs from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { loadStateFile } from '../control/config/state-file';
import { replay, ReplayInput } from '../dataplane/io/replay';
import { Daemon } from '../daemon/daemon';
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

function replayCommand(): Command {
  return new Command('replay')
    .description('replay pcaps through the dataplane described by a state file, writing one pcap per egress vif')
    .requiredOption('--state <file>', 'dataplane state file (YAML or JSON)')
    .requiredOption('--in <vif=pcap>', 'feed a pcap/pcapng into a vif (name or number); repeatable', collect, [])
    .requiredOption('--out <dir>', 'directory for <vif-name>.pcap outputs and summary.json')
    .option('--trace', 'print every step decision for every packet')
    .action((options: { state: string; in: string[]; out: string; trace?: boolean }) => {
      const dp = loadStateFile(options.state);
      const inputs: ReplayInput[] = options.in.map((spec) => {
        const at = spec.indexOf('=');
        if (at <= 0 || at === spec.length - 1) throw new UsageError(`--in ${spec}: expected <vif>=<pcap>`);
        const name = spec.slice(0, at);
        const vif = dp.vifs.find(name);
        if (!vif) throw new UsageError(`--in ${spec}: ${options.state} has no vif named or numbered ${name}`);
        return { vif: vif.id, file: spec.slice(at + 1) };
      });
      const summary = replay(dp, inputs, options.out, options.trace ? (line) => process.stdout.write(line + '\n') : null);
      const { received, transmitted, dropped, generated } = summary.packets;
      process.stderr.write(
        `replayed ${received} packets: ${transmitted} transmitted, ${dropped} dropped, ${generated} generated -> ${options.out}\n`,
      );
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
    .option('--control-ca <file>', 'run the control channel over TLS, trusting control nodes signed by this CA (PEM)')
    .option('--control-cert <file>', "this vrouter's TLS certificate (PEM), for control nodes that require one")
    .option('--control-key <file>', "this vrouter's TLS key (PEM)")
    .action(async (options: RunOptions) => {
      const { host, port } = parseHostPort(options.api, '--api');
      const introspect = options.introspect === false ? undefined : parseHostPort(options.introspect, '--introspect');
      await Daemon.start({ stateFile: options.state, apiHost: host, apiPort: port, introspect, control: controlOptions(options) });
    });
}

function fail(error: unknown): never {
  if (error instanceof CommanderError) process.exit(error.exitCode);
  const known = error instanceof UsageError || (error instanceof Error && error.name === 'StateFileError');
  process.stderr.write(`vrouter: ${error instanceof Error ? error.message : String(error)}\n`);
  if (!known && error instanceof Error && process.env.VROUTER_DEBUG) process.stderr.write(`${error.stack}\n`);
  process.exit(known ? 2 : 1);
}

export function main(argv: string[]): void {
  const program = new Command('vrouter')
    .description('vrouter-ts: a userspace overlay vrouter')
    .exitOverride()
    .addCommand(replayCommand())
    .addCommand(runCommand())
    .addCommand(portCommand())
    .addCommand(routeCommand())
    .addCommand(statsCommand())
    .addCommand(cniCommand());
  for (const command of toolCommands()) program.addCommand(command);
  try {
    program.parseAsync(argv).catch(fail);
  } catch (error) {
    fail(error);
  }
}
