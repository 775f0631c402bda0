/**
 * The control client's view of each route it programs: what every control
 * node session told it, plus this node's own next hops (local pods), and
 * what it last gave the dataplane. A route's next hops are the union of
 * all of them, so
 *
 * - with two control nodes, a route goes from the dataplane only when no
 *   session has it, and losing one session changes nothing;
 * - when a session drops, its routes stay (stale) and keep forwarding; once
 *   it is back, routes it re-sends are fresh again and the stale ones are
 *   swept at its End-of-RIB (or after the stale timeout);
 * - next hops at this node's own address in a pod's own VN come only from
 *   local ports: the control node's echo of them adds nothing and could
 *   outlive the port. Leaked into another VN (a local backend of a service
 *   another VN uses), they are learned like any other.
 *
 * The dataplane is only called when a route's set of next hops changes.
 */
import type { DataplaneAccess, RouteNexthop } from './agent-interface';

/** The local next hops of a route without any: one array for the 100,000 routes of a dump, never changed (setLocal replaces it). */
const NO_LOCAL_NEXTHOPS: readonly RouteNexthop[] = [];

interface SessionRoute {
  nexthops: RouteNexthop[];
  stale: boolean;
}

interface RouteState {
  /** Indexed by session (control node) number. */
  learned: Array<SessionRoute | undefined>;
  local: readonly RouteNexthop[];
  /** Next hops last programmed (no two equal); null when not in the dataplane. */
  programmed: readonly RouteNexthop[] | null;
}

export class LearnedRoutes {
  /** vrf -> prefix -> state. */
  private readonly vrfs = new Map<string, Map<string, RouteState>>();

  constructor(
    private readonly access: DataplaneAccess,
    private readonly underlayIp: string,
  ) {}

  learn(session: number, vrf: string, prefix: string, nexthops: RouteNexthop[]): void {
    const state = this.state(vrf, prefix);
    setSession(state, session, { nexthops, stale: false });
    this.program(vrf, prefix, state);
  }

  forget(session: number, vrf: string, prefix: string): void {
    const state = this.vrfs.get(vrf)?.get(prefix);
    if (!state || state.learned[session] === undefined) return;
    state.learned[session] = undefined;
    this.program(vrf, prefix, state);
  }

  /** Forgets everything learned in a VRF (it was unsubscribed), from every session. */
  forgetVrf(vrf: string): void {
    const prefixes = this.vrfs.get(vrf);
    if (!prefixes) return;
    for (const [prefix, state] of prefixes) {
      state.learned = [];
      this.program(vrf, prefix, state);
    }
  }

  /** This node's own next hops for a route (local pods); empty removes them. */
  setLocal(vrf: string, prefix: string, nexthops: RouteNexthop[]): void {
    const state = this.state(vrf, prefix);
    state.local = nexthops;
    this.program(vrf, prefix, state);
  }

  /** The session dropped: its routes keep forwarding, marked stale. */
  markStale(session: number): void {
    for (const prefixes of this.vrfs.values()) {
      for (const state of prefixes.values()) {
        const learned = state.learned[session];
        if (learned) learned.stale = true;
      }
    }
  }

  /** A route a restarted daemon had before (its snapshot), held as stale from the session until it re-sends it. */
  restoreStale(session: number, vrf: string, prefix: string, nexthops: RouteNexthop[]): void {
    const state = this.state(vrf, prefix);
    if (state.learned[session] !== undefined) return;
    setSession(state, session, { nexthops, stale: true });
    this.program(vrf, prefix, state);
  }

  /** Removes the session's routes that were not re-sent since it came back; returns how many. */
  sweepStale(session: number): number {
    let swept = 0;
    for (const [vrf, prefixes] of this.vrfs) {
      for (const [prefix, state] of prefixes) {
        if (!state.learned[session]?.stale) continue;
        state.learned[session] = undefined;
        swept++;
        this.program(vrf, prefix, state);
      }
    }
    return swept;
  }

  /** Routes currently in the dataplane, and how many of them rest only on stale information. */
  counts(): { routes: number; stale: number } {
    let routes = 0;
    let stale = 0;
    for (const prefixes of this.vrfs.values()) {
      for (const state of prefixes.values()) {
        if (state.programmed === null) continue;
        routes++;
        if (state.local.length === 0 && state.learned.every((learned) => learned === undefined || learned.stale)) stale++;
      }
    }
    return { routes, stale };
  }

  private state(vrf: string, prefix: string): RouteState {
    let prefixes = this.vrfs.get(vrf);
    if (!prefixes) this.vrfs.set(vrf, (prefixes = new Map()));
    let state = prefixes.get(prefix);
    if (!state) prefixes.set(prefix, (state = { learned: [], local: NO_LOCAL_NEXTHOPS, programmed: null }));
    return state;
  }

  private program(vrf: string, prefix: string, state: RouteState): void {
    let nexthops: RouteNexthop[];
    const only = state.local.length === 0 && state.learned.length === 1 ? state.learned[0] : undefined;
    if (only && only.nexthops.length === 1 && only.nexthops[0].address !== this.underlayIp) {
      // The common case, one control node and one remote next hop, without the merging below.
      nexthops = only.nexthops;
    } else {
      nexthops = [...state.local];
      for (const learned of state.learned) {
        if (!learned) continue;
        for (const nexthop of learned.nexthops) {
          if (nexthop.address === this.underlayIp && (nexthop.vn === undefined || nexthop.vn === vrf)) continue;
          if (!nexthops.some((kept) => sameNexthop(kept, nexthop))) nexthops.push(nexthop);
        }
      }
    }
    const programmed = nexthops.length === 0 ? null : nexthops;
    if (!sameNexthopSets(programmed, state.programmed)) {
      if (programmed === null) this.access.deleteRoute(vrf, prefix);
      else this.access.setRoute(vrf, prefix, nexthops);
      state.programmed = programmed;
    }
    if (programmed === null && state.local.length === 0 && state.learned.every((learned) => learned === undefined)) {
      const prefixes = this.vrfs.get(vrf)!;
      prefixes.delete(prefix);
      if (prefixes.size === 0) this.vrfs.delete(vrf);
    }
  }
}

/**
 * Sets a session's route, growing the array to exactly the size needed: a
 * first element stored into an empty array gets a backing store of 17 slots,
 * several megabytes over the 100,000 routes of a dump.
 */
function setSession(state: RouteState, session: number, route: SessionRoute): void {
  const learned = state.learned;
  if (session < learned.length) {
    learned[session] = route;
    return;
  }
  const grown = new Array<SessionRoute | undefined>(session + 1);
  for (let i = 0; i < learned.length; i++) grown[i] = learned[i];
  grown[session] = route;
  state.learned = grown;
}

/** Compared field by field: a dump would otherwise keep a key string per route. */
function sameNexthop(a: RouteNexthop, b: RouteNexthop): boolean {
  if (a.address !== b.address || a.label !== b.label || a.vn !== b.vn || a.encaps.length !== b.encaps.length) return false;
  for (let index = 0; index < a.encaps.length; index++) if (a.encaps[index] !== b.encaps[index]) return false;
  return true;
}

/** Whether two lists without duplicates hold the same next hops, in any order. */
function sameNexthopSets(a: readonly RouteNexthop[] | null, b: readonly RouteNexthop[] | null): boolean {
  if (a === null || b === null) return a === b;
  return a.length === b.length && a.every((nexthop) => b.some((other) => sameNexthop(nexthop, other)));
}
