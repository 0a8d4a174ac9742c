// The ingest side of one running backup. Life of a data chunk:
//   ingest()  -> wait for a free pool slot (backpressure), copy the bytes in
//   worker    -> hash; if the chunk file is absent, compress and write it: tmp file, fsync,
//                rename, directory fsync (atomic-file.ts)
//   flush()   -> in one IMMEDIATE transaction per batch: check the file still exists, upsert
//                its `chunks` row stamped with the current gc epoch, insert the chunk_map row
//   commit    -> release the slot
// Rows are inserted only after their file is durable, so no kill -9 can leave a row pointing
// at a missing or half-written file. The existence check inside the write transaction pairs
// with gc (gc.ts): gc deletes a file only inside its own write transaction and only if the
// row's epoch is older than its mark, so a file seen here stays until the row commits. If gc
// won a race and the file is gone, the chunk is rewritten from the slot it still occupies.
// All-zero chunks take no slot and become zero markers (chunk id 0).
import { existsSync } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { PullbackError } from '../errors.js';
import type { StoreContext } from './context.js';
import { fromHex, isAllZero } from './hash.js';
import { translateDbError } from './index-db.js';
import { chunkPath, manifestPath } from './layout.js';
import type { RepoLock } from './lock.js';
import { manifestMeta, writeManifest } from './manifest.js';
import { noSpaceFromErrno } from './no-space.js';
import { abortError, type WorkerPool } from './worker-pool.js';
import type { BackupRecord, BackupWriter, DiskStats, IngestProgress, ReservedChunk } from './types.js';

interface DiskState {
  id: number;
  name: string;
  size: number;
  count: number;
  /** One bit per chunk index already handed to ingest()/zero(). */
  seen: Uint8Array;
  stats: DiskStats;
}

interface Item {
  disk: DiskState;
  index: number;
  /** -1 for zero markers. */
  slot: number;
  length: number;
  /** null until hashed; stays null for zero markers. */
  hex: string | null;
  existed: boolean;
  storedSize: number;
  attempts: number;
}

/** Rewrites of a chunk whose file vanished under us before giving up. */
const MAX_ATTEMPTS = 4;

interface Waiter {
  stopOnError: boolean;
  resolve(): void;
  reject(e: Error): void;
}

type State = 'running' | 'completing' | 'complete' | 'failed';

export class Writer implements BackupWriter {
  readonly id: string;
  private readonly ctx: StoreContext;
  /**
   * Captured at the first data chunk, then kept: slots belong to this pool even if the
   * repository starts a new one. A backup with nothing to store (no change, or only zeros)
   * never starts the worker threads, which cost a no-change incremental a sixth of its CPU.
   */
  private poolRef: WorkerPool | undefined;
  private readonly disks = new Map<string, DiskState>();
  private readonly lock: RepoLock;
  private readonly onDone: () => void;
  private done: Item[] = [];
  private inFlight = 0;
  private committed = 0;
  private readonly onProgress: ((p: IngestProgress) => void) | undefined;
  private flushTimer: NodeJS.Immediate | NodeJS.Timeout | undefined;
  private firstError: Error | undefined;
  private waiters: Waiter[] = [];
  private state: State = 'running';
  private readonly upsertChunk;
  private readonly insertMap;
  private readonly updateDisk;

