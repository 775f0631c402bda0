/**
 * The JSON the CNI plugin and the agent exchange on the agent's port API
 * (OpenContrail's "port IPC" REST server, TCP 9091 on 127.0.0.1), as the
 * Contrail sources define it, at tungstenfabric/tf-controller commit
 * 6a674397821187fedfffd9586942b906d3479dbc:
 *   routes:    src/vnsw/agent/port_ipc/rest_server.cc (RESTHandlers_, lines 242-303)
 *   answers:   src/vnsw/agent/port_ipc/port_ipc_handler.cc
 *   requests:  src/container/cni/contrail/vrouter.go
 *   status:    src/vnsw/agent/port_ipc/rest_common.cc (errors are {"error": "..."},
 *              500 unless the handler says 404; the status line always says "OK")
 *
 *   GET    /vm-cfg/<vm-name>          -> VmCfgEntry[] (404 until the agent has the pod's config)
 *   POST   /vm                        <- VmAddRequest, -> {} (200)
 *   GET    /vm/<vm-uuid>[/<vmi-uuid>] -> VmPortEntry[] (404 until the interface is up in the agent)
 *   DELETE /vm/<vm-uuid>              <- VmDeleteRequest, -> {} (200, also for an unknown vm)
 *
 * Shared by the plugin (src/cni) and the agent's side (src/control/agent/port-api.ts).
 */

/** The name the plugin asks for: `<cluster>__<namespace>__<pod>` (contrail/cni.go getPodInfo, lines 162-184). */
export function vmName(cluster: string, namespace: string, pod: string): string {
  return `${cluster}__${namespace}__${pod}`;
}

/**
 * One interface of a pod as configured by the network manager
 * (port_ipc_handler.cc MakeJsonFromVmiConfig, lines 1080-1139).
 */
export interface VmCfgEntry {
  /** The VMI uuid. */
  id: string;
  'vm-uuid': string;
  'vn-id': string;
  /** The VN's fully qualified name, e.g. `default-domain:k8s-default:k8s-default-pod-network`. */
  'vn-name': string;
  'mac-address': string;
  'sub-interface': boolean;
  'vlan-id': number;
  /**
   * The VMI's key-value annotations, each as the string `{key:value}`; the
   * plugin needs `index` = `<i>/<count>` (contrail/vrouter.go Get, lines 193-213,
   * and PollVmCfg, lines 485-525) and reads `interface` and `network`.
   */
  annotations?: string[];
}

/** The annotations the plugin reads from VmCfgEntry.annotations (contrail/vrouter.go Annotations, lines 105-115). */
export interface VmCfgAnnotations {
  cluster?: string;
  kind?: string;
  name?: string;
  namespace?: string;
  network?: string;
  owner?: string;
  project?: string;
  index?: string;
  interface?: string;
}

/**
 * POST /vm: the interface the plugin made for the pod
 * (contrail/vrouter.go contrailAddMsg, lines 241-268; the agent's reader is
 * port_ipc_handler.cc MakeAddVmVnPortRequest, lines 865-918, which requires
 * vm-uuid, host-ifname, vm-name, vn-uuid and vmi-uuid).
 */
export interface VmAddRequest {
  /** Go's time.Now().String(); the agent ignores it. */
  time: string;
  /** CNI_CONTAINERID. */
  'vm-id': string;
  'vm-uuid': string;
  /** `<cluster>__<namespace>__<pod>`. */
  'vm-name': string;
  /** The host end of the veth pair. */
  'host-ifname': string;
  /** The interface's name in the pod (CNI_IFNAME). */
  'vm-ifname': string;
  /** CNI_NETNS. */
  'vm-namespace': string;
  'vn-uuid': string;
  'vmi-uuid': string;
}

/**
 * DELETE /vm/<vm-uuid> carries the same message with only time, vm-id and
 * vm-uuid filled (contrail/vrouter.go delVmToAgent, lines 372-391); the agent
 * reads only the uuid in the URL (port_ipc_handler.cc DeleteVmVnPort, lines 1042-1051).
 */
export type VmDeleteRequest = VmAddRequest;

/**
 * One interface of a pod once the agent has it, with its address
 * (port_ipc_handler.cc MakeJsonFromVmi, lines 1176-1255).
 */
export interface VmPortEntry {
  /** The VMI uuid. */
  id: string;
  'instance-id': string;
  'vn-id': string;
  'vm-project-id': string;
  'mac-address': string;
  /** The agent's name for the interface: the host ifname. */
  'system-name': string;
  'rx-vlan-id': number;
  'tx-vlan-id': number;
  'vhostuser-mode': number;
  'ip-address'?: string;
  plen?: number;
  'dns-server'?: string;
  gateway?: string;
  'v6-ip-address'?: string;
  'v6-dns-server'?: string;
  'v6-gateway'?: string;
  author: string;
  time: string;
}

/** Every error answer (rest_common.cc SendErrorResponse): e.g. `{"error":"{ Not Found }"}`. */
export interface AgentErrorBody {
  error: string;
}

/** The agent's port API port (src/container/cni/contrail/vrouter.go VROUTER_AGENT_PORT, line 29). */
export const AGENT_PORT_API_PORT = 9091;
