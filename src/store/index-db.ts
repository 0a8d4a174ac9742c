// The SQLite index (schema in schema.ts), opened through better-sqlite3. WAL mode lets
// readers run beside one writer; several processes write by taking turns on SQLite's write
// lock (busy timeout below), each holding it only for one short batch transaction.
// synchronous=FULL: a committed transaction is on disk, which `complete()` relies on.
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import Database from 'better-sqlite3';
import { PullbackError } from '../errors.js';
import { noSpaceFromSqlite } from './no-space.js';
import { SCHEMA_SQL, SCHEMA_VERSION } from './schema.js';
import type { BackupLevel, BackupRecord, BackupStatus, DiskStats } from './types.js';

type DB = Database.Database;
export type { DB };

/** How long a writer waits for another process's transaction before failing (ms). */
const BUSY_TIMEOUT_MS = 60_000;

export interface BackupRow {
  id: string;
  domain: string;
  time_ms: number;
  level: BackupLevel;
  parent_id: string | null;
  checkpoint: string;
  status: BackupStatus;
  domain_xml: string | null;
  checkpoint_xml: string | null;
  owner: string | null;
  finished_ms: number | null;
  failure: string | null;
}

export interface DiskRow {
  id: number;
  backup_id: string;
  name: string;
  size: number;
  bytes_read: number;
  bytes_stored: number;
  chunks_new: number;
  chunks_deduped: number;
  chunks_zero: number;
}

const BACKUP_COLUMNS = `b.id, d.name AS domain, b.time_ms, b.level, b.parent_id, b.checkpoint, b.status,
  b.domain_xml, b.checkpoint_xml, b.owner, b.finished_ms, b.failure`;

export function corruptDb(path: string, e: unknown): PullbackError {
  const why = e instanceof Error ? e.message : String(e);
  return new PullbackError(
    'REPO_CORRUPT',
    `index database ${path} is unreadable (${why}); rebuild it from the chunk storage with \`pullback repair --rebuild-index\``,
    { cause: e },
  );
}

const CORRUPT_CODES = new Set(['SQLITE_CORRUPT', 'SQLITE_NOTADB', 'SQLITE_CORRUPT_INDEX', 'SQLITE_CORRUPT_SEQUENCE', 'SQLITE_CORRUPT_VTAB']);

/**
 * An SQLite error as a PullbackError naming the file: a full filesystem as REPO_FULL, a
 * damaged database as REPO_CORRUPT; anything else unchanged.
 */
export function translateDbError(e: unknown, path: string): unknown {
  if (e instanceof PullbackError) return e;
  const full = noSpaceFromSqlite(e, path);
  if (full !== undefined) return full;
  const code = (e as { code?: unknown }).code;
  if (typeof code === 'string' && CORRUPT_CODES.has(code)) return corruptDb(path, e);
  return e;
}

/** Copies the index database and its WAL (if any) into a new temporary directory. */
function copyIndex(path: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'pullback-index-'));
  try {
    copyFileSync(path, join(dir, basename(path)));
    if (existsSync(`${path}-wal`)) copyFileSync(`${path}-wal`, join(dir, `${basename(path)}-wal`));
    return dir;
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw new PullbackError('REPO_IO', `cannot copy index database ${path} to ${dir} to read it: ${(e as Error).message}`, { cause: e });
  }
}

export class IndexDb {
  readonly db: DB;
  readonly path: string;
  readonly readOnly: boolean;

  /** The private copy's directory (see open), removed by close(). */
  private readonly copyDir: string | undefined;

  private constructor(db: DB, path: string, readOnly: boolean, copyDir?: string) {
    this.db = db;
    this.path = path;
    this.readOnly = readOnly;
    this.copyDir = copyDir;
  }

  /** Creates a new, empty index at `path` (which must not exist). */
  static create(path: string): IndexDb {
    const db = new Database(path, { timeout: BUSY_TIMEOUT_MS });
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = ON');
    db.transaction(() => {
      db.exec(SCHEMA_SQL);
      const put = db.prepare('INSERT INTO meta(key, value) VALUES (?, ?)');
      put.run('schema_version', SCHEMA_VERSION);
      put.run('gc_epoch', 1);
    })();
    return new IndexDb(db, path, false);
  }

