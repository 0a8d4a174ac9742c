// A pullback repository: the public face of the store (layout in layout.ts). Knows nothing
// of libvirt or NBD: backups are named disks cut into fixed chunks; see docs/store.md.
import { accessSync, constants, existsSync, statSync, unlinkSync } from 'node:fs';
import { mkdir, readFile, readdir } from 'node:fs/promises';
import type { Decompressor } from 'zstd-napi';
import { PullbackError } from '../errors.js';
import { fsyncDir, writeFileAtomic } from './atomic-file.js';
import { BACKUP_ID, backupTime, newBackupId } from './backup-id.js';
import { Writer } from './backup-writer.js';
import { chainOf, resolveChain } from './chain.js';
import { runCheck, type CheckOptions } from './check.js';
import type { ChunkMap } from './chunk-map.js';
import { decodeChunk, zstdNapi } from './codec.js';
import { makeConfig, parseConfig, type RepoConfig } from './config.js';
import type { StoreContext } from './context.js';
import { runGc, type GcOptions } from './gc.js';
import { digestOf, fromHex, toHex } from './hash.js';
import { IndexDb, translateDbError } from './index-db.js';
import { chunkPath, layout, manifestPath, type Layout } from './layout.js';
import { acquireLock, reapStaleLocks, type LockKind, type RepoLock } from './lock.js';
import { noSpaceFromErrno, noSpaceFromSqlite } from './no-space.js';
import { ensureReserve, releaseReserveIfFull, RESERVE_BYTES } from './reserve.js';
import { MiB } from '../units.js';
import { currentOwner, describeOwner, liveness, parseOwner } from './owner.js';
import { rebuildIndex, type RebuildReport } from './repair.js';
import { finishInterruptedRemoval } from './pending-removal.js';
import type {
  ProgressEvent,
  BackupRecord,
  BackupStatus,
  BackupWriter,
  BeginBackupOptions,
  CheckReport,
  GcReport,
} from './types.js';
import { WorkerPool } from './worker-pool.js';

export interface OpenOptions {
  readOnly?: boolean;
  /** Where warnings go (stale locks reclaimed, dead backups failed). Default: stderr. */
  onWarning?: (message: string) => void;
  /** Worker threads for ingest and verification (default: one per core). */
  workers?: number;
  /** Chunks in flight per process (default: see worker-pool.ts defaultSlots). */
  slots?: number;
  /** How long to wait for a conflicting lock before REPO_LOCKED (default 0). */
  lockWaitMs?: number;
  /**
   * The caller frees space (prune, gc): on a full filesystem the repository's reserve
   * (reserve.ts) is deleted before the index is opened, so that the caller can run at all.
   */
  freeingSpace?: boolean;
  /**
   * The caller only reads (restore, check): when this process cannot write the repository
   * (a read-only mount, no permission), open it read-only instead of failing.
   */
  readOnlyIfUnwritable?: boolean;
}

export interface InitOptions extends Omit<OpenOptions, 'readOnly'> {
  chunkSize?: number;
  compressionLevel?: number;
}

function defaultWarn(message: string): void {
  process.stderr.write(`pullback: warning: ${message}\n`);
}

/** Why this process cannot create files in the repository (errno code), or undefined. */
function unwritableReason(l: Layout): string | undefined {
  for (const p of [l.root, l.locks]) {
    try {
      accessSync(p, constants.W_OK);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? 'EACCES';
      if (code !== 'ENOENT') return code === 'EROFS' ? 'EROFS: read-only filesystem' : code;
    }
  }
  return undefined;
}

function ioError(what: string, path: string, e: unknown, root: string): PullbackError {
  const full = noSpaceFromErrno(e, root, `${what} ${path} failed`);
  if (full !== undefined) return full;
  const err = e as NodeJS.ErrnoException;
  const hint =
    err.code === 'EACCES' || err.code === 'EPERM' || err.code === 'EROFS'
      ? ': check permissions, or open the repository read-only'
      : '';
  return new PullbackError('REPO_IO', `${what} ${path} failed (${err.code ?? err.message})${hint}`, { cause: e });
}

