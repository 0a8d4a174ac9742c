// The scratch directory of a live backup fills up while the guest overwrites its disk (QEMU
// copies the old data there first). Without the scratch watch (src/backup/scratch-watch.ts)
// the guest's writes fail with ENOSPC once the filesystem is full; with it the job is ended
// before, every guest write succeeds, the backup fails naming the scratch directory, and the
// next backup holds every change since the last complete one.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBackup, type BackupOptions } from '../../src/backup/run.js';
import { restoreBackup } from '../../src/restore/index.js';
import { Repository } from '../../src/store/index.js';
import { runCli } from '../helpers/cli.js';
import { createTestDomain, sha256File, type TestDomain } from '../helpers/domain.js';

const MiB = 1024 * 1024;

describe('live backup whose scratch directory runs low', () => {
  let dom: TestDomain;
  let work: string;
  let small: string;
  let repo: Repository;
  const logs: string[] = [];
  const backup = (extra: Partial<BackupOptions>): ReturnType<typeof runBackup> =>
    runBackup({ domain: dom.name, scratchDir: join(work, 'scratch'), log: (m) => logs.push(m), ...extra }, { libvirt: dom.libvirt, repo });
  const checkpoints = (): string[] =>
    execFileSync('virsh', ['-c', dom.uri, 'checkpoint-list', dom.name, '--name'], { encoding: 'utf8' }).split('\n').filter((l) => l.trim() !== '');

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'pullback-scratch-full-'));
    small = join(work, 'small');
    mkdirSync(small);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=32m', 'tmpfs', small]);
    dom = await createTestDomain({ disks: [{ size: 64 * MiB }] });
    repo = await Repository.init(join(work, 'repo'));
  });
  afterAll(async () => {
    await repo?.close();
    await dom?.destroy();
    if (small !== undefined) spawnSync('umount', [small]);
    await rm(work, { recursive: true, force: true });
  });

  it('ends the job before the guest writes fail, and loses nothing', async () => {
    await dom.writeRandom('vda', 0, 48 * MiB, 1);
    const full = await backup({});
    await dom.writeRandom('vda', 60 * MiB, MiB, 2);

    // 48 MiB of overwrites need 48 MiB of scratch; the filesystem has 32, of which 12 are kept free.
    const guestErrors: string[] = [];
    const failed = await backup({
      scratchDir: small,
      scratchFloorBytes: 12 * MiB,
      scratchPollMs: 50,
      afterJobStart: async () => {
        for (let i = 0; i < 48; i++) {
          await dom.writeRandom('vda', i * MiB, MiB, 100 + i).catch((e: unknown) => guestErrors.push((e as Error).message));
        }
      },
    }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(guestErrors).toEqual([]);
    expect(failed?.message).toMatch(new RegExp(`^domain ${dom.name}: the scratch directory ${small}/pullback-\\S+ ran low during the backup \\(\\d+\\.\\d MiB free, below the 12\\.0 MiB kept free\\): the backup job was ended`));
    expect(checkpoints()).toEqual([full.checkpoint]);
    expect(repo.listBackups({ domain: dom.name }).map((b) => b.status)).toEqual(['complete', 'failed']);

    const next = await backup({});
    expect(next.level).toBe('incremental');
    expect(next.parent).toBe(full.id);
    expect(next.disks[0]?.bytesRead).toBe(49 * MiB);
    const out = join(work, 'restore');
    await restoreBackup(repo, { backupId: next.id, output: out, format: 'raw' });
    expect(await sha256File(join(out, 'vda.raw'))).toBe(await dom.referenceSha256('vda'));
  });

  it('refuses to start when the scratch directory is already below the floor', async () => {
    const before = repo.listBackups({ domain: dom.name }).length;
    await expect(backup({ scratchDir: small, scratchFloorBytes: 64 * MiB })).rejects.toThrow(
      new RegExp(`the scratch directory ${small}/pullback-\\S+ has \\d+\\.\\d MiB free, less than the 64\\.0 MiB a backup keeps free there`),
    );
    // Nothing was begun: no record, no job, no new checkpoint.
    expect(repo.listBackups({ domain: dom.name })).toHaveLength(before);
    expect(execFileSync('virsh', ['-c', dom.uri, 'domjobinfo', dom.name], { encoding: 'utf8' })).toMatch(/Job type:\s+None/);
    expect(checkpoints()).toHaveLength(1);
  });

  it('the CLI takes the floor as --scratch-keep-free SIZE', async () => {
    const args = ['backup', '--repo', join(work, 'repo'), '--domain', dom.name, '--scratch-dir', small];
    const refused = await runCli([...args, '--scratch-keep-free', '64M']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^pullback: error \[BACKUP_FAILED\]: domain \S+: the scratch directory \S+ has [\d.]+ MiB free, less than the 64\.0 MiB a backup keeps free there/m);
    const bad = await runCli([...args, '--scratch-keep-free', 'lots']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("--scratch-keep-free must be a size such as 512M or 2G, not 'lots'");
    const ok = await runCli([...args, '--scratch-keep-free', '4M', '--json']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout).backup.level).toBe('incremental');
  });
});
