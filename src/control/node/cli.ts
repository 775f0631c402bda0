/**
 * `vrouter-control --config <file> [--listen <host:port>] [--api <host:port>] [--state <file>]`:
 * runs a control node, with the pod registration API (pod-api.ts) when
 * `--api` is given; with `--state` the registered pods and their addresses
 * are kept in that file (pod-store.ts), read back at start before the node
 * listens, so a restart loses none. With `--kubeconfig <file>` or
 * `--in-cluster` it also takes the networks, services and pods from
 * Kubernetes (kube/kube-source.ts); the configuration file is then optional.
 * The configuration file is applied again, without a restart, when it
 * changes on disk or on SIGHUP; a file that does not validate is reported
 * and the running configuration kept. SIGTERM and SIGINT close the sessions
 * (vrouters keep their routes as stale) and exit.
 */
import { watch, FSWatcher } from 'node:fs';
import { AddressInfo } from 'node:net';
import { basename, dirname } from 'node:path';
import { Command, CommanderError } from 'commander';
import { ControlNode } from './control-node';
import { createPodApi } from './pod-api';
import { PodStateError } from './pod-store';
import { NetworkConfig, NetworkConfigError, loadNetworkConfig, parseNetworkConfig } from './network-config';
import { KubeNetworkSource } from './kube/kube-source';
import { KubeWatcher } from './kube/informers';
import { vnOn } from './kube/mapping';
import { Logger, stderrLogger } from '../xmpp/logger';
import { CONTROL_NODE_JID } from '../xmpp/stanza';

export interface RunningControlNode {
  node: ControlNode;
  address: AddressInfo;
  /** Where the pod API listens, when it does. */
  apiAddress: AddressInfo | null;
  /** The Kubernetes source, when one is configured. */
  kube: KubeNetworkSource | null;
  /** Applies the configuration file again (what a change on disk or SIGHUP does); false when it does not validate. */
  reload(): boolean;
  close(): Promise<void>;
}

/** A command-line mistake: reported without a stack, exit code 2. */
class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

const DEFAULT_LISTEN = '0.0.0.0:5269';
const DEFAULT_POD_SUBNET = '10.32.0.0/12';
const DEFAULT_SERVICE_SUBNET = '10.96.0.0/12';
/** Without a configuration file: defaults, and the default namespace's network as the default VN. */
const KUBERNETES_ONLY_CONFIG = '(kubernetes)';
/** Editors write a file in several steps: wait for them to settle before reading it. */
const RELOAD_SETTLE_MS = 100;

/** Parses "host:port", "[v6]:port" or "port". */
function parseListen(text: string, flag = '--listen'): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(text) ?? /^()()(\d+)$/.exec(text);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) throw new UsageError(`${flag} ${text}: expected <host>:<port>`);
  return { host: match[1] || match[2] || '0.0.0.0', port };
}

