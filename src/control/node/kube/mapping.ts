/**
 * The kube-manager mapping, from listed Kubernetes objects to what the
 * control node is given: VNs and services (applied as configuration) and one
 * pod registration per pod. A pure function of the objects, so a restart of
 * vrouter-control (or a re-list) derives the same thing again.
 *
 * As Juniper/contrail-kubernetes' kube-network-manager did
 * (@ 0042cfbd147d17822176df0232e9e5077e89895b pkg/network/opencontrail/controller.go,
 *  @ 00eb8474a5346bf9e8681fdba6c5aff51837b4d4 pkg/network/opencontrail/service.go,
 *  @ 0f28c6390eb2c950a7dde82d97abff0eba04af2d pkg/network/opencontrail/opencontrail.go):
 *
 * - a pod's VN is `<namespace>:<its name label>`, else `<namespace>:default-network`
 *   (getPodNetworkName); every pod VN takes its addresses from the one
 *   cluster-wide pod subnet (PrivateSubnet), so they never overlap;
 * - a service's VN is `<namespace>:service-<its name label, else "default">`
 *   (ServiceName, ServiceNetworkFmt) on the service subnet; its ClusterIP is a
 *   floating IP on each backend pod, with the service ports mapped to the
 *   target ports;
 * - a pod labelled `uses: <service>` may reach that service of its namespace;
 * - a service's `spec.externalIPs`, and for `type: LoadBalancer` an address
 *   of the external network's pool, are floating IPs in the external VN
 *   (network.yaml `external`) on its backends, reached through the gateway
 *   (the control node's NetworkManager gives them; what is not IPv4 is skipped);
 * - the pod is annotated `opencontrail.org/pod-state` with
 *   {uuid, macAddress, ipAddress, gateway} of its interface (InstanceMetadata).
 *
 * Backends are the pods of the service's namespace its selector matches, or,
 * for a service without a selector, the pods its Endpoints name. A pod being
 * deleted (deletionTimestamp) stops being a backend, as in Endpoints, but
 * keeps its interface until it is gone. Pods with hostNetwork, not yet
 * scheduled, or finished, and everything of a namespace being deleted, get
 * nothing.
 */
import { createHash } from 'node:crypto';
import ipaddr from 'ipaddr.js';
import type { LocalPort, PortMapping } from '../../agent/agent-interface';
import { ipFromString, ipToString } from '../../../dataplane/protocols/ipv4';
import { prefixMask } from '../../../dataplane/lpm/prefix-table';
import type { ServiceConfig, VnConfig } from '../network-config';
import { macOf } from '../pod-api';

export const POD_STATE_ANNOTATION = 'opencontrail.org/pod-state';
const LABEL_NETWORK = 'name';
const LABEL_USES = 'uses';
const DEFAULT_POD_NETWORK = 'default-network';
const DEFAULT_SERVICE_NETWORK = 'default';
/** The label, on a pod's registration only, that a service's selector matches: membership is decided here, per namespace. */
const BACKEND_LABEL_PREFIX = 'backend-of/';

/** The fields of the Kubernetes objects the mapping reads (lists and watch events give the same names). */
export interface KubeMeta {
  name?: string;
  namespace?: string;
  uid?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  deletionTimestamp?: unknown;
}
export interface KubeNamespace {
  metadata?: KubeMeta;
}
export interface KubePod {
  metadata?: KubeMeta;
  spec?: { nodeName?: string; hostNetwork?: boolean };
  status?: { phase?: string };
}
export interface KubeServicePort {
  name?: string;
  protocol?: string;
  port: number;
  targetPort?: number | string;
}
export interface KubeService {
  metadata?: KubeMeta;
  spec?: { clusterIP?: string; selector?: Record<string, string>; ports?: KubeServicePort[]; externalIPs?: string[]; type?: string };
  status?: { loadBalancer?: { ingress?: Array<{ ip?: string }> } };
}
export interface KubeEndpoints {
  metadata?: KubeMeta;
  subsets?: Array<{
    addresses?: Array<{ ip?: string; targetRef?: { kind?: string; name?: string; namespace?: string; uid?: string } }>;
    ports?: Array<{ name?: string; port: number; protocol?: string }>;
  }>;
}

export interface ClusterObjects {
  namespaces: KubeNamespace[];
  pods: KubePod[];
  services: KubeService[];
  endpoints: KubeEndpoints[];
}

export interface MappingOptions {
  /** The cluster-wide pod subnet, a.b.c.d/len. */
  podSubnet: string;
  /** The service (ClusterIP) subnet, a.b.c.d/len. */
  serviceSubnet: string;
}

