// Restores that must fail, and what they must leave behind: a missing or corrupt chunk stops
// the restore with an error naming backup, disk, chunk, offset and digest and leaves no output;
// an existing output is kept without force and replaced with it; an abort or a failed
// --verify leaves nothing; a read-back mismatch is caught by --verify.
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { PullbackError } from '../../src/errors.js';
import { restoreBackup, type RestoreOptions } from '../../src/restore/index.js';
import { planDisk } from '../../src/restore/plan.js';
import { dataChunkOffset, qcow2Layout } from '../../src/restore/qcow2-layout.js';
import type { Repository } from '../../src/store/index.js';
import { toHex } from '../../src/store/hash.js';
import { chunkPath, layout } from '../../src/store/layout.js';
import { KiB, MiB, quietInit, tempDir } from '../store/helpers.js';
import { buildChain, sha256, type ChainStep } from './chain.js';

const CS = 64 * KiB;
let t: ReturnType<typeof tempDir>;
let repo: Repository;
let steps: ChainStep[];
let last: ChainStep;
let n = 0;

beforeAll(async () => {
  t = tempDir('pullback-restore-errors-');
  repo = await quietInit(join(t.dir, 'repo'), { chunkSize: CS });
  steps = await buildChain(repo, {
    domain: 'vm1',
    disks: [
      { name: 'vda', size: 2 * MiB },
      { name: 'vdb', size: MiB + 512 },
    ],
    incrementals: 2,
    seed: 5,
  });
  last = steps[steps.length - 1] as ChainStep;
});
afterAll(async () => {
  await repo?.close();
  t?.cleanup();
});

const fresh = (): string => join(t.dir, `out-${++n}`);

async function failure(opts: RestoreOptions): Promise<PullbackError> {
  const e = await restoreBackup(repo, opts).then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(PullbackError);
  return e as PullbackError;
}

/**
 * The nth data chunk of `disk` at the last backup whose digest occurs nowhere else in that
 * backup (a shared digest would make the error name its first occurrence instead).
 */
function dataChunk(disk: string, nth: number): { index: number; offset: number; hex: string; file: string } {
  const count = new Map<string, number>();
  for (const d of ['vda', 'vdb']) {
    const p = planDisk(repo.resolveChunkMap(last.record.id, d));
    for (const i of p.data) {
      const h = toHex(p.map.digestAt(i));
      count.set(h, (count.get(h) ?? 0) + 1);
    }
  }
  const plan = planDisk(repo.resolveChunkMap(last.record.id, disk));
  const unique = [...plan.data].filter((i) => count.get(toHex(plan.map.digestAt(i))) === 1);
  const index = unique[nth] as number;
  const hex = toHex(plan.map.digestAt(index));
  return { index, offset: index * CS, hex, file: chunkPath(layout(repo.dir).chunks, hex) };
}

/** Runs `fn` with the chunk file changed by `mutate` (undefined: deleted), then puts it back. */
async function withChunk(file: string, mutate: ((b: Buffer) => Buffer) | undefined, fn: () => Promise<void>): Promise<void> {
  const saved = readFileSync(file);
  try {
    if (mutate === undefined) {
      const { rmSync } = await import('node:fs');
      rmSync(file);
    } else {
      writeFileSync(file, mutate(Buffer.from(saved)));
    }
    await fn();
  } finally {
    writeFileSync(file, saved);
  }
}

