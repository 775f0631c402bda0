/**
 * The control node's routing tables. Per routing instance and prefix it keeps
 * the route each vrouter published; per instance somebody subscribed to (a
 * "view") it keeps the best route of every prefix the view sees, already
 * encoded, so a new subscriber gets a dump without recomputing and a change
 * is computed once for all subscribers.
 *
 * Best route of a prefix in a view: among the routes of the instances the
 * view sees (its own, and those leaked into it, see network-manager.ts),
 * the ones with the highest local preference, their next hops merged into
 * one ECMP route (a ClusterIP backed by pods on several nodes).
 */
import { ViewSources } from './network-manager';
import { encodeEntry, encodeItem } from '../xmpp/codec';
import { RouteEntry, WireNexthop } from '../xmpp/stanza';

/** A view's route for a prefix changed: its new encoded `<item>`, or null when it is gone. */
export interface ViewChange {
  view: string;
  prefix: string;
  item: Buffer | null;
}

export class RouteTables {
  /** instance -> prefix -> vrouter -> its route. */
  private readonly published = new Map<string, Map<string, Map<string, RouteEntry>>>();
  /** vrouter -> instance -> the prefixes it published there (`published` by vrouter, for publishedBy). */
  private readonly prefixesOf = new Map<string, Map<string, Set<string>>>();
  /** view -> the instances it sees. */
  private sources = new Map<string, ViewSources>();
  /** instance -> the views that see it (the inverse of `sources`), with their filter. */
  private feeds = new Map<string, Array<{ view: string; filter: 'all' | Set<string> }>>();
  /**
   * Materialized views: view -> prefix -> its best route as the bytes of
   * its `<item>`, encoded once for every subscriber and every dump (a dump
   * is then copies of these).
   */
  private readonly views = new Map<string, Map<string, Buffer>>();

  constructor(sources: Map<string, ViewSources> = new Map()) {
    this.setSources(sources);
  }

  /** Installs or replaces a vrouter's route; returns what changed in materialized views. */
  publish(vrouter: string, instance: string, entry: RouteEntry): ViewChange[] {
    let prefixes = this.published.get(instance);
    if (!prefixes) this.published.set(instance, (prefixes = new Map()));
    let byVrouter = prefixes.get(entry.prefix);
    if (!byVrouter) prefixes.set(entry.prefix, (byVrouter = new Map()));
    byVrouter.set(vrouter, entry);
    let instances = this.prefixesOf.get(vrouter);
    if (!instances) this.prefixesOf.set(vrouter, (instances = new Map()));
    let own = instances.get(instance);
    if (!own) instances.set(instance, (own = new Set()));
    own.add(entry.prefix);
    return this.refreshPrefix(instance, entry.prefix);
  }

  withdraw(vrouter: string, instance: string, prefix: string): ViewChange[] {
    const prefixes = this.published.get(instance);
    const byVrouter = prefixes?.get(prefix);
    if (!byVrouter || !byVrouter.delete(vrouter)) return [];
    const instances = this.prefixesOf.get(vrouter)!;
    const own = instances.get(instance)!;
    own.delete(prefix);
    if (own.size === 0) instances.delete(instance);
    if (instances.size === 0) this.prefixesOf.delete(vrouter);
    if (byVrouter.size === 0) prefixes!.delete(prefix);
    if (prefixes!.size === 0) this.published.delete(instance);
    return this.refreshPrefix(instance, prefix);
  }

  /** Replaces what each view sees; materialized views whose sources changed are recomputed. */
  setSources(sources: Map<string, ViewSources>): ViewChange[] {
    const previous = this.sources;
    this.sources = sources;
    this.feeds = new Map();
    for (const [view, viewSources] of sources) {
      for (const [instance, filter] of viewSources) {
        let fed = this.feeds.get(instance);
        if (!fed) this.feeds.set(instance, (fed = []));
        fed.push({ view, filter });
      }
    }
    const changes: ViewChange[] = [];
    for (const view of this.views.keys()) {
      if (sameSources(previous.get(view), sources.get(view))) continue;
      changes.push(...this.recomputeView(view));
    }
    return changes;
  }

