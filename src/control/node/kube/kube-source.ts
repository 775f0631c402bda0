/**
 * The kube-manager role in vrouter-control: after every change the informers
 * report (batched), the whole mapping is derived again from the objects they
 * hold (mapping.ts) and the difference applied to the control node:
 *
 *   1. pods gone are unregistered (their addresses freed); on the first
 *      pass also registrations of this source's form (VMI uuid derived from
 *      the VM uuid) that the control node kept from before a restart;
 *   2. the configuration (the file's, plus the Kubernetes VNs and services)
 *      is applied when it changed;
 *   3. new or changed pods are registered (together), vrouter = the pod's node;
 *   4. each registered pod's `opencontrail.org/pod-state` annotation is
 *      written where it differs (retried on the next pass when it fails);
 *   5. each LoadBalancer service's status.loadBalancer.ingress is set to the
 *      address the control node gave it, where it differs (retried so too).
 *
 * Nothing is derived from the order or history of events, so a re-list
 * after an apiserver restart, or a restart of vrouter-control, converges to
 * the same state.
 */
import type { ControlNode } from '../control-node';
import type { NetworkConfig } from '../network-config';
import type { Logger } from '../../xmpp/logger';
import type { KubeWatcher } from './informers';
import { ClusterNetwork, MappingOptions, POD_STATE_ANNOTATION, PodRegistrationPlan, interfaceUuid, mapCluster, podStateAnnotation } from './mapping';

/** Events arriving within this delay are applied together. */
const BATCH_MS = 20;
const ANNOTATION_RETRY_MS = 1_000;
/** Annotation writes in flight at once: a big cluster's first pass must not open a connection per pod. */
const MAX_ANNOTATIONS_IN_FLIGHT = 16;

export interface KubeSourceStatus {
  synced: boolean;
  passes: number;
  pods: number;
  refused: number;
  skipped: Record<string, number>;
}

interface Registered {
  json: string;
  vmUuid: string;
  ip: string;
  gateway: string;
}

export class KubeNetworkSource {
  /** VMI uuid -> what was registered (JSON of vrouter and port, but its address) and what it got. */
  private readonly registered = new Map<string, Registered>();
  /** VMI uuid -> why its pod was last refused (tried again each pass: an address may have been freed). */
  private readonly refusals = new Map<string, string>();
  /** "namespace/name" -> the annotation being written. */
  private readonly annotating = new Map<string, string>();
  private appliedConfig = '';
  private timer: NodeJS.Timeout | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private last: ClusterNetwork | null = null;
  private passes = 0;
  /** Annotations still to write (at most MAX_ANNOTATIONS_IN_FLIGHT at once), last first. */
  private pendingAnnotations: Array<{ namespace: string; name: string; value: string }> = [];
  private closed = false;
  /** "namespace/name" -> the ingress address being written (null: none). */
  private readonly ingressing = new Map<string, string | null>();

  constructor(
    private readonly node: ControlNode,
    private base: NetworkConfig,
    private readonly options: MappingOptions,
    private readonly logger: Logger,
    private watcher: KubeWatcher | null = null,
  ) {}

  /** Once the watcher exists (it reports to `changed` from its start). */
  attach(watcher: KubeWatcher): void {
    this.watcher = watcher;
    this.changed();
  }

  /** A new network.yaml (reload): merged with what Kubernetes gives. */
  setBase(config: NetworkConfig): void {
    this.base = config;
    this.appliedConfig = '';
    this.changed();
  }

