// `repair --rebuild-index` rebuilds the SQLite index from chunk files and manifests alone and
// reproduces the same chunk maps and backup records; check cross-checks manifests.
import { execFile } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { Repository, type BackupRecord, type ChunkMap } from '../../src/store/index.js';
import { KiB, quietInit, seededChunk, tempDir, textChunk } from './helpers.js';

const run = promisify(execFile);
const BIN = new URL('../../bin/pullback', import.meta.url).pathname;
const CS = 64 * KiB;

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(BIN, args);
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

let t: ReturnType<typeof tempDir>;
beforeEach(() => {
  t = tempDir();
});
afterEach(() => t.cleanup());

/** Two domains; vm1: full + 2 incrementals with zeros, absents, a grown disk and a new disk. */
async function populate(repo: Repository): Promise<void> {
  const disks1 = [{ name: 'vda', size: 6 * CS }, { name: 'vdb', size: 3 * CS - 4096 }];
  const full = await repo.beginBackup({ domain: 'vm1', level: 'full', parentId: null, checkpoint: 'pullback.a', disks: disks1, domainXml: '<domain/>', checkpointXml: '<domaincheckpoint/>' });
  for (const i of [0, 1, 2, 4]) await full.ingest('vda', i, seededChunk(CS, 1, i));
  full.zero('vda', 5);
  await full.ingest('vdb', 0, textChunk(CS, 1));
  await full.ingest('vdb', 2, seededChunk(CS - 4096, 1, 99));
  const f = await full.complete();
  const inc1 = await repo.beginBackup({ domain: 'vm1', level: 'incremental', parentId: f.id, checkpoint: 'pullback.b', disks: disks1 });
  await inc1.ingest('vda', 1, Buffer.alloc(CS));
  await inc1.ingest('vda', 3, seededChunk(CS, 2, 3));
  const i1 = await inc1.complete();
  const disks2 = [{ name: 'vda', size: 8 * CS }, { name: 'vdb', size: 3 * CS - 4096 }, { name: 'vdc', size: CS }];
  const inc2 = await repo.beginBackup({ domain: 'vm1', level: 'incremental', parentId: i1.id, checkpoint: 'pullback.c', disks: disks2 });
  await inc2.ingest('vda', 7, seededChunk(CS, 3, 7));
  await inc2.ingest('vdc', 0, seededChunk(CS, 1, 0)); // dedups against vm1 vda 0
  await inc2.complete();
  const vm2 = await repo.beginBackup({ domain: 'vm2', level: 'full', parentId: null, checkpoint: 'x', disks: [{ name: 'sda', size: 2 * CS }] });
  await vm2.ingest('sda', 0, textChunk(CS, 1));
  await vm2.complete();
  // A failed backup: not in any manifest, so not rebuilt.
  const bad = await repo.beginBackup({ domain: 'vm2', level: 'full', parentId: null, checkpoint: 'y', disks: [{ name: 'sda', size: CS }] });
  await bad.ingest('sda', 0, seededChunk(CS, 8, 0));
  await bad.fail('test failure');
}

function snapshot(repo: Repository): { records: BackupRecord[]; maps: Map<string, ChunkMap> } {
  const records = repo.listBackups({ status: 'complete' });
  const maps = new Map<string, ChunkMap>();
  for (const b of records) for (const d of b.disks) maps.set(`${b.id}/${d.name}`, repo.resolveChunkMap(b.id, d.name));
  return { records, maps };
}

function expectSame(a: ReturnType<typeof snapshot>, b: ReturnType<typeof snapshot>): void {
  expect(b.records).toEqual(a.records);
  expect([...b.maps.keys()]).toEqual([...a.maps.keys()]);
  for (const [k, m] of a.maps) expect(b.maps.get(k)?.equals(m), k).toBe(true);
}

