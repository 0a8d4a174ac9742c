// Several processes at once: two backups ingesting into one repository in parallel (shared
// data stored once), and the lock rules between real processes, including a lock left by a
// process killed with -9, which is reclaimed with a message.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { Repository } from '../../src/store/index.js';
import { chunkBytes, KiB, killChildren, quietInit, spawnChild, tempDir } from './helpers.js';

const run = promisify(execFile);
const BIN = new URL('../../bin/pullback', import.meta.url).pathname;
const CS = 64 * KiB;

let t: ReturnType<typeof tempDir>;
let dir: string;
beforeEach(async () => {
  t = tempDir();
  dir = join(t.dir, 'repo');
  await (await quietInit(dir, { chunkSize: CS })).close();
});
afterEach(async () => {
  await killChildren();
  t.cleanup();
});

test('two processes ingest at once; data they share is stored once', async () => {
  // 200 chunks each; the first 80 are identical in both (seed 0).
  const a = spawnChild(['ingest', dir, 'vmA', '200', '1', '80']);
  const b = spawnChild(['ingest', dir, 'vmB', '200', '2', '80']);
  // Both are really running at the same time.
  await Promise.all([a.waitFor(/^ingested 10$/), b.waitFor(/^ingested 10$/)]);
  await Promise.all([a.waitFor(/^complete /), b.waitFor(/^complete /)]);
  expect((await a.exit).code).toBe(0);
  expect((await b.exit).code).toBe(0);

  const repo = await Repository.open(dir);
  try {
    const backups = repo.listBackups({ status: 'complete' });
    expect(backups.map((x) => x.domain).sort()).toEqual(['vmA', 'vmB']);
    const { files, bytes } = chunkBytes(dir);
    expect(files).toBe(320);
    expect(bytes).toBe(320 * (CS + 12)); // random data: stored raw with a 12-byte header
    const st = backups.map((x) => x.disks[0]);
    expect(st.reduce((n, d) => n + (d?.chunksNew ?? 0) + (d?.chunksDeduped ?? 0), 0)).toBe(400);
    const report = await repo.check({ readData: true });
    expect(report.problems).toEqual([]);
    expect(report.chunksVerified).toBe(320);
  } finally {
    await repo.close();
  }
});

describe('locks between processes', () => {
  test('gc excludes gc; a gc lock of a process killed with -9 is reclaimed with a message', async () => {
    const c = spawnChild(['hold-lock', dir, 'gc']);
    await c.waitFor(/^locked$/);
    const warnings: string[] = [];
    const repo = await Repository.open(dir, { onWarning: (m) => warnings.push(m) });
    try {
      await expect(repo.gc()).rejects.toMatchObject({
        code: 'REPO_LOCKED',
        message: expect.stringMatching(new RegExp(`locked by test child \\(pid ${c.proc.pid} on host .*, gc lock since .*\\); wait for it to finish, or if that process no longer exists remove .*\\.lock`)),
      });
      const cliRun = await run(BIN, ['gc', '--repo', dir]).catch((e: unknown) => e as { code: number; stderr: string });
      expect((cliRun as { code: number }).code).toBe(1);
      expect((cliRun as { stderr: string }).stderr).toMatch(/^pullback: error \[REPO_LOCKED\]: repository is locked by test child .*\n$/);

      c.proc.kill('SIGKILL');
      await c.exit;
      const r = await repo.gc();
      expect(r.dryRun).toBe(false);
      expect(warnings).toEqual([expect.stringMatching(new RegExp(`reclaimed stale gc lock of test child left by dead process pid ${c.proc.pid} on host`))]);
    } finally {
      await repo.close();
    }
  });

  test('backups (shared) run beside gc but not beside an exclusive lock', async () => {
    const backup = spawnChild(['hold-lock', dir, 'shared']);
    await backup.waitFor(/^locked$/);
    const repo = await Repository.open(dir, { onWarning: () => undefined });
    try {
      // gc is compatible with running backups...
      await expect(repo.gc()).resolves.toMatchObject({ dryRun: false });
      // ...an exclusive lock (repair, prune) is not.
      await expect(Repository.rebuildIndex(dir)).rejects.toMatchObject({ code: 'REPO_LOCKED' });
      backup.proc.kill('SIGKILL');
      await backup.exit;

      const excl = spawnChild(['hold-lock', dir, 'exclusive']);
      await excl.waitFor(/^locked$/);
      const begin = (): ReturnType<Repository['beginBackup']> =>
        repo.beginBackup({ domain: 'vm', level: 'full', parentId: null, checkpoint: 'c', disks: [{ name: 'vda', size: CS }] });
      await expect(begin()).rejects.toMatchObject({ code: 'REPO_LOCKED' });
      await expect(repo.gc()).rejects.toMatchObject({ code: 'REPO_LOCKED' });
      excl.proc.kill('SIGKILL');
      await excl.exit;
      const w = await begin();
      await w.ingest('vda', 0, Buffer.alloc(CS, 1));
      expect((await w.complete()).status).toBe('complete');
    } finally {
      await repo.close();
    }
  });

  test('a backup waits for a lock when asked to (lockWaitMs)', async () => {
    const excl = spawnChild(['hold-lock', dir, 'exclusive']);
    await excl.waitFor(/^locked$/);
    const repo = await Repository.open(dir, { lockWaitMs: 20_000, onWarning: () => undefined });
    try {
      const started = Date.now();
      setTimeout(() => excl.proc.kill('SIGKILL'), 700);
      const w = await repo.beginBackup({ domain: 'vm', level: 'full', parentId: null, checkpoint: 'c', disks: [{ name: 'vda', size: CS }] });
      expect(Date.now() - started).toBeGreaterThanOrEqual(600);
      await w.fail('test');
    } finally {
      await repo.close();
    }
  });
});