  /** Starts keeping a view (its first subscriber); returns its routes. */
  materialize(view: string): Map<string, Buffer> {
    let table = this.views.get(view);
    if (!table) {
      table = new Map();
      this.views.set(view, table);
      this.recomputeView(view);
    }
    return table;
  }

  /** Stops keeping a view (its last subscriber left). */
  release(view: string): void {
    this.views.delete(view);
  }

  /** Prefixes a vrouter has published in each instance. */
  publishedBy(vrouter: string): Array<{ instance: string; prefix: string }> {
    const routes: Array<{ instance: string; prefix: string }> = [];
    for (const [instance, prefixes] of this.prefixesOf.get(vrouter) ?? []) for (const prefix of prefixes) routes.push({ instance, prefix });
    return routes;
  }

  private sourcesOf(view: string): ViewSources {
    return this.sources.get(view) ?? new Map([[view, 'all']]);
  }

  private refreshPrefix(instance: string, prefix: string): ViewChange[] {
    const changes: ViewChange[] = [];
    const fed = this.feeds.get(instance) ?? [];
    // A view nobody configured sees only itself.
    const views = this.sources.has(instance) ? fed : [...fed, { view: instance, filter: 'all' as const }];
    for (const { view, filter } of views) {
      const table = this.views.get(view);
      if (!table || (filter !== 'all' && !filter.has(prefix))) continue;
      const change = this.updateEntry(view, table, prefix);
      if (change) changes.push(change);
    }
    return changes;
  }

  private recomputeView(view: string): ViewChange[] {
    const table = this.views.get(view)!;
    const prefixes = new Set(table.keys());
    for (const [instance, filter] of this.sourcesOf(view)) {
      const published = this.published.get(instance);
      if (!published) continue;
      if (filter === 'all') for (const prefix of published.keys()) prefixes.add(prefix);
      else for (const prefix of filter) if (published.has(prefix)) prefixes.add(prefix);
    }
    const changes: ViewChange[] = [];
    for (const prefix of prefixes) {
      const change = this.updateEntry(view, table, prefix);
      if (change) changes.push(change);
    }
    return changes;
  }

  private updateEntry(view: string, table: Map<string, Buffer>, prefix: string): ViewChange | null {
    const best = this.bestEntry(view, prefix);
    const item = best === null ? null : Buffer.from(encodeItem(prefix, encodeEntry(best)));
    const previous = table.get(prefix) ?? null;
    if (item === null ? previous === null : previous !== null && item.equals(previous)) return null;
    if (item === null) table.delete(prefix);
    else table.set(prefix, item);
    return { view, prefix, item };
  }

  /** The highest-preference routes of the prefix among the view's sources, next hops merged. */
  private bestEntry(view: string, prefix: string): RouteEntry | null {
    let best: RouteEntry | null = null;
    /** True once `best` is a copy of its first route, so merging next hops does not touch the published one. */
    let merged = false;
    for (const [instance, filter] of this.sourcesOf(view)) {
      if (filter !== 'all' && !filter.has(prefix)) continue;
      const byVrouter = this.published.get(instance)?.get(prefix);
      if (!byVrouter) continue;
      for (const entry of byVrouter.values()) {
        if (best === null || entry.localPreference > best.localPreference) {
          best = entry;
          merged = false;
          continue;
        }
        if (entry.localPreference < best.localPreference) continue;
        const target: RouteEntry = merged ? best : { ...best, nexthops: [...best.nexthops] };
        merged = true;
        for (const nexthop of entry.nexthops) if (!target.nexthops.some((known) => sameNexthop(known, nexthop))) target.nexthops.push(nexthop);
        best = target;
      }
    }
    return best;
  }
}

function sameNexthop(a: WireNexthop, b: WireNexthop): boolean {
  return a.address === b.address && a.label === b.label;
}

function sameSources(a: ViewSources | undefined, b: ViewSources | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  if (a.size !== b.size) return false;
  for (const [instance, filter] of a) {
    const other = b.get(instance);
    if (other === undefined) return false;
    if (filter === 'all' || other === 'all') {
      if (filter !== other) return false;
    } else if (filter.size !== other.size || [...filter].some((prefix) => !other.has(prefix))) {
      return false;
    }
  }
  return true;
}
