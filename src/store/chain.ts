// Backup chains and their resolution. A chain is a full backup followed by incrementals, each
// one's parent the one before. The content of disk D at backup B is, per chunk index, the row
// of the newest backup in B's chain (at or before B) that recorded that index. Resolution scans
// each chain member's rows for D once, oldest first, overwriting: later rows win. Each scan is
// one contiguous primary-key range of chunk_map (schema.ts), so the cost is one pass over the
// rows of the chain, with no sorting and no per-index queries.
import { PullbackError } from '../errors.js';
import { ChunkMap } from './chunk-map.js';
import type { BackupRow, IndexDb } from './index-db.js';

/** Longest chain followed before assuming a parent cycle in a damaged index. */
const MAX_CHAIN = 100_000;

/** The chain ending at `id`, full backup first. */
export function chainOf(idb: IndexDb, id: string): BackupRow[] {
  const out: BackupRow[] = [];
  let cur: string | null = id;
  while (cur !== null) {
    const row = idb.backupRow(cur);
    if (row === undefined) {
      if (out.length === 0) throw new PullbackError('BACKUP_NOT_FOUND', `no backup ${id} in repository index ${idb.path}`);
      throw new PullbackError(
        'REPO_CORRUPT',
        `backup ${out[out.length - 1]?.id ?? id} names parent ${cur}, which is not in the index: run \`pullback check\``,
      );
    }
    out.push(row);
    if (row.level === 'full') break;
    if (row.parent_id === null) {
      throw new PullbackError('REPO_CORRUPT', `incremental backup ${row.id} has no parent in the index: run \`pullback check\``);
    }
    cur = row.parent_id;
    if (out.length > MAX_CHAIN) throw new PullbackError('REPO_CORRUPT', `backup chain of ${id} loops: run \`pullback check\``);
  }
  return out.reverse();
}

/**
 * The complete chunk map of `disk` at the last backup of `chain`. Rows beyond the disk's size
 * at that backup (a disk that shrank) are ignored.
 */
export function resolveChain(idb: IndexDb, chain: readonly BackupRow[], disk: string, chunkSize: number): ChunkMap {
  const target = chain[chain.length - 1];
  if (target === undefined) throw new PullbackError('INTERNAL', 'resolveChain called with an empty chain');
  const targetDisk = idb.diskRow(target.id, disk);
  if (targetDisk === undefined) {
    const names = idb.diskRows(target.id).map((d) => d.name);
    throw new PullbackError(
      'BACKUP_NOT_FOUND',
      `backup ${target.id} of domain ${target.domain} has no disk "${disk}" (it has: ${names.join(', ') || 'none'})`,
    );
  }
  const map = new ChunkMap(disk, targetDisk.size, chunkSize);
  const scan = idb.db
    .prepare(
      `SELECT m.chunk_index, m.chunk_id, c.digest FROM chunk_map m LEFT JOIN chunks c ON c.id = m.chunk_id
       WHERE m.disk_id = ? AND m.chunk_index < ?`,
    )
    .raw(true);
  const diskId = idb.db.prepare('SELECT id FROM disks WHERE backup_id = ? AND name = ?').pluck(true);
  // One read transaction: every scan sees the same snapshot even while writers commit.
  idb.db.transaction(() => {
    for (const b of chain) {
      const id = diskId.get(b.id, disk) as number | undefined;
      if (id === undefined) continue;
      for (const row of scan.iterate(id, map.count) as IterableIterator<[number, number, Buffer | null]>) {
        const [index, chunkId, digest] = row;
        if (chunkId === 0) map.setZero(index);
        else if (digest !== null) map.setData(index, digest);
        else {
          throw new PullbackError(
            'REPO_CORRUPT',
            `backup ${b.id} disk ${disk} chunk ${index} references chunk id ${chunkId}, which is not in the index: run \`pullback check\``,
          );
        }
      }
    }
  })();
  return map;
}