describe('bad chunks stop the restore', () => {
  test('a missing chunk: error names backup, disk, chunk, offset and digest; no output is left', async () => {
    const c = dataChunk('vdb', 3);
    const out = fresh();
    await withChunk(c.file, undefined, async () => {
      const e = await failure({ backupId: last.record.id, output: out, format: 'raw' });
      expect(e.code).toBe('RESTORE_FAILED');
      expect((e.cause as PullbackError).code).toBe('CHUNK_MISSING');
      expect(e.message).toContain(`backup ${last.record.id} disk vdb`);
      expect(e.message).toContain(`chunk ${c.index} (byte offset ${c.offset}, digest ${c.hex})`);
      expect(e.message).toMatch(/is missing from repository/);
      // vda was complete before vdb failed: it must not be kept either (all or nothing).
      expect(existsSync(out)).toBe(false);
    });
  });

  test('a corrupt chunk (one flipped byte): CHUNK_CORRUPT, no output; the same chunk restores again once repaired', async () => {
    const c = dataChunk('vda', 5);
    const out = fresh();
    mkdirSync(out);
    await withChunk(
      c.file,
      (b) => {
        b[b.length - 1] = (b[b.length - 1] as number) ^ 0xff;
        return b;
      },
      async () => {
        const e = await failure({ backupId: last.record.id, output: out, format: 'qcow2' });
        expect(e.code).toBe('RESTORE_FAILED');
        expect((e.cause as PullbackError).code).toBe('CHUNK_CORRUPT');
        expect(e.message).toContain(`disk vda: chunk ${c.index} (byte offset ${c.offset}, digest ${c.hex}) is corrupt`);
        // The directory existed before: it stays, empty.
        expect(readdirSync(out)).toEqual([]);
      },
    );
    const r = await restoreBackup(repo, { backupId: last.record.id, output: out, format: 'raw' });
    expect(r.disks.map((d) => d.name)).toEqual(['vda', 'vdb']);
  });

  test('a chunk file that is not a chunk at all', async () => {
    const c = dataChunk('vdb', 0);
    await withChunk(c.file, () => Buffer.from('garbage'), async () => {
      const e = await failure({ backupId: last.record.id, disks: ['vdb'], output: join(t.dir, 'garbage.raw'), format: 'raw' });
      expect((e.cause as PullbackError).code).toBe('CHUNK_CORRUPT');
      expect(e.message).toContain(`chunk ${c.index}`);
      expect(existsSync(join(t.dir, 'garbage.raw'))).toBe(false);
    });
  });
});

describe('existing outputs', () => {
  test('not overwritten without force; replaced with force; kept when a forced restore fails', async () => {
    const path = join(t.dir, 'existing.raw');
    writeFileSync(path, 'precious');
    const e = await failure({ backupId: last.record.id, disks: ['vda'], output: path, format: 'raw' });
    expect(e.code).toBe('OUTPUT_EXISTS');
    expect(e.message).toContain(path);
    expect(e.message).toContain('--force');
    expect(readFileSync(path, 'utf8')).toBe('precious');

    const c = dataChunk('vda', 1);
    await withChunk(c.file, undefined, async () => {
      const f = await failure({ backupId: last.record.id, disks: ['vda'], output: path, format: 'raw', force: true });
      expect((f.cause as PullbackError).code).toBe('CHUNK_MISSING');
    });
    expect(readFileSync(path, 'utf8')).toBe('precious');
    expect(readdirSync(t.dir).filter((f) => f.includes('pullback-tmp'))).toEqual([]);

    await restoreBackup(repo, { backupId: last.record.id, disks: ['vda'], output: path, format: 'raw', force: true });
    expect(sha256(readFileSync(path))).toBe(sha256(last.images['vda'] as Buffer));
  });

  test('a directory in place of a file, and a file in place of the output directory', async () => {
    const dir = fresh();
    mkdirSync(dir);
    const e = await failure({ backupId: last.record.id, disks: ['vda'], output: dir, format: 'raw', force: true });
    expect(e.code).toBe('OUTPUT_EXISTS');
    expect(e.message).toMatch(/is a directory/);
    const file = join(t.dir, 'plain-file');
    writeFileSync(file, 'x');
    const f = await failure({ backupId: last.record.id, output: file, format: 'raw' });
    expect(f.code).toBe('OUTPUT_EXISTS');
    expect(f.message).toMatch(/not a directory/);
  });

  test('in directory mode one existing disk image stops everything before anything is written', async () => {
    const out = fresh();
    mkdirSync(out);
    writeFileSync(join(out, 'vdb.raw'), 'old');
    const e = await failure({ backupId: last.record.id, output: out, format: 'raw' });
    expect(e.code).toBe('OUTPUT_EXISTS');
    expect(readdirSync(out)).toEqual(['vdb.raw']);
  });
});

