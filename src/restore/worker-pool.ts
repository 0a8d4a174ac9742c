// The restore pool: worker threads (restore-worker.ts) that read, decode and verify chunks into
// the pool's shared slab (slab.ts), and read back written images (--verify). Jobs go to the
// worker with the fewest outstanding; the caller bounds how many are in flight (write-disk.ts,
// run-jobs.ts). Memory is bounded by the slab plus, per worker, one compressed chunk body.
// A worker that dies rejects every job it held and breaks the pool; nothing waits forever.
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { PullbackError } from '../errors.js';
import { createSlab, type SlabLayout } from './slab.js';
import type { RestoreReply, RestoreRequest, RestoreWorkerData } from './worker-protocol.js';

/** A request before the pool numbers it. */
export type RestoreJob = RestoreRequest extends infer R ? (R extends { job: number } ? Omit<R, 'job'> : never) : never;

interface WorkerState {
  worker: Worker;
  outstanding: number;
}

interface Pending {
  resolve: (r: RestoreReply) => void;
  reject: (e: Error) => void;
  worker: WorkerState;
}

/**
 * .js from dist/, .ts under vitest or tsx. Node 20 ignores `--import` in a worker's execArgv,
 * so a .ts worker starts as a tiny eval script that registers tsx's loader first (the same
 * mechanism as the store's ingest pool).
 */
function spawnWorker(data: RestoreWorkerData): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./restore-worker.js', import.meta.url), { workerData: data });
  const url = new URL('./restore-worker.ts', import.meta.url).href;
  const tsxDir = dirname(createRequire(import.meta.url).resolve('tsx/package.json'));
  const tsx = pathToFileURL(join(tsxDir, 'dist/esm/api/index.mjs')).href;
  const boot = `import(${JSON.stringify(tsx)}).then((t) => { t.register(); return import(${JSON.stringify(url)}); })`;
  return new Worker(boot, { eval: true, workerData: data });
}

/** One per core: decompression and hashing are CPU-bound; measured in docs/restore.md. */
export function defaultRestoreWorkers(): number {
  return availableParallelism();
}

/** Slot memory to aim for: enough for several large writes in flight at 1 MiB chunks. */
const SLAB_BYTES = 32 * 1024 * 1024;

/** Slots: SLAB_BYTES worth, but never fewer than two per worker plus two being written. */
export function slotCount(chunkSize: number, workers: number): number {
  return Math.max(2 * workers + 2, Math.floor(SLAB_BYTES / chunkSize));
}

export class RestorePool {
  readonly workerCount: number;
  /** The slots `load` jobs decode into; shared with every worker. */
  readonly slab: SlabLayout;
  private readonly workers: WorkerState[] = [];
  private readonly pending = new Map<number, Pending>();
  private nextJob = 1;
  private broken: Error | undefined;
  private closed = false;

  constructor(opts: { chunksDir: string; chunkSize: number; workers?: number }) {
    this.workerCount = Math.max(1, opts.workers ?? defaultRestoreWorkers());
    this.slab = createSlab(opts.chunkSize, slotCount(opts.chunkSize, this.workerCount));
    for (let i = 0; i < this.workerCount; i++) {
      const worker = spawnWorker({ chunksDir: opts.chunksDir, chunkSize: opts.chunkSize, slab: this.slab });
      const state: WorkerState = { worker, outstanding: 0 };
      worker.unref();
      worker.on('message', (r: RestoreReply) => this.onReply(r));
      worker.on('error', (e) => this.breakPool(new PullbackError('INTERNAL', `restore worker failed: ${e.message}`, { cause: e })));
      worker.on('exit', (code) => {
        if (!this.closed) this.breakPool(new PullbackError('INTERNAL', `restore worker exited unexpectedly (code ${code})`));
      });
      this.workers.push(state);
    }
  }

  /** Resolves with the worker's reply (done or error); rejects only if the pool broke. */
  run(job: RestoreJob): Promise<RestoreReply> {
    if (this.broken !== undefined) return Promise.reject(this.broken);
    if (this.closed) return Promise.reject(new PullbackError('INTERNAL', 'restore pool used after close'));
    let target = this.workers[0] as WorkerState;
    for (const w of this.workers) if (w.outstanding < target.outstanding) target = w;
    const id = this.nextJob++;
    return new Promise<RestoreReply>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, worker: target });
      if (target.outstanding++ === 0) target.worker.ref();
      target.worker.postMessage({ ...job, job: id } as RestoreRequest);
    });
  }

  private onReply(r: RestoreReply): void {
    const p = this.pending.get(r.job);
    if (p === undefined) return;
    this.pending.delete(r.job);
    if (--p.worker.outstanding === 0) p.worker.worker.unref();
    p.resolve(r);
  }

  private breakPool(e: Error): void {
    if (this.broken !== undefined) return;
    this.broken = e;
    for (const [job, p] of this.pending) {
      this.pending.delete(job);
      p.reject(e);
    }
    for (const w of this.workers) void w.worker.terminate();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const [job, p] of this.pending) {
      this.pending.delete(job);
      p.reject(new PullbackError('INTERNAL', 'restore pool closed with jobs pending'));
    }
    await Promise.all(this.workers.map((w) => w.worker.terminate()));
  }
}