  constructor(
    ctx: StoreContext,
    id: string,
    disks: Array<{ id: number; name: string; size: number }>,
    lock: RepoLock,
    onDone: () => void,
    onProgress?: (p: IngestProgress) => void,
  ) {
    this.ctx = ctx;
    this.onProgress = onProgress;
    this.id = id;
    this.lock = lock;
    this.onDone = onDone;
    const cs = ctx.config.chunkSize;
    for (const d of disks) {
      const count = Math.ceil(d.size / cs);
      this.disks.set(d.name, {
        id: d.id,
        name: d.name,
        size: d.size,
        count,
        seen: new Uint8Array(Math.ceil(count / 8)),
        stats: { name: d.name, size: d.size, bytesRead: 0, bytesStored: 0, chunksNew: 0, chunksDeduped: 0, chunksZero: 0 },
      });
    }
    const db = ctx.idb.db;
    this.upsertChunk = db
      .prepare(
        `INSERT INTO chunks(digest, size, stored_size, touched)
         VALUES (?, ?, ?, (SELECT value FROM meta WHERE key = 'gc_epoch'))
         ON CONFLICT(digest) DO UPDATE SET touched = excluded.touched,
           size = coalesce(chunks.size, excluded.size),
           stored_size = coalesce(excluded.stored_size, chunks.stored_size)
         RETURNING id`,
      )
      .pluck(true);
    this.insertMap = db.prepare('INSERT OR REPLACE INTO chunk_map(disk_id, chunk_index, chunk_id) VALUES (?, ?, ?)');
    this.updateDisk = db.prepare(
      `UPDATE disks SET bytes_read = ?, bytes_stored = ?, chunks_new = ?, chunks_deduped = ?, chunks_zero = ? WHERE id = ?`,
    );
  }

  private get pool(): WorkerPool {
    this.poolRef ??= this.ctx.pool();
    return this.poolRef;
  }

  async ingest(disk: string, chunkIndex: number, data: Buffer, opts: { signal?: AbortSignal } = {}): Promise<void> {
    this.assertRunning();
    const d = this.diskState(disk);
    this.claim(d, chunkIndex, data.length);
    d.stats.bytesRead += data.length;
    if (isAllZero(data)) {
      this.queueZero(d, chunkIndex);
      return;
    }
    let slot: number;
    try {
      slot = await this.pool.acquireSlot(opts.signal);
    } catch (e) {
      this.unclaim(d, chunkIndex);
      d.stats.bytesRead -= data.length;
      throw e;
    }
    if (this.firstError !== undefined || this.state !== 'running') {
      this.pool.releaseSlot(slot);
      this.unclaim(d, chunkIndex);
      d.stats.bytesRead -= data.length;
      this.assertRunning();
    }
    data.copy(this.pool.slotBuffer(slot, data.length));
    this.send(d, chunkIndex, slot, data.length);
  }

  async reserve(opts: { signal?: AbortSignal } = {}): Promise<ReservedChunk> {
    this.assertRunning();
    const pool = this.pool;
    const slot = await pool.acquireSlot(opts.signal);
    let held = true;
    return {
      buffer: pool.slotBuffer(slot, pool.slotSize),
      ingest: (disk, chunkIndex, length) => {
        if (!held) throw new PullbackError('INTERNAL', 'a reserved chunk buffer was handed over twice');
        held = false;
        this.ingestSlot(pool, slot, disk, chunkIndex, length);
      },
      release: () => {
        if (held) pool.releaseSlot(slot);
        held = false;
      },
    };
  }

  /** ingest() for data already in `slot`; the slot is the writer's from here on. */
  private ingestSlot(pool: WorkerPool, slot: number, disk: string, chunkIndex: number, length: number): void {
    let d: DiskState;
    try {
      this.assertRunning();
      d = this.diskState(disk);
      this.claim(d, chunkIndex, length);
    } catch (e) {
      pool.releaseSlot(slot);
      throw e;
    }
    d.stats.bytesRead += length;
    if (isAllZero(pool.slotBuffer(slot, length))) {
      pool.releaseSlot(slot);
      this.queueZero(d, chunkIndex);
      return;
    }
    this.send(d, chunkIndex, slot, length);
  }

  /** Hands a new chunk in `slot` to the workers. */
  private send(d: DiskState, index: number, slot: number, length: number): void {
    this.inFlight++;
    this.dispatch({ disk: d, index, slot, length, hex: null, existed: false, storedSize: 0, attempts: 0 }, false);
  }

