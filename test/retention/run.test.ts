// The nightly run over two real libvirt domains, one of which fails (shut off, its disk
// image gone): the other is backed up (excluded disk left out), prune and gc run, the
// summary and metrics say what happened, the exit code is non-zero, a second run makes an
// incremental and prunes the first backup into it, and a held run lock stops a run.
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { acquireRunLock } from '../../src/retention/run-lock.js';
import { Repository } from '../../src/store/index.js';
import { runCli } from '../helpers/cli.js';
import { createTestDomain, type TestDomain } from '../helpers/domain.js';
import { restoreShas } from './fixture.js';

const MiB = 1024 * 1024;

let work: string;
let repoDir: string;
let configPath: string;
let metricsPath: string;
let good: TestDomain;
let bad: TestDomain;
let badImage: string;

interface RunJson {
  ok: boolean;
  domains: Array<{ domain: string; ok: boolean; level: { level: string }; backup?: { id: string; level: string; bytesRead: number }; error?: { code: string; message: string } }>;
  prune: { removed: number; kept: number; domains: Array<{ domain: string; removed: number; kept: number }>; gc: { chunksDeleted: number } | null } | null;
  metricsFile: string | null;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'pullback-run-'));
  repoDir = join(work, 'repo');
  metricsPath = join(work, 'metrics', 'pullback.prom');
  const repo = await Repository.init(repoDir, { chunkSize: 256 * 1024, onWarning: () => undefined });
  await repo.close();
  [good, bad] = await Promise.all([
    createTestDomain({ disks: [{ size: 8 * MiB }, { size: 4 * MiB }] }),
    createTestDomain({ disks: [{ size: 4 * MiB }], start: false }),
  ]);
  // The failing domain: shut off, and its image is gone (moved away, restored at the end).
  badImage = bad.disks[0]?.path as string;
  await rename(badImage, `${badImage}.away`);
  await mkdir(join(work, 'metrics'));
  configPath = join(work, 'pullback.toml');
  await writeFile(
    configPath,
    [
      `repository = "repo"`, // relative to the config file
      `concurrency = 2`,
      `scratch_dir = "scratch"`,
      `metrics_file = "metrics/pullback.prom"`,
      `lock_wait_seconds = 30`,
      `[domains]`,
      `names = ["${good.name}", "${bad.name}"]`,
      `[domains.exclude_disks]`,
      `"${good.name}" = ["vdb"]`,
      `[level]`,
      `full_after_incrementals = 5`,
      `[retention]`,
      `keep_last = 1`,
      '',
    ].join('\n'),
  );
});
afterAll(async () => {
  if (badImage !== undefined) await rename(`${badImage}.away`, badImage).catch(() => undefined);
  await Promise.all([good?.destroy(), bad?.destroy()]);
  await rm(work, { recursive: true, force: true });
});

describe('pullback run', () => {
  test('a held run lock stops a second run before it does anything', async () => {
    const lock = await acquireRunLock(repoDir, 'test', () => undefined);
    try {
      const r = await runCli(['run', '--config', configPath]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`[REPO_LOCKED]: another pullback run is using repository ${repoDir}: pid ${process.pid}`);
    } finally {
      await lock.release();
    }
    const repo = await Repository.open(repoDir, { readOnly: true });
    expect(repo.listBackups()).toEqual([]);
    await repo.close();
  });

  let first = '';
  test('one domain fails, the other is backed up; prune and gc run; exit code 1; metrics written', async () => {
    await good.writeRandom('vda', MiB, 2 * MiB, 1);
    await good.writeRandom('vdb', 0, MiB, 2); // excluded: must not be backed up
    const expected = { vda: await good.referenceSha256('vda') };
    const r = await runCli(['run', '--config', configPath, '--json']);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain('[BACKUP_FAILED]: nightly run incomplete: 1 domain(s) failed');
    const j = JSON.parse(r.stdout) as RunJson;
    expect(j.ok).toBe(false);
    const [g, b] = [j.domains.find((d) => d.domain === good.name), j.domains.find((d) => d.domain === bad.name)];
    expect(g).toMatchObject({ ok: true, backup: { level: 'full' } });
    expect(b?.ok).toBe(false);
    expect(b?.error?.message).toContain(bad.name);
    expect(j.prune?.domains.map((d) => d.domain)).toContain(good.name);
    expect(j.prune?.gc).not.toBeNull();
    first = g?.backup?.id ?? '';

    const repo = await Repository.open(repoDir, { readOnly: true });
    try {
      expect(repo.getBackup(first)?.disks.map((d) => d.name)).toEqual(['vda']);
      expect(repo.listBackups({ domain: bad.name, status: 'complete' })).toEqual([]);
    } finally {
      await repo.close();
    }
    expect(await restoreShas(repoDir, good.name, first, work)).toEqual(expected);

    const metrics = await readFile(metricsPath, 'utf8');
    expect(metrics).toMatch(new RegExp(`pullback_last_success_timestamp_seconds\\{domain="${good.name}"\\} \\d+`));
    expect(metrics).not.toContain(`pullback_last_success_timestamp_seconds{domain="${bad.name}"}`);
    expect(metrics).toContain(`pullback_last_run_success{domain="${good.name}"} 1`);
    expect(metrics).toContain(`pullback_last_run_success{domain="${bad.name}"} 0`);
    expect(metrics).toMatch(new RegExp(`pullback_bytes_read\\{domain="${good.name}"\\} ${2 * MiB}\\n`));
    expect(metrics).toMatch(/pullback_bytes_stored\{domain="[^"]+"\} [1-9]\d*\n/);
    expect(metrics).toContain('pullback_run_success 0\n');
  });

  test('the next run: incremental, and keep_last = 1 prunes the first backup into it; summary table', async () => {
    await good.writeRandom('vda', 0, MiB + 4096, 3);
    const expected = { vda: await good.referenceSha256('vda') };
    const r = await runCli(['run', '--config', configPath]);
    expect(r.code).toBe(1);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toMatch(/^DOMAIN\s+RESULT\s+LEVEL\s+BACKUP\s+READ\s+STORED\s+TIME$/);
    expect(r.stdout).toMatch(new RegExp(`^${good.name}\\s+ok\\s+incremental\\s+\\S+\\s+1\\.3 MB`, 'm'));
    expect(r.stdout).toMatch(new RegExp(`^${bad.name}\\s+FAILED\\s+-`, 'm'));
    expect(r.stdout).toMatch(/^prune: removed 1 backup\(s\), kept \d+; gc deleted [1-9]\d* chunk\(s\)/m);
    expect(r.stdout).toContain('2 domain(s): 1 ok, 1 failed; run FAILED');

    const repo = await Repository.open(repoDir, { readOnly: true });
    let second = '';
    try {
      const left = repo.listBackups({ domain: good.name });
      expect(left).toHaveLength(1);
      second = left[0]?.id ?? '';
      expect(second).not.toBe(first);
      expect(left[0]).toMatchObject({ level: 'full', parentId: null }); // the pruned full merged into it
    } finally {
      await repo.close();
    }
    expect(await restoreShas(repoDir, good.name, second, work)).toEqual(expected);
    const check = await runCli(['check', '--repo', repoDir]);
    expect(check.code, check.stdout).toBe(0);
    expect(await good.libvirt.checkpointList(good.name)).toEqual([`pullback.${second}`]);
  });
});
