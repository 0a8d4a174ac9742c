// Store-level removal with merge forward on hand-made chains: the content every retained
// backup resolves to is unchanged (including a disk that shrank and grew again, where a
// descendant reads rows past the heir's own size), manifests follow, refusals change nothing.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { isPullbackError } from '../../src/errors.js';
import { removeBackups, Repository, withLock, type BackupRecord } from '../../src/store/index.js';
import { seededBytes } from '../helpers/seeded-random.js';
import { contentSha } from './history.js';

const CS = 64 * 1024;
let work: string;
let repo: Repository;

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'pullback-remove-'));
  repo = await Repository.init(join(work, 'repo'), { chunkSize: CS, workers: 1, onWarning: () => undefined });
});
afterEach(async () => {
  await repo.close();
  await rm(work, { recursive: true, force: true });
});

/** One backup of disk vda with `size` chunks, recording `chunks` (index -> seed, or 0 for a zero marker). */
async function backup(parent: BackupRecord | null, size: number, chunks: Record<number, number>, day: number): Promise<BackupRecord> {
  const w = await repo.beginBackup({
    domain: 'vm',
    level: parent === null ? 'full' : 'incremental',
    parentId: parent?.id ?? null,
    checkpoint: `pullback.${day}`,
    disks: [{ name: 'vda', size: size * CS }],
    time: new Date(Date.UTC(2026, 0, day)),
  });
  for (const [i, seed] of Object.entries(chunks)) {
    if (seed === 0) w.zero('vda', Number(i));
    else await w.ingest('vda', Number(i), seededBytes(seed, CS));
  }
  return w.complete();
}

const shas = async (ids: string[]): Promise<string[]> => Promise.all(ids.map((id) => contentSha(repo, id, 'vda')));
const remove = (ids: string[]): ReturnType<typeof removeBackups> => withLock(repo, 'exclusive', 'test', undefined, (ctx) => removeBackups(ctx, ids));

test('merging the full into a shrunken heir keeps the rows a grown descendant still reads', async () => {
  const f = await backup(null, 4, { 0: 1, 1: 2, 2: 3, 3: 4 }, 1);
  const shrunk = await backup(f, 2, { 0: 5 }, 2); // disk shrank to 2 chunks
  const grown = await backup(shrunk, 4, { 1: 6 }, 3); // and grew back: chunks 2, 3 come from the full
  const before = await shas([shrunk.id, grown.id]);
  const r = await remove([f.id]);
  expect(r.merges).toEqual([{ heir: shrunk.id, sources: [f.id], newParent: null }]);
  expect(r.rowsMerged).toBe(3); // chunks 1, 2, 3 of the full (chunk 0 is the heir's own)
  expect(await shas([shrunk.id, grown.id])).toEqual(before);
  expect(repo.getBackup(shrunk.id)).toMatchObject({ level: 'full', parentId: null });
  expect((await repo.check({ readData: true })).problems).toEqual([]);
});

test('removing in the middle and then at the start; zero markers and overrides survive', async () => {
  const f = await backup(null, 6, { 0: 1, 1: 2, 2: 3, 3: 0, 5: 4 }, 1);
  const i1 = await backup(f, 6, { 1: 0, 2: 7, 4: 8 }, 2);
  const i2 = await backup(i1, 6, { 2: 9, 3: 10 }, 3);
  const i3 = await backup(i2, 6, { 0: 11 }, 4);
  const ids = [f.id, i1.id, i2.id, i3.id];
  const before = await shas(ids);
  await remove([i1.id]); // the middle
  expect(repo.getBackup(i2.id)?.parentId).toBe(f.id);
  expect(await shas([f.id, i2.id, i3.id])).toEqual([before[0], before[2], before[3]]);
  await remove([f.id]); // the start
  expect(repo.getBackup(i2.id)).toMatchObject({ level: 'full', parentId: null });
  expect(await shas([i2.id, i3.id])).toEqual([before[2], before[3]]);
  expect(repo.listBackups().map((b) => b.id)).toEqual([i2.id, i3.id]);
  const check = await repo.check();
  expect(check.problems).toEqual([]);
  expect(check.manifestsChecked).toBe(2);
});

test('a run of removals at once: the nearest source wins each chunk index', async () => {
  const f = await backup(null, 4, { 0: 1, 1: 2, 2: 3, 3: 4 }, 1);
  const i1 = await backup(f, 4, { 1: 0, 2: 5 }, 2);
  const i2 = await backup(i1, 4, { 2: 6 }, 3);
  const i3 = await backup(i2, 4, { 3: 7 }, 4);
  const before = await shas([i3.id]);
  const r = await remove([f.id, i1.id, i2.id]);
  expect(r.merges).toEqual([{ heir: i3.id, sources: [i2.id, i1.id, f.id], newParent: null }]);
  expect(await shas([i3.id])).toEqual(before);
  expect((await repo.check()).problems).toEqual([]);
});

test('a removal that would break a chain is refused and changes nothing', async () => {
  const f = await backup(null, 2, { 0: 1 }, 1);
  const i = await backup(f, 2, { 1: 2 }, 2);
  const w = await repo.beginBackup({ domain: 'vm', level: 'incremental', parentId: i.id, checkpoint: 'c', disks: [{ name: 'vda', size: 2 * CS }] });
  try {
    // The running backup's shared lock keeps a prune out altogether...
    expect(isPullbackError(await remove([f.id]).catch((e: unknown) => e), 'REPO_LOCKED')).toBe(true);
    // ...and the removal itself refuses to pull the parent from under it.
    const err = await removeBackups(repo.context, [f.id, i.id]).catch((e: unknown) => e);
    expect(isPullbackError(err, 'STORE_INVALID_ARGUMENT')).toBe(true);
    expect((err as Error).message).toContain(`${i.id} (parent of running backup ${w.id})`);
    expect(repo.listBackups().map((b) => b.id)).toEqual([f.id, i.id, w.id]);
  } finally {
    await w.fail('test over');
  }
});