export class Repository {
  readonly dir: string;
  readonly config: RepoConfig;
  readonly readOnly: boolean;
  private readonly layout: Layout;
  private readonly idb: IndexDb;
  private readonly warn: (m: string) => void;
  private readonly workers: number | undefined;
  private readonly slots: number | undefined;
  private readonly lockWaitMs: number;
  private poolInstance: WorkerPool | undefined;
  private readonly writers = new Set<Writer>();
  private decompressor: Decompressor | undefined;
  private closed = false;
  /** Why this process cannot write the repository (e.g. "EROFS"), if it cannot. */
  private readonly unwritable: string | undefined;
  private locklessWarned = false;

  private constructor(dir: string, config: RepoConfig, idb: IndexDb, opts: OpenOptions, unwritable: string | undefined) {
    this.dir = dir;
    this.config = config;
    this.layout = layout(dir);
    this.idb = idb;
    this.readOnly = opts.readOnly === true;
    this.unwritable = unwritable;
    this.warn = opts.onWarning ?? defaultWarn;
    this.workers = opts.workers;
    this.slots = opts.slots;
    this.lockWaitMs = opts.lockWaitMs ?? 0;
  }

  /** Creates a repository in `dir` (created if missing; must be empty if it exists). */
  static async init(dir: string, opts: InitOptions = {}): Promise<Repository> {
    const config = makeConfig(opts);
    const l = layout(dir);
    let st;
    try {
      st = statSync(dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw ioError('inspecting', dir, e, dir);
    }
    if (st !== undefined) {
      if (!st.isDirectory()) throw new PullbackError('REPO_EXISTS', `cannot create a repository at ${dir}: it is a file, not a directory`);
      const entries = await readdir(dir).catch((e: unknown) => {
        throw ioError('listing', dir, e, dir);
      });
      if (entries.includes('config.json')) throw new PullbackError('REPO_EXISTS', `${dir} already holds a pullback repository`);
      if (entries.length > 0) {
        throw new PullbackError('REPO_EXISTS', `cannot create a repository in ${dir}: the directory is not empty`);
      }
    }
    try {
      await mkdir(dir, { recursive: true });
      for (const sub of [l.chunks, l.manifests, l.locks, l.tmp]) await mkdir(sub);
      IndexDb.create(l.db).close();
      // config.json last: its presence is what makes the directory a repository.
      await writeFileAtomic(l.tmp, l.config, [Buffer.from(`${JSON.stringify(config, null, 2)}\n`)]);
      await fsyncDir(dir);
    } catch (e) {
      if (e instanceof PullbackError) throw e;
      throw noSpaceFromSqlite(e, l.db) ?? ioError('creating repository in', dir, e, dir);
    }
    return Repository.open(dir, opts);
  }

  static async open(dir: string, opts: OpenOptions = {}): Promise<Repository> {
    const unwritable = unwritableReason(layout(dir));
    if (opts.readOnly !== true && opts.readOnlyIfUnwritable === true && unwritable !== undefined) {
      opts = { ...opts, readOnly: true };
    }
    const { config, l } = await Repository.inspect(dir, opts.readOnly === true);
    if (opts.readOnly !== true && opts.freeingSpace === true && releaseReserveIfFull(l)) {
      (opts.onWarning ?? defaultWarn)(
        `the filesystem of repository ${dir} is full: released the ${RESERVE_BYTES / MiB} MiB kept in reserve for this (${l.reserve}); it is set aside again once there is room`,
      );
    }
    if (!existsSync(l.db)) {
      throw new PullbackError(
        'REPO_CORRUPT',
        `repository ${dir} has no index database (${l.db}); rebuild it with \`pullback repair --repo ${dir} --rebuild-index\``,
      );
    }
    // SQLite cannot open a WAL database where it may not create the -shm file: read a copy.
    const idb = IndexDb.open(l.db, opts.readOnly === true, { privateCopy: opts.readOnly === true && unwritable !== undefined });
    if (!idb.readOnly) idb.db.pragma('synchronous = NORMAL');
    const repo = new Repository(dir, config, idb, opts, unwritable);
    try {
      if (!repo.readOnly) repo.reapDeadBackups();
    } catch (e) {
      idb.close();
      throw translateDbError(e, idb.path);
    }
    // Prune: finish a backup removal that a crash interrupted (pending-removal.ts).
    if (!repo.readOnly) await finishInterruptedRemoval(repo.context);
    if (!repo.readOnly && opts.freeingSpace !== true) await ensureReserve(l);
    return repo;
  }

  /**
   * Rebuilds the index database from chunk files and manifests alone (the database may be
   * missing or corrupt). Takes the exclusive lock.
   */
  static async rebuildIndex(
    dir: string,
    opts: Omit<OpenOptions, 'readOnly'> & { signal?: AbortSignal; onProgress?: (e: ProgressEvent) => void } = {},
  ): Promise<RebuildReport> {
    const { config, l } = await Repository.inspect(dir, false);
    const lock = await acquireLock(l.locks, 'exclusive', 'repair --rebuild-index', {
      waitMs: opts.lockWaitMs ?? 0,
      onWarning: opts.onWarning ?? defaultWarn,
      ...(opts.signal !== undefined ? { signal: opts.signal } : {}),
    });
    try {
      return await rebuildIndex(dir, {
        chunkSize: config.chunkSize,
        ...(opts.signal !== undefined ? { signal: opts.signal } : {}),
        ...(opts.onProgress !== undefined ? { onProgress: opts.onProgress } : {}),
      });
    } finally {
      await lock.release();
    }
  }

  /** Validates the directory and config without touching the index. */
  private static async inspect(dir: string, readOnly: boolean): Promise<{ config: RepoConfig; l: Layout }> {
    const l = layout(dir);
    let st;
    try {
      st = statSync(dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new PullbackError('REPO_NOT_FOUND', `no repository at ${dir}: create one with \`pullback init --repo ${dir}\``);
      }
      throw ioError('opening repository', dir, e, dir);
    }
    if (!st.isDirectory()) {
      throw new PullbackError('REPO_INVALID', `${dir} is a file, not a repository directory`);
    }
    let text: string;
    try {
      text = await readFile(l.config, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new PullbackError(
          'REPO_INVALID',
          `${dir} is not a pullback repository (no config.json): create one with \`pullback init --repo DIR\``,
        );
      }
      throw ioError('reading', l.config, e, dir);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new PullbackError('REPO_INVALID', `${l.config} is not valid JSON (${(e as Error).message})`);
    }
    const config = parseConfig(json, l.config);
    if (!readOnly) {
      for (const p of [dir, l.chunks, l.manifests, l.locks, l.tmp]) {
        try {
          accessSync(p, constants.W_OK);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
            throw new PullbackError('REPO_INVALID', `repository ${dir} is damaged: ${p} is missing`);
          }
          throw new PullbackError(
            'REPO_IO',
            `repository ${dir} is not writable (${p}: ${(e as NodeJS.ErrnoException).code}): check its permissions and mount (list, check and restore can read it as it is)`,
            { cause: e },
          );
        }
      }
    }
    return { config, l };
  }

