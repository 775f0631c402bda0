/**
 * The control client's view of the dataplane in `vrouter run`: every
 * DataplaneAccess call becomes a request to the dataplane worker, in order.
 * Route changes, which come by the hundred thousand in a table dump, are
 * queued and sent as one message per event-loop turn; any other request
 * first flushes that queue, so a port is never configured ahead of the
 * routes the client set before it.
 */
import type { DataplaneAccess, LocalPort, PortConfig, RouteNexthop } from '../control/agent-interface';
import type { PodDevice } from '../dataplane/io/worker';
import type { DataplaneHandle } from './dataplane-handle';

export interface RouteUpdate {
  vrf: string;
  prefix: string;
  /** Empty: delete the route. */
  nexthops: RouteNexthop[];
}

export class WorkerAccess implements DataplaneAccess {
  private queued: RouteUpdate[] = [];
  private flushScheduled = false;

  /**
   * `tapFor(port)` names the TAP device the worker opens for a port it
   * configures (and the pod namespace to create it in); `configured` hears about each configured port once its vif
   * forwards (to set up the pod's namespace, which it does while the client
   * already publishes the pod's route: both are on the way to the pod's
   * first packet).
   */
  constructor(
    private readonly dataplane: DataplaneHandle,
    private readonly tapFor: (port: LocalPort) => { tapName: string; pod?: PodDevice },
    private readonly configured: (port: LocalPort, config: PortConfig, vif: number) => void,
  ) {}

  setRoute(vrf: string, prefix: string, nexthops: RouteNexthop[]): void {
    this.queue({ vrf, prefix, nexthops });
  }

  deleteRoute(vrf: string, prefix: string): void {
    this.queue({ vrf, prefix, nexthops: [] });
  }

  async configurePort(port: LocalPort, config: PortConfig): Promise<void> {
    this.flush();
    const { vif } = await this.dataplane.request<{ vif: number }>({ op: 'control-configure-port', port, config, ...this.tapFor(port) });
    this.configured(port, config, vif);
  }

  async unconfigurePort(port: LocalPort): Promise<void> {
    this.flush();
    await this.dataplane.request({ op: 'control-unconfigure-port', port });
  }

  /** Sends what is queued now (also what the next turn would have sent). */
  flush(): void {
    if (this.queued.length === 0) return;
    const updates = this.queued;
    this.queued = [];
    void this.dataplane.request({ op: 'control-routes', updates });
  }

  private queue(update: RouteUpdate): void {
    this.queued.push(update);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }
}
