// Worker threads that load chunks into slots of one SharedArrayBuffer (chunk-worker.ts): the
// reading, decompressing and BLAKE3 verification of chunks runs beside the main thread, which
// only moves bytes between slots and sockets. Jobs go to the worker with the fewest
// outstanding. A worker that dies fails its jobs and breaks the pool (every later load
// fails with REPO_IO): a server must not hang on a lost worker.
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { PullbackError } from '../errors.js';
import type { ChunkWorkerData, LoadReply, LoadRequest } from './worker-protocol.js';

interface WorkerState {
  worker: Worker;
  outstanding: number;
}

interface Pending {
  resolve: (length: number) => void;
  reject: (e: Error) => void;
  worker: WorkerState;
  hex: string;
}

/**
 * The compiled worker from dist/, or the .ts source under vitest/tsx. Node 20 ignores
 * `--import` in a worker's execArgv, so a .ts worker boots through an eval script that
 * registers tsx's loader first.
 */
function spawnWorker(data: ChunkWorkerData): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./chunk-worker.js', import.meta.url), { workerData: data });
  const url = new URL('./chunk-worker.ts', import.meta.url).href;
  const tsxDir = dirname(createRequire(import.meta.url).resolve('tsx/package.json'));
  const tsx = pathToFileURL(join(tsxDir, 'dist/esm/api/index.mjs')).href;
  const boot = `import(${JSON.stringify(tsx)}).then((t) => { t.register(); return import(${JSON.stringify(url)}); })`;
  return new Worker(boot, { eval: true, workerData: data });
}

export class ChunkPool {
  readonly slotSize: number;
  readonly slotCount: number;
  readonly workerCount: number;
  private readonly sab: SharedArrayBuffer;
  private readonly workers: WorkerState[] = [];
  private readonly pending = new Map<number, Pending>();
  private nextJob = 1;
  private broken: Error | undefined;
  private closed = false;

  constructor(opts: { chunksDir: string; slotSize: number; slotCount: number; workers?: number }) {
    this.slotSize = opts.slotSize;
    this.slotCount = opts.slotCount;
    this.sab = new SharedArrayBuffer(opts.slotSize * opts.slotCount);
    this.workerCount = Math.max(1, opts.workers ?? availableParallelism());
    for (let i = 0; i < this.workerCount; i++) {
      const state: WorkerState = { worker: spawnWorker({ chunksDir: opts.chunksDir, slots: this.sab, slotSize: this.slotSize }), outstanding: 0 };
      state.worker.unref();
      state.worker.on('message', (r: LoadReply) => this.onReply(r));
      state.worker.on('error', (e) => this.fail(state, e));
      state.worker.on('exit', (code) => {
        if (!this.closed) this.fail(state, new Error(`chunk worker exited with code ${code}`));
      });
      this.workers.push(state);
    }
  }

  /** Slot `i` as a Buffer (a view into the shared memory). */
  slot(i: number): Buffer {
    return Buffer.from(this.sab, i * this.slotSize, this.slotSize);
  }

  /** Loads and verifies the chunk `hex` into slot `slot`; resolves with its plaintext length. */
  load(hex: string, slot: number): Promise<number> {
    return this.submit(hex, slot, undefined);
  }

  /**
   * Loads and verifies the chunk `hex` into a new shared buffer of its own (for when every
   * slot is pinned), still on a worker thread: the main thread never hashes or decompresses.
   */
  async loadPrivate(hex: string): Promise<Buffer> {
    const target = new SharedArrayBuffer(this.slotSize);
    const length = await this.submit(hex, -1, target);
    return Buffer.from(target, 0, length);
  }

  private submit(hex: string, slot: number, target: SharedArrayBuffer | undefined): Promise<number> {
    if (this.broken !== undefined) return Promise.reject(this.broken);
    if (this.closed) return Promise.reject(new PullbackError('INTERNAL', 'chunk pool used after close()'));
    let w = this.workers[0] as WorkerState;
    for (const x of this.workers) if (x.outstanding < w.outstanding) w = x;
    const job = this.nextJob++;
    w.outstanding++;
    if (w.outstanding === 1) w.worker.ref();
    return new Promise<number>((resolve, reject) => {
      this.pending.set(job, { resolve, reject, worker: w, hex });
      const req: LoadRequest = { job, hex, slot, ...(target !== undefined ? { target } : {}) };
      w.worker.postMessage(req);
    });
  }

  private settle(job: number): Pending | undefined {
    const p = this.pending.get(job);
    if (p === undefined) return undefined;
    this.pending.delete(job);
    p.worker.outstanding--;
    if (p.worker.outstanding === 0) p.worker.worker.unref();
    return p;
  }

  private onReply(r: LoadReply): void {
    const p = this.settle(r.job);
    if (p === undefined) return;
    if (r.ok) {
      p.resolve(r.length);
      return;
    }
    const code = r.kind === 'chunk-missing' ? 'CHUNK_MISSING' : r.kind === 'chunk-corrupt' ? 'CHUNK_CORRUPT' : 'REPO_IO';
    const hint = r.kind === 'repo-io' ? '' : '; run `pullback check --read-data` to see which backups it affects';
    p.reject(new PullbackError(code, `${r.message}${hint}`));
  }

  private fail(state: WorkerState, e: Error): void {
    this.broken ??= new PullbackError('REPO_IO', `a chunk worker failed (${e.message}); restart pullback serve`, { cause: e });
    for (const [job, p] of [...this.pending]) {
      if (p.worker === state) {
        this.settle(job);
        p.reject(this.broken);
      }
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const [job, p] of [...this.pending]) {
      this.settle(job);
      p.reject(new PullbackError('ABORTED', `loading chunk ${p.hex} was abandoned: the server is closing`));
    }
    await Promise.all(this.workers.map((w) => w.worker.terminate()));
  }
}
