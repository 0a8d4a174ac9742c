// The journal of a backup removal whose manifests are not yet brought in line with the index
// (docs/prune.md, "Crash safety").
//
// A removal changes the index in one transaction, and the same transaction records in
// `meta` under PENDING_KEY which manifests must follow: `rewrite` (heirs, whose rows and
// parent changed) and `delete` (removed backups). So after a crash the index is either
// untouched or changed *with* its journal, never one without the other. Finishing is
// idempotent and derives everything from the committed index: rewrite each listed heir's
// manifest from its rows (atomically), then unlink each listed manifest whose backup is no
// longer in the index, fsync manifests/, and only then delete the key.
//
// Order matters for `repair --rebuild-index` in between: heirs are rewritten before removed
// manifests are unlinked, so the manifests on disk always describe restorable chains (old
// heir + old ancestors, or new heir + old ancestors, or new heir alone).
//
// Who finishes: the removal itself, right after committing; otherwise the next process that
// opens the repository for writing (Repository.open), under the `gc` lock: that excludes
// prune (exclusive) and other finishers but not backups, which never touch other backups'
// manifests. If the lock is busy, the holder is a live prune or finisher that will do it.
import { unlink } from 'node:fs/promises';
import { PullbackError, errorMessage } from '../errors.js';
import { fsyncDir } from './atomic-file.js';
import type { StoreContext } from './context.js';
import type { DB } from './index-db.js';
import { manifestPath } from './layout.js';
import { acquireLock } from './lock.js';
import { rewriteManifest } from './rewrite-manifest.js';

export const PENDING_KEY = 'pending_removal';

export interface PendingRemoval {
  rewrite: string[];
  delete: string[];
}

/** Steps a removal reports (also the points tests kill it at). */
export type RemovalStep = 'in-transaction' | 'committed' | 'manifest-rewritten' | 'manifest-deleted' | 'journal-cleared';

export type StepHook = (step: RemovalStep, detail: string) => void;

export function readPending(db: DB): PendingRemoval | undefined {
  const row = db.prepare('SELECT value FROM meta WHERE key = ?').get(PENDING_KEY) as { value: string } | undefined;
  if (row === undefined) return undefined;
  try {
    const v = JSON.parse(row.value) as Partial<PendingRemoval>;
    if (Array.isArray(v.rewrite) && Array.isArray(v.delete)) return { rewrite: v.rewrite.map(String), delete: v.delete.map(String) };
  } catch {
    // fall through
  }
  throw new PullbackError('REPO_CORRUPT', `index ${PENDING_KEY} entry is unreadable (${row.value.slice(0, 80)}): run \`pullback repair --rebuild-index\``);
}

/** Inside the removal's transaction: adds to the journal (a previous one is finished first, so usually it is empty). */
export function writePending(db: DB, p: PendingRemoval): void {
  const old = readPending(db);
  const merged: PendingRemoval = old === undefined ? p : { rewrite: [...new Set([...old.rewrite, ...p.rewrite])], delete: [...new Set([...old.delete, ...p.delete])] };
  db.prepare('INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)').run(PENDING_KEY, JSON.stringify(merged));
}

/** Brings the manifests in line with the index and clears the journal. The caller excludes other removers. */
export async function finishPending(ctx: StoreContext, onStep?: StepHook): Promise<PendingRemoval | undefined> {
  const { idb, layout } = ctx;
  const p = readPending(idb.db);
  if (p === undefined) return undefined;
  for (const id of p.rewrite) {
    const row = idb.backupRow(id);
    if (row === undefined || row.status !== 'complete') continue;
    await rewriteManifest(ctx, row);
    onStep?.('manifest-rewritten', id);
  }
  for (const id of p.delete) {
    if (idb.backupRow(id) !== undefined) continue;
    await unlink(manifestPath(layout.manifests, id)).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw new PullbackError('REPO_IO', `cannot delete manifest of removed backup ${id}: ${e.message}`, { cause: e });
    });
    onStep?.('manifest-deleted', id);
  }
  await fsyncDir(layout.manifests);
  idb.db.prepare('DELETE FROM meta WHERE key = ?').run(PENDING_KEY);
  onStep?.('journal-cleared', `${p.rewrite.length} rewritten, ${p.delete.length} deleted`);
  return p;
}

/**
 * Called when a repository is opened for writing: finishes a removal interrupted by a crash,
 * under the gc lock. Returns false when there was nothing to do or the lock was busy.
 */
export async function finishInterruptedRemoval(ctx: StoreContext): Promise<boolean> {
  if (readPending(ctx.idb.db) === undefined) return false;
  let lock;
  try {
    lock = await acquireLock(ctx.layout.locks, 'gc', 'finishing an interrupted prune', { onWarning: (m) => ctx.warn(m) });
  } catch (e) {
    if (e instanceof PullbackError && e.code === 'REPO_LOCKED') return false;
    throw e;
  }
  try {
    const p = await finishPending(ctx);
    if (p === undefined) return false;
    ctx.warn(
      `finished a prune that was interrupted: rewrote the manifests of ${p.rewrite.length} backup(s) and removed those of ${p.delete.length}`,
    );
    return true;
  } catch (e) {
    ctx.warn(`could not finish an interrupted prune (${errorMessage(e)}); the next prune retries`);
    return false;
  } finally {
    await lock.release();
  }
}
