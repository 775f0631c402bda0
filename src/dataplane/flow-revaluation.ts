/**
 * Flow re-evaluation: when the policy rules change, every pair's verdict is
 * made again from what it was first made from (its source and destination
 * VN, and the protocol, destination and destination port of its forward
 * key), as the agent re-evaluates the flows that depend on a VN or ACL that
 * changed (tungstenfabric/tf-controller@6b3b679e
 * src/vnsw/agent/pkt/flow_mgmt/flow_mgmt_dbclient.h: AclNotify, VnNotify ->
 * ChangeEvent). A pair turned to drop keeps its NAT and ECMP choice for
 * when it is allowed again, and its packets count as flow-action-drop.
 *
 * The walk covers the table in slices, run between batches, so a large
 * table never stalls the packet path; a change during a walk starts it
 * over. New flows take the new rules at once.
 */
import { FlowTable, POLICY_VN_UNKNOWN } from './flow-table';
import { PolicyTable } from './policy';

/** Pair slots one step visits: a few hundred microseconds at most, most of them free slots. */
export const REVALUATION_SLICE = 8192;

export class FlowRevaluation {
  private seenGeneration: number;
  /** Next pair slot of the walk, -1 when none is under way. */
  private hand = -1;
  /** Pairs whose action a walk changed, and walks completed. */
  changed = 0;
  walks = 0;

  constructor(
    private readonly flows: FlowTable,
    private readonly policy: PolicyTable,
  ) {
    this.seenGeneration = policy.generation;
  }

  /** Whether a walk is under way or due. */
  get pending(): boolean {
    return this.hand >= 0 || this.policy.generation !== this.seenGeneration;
  }

  /** Re-evaluates the next `budget` pair slots of the walk, starting one if the rules changed. */
  step(budget = REVALUATION_SLICE): void {
    const policy = this.policy;
    if (policy.generation !== this.seenGeneration) {
      this.seenGeneration = policy.generation;
      this.hand = 0;
    }
    if (this.hand < 0) return;
    const flows = this.flows;
    const pairs = flows.capacity / 2;
    const end = Math.min(pairs, this.hand + budget);
    for (let pair = this.hand; pair < end; pair++) {
      const entry = pair * 2;
      if (!flows.isActive(entry)) continue;
      const sourceVn = flows.policySourceVn[pair];
      if (sourceVn === POLICY_VN_UNKNOWN) continue;
      const destinationVn = flows.policyDestinationVn[pair];
      const protocol = flows.keyProtocol[entry];
      const dstPort = flows.keyPorts[entry] & 0xffff;
      const allowed = flows.isIpv6(entry)
        ? policy.allows6(sourceVn, destinationVn, protocol, flows.keyAddress6, flows.address6Offset(entry) + 16, dstPort)
        : policy.allows(sourceVn, destinationVn, protocol, flows.keyDst[entry], dstPort);
      if (flows.setVerdict(entry, allowed)) this.changed++;
    }
    if (end === pairs) {
      this.hand = -1;
      this.walks++;
    } else {
      this.hand = end;
    }
  }
}
