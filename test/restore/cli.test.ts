// `pullback restore` through the built CLI: the --json summary, --backup/--disk/--format,
// and failures as one line with a stable code and exit status (1 failure, 2 usage).
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Repository } from '../../src/store/index.js';
import { toHex } from '../../src/store/hash.js';
import { chunkPath, layout } from '../../src/store/layout.js';
import { KiB, MiB, quietInit, tempDir } from '../store/helpers.js';
import { buildChain, sha256, type ChainStep } from './chain.js';
import { cli, type CliResult } from './cli-run.js';

const CS = 64 * KiB;
let t: ReturnType<typeof tempDir>;
let repo: Repository;
let steps: ChainStep[];
let otherDomainBackup: string;

beforeAll(async () => {
  t = tempDir('pullback-restore-cli-');
  repo = await quietInit(join(t.dir, 'repo'), { chunkSize: CS });
  steps = await buildChain(repo, {
    domain: 'web',
    disks: [
      { name: 'vda', size: MiB + 512 },
      { name: 'vdb', size: MiB },
    ],
    incrementals: 2,
    seed: 3,
  });
  // Another domain's backup, for the wrong-domain check.
  const w = await repo.beginBackup({ domain: 'db', level: 'full', parentId: null, checkpoint: 'c', disks: [{ name: 'vda', size: CS }] });
  await w.ingest('vda', 0, Buffer.alloc(CS, 1));
  otherDomainBackup = (await w.complete()).id;
  await repo.close();
});
afterAll(() => t?.cleanup());

function expectOneLineError(r: CliResult, code: string, pattern: RegExp): void {
  expect(r.code, r.stderr).toBe(1);
  expect(r.stderr).toMatch(new RegExp(`^pullback: error \\[${code}\\]: .*\\n$`));
  expect(r.stderr).toMatch(pattern);
}

const base = (): string[] => ['restore', '--repo', repo.dir, '--domain', 'web'];

describe('pullback restore', () => {
  test('latest, all disks, --json summary', async () => {
    const out = join(t.dir, 'all');
    const r = await cli([...base(), '--output', out, '--verify', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    const j = JSON.parse(r.stdout) as { restore: Record<string, unknown> & { disks: Array<Record<string, unknown>> } };
    const last = steps[2] as ChainStep;
    expect(Object.keys(j.restore).sort()).toEqual(['backup', 'defined', 'disks', 'domain', 'verified']);
    expect(j.restore).toMatchObject({ backup: last.record.id, domain: 'web', verified: true, defined: null });
    expect(j.restore.disks.map((d) => Object.keys(d).sort())).toEqual(
      Array(2).fill(['bytesWritten', 'chunks', 'format', 'name', 'path', 'seconds', 'size']),
    );
    expect(j.restore.disks.map((d) => [d['name'], d['size'], d['path'], d['format']])).toEqual([
      ['vda', MiB + 512, join(out, 'vda.raw'), 'raw'],
      ['vdb', MiB, join(out, 'vdb.raw'), 'raw'],
    ]);
    for (const d of ['vda', 'vdb']) expect(sha256(readFileSync(join(out, `${d}.raw`)))).toBe(sha256(last.images[d] as Buffer));
  });

  test('--backup ID --disk vdb --format qcow2 into a file; text summary', async () => {
    const first = steps[0] as ChainStep;
    const path = join(t.dir, 'b.qcow2');
    const r = await cli([...base(), '--backup', first.record.id, '--disk', 'vdb', '--format', 'qcow2', '--output', path]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^vdb: 1\\.00 MiB restored to ${path} \\(qcow2\\), \\d+ chunks, .* written in .* s \\(\\d+ MB/s\\)\\nrestored backup ${first.record.id} of web\\n$`));
  });

  test('an existing output without --force, then with it', async () => {
    const path = join(t.dir, 'exists.raw');
    writeFileSync(path, 'x');
    expectOneLineError(await cli([...base(), '--disk', 'vda', '--output', path]), 'OUTPUT_EXISTS', /--force/);
    expect(readFileSync(path, 'utf8')).toBe('x');
    const r = await cli([...base(), '--disk', 'vda', '--output', path, '--force']);
    expect(r.code, r.stderr).toBe(0);
    expect(sha256(readFileSync(path))).toBe(sha256((steps[2] as ChainStep).images['vda'] as Buffer));
  });

  test('a missing chunk: one line naming chunk, disk and offset; exit 1', async () => {
    const last = steps[2] as ChainStep;
    const { Repository: Repo } = await import('../../src/store/index.js');
    const r0 = await Repo.open(repo.dir, { readOnly: true });
    const map = r0.resolveChunkMap(last.record.id, 'vda');
    await r0.close();
    let index = 0;
    while (map.kindAt(index) !== 2) index++;
    const hex = toHex(map.digestAt(index));
    const file = chunkPath(layout(repo.dir).chunks, hex);
    const saved = readFileSync(file);
    rmSync(file);
    try {
      const r = await cli([...base(), '--output', join(t.dir, 'broken')]);
      expectOneLineError(r, 'RESTORE_FAILED', new RegExp(`disk vda: chunk ${index} \\(byte offset ${index * CS}, digest ${hex}\\) is missing`));
    } finally {
      writeFileSync(file, saved);
    }
  });

  test('usage errors exit 2; wrong domain and unknown backup exit 1', async () => {
    const fmt = await cli([...base(), '--output', join(t.dir, 'x'), '--format', 'vmdk']);
    expect(fmt.code).toBe(2);
    expect(fmt.stderr).toBe("pullback: --format must be raw or qcow2, not 'vmdk'\n");
    expectOneLineError(await cli([...base(), '--backup', otherDomainBackup, '--output', join(t.dir, 'x')]), 'BACKUP_NOT_FOUND', /belongs to domain db, not web/);
    expectOneLineError(await cli([...base(), '--backup', 'nope', '--output', join(t.dir, 'x')]), 'BACKUP_NOT_FOUND', /no backup nope/);
    expectOneLineError(
      await cli(['restore', '--repo', repo.dir, '--domain', 'nobody', '--output', join(t.dir, 'x')]),
      'BACKUP_NOT_FOUND',
      /domain nobody has no complete backup/,
    );
  });
});
