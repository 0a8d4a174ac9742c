// Backups that go wrong, through the CLI: a pullback killed mid-backup (the next run ends
// the leftover job and loses nothing), lost checkpoint metadata (redefined from the
// repository), a resized disk, a job pullback did not start, and bad input.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { restoreBackup } from '../../src/restore/index.js';
import { Repository } from '../../src/store/index.js';
import { runCli, spawnCli } from '../helpers/cli.js';
import { createTestDomain, sha256File, type TestDomain } from '../helpers/domain.js';

const MiB = 1024 * 1024;
const DIE_AFTER_COMPLETE = new URL('./die-after-complete.ts', import.meta.url).pathname;

interface JsonBackup {
  backup: { id: string; level: string; reason: string; checkpoint: string; parent: string | null; disks: Array<{ name: string; bytesRead: number }> };
}

describe('backup recovery and errors', () => {
  let dom: TestDomain;
  let work: string;
  let repoDir: string;
  let scratch: string;
  const args = (...extra: string[]): string[] => ['backup', '--repo', repoDir, '--domain', dom.name, '--scratch-dir', scratch, ...extra];
  const backupJson = async (...extra: string[]): Promise<{ json: JsonBackup; stderr: string }> => {
    const r = await runCli([...args(...extra), '--json']);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.code, r.stderr).toBe(0);
    return { json: JSON.parse(r.stdout) as JsonBackup, stderr: r.stderr };
  };
  const restoredSha = async (id: string, disk: string): Promise<string> => {
    const repo = await Repository.open(repoDir, { readOnly: true });
    const out = join(work, `r-${id}-${disk}.raw`);
    try {
      await restoreBackup(repo, { backupId: id, disks: [disk], output: out, format: 'raw', force: true });
    } finally {
      await repo.close();
    }
    const sha = await sha256File(out);
    await rm(out, { force: true });
    return sha;
  };

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'pullback-recovery-'));
    repoDir = join(work, 'repo');
    scratch = join(work, 'scratch');
    dom = await createTestDomain({ disks: [{ size: 96 * MiB }] });
    expect((await runCli(['init', '--repo', repoDir])).code).toBe(0);
  });
  afterAll(async () => {
    await dom?.destroy();
    await rm(work, { recursive: true, force: true });
  });

  it('kill -9 mid-backup: the next run ends the leftover job and its incremental has every change', async () => {
    await dom.writeRandom('vda', 0, 8 * MiB, 1);
    const { json: full } = await backupJson();
    expect(full.backup.level).toBe('full');

    await dom.writeRandom('vda', 16 * MiB, 64 * MiB, 2);
    const want = await dom.referenceSha256('vda');
    const child = spawnCli(args());
    const exited = new Promise((r) => child.once('exit', r));
    // Kill as soon as the job's socket exists: the job runs, nothing is complete.
    const deadline = Date.now() + 60_000;
    let jobDir: string | undefined;
    while (jobDir === undefined && Date.now() < deadline) {
      const d = existsSync(scratch) ? readdirSync(scratch).find((n) => n.startsWith('pullback-')) : undefined;
      if (d !== undefined && existsSync(join(scratch, d, 'nbd.sock'))) jobDir = d;
      else await new Promise((r) => setTimeout(r, 5));
    }
    expect(jobDir).toBeDefined();
    child.kill('SIGKILL');
    await exited;
    expect((await dom.libvirt.jobInfo(dom.name)).active).toBe(true);
    const killedId = (jobDir as string).slice('pullback-'.length);

    const { json: next, stderr } = await backupJson();
    expect(stderr).toContain(`backup job of backup ${killedId} was left running by a pullback that died`);
    expect(next.backup.level).toBe('incremental');
    expect(next.backup.parent).toBe(full.backup.id);
    expect(next.backup.disks[0]?.bytesRead).toBe(64 * MiB);
    expect(await restoredSha(next.backup.id, 'vda')).toBe(want);

    const list = JSON.parse((await runCli(['list', '--repo', repoDir, '--json'])).stdout) as Array<{ id: string; status: string }>;
    expect(list.find((b) => b.id === killedId)?.status).toBe('failed');
    expect(await dom.libvirt.checkpointList(dom.name)).toEqual([next.backup.checkpoint]);
    const check = await runCli(['check', '--repo', repoDir]);
    expect(check.code, check.stdout + check.stderr).toBe(0);
  });

  it('kill -9 after the record is complete: the next run ends the job, keeps that checkpoint as its base', async () => {
    const before = await backupJson();
    await dom.writeRandom('vda', 24 * MiB, 4 * MiB, 3);
    const child = spawn(process.execPath, ['--import', 'tsx', DIE_AFTER_COMPLETE, repoDir, dom.name, scratch], { stdio: ['ignore', 'ignore', 'pipe'] });
    let childErr = '';
    child.stderr.on('data', (b: Buffer) => (childErr += b.toString()));
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((r) => child.once('exit', (c, s) => r([c, s])));
    expect(signal, `exit ${code}: ${childErr}`).toBe('SIGKILL');
    const list = JSON.parse((await runCli(['list', '--repo', repoDir, '--json'])).stdout) as Array<{ id: string; status: string; checkpoint: string }>;
    const killed = list.at(-1) as { id: string; status: string; checkpoint: string };
    expect(killed.status).toBe('complete');
    expect((await dom.libvirt.jobInfo(dom.name)).active).toBe(true);
    expect(await dom.libvirt.checkpointList(dom.name)).toEqual([before.json.backup.checkpoint, killed.checkpoint]);

    await dom.writeRandom('vda', 40 * MiB, 2 * MiB, 4);
    const want = await dom.referenceSha256('vda');
    const { json: next, stderr } = await backupJson();
    expect(stderr).toContain(`backup job of backup ${killed.id} was left running by a pullback that died`);
    expect(stderr).toContain(`backup ${killed.id} had completed; its checkpoint ${killed.checkpoint} stays as the base`);
    expect(next.backup.level).toBe('incremental');
    expect(next.backup.parent).toBe(killed.id);
    expect(next.backup.disks[0]?.bytesRead).toBe(2 * MiB);
    expect(await restoredSha(next.backup.id, 'vda')).toBe(want);
    expect(await dom.libvirt.checkpointList(dom.name)).toEqual([next.backup.checkpoint]);
  });

  it('lost checkpoint metadata is redefined from the repository and the backup stays incremental', async () => {
    const [cp] = await dom.libvirt.checkpointList(dom.name);
    await dom.libvirt.checkpointDelete(dom.name, cp as string, { metadataOnly: true });
    expect(await dom.libvirt.checkpointList(dom.name)).toEqual([]);
    await dom.writeRandom('vda', 90 * MiB, 4096, 3);
    const want = await dom.referenceSha256('vda');
    const { json, stderr } = await backupJson();
    expect(stderr).toContain(`libvirt had lost checkpoint ${cp}; redefined it`);
    expect(json.backup.level).toBe('incremental');
    expect(json.backup.disks[0]?.bytesRead).toBe(MiB);
    expect(await restoredSha(json.backup.id, 'vda')).toBe(want);
  });

  it('a host clock that ran a day ahead and was set back: new backups still rank after it, the chain goes on', async () => {
    // libfaketime makes the pullback process (not libvirt) read the clock a day ahead.
    const ahead = { LD_PRELOAD: '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1', FAKETIME: '+1d', FAKETIME_DONT_FAKE_MONOTONIC: '1' };
    await dom.writeRandom('vda', 4 * MiB, MiB, 8);
    const r = await runCli([...args(), '--json'], { env: ahead });
    expect(r.code, r.stderr).toBe(0);
    const future = (JSON.parse(r.stdout) as JsonBackup).backup;
    type Listed = { id: string; time: string; level: string; parent: string | null };
    const listed = async (): Promise<Listed[]> => JSON.parse((await runCli(['list', '--repo', repoDir, '--domain', dom.name, '--json'])).stdout) as Listed[];
    const futureTime = Date.parse((await listed()).find((b) => b.id === future.id)?.time ?? '');
    expect(futureTime).toBeGreaterThan(Date.now() + 23 * 3600_000);

    await dom.writeRandom('vda', 6 * MiB, MiB, 9);
    const { json: back, stderr } = await backupJson();
    expect(stderr).toMatch(new RegExp(`the clock reads \\S+, earlier than backup ${future.id} of domain ${dom.name} \\(.*\\); this backup is recorded at \\S+ so that it ranks after it`));
    expect(back.backup.level).toBe('incremental');
    expect(back.backup.parent).toBe(future.id);

    await dom.writeRandom('vda', 8 * MiB, MiB, 10);
    const want = await dom.referenceSha256('vda');
    const { json: again } = await backupJson();
    // Ranked by the clock alone, the future-dated backup would stay "latest": its checkpoint
    // was deleted after the previous backup, so this one would be a full.
    expect(again.backup.level).toBe('incremental');
    expect(again.backup.parent).toBe(back.backup.id);
    expect(again.backup.disks[0]?.bytesRead).toBe(MiB);
    const list = await listed();
    expect(list.slice(-3).map((b) => b.id)).toEqual([future.id, back.backup.id, again.backup.id]);
    expect(Date.parse((list.at(-1) as Listed).time)).toBeGreaterThan(futureTime);

    const latest = join(work, 'latest.raw');
    const restored = await runCli(['restore', '--repo', repoDir, '--domain', dom.name, '--backup', 'latest', '--disk', 'vda', '--output', latest, '--format', 'raw']);
    expect(restored.stdout).toContain(`restored backup ${again.backup.id}`);
    expect(await sha256File(latest)).toBe(want);
    const check = await runCli(['check', '--repo', repoDir]);
    expect(check.code, check.stdout + check.stderr).toBe(0);
  });

  it('a base whose bitmap vanished: --level incremental says why; auto takes a full and drops the broken checkpoint', async () => {
    const { json: base } = await backupJson();
    const cp = base.backup.checkpoint;
    // Remove the checkpoint's bitmap from the running QEMU behind libvirt's back.
    const qmp = async (execute: string, args: object): Promise<unknown> =>
      JSON.parse(await dom.libvirt.monitorCommand(dom.name, JSON.stringify({ execute, arguments: args }))) as unknown;
    const nodes = (await qmp('query-named-block-nodes', { flat: true })) as { return: Array<{ 'node-name': string; 'dirty-bitmaps'?: Array<{ name: string }> }> };
    const node = nodes.return.find((n) => n['dirty-bitmaps']?.some((b) => b.name === cp));
    expect(node, JSON.stringify(nodes)).toBeDefined();
    await qmp('block-dirty-bitmap-remove', { node: node?.['node-name'], name: cp });

    const inc = await runCli(args('--level', 'incremental'));
    expect(inc.code).toBe(1);
    expect(inc.stderr).toContain(`checkpoint ${cp} cannot be the base of an incremental: missing or broken bitmap`);
    expect(inc.stderr).toContain('run with --level auto or full');
    expect(inc.stderr).not.toMatch(/\n\s+at /);

    await dom.writeRandom('vda', 50 * MiB, MiB, 5);
    const want = await dom.referenceSha256('vda');
    const { json: full, stderr } = await backupJson();
    expect(full.backup.level).toBe('full');
    expect(full.backup.reason).toContain(`the bitmap of checkpoint ${cp} is unusable: missing or broken bitmap`);
    expect(stderr).toContain(`old checkpoint ${cp} had lost its bitmap; deleted its metadata`);
    expect(await dom.libvirt.checkpointList(dom.name)).toEqual([full.backup.checkpoint]);
    expect(await restoredSha(full.backup.id, 'vda')).toBe(want);
    const { json: next } = await backupJson();
    expect(next.backup.level).toBe('incremental');
    expect(next.backup.parent).toBe(full.backup.id);
  });

  it('a backup job pullback did not start is left alone with a clear error', async () => {
    const sock = join(work, 'foreign.sock');
    const bxml = join(work, 'foreign.xml');
    await writeFile(
      bxml,
      `<domainbackup mode='pull'><server transport='unix' socket='${sock}'/><disks><disk name='vda' backup='yes' type='file'><scratch file='${join(work, 'foreign.scratch')}'/></disk></disks></domainbackup>`,
    );
    execFileSync('virsh', ['-c', dom.uri, 'backup-begin', dom.name, bxml]);
    try {
      const r = await runCli(args());
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain('DOMAIN_BUSY');
      expect(r.stderr).toContain('did not start');
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect((await dom.libvirt.jobInfo(dom.name)).active).toBe(true);
    } finally {
      execFileSync('virsh', ['-c', dom.uri, 'domjobabort', dom.name]);
    }
  });

  it('a resized disk: incremental is refused with the reason, auto takes a full', async () => {
    execFileSync('virsh', ['-c', dom.uri, 'blockresize', dom.name, 'vda', `${128 * MiB}B`]);
    const r = await runCli(args('--level', 'incremental'));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('vda changed size');
    const { json } = await backupJson();
    expect(json.backup.level).toBe('full');
    expect(json.backup.reason).toContain(`disk vda changed size`);
  });

  it('bad input gives one clear line and a non-zero exit', async () => {
    const cases: Array<{ argv: string[]; match: RegExp }> = [
      { argv: ['backup', '--repo', repoDir, '--domain', 'pbtest-no-such-domain'], match: /DOMAIN_NOT_FOUND.*pbtest-no-such-domain/ },
      {
        argv: [...args(), '--connect', 'qemu+unix:///system?socket=/nonexistent/libvirt-sock'],
        match: /LIBVIRT_UNAVAILABLE/,
      },
      { argv: ['backup', '--repo', repoDir, '--domain', dom.name, '--scratch-dir', '/dev/null/x'], match: /scratch directory \/dev\/null\/x/ },
      { argv: [...args(), '--level', 'sometimes'], match: /--level must be auto, full or incremental/ },
      { argv: [...args(), '--disk', 'vdz'], match: /has no disk vdz/ },
      { argv: ['backup', '--repo', join(work, 'nope'), '--domain', dom.name], match: /REPO_NOT_FOUND|does not exist|no repository/ },
    ];
    for (const c of cases) {
      const r = await runCli(c.argv);
      expect({ argv: c.argv, code: r.code === 0 }).toEqual({ argv: c.argv, code: false });
      expect(r.stderr).toMatch(c.match);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    // Nothing of the failed attempts stays behind as a usable base.
    const list = JSON.parse((await runCli(['list', '--repo', repoDir, '--json'])).stdout) as Array<{ status: string }>;
    expect(list.filter((b) => b.status === 'running')).toEqual([]);
  });
});
