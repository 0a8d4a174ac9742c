// The ingest pipeline's guarantees: bounded chunks in flight (backpressure), a failed chunk
// write or a dead worker rejects the backup instead of hanging, an abort stops a waiting
// ingest, and the repository stays usable afterwards.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, test } from 'vitest';
import type { Repository } from '../../src/store/index.js';
import type { WorkerPool } from '../../src/store/worker-pool.js';
import { KiB, quietInit, seededChunk, tempDir } from './helpers.js';

const CS = 64 * KiB;
let t: ReturnType<typeof tempDir>;
let repo: Repository | undefined;
beforeEach(() => {
  t = tempDir();
});
afterEach(async () => {
  await repo?.close();
  repo = undefined;
  t.cleanup();
});

const poolOf = (r: Repository): WorkerPool => (r.context.pool as () => WorkerPool)();

test('chunks in flight never exceed the slot count', async () => {
  repo = await quietInit(join(t.dir, 'repo'), { chunkSize: CS, workers: 2 });
  const slots = poolOf(repo).slotCount;
  let maxInFlight = 0;
  const w = await repo.beginBackup({ domain: 'vm', level: 'full', parentId: null, checkpoint: 'c', disks: [{ name: 'vda', size: 300 * CS }] });
  for (let i = 0; i < 300; i++) {
    await w.ingest('vda', i, seededChunk(CS, 4, i));
    maxInFlight = Math.max(maxInFlight, w.progress().chunksInFlight);
  }
  const rec = await w.complete();
  expect(slots).toBe(128);
  expect(maxInFlight).toBeLessThanOrEqual(slots);
  expect(maxInFlight).toBeGreaterThan(slots / 2); // the window really fills: ingest outpaces the workers
  expect(rec.disks[0]?.chunksNew).toBe(300);
});

test('a chunk write that fails rejects the backup with where it failed; fail() then works', async () => {
  repo = await quietInit(join(t.dir, 'repo'), { chunkSize: CS, workers: 2 });
  const w = await repo.beginBackup({ domain: 'vm', level: 'full', parentId: null, checkpoint: 'c', disks: [{ name: 'vda', size: 50 * CS }] });
  await w.ingest('vda', 0, seededChunk(CS, 5, 0));
  // Pull the temporary directory out from under the workers: every new chunk write fails.
  rmSync(join(repo.dir, 'tmp'), { recursive: true });
  const err = await (async () => {
    for (let i = 1; i < 50; i++) await w.ingest('vda', i, seededChunk(CS, 5, i));
    return w.complete();
  })().catch((e: unknown) => e);
  expect(err).toMatchObject({ code: 'REPO_IO', message: expect.stringMatching(/backup .* \(disk vda, chunk \d+, offset \d+\): writing chunk storage failed: ENOENT/) });
  await w.fail('storage broke');
  expect(repo.getBackup(w.id)).toMatchObject({ status: 'failed', failure: 'storage broke' });
});

test('a worker that dies rejects the pending chunks; the next backup gets a new pool', async () => {
  repo = await quietInit(join(t.dir, 'repo'), { chunkSize: CS, workers: 2 });
  const w = await repo.beginBackup({ domain: 'vm', level: 'full', parentId: null, checkpoint: 'c', disks: [{ name: 'vda', size: 300 * CS }] });
  const pool = poolOf(repo);
  for (let i = 0; i < 100; i++) await w.ingest('vda', i, seededChunk(CS, 6, i));
  // Kill one worker thread for real.
  await (pool as unknown as { workers: Array<{ worker: { terminate(): Promise<number> } }> }).workers[0]?.worker.terminate();
  const err = await (async () => {
    for (let i = 100; i < 300; i++) await w.ingest('vda', i, seededChunk(CS, 6, i));
    return w.complete();
  })().catch((e: unknown) => e);
  expect(err).toMatchObject({ code: 'INTERNAL', message: expect.stringMatching(/ingest worker exited unexpectedly/) });
  await w.fail('worker died');

  const w2 = await repo.beginBackup({ domain: 'vm', level: 'full', parentId: null, checkpoint: 'd', disks: [{ name: 'vda', size: 10 * CS }] });
  expect(poolOf(repo)).not.toBe(pool);
  for (let i = 0; i < 10; i++) await w2.ingest('vda', i, seededChunk(CS, 6, i));
  expect((await w2.complete()).status).toBe('complete');
  expect((await repo.check({ readData: true })).ok).toBe(true);
});