  prepare(): void {
    if (this.state === 'running' && this.firstError === undefined) void this.pool;
  }

  zero(disk: string, chunkIndex: number): void {
    this.assertRunning();
    const d = this.diskState(disk);
    this.claim(d, chunkIndex, Math.min(this.ctx.config.chunkSize, d.size - chunkIndex * this.ctx.config.chunkSize));
    this.queueZero(d, chunkIndex);
  }

  stats(disk: string): DiskStats {
    return { ...this.diskState(disk).stats };
  }

  progress(): IngestProgress {
    let bytesRead = 0;
    let bytesStored = 0;
    for (const d of this.disks.values()) {
      bytesRead += d.stats.bytesRead;
      bytesStored += d.stats.bytesStored;
    }
    return { backupId: this.id, chunksCommitted: this.committed, chunksInFlight: this.inFlight, bytesRead, bytesStored };
  }

  async complete(opts: { signal?: AbortSignal; checkpointXml?: string } = {}): Promise<BackupRecord> {
    this.assertRunning();
    this.state = 'completing';
    try {
      await this.drained(opts.signal, true);
      if (this.firstError !== undefined) throw this.firstError;
      const { idb, layout, config } = this.ctx;
      // The checkpoint XML is known only once the job started (libvirt fills in its parent
      // and creation time), so it may arrive here rather than at beginBackup.
      if (opts.checkpointXml !== undefined) {
        idb.db.prepare('UPDATE backups SET checkpoint_xml = ? WHERE id = ?').run(opts.checkpointXml, this.id);
      }
      const row = idb.backupRow(this.id);
      if (row === undefined) throw new PullbackError('REPO_CORRUPT', `backup ${this.id} vanished from the index`);
      const meta = manifestMeta(row, config.chunkSize);
      const disks = [...this.disks.values()].map((d) => ({ id: d.id, stats: { ...d.stats } }));
      await writeManifest(idb.db, layout.tmp, manifestPath(layout.manifests, this.id), meta, disks);
      opts.signal?.throwIfAborted();
      // FULL for this one commit: it also makes every earlier (NORMAL) batch of ours durable.
      idb.db.pragma('synchronous = FULL');
      let changed: number;
      try {
        changed = idb.db
          .prepare("UPDATE backups SET status = 'complete', finished_ms = ? WHERE id = ? AND status = 'running'")
          .run(Date.now(), this.id).changes;
      } finally {
        idb.db.pragma('synchronous = NORMAL');
      }
      if (changed !== 1) {
        throw new PullbackError('BACKUP_FAILED', `backup ${this.id} was marked failed by another process before it completed`);
      }
      this.state = 'complete';
      await this.finish();
      return idb.record(idb.backupRow(this.id) as NonNullable<typeof row>);
    } catch (e) {
      if (this.state === 'completing') this.state = 'running';
      throw this.storeError(e, `completing backup ${this.id} failed`);
    }
  }

  /** A raw errno or SQLite error from our own writes as a PullbackError where one fits. */
  private storeError(e: unknown, what: string): unknown {
    if (e instanceof PullbackError) return e;
    return noSpaceFromErrno(e, this.ctx.layout.root, what) ?? translateDbError(e, this.ctx.idb.path);
  }

  async fail(reason: string): Promise<void> {
    if (this.state === 'complete' || this.state === 'failed') return;
    this.state = 'failed';
    this.firstError ??= new PullbackError('BACKUP_FAILED', `backup ${this.id} failed: ${reason}`);
    // Let in-flight jobs settle so no worker writes on our behalf after we return.
    await this.drained(undefined, false).catch(() => undefined);
    // On a full filesystem even this update can fail: the lock is released all the same, and
    // the next command finds the record running with its owner gone and marks it failed.
    let unmarked: unknown;
    try {
      this.ctx.idb.setFailed(this.id, reason);
    } catch (e) {
      unmarked = e;
    }
    await unlink(manifestPath(this.ctx.layout.manifests, this.id)).catch(() => undefined);
    await this.finish();
    if (unmarked !== undefined) throw this.storeError(unmarked, `marking backup ${this.id} failed did not succeed`);
  }

