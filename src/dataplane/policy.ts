/**
 * Network policy between virtual networks, evaluated once per new flow (the
 * flow pair caches the verdict, and the reply direction of an allowed flow
 * is allowed with it) and again for every pair when the rules change
 * (flow-revaluation.ts).
 *
 * Rules are tried in order and the first match decides. Without a matching
 * rule: traffic inside one VN is allowed, traffic between VNs is denied. A
 * VN that `uses` a service gets rules allowing that service's ClusterIP on
 * its service ports only.
 */
import { prefixMask } from './lpm/prefix-table';
import { inPrefix6 } from './protocols/ipv6';

export const ANY_VN = -1;
export const ANY_PROTOCOL = 0;

export interface PolicyRule {
  /** VRF id of the source VN, or ANY_VN. */
  sourceVn: number;
  destinationVn: number;
  /** IP protocol number, or ANY_PROTOCOL. */
  protocol: number;
  /** Destination port range, inclusive (0-65535 for any). */
  portFrom: number;
  portTo: number;
  /** Optional destination prefix (length 0 for any). */
  destinationPrefix: number;
  destinationLength: number;
  /** An IPv6 destination prefix instead (16 bytes, length in destinationLength): the rule is for IPv6 flows only. */
  destinationPrefix6?: Uint8Array | null;
  allow: boolean;
  /** Shown by tools and traces. */
  name: string;
}

export class PolicyTable {
  private current: PolicyRule[] = [];
  /** Counts rule changes: the flow re-evaluation walks the table again when it moves. */
  generation = 0;

  get rules(): PolicyRule[] {
    return this.current;
  }

  /** New rules, in force for new flows at once and for existing ones as the re-evaluation reaches them. */
  setRules(rules: PolicyRule[]): void {
    // Callers refresh the rules on every port change: only a real change re-evaluates flows.
    const unchanged = rules.length === this.current.length && rules.every((rule, i) => sameRule(rule, this.current[i]));
    this.current = rules;
    if (!unchanged) this.generation++;
  }

  /** Index of the deciding rule, -1 for the default (same VN allowed), -2 for the default deny. */
  match(sourceVn: number, destinationVn: number, protocol: number, destination: number, destinationPort: number): number {
    const rules = this.rules;
    for (let i = 0; i < rules.length; i++) {
      const rule = rules[i];
      if (rule.sourceVn !== ANY_VN && rule.sourceVn !== sourceVn) continue;
      if (rule.destinationVn !== ANY_VN && rule.destinationVn !== destinationVn) continue;
      if (rule.protocol !== ANY_PROTOCOL && rule.protocol !== protocol) continue;
      if (destinationPort < rule.portFrom || destinationPort > rule.portTo) continue;
      if (rule.destinationPrefix6) continue;
      if (((destination & prefixMask(rule.destinationLength)) >>> 0) !== rule.destinationPrefix) continue;
      return i;
    }
    return sourceVn === destinationVn ? -1 : -2;
  }

  /** match() for an IPv6 flow, its destination at data[destination]: IPv4 prefixes never match it. */
  match6(sourceVn: number, destinationVn: number, protocol: number, data: Uint8Array, destination: number, destinationPort: number): number {
    const rules = this.rules;
    for (let i = 0; i < rules.length; i++) {
      const rule = rules[i];
      if (rule.sourceVn !== ANY_VN && rule.sourceVn !== sourceVn) continue;
      if (rule.destinationVn !== ANY_VN && rule.destinationVn !== destinationVn) continue;
      if (rule.protocol !== ANY_PROTOCOL && rule.protocol !== protocol) continue;
      if (destinationPort < rule.portFrom || destinationPort > rule.portTo) continue;
      const prefix6 = rule.destinationPrefix6;
      if (prefix6 ? !inPrefix6(data, destination, prefix6, rule.destinationLength) : rule.destinationLength !== 0) continue;
      return i;
    }
    return sourceVn === destinationVn ? -1 : -2;
  }

  allows6(sourceVn: number, destinationVn: number, protocol: number, data: Uint8Array, destination: number, destinationPort: number): boolean {
    const decided = this.match6(sourceVn, destinationVn, protocol, data, destination, destinationPort);
    return decided === -1 || (decided >= 0 && this.rules[decided].allow);
  }

  allows(sourceVn: number, destinationVn: number, protocol: number, destination: number, destinationPort: number): boolean {
    const decided = this.match(sourceVn, destinationVn, protocol, destination, destinationPort);
    return decided === -1 || (decided >= 0 && this.rules[decided].allow);
  }

  describe(decided: number): string {
    if (decided === -1) return 'default: same VN allowed';
    if (decided === -2) return 'default: between VNs denied';
    const rule = this.rules[decided];
    return `rule ${decided} ${rule.name} (${rule.allow ? 'allow' : 'deny'})`;
  }
}

function sameRule(a: PolicyRule, b: PolicyRule): boolean {
  const prefix6Same = (a.destinationPrefix6 ?? null) === null ? (b.destinationPrefix6 ?? null) === null : b.destinationPrefix6 != null && a.destinationPrefix6!.every((byte, i) => byte === b.destinationPrefix6![i]);
  return (
    a.sourceVn === b.sourceVn &&
    a.destinationVn === b.destinationVn &&
    a.protocol === b.protocol &&
    a.portFrom === b.portFrom &&
    a.portTo === b.portTo &&
    a.destinationPrefix === b.destinationPrefix &&
    a.destinationLength === b.destinationLength &&
    prefix6Same &&
    a.allow === b.allow &&
    a.name === b.name
  );
}