/** Starts a control node from command-line arguments (without the node and script names). */
export async function runControlNode(argv: string[], logger: Logger = stderrLogger): Promise<RunningControlNode> {
  const program = new Command('vrouter-control')
    .description(`control node (${CONTROL_NODE_JID}) for vrouter-ts vrouters`)
    .exitOverride()
    .option('--config <file>', 'network configuration (YAML or JSON), applied again when it changes or on SIGHUP; required without Kubernetes')
    .option('--listen <host:port>', 'address to accept vrouters on', DEFAULT_LISTEN)
    .option('--api <host:port>', 'address of the pod registration API (POST/GET /pods, DELETE /pods/<vm uuid>)')
    .option('--state <file>', 'where the registered pods and their addresses are kept across restarts')
    .option('--kubeconfig <file>', 'watch this Kubernetes cluster: namespaces, pods, services and endpoints give the networks')
    .option('--in-cluster', 'as --kubeconfig, with the pod\'s service account (in-cluster configuration)')
    .option('--pod-subnet <cidr>', 'cluster-wide pod subnet, where Kubernetes pods get their addresses', DEFAULT_POD_SUBNET)
    .option('--service-subnet <cidr>', 'the cluster\'s service (ClusterIP) subnet, of the service VNs', DEFAULT_SERVICE_SUBNET)
    .option('--route-source <name...>', 'peers (no compute node: a gateway, a benchmark) whose published routes are installed unchecked');
  program.parse(argv, { from: 'user' });
  const options = program.opts<{ config?: string; listen: string; api?: string; state?: string; kubeconfig?: string; inCluster?: boolean; podSubnet: string; serviceSubnet: string; routeSource?: string[] }>();
  const listen = parseListen(options.listen);
  const apiListen = options.api === undefined ? null : parseListen(options.api, '--api');
  const kubernetes = options.kubeconfig !== undefined || options.inCluster === true;
  if (options.kubeconfig !== undefined && options.inCluster) throw new UsageError('--kubeconfig and --in-cluster exclude each other');
  if (!kubernetes && options.config === undefined) throw new UsageError('--config <file> is required without --kubeconfig or --in-cluster');
  const file = options.config;
  for (const [flag, cidr] of [['--pod-subnet', options.podSubnet], ['--service-subnet', options.serviceSubnet]]) {
    try {
      vnOn('', cidr);
    } catch (error) {
      throw new UsageError(`${flag} ${(error as Error).message}`);
    }
  }
  const baseConfig = (): NetworkConfig =>
    file !== undefined
      ? loadNetworkConfig(file)
      : parseNetworkConfig(JSON.stringify({ defaultVn: 'default:default-network', vns: [{ name: 'default:default-network', subnet: vnOn('', options.podSubnet).subnet }] }), KUBERNETES_ONLY_CONFIG);
  const node = new ControlNode({
    config: baseConfig(),
    logger,
    ...(options.state === undefined ? {} : { podStateFile: options.state }),
    ...(options.routeSource === undefined ? {} : { unrestrictedPublishers: new Set(options.routeSource) }),
  });
  const address = await node.listen(listen.port, listen.host);
  let kube: KubeNetworkSource | null = null;
  if (kubernetes) {
    kube = new KubeNetworkSource(node, baseConfig(), { podSubnet: options.podSubnet, serviceSubnet: options.serviceSubnet }, logger);
    kube.attach(await KubeWatcher.start({ kubeconfig: options.kubeconfig }, logger, kube.changed));
    logger.info(`watching Kubernetes (${options.kubeconfig ?? 'in-cluster configuration'}), pods in ${options.podSubnet}`);
  }
  const api = apiListen === null ? null : createPodApi(node);
  const apiAddress =
    api === null
      ? null
      : await new Promise<AddressInfo>((resolve, reject) => {
          api.once('error', reject);
          api.listen(apiListen!.port, apiListen!.host, () => resolve(api.address() as AddressInfo));
        });
  if (apiAddress) logger.info(`pod API listening on ${apiAddress.address}:${apiAddress.port}`);

  const reload = (): boolean => {
    if (file === undefined) return true;
    try {
      const config = loadNetworkConfig(file);
      if (kube) kube.setBase(config);
      else node.reload(config);
      return true;
    } catch (error) {
      if (!(error instanceof NetworkConfigError)) throw error;
      logger.warn(`reload: ${error.message}; keeping the running configuration`);
      return false;
    }
  };
  let settleTimer: NodeJS.Timeout | null = null;
  // The directory, not the file: an editor's rename-over-write would end a watch on the file itself.
  const watcher: FSWatcher | null =
    file === undefined
      ? null
      : watch(dirname(file), (_event, changed) => {
          if (changed !== null && changed !== basename(file)) return;
          if (settleTimer) clearTimeout(settleTimer);
          settleTimer = setTimeout(reload, RELOAD_SETTLE_MS);
        });
  const onHangup = () => reload();
  const onTerminate = () => void close().then(() => process.exit(0));
  process.on('SIGHUP', onHangup);
  process.on('SIGTERM', onTerminate);
  process.on('SIGINT', onTerminate);
  const close = async (): Promise<void> => {
    watcher?.close();
    await kube?.close();
    if (settleTimer) clearTimeout(settleTimer);
    process.off('SIGHUP', onHangup);
    process.off('SIGTERM', onTerminate);
    process.off('SIGINT', onTerminate);
    const apiClosed = api === null ? Promise.resolve() : new Promise<void>((resolve) => api.close(() => resolve()));
    api?.closeAllConnections();
    await Promise.all([node.close(), apiClosed]);
  };
  return { node, address, apiAddress, kube, reload, close };
}

/** The bin's entry: runs until a signal; configuration and usage errors exit 2 with one line. */
export function main(argv: string[]): void {
  runControlNode(argv.slice(2)).catch((error: unknown) => {
    if (error instanceof CommanderError) process.exit(error.exitCode);
    const known = error instanceof UsageError || error instanceof NetworkConfigError || error instanceof PodStateError;
    process.stderr.write(`vrouter-control: ${error instanceof Error ? (known ? error.message : error.stack) : String(error)}\n`);
    process.exit(known ? 2 : 1);
  });
}