  private async finish(): Promise<void> {
    if (this.flushTimer !== undefined) clearTimeout(this.flushTimer as NodeJS.Timeout);
    await this.lock.release();
    this.onDone();
  }

  private assertRunning(): void {
    if (this.firstError !== undefined) throw this.firstError;
    if (this.state !== 'running') {
      throw new PullbackError('BACKUP_FAILED', `backup ${this.id} is ${this.state}: no more chunks can be added`);
    }
  }

  private diskState(name: string): DiskState {
    const d = this.disks.get(name);
    if (d === undefined) {
      throw new PullbackError(
        'STORE_INVALID_ARGUMENT',
        `backup ${this.id} has no disk "${name}" (it has: ${[...this.disks.keys()].join(', ')})`,
      );
    }
    return d;
  }

  private claim(d: DiskState, index: number, length: number): void {
    const cs = this.ctx.config.chunkSize;
    if (!Number.isInteger(index) || index < 0 || index >= d.count) {
      throw new PullbackError(
        'STORE_INVALID_ARGUMENT',
        `chunk index ${index} is outside disk ${d.name} of backup ${this.id} (${d.count} chunks of ${cs} bytes)`,
      );
    }
    const expected = Math.min(cs, d.size - index * cs);
    if (length !== expected) {
      throw new PullbackError(
        'STORE_INVALID_ARGUMENT',
        `chunk ${index} of disk ${d.name} must be ${expected} bytes (offset ${index * cs}), got ${length}`,
      );
    }
    const byte = index >> 3;
    const bit = 1 << (index & 7);
    if (((d.seen[byte] ?? 0) & bit) !== 0) {
      throw new PullbackError('STORE_INVALID_ARGUMENT', `chunk ${index} of disk ${d.name} was already stored in backup ${this.id}`);
    }
    d.seen[byte] = (d.seen[byte] ?? 0) | bit;
  }

  private unclaim(d: DiskState, index: number): void {
    d.seen[index >> 3] = (d.seen[index >> 3] ?? 0) & ~(1 << (index & 7));
  }

  private queueZero(d: DiskState, index: number): void {
    this.inFlight++;
    this.done.push({ disk: d, index, slot: -1, length: 0, hex: null, existed: false, storedSize: 0, attempts: 0 });
    this.scheduleFlush();
  }

  private dispatch(item: Item, force: boolean): void {
    const pool = this.pool;
    pool.store(item.slot, item.length, force).then(
      (r) => {
        item.hex = r.hex;
        item.existed = r.existed;
        item.storedSize = r.storedSize;
        this.done.push(item);
        this.scheduleFlush();
      },
      (e: unknown) => {
        pool.releaseSlot(item.slot);
        this.inFlight--;
        this.setError(e, item);
      },
    );
  }

  private setError(e: unknown, item?: Item): void {
    if (this.firstError === undefined) {
      const where = item === undefined ? '' : ` (disk ${item.disk.name}, chunk ${item.index}, offset ${item.index * this.ctx.config.chunkSize})`;
      const msg = e instanceof Error ? e.message : String(e);
      this.firstError = e instanceof PullbackError && where === '' ? e : new PullbackError(
        e instanceof PullbackError ? e.code : 'REPO_IO',
        `backup ${this.id}${where}: ${msg}`,
        { cause: e },
      );
    }
    this.notifyIdle();
  }

