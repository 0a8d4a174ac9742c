// Repository verification (`pullback check`). Without --read-data it checks structure:
//   index      SQLite's quick_check of the database itself
//   chains     every complete incremental has a complete parent of the same domain
//   chunks     every chunk referenced by a live (running or complete) backup has an index row
//              and a file of the recorded size
//   manifests  every complete backup has a manifest that agrees with the index, row for row,
//              and every manifest belongs to a backup in the index
// With --read-data every referenced chunk is also read, decoded and re-hashed (on the worker
// pool). Each bad chunk is reported with the backups and disks it affects: the backups whose
// rows reference it, plus the incrementals built on them that do not override that chunk.
import { statSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { PullbackError } from '../errors.js';
import type { StoreContext } from './context.js';
import { HEADER_BYTES } from './codec.js';
import { toHex } from './hash.js';
import { chunkPath, manifestPath } from './layout.js';
import { ManifestReader, mapRows, type ManifestMeta } from './manifest.js';
import { describeOwner, liveness, parseOwner } from './owner.js';
import type { BackupRow } from './index-db.js';
import type { CheckProblem, CheckReport, ProgressEvent } from './types.js';

export interface CheckOptions {
  readData?: boolean;
  signal?: AbortSignal;
  onProgress?: (e: ProgressEvent) => void;
}

interface BadChunk {
  id: number;
  hex: string;
  kind: 'chunk-missing' | 'chunk-corrupt' | 'chunk-unindexed';
  reason: string;
}

/** At most this many affected backup/disk pairs are listed per bad chunk. */
const MAX_AFFECTS = 1000;

export async function runCheck(ctx: StoreContext, opts: CheckOptions): Promise<CheckReport> {
  const { idb } = ctx;
  const report: CheckReport = {
    ok: true,
    problems: [],
    backupsChecked: 0,
    manifestsChecked: 0,
    chunksChecked: 0,
    chunksVerified: 0,
    bytesVerified: 0,
    warnings: [],
  };
  // SQLite's own structural check first: b-trees, indexes and free lists agree.
  const integrity = idb.db.pragma('quick_check', { simple: false }) as Array<{ quick_check: string }>;
  const bad = integrity.map((r) => r.quick_check.replace(/\s+/g, ' ').trim()).filter((m) => m !== 'ok');
  if (bad.length > 0) {
    report.problems.push({
      kind: 'index-corrupt',
      message: `index database ${idb.path} fails SQLite's quick_check (${bad.slice(0, 3).join('; ')}): run \`pullback repair --rebuild-index\``,
      affects: [],
    });
  }
  const backups = idb.backupRows({});
  const byId = new Map(backups.map((b) => [b.id, b]));
  for (const b of backups) {
    if (b.status !== 'running') continue;
    const owner = parseOwner(b.owner);
    if (owner !== undefined && liveness(owner) === 'dead') {
      report.warnings.push(`backup ${b.id} of domain ${b.domain} is marked running but its process (${describeOwner(owner)}) is gone`);
    }
  }
  checkChains(backups, byId, report);
  const badChunks = await checkChunks(ctx, opts, report);
  if (badChunks.length > 0) {
    const affects = affectedBy(ctx, badChunks, byId);
    for (const c of badChunks) {
      const list = affects.get(c.id) ?? [];
      const names = list.map((a) => `${a.backup}:${a.disk}`).join(', ');
      report.problems.push({
        kind: c.kind,
        digest: c.hex,
        message: `chunk ${c.hex} ${c.reason}; affects ${list.length === 0 ? 'no complete backup' : names}`,
        affects: list,
      });
    }
  }
  await checkManifests(ctx, backups, report, opts);
  report.ok = report.problems.length === 0;
  return report;
}

function checkChains(backups: BackupRow[], byId: Map<string, BackupRow>, report: CheckReport): void {
  for (const b of backups) {
    if (b.status !== 'complete') continue;
    report.backupsChecked++;
    if (b.level === 'full') continue;
    const p = b.parent_id === null ? undefined : byId.get(b.parent_id);
    let why: string | undefined;
    if (p === undefined) why = `its parent ${b.parent_id ?? '(none)'} is not in the index`;
    else if (p.status !== 'complete') why = `its parent ${p.id} is ${p.status}`;
    else if (p.domain !== b.domain) why = `its parent ${p.id} belongs to domain ${p.domain}`;
    if (why !== undefined) {
      report.problems.push({
        kind: 'chain-broken',
        message: `incremental backup ${b.id} of domain ${b.domain} cannot be restored: ${why}`,
        affects: [{ backup: b.id, disk: '*' }],
      });
    }
  }
}

async function checkChunks(ctx: StoreContext, opts: CheckOptions, report: CheckReport): Promise<BadChunk[]> {
  const db = ctx.idb.db;
  const bad: BadChunk[] = [];
  // Map rows whose chunk id has no chunks row at all: the index itself is damaged.
  const dangling = db
    .prepare(
      `SELECT DISTINCT m.chunk_id FROM chunk_map m LEFT JOIN chunks c ON c.id = m.chunk_id
       WHERE m.chunk_id != 0 AND c.id IS NULL`,
    )
    .pluck(true)
    .all() as number[];
  for (const id of dangling) bad.push({ id, hex: `#${id}`, kind: 'chunk-unindexed', reason: 'is referenced by id but has no row in the chunks table' });
  const referenced = db
    .prepare(
      `SELECT c.id, c.digest, c.stored_size FROM chunks c WHERE c.id IN (
         SELECT m.chunk_id FROM chunk_map m JOIN disks d ON d.id = m.disk_id JOIN backups b ON b.id = d.backup_id
         WHERE b.status != 'failed' AND m.chunk_id != 0)`,
    )
    .raw(true)
    .all() as Array<[number, Buffer, number | null]>;
  const total = referenced.length;
  let done = 0;
  const progress = (): void => opts.onProgress?.({ phase: opts.readData === true ? 'read-data' : 'chunks', done, total });
  const verifyQueue: Array<{ id: number; hex: string }> = [];
  for (const [id, digest, storedSize] of referenced) {
    opts.signal?.throwIfAborted();
    const hex = toHex(digest);
    const path = chunkPath(ctx.layout.chunks, hex);
    let size: number | undefined;
    try {
      size = statSync(path).size;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    report.chunksChecked++;
    if (size === undefined) {
      bad.push({ id, hex, kind: 'chunk-missing', reason: `is missing (${path})` });
    } else if ((storedSize !== null && size !== storedSize) || size < HEADER_BYTES) {
      bad.push({ id, hex, kind: 'chunk-corrupt', reason: `has ${size} bytes, the index says ${storedSize ?? '?'} (${path})` });
    } else if (opts.readData === true) {
      verifyQueue.push({ id, hex });
      continue;
    }
    done++;
    if (done % 4096 === 0) progress();
  }
  if (opts.readData === true) {
    const pool = ctx.pool();
    let next = 0;
    const lanes = Array.from({ length: pool.workerCount * 4 }, async () => {
      while (next < verifyQueue.length) {
        opts.signal?.throwIfAborted();
        const item = verifyQueue[next++] as { id: number; hex: string };
        const r = await pool.verify(item.hex);
        if (r.problem !== null) {
          bad.push({
            id: item.id,
            hex: item.hex,
            kind: r.problem === 'missing' ? 'chunk-missing' : 'chunk-corrupt',
            reason: `${r.problem === 'missing' ? 'is missing' : 'is corrupt'}: ${r.reason} (${chunkPath(ctx.layout.chunks, item.hex)})`,
          });
        } else {
          report.chunksVerified++;
          report.bytesVerified += r.plainLength;
        }
        done++;
        if (done % 256 === 0) progress();
      }
    });
    await Promise.all(lanes);
  }
  progress();
  return bad;
}

/** For each bad chunk id: the live backups/disks that read it back (see header). */
function affectedBy(ctx: StoreContext, bad: BadChunk[], byId: Map<string, BackupRow>): Map<number, Array<{ backup: string; disk: string }>> {
  const db = ctx.idb.db;
  const badIds = new Set(bad.map((b) => b.id));
  const direct = new Map<number, Array<{ backup: string; disk: string; index: number }>>();
  const scan = db
    .prepare(
      `SELECT m.chunk_id, d.backup_id, d.name, m.chunk_index FROM chunk_map m
       JOIN disks d ON d.id = m.disk_id JOIN backups b ON b.id = d.backup_id WHERE b.status != 'failed'`,
    )
    .raw(true);
  for (const [chunkId, backup, disk, index] of scan.iterate() as IterableIterator<[number, string, string, number]>) {
    if (!badIds.has(chunkId)) continue;
    let list = direct.get(chunkId);
    if (list === undefined) direct.set(chunkId, (list = []));
    list.push({ backup, disk, index });
  }
  const children = new Map<string, string[]>();
  for (const b of byId.values()) {
    if (b.parent_id === null || b.status === 'failed') continue;
    const c = children.get(b.parent_id) ?? [];
    c.push(b.id);
    children.set(b.parent_id, c);
  }
  const overrides = db.prepare(
    'SELECT 1 FROM chunk_map m JOIN disks d ON d.id = m.disk_id WHERE d.backup_id = ? AND d.name = ? AND m.chunk_index = ?',
  );
  const out = new Map<number, Array<{ backup: string; disk: string }>>();
  for (const [chunkId, rows] of direct) {
    const seen = new Set<string>();
    const list: Array<{ backup: string; disk: string }> = [];
    const add = (backup: string, disk: string): void => {
      const key = `${backup}\0${disk}`;
      if (seen.has(key) || list.length >= MAX_AFFECTS) return;
      seen.add(key);
      list.push({ backup, disk });
    };
    for (const r of rows) {
      add(r.backup, r.disk);
      const stack = [...(children.get(r.backup) ?? [])];
      while (stack.length > 0 && list.length < MAX_AFFECTS) {
        const c = stack.pop() as string;
        if (overrides.get(c, r.disk, r.index) !== undefined) continue;
        add(c, r.disk);
        stack.push(...(children.get(c) ?? []));
      }
    }
    out.set(chunkId, list);
  }
  return out;
}

async function checkManifests(ctx: StoreContext, backups: BackupRow[], report: CheckReport, opts: CheckOptions): Promise<void> {
  const { idb, layout } = ctx;
  const complete = backups.filter((b) => b.status === 'complete');
  const ids = new Set(backups.map((b) => b.id));
  const byStatus = new Map(backups.map((b) => [b.id, b.status]));
  let names: string[] = [];
  try {
    names = await readdir(layout.manifests);
  } catch (e) {
    throw new PullbackError('REPO_IO', `cannot list ${layout.manifests}: ${(e as Error).message}`, { cause: e });
  }
  for (const name of names) {
    if (!name.endsWith('.manifest')) continue;
    const id = name.slice(0, -'.manifest'.length);
    if (!ids.has(id)) {
      report.problems.push({
        kind: 'manifest-mismatch',
        message: `manifest ${name} belongs to backup ${id}, which the index does not have: run \`pullback repair --rebuild-index\``,
        affects: [{ backup: id, disk: '*' }],
      });
    } else if (byStatus.get(id) !== 'complete') {
      report.warnings.push(`backup ${id} is ${byStatus.get(id)} but has a manifest (${name})`);
    }
  }
  let done = 0;
  for (const b of complete) {
    opts.signal?.throwIfAborted();
    const problem = await compareManifest(ctx, b);
    if (problem !== undefined) report.problems.push(problem);
    report.manifestsChecked++;
    opts.onProgress?.({ phase: 'manifests', done: ++done, total: complete.length });
  }
  void idb;
}

async function compareManifest(ctx: StoreContext, b: BackupRow): Promise<CheckProblem | undefined> {
  const { idb, layout, config } = ctx;
  const path = manifestPath(layout.manifests, b.id);
  const affects = [{ backup: b.id, disk: '*' }];
  let reader: ManifestReader;
  try {
    reader = await ManifestReader.open(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      return { kind: 'manifest-missing', message: `complete backup ${b.id} of domain ${b.domain} has no manifest (${path})`, affects };
    }
    return { kind: 'manifest-corrupt', message: `manifest of backup ${b.id} (${path}) is unreadable: ${(e as Error).message}`, affects };
  }
  const m = reader.meta;
  const disks = idb.diskRows(b.id);
  const mismatch = (what: string): CheckProblem => ({
    kind: 'manifest-mismatch',
    message: `manifest of backup ${b.id} (${path}) disagrees with the index: ${what}`,
    affects,
  });
  const metaDiff = compareMeta(m, b, disks, config.chunkSize, idb.db.prepare('SELECT count(*) FROM chunk_map WHERE disk_id = ?').pluck(true));
  if (metaDiff !== undefined) return mismatch(metaDiff);
  // Walk both row streams in step.
  const iters = disks.map((d) => mapRows(idb.db, d.id)[Symbol.iterator]());
  let cur: { disk: number; rows: Array<[number, number, Buffer | null]>; pos: number } | undefined;
  const nextDbRow = (disk: number): [number, number, Buffer | null] | undefined => {
    for (;;) {
      if (cur !== undefined && cur.disk === disk && cur.pos < cur.rows.length) return cur.rows[cur.pos++];
      const it = iters[disk];
      const r = it?.next();
      if (r === undefined || r.done === true) return undefined;
      cur = { disk, rows: r.value, pos: 0 };
    }
  };
  try {
    for await (const batch of reader.rows()) {
      for (const row of batch) {
        const db = nextDbRow(row.disk);
        const name = disks[row.disk]?.name ?? `#${row.disk}`;
        if (db === undefined) return mismatch(`disk ${name} chunk ${row.index} is in the manifest but not in the index`);
        const [index, chunkId, digest] = db;
        if (index !== row.index) return mismatch(`disk ${name}: manifest has chunk ${row.index} where the index has chunk ${index}`);
        const same = row.digest === null ? chunkId === 0 : digest !== null && digest.equals(row.digest);
        if (!same) return mismatch(`disk ${name} chunk ${index} differs`);
      }
    }
  } catch (e) {
    return { kind: 'manifest-corrupt', message: `manifest of backup ${b.id} (${path}) is damaged: ${(e as Error).message}`, affects };
  }
  return undefined;
}

function compareMeta(
  m: ManifestMeta,
  b: BackupRow,
  disks: Array<{ id: number; name: string; size: number }>,
  chunkSize: number,
  count: { get(id: number): unknown },
): string | undefined {
  const mb = m.backup;
  if (m.chunkSize !== chunkSize) return `chunk size ${m.chunkSize} vs ${chunkSize}`;
  if (mb.id !== b.id) return `backup id ${mb.id}`;
  if (mb.domain !== b.domain) return `domain ${mb.domain} vs ${b.domain}`;
  if (new Date(mb.time).getTime() !== b.time_ms) return `time ${mb.time}`;
  if (mb.level !== b.level) return `level ${mb.level} vs ${b.level}`;
  if (mb.parentId !== b.parent_id) return `parent ${mb.parentId} vs ${b.parent_id}`;
  if (mb.checkpoint !== b.checkpoint) return `checkpoint ${mb.checkpoint} vs ${b.checkpoint}`;
  if (m.disks.length !== disks.length) return `${m.disks.length} disks vs ${disks.length}`;
  for (let i = 0; i < disks.length; i++) {
    const a = m.disks[i];
    const d = disks[i];
    if (a === undefined || d === undefined) return 'disk list';
    if (a.name !== d.name || a.size !== d.size) return `disk ${i}: ${a.name}/${a.size} vs ${d.name}/${d.size}`;
    const rows = count.get(d.id) as number;
    if (a.rows !== rows) return `disk ${d.name}: ${a.rows} rows vs ${rows}`;
  }
  return undefined;
}
