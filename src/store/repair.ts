// `pullback repair --rebuild-index`: recreate index.db from the repository's files alone.
//   chunks/     every chunk file becomes a `chunks` row (size from its header)
//   manifests/  every readable manifest becomes a complete backup with its disks and rows
// The new index is built under tmp/ and renamed into place only when finished; the old one
// (if any) is kept beside it as index.db.old-<time> for inspection. What cannot come back:
// running and failed backups (they have no manifest) and chunk rows' gc epochs (all 0, which
// only means the next gc treats every chunk as unstamped; references still protect them).
import { closeSync, existsSync, fsyncSync, openSync, readSync, readdirSync, renameSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { PullbackError } from '../errors.js';
import { fsyncDir, tmpName } from './atomic-file.js';
import { parseHeader, HEADER_BYTES } from './codec.js';
import { fromHex } from './hash.js';
import { IndexDb } from './index-db.js';
import { HEX64, layout, type Layout } from './layout.js';
import { ManifestReader, type ManifestMeta } from './manifest.js';
import type { ProgressEvent } from './types.js';

export interface RebuildReport {
  backups: number;
  chunks: number;
  rows: number;
  /** Chunks referenced by a manifest that have no file (check will report them). */
  missingChunks: number;
  skippedManifests: Array<{ file: string; reason: string }>;
  /** Where the previous index was moved, or null if there was none. */
  oldIndex: string | null;
}

export interface RebuildOptions {
  chunkSize: number;
  signal?: AbortSignal;
  onProgress?: (e: ProgressEvent) => void;
}

function readHeader(path: string): { plainLength: number | null } {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(HEADER_BYTES);
    const n = readSync(fd, buf, 0, HEADER_BYTES, 0);
    const h = parseHeader(buf.subarray(0, n));
    return { plainLength: typeof h === 'string' ? null : h.plainLength };
  } finally {
    closeSync(fd);
  }
}

