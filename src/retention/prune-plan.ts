// What a prune of one domain does, decided without touching anything (pure; docs/prune.md).
//
//   policy decision  applyPolicy (policy.ts): keep/remove with the rules' reasons
//   newest override  the newest complete backup is kept even when no rule keeps it, with
//                    reason NEWEST_REASON: its libvirt checkpoint is the base of the next
//                    incremental, and removing its record would force a full
//   safety override  removals planRemoval (store) blocks, e.g. the parent of a running
//                    backup, are kept with the blocking reason
//   merges           for each retained backup whose removed ancestors it inherits rows from
//                    (merge forward), which ones, and its parent afterwards
import type { BackupRecord, Merge, RemovalNode } from '../store/index.js';
import { planRemoval } from '../store/index.js';
import { applyPolicy, type RetentionPolicy, type TimeZoneMode } from './policy.js';

export const NEWEST_REASON = 'newest (base of the next incremental)';

export interface PruneDecision {
  id: string;
  time: Date;
  level: BackupRecord['level'];
  status: BackupRecord['status'];
  keep: boolean;
  reasons: string[];
  /** For a removed backup whose rows a retained backup inherits: that backup. */
  mergedInto?: string[];
}

export interface DomainPrunePlan {
  domain: string;
  /** Newest first. */
  decisions: PruneDecision[];
  merges: Merge[];
  remove: string[];
}

/** Plans the prune of `backups`, all of one domain (chains never cross domains). */
export function planDomainPrune(
  domain: string,
  backups: readonly BackupRecord[],
  policy: RetentionPolicy,
  now: Date,
  opts: { timeZone?: TimeZoneMode } = {},
): DomainPrunePlan {
  const byId = new Map(backups.map((b) => [b.id, b]));
  const decided = applyPolicy(
    backups.map((b) => ({ id: b.id, time: b.time, status: b.status })),
    policy,
    now,
    opts.timeZone === undefined ? {} : { timeZone: opts.timeZone },
  );
  const reasons = new Map(decided.map((d) => [d.id, { keep: d.keep, reasons: [...d.reasons] }]));

  const complete = backups.filter((b) => b.status === 'complete');
  const newest = complete.reduce<BackupRecord | undefined>(
    (a, b) => (a === undefined || b.time.getTime() > a.time.getTime() || (b.time.getTime() === a.time.getTime() && b.id > a.id) ? b : a),
    undefined,
  );
  if (newest !== undefined) {
    const r = reasons.get(newest.id);
    if (r !== undefined && !r.keep) reasons.set(newest.id, { keep: true, reasons: [NEWEST_REASON] });
  }

  const nodes: RemovalNode[] = backups.map((b) => ({
    id: b.id,
    parentId: b.parentId,
    level: b.level,
    status: b.status,
    disks: b.disks.map((d) => d.name),
  }));
  const plan = planRemoval(
    nodes,
    decided.filter((d) => reasons.get(d.id)?.keep === false).map((d) => d.id),
  );
  for (const b of plan.blocked) reasons.set(b.id, { keep: true, reasons: [`kept: ${b.reason}`] });

  const heirsOf = new Map<string, string[]>();
  for (const m of plan.merges) for (const s of m.sources) heirsOf.set(s, [...(heirsOf.get(s) ?? []), m.heir]);

  const decisions = decided.map((d): PruneDecision => {
    const b = byId.get(d.id) as BackupRecord;
    const r = reasons.get(d.id) ?? { keep: true, reasons: [] };
    const heirs = heirsOf.get(d.id);
    return {
      id: d.id,
      time: b.time,
      level: b.level,
      status: b.status,
      keep: r.keep,
      reasons: r.reasons,
      ...(heirs !== undefined ? { mergedInto: heirs } : {}),
    };
  });
  return { domain, decisions, merges: plan.merges, remove: plan.remove };
}
