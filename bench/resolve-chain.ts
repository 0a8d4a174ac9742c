// How long resolving a chunk map takes for a big disk after many incrementals: a 1 TiB disk at
// 1 MiB chunks (1,048,576 chunk indices), a full backup recording every chunk, then 30
// incrementals each recording a scattered 2% of the chunks (plus some zero markers). The index
// rows are inserted directly (no chunk files: resolution only reads the index), then
// Repository.resolveChunkMap of the last incremental is timed, cold (fresh process state,
// first query) and warm.
//
//   npx tsx bench/resolve-chain.ts [--dir DIR] [--disk-gib 1024] [--incrementals 30] [--changed 0.02]
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Repository } from '../src/store/index.js';
import { newBackupId } from '../src/store/backup-id.js';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? dflt) : dflt;
}

const MiB = 1024 * 1024;
const chunkSize = MiB;
const diskGiB = Number(arg('disk-gib', '1024'));
const incrementals = Number(arg('incrementals', '30'));
const changed = Number(arg('changed', '0.02'));
const count = (diskGiB * 1024 * MiB) / chunkSize;
const root = mkdtempSync(join(arg('dir', tmpdir()), 'pullback-resolve-'));

try {
  const dir = join(root, 'repo');
  let repo = await Repository.init(dir, { chunkSize });
  const db = repo.context.idb.db;
  const t0 = performance.now();
  const domainId = repo.context.idb.domainId('big');
  const insBackup = db.prepare(
    `INSERT INTO backups(id, domain_id, time_ms, level, parent_id, checkpoint, status) VALUES (?, ?, ?, ?, ?, ?, 'complete')`,
  );
  const insDisk = db.prepare('INSERT INTO disks(backup_id, name, size) VALUES (?, ?, ?)');
  const insChunk = db.prepare('INSERT INTO chunks(digest, size, stored_size, touched) VALUES (?, ?, ?, 1)');
  const insMap = db.prepare('INSERT INTO chunk_map(disk_id, chunk_index, chunk_id) VALUES (?, ?, ?)');
  let parent: string | null = null;
  let rows = 0;
  let time = Date.UTC(2026, 0, 1);
  const ids: string[] = [];
  for (let b = 0; b <= incrementals; b++) {
    const id = newBackupId(new Date(time));
    time += 86_400_000;
    db.transaction(() => {
      insBackup.run(id, domainId, time, b === 0 ? 'full' : 'incremental', parent, `pullback.${id}`);
      const diskId = Number(insDisk.run(id, 'vda', count * chunkSize).lastInsertRowid);
      // Chunk indices this backup records, ascending (full: all of them).
      const indices: number[] = [];
      if (b === 0) {
        for (let i = 0; i < count; i++) indices.push(i);
      } else {
        const picked = new Set<number>();
        const want = Math.floor(count * changed);
        while (picked.size < want) {
          // Writes cluster: runs of 1..16 neighbouring chunks.
          const start = Math.floor(Math.random() * count);
          const run = 1 + Math.floor(Math.random() * 16);
          for (let i = start; i < Math.min(count, start + run) && picked.size < want; i++) picked.add(i);
        }
        indices.push(...[...picked].sort((x, y) => x - y));
      }
      const digests = randomBytes(indices.length * 32);
      for (let k = 0; k < indices.length; k++) {
        const zero = k % 50 === 49;
        const chunkId = zero ? 0 : Number(insChunk.run(digests.subarray(k * 32, k * 32 + 32), chunkSize, chunkSize / 2).lastInsertRowid);
        insMap.run(diskId, indices[k], chunkId);
        rows++;
      }
    })();
    ids.push(id);
    parent = id;
  }
  const buildSeconds = (performance.now() - t0) / 1000;
  await repo.close();
  const dbBytes = statSync(join(dir, 'index.db')).size + (statSync(join(dir, 'index.db-wal'), { throwIfNoEntry: false })?.size ?? 0);

  repo = await Repository.open(dir, { readOnly: true });
  const last = ids[ids.length - 1] as string;
  const rss0 = process.memoryUsage.rss();
  const t1 = performance.now();
  const map = repo.resolveChunkMap(last, 'vda');
  const cold = (performance.now() - t1) / 1000;
  const rss1 = process.memoryUsage.rss();
  const t2 = performance.now();
  const map2 = repo.resolveChunkMap(last, 'vda');
  const warm = (performance.now() - t2) / 1000;
  const counts = map.counts();
  if (!map.equals(map2)) throw new Error('resolution is not deterministic');
  await repo.close();

  console.log(`disk ${diskGiB} GiB at ${chunkSize / MiB} MiB chunks = ${count} chunk indices; full + ${incrementals} incrementals of ${(changed * 100).toFixed(1)}% each`);
  console.log(`index: ${rows} chunk_map rows, ${(dbBytes / 1e6).toFixed(0)} MB on disk, built in ${buildSeconds.toFixed(1)} s`);
  console.log(`resolveChunkMap(last incremental): cold ${cold.toFixed(2)} s, warm ${warm.toFixed(2)} s (${(rows / warm / 1e6).toFixed(2)} M rows/s)`);
  console.log(`result: ${counts.data} data, ${counts.zero} zero, ${counts.absent} absent; map memory ~${((rss1 - rss0) / MiB).toFixed(0)} MiB RSS growth`);
} finally {
  rmSync(root, { recursive: true, force: true });
}