  /** Batches commits: at once when a quarter of the slots wait, else after a few ms. */
  private scheduleFlush(): void {
    const slots = this.poolRef?.slotCount ?? 0;
    const urgent = this.done.length >= Math.max(4, slots >> 2) || this.waiters.length > 0;
    if (this.flushTimer !== undefined) {
      if (!urgent) return;
      clearTimeout(this.flushTimer as NodeJS.Timeout);
      clearImmediate(this.flushTimer as NodeJS.Immediate);
    }
    this.flushTimer = urgent ? setImmediate(() => this.flush()) : setTimeout(() => this.flush(), 5);
  }

  private flush(): void {
    this.flushTimer = undefined;
    const items = this.done;
    if (items.length === 0) return;
    this.done = [];
    const retry: Item[] = [];
    const committed: Item[] = [];
    const chunksDir = this.ctx.layout.chunks;
    try {
      this.ctx.idb.db
        .transaction(() => {
          for (const it of items) {
            if (it.hex === null) {
              this.insertMap.run(it.disk.id, it.index, 0);
            } else if (!existsSync(chunkPath(chunksDir, it.hex))) {
              retry.push(it);
              continue;
            } else {
              const id = this.upsertChunk.get(fromHex(it.hex), it.length, it.existed ? null : it.storedSize) as number;
              this.insertMap.run(it.disk.id, it.index, id);
            }
            committed.push(it);
          }
          const touched = new Set(committed.map((it) => it.disk));
          for (const d of touched) {
            const s = { ...d.stats };
            for (const it of committed) {
              if (it.disk !== d) continue;
              if (it.hex === null) s.chunksZero++;
              else if (it.existed) s.chunksDeduped++;
              else {
                s.chunksNew++;
                s.bytesStored += it.storedSize;
              }
            }
            this.updateDisk.run(s.bytesRead, s.bytesStored, s.chunksNew, s.chunksDeduped, s.chunksZero, d.id);
          }
        })
        .immediate();
    } catch (e) {
      for (const it of items) {
        if (it.slot >= 0) this.pool.releaseSlot(it.slot);
        this.inFlight--;
      }
      const t = translateDbError(e, this.ctx.idb.path);
      this.setError(t instanceof PullbackError ? t : new PullbackError('REPO_IO', `committing index rows failed: ${(e as Error).message}`, { cause: e }));
      return;
    }
    for (const it of committed) {
      const s = it.disk.stats;
      if (it.hex === null) s.chunksZero++;
      else if (it.existed) s.chunksDeduped++;
      else {
        s.chunksNew++;
        s.bytesStored += it.storedSize;
      }
      if (it.slot >= 0) this.pool.releaseSlot(it.slot);
      this.inFlight--;
    }
    this.committed += committed.length;
    for (const it of retry) {
      it.attempts++;
      if (it.attempts >= MAX_ATTEMPTS) {
        this.pool.releaseSlot(it.slot);
        this.inFlight--;
        this.setError(new PullbackError('REPO_IO', `chunk ${it.hex} keeps disappearing after being written`), it);
      } else {
        this.dispatch(it, true);
      }
    }
    if (this.onProgress !== undefined && committed.length > 0) this.onProgress(this.progress());
    this.notifyIdle();
  }

  private notifyIdle(): void {
    const keep: Waiter[] = [];
    for (const w of this.waiters) {
      if (this.inFlight === 0) w.resolve();
      else if (w.stopOnError && this.firstError !== undefined) w.reject(this.firstError);
      else keep.push(w);
    }
    this.waiters = keep;
  }

  /**
   * Resolves when nothing is in flight. With `stopOnError`, rejects as soon as the pipeline
   * has failed instead (complete); without, waits for every job to settle (fail).
   */
  private drained(signal: AbortSignal | undefined, stopOnError: boolean): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    if (stopOnError && this.firstError !== undefined) return Promise.reject(this.firstError);
    signal?.throwIfAborted();
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(abortError(signal));
      };
      const waiter: Waiter = {
        stopOnError,
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        reject: (e) => {
          signal?.removeEventListener('abort', onAbort);
          reject(e);
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
      if (this.done.length > 0) this.scheduleFlush();
    });
  }
}
