// `prune`: apply a retention policy to a repository (thin shell over prune-plan.ts and the
// store's removal; docs/prune.md).
//
// Under the exclusive lock (a dry run takes only the shared lock and changes nothing):
//   1. finish a removal a crash interrupted, if any (the store does this first);
//   2. per domain: plan (policy + newest + safety overrides), then remove with merge forward
//      in one index transaction per domain, then rewrite/delete the affected manifests;
//   3. unless disabled, garbage-collect the chunks nothing references any more.
// Steps are reported to `onStep` (progress, and the points crash tests kill the process at).
import { PullbackError } from '../errors.js';
import {
  gcHoldingExclusive,
  removeBackups,
  withLock,
  type GcOptions,
  type GcReport,
  type Merge,
  type RemovalStep,
  type Repository,
} from '../store/index.js';
import { planDomainPrune, type PruneDecision } from './prune-plan.js';
import { isEmptyPolicy, validatePolicy, type RetentionPolicy, type TimeZoneMode } from './policy.js';

export type PruneStep = 'locked' | 'planned' | RemovalStep | 'gc-started' | 'gc-progress' | 'gc-finished';

export interface PruneOptions {
  policy: RetentionPolicy;
  /** Domains to prune (default: every domain with backups in the repository). */
  domains?: readonly string[];
  /** The reference time of the policy (default: now). */
  now?: Date;
  timeZone?: TimeZoneMode;
  /** Decide and report, change nothing. */
  dryRun?: boolean;
  /** Garbage-collect after removing (default true; never on a dry run). */
  gc?: boolean;
  orphanGraceMs?: GcOptions['orphanGraceMs'];
  signal?: AbortSignal;
  onStep?: (step: PruneStep, detail: string) => void;
}

export interface DomainPruneResult {
  domain: string;
  /** Newest first. */
  decisions: PruneDecision[];
  merges: Merge[];
  removed: number;
  kept: number;
  rowsMerged: number;
}

export interface PruneReport {
  dryRun: boolean;
  now: Date;
  domains: DomainPruneResult[];
  removed: number;
  kept: number;
  /** null on a dry run or with gc disabled. */
  gc: GcReport | null;
}

export async function pruneRepository(repo: Repository, opts: PruneOptions): Promise<PruneReport> {
  validatePolicy(opts.policy);
  if (isEmptyPolicy(opts.policy)) {
    throw new PullbackError('USAGE', 'the retention policy is empty: give at least one --keep-* option (an empty policy would keep everything)');
  }
  const now = opts.now ?? new Date();
  const dryRun = opts.dryRun === true;
  const step = opts.onStep ?? (() => undefined);
  const signal = opts.signal;
  const purpose = dryRun ? 'prune --dry-run' : 'prune';
  return await withLock(repo, dryRun ? 'shared' : 'exclusive', purpose, signal, async (ctx) => {
    step('locked', purpose);
    const all = repo.listBackups();
    const present = [...new Set(all.map((b) => b.domain))].sort();
    const domains = opts.domains === undefined ? present : [...opts.domains];
    for (const d of domains) {
      if (!present.includes(d)) {
        throw new PullbackError('BACKUP_NOT_FOUND', `domain ${d} has no backups in repository ${repo.dir}: see \`pullback list --repo ${repo.dir}\``);
      }
    }
    const report: PruneReport = { dryRun, now, domains: [], removed: 0, kept: 0, gc: null };
    for (const domain of domains) {
      signal?.throwIfAborted();
      const plan = planDomainPrune(domain, repo.listBackups({ domain }), opts.policy, now, opts.timeZone === undefined ? {} : { timeZone: opts.timeZone });
      step('planned', `${domain}: remove ${plan.remove.length}`);
      let rowsMerged = 0;
      if (!dryRun && plan.remove.length > 0) {
        const done = await removeBackups(ctx, plan.remove, {
          label: domain,
          onStep: step,
          ...(signal !== undefined ? { signal } : {}),
        });
        rowsMerged = done.rowsMerged;
      }
      const kept = plan.decisions.filter((d) => d.keep).length;
      report.domains.push({ domain, decisions: plan.decisions, merges: plan.merges, removed: plan.remove.length, kept, rowsMerged });
      report.removed += plan.remove.length;
      report.kept += kept;
    }
    if (!dryRun && opts.gc !== false) {
      step('gc-started', '');
      report.gc = await gcHoldingExclusive(repo, {
        onProgress: (e) => step('gc-progress', `${e.phase} ${e.done}/${e.total}`),
        ...(signal !== undefined ? { signal } : {}),
        ...(opts.orphanGraceMs !== undefined ? { orphanGraceMs: opts.orphanGraceMs } : {}),
      });
      step('gc-finished', `${report.gc.chunksDeleted} chunks, ${report.gc.bytesFreed} bytes`);
    }
    return report;
  });
}