  /** @internal Shared state for writer, check, gc and repair. */
  get context(): StoreContext {
    return {
      dir: this.dir,
      layout: this.layout,
      config: this.config,
      idb: this.idb,
      warn: this.warn,
      pool: () => this.pool(),
    };
  }

  private pool(): WorkerPool {
    this.assertOpen();
    // A pool whose worker died stays broken for the writers that used it; new users get a new one.
    if (this.poolInstance?.failure !== undefined) {
      void this.poolInstance.close();
      this.poolInstance = undefined;
    }
    this.poolInstance ??= new WorkerPool({
      chunksDir: this.layout.chunks,
      tmpDir: this.layout.tmp,
      level: this.config.compression.level,
      chunkSize: this.config.chunkSize,
      ...(this.workers !== undefined ? { workers: this.workers } : {}),
      ...(this.slots !== undefined ? { slots: this.slots } : {}),
    });
    return this.poolInstance;
  }

  /** Runs `f`, turning SQLite's "database is damaged" errors into REPO_CORRUPT with the fix. */
  private guard<T>(f: () => T): T {
    try {
      return f();
    } catch (e) {
      throw translateDbError(e, this.idb.path);
    }
  }

  private async guardAsync<T>(f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (e) {
      throw translateDbError(e, this.idb.path);
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new PullbackError('INTERNAL', `repository ${this.dir} used after close()`);
  }

  private assertWritable(what: string): void {
    this.assertOpen();
    if (this.readOnly) throw new PullbackError('REPO_IO', `cannot ${what}: repository ${this.dir} was opened read-only`);
  }

  /**
   * @internal A lock file in locks/. In a repository this process cannot write (opened
   * read-only) no lock can be taken, so none is; the first such call warns what that means.
   */
  lock(kind: LockKind, purpose: string, signal?: AbortSignal): Promise<RepoLock> {
    if (this.readOnly && this.unwritable !== undefined) {
      if (!this.locklessWarned) {
        this.locklessWarned = true;
        this.warn(
          `repository ${this.dir} cannot be written here (${this.unwritable}): reading it without a lock, so no prune or gc elsewhere must change it until this ${purpose} ends`,
        );
      }
      return Promise.resolve({ kind, file: '', release: () => Promise.resolve() });
    }
    return acquireLock(this.layout.locks, kind, purpose, {
      waitMs: this.lockWaitMs,
      onWarning: this.warn,
      ...(signal !== undefined ? { signal } : {}),
    });
  }

  /**
   * Backups left 'running' by a process that no longer exists can never complete: mark them
   * failed (and say so) so their rows stop pinning chunks and nobody resolves them.
   */
  reapDeadBackups(): string[] {
    const reaped: string[] = [];
    for (const row of this.idb.backupRows({ status: 'running' })) {
      const owner = parseOwner(row.owner);
      if (owner === undefined || liveness(owner) !== 'dead') continue;
      const reason = `its process (${describeOwner(owner)}) died before the backup completed`;
      this.idb.setFailed(row.id, reason);
      try {
        unlinkSync(manifestPath(this.layout.manifests, row.id));
      } catch {
        // usually there is none
      }
      this.warn(`backup ${row.id} of domain ${row.domain} was left running: ${reason}; marked failed`);
      reaped.push(row.id);
    }
    return reaped;
  }

  async beginBackup(opts: BeginBackupOptions): Promise<BackupWriter> {
    this.assertWritable('begin a backup');
    validateBegin(opts);
    if (opts.level === 'incremental') {
      const parent = this.guard(() => this.idb.backupRow(opts.parentId as string));
      if (parent === undefined) {
        throw new PullbackError('BACKUP_NOT_FOUND', `parent backup ${opts.parentId} of the incremental for domain ${opts.domain} does not exist`);
      }
      if (parent.domain !== opts.domain) {
        throw new PullbackError('STORE_INVALID_ARGUMENT', `parent backup ${parent.id} belongs to domain ${parent.domain}, not ${opts.domain}`);
      }
      if (parent.status !== 'complete') {
        throw new PullbackError('STORE_INVALID_ARGUMENT', `parent backup ${parent.id} is ${parent.status}; an incremental needs a complete parent`);
      }
    }
    const lock = await this.lock('shared', `backup of domain ${opts.domain}`);
    try {
      const db = this.idb.db;
      const owner = JSON.stringify(currentOwner());
      const { id, disks } = db
        .transaction(() => {
          // Inside the write transaction, so two backups of one domain cannot both read the same newest.
          const time = opts.time ?? this.newBackupTime(opts.domain);
          const domainId = this.idb.domainId(opts.domain);
          let bid = opts.id ?? newBackupId(time);
          if (opts.id !== undefined && this.idb.backupRow(bid) !== undefined) {
            throw new PullbackError('STORE_INVALID_ARGUMENT', `cannot begin backup: id ${bid} is already used`);
          }
          while (this.idb.backupRow(bid) !== undefined) bid = newBackupId(time);
          db.prepare(
            `INSERT INTO backups(id, domain_id, time_ms, level, parent_id, checkpoint, status, domain_xml, checkpoint_xml, owner)
             VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, ?)`,
          ).run(bid, domainId, time.getTime(), opts.level, opts.parentId, opts.checkpoint, opts.domainXml ?? null, opts.checkpointXml ?? null, owner);
          const ins = db.prepare('INSERT INTO disks(backup_id, name, size) VALUES (?, ?, ?)');
          const ds = opts.disks.map((d) => ({ id: Number(ins.run(bid, d.name, d.size).lastInsertRowid), name: d.name, size: d.size }));
          return { id: bid, disks: ds };
        })
        .immediate();
      const writer: Writer = new Writer(this.context, id, disks, lock, () => this.writers.delete(writer), opts.onProgress);
      this.writers.add(writer);
      return writer;
    } catch (e) {
      await lock.release();
      throw translateDbError(e, this.idb.path);
    }
  }

  /** Backups, oldest first. */
  listBackups(opts: { domain?: string; status?: BackupStatus } = {}): BackupRecord[] {
    this.assertOpen();
    return this.guard(() => this.idb.backupRows(opts).map((r) => this.idb.record(r)));
  }

  getBackup(id: string): BackupRecord | undefined {
    this.assertOpen();
    return this.guard(() => {
      const row = this.idb.backupRow(id);
      return row === undefined ? undefined : this.idb.record(row);
    });
  }

  /**
   * The time to record for a new backup of `domain` (see backup-id.ts): the clock's, or just
   * after the domain's newest backup when the clock reads earlier, with a warning.
   */
  newBackupTime(domain: string, now: Date = new Date()): Date {
    this.assertOpen();
    // Rows only: the newest one's id and time are all it needs (no disk rows per backup).
    const rows = this.guard(() => this.idb.backupRows({ domain }));
    const newest = rows[rows.length - 1];
    const { time, behind } = backupTime(now, newest === undefined ? undefined : { id: newest.id, time: new Date(newest.time_ms) });
    if (behind !== undefined) {
      this.warn(
        `the clock reads ${now.toISOString()}, earlier than backup ${behind.id} of domain ${domain} (${behind.time.toISOString()}); ` +
          `this backup is recorded at ${time.toISOString()} so that it ranks after it. Check the host's clock (NTP)`,
      );
    }
    return time;
  }

  latestComplete(domain: string): BackupRecord | undefined {
    const all = this.listBackups({ domain, status: 'complete' });
    return all[all.length - 1];
  }

  /** The chain ending at `id`: its full backup first. */
  chain(id: string): BackupRecord[] {
    this.assertOpen();
    return this.guard(() => chainOf(this.idb, id).map((r) => this.idb.record(r)));
  }

  /** The complete chunk map of `disk` at backup `backupId` (which must be complete). */
  resolveChunkMap(backupId: string, disk: string): ChunkMap {
    this.assertOpen();
    return this.guard(() => this.resolve(backupId, disk));
  }

  private resolve(backupId: string, disk: string): ChunkMap {
    const chain = chainOf(this.idb, backupId);
    for (const b of chain) {
      if (b.status !== 'complete') {
        throw new PullbackError(
          'BACKUP_NOT_FOUND',
          b.id === backupId
            ? `backup ${backupId} is ${b.status}, not complete: it cannot be restored`
            : `backup ${backupId} depends on backup ${b.id}, which is ${b.status}: the chain is broken`,
        );
      }
    }
    return resolveChain(this.idb, chain, disk, this.config.chunkSize);
  }

  /** A chunk's plaintext. Verifies it against its digest unless `verify: false`. */
  async readChunk(digest: Buffer | string, opts: { verify?: boolean } = {}): Promise<Buffer> {
    this.assertOpen();
    const hex = typeof digest === 'string' ? digest : toHex(digest);
    const path = chunkPath(this.layout.chunks, hex);
    let file: Buffer;
    try {
      file = await readFile(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new PullbackError('CHUNK_MISSING', `chunk ${hex} is missing from repository ${this.dir} (${path}): run \`pullback check\` to see which backups it affects`);
      }
      throw ioError('reading chunk', path, e, this.dir);
    }
    this.decompressor ??= new (zstdNapi().Decompressor)();
    const plain = decodeChunk(file, this.decompressor);
    if (typeof plain === 'string') {
      throw new PullbackError('CHUNK_CORRUPT', `chunk file ${path} is corrupt: ${plain}; run \`pullback check --read-data\``);
    }
    if (opts.verify !== false && !digestOf(plain).equals(fromHex(hex))) {
      throw new PullbackError('CHUNK_CORRUPT', `chunk file ${path} is corrupt: its content does not hash to ${hex}; run \`pullback check --read-data\``);
    }
    return plain;
  }

  markFailed(id: string, reason: string): void {
    this.assertWritable('mark a backup failed');
    this.guard(() => {
      if (this.idb.backupRow(id) === undefined) throw new PullbackError('BACKUP_NOT_FOUND', `no backup ${id} in repository ${this.dir}`);
      this.idb.setFailed(id, reason);
    });
    try {
      unlinkSync(manifestPath(this.layout.manifests, id));
    } catch {
      // a backup that never completed has none
    }
  }

  async check(opts: CheckOptions = {}): Promise<CheckReport> {
    this.assertOpen();
    const lock = await this.lock('shared', 'check', opts.signal);
    try {
      return await this.guardAsync(() => runCheck(this.context, opts));
    } finally {
      await lock.release();
    }
  }

  async gc(opts: GcOptions = {}): Promise<GcReport> {
    this.assertWritable('collect garbage');
    const lock = await this.lock('gc', opts.dryRun === true ? 'gc --dry-run' : 'gc', opts.signal);
    try {
      const reaped = this.guard(() => this.reapDeadBackups());
      await reapStaleLocks(this.layout.locks, this.warn);
      const report = await this.guardAsync(() => runGc(this.context, opts));
      if (reaped.length > 0) report.warnings.unshift(`marked ${reaped.length} dead running backup(s) failed`);
      return report;
    } finally {
      await lock.release();
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    for (const w of [...this.writers]) await w.fail('repository closed while the backup was running');
    this.closed = true;
    await this.poolInstance?.close();
    this.idb.close();
  }
}

function validateBegin(o: BeginBackupOptions): void {
  const bad = (m: string): PullbackError => new PullbackError('STORE_INVALID_ARGUMENT', `cannot begin backup: ${m}`);
  if (typeof o.domain !== 'string' || o.domain === '') throw bad('domain name is empty');
  if (o.id !== undefined && !BACKUP_ID.test(o.id)) throw bad(`id ${o.id} is not a backup id (use newBackupId())`);
  if (o.level !== 'full' && o.level !== 'incremental') throw bad(`level must be full or incremental, not ${String(o.level)}`);
  if (o.level === 'full' && o.parentId !== null) throw bad('a full backup has no parent');
  if (o.level === 'incremental' && (typeof o.parentId !== 'string' || o.parentId === '')) throw bad('an incremental backup needs parentId');
  if (!Array.isArray(o.disks) || o.disks.length === 0) throw bad('no disks given');
  const names = new Set<string>();
  for (const d of o.disks) {
    if (typeof d.name !== 'string' || d.name === '') throw bad('a disk has an empty name');
    if (names.has(d.name)) throw bad(`disk ${d.name} is listed twice`);
    names.add(d.name);
    if (!Number.isSafeInteger(d.size) || d.size <= 0) throw bad(`disk ${d.name} has invalid size ${d.size}`);
  }
}
