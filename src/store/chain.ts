// Backup chains and their resolution. A chain is a full backup followed by incrementals, each
// one's parent the one before. The content of disk D at backup B is, per chunk index, the row
// of the newest backup in B's chain (at or before B) that recorded that index. Resolution scans
// each chain member's rows for D once, oldest first, overwriting: later rows win. Each scan is
// a contiguous primary-key range of chunk_map (schema.ts), so the cost is one pass over the
// rows of the chain, with no sorting and no per-index queries.
import { PullbackError } from '../errors.js';
import { ChunkMap } from './chunk-map.js';
import { DIGEST_BYTES } from './hash.js';
import type { BackupRow, IndexDb } from './index-db.js';

/** Chunk indices per resolution query. */
const SEGMENT = 65536;

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
  // Rows come back a segment at a time as two aggregates computed over the same row sequence:
  // a text list of chunk indices (zero markers as -1-index) and the concatenated digests of
  // the data rows (group_concat skips the NULL digests of zero markers). Pairing them by
  // position needs no particular row order, and costs no per-row JavaScript objects: about
  // 4x faster than iterating rows (bench/resolve-chain.ts).
  const seg = idb.db
    .prepare(
      `SELECT group_concat(CASE WHEN m.chunk_id = 0 THEN -1 - m.chunk_index ELSE m.chunk_index END, ','),
              CAST(group_concat(CAST(c.digest AS TEXT), '') AS BLOB),
              count(c.id), sum(m.chunk_id != 0)
       FROM chunk_map m LEFT JOIN chunks c ON c.id = m.chunk_id
       WHERE m.disk_id = ? AND m.chunk_index >= ? AND m.chunk_index < ?`,
    )
    .raw(true);
  const diskId = idb.db.prepare('SELECT id FROM disks WHERE backup_id = ? AND name = ?').pluck(true);
  // One read transaction: every scan sees the same snapshot even while writers commit.
  idb.db.transaction(() => {
    for (const b of chain) {
      const id = diskId.get(b.id, disk) as number | undefined;
      if (id === undefined) continue;
      for (let start = 0; start < map.count; start += SEGMENT) {
        const [list, digests, found, wanted] = seg.get(id, start, Math.min(map.count, start + SEGMENT)) as [
          string | null,
          Buffer | null,
          number,
          number | null,
        ];
        if (list === null) continue;
        if (found !== (wanted ?? 0) || (digests?.length ?? 0) !== found * DIGEST_BYTES) {
          throw new PullbackError(
            'REPO_CORRUPT',
            `backup ${b.id} disk ${disk} references chunk ids that are not in the index (chunks ${start}..${start + SEGMENT - 1}): run \`pullback check\``,
          );
        }
        let k = 0;
        for (const item of list.split(',')) {
          const v = Number(item);
          if (v < 0) map.setZero(-1 - v);
          else map.setData(v, (digests as Buffer).subarray(k * DIGEST_BYTES, ++k * DIGEST_BYTES));
        }
      }
    }
  })();
  return map;
}
