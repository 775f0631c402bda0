/**
 * Attaching an existing interface of the node (the host side of a pod's
 * veth that another plugin made, as the OpenContrail kubelet plugin did) by
 * its name: the daemon's entry point for `vrouter port add --attach`.
 *
 * The dataplane worker opens the interface itself (src/dataplane/io/
 * interface-port.ts): AF_XDP, with the XDP program redirecting every frame
 * into the socket, or AF_PACKET where AF_XDP is refused, with a tc program
 * dropping what the socket has seen; either way no frame also climbs the
 * host stack. (It used to be captured with libpcap on this thread and passed
 * through shared rings, hence the file's name.) The interface itself is the
 * plugin's: it stays when the port goes.
 */
import * as fs from 'node:fs';

export class CapAttachment {
  /** What the worker's add-port request carries for it. */
  readonly request: { interface: string };

  constructor(readonly device: string) {
    if (!fs.existsSync(`/sys/class/net/${device}`)) throw new Error(`no interface ${device} in this network namespace`);
    this.request = { interface: device };
  }

  /** Nothing to release here: the worker closes its sockets and BPF links when the port goes. */
  close(): void {}
}