  readonly changed = (): void => {
    if (this.timer || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.reconcile();
    }, BATCH_MS);
  };

  status(): KubeSourceStatus {
    return {
      synced: this.watcher?.synced ?? false,
      passes: this.passes,
      pods: this.registered.size,
      refused: this.refusals.size,
      skipped: Object.fromEntries(this.last?.skipped ?? []),
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    await this.watcher?.stop();
  }

  private reconcile(): void {
    const watcher = this.watcher;
    // Before every kind is listed, an absent pod may only not be listed yet.
    if (!watcher?.synced || this.closed) return;
    this.passes++;
    const network = mapCluster(watcher.objects(), this.options);
    const skipped = describeSkipped(network.skipped);
    if (skipped !== describeSkipped(this.last?.skipped)) this.logger.info(`kubernetes: given nothing: ${skipped || 'none'}`);
    this.last = network;

    const wanted = new Map(network.pods.map((plan) => [plan.port.id, plan]));
    const gone = [...this.registered.keys()].filter((vmi) => !wanted.has(vmi));
    for (const vmi of gone) {
      this.node.unregisterPods(this.registered.get(vmi)!.vmUuid);
      this.registered.delete(vmi);
    }
    for (const vmi of this.refusals.keys()) if (!wanted.has(vmi)) this.refusals.delete(vmi);
    if (this.passes === 1) {
      // Registrations kept from before a restart (a registration store): those of pods deleted meanwhile go.
      for (const { port } of this.node.registeredPods()) {
        if (port.vmUuid !== undefined && port.id === interfaceUuid(port.vmUuid) && !wanted.has(port.id)) this.node.unregisterPods(port.vmUuid);
      }
    }

    const config = this.merged(network);
    const configJson = JSON.stringify({ vns: [...config.vns.values()], services: config.services });
    if (configJson !== this.appliedConfig) {
      this.node.reload(config);
      this.appliedConfig = configJson;
      // A new configuration may have moved addresses.
      for (const { port, outcome } of this.node.registeredPods()) {
        const entry = this.registered.get(port.id);
        if (entry && 'config' in outcome) Object.assign(entry, { ip: outcome.config.ip, gateway: outcome.config.gateway });
      }
    }

    const changed: Array<{ plan: PodRegistrationPlan; json: string }> = [];
    for (const plan of network.pods) {
      // The address a pod asks for is the one its annotation says it got: no new registration for that.
      const { ip, ...rest } = plan.port;
      const json = JSON.stringify({ vrouter: plan.vrouter, port: rest });
      const entry = this.registered.get(plan.port.id);
      if (entry?.json !== json || (ip !== undefined && ip !== entry.ip)) changed.push({ plan, json });
    }
    const outcomes = this.node.registerPods(changed.map(({ plan }) => ({ vrouter: plan.vrouter, port: plan.port })));
    changed.forEach(({ plan, json }, index) => {
      const outcome = outcomes[index];
      if ('refused' in outcome) {
        if (this.refusals.get(plan.port.id) !== outcome.refused) this.logger.warn(`kubernetes: pod ${plan.namespace}/${plan.name} refused: ${outcome.refused}`);
        this.refusals.set(plan.port.id, outcome.refused);
        this.registered.delete(plan.port.id);
      } else {
        this.refusals.delete(plan.port.id);
        this.registered.set(plan.port.id, { json, vmUuid: plan.port.vmUuid!, ip: outcome.config.ip, gateway: outcome.config.gateway });
      }
    });
    this.annotate(network, watcher);
    this.writeIngress(watcher);
  }

  /** Sets each LoadBalancer service's ingress to its address where the apiserver's differs. */
  private writeIngress(watcher: KubeWatcher): void {
    for (const service of watcher.objects().services) {
      const { namespace, name } = service.metadata ?? {};
      if (service.spec?.type !== 'LoadBalancer' || !namespace || !name) continue;
      const key = `${namespace}/${name}`;
      const wanted = this.node.loadBalancerIp(key) ?? null;
      const current = service.status?.loadBalancer?.ingress?.[0]?.ip ?? null;
      if (current === wanted || (this.ingressing.has(key) && this.ingressing.get(key) === wanted)) continue;
      this.ingressing.set(key, wanted);
      watcher.setLoadBalancerIngress(namespace, name, wanted).then(
        // The service's update event brings the status into the informer's objects.
        () => this.ingressing.delete(key),
        (error: Error) => {
          this.ingressing.delete(key);
          if (this.closed) return;
          this.logger.warn(`kubernetes: writing the LoadBalancer ingress of service ${key}: ${error.message}; trying again`);
          this.retryTimer ??= setTimeout(() => {
            this.retryTimer = null;
            this.changed();
          }, ANNOTATION_RETRY_MS);
        },
      );
    }
  }

  /** The file's configuration with the Kubernetes VNs and services added. */
  private merged(network: ClusterNetwork): NetworkConfig {
    const vns = new Map(this.base.vns);
    for (const vn of network.vns) vns.set(vn.name, vn);
    return { ...this.base, vns, services: [...this.base.services, ...network.services] };
  }

  /** Queues the annotations that differ from the pods' (replacing the previous pass's queue) and starts writing them. */
  private annotate(network: ClusterNetwork, watcher: KubeWatcher): void {
    const current = new Map(watcher.objects().pods.map((pod) => [`${pod.metadata?.namespace}/${pod.metadata?.name}`, pod]));
    this.pendingAnnotations = [];
    for (const plan of network.pods) {
      const decided = this.registered.get(plan.port.id);
      if (!decided) continue;
      const key = `${plan.namespace}/${plan.name}`;
      const value = podStateAnnotation({ uuid: plan.port.id, macAddress: plan.port.mac, ipAddress: decided.ip, gateway: decided.gateway });
      if (current.get(key)?.metadata?.annotations?.[POD_STATE_ANNOTATION] === value || this.annotating.get(key) === value) continue;
      this.pendingAnnotations.push({ namespace: plan.namespace, name: plan.name, value });
    }
    this.pendingAnnotations.reverse(); // taken from the end, in pass order
    this.writeAnnotations(watcher);
  }

  private writeAnnotations(watcher: KubeWatcher): void {
    while (this.annotating.size < MAX_ANNOTATIONS_IN_FLIGHT && this.pendingAnnotations.length > 0 && !this.closed) {
      const { namespace, name, value } = this.pendingAnnotations.pop()!;
      const key = `${namespace}/${name}`;
      if (this.annotating.get(key) === value) continue;
      this.annotating.set(key, value);
      watcher.annotatePod(namespace, name, { [POD_STATE_ANNOTATION]: value }).then(
        () => {
          // The pod's update event brings the annotation into the informer's objects.
          if (this.annotating.get(key) === value) this.annotating.delete(key);
          this.writeAnnotations(watcher);
        },
        (error: Error) => {
          if (this.annotating.get(key) === value) this.annotating.delete(key);
          if (this.closed) return;
          this.logger.warn(`kubernetes: annotating pod ${key}: ${error.message}; trying again`);
          // The retry's pass queues again what is still to write.
          this.retryTimer ??= setTimeout(() => {
            this.retryTimer = null;
            this.changed();
          }, ANNOTATION_RETRY_MS);
        },
      );
    }
  }
}

function describeSkipped(skipped: Map<string, number> | undefined): string {
  return [...(skipped ?? [])].map(([reason, count]) => `${count} ${reason}`).sort().join(', ');
}