/** What kube-network-manager wrote on a pod (InstanceMetadata, in its field order). */
export interface PodState {
  uuid: string;
  macAddress: string;
  ipAddress: string;
  gateway: string;
}

export interface PodRegistrationPlan {
  namespace: string;
  name: string;
  vrouter: string;
  port: LocalPort;
}

export interface ClusterNetwork {
  vns: VnConfig[];
  services: ServiceConfig[];
  pods: PodRegistrationPlan[];
  /** Objects given nothing, by reason. */
  skipped: Map<string, number>;
}

/** A VN on a subnet, its gateway the subnet's first address (as network.yaml's default). */
export function vnOn(name: string, subnet: string): VnConfig {
  if (!ipaddr.IPv4.isValidCIDRFourPartDecimal(subnet)) throw new Error(`${subnet} is not an IPv4 prefix (a.b.c.d/length)`);
  const [address, length] = ipaddr.IPv4.parseCIDR(subnet);
  const network = (ipFromString(address.toString()) & prefixMask(length)) >>> 0;
  return { name, subnet: `${ipToString(network)}/${length}`, network, length, gateway: ipToString(network + 1) };
}

/** The VMI uuid of a pod's interface: name-based (RFC 4122 version 5 layout) from the pod uid, so it survives restarts. */
export function interfaceUuid(podUid: string): string {
  const bytes = createHash('sha1').update(`vrouter-ts vmi ${podUid}`).digest().subarray(0, 16);
  bytes[6] = (bytes[6] & 0x0f) | 0x50;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export function podStateAnnotation(state: PodState): string {
  return JSON.stringify({ uuid: state.uuid, macAddress: state.macAddress, ipAddress: state.ipAddress, gateway: state.gateway });
}

/** The address a pod's annotation gives its own interface, when it is one of the pod subnet. */
function annotatedAddress(pod: KubePod, vmiUuid: string, podVn: VnConfig): string | undefined {
  const text = pod.metadata?.annotations?.[POD_STATE_ANNOTATION];
  if (text === undefined) return undefined;
  try {
    const state = JSON.parse(text) as Partial<PodState>;
    if (state.uuid !== vmiUuid || typeof state.ipAddress !== 'string' || !ipaddr.IPv4.isValidFourPartDecimal(state.ipAddress)) return undefined;
    const address = ipFromString(state.ipAddress);
    return ((address & prefixMask(podVn.length)) >>> 0) === podVn.network ? state.ipAddress : undefined;
  } catch {
    return undefined;
  }
}

function selects(selector: Record<string, string>, labels: Record<string, string>): boolean {
  return Object.entries(selector).every(([key, value]) => labels[key] === value);
}

export function mapCluster(objects: ClusterObjects, options: MappingOptions): ClusterNetwork {
  const skipped = new Map<string, number>();
  const skip = (reason: string) => skipped.set(reason, (skipped.get(reason) ?? 0) + 1);
  const podSubnet = vnOn('', options.podSubnet);
  const liveNamespaces = new Set(
    objects.namespaces.filter((ns) => ns.metadata?.name && ns.metadata.deletionTimestamp == null).map((ns) => ns.metadata!.name!),
  );
  const vns = new Map<string, VnConfig>();

  const pods = new Map<string, { pod: KubePod; namespace: string; name: string; uid: string; vrouter: string; labels: Record<string, string> }>();
  for (const pod of objects.pods) {
    const { name, namespace, uid } = pod.metadata ?? {};
    if (!name || !namespace || !uid) skip('pod without name, namespace or uid');
    else if (!liveNamespaces.has(namespace)) skip('pod of a namespace being deleted');
    else if (pod.spec?.hostNetwork) skip('pod with hostNetwork');
    else if (!pod.spec?.nodeName) skip('pod not scheduled');
    else if (pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') skip('pod finished');
    else pods.set(uid, { pod, namespace, name, uid, vrouter: pod.spec.nodeName, labels: { ...(pod.metadata?.labels ?? {}) } });
  }

  const endpointsByService = new Map<string, KubeEndpoints>();
  for (const endpoints of objects.endpoints) endpointsByService.set(`${endpoints.metadata?.namespace}/${endpoints.metadata?.name}`, endpoints);

  const services: ServiceConfig[] = [];
  const backendLabels = new Map<string, Record<string, string>>();
  for (const service of objects.services) {
    const { name, namespace } = service.metadata ?? {};
    const clusterIp = service.spec?.clusterIP;
    if (!name || !namespace || !liveNamespaces.has(namespace)) {
      skip('service of a namespace being deleted');
      continue;
    }
    if (!clusterIp || !ipaddr.IPv4.isValidFourPartDecimal(clusterIp)) {
      skip('service without an IPv4 ClusterIP');
      continue;
    }
    const endpoints = endpointsByService.get(`${namespace}/${name}`);
    const ports: PortMapping[] = [];
    for (const entry of service.spec?.ports ?? []) {
      const protocol = (entry.protocol ?? 'TCP').toLowerCase();
      if (protocol !== 'tcp' && protocol !== 'udp') {
        skip(`service port of protocol ${entry.protocol}`);
        continue;
      }
      // A named target port is only known per pod; Endpoints carry it resolved.
      const named = typeof entry.targetPort === 'string' ? endpoints?.subsets?.flatMap((subset) => subset.ports ?? []).find((port) => port.name === entry.name) : undefined;
      const targetPort = entry.targetPort === undefined ? entry.port : typeof entry.targetPort === 'number' ? entry.targetPort : named?.port;
      if (targetPort === undefined) {
        skip('service port with a named target port not in its Endpoints');
        continue;
      }
      ports.push({ protocol, port: entry.port, targetPort });
    }
    if (ports.length === 0) {
      skip('service without a TCP or UDP port');
      continue;
    }
    const serviceName = `${namespace}/${name}`;
    const backendKey = `${BACKEND_LABEL_PREFIX}${serviceName}`;
    const selector = service.spec?.selector ?? {};
    const backends: string[] = [];
    if (Object.keys(selector).length > 0) {
      for (const entry of pods.values()) {
        if (entry.namespace === namespace && entry.pod.metadata?.deletionTimestamp == null && selects(selector, entry.labels)) backends.push(entry.uid);
      }
    } else {
      for (const subset of endpoints?.subsets ?? []) {
        for (const address of subset.addresses ?? []) {
          const ref = address.targetRef;
          if (ref?.kind === 'Pod' && ref.uid && pods.get(ref.uid)?.namespace === namespace) backends.push(ref.uid);
        }
      }
    }
    for (const uid of backends) {
      let labels = backendLabels.get(uid);
      if (!labels) backendLabels.set(uid, (labels = {}));
      labels[backendKey] = 'true';
    }
    const serviceVn = `${namespace}:service-${service.metadata?.labels?.[LABEL_NETWORK] ?? DEFAULT_SERVICE_NETWORK}`;
    vns.set(serviceVn, vnOn(serviceVn, options.serviceSubnet));
    const externalIps = (service.spec?.externalIPs ?? []).filter((address) => {
      const valid = ipaddr.IPv4.isValidFourPartDecimal(address);
      if (!valid) skip('service externalIP that is not IPv4');
      return valid;
    });
    services.push({ name: serviceName, clusterIp, ports, selector: { [backendKey]: 'true' }, externalIps, loadBalancer: service.spec?.type === 'LoadBalancer' });
  }

  const registrations: PodRegistrationPlan[] = [];
  for (const entry of pods.values()) {
    const vnName = `${entry.namespace}:${entry.labels[LABEL_NETWORK] ?? DEFAULT_POD_NETWORK}`;
    const vn = vns.get(vnName) ?? vnOn(vnName, podSubnet.subnet);
    vns.set(vnName, vn);
    const vmiUuid = interfaceUuid(entry.uid);
    const labels: Record<string, string> = { ...entry.labels, ...(backendLabels.get(entry.uid) ?? {}) };
    // `uses` names a service of the pod's own namespace.
    if (labels[LABEL_USES] !== undefined) labels[LABEL_USES] = `${entry.namespace}/${labels[LABEL_USES]}`;
    const ip = annotatedAddress(entry.pod, vmiUuid, vn);
    registrations.push({
      namespace: entry.namespace,
      name: entry.name,
      vrouter: entry.vrouter,
      port: {
        id: vmiUuid,
        vmUuid: entry.uid,
        name: entry.name,
        namespace: entry.namespace,
        labels,
        vn: vnName,
        ...(ip === undefined ? {} : { ip }),
        mac: macOf(vmiUuid),
        // The MPLS label is the vrouter's to give.
        label: 0,
      },
    });
  }
  // Stable order: the same objects give the same configuration whatever order they were listed in.
  const byName = <T extends { name: string }>(a: T, b: T) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  // Pods keeping their annotated address first, so no new pod is given one of those meanwhile.
  registrations.sort((a, b) => Number(a.port.ip === undefined) - Number(b.port.ip === undefined) || (a.port.id < b.port.id ? -1 : a.port.id > b.port.id ? 1 : 0));
  return { vns: [...vns.values()].sort(byName), services: services.sort(byName), pods: registrations, skipped };
}