describe('abort and verify', () => {
  test('aborting mid-restore: ABORTED, no temporary file left', async () => {
    const out = fresh();
    const ac = new AbortController();
    let events = 0;
    const e = await failure({
      backupId: last.record.id,
      output: out,
      format: 'raw',
      signal: ac.signal,
      workers: 1,
      onProgress: () => {
        if (++events === 3) ac.abort();
      },
    });
    expect(e.code).toBe('ABORTED');
    expect(existsSync(out)).toBe(false);
  });

  for (const format of ['raw', 'qcow2'] as const) {
    test(`--verify catches an image changed after it was written (${format})`, async () => {
      const out = fresh();
      const c = dataChunk('vdb', 2);
      const plan = planDisk(repo.resolveChunkMap(last.record.id, 'vdb'));
      const rank = plan.data.indexOf(c.index);
      const hostOffset = format === 'raw' ? c.offset : dataChunkOffset(qcow2Layout(plan), rank);
      let tampered = false;
      const e = await failure({
        backupId: last.record.id,
        disks: ['vdb'],
        output: out,
        format,
        verify: true,
        onProgress: (p) => {
          if (p.phase !== 'verify' || tampered) return;
          tampered = true;
          // The image is written and flushed; change one byte of chunk c in the temporary file.
          const tmp = `${out}.pullback-tmp-${process.pid}`;
          const fs = readFileSync(tmp);
          fs[hostOffset + 100] = (fs[hostOffset + 100] as number) ^ 1;
          writeFileSync(tmp, fs);
        },
      });
      expect(tampered).toBe(true);
      expect(e.code).toBe('RESTORE_FAILED');
      expect(e.message).toContain(`verifying disk vdb of backup ${last.record.id}`);
      expect(e.message).toContain(`chunk ${c.index} (byte offset ${c.offset}, digest ${c.hex})`);
      expect(existsSync(out)).toBe(false);
      expect(existsSync(`${out}.pullback-tmp-${process.pid}`)).toBe(false);
    });
  }

  test('--verify passes on an untouched image', async () => {
    const r = await restoreBackup(repo, { backupId: last.record.id, output: fresh(), format: 'qcow2', verify: true });
    expect(r.verified).toBe(true);
  });
});

describe('what cannot be restored', () => {
  test('unknown backup, unknown disk, unknown format', async () => {
    expect((await failure({ backupId: 'nope', output: fresh(), format: 'raw' })).code).toBe('BACKUP_NOT_FOUND');
    const d = await failure({ backupId: last.record.id, disks: ['vdz'], output: fresh(), format: 'raw' });
    expect(d.code).toBe('BACKUP_NOT_FOUND');
    expect(d.message).toContain('vda, vdb');
    expect((await failure({ backupId: last.record.id, output: fresh(), format: 'vmdk' as 'raw' })).code).toBe('USAGE');
  });

  test('a failed backup cannot be restored', async () => {
    const w = await repo.beginBackup({ domain: 'vm1', level: 'incremental', parentId: last.record.id, checkpoint: 'x', disks: [{ name: 'vda', size: 2 * MiB }] });
    await w.fail('test');
    const e = await failure({ backupId: w.id, output: fresh(), format: 'raw' });
    expect(e.code).toBe('BACKUP_NOT_FOUND');
    expect(e.message).toMatch(/failed, not complete/);
  });

  test('qcow2 of a disk whose size is not a multiple of 512 is refused up front; raw works', async () => {
    const w = await repo.beginBackup({ domain: 'odd', level: 'full', parentId: null, checkpoint: 'c', disks: [{ name: 'vda', size: 100_000 }] });
    await w.ingest('vda', 0, Buffer.alloc(CS, 7));
    await w.ingest('vda', 1, Buffer.alloc(100_000 - CS, 9));
    const rec = await w.complete();
    const out = fresh();
    const e = await failure({ backupId: rec.id, output: out, format: 'qcow2' });
    expect(e.message).toMatch(/not a multiple of 512/);
    expect(existsSync(out)).toBe(false);
    const r = await restoreBackup(repo, { backupId: rec.id, output: out, format: 'raw', verify: true });
    const content = readFileSync(r.disks[0]?.path as string);
    expect(content.length).toBe(100_000);
    expect(content.subarray(0, CS).every((b) => b === 7) && content.subarray(CS).every((b) => b === 9)).toBe(true);
  });
});
