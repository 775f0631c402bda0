/**
 * Lists and watches Namespaces, Pods, Services and Endpoints with
 * @kubernetes/client-node informers. The informer keeps the resourceVersion
 * and watches on from it; on 410 Gone it lists again (and reports what the
 * new list lacks as deleted). Any other failure (the apiserver down or
 * restarting) stops an informer: it is started again after a backoff, from
 * its resourceVersion, so no event is lost while it was away.
 *
 * The package is ECMAScript-module only, hence the dynamic import from this
 * CommonJS build.
 */
import type * as K8s from '@kubernetes/client-node' with { 'resolution-mode': 'import' };
import type { Logger } from '../../xmpp/logger';
import type { ClusterObjects } from './mapping';

export interface KubeConnection {
  /** A kubeconfig file; in-cluster configuration (service account) when absent. */
  kubeconfig?: string;
}

const FIRST_RETRY_MS = 200;
const MAX_RETRY_MS = 5_000;

type Kind = keyof ClusterObjects;
const KINDS: Record<Kind, string> = { namespaces: '/api/v1/namespaces', pods: '/api/v1/pods', services: '/api/v1/services', endpoints: '/api/v1/endpoints' };

interface Watched {
  informer: K8s.Informer<K8s.KubernetesObject> & K8s.ObjectCache<K8s.KubernetesObject>;
  listed: boolean;
  retryMs: number;
  retryTimer: NodeJS.Timeout | null;
}

export class KubeWatcher {
  private readonly watched = new Map<Kind, Watched>();
  private stopped = false;

  private constructor(
    private readonly k8s: typeof K8s,
    private readonly core: K8s.CoreV1Api,
    private readonly logger: Logger,
  ) {}

  /** Starts the four informers; `changed` is called after each list and each event. */
  static async start(connection: KubeConnection, logger: Logger, changed: () => void): Promise<KubeWatcher> {
    const k8s = await import('@kubernetes/client-node');
    const config = new k8s.KubeConfig();
    if (connection.kubeconfig === undefined) config.loadFromCluster();
    else config.loadFromFile(connection.kubeconfig);
    const watcher = new KubeWatcher(k8s, config.makeApiClient(k8s.CoreV1Api), logger);
    watcher.watch(config, changed);
    return watcher;
  }

  /** Every kind has been listed once: the objects are the cluster's, not a part of them. */
  get synced(): boolean {
    return [...this.watched.values()].every((entry) => entry.listed);
  }

  objects(): ClusterObjects {
    const list = (kind: Kind) => this.watched.get(kind)!.informer.list() as never[];
    return { namespaces: list('namespaces'), pods: list('pods'), services: list('services'), endpoints: list('endpoints') };
  }

  /** Merges annotations into a pod. */
  async annotatePod(namespace: string, name: string, annotations: Record<string, string>): Promise<void> {
    await this.core.patchNamespacedPod(
      { name, namespace, body: { metadata: { annotations } } },
      this.k8s.setHeaderOptions('Content-Type', this.k8s.PatchStrategy.MergePatch),
    );
  }

  /** Writes a LoadBalancer service's status.loadBalancer.ingress: its one address, or none. */
  async setLoadBalancerIngress(namespace: string, name: string, ip: string | null): Promise<void> {
    await this.core.patchNamespacedServiceStatus(
      { name, namespace, body: { status: { loadBalancer: { ingress: ip === null ? [] : [{ ip }] } } } },
      this.k8s.setHeaderOptions('Content-Type', this.k8s.PatchStrategy.MergePatch),
    );
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const entry of this.watched.values()) {
      if (entry.retryTimer) clearTimeout(entry.retryTimer);
      await entry.informer.stop();
    }
  }

  private watch(config: K8s.KubeConfig, changed: () => void): void {
    const lists: Record<Kind, () => Promise<K8s.KubernetesListObject<K8s.KubernetesObject>>> = {
      namespaces: () => this.core.listNamespace(),
      pods: () => this.core.listPodForAllNamespaces(),
      services: () => this.core.listServiceForAllNamespaces(),
      endpoints: () => this.core.listEndpointsForAllNamespaces(),
    };
    for (const kind of Object.keys(KINDS) as Kind[]) {
      let entry: Watched | undefined = undefined;
      const list = async () => {
        const result = await lists[kind]();
        // The informer lists only at start and after a 410 Gone (its resourceVersion too old to watch from).
        if (entry!.listed) this.logger.info(`kubernetes: ${kind} listed again after 410 Gone (${result.items.length} objects)`);
        entry!.listed = true;
        entry!.retryMs = FIRST_RETRY_MS;
        // The informer applies the list after this returns.
        setImmediate(changed);
        return result;
      };
      const informer = this.k8s.makeInformer(config, KINDS[kind], list);
      entry = { informer, listed: false, retryMs: FIRST_RETRY_MS, retryTimer: null };
      this.watched.set(kind, entry);
      const onEvent = () => {
        entry.retryMs = FIRST_RETRY_MS;
        changed();
      };
      informer.on('add', onEvent);
      informer.on('update', onEvent);
      informer.on('delete', onEvent);
      informer.on('error', (error: unknown) => {
        if (this.stopped) return;
        const delay = entry.retryMs;
        entry.retryMs = Math.min(MAX_RETRY_MS, delay * 2);
        this.logger.warn(`kubernetes: watch of ${kind} failed (${describe(error)}); again in ${delay} ms`);
        entry.retryTimer = setTimeout(() => {
          entry.retryTimer = null;
          if (!this.stopped) void informer.start();
        }, delay);
      });
      void informer.start();
    }
  }
}

function describe(error: unknown): string {
  if (error instanceof Error) return error.message;
  return typeof error === 'object' && error !== null && 'message' in error ? String((error as { message: unknown }).message) : String(error);
}
