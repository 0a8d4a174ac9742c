// gc deletes exactly the chunks no live backup references, reports a dry run without touching
// anything, and is safe beside a running backup in another process, even one that keeps
// deduplicating against the very chunks gc is deleting.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { Repository } from '../../src/store/index.js';
import { chunkBytes, KiB, killChildren, quietInit, seededChunk, spawnChild, tempDir } from './helpers.js';

const CS = 64 * KiB;
let t: ReturnType<typeof tempDir>;
beforeEach(() => {
  t = tempDir();
});
afterEach(async () => {
  await killChildren();
  t.cleanup();
});

test('gc deletes unreferenced chunks only; dry run changes nothing', async () => {
  const repo = await quietInit(join(t.dir, 'repo'), { chunkSize: CS });
  try {
    const keep = await repo.beginBackup({ domain: 'vm', level: 'full', parentId: null, checkpoint: 'a', disks: [{ name: 'vda', size: 10 * CS }] });
    for (let i = 0; i < 10; i++) await keep.ingest('vda', i, seededChunk(CS, 1, i));
    await keep.complete();
    const drop = await repo.beginBackup({ domain: 'vm', level: 'full', parentId: null, checkpoint: 'b', disks: [{ name: 'vda', size: 10 * CS }] });
    for (let i = 0; i < 10; i++) await drop.ingest('vda', i, seededChunk(CS, i < 4 ? 1 : 2, i)); // 4 shared, 6 own
    await drop.fail('test');
    expect(chunkBytes(repo.dir).files).toBe(16);

    const dry = await repo.gc({ dryRun: true });
    expect(dry).toMatchObject({ dryRun: true, chunksDeleted: 6, bytesFreed: 6 * (CS + 12), chunksKept: 10, failedBackupsCleaned: 1 });
    expect(chunkBytes(repo.dir).files).toBe(16);

    const real = await repo.gc();
    expect(real).toMatchObject({ dryRun: false, chunksDeleted: 6, bytesFreed: 6 * (CS + 12), chunksKept: 10, failedBackupsCleaned: 1 });
    expect(chunkBytes(repo.dir)).toEqual({ files: 10, bytes: 10 * (CS + 12) });
    expect((await repo.check({ readData: true })).ok).toBe(true);
    expect(await repo.gc()).toMatchObject({ chunksDeleted: 0, failedBackupsCleaned: 0, chunksKept: 10 });
  } finally {
    await repo.close();
  }
});

test('gc in a loop beside a backup that re-uses the garbage it deletes: nothing referenced goes missing', async () => {
  const dir = join(t.dir, 'repo');
  const repo = await quietInit(dir, { chunkSize: CS });
  try {
    // Garbage: a failed backup of exactly the chunks the concurrent backup will store (seed 0).
    const g = await repo.beginBackup({ domain: 'old', level: 'full', parentId: null, checkpoint: 'g', disks: [{ name: 'vda', size: 300 * CS }] });
    for (let i = 0; i < 300; i++) await g.ingest('vda', i, seededChunk(CS, 0, i));
    await g.fail('make garbage');

    // The backup stores those same chunks. It pauses before chunk 150: with 128 slots, at least
    // chunks 0..21 are deduplicated against the garbage and indexed by then, and up to 128 more
    // are in flight. gc runs in a loop from the moment it resumes: it deletes the garbage copies
    // of every chunk the backup has not indexed yet, including ones the backup has just found
    // present and is about to index (those must be written again).
    const resume = join(t.dir, 'resume');
    const child = spawnChild(['ingest', dir, 'vm', '300', '0', '300', '150', resume]);
    await child.waitFor(/^paused$/);
    writeFileSync(resume, '');
    let runs = 0;
    let deleted = 0;
    let orphans = 0;
    while (child.proc.exitCode === null && runs < 200) {
      const r = await repo.gc();
      runs++;
      deleted += r.chunksDeleted;
      orphans += r.orphanFilesDeleted;
    }
    await child.waitFor(/^complete /);
    expect((await child.exit).code).toBe(0);
    expect(orphans).toBe(0);
    const stats = repo.listBackups({ domain: 'vm' })[0]?.disks[0];
    // gc really raced the backup: it deleted garbage the backup went on to need (stored again,
    // as new), while the chunks indexed before it ran survived (deduplicated).
    expect(runs).toBeGreaterThanOrEqual(1);
    expect(deleted).toBeGreaterThan(0);
    expect(stats?.chunksDeduped).toBeGreaterThanOrEqual(22);
    expect(stats?.chunksNew).toBeGreaterThan(0);
    expect((stats?.chunksNew ?? 0) + (stats?.chunksDeduped ?? 0)).toBe(300);
    const report = await repo.check({ readData: true });
    expect(report.problems).toEqual([]);
    const done = repo.listBackups({ domain: 'vm', status: 'complete' });
    expect(done).toHaveLength(1);
    const map = repo.resolveChunkMap(done[0]?.id as string, 'vda');
    expect(map.counts()).toEqual({ data: 300, zero: 0, absent: 0 });
    for (const i of [0, 150, 299]) {
      const e = map.get(i);
      expect(e.kind === 'data' && (await repo.readChunk(e.digest)).equals(seededChunk(CS, 0, i))).toBe(true);
    }
    await repo.gc();
    expect(chunkBytes(dir).files).toBe(300);
  } finally {
    await repo.close();
  }
});
