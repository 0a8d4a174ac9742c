// Prune on backups of a real libvirt domain: removal in the middle and at the start of a
// chain (store level), then `pullback prune` through the CLI (usage errors, --dry-run that
// changes nothing, --json), every retained backup restoring to exactly what the guest had,
// and the newest backup's checkpoint still the base of the next incremental.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { runBackup, type BackupResult } from '../../src/backup/run.js';
import { removeBackups, Repository, withLock } from '../../src/store/index.js';
import { runCli } from '../helpers/cli.js';
import { createTestDomain, type TestDomain } from '../helpers/domain.js';
import { restoreShas, treeState } from './fixture.js';

const MiB = 1024 * 1024;

let dom: TestDomain;
let work: string;
let dir: string;
/** backup id -> disk -> sha256 the guest had when the backup began */
const expected = new Map<string, Record<string, string>>();
const ids: string[] = [];

async function backupNow(seed: number): Promise<BackupResult> {
  // Overlapping writes: later backups supersede chunks of earlier ones, which prune frees.
  await dom.writeRandom('vda', (seed % 2) * MiB + 4096 * seed, 300_000, seed);
  await dom.writeRandom('vdb', 512 * seed, 70_000, seed + 100);
  const shas: Record<string, string> = {};
  for (const d of dom.disks) shas[d.target] = await dom.referenceSha256(d.target);
  const repo = await Repository.open(dir, { onWarning: () => undefined });
  try {
    const r = await runBackup({ domain: dom.name, scratchDir: join(work, 'scratch') }, { libvirt: dom.libvirt, repo });
    expected.set(r.id, shas);
    ids.push(r.id);
    return r;
  } finally {
    await repo.close();
  }
}

const expectRestores = async (list: string[]): Promise<void> => {
  for (const id of list) expect(await restoreShas(dir, dom.name, id, work), id).toEqual(expected.get(id));
};

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'pullback-prune-domain-'));
  dir = join(work, 'repo');
  dom = await createTestDomain({ disks: [{ size: 8 * MiB }, { size: 4 * MiB + 512 }] });
  const repo = await Repository.init(dir, { chunkSize: 256 * 1024, onWarning: () => undefined });
  await repo.close();
  for (let i = 1; i <= 4; i++) await backupNow(i);
});
afterAll(async () => {
  await dom?.destroy();
  await rm(work, { recursive: true, force: true });
});

describe('prune of a real domain', () => {
  test('the backups form one chain: a full and three incrementals', async () => {
    const repo = await Repository.open(dir, { readOnly: true });
    try {
      expect(repo.listBackups().map((b) => b.level)).toEqual(['full', 'incremental', 'incremental', 'incremental']);
    } finally {
      await repo.close();
    }
  });

  test('removing in the middle, then at the start: every other backup restores as before', async () => {
    const repo = await Repository.open(dir, { onWarning: () => undefined });
    try {
      const [b0, b1, b2] = ids as [string, string, string];
      await withLock(repo, 'exclusive', 'test', undefined, (ctx) => removeBackups(ctx, [b1]));
      expect(repo.getBackup(b2)?.parentId).toBe(b0);
      await withLock(repo, 'exclusive', 'test', undefined, (ctx) => removeBackups(ctx, [b0]));
      expect(repo.getBackup(b2)).toMatchObject({ level: 'full', parentId: null });
      expect((await repo.check()).problems).toEqual([]);
    } finally {
      await repo.close();
    }
    await expectRestores([ids[2], ids[3]] as string[]);
  });

  test('prune without a policy, with a bad count or duration, or an unknown domain is refused', async () => {
    const none = await runCli(['prune', '--repo', dir]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/no retention policy: give at least one of --keep-last/);
    const bad = await runCli(['prune', '--repo', dir, '--keep-daily', 'seven']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("--keep-daily needs a whole number >= 0 or 'unlimited', not 'seven'");
    const dur = await runCli(['prune', '--repo', dir, '--keep-within', '3x']);
    expect(dur.code).toBe(2);
    expect(dur.stderr).toMatch(/--keep-within: invalid duration "3x": unknown unit "x"/);
    const unknown = await runCli(['prune', '--repo', dir, '--keep-last', '1', '--domain', 'no-such-vm']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('[BACKUP_NOT_FOUND]: domain no-such-vm has no backups');
  });

  test('--dry-run prints what would go and why, and changes nothing', async () => {
    const before = treeState(dir);
    const r = await runCli(['prune', '--repo', dir, '--keep-last', '1', '--dry-run']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`domain ${dom.name}: keep 1, remove 1`);
    expect(r.stdout).toMatch(new RegExp(`remove  ${ids[2]} .* full .* not matched by any rule, rows merged into ${ids[3]}`));
    expect(r.stdout).toMatch(new RegExp(`keep    ${ids[3]} .* incremental .* last 1`));
    expect(r.stdout).toContain('would remove 1 backup(s), kept 1 (dry run: nothing changed)');
    expect(treeState(dir)).toEqual(before);
  });

  test('prune --keep-last 1 --json: the newest becomes the full, restores, and is the base of the next incremental', async () => {
    const r = await runCli(['prune', '--repo', dir, '--keep-last', '1', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as { removed: number; kept: number; gc: { chunksDeleted: number }; domains: Array<{ merges: unknown[] }> };
    expect(report.removed).toBe(1);
    expect(report.kept).toBe(1);
    expect(report.gc.chunksDeleted).toBeGreaterThan(0);
    expect(report.domains[0]?.merges).toEqual([{ heir: ids[3], sources: [ids[2]], newParent: null }]);
    const check = await runCli(['check', '--repo', dir, '--read-data']);
    expect(check.code, check.stdout + check.stderr).toBe(0);
    await expectRestores([ids[3]] as string[]);

    // The newest backup's checkpoint survived: the next backup is an incremental on it.
    expect(await dom.libvirt.checkpointList(dom.name)).toEqual([`pullback.${ids[3]}`]);
    const next = await backupNow(9);
    expect(next.level).toBe('incremental');
    expect(next.parent).toBe(ids[3]);
    await expectRestores([ids[3], next.id] as string[]);
  });
});