/** Rebuilds the index of the repository in `dir`. The caller holds the exclusive lock. */
export async function rebuildIndex(dir: string, opts: RebuildOptions): Promise<RebuildReport> {
  const l: Layout = layout(dir);
  const report: RebuildReport = { backups: 0, chunks: 0, rows: 0, missingChunks: 0, skippedManifests: [], oldIndex: null };
  const newPath = `${tmpName(l.tmp)}.db`;
  const idb = IndexDb.create(newPath);
  const db = idb.db;
  db.pragma('synchronous = OFF'); // made durable by the checkpoint + fsync below
  try {
    // Chunks.
    const insChunk = db.prepare('INSERT INTO chunks(digest, size, stored_size, touched) VALUES (?, ?, ?, 0)');
    const dirs = readdirSync(l.chunks);
    let done = 0;
    for (const d of dirs) {
      opts.signal?.throwIfAborted();
      const full = join(l.chunks, d);
      let names: string[];
      try {
        names = readdirSync(full);
      } catch {
        continue;
      }
      db.transaction(() => {
        for (const n of names) {
          if (!HEX64.test(n) || n.slice(0, 4) !== d) continue;
          const p = join(full, n);
          const size = statSync(p).size;
          insChunk.run(fromHex(n), readHeader(p).plainLength, size);
          report.chunks++;
        }
      })();
      opts.onProgress?.({ phase: 'chunks', done: ++done, total: dirs.length });
    }

    // Manifests, oldest first so parents precede children.
    const metas: Array<{ file: string; meta: ManifestMeta }> = [];
    for (const n of readdirSync(l.manifests).filter((f) => f.endsWith('.manifest'))) {
      const file = join(l.manifests, n);
      try {
        const r = await ManifestReader.open(file);
        if (r.meta.backup.id !== n.slice(0, -'.manifest'.length)) throw new Error(`names backup ${r.meta.backup.id}`);
        if (r.meta.chunkSize !== opts.chunkSize) throw new Error(`chunk size ${r.meta.chunkSize} differs from the repository's ${opts.chunkSize}`);
        metas.push({ file, meta: r.meta });
      } catch (e) {
        report.skippedManifests.push({ file, reason: (e as Error).message });
      }
    }
    metas.sort((a, b) => Date.parse(a.meta.backup.time) - Date.parse(b.meta.backup.time) || a.meta.backup.id.localeCompare(b.meta.backup.id));
    const chunkId = db.prepare('SELECT id FROM chunks WHERE digest = ?').pluck(true);
    const insMissing = db.prepare('INSERT INTO chunks(digest, size, stored_size, touched) VALUES (?, NULL, NULL, 0)');
    const insMap = db.prepare('INSERT OR REPLACE INTO chunk_map(disk_id, chunk_index, chunk_id) VALUES (?, ?, ?)');
    const insBackup = db.prepare(
      `INSERT INTO backups(id, domain_id, time_ms, level, parent_id, checkpoint, status, domain_xml, checkpoint_xml, owner, finished_ms)
       VALUES (?, ?, ?, ?, ?, ?, 'complete', ?, ?, NULL, NULL)`,
    );
    const insDisk = db.prepare(
      `INSERT INTO disks(backup_id, name, size, bytes_read, bytes_stored, chunks_new, chunks_deduped, chunks_zero)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    done = 0;
    for (const { file, meta } of metas) {
      opts.signal?.throwIfAborted();
      const reader = await ManifestReader.open(file);
      db.exec('SAVEPOINT manifest');
      try {
        const b = meta.backup;
        insBackup.run(b.id, idb.domainId(b.domain), Date.parse(b.time), b.level, b.parentId, b.checkpoint, b.domainXml ?? null, b.checkpointXml ?? null);
        const diskIds = meta.disks.map((d) =>
          Number(insDisk.run(b.id, d.name, d.size, d.bytesRead, d.bytesStored, d.chunksNew, d.chunksDeduped, d.chunksZero).lastInsertRowid),
        );
        let rows = 0;
        for await (const batch of reader.rows()) {
          for (const r of batch) {
            let id = 0;
            if (r.digest !== null) {
              id = (chunkId.get(r.digest) as number | undefined) ?? 0;
              if (id === 0) {
                id = Number(insMissing.run(r.digest).lastInsertRowid);
                report.missingChunks++;
              }
            }
            insMap.run(diskIds[r.disk], r.index, id);
            rows++;
          }
        }
        db.exec('RELEASE manifest');
        report.backups++;
        report.rows += rows;
      } catch (e) {
        db.exec('ROLLBACK TO manifest');
        db.exec('RELEASE manifest');
        report.skippedManifests.push({ file, reason: (e as Error).message });
      }
      opts.onProgress?.({ phase: 'manifests', done: ++done, total: metas.length });
    }
    db.pragma('wal_checkpoint(TRUNCATE)');
    db.pragma('journal_mode = DELETE');
    idb.close();
    const fd = openSync(newPath, 'r+');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch (e) {
    idb.close();
    for (const suffix of ['', '-wal', '-shm']) if (existsSync(newPath + suffix)) unlinkSync(newPath + suffix);
    throw e instanceof PullbackError ? e : new PullbackError('REPO_IO', `rebuilding the index of ${dir} failed: ${(e as Error).message}`, { cause: e });
  }

  // Swap in: old index aside (with its WAL, which belongs to it), new one in place.
  if (existsSync(l.db)) {
    const aside = `${l.db}.old-${new Date().toISOString().replace(/[:.]/g, '')}`;
    renameSync(l.db, aside);
    for (const s of ['-wal', '-shm']) if (existsSync(l.db + s)) renameSync(l.db + s, aside + s);
    report.oldIndex = aside;
  } else {
    for (const s of ['-wal', '-shm']) if (existsSync(l.db + s)) unlinkSync(l.db + s);
  }
  renameSync(newPath, l.db);
  await fsyncDir(dir);
  return report;
}
