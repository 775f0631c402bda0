/**
 * The control client's view of the dataplane in `vrouter run`: every
 * DataplaneAccess call becomes a request to the dataplane worker, in order.
 * Route changes, which come by the hundred thousand in a table dump, are
 * queued and sent as one message per event-loop turn; any other request
 * first flushes that queue, so a port is never configured ahead of the
 * routes the client set before it.
 */
import type { DataplaneAccess, LocalPort, PortConfig, RouteNexthop } from '../control/agent/agent-interface';
import type { PodTapConfig } from '../dataplane/io/native';
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
   * `tapFor(port, config)` names the TAP device the worker opens for a port
   * it configures, and the pod namespace it makes and configures it in, or
   * the rings of the existing interface the port is attached to instead.
   */
  constructor(
    private readonly dataplane: DataplaneHandle,
    private readonly tapFor: (port: LocalPort, config: PortConfig) => { tapName: string; pod?: PodTapConfig; attach?: { interface: string } },
    /** Told every batch of route changes sent (the daemon's snapshot keeps them). */
    private readonly onRoutes: (updates: RouteUpdate[]) => void = () => {},
  ) {}

  setRoute(vrf: string, prefix: string, nexthops: RouteNexthop[]): void {
    this.queue({ vrf, prefix, nexthops });
  }

  deleteRoute(vrf: string, prefix: string): void {
    this.queue({ vrf, prefix, nexthops: [] });
  }

  async configurePort(port: LocalPort, config: PortConfig): Promise<void> {
    this.flush();
    await this.dataplane.request({ op: 'control-configure-port', port, config, ...this.tapFor(port, config) });
  }

  async unconfigurePort(port: LocalPort): Promise<void> {
    this.flush();
    await this.dataplane.request({ op: 'control-unconfigure-port', port });
  }

  setLocalComposite(label: number, portIds: string[]): void {
    this.flush();
    void this.dataplane.request({ op: 'control-local-composite', label, portIds });
  }

  /** Sends what is queued now (also what the next turn would have sent). */
  flush(): void {
    if (this.queued.length === 0) return;
    const updates = this.queued;
    this.queued = [];
    this.onRoutes(updates);
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