  /**
   * Opens an existing index; any SQLite failure becomes REPO_CORRUPT naming the file. With
   * `privateCopy` (read-only only) it opens a copy of the database and its WAL in a temporary
   * directory: SQLite cannot open a WAL database read-only where it may not create the -shm
   * file (a read-only mount), and the copy also replays a WAL left there by a crash.
   */
  static open(path: string, readOnly: boolean, opts: { privateCopy?: boolean } = {}): IndexDb {
    let db: DB | undefined;
    const copyDir = readOnly && opts.privateCopy === true ? copyIndex(path) : undefined;
    try {
      const file = copyDir === undefined ? path : join(copyDir, basename(path));
      db = new Database(file, { readonly: readOnly && copyDir === undefined, fileMustExist: true, timeout: BUSY_TIMEOUT_MS });
      if (copyDir !== undefined) db.pragma('query_only = ON');
      if (!readOnly) db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.pragma('foreign_keys = ON');
      const row = db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").get() as
        | { value: number }
        | undefined;
      if (row === undefined) throw new Error('no schema_version in table meta');
      if (row.value > SCHEMA_VERSION) {
        throw new PullbackError(
          'REPO_VERSION',
          `index database ${path} has schema version ${row.value}, newer than this pullback supports (${SCHEMA_VERSION}): upgrade pullback`,
        );
      }
      // Touch every table once so a damaged schema fails here rather than mid-backup.
      for (const t of ['domains', 'backups', 'disks', 'chunks', 'chunk_map']) {
        db.prepare(`SELECT 1 FROM ${t} LIMIT 1`).get();
      }
      return new IndexDb(db, path, readOnly, copyDir);
    } catch (e) {
      db?.close();
      if (copyDir !== undefined) rmSync(copyDir, { recursive: true, force: true });
      if (e instanceof PullbackError) throw e;
      if ((e as { code?: string }).code === 'SQLITE_CANTOPEN') {
        throw new PullbackError(
          'REPO_IO',
          `cannot open index database ${path} (${(e as Error).message}): check that it exists and is readable`,
          { cause: e },
        );
      }
      throw noSpaceFromSqlite(e, path) ?? corruptDb(path, e);
    }
  }

  close(): void {
    if (this.db.open) this.db.close();
    if (this.copyDir !== undefined) rmSync(this.copyDir, { recursive: true, force: true });
  }

  gcEpoch(): number {
    return (this.db.prepare("SELECT value FROM meta WHERE key = 'gc_epoch'").get() as { value: number }).value;
  }

  domainId(name: string): number {
    this.db.prepare('INSERT OR IGNORE INTO domains(name) VALUES (?)').run(name);
    return (this.db.prepare('SELECT id FROM domains WHERE name = ?').get(name) as { id: number }).id;
  }

  backupRow(id: string): BackupRow | undefined {
    return this.db
      .prepare(`SELECT ${BACKUP_COLUMNS} FROM backups b JOIN domains d ON d.id = b.domain_id WHERE b.id = ?`)
      .get(id) as BackupRow | undefined;
  }

  backupRows(filter: { domain?: string; status?: BackupStatus }): BackupRow[] {
    const where: string[] = [];
    const args: string[] = [];
    if (filter.domain !== undefined) {
      where.push('d.name = ?');
      args.push(filter.domain);
    }
    if (filter.status !== undefined) {
      where.push('b.status = ?');
      args.push(filter.status);
    }
    const sql = `SELECT ${BACKUP_COLUMNS} FROM backups b JOIN domains d ON d.id = b.domain_id
      ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY b.time_ms, b.id`;
    return this.db.prepare(sql).all(...args) as BackupRow[];
  }

  diskRows(backupId: string): DiskRow[] {
    return this.db.prepare('SELECT * FROM disks WHERE backup_id = ? ORDER BY id').all(backupId) as DiskRow[];
  }

  diskRow(backupId: string, name: string): DiskRow | undefined {
    return this.db.prepare('SELECT * FROM disks WHERE backup_id = ? AND name = ?').get(backupId, name) as
      | DiskRow
      | undefined;
  }

  record(row: BackupRow): BackupRecord {
    const rec: BackupRecord = {
      id: row.id,
      domain: row.domain,
      time: new Date(row.time_ms),
      level: row.level,
      parentId: row.parent_id,
      checkpoint: row.checkpoint,
      status: row.status,
      disks: this.diskRows(row.id).map(diskStats),
    };
    if (row.domain_xml !== null) rec.domainXml = row.domain_xml;
    if (row.checkpoint_xml !== null) rec.checkpointXml = row.checkpoint_xml;
    if (row.failure !== null) rec.failure = row.failure;
    return rec;
  }

  setFailed(id: string, reason: string): void {
    this.db
      .prepare("UPDATE backups SET status = 'failed', failure = ?, finished_ms = ? WHERE id = ? AND status != 'failed'")
      .run(reason, Date.now(), id);
  }
}

export function diskStats(r: DiskRow): DiskStats {
  return {
    name: r.name,
    size: r.size,
    bytesRead: r.bytes_read,
    bytesStored: r.bytes_stored,
    chunksNew: r.chunks_new,
    chunksDeduped: r.chunks_deduped,
    chunksZero: r.chunks_zero,
  };
}
