// Removing backups from a repository without breaking any retained backup (docs/prune.md).
//
// removeBackups(): plan (remove-plan.ts), then ONE SQLite transaction that
//   1. merges forward: for each heir, each disk, each source nearest first,
//      INSERT OR IGNORE the source's rows into the heir's disk (the heir's own rows and
//      nearer sources win: the newest row of each index survives, as in resolution);
//   2. re-parents each heir (to its new parent, or makes it the full of its chain);
//   3. deletes the removed backups' rows, disks and records;
//   4. records the journal of manifests to rewrite and delete (pending-removal.ts);
// then, after the commit, rewrites the heirs' manifests and deletes the removed ones
// (finishPending). Chunks that nothing references any more stay until gc.
//
// The caller holds the exclusive lock for the whole removal (withLock): no backup, restore,
// check or gc can see the repository half-way, and no other removal runs.
import { PullbackError } from '../errors.js';
import type { StoreContext } from './context.js';
import { runGc, type GcOptions } from './gc.js';
import { reapStaleLocks, type LockKind } from './lock.js';
import { finishPending, writePending, type StepHook } from './pending-removal.js';
import { planRemoval, type Merge, type RemovalNode } from './remove-plan.js';
import type { Repository } from './repository.js';
import type { GcReport } from './types.js';

export { planRemoval, type Merge, type RemovalNode, type RemovalPlan } from './remove-plan.js';
export type { RemovalStep, StepHook } from './pending-removal.js';

export interface RemoveReport {
  removed: string[];
  merges: Merge[];
  /** chunk_map rows copied into heirs. */
  rowsMerged: number;
}

/** Every backup of the repository as a planning node (for planRemoval). */
export function removalNodes(ctx: StoreContext): RemovalNode[] {
  const disks = new Map<string, string[]>();
  for (const r of ctx.idb.db.prepare('SELECT backup_id, name FROM disks ORDER BY id').all() as Array<{ backup_id: string; name: string }>) {
    const list = disks.get(r.backup_id) ?? [];
    list.push(r.name);
    disks.set(r.backup_id, list);
  }
  return ctx.idb.backupRows({}).map((b) => ({
    id: b.id,
    parentId: b.parent_id,
    level: b.level,
    status: b.status,
    disks: disks.get(b.id) ?? [],
  }));
}

/**
 * Removes `ids` (see header). Throws STORE_INVALID_ARGUMENT, changing nothing, if any of them
 * cannot be removed safely (planRemoval's `blocked`). The caller holds the exclusive lock.
 */
export async function removeBackups(
  ctx: StoreContext,
  ids: readonly string[],
  opts: { signal?: AbortSignal; onStep?: StepHook; label?: string } = {},
): Promise<RemoveReport> {
  const db = ctx.idb.db;
  await finishPending(ctx, opts.onStep); // an earlier interrupted removal first
  opts.signal?.throwIfAborted();
  const plan = planRemoval(removalNodes(ctx), ids);
  if (plan.blocked.length > 0) {
    const list = plan.blocked.map((b) => `${b.id} (${b.reason})`).join('; ');
    throw new PullbackError('STORE_INVALID_ARGUMENT', `cannot remove these backups without breaking a chain: ${list}`);
  }
  if (plan.remove.length === 0) return { removed: [], merges: [], rowsMerged: 0 };

  const diskIds = db.prepare('SELECT id, name FROM disks WHERE backup_id = ? ORDER BY id');
  const diskId = db.prepare('SELECT id FROM disks WHERE backup_id = ? AND name = ?').pluck(true);
  const merge = db.prepare('INSERT OR IGNORE INTO chunk_map(disk_id, chunk_index, chunk_id) SELECT ?, chunk_index, chunk_id FROM chunk_map WHERE disk_id = ?');
  const reparent = db.prepare("UPDATE backups SET parent_id = ?, level = CASE WHEN ? IS NULL THEN 'full' ELSE level END WHERE id = ?");
  const dropRows = db.prepare('DELETE FROM chunk_map WHERE disk_id IN (SELECT id FROM disks WHERE backup_id = ?)');
  const dropDisks = db.prepare('DELETE FROM disks WHERE backup_id = ?');
  const dropBackup = db.prepare('DELETE FROM backups WHERE id = ?');
  let rowsMerged = 0;
  db.transaction(() => {
    for (const m of plan.merges) {
      for (const d of diskIds.all(m.heir) as Array<{ id: number; name: string }>) {
        for (const src of m.sources) {
          const from = diskId.get(src, d.name) as number | undefined;
          if (from !== undefined) rowsMerged += merge.run(d.id, from).changes;
        }
      }
      reparent.run(m.newParent, m.newParent, m.heir);
    }
    for (const id of plan.remove) {
      dropRows.run(id);
      dropDisks.run(id);
      dropBackup.run(id);
    }
    writePending(db, { rewrite: plan.merges.map((m) => m.heir), delete: plan.remove });
    // A kill here rolls everything back: the transaction has not committed.
    opts.onStep?.('in-transaction', opts.label ?? '');
  }).immediate();
  opts.onStep?.('committed', opts.label ?? '');
  await finishPending(ctx, opts.onStep);
  return { removed: plan.remove, merges: plan.merges, rowsMerged };
}

/** Runs `fn` holding a repository lock of `kind` (exclusive for removals). */
export async function withLock<T>(
  repo: Repository,
  kind: LockKind,
  purpose: string,
  signal: AbortSignal | undefined,
  fn: (ctx: StoreContext) => Promise<T>,
): Promise<T> {
  const lock = await repo.lock(kind, purpose, signal);
  try {
    return await fn(repo.context);
  } finally {
    await lock.release();
  }
}

/**
 * Garbage collection for a caller that already holds the exclusive lock (Repository.gc would
 * wait for its own gc lock, which the exclusive lock excludes).
 */
export async function gcHoldingExclusive(repo: Repository, opts: GcOptions = {}): Promise<GcReport> {
  const ctx = repo.context;
  const reaped = repo.reapDeadBackups();
  await reapStaleLocks(ctx.layout.locks, (m) => ctx.warn(m));
  const report = await runGc(ctx, opts);
  if (reaped.length > 0) report.warnings.unshift(`marked ${reaped.length} dead running backup(s) failed`);
  return report;
}