test('an ingest waiting for a slot is aborted by its signal', async () => {
  repo = await quietInit(join(t.dir, 'repo'), { chunkSize: CS, workers: 1 });
  const w = await repo.beginBackup({ domain: 'vm', level: 'full', parentId: null, checkpoint: 'c', disks: [{ name: 'vda', size: 400 * CS }] });
  const slots = poolOf(repo).slotCount;
  const ac = new AbortController();
  // Fill every slot without waiting, then one more must wait until the signal fires.
  const accepted = Array.from({ length: slots }, (_, i) => w.ingest('vda', i, seededChunk(CS, 7, i)));
  const waiting = w.ingest('vda', slots, seededChunk(CS, 7, slots), { signal: ac.signal });
  ac.abort(new Error('user pressed ^C'));
  await expect(waiting).rejects.toThrow('user pressed ^C');
  await Promise.all(accepted);
  // The aborted chunk was not recorded: it can be ingested again.
  await w.ingest('vda', slots, seededChunk(CS, 7, slots));
  const rec = await w.complete();
  expect(rec.disks[0]?.chunksNew).toBe(slots + 1);
});

test('reserve(): data read straight into a slot is stored like ingest(); release and zero chunks give the slot back', async () => {
  repo = await quietInit(join(t.dir, 'repo'), { chunkSize: CS, workers: 2 });
  const pool = poolOf(repo);
  const w = await repo.beginBackup({ domain: 'vm', level: 'full', parentId: null, checkpoint: 'c', disks: [{ name: 'vda', size: 4 * CS - 100 }] });
  const free = (): number => (pool as unknown as { free: number[] }).free.length;
  const before = free();
  // A read that failed: the slot comes back, nothing is recorded.
  const failed = await w.reserve();
  expect(free()).toBe(before - 1);
  failed.release();
  failed.release();
  expect(free()).toBe(before);
  // Chunks 0 and 3 (the short last one) with data, chunk 1 all zeros, chunk 2 never read.
  const data0 = seededChunk(CS, 9, 0);
  const data3 = seededChunk(CS - 100, 9, 3);
  for (const [i, bytes] of [[0, data0], [1, Buffer.alloc(CS)], [3, data3]] as const) {
    const r = await w.reserve();
    r.buffer.fill(0xee); // stale bytes beyond `length` must not end up in the chunk
    bytes.copy(r.buffer);
    r.ingest('vda', i, bytes.length);
    expect(() => r.ingest('vda', i, bytes.length)).toThrow(/handed over twice/);
  }
  const rec = await w.complete();
  expect(rec.disks[0]).toMatchObject({ chunksNew: 2, chunksZero: 1, bytesRead: 3 * CS - 100 });
  expect(free()).toBe(before);
  const map = repo.resolveChunkMap(rec.id, 'vda');
  expect(map.get(1).kind).toBe('zero');
  expect(map.get(2).kind).toBe('absent');
  const e0 = map.get(0);
  const e3 = map.get(3);
  if (e0.kind !== 'data' || e3.kind !== 'data') throw new Error('chunks 0 and 3 must hold data');
  expect((await repo.readChunk(e0.digest)).equals(data0)).toBe(true);
  expect((await repo.readChunk(e3.digest)).equals(data3)).toBe(true);
});

test('prepare() starts the workers before the first chunk; a backup of zeros alone starts none', async () => {
  repo = await quietInit(join(t.dir, 'repo'), { chunkSize: CS, workers: 2 });
  const started = (r: Repository): WorkerPool | undefined => (r as unknown as { poolInstance: WorkerPool | undefined }).poolInstance;
  const zeros = await repo.beginBackup({ domain: 'vm', level: 'full', parentId: null, checkpoint: 'z', disks: [{ name: 'vda', size: 4 * CS }] });
  for (let i = 0; i < 4; i++) zeros.zero('vda', i);
  expect((await zeros.complete()).status).toBe('complete');
  expect(started(repo)).toBeUndefined();

  const w = await repo.beginBackup({ domain: 'vm', level: 'full', parentId: null, checkpoint: 'c', disks: [{ name: 'vda', size: 8 * CS }] });
  w.prepare();
  const pool = started(repo);
  expect(pool).toBeDefined();
  // Its worker threads exist before any chunk is handed over.
  const workers = (pool as unknown as { workers: Array<{ worker: { threadId: number } }> }).workers;
  expect(workers).toHaveLength(2);
  for (const x of workers) expect(x.worker.threadId).toBeGreaterThan(0);
  w.prepare(); // twice: the same pool
  expect(started(repo)).toBe(pool);
  for (let i = 0; i < 8; i++) await w.ingest('vda', i, seededChunk(CS, 9, i));
  const rec = await w.complete();
  expect(rec.disks[0]?.chunksNew).toBe(8);
  expect(poolOf(repo)).toBe(pool);
  expect((await repo.check({ readData: true })).ok).toBe(true);

  const failed = await repo.beginBackup({ domain: 'vm', level: 'full', parentId: null, checkpoint: 'f', disks: [{ name: 'vda', size: CS }] });
  await failed.fail('given up');
  expect(() => failed.prepare()).not.toThrow();
});
