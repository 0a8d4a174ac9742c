// A repository this process cannot write — here a read-only mount, as when a backup disk is
// mounted read-only to recover from it — can still be listed, checked and restored from (the
// index is read from a private copy, since SQLite cannot open a WAL database read-only
// where it may not create its -shm file); what would change it fails with a clear error.
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { BIN, runCli } from '../helpers/cli.js';
import { MiB, quietInit, tempDir } from './helpers.js';

let t: ReturnType<typeof tempDir>;
let mnt: string;
let repo: string;
const disk = Buffer.alloc(6 * MiB);

beforeAll(async () => {
  t = tempDir('pullback-ro-');
  mnt = join(t.dir, 'mnt');
  mkdirSync(mnt);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64m', 'tmpfs', mnt]);
  repo = join(mnt, 'repo');
  const r = await quietInit(repo);
  const w = await r.beginBackup({ domain: 'ro-vm', level: 'full', parentId: null, checkpoint: 'c1', disks: [{ name: 'vda', size: disk.length }] });
  for (const i of [0, 2, 3, 5]) {
    const chunk = i === 3 ? Buffer.from('text '.repeat(MiB / 5 + 1)).subarray(0, MiB) : randomBytes(MiB);
    chunk.copy(disk, i * MiB);
    await w.ingest('vda', i, chunk);
  }
  await w.complete();
  await r.close();
  execFileSync('mount', ['-o', 'remount,ro', mnt]);
});

afterAll(() => {
  if (mnt !== undefined) spawnSync('umount', [mnt]);
  t?.cleanup();
});

test('list, check --read-data and restore work on a read-only mount, without locks', async () => {
  const copies = (): string[] => readdirSync(tmpdir()).filter((n) => n.startsWith('pullback-index-'));
  const copiesBefore = copies();
  const list = await runCli(['list', '--repo', repo, '--json']);
  expect(list.code, list.stderr).toBe(0);
  expect((JSON.parse(list.stdout) as Array<{ domain: string; status: string }>).map((b) => `${b.domain} ${b.status}`)).toEqual(['ro-vm complete']);

  const check = await runCli(['check', '--repo', repo, '--read-data']);
  expect(check.code, check.stderr).toBe(0);
  expect(check.stdout).toContain('repository OK');
  expect(check.stderr).toContain('cannot be written here (EROFS: read-only filesystem): reading it without a lock');

  const out = join(t.dir, 'restore');
  const restore = await runCli(['restore', '--repo', repo, '--domain', 'ro-vm', '--output', out, '--format', 'raw']);
  expect(restore.code, restore.stderr).toBe(0);
  const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
  expect(sha(readFileSync(join(out, 'vda.raw')))).toBe(sha(disk));

  // No lock file could be written, and the private copies of the index are gone.
  expect(readdirSync(join(repo, 'locks'))).toEqual([]);
  expect(copies()).toEqual(copiesBefore);
});

test('serve exports a disk of it; nbdcopy reads back the backed-up content', async () => {
  const socket = join(t.dir, 'ro.sock');
  const child = spawn(BIN, ['serve', '--repo', repo, '--domain', 'ro-vm', '--disk', 'vda', '--socket', socket, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    let err = '';
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    const line = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (b: Buffer) => {
        out += b.toString();
        if (out.includes('\n')) resolve(out.slice(0, out.indexOf('\n')));
      });
      child.once('exit', (code) => reject(new Error(`serve exited with ${code}: ${err}`)));
    });
    const uri = (JSON.parse(line) as { serve: { uri: string } }).serve.uri;
    const out = join(t.dir, 'served.raw');
    execFileSync('nbdcopy', [uri, out]);
    expect(createHash('sha256').update(readFileSync(out)).digest('hex')).toBe(createHash('sha256').update(disk).digest('hex'));
    expect(err).toContain('reading it without a lock');
  } finally {
    // Its files on the mount must be closed before afterAll unmounts it.
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
  }
});

test('commands that would change it fail with one clear line', async () => {
  for (const args of [['gc'], ['prune', '--keep-last', '1'], ['repair', '--rebuild-index']]) {
    const r = await runCli([...args, '--repo', repo]);
    expect(r.code, args.join(' ')).not.toBe(0);
    expect(r.stderr).toMatch(/^pullback: error \[REPO_IO\]: repository \S+ is not writable \(\S+: EROFS\)/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  }
});
