// Rewrites a complete backup's manifest from the index (after a removal merged rows into it
// or changed its parent and level). The content is a function of the index alone, the same
// fields a completing writer records (backup-writer.ts), so rewriting twice gives the same
// manifest, which is what makes finishing an interrupted removal idempotent.
import { PullbackError } from '../errors.js';
import type { StoreContext } from './context.js';
import { diskStats, type BackupRow } from './index-db.js';
import { manifestPath } from './layout.js';
import { manifestMeta, writeManifest } from './manifest.js';

export async function rewriteManifest(ctx: StoreContext, row: BackupRow): Promise<void> {
  const { idb, layout, config } = ctx;
  if (row.status !== 'complete') {
    throw new PullbackError('INTERNAL', `rewriteManifest: backup ${row.id} is ${row.status}, not complete`);
  }
  const meta = manifestMeta(row, config.chunkSize);
  const disks = idb.diskRows(row.id).map((d) => ({ id: d.id, stats: diskStats(d) }));
  await writeManifest(idb.db, layout.tmp, manifestPath(layout.manifests, row.id), meta, disks);
}
