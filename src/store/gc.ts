// Garbage collection: delete chunks no live backup references. Safe beside running backups,
// by mark-and-sweep over a gc epoch kept in the index rather than over file access times:
//   1. drop chunk_map rows of failed backups (they pin nothing)
//   2. epoch := epoch + 1, committed. From here on, every writer transaction that references
//      a chunk (new or deduplicated) stamps chunks.touched = epoch in the same transaction.
//   3. mark: one snapshot read of every chunk id referenced by a running or complete backup
//   4. sweep, in short IMMEDIATE transactions: a chunk neither marked nor touched since step 2
//      has its file unlinked and its row deleted, inside the transaction
// A writer's reference is either in the snapshot (committed before it) or stamped with the
// new epoch (committed after step 2, since all write transactions serialise), so no chunk a
// backup uses is swept. The writer checks that the file exists inside its own write
// transaction (backup-writer.ts), and gc unlinks only inside its write transaction, so the
// file it saw cannot disappear before its row commits. atime (PBS's approach) would need
// a 24 h grace for relatime and breaks on noatime mounts; the index gives exact ordering.
//   5. orphan chunk files (no row; e.g. kill -9 between rename and commit) older than the
//      grace period, and temporary files of dead processes, are removed.
import { readdirSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { isOwnHost, parseTmpName } from './atomic-file.js';
import type { StoreContext } from './context.js';
import { fromHex, toHex } from './hash.js';
import { chunkPath, HEX64 } from './layout.js';
import type { GcReport, ProgressEvent } from './types.js';

export interface GcOptions {
  dryRun?: boolean;
  signal?: AbortSignal;
  onProgress?: (e: ProgressEvent) => void;
  /** Chunk files without an index row younger than this are left alone (default 1 hour). */
  orphanGraceMs?: number;
}

const BATCH = 256;
const TMP_FOREIGN_MAX_AGE_MS = 24 * 3600 * 1000;

export async function runGc(ctx: StoreContext, opts: GcOptions): Promise<GcReport> {
  const db = ctx.idb.db;
  const dryRun = opts.dryRun === true;
  const started = Date.now();
  const report: GcReport = {
    dryRun,
    chunksDeleted: 0,
    bytesFreed: 0,
    chunksKept: 0,
    orphanFilesDeleted: 0,
    tmpFilesDeleted: 0,
    failedBackupsCleaned: 0,
    warnings: [],
  };

  // 1. failed backups
  const failedWithRows = db
    .prepare(
      `SELECT DISTINCT d.backup_id FROM disks d JOIN backups b ON b.id = d.backup_id
       WHERE b.status = 'failed' AND EXISTS (SELECT 1 FROM chunk_map m WHERE m.disk_id = d.id)`,
    )
    .pluck(true)
    .all() as string[];
  report.failedBackupsCleaned = failedWithRows.length;
  if (!dryRun && failedWithRows.length > 0) {
    db.prepare(
      `DELETE FROM chunk_map WHERE disk_id IN (SELECT d.id FROM disks d JOIN backups b ON b.id = d.backup_id WHERE b.status = 'failed')`,
    ).run();
  }

  // 2. new epoch
  let epoch: number;
  if (dryRun) {
    epoch = ctx.idb.gcEpoch() + 1;
  } else {
    epoch = db
      .transaction(() => {
        const e = ctx.idb.gcEpoch() + 1;
        db.prepare("UPDATE meta SET value = ? WHERE key = 'gc_epoch'").run(e);
        return e;
      })
      .immediate();
  }

  // 3. mark
  opts.signal?.throwIfAborted();
  const maxId = (db.prepare('SELECT coalesce(max(id), 0) FROM chunks').pluck(true).get() as number) ?? 0;
  const marked = new Uint8Array(maxId + 1);
  markReferenced(db, marked);

  // 4. sweep
  const candidates: Array<{ id: number; digest: Buffer; storedSize: number }> = [];
  const all = db.prepare('SELECT id, digest, stored_size FROM chunks WHERE id <= ? AND touched < ?').raw(true);
  for (const [id, digest, storedSize] of all.iterate(maxId, epoch) as IterableIterator<[number, Buffer, number | null]>) {
    if (marked[id] === 1) continue;
    candidates.push({ id, digest, storedSize: storedSize ?? 0 });
  }
  report.chunksKept = (db.prepare('SELECT count(*) FROM chunks').pluck(true).get() as number) - candidates.length;
  if (dryRun) {
    report.chunksDeleted = candidates.length;
    report.bytesFreed = candidates.reduce((n, c) => n + c.storedSize, 0);
  } else {
    const still = db.prepare('SELECT touched FROM chunks WHERE id = ?').pluck(true);
    const del = db.prepare('DELETE FROM chunks WHERE id = ?');
    for (let i = 0; i < candidates.length; i += BATCH) {
      opts.signal?.throwIfAborted();
      const batch = candidates.slice(i, i + BATCH);
      db.transaction(() => {
        for (const c of batch) {
          const touched = still.get(c.id) as number | undefined;
          if (touched === undefined || touched >= epoch) continue;
          const path = chunkPath(ctx.layout.chunks, toHex(c.digest));
          let size = c.storedSize;
          try {
            size = statSync(path).size;
            unlinkSync(path);
          } catch (e) {
            if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
            size = 0;
          }
          del.run(c.id);
          report.chunksDeleted++;
          report.bytesFreed += size;
        }
      }).immediate();
      opts.onProgress?.({ phase: 'sweep', done: Math.min(i + BATCH, candidates.length), total: candidates.length });
      // Let writers in this process commit between batches.
      await new Promise((r) => setImmediate(r));
    }
    report.chunksKept = db.prepare('SELECT count(*) FROM chunks').pluck(true).get() as number;
  }

  // 5. orphans and temporary files
  await sweepOrphans(ctx, opts, started, report);
  sweepTmp(ctx, dryRun, report);
  return report;
}

async function sweepOrphans(ctx: StoreContext, opts: GcOptions, started: number, report: GcReport): Promise<void> {
  const db = ctx.idb.db;
  const grace = opts.orphanGraceMs ?? 3600 * 1000;
  const hasRow = db.prepare('SELECT 1 FROM chunks WHERE digest = ?').pluck(true);
  let dirs: string[];
  try {
    dirs = readdirSync(ctx.layout.chunks);
  } catch {
    return;
  }
  for (const dir of dirs) {
    opts.signal?.throwIfAborted();
    const full = join(ctx.layout.chunks, dir);
    let names: string[];
    try {
      names = readdirSync(full);
    } catch {
      continue;
    }
    const orphans = names.filter((n) => HEX64.test(n) && hasRow.get(fromHex(n)) === undefined);
    if (orphans.length === 0) continue;
    const doomed = orphans.filter((n) => {
      try {
        return statSync(join(full, n)).mtimeMs < started - grace;
      } catch {
        return false;
      }
    });
    if (opts.dryRun === true) {
      report.orphanFilesDeleted += doomed.length;
      continue;
    }
    // Re-check and unlink inside a write transaction: a writer may be about to index it.
    db.transaction(() => {
      for (const n of doomed) {
        if (hasRow.get(fromHex(n)) !== undefined) continue;
        try {
          unlinkSync(join(full, n));
          report.orphanFilesDeleted++;
        } catch {
          // raced with another gc? it is gone either way
        }
      }
    }).immediate();
    await new Promise((r) => setImmediate(r));
  }
}

function sweepTmp(ctx: StoreContext, dryRun: boolean, report: GcReport): void {
  let names: string[];
  try {
    names = readdirSync(ctx.layout.tmp);
  } catch {
    return;
  }
  for (const n of names) {
    const path = join(ctx.layout.tmp, n);
    const t = parseTmpName(n);
    let stale: boolean;
    if (t !== undefined && isOwnHost(t.host)) {
      stale = !pidAlive(t.pid);
    } else {
      try {
        stale = Date.now() - statSync(path).mtimeMs > TMP_FOREIGN_MAX_AGE_MS;
      } catch {
        stale = false;
      }
    }
    if (!stale) continue;
    if (!dryRun) {
      try {
        unlinkSync(path);
      } catch {
        continue;
      }
    }
    report.tmpFilesDeleted++;
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

const MARK_SEGMENT = 65536;

/**
 * Sets marked[id] for every chunk id referenced by a running or complete backup. Reads each
 * live disk's rows a segment at a time as one group_concat (no JavaScript object per row),
 * all in one read transaction so the mark is a single snapshot.
 */
function markReferenced(db: StoreContext['idb']['db'], marked: Uint8Array): void {
  const disks = db
    .prepare(
      `SELECT d.id, (SELECT max(chunk_index) FROM chunk_map m WHERE m.disk_id = d.id) FROM disks d
       JOIN backups b ON b.id = d.backup_id WHERE b.status != 'failed'`,
    )
    .raw(true);
  const seg = db
    .prepare('SELECT group_concat(chunk_id) FROM chunk_map WHERE disk_id = ? AND chunk_index >= ? AND chunk_index < ? AND chunk_id != 0')
    .pluck(true);
  db.transaction(() => {
    for (const [diskId, maxIndex] of disks.all() as Array<[number, number | null]>) {
      if (maxIndex === null) continue;
      for (let start = 0; start <= maxIndex; start += MARK_SEGMENT) {
        const list = seg.get(diskId, start, start + MARK_SEGMENT) as string | null;
        if (list === null) continue;
        for (const item of list.split(',')) {
          const id = Number(item);
          if (id < marked.length) marked[id] = 1;
        }
      }
    }
  })();
}
