// The ingest pool: worker threads that hash, compress and write chunks off the main thread,
// plus a fixed set of shared-memory input slots. A slot is the unit of bounded memory: the
// caller copies a chunk into a free slot, and the slot stays taken until the chunk's index row
// is committed (so a chunk can be rewritten from it if gc removed its file meanwhile; see
// backup-writer.ts). No free slot means the caller waits: that is the backpressure.
// A worker that dies rejects every job it held and breaks the pool; nothing waits forever.
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { PullbackError } from '../errors.js';
import { noSpaceFromErrno } from './no-space.js';
import type { WorkerData, WorkerReply, WorkerRequest } from './worker-protocol.js';

export type StoreReply = Extract<WorkerReply, { type: 'stored' }>;
type VerifyReply = Extract<WorkerReply, { type: 'verified' }>;

interface Pending {
  resolve: (r: WorkerReply) => void;
  reject: (e: Error) => void;
  worker: WorkerState;
}

interface WorkerState {
  worker: Worker;
  outstanding: number;
}

export interface PoolOptions {
  chunksDir: string;
  tmpDir: string;
  level: number;
  chunkSize: number;
  workers?: number;
  slots?: number;
}

/**
 * The worker module with this module's extension: .js from dist/, .ts under vitest or tsx.
 * Node 20 ignores `--import` in a worker's execArgv, so a .ts worker starts as a tiny eval
 * script that registers tsx's loader and then imports the real module.
 */
function spawnWorker(data: WorkerData): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./ingest-worker.js', import.meta.url), { workerData: data });
  const url = new URL('./ingest-worker.ts', import.meta.url).href;
  // Resolved from here, not from the process's working directory.
  const tsxDir = dirname(createRequire(import.meta.url).resolve('tsx/package.json'));
  const tsx = pathToFileURL(join(tsxDir, 'dist/esm/api/index.mjs')).href;
  const boot = `import(${JSON.stringify(tsx)}).then((t) => { t.register(); return import(${JSON.stringify(url)}); })`;
  return new Worker(boot, { eval: true, workerData: data });
}

/** One per core: workers never wait for the disk (fsync runs on libuv's pool, ingest-worker.ts). */
export function defaultWorkers(): number {
  return availableParallelism();
}

/**
 * 32 MiB of chunks in flight (32 at 1 MiB), at most 128, at least enough to keep every worker
 * fed. A backup reads into slots directly (BackupWriter.reserve), so its reads in flight (16
 * per disk) hold slots too: this is its whole input memory.
 */
export function defaultSlots(chunkSize: number, workers: number): number {
  const bySize = Math.floor((32 * 1024 * 1024) / chunkSize);
  return Math.max(2 * workers + 2, Math.min(128, bySize));
}

export class WorkerPool {
  readonly slotSize: number;
  readonly slotCount: number;
  readonly workerCount: number;
  private readonly slots: SharedArrayBuffer;
  private readonly free: number[] = [];
  private readonly slotWaiters: Array<(slot: number) => void> = [];
  private readonly workers: WorkerState[] = [];
  private readonly pending = new Map<number, Pending>();
  private nextJob = 1;
  private broken: Error | undefined;
  private closed = false;
  private readonly chunksDir: string;

  constructor(opts: PoolOptions) {
    this.workerCount = Math.max(1, opts.workers ?? defaultWorkers());
    this.chunksDir = opts.chunksDir;
    this.slotSize = opts.chunkSize;
    this.slotCount = opts.slots ?? defaultSlots(opts.chunkSize, this.workerCount);
    this.slots = new SharedArrayBuffer(this.slotSize * this.slotCount);
    for (let i = this.slotCount - 1; i >= 0; i--) this.free.push(i);
    const data: WorkerData = {
      chunksDir: opts.chunksDir,
      tmpDir: opts.tmpDir,
      level: opts.level,
      slots: this.slots,
      slotSize: this.slotSize,
    };
    for (let i = 0; i < this.workerCount; i++) {
      const worker = spawnWorker(data);
      const state: WorkerState = { worker, outstanding: 0 };
      worker.unref();
      worker.on('message', (r: WorkerReply) => this.onReply(r));
      worker.on('error', (e) => this.breakPool(new PullbackError('INTERNAL', `ingest worker failed: ${e.message}`, { cause: e })));
      worker.on('exit', (code) => {
        if (!this.closed) this.breakPool(new PullbackError('INTERNAL', `ingest worker exited unexpectedly (code ${code})`));
      });
      this.workers.push(state);
    }
  }

