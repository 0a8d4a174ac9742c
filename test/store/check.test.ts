// `check` finds a flipped byte (with --read-data) and a deleted chunk file, names each bad
// chunk with every backup and disk it affects (including incrementals that inherit it and
// other domains that share it by dedup), and the CLI exits non-zero on any problem.
import { execFile } from 'node:child_process';
import { openSync, closeSync, readSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { chunkPath } from '../../src/store/layout.js';
import type { Repository } from '../../src/store/index.js';
import { KiB, quietInit, seededChunk, tempDir, textChunk } from './helpers.js';

const run = promisify(execFile);
const BIN = new URL('../../bin/pullback', import.meta.url).pathname;
const CS = 64 * KiB;

let t: ReturnType<typeof tempDir>;
let repo: Repository;
let dir: string;
const ids: Record<string, string> = {};
/** hex of: a raw chunk shared by vm1 full vda and vm2 full vda; a compressed chunk of vm1 vdb; a chunk the incremental overrides. */
let shared = '';
let compressed = '';
let overridden = '';

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(BIN, args);
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

function flipByte(path: string, offset: number): void {
  const fd = openSync(path, 'r+');
  const b = Buffer.alloc(1);
  readSync(fd, b, 0, 1, offset);
  b[0] = (b[0] ?? 0) ^ 0x40;
  writeSync(fd, b, 0, 1, offset);
  closeSync(fd);
}

beforeAll(async () => {
  t = tempDir();
  dir = join(t.dir, 'repo');
  repo = await quietInit(dir, { chunkSize: CS });
  const full = await repo.beginBackup({
    domain: 'vm1', level: 'full', parentId: null, checkpoint: 'c1',
    disks: [{ name: 'vda', size: 4 * CS }, { name: 'vdb', size: 2 * CS }],
  });
  for (let i = 0; i < 4; i++) await full.ingest('vda', i, seededChunk(CS, 1, i));
  await full.ingest('vdb', 0, textChunk(CS, 5));
  await full.ingest('vdb', 1, seededChunk(CS, 2, 1));
  ids['full'] = (await full.complete()).id;
  const inc = await repo.beginBackup({ domain: 'vm1', level: 'incremental', parentId: ids['full'] as string, checkpoint: 'c2', disks: [{ name: 'vda', size: 4 * CS }, { name: 'vdb', size: 2 * CS }] });
  await inc.ingest('vda', 3, seededChunk(CS, 3, 3));
  ids['inc'] = (await inc.complete()).id;
  const vm2 = await repo.beginBackup({ domain: 'vm2', level: 'full', parentId: null, checkpoint: 'x', disks: [{ name: 'vda', size: 2 * CS }] });
  await vm2.ingest('vda', 0, seededChunk(CS, 1, 0)); // same as vm1 vda chunk 0: deduplicated
  await vm2.ingest('vda', 1, seededChunk(CS, 9, 1));
  ids['vm2'] = (await vm2.complete()).id;
  const m = repo.resolveChunkMap(ids['full'] as string, 'vda');
  const e0 = m.get(0);
  const e3 = m.get(3);
  const c0 = repo.resolveChunkMap(ids['full'] as string, 'vdb').get(0);
  if (e0.kind !== 'data' || e3.kind !== 'data' || c0.kind !== 'data') throw new Error('setup: expected data chunks');
  shared = e0.digest.toString('hex');
  overridden = e3.digest.toString('hex');
  compressed = c0.digest.toString('hex');
  expect((await repo.check({ readData: true })).ok).toBe(true);
});

afterAll(async () => {
  await repo?.close();
  t?.cleanup();
});

describe('check', () => {
  test('a flipped byte is found by --read-data and names every affected backup and disk', async () => {
    flipByte(chunkPath(join(dir, 'chunks'), shared), 12 + 1000);
    flipByte(chunkPath(join(dir, 'chunks'), compressed), 40);
    // Structure alone cannot see it (same size): that is what --read-data is for.
    expect((await repo.check()).ok).toBe(true);
    const r = await repo.check({ readData: true });
    expect(r.ok).toBe(false);
    const byDigest = new Map(r.problems.map((p) => [p.digest, p]));
    const p1 = byDigest.get(shared);
    expect(p1?.kind).toBe('chunk-corrupt');
    expect(p1?.affects).toEqual(expect.arrayContaining([
      { backup: ids['full'], disk: 'vda' },
      { backup: ids['inc'], disk: 'vda' },
      { backup: ids['vm2'], disk: 'vda' },
    ]));
    expect(p1?.affects).toHaveLength(3);
    expect(p1?.message).toMatch(/content hashes to [0-9a-f]{64}/);
    const p2 = byDigest.get(compressed);
    expect(p2?.kind).toBe('chunk-corrupt');
    expect(p2?.affects).toEqual([{ backup: ids['full'], disk: 'vdb' }, { backup: ids['inc'], disk: 'vdb' }]);
    expect(r.problems).toHaveLength(2);
    await expect(repo.readChunk(shared)).rejects.toMatchObject({ code: 'CHUNK_CORRUPT' });

    const out = await cli('check', '--repo', dir, '--read-data');
    expect(out.code).toBe(1);
    expect(out.stdout).toContain(`chunk-corrupt: chunk ${shared}`);
    expect(out.stdout).toContain(`${ids['vm2']}:vda`);
    expect(out.stdout).toContain('2 problem(s) found');
    expect(out.stderr).toMatch(/^pullback: error \[REPO_CORRUPT\]: check found 2 problem\(s\) in repository .*\n$/);
    // Restore the bytes for the next test.
    flipByte(chunkPath(join(dir, 'chunks'), shared), 12 + 1000);
    flipByte(chunkPath(join(dir, 'chunks'), compressed), 40);
    expect((await repo.check({ readData: true })).ok).toBe(true);
  });

  test('a deleted chunk file is found without --read-data; the overriding incremental is not affected', async () => {
    unlinkSync(chunkPath(join(dir, 'chunks'), overridden));
    const r = await repo.check();
    expect(r.ok).toBe(false);
    expect(r.problems).toHaveLength(1);
    expect(r.problems[0]).toMatchObject({ kind: 'chunk-missing', digest: overridden, affects: [{ backup: ids['full'], disk: 'vda' }] });
    await expect(repo.readChunk(overridden)).rejects.toMatchObject({ code: 'CHUNK_MISSING' });

    const out = await cli('check', '--repo', dir, '--json');
    expect(out.code).toBe(1);
    const report = JSON.parse(out.stdout) as { ok: boolean; problems: Array<{ kind: string; digest: string }> };
    expect(report.ok).toBe(false);
    expect(report.problems.map((p) => [p.kind, p.digest])).toEqual([['chunk-missing', overridden]]);
    expect(out.stderr).not.toMatch(/\n\s+at /);
  });
});
