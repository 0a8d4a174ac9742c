// Random retention policies for prune steps, and what each policy *must* keep — computed
// here independently of src/retention, from the rules in docs/retention.md and docs/prune.md.
//
// Terms: a policy is the CLI options plus the parsed counts. `mustKeep` is a lower bound:
// the newest complete backup of each pruned domain, the N newest (keep-last), the newest of
// each of the N newest UTC hours/days with a backup, and every backup newer than the latest
// `now` the prune could have used minus keep-within. The prune may keep more (safety), never
// less.
import type { ListedBackup } from './pb.js';
import type { Rng } from './rng.js';

export interface Policy {
  args: string[];
  last?: number;
  hourly?: number;
  daily?: number;
  withinMs?: number;
}

export function randomPolicy(rng: Rng): Policy {
  const p: Policy = { args: [] };
  const rules = rng.sample(['last', 'last', 'last', 'within', 'hourly', 'daily'] as const, rng.int(1, 2));
  for (const r of rules) {
    if (r === 'last' && p.last === undefined) {
      p.last = rng.int(1, 4);
      p.args.push('--keep-last', String(p.last));
    } else if (r === 'within' && p.withinMs === undefined) {
      // The smallest unit --keep-within takes is the hour, and a run's backups are minutes
      // apart: this keeps every backup of the last 1-2 hours (and tests that it does).
      const h = rng.int(1, 2);
      p.withinMs = h * 3_600_000;
      p.args.push('--keep-within', `${h}h`);
    } else if (r === 'hourly' && p.hourly === undefined) {
      p.hourly = rng.int(1, 2);
      p.args.push('--keep-hourly', String(p.hourly));
    } else if (r === 'daily' && p.daily === undefined) {
      p.daily = 1;
      p.args.push('--keep-daily', '1');
    }
  }
  return p;
}

/** Ids the prune must keep; `latestNow` is a time no earlier than the prune's own clock. */
export function mustKeep(policy: Policy, listed: readonly ListedBackup[], domains: readonly string[], latestNow: number): Set<string> {
  const keep = new Set<string>();
  for (const domain of domains) {
    const complete = listed
      .filter((b) => b.domain === domain && b.status === 'complete')
      .map((b) => ({ id: b.id, t: Date.parse(b.time) }))
      .sort((a, b) => b.t - a.t || (a.id < b.id ? -1 : 1));
    if (complete.length === 0) continue;
    keep.add((complete[0] as { id: string }).id);
    complete.slice(0, policy.last ?? 0).forEach((b) => keep.add(b.id));
    const periods = (n: number | undefined, key: (t: number) => string): void => {
      const seen = new Set<string>();
      for (const b of complete) {
        if (seen.size >= (n ?? 0)) break;
        const k = key(b.t);
        if (seen.has(k)) continue;
        seen.add(k);
        keep.add(b.id);
      }
    };
    periods(policy.hourly, (t) => new Date(t).toISOString().slice(0, 13));
    periods(policy.daily, (t) => new Date(t).toISOString().slice(0, 10));
    if (policy.withinMs !== undefined) for (const b of complete) if (b.t > latestNow - policy.withinMs) keep.add(b.id);
  }
  return keep;
}