  /** Waits for a free input slot (backpressure). */
  acquireSlot(signal?: AbortSignal): Promise<number> {
    if (this.broken !== undefined) return Promise.reject(this.broken);
    signal?.throwIfAborted();
    const slot = this.free.pop();
    if (slot !== undefined) return Promise.resolve(slot);
    return new Promise<number>((resolve, reject) => {
      const onAbort = (): void => {
        const i = this.slotWaiters.indexOf(give);
        if (i >= 0) this.slotWaiters.splice(i, 1);
        reject(abortError(signal));
      };
      const give = (s: number): void => {
        signal?.removeEventListener('abort', onAbort);
        if (s < 0) reject(this.broken ?? new PullbackError('INTERNAL', 'ingest pool closed'));
        else resolve(s);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.slotWaiters.push(give);
    });
  }

  releaseSlot(slot: number): void {
    const waiter = this.slotWaiters.shift();
    if (waiter !== undefined) waiter(slot);
    else this.free.push(slot);
  }

  slotBuffer(slot: number, length: number): Buffer {
    return Buffer.from(this.slots, slot * this.slotSize, length);
  }

  /** Hash the chunk held in `slot`; if no file of it exists (or `force`), compress and write it durably. */
  async store(slot: number, length: number, force: boolean): Promise<StoreReply> {
    const r = await this.submit((job) => ({ type: 'store', job, slot, length, force }));
    return r as StoreReply;
  }

  /** Re-read and re-hash a chunk file. */
  async verify(hex: string): Promise<VerifyReply> {
    const r = await this.submit((job) => ({ type: 'verify', job, hex }));
    return r as VerifyReply;
  }

  private submit(make: (job: number) => WorkerRequest): Promise<WorkerReply> {
    if (this.broken !== undefined) return Promise.reject(this.broken);
    if (this.closed) return Promise.reject(new PullbackError('INTERNAL', 'ingest pool used after close'));
    let target = this.workers[0] as WorkerState;
    for (const w of this.workers) if (w.outstanding < target.outstanding) target = w;
    const job = this.nextJob++;
    return new Promise<WorkerReply>((resolve, reject) => {
      this.pending.set(job, { resolve, reject, worker: target });
      if (target.outstanding++ === 0) target.worker.ref();
      target.worker.postMessage(make(job));
    });
  }

  private onReply(r: WorkerReply): void {
    const p = this.pending.get(r.job);
    if (p === undefined) return;
    this.pending.delete(r.job);
    if (--p.worker.outstanding === 0) p.worker.worker.unref();
    if (r.type === 'error') {
      const cause = Object.assign(new Error(r.message), { code: r.errno });
      p.reject(
        noSpaceFromErrno(cause, dirname(this.chunksDir), 'writing chunk storage failed') ??
          new PullbackError('REPO_IO', `writing chunk storage failed: ${r.message}`, { cause }),
      );
    } else {
      p.resolve(r);
    }
  }

  private breakPool(e: Error): void {
    if (this.broken !== undefined) return;
    this.broken = e;
    for (const [job, p] of this.pending) {
      this.pending.delete(job);
      p.reject(e);
    }
    for (const give of this.slotWaiters.splice(0)) give(-1);
    for (const w of this.workers) void w.worker.terminate();
  }

  get failure(): Error | undefined {
    return this.broken;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const [job, p] of this.pending) {
      this.pending.delete(job);
      p.reject(new PullbackError('INTERNAL', 'ingest pool closed with jobs pending'));
    }
    for (const give of this.slotWaiters.splice(0)) give(-1);
    await Promise.all(this.workers.map((w) => w.worker.terminate()));
  }
}

export function abortError(signal: AbortSignal | undefined): Error {
  const r: unknown = signal?.reason;
  if (r instanceof Error) return r;
  return new PullbackError('ABORTED', 'operation aborted');
}