test('a lost index is rebuilt with identical chunk maps and records', async () => {
  const dir = join(t.dir, 'repo');
  const repo = await quietInit(dir, { chunkSize: CS });
  await populate(repo);
  const before = snapshot(repo);
  expect(before.records).toHaveLength(4);
  expect(before.maps.get(`${before.records[2]?.id}/vda`)?.counts()).toEqual({ data: 5, zero: 2, absent: 1 });
  await repo.close();

  for (const f of readdirSync(dir)) if (f.startsWith('index.db')) rmSync(join(dir, f));
  await expect(Repository.open(dir)).rejects.toMatchObject({ code: 'REPO_CORRUPT', message: expect.stringContaining('--rebuild-index') });
  const gone = await cli('check', '--repo', dir);
  expect(gone.code).toBe(1);
  expect(gone.stderr).toMatch(/^pullback: error \[REPO_CORRUPT\]: repository .* has no index database .*rebuild-index`\n$/);

  const r = await cli('repair', '--repo', dir, '--rebuild-index');
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(/rebuilt index of .*: 4 backup\(s\), \d+ chunk file\(s\), \d+ chunk-map row\(s\)/);

  const again = await Repository.open(dir);
  try {
    expectSame(before, snapshot(again));
    expect(again.listBackups({ status: 'failed' })).toHaveLength(0);
    const check = await again.check({ readData: true });
    expect(check.problems).toEqual([]);
    // The failed backup's chunk is an unreferenced file now: gc removes it.
    const gc = await again.gc();
    expect(gc.chunksDeleted).toBe(1);
  } finally {
    await again.close();
  }
});

test('a corrupt index is set aside and rebuilt; damaged manifests are reported', async () => {
  const dir = join(t.dir, 'repo');
  const repo = await quietInit(dir, { chunkSize: CS });
  await populate(repo);
  const before = snapshot(repo);
  const victim = before.records[3] as BackupRecord; // vm2's full
  await repo.close();
  writeFileSync(join(dir, 'index.db'), Buffer.alloc(8192, 0x5a));
  for (const f of ['index.db-wal', 'index.db-shm']) rmSync(join(dir, f), { force: true });

  const bad = await cli('gc', '--repo', dir);
  expect(bad.code).toBe(1);
  expect(bad.stderr).toMatch(/^pullback: error \[REPO_CORRUPT\]: index database .*index\.db is unreadable \(file is not a database\); rebuild it .*\n$/);

  const r = await Repository.rebuildIndex(dir);
  expect(r.backups).toBe(4);
  expect(r.oldIndex).not.toBeNull();
  expect(existsSync(r.oldIndex as string)).toBe(true);
  const again = await Repository.open(dir);
  try {
    expectSame(before, snapshot(again));
    // A damaged manifest is reported by check...
    const mpath = join(dir, 'manifests', `${victim.id}.manifest`);
    writeFileSync(mpath, Buffer.from('not a manifest'));
    const c1 = await again.check();
    expect(c1.problems.map((p) => p.kind)).toEqual(['manifest-corrupt']);
    expect(c1.problems[0]?.affects).toEqual([{ backup: victim.id, disk: '*' }]);
    rmSync(mpath);
    const c2 = await again.check();
    expect(c2.problems.map((p) => p.kind)).toEqual(['manifest-missing']);
  } finally {
    await again.close();
  }
  // ...and skipped by a rebuild, which says so.
  const r2 = await cli('repair', '--repo', dir, '--rebuild-index');
  expect(r2.code).toBe(0);
  expect(r2.stdout).toContain('3 backup(s)');
});

test('damaged pages inside the index: REPO_CORRUPT or an index-corrupt problem, never a raw SQLite error; rebuild fixes it', async () => {
  const dir = join(t.dir, 'repo');
  const repo = await quietInit(dir, { chunkSize: CS });
  const w = await repo.beginBackup({ domain: 'vm', level: 'full', parentId: null, checkpoint: 'c', disks: [{ name: 'vda', size: 800 * CS }] });
  for (let i = 0; i < 800; i++) await w.ingest('vda', i, i % 3 === 0 ? Buffer.alloc(CS) : seededChunk(CS, 11, i));
  const id = (await w.complete()).id;
  const before = repo.resolveChunkMap(id, 'vda');
  repo.context.idb.db.pragma('wal_checkpoint(TRUNCATE)');
  await repo.close();
  const db = join(dir, 'index.db');
  const pages = statSync(db).size / 4096;
  expect(pages).toBeGreaterThan(15);
  const fd = openSync(db, 'r+');
  for (let p = 5; p < pages; p += 3) writeSync(fd, Buffer.alloc(1500, 0xff), 0, 1500, p * 4096 + 200);
  closeSync(fd);

  let outcome: string;
  try {
    const r = await Repository.open(dir, { onWarning: () => undefined });
    try {
      const report = await r.check();
      outcome = report.problems.map((p) => p.kind).includes('index-corrupt') ? 'index-corrupt' : `check: ${JSON.stringify(report.problems.map((p) => p.kind))}`;
    } catch (e) {
      outcome = (e as { code?: string }).code ?? String(e);
    } finally {
      await r.close();
    }
  } catch (e) {
    outcome = (e as { code?: string }).code ?? String(e);
  }
  expect(['REPO_CORRUPT', 'index-corrupt']).toContain(outcome);

  const rebuilt = await Repository.rebuildIndex(dir);
  expect(rebuilt).toMatchObject({ backups: 1, skippedManifests: [], missingChunks: 0 });
  const again = await Repository.open(dir);
  try {
    expect(again.resolveChunkMap(id, 'vda').equals(before)).toBe(true);
    expect((await again.check()).ok).toBe(true);
  } finally {
    await again.close();
  }
});
