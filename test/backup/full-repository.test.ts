// A repository whose filesystem fills up (a small tmpfs): the backup that runs out of space
// fails with REPO_FULL naming the repository and the way out, leaves no job or checkpoint in
// libvirt and no complete record; a filesystem with no byte left is reported as full, never
// as a corrupt index; gc still runs there (it releases the repository's reserve); and once
// there is room the next incremental holds every change since the last complete backup; a
// restore onto a filesystem without room for the data fails before writing anything.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RESERVE_BYTES } from '../../src/store/reserve.js';
import { runCli, type CliResult } from '../helpers/cli.js';
import { createTestDomain, sha256File, type TestDomain } from '../helpers/domain.js';

const MiB = 1024 * 1024;

function freeBytes(path: string): number {
  return Number(execFileSync('df', ['--output=avail', '-B1', path], { encoding: 'utf8' }).trim().split('\n')[1]);
}

/** Fills the filesystem of `dir` with a file until `leave` bytes are free. */
function fill(dir: string, name: string, leave: number): void {
  const n = freeBytes(dir) - leave;
  if (n > 0) writeFileSync(join(dir, name), Buffer.alloc(n));
}

function expectCleanError(r: CliResult, code: string): void {
  expect(r.code).toBe(1);
  expect(r.stderr).toContain(`pullback: error [${code}]`);
  expect(r.stderr).not.toMatch(/^\s+at /m);
}

describe('backup into a repository whose filesystem is full', () => {
  let dom: TestDomain;
  let work: string;
  let mnt: string;
  let repo: string;
  let scratch: string;
  const backup = (): Promise<CliResult> => runCli(['backup', '--repo', repo, '--domain', dom.name, '--scratch-dir', scratch, '--json']);
  const checkpoints = (): string[] =>
    execFileSync('virsh', ['-c', dom.uri, 'checkpoint-list', dom.name, '--name'], { encoding: 'utf8' }).split('\n').filter((l) => l.trim() !== '');

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'pullback-full-repo-'));
    mnt = join(work, 'mnt');
    scratch = join(work, 'scratch');
    mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64m', 'tmpfs', mnt]);
    repo = join(mnt, 'repo');
    dom = await createTestDomain({ disks: [{ size: 64 * MiB }] });
  });
  afterAll(async () => {
    await dom?.destroy();
    if (mnt !== undefined) spawnSync('umount', [mnt]);
    await rm(work, { recursive: true, force: true });
  });

  it('init sets space aside; a full backup fits', async () => {
    expect((await runCli(['init', '--repo', repo])).code).toBe(0);
    expect(statSync(join(repo, 'reserve')).blocks * 512).toBeGreaterThanOrEqual(RESERVE_BYTES);
    await dom.writeRandom('vda', 0, 8 * MiB, 1);
    const r = await backup();
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).backup.level).toBe('full');
    expect(r.stderr).not.toMatch(/Warning/); // e.g. node's MaxListenersExceededWarning
  });

  it('running out of space fails the backup with REPO_FULL, and libvirt keeps nothing of it', async () => {
    await dom.writeRandom('vda', 8 * MiB, 40 * MiB, 2);
    fill(mnt, 'filler-1', 20 * MiB);
    const before = checkpoints();
    const r = await backup();
    expectCleanError(r, 'REPO_FULL');
    // Whichever write hits the full filesystem first: a chunk file, or the index's batch of rows.
    expect(r.stderr).toMatch(
      /(disk vda, chunk \d+, offset \d+\): writing chunk storage failed|\[REPO_FULL\]: the index database \S+ could not be written): no space left on the filesystem of repository /,
    );
    expect(r.stderr).toContain('`pullback prune`, then `pullback gc`');
    expect(checkpoints()).toEqual(before);
    expect(execFileSync('virsh', ['-c', dom.uri, 'domjobinfo', dom.name], { encoding: 'utf8' })).toMatch(/Job type:\s+None/);
    const list = JSON.parse((await runCli(['list', '--repo', repo, '--json'])).stdout) as Array<{ level: string; status: string }>;
    expect(list.map((b) => `${b.level} ${b.status}`)).toEqual(['full complete', 'incremental failed']);
    const check = await runCli(['check', '--repo', repo]);
    expect(check.code, check.stderr).toBe(0);
  });

  it('with no byte left the index is reported full, not corrupt; gc releases the reserve and runs', async () => {
    fill(mnt, 'filler-2', 0);
    const list = await runCli(['list', '--repo', repo]);
    expectCleanError(list, 'REPO_FULL');
    expect(list.stderr).not.toContain('rebuild');
    const gc = await runCli(['gc', '--repo', repo]);
    expect(gc.code, gc.stderr).toBe(0);
    expect(gc.stderr).toContain('is full: released the 8 MiB kept in reserve');
    expect(gc.stdout).toMatch(/dropped the chunk maps of 1 failed backup/);
    expect(existsSync(join(repo, 'reserve'))).toBe(false);
  });

  it('once there is room, the next incremental has every change since the last complete backup', async () => {
    rmSync(join(mnt, 'filler-1'));
    rmSync(join(mnt, 'filler-2'));
    const r = await backup();
    expect(r.code, r.stderr).toBe(0);
    const b = JSON.parse(r.stdout).backup as { id: string; level: string; disks: Array<{ bytesRead: number }> };
    expect(b.level).toBe('incremental');
    expect(b.disks[0]?.bytesRead).toBe(40 * MiB);
    expect(existsSync(join(repo, 'reserve'))).toBe(true);
    const out = join(work, 'restore');
    const restore = await runCli(['restore', '--repo', repo, '--domain', dom.name, '--backup', b.id, '--output', out, '--format', 'raw']);
    expect(restore.code, restore.stderr).toBe(0);
    expect(await sha256File(join(out, 'vda.raw'))).toBe(await dom.referenceSha256('vda'));
    const check = await runCli(['check', '--repo', repo, '--read-data']);
    expect(check.code, check.stderr).toBe(0);
  });

  it('a restore onto a filesystem without room for the data fails before writing, and leaves nothing', async () => {
    fill(mnt, 'filler-3', 10 * MiB);
    const out = join(mnt, 'restore');
    const r = await runCli(['restore', '--repo', repo, '--domain', dom.name, '--output', out, '--format', 'raw']);
    expectCleanError(r, 'RESTORE_FAILED');
    expect(r.stderr).toMatch(new RegExp(`restoring disk vda of backup \\S+ needs at least 48\\.0 MiB in ${out} \\(its data\\), which has \\d+\\.\\d MiB free`));
    expect(existsSync(out)).toBe(false);
    rmSync(join(mnt, 'filler-3'), { force: true });
  });
});
