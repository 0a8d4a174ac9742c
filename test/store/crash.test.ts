// kill -9 of a process in the middle of ingesting leaves a repository that passes check:
// every referenced chunk exists and hashes to its name, every chunk file on disk is whole,
// the dead backup is detected (with a message) and marked failed, and gc cleans up after it.
import { readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { Decompressor } from 'zstd-napi';
import { decodeChunk } from '../../src/store/codec.js';
import { digestOf, toHex } from '../../src/store/hash.js';
import { Repository } from '../../src/store/index.js';
import { chunkFiles, KiB, killChildren, quietInit, spawnChild, tempDir } from './helpers.js';

let t: ReturnType<typeof tempDir>;
beforeEach(() => {
  t = tempDir();
});
afterEach(async () => {
  await killChildren();
  t.cleanup();
});

/** Every chunk file decodes and hashes to its own name: none is half-written. */
function assertAllChunkFilesWhole(dir: string): number {
  const d = new Decompressor();
  const files = chunkFiles(dir);
  for (const f of files) {
    const plain = decodeChunk(readFileSync(f), d);
    expect(typeof plain, `${f} decodes`).not.toBe('string');
    expect(toHex(digestOf(plain as Buffer))).toBe(basename(f));
  }
  return files.length;
}

test('kill -9 mid-ingest (three kill points) leaves a repository that passes check', async () => {
  const dir = join(t.dir, 'repo');
  const init = await quietInit(dir, { chunkSize: 64 * KiB });
  await init.close();
  // A complete backup first, so the repository has something the crashes must not damage.
  const first = spawnChild(['ingest', dir, 'vm0', '40', '7']);
  await first.waitFor(/^complete /);
  expect((await first.exit).code).toBe(0);

  const childWarnings: string[] = [];
  for (const [i, killAt] of [5, 60, 150].entries()) {
    const c = spawnChild(['ingest', dir, `vm${i + 1}`, '400', String(100 + i), '20']);
    await c.waitFor(new RegExp(`^ingested ${killAt}$`));
    c.proc.kill('SIGKILL');
    expect((await c.exit).signal).toBe('SIGKILL');
    childWarnings.push(...c.lines.filter((l) => l.startsWith('warning ')));
  }

  const warnings: string[] = [];
  const repo = await Repository.open(dir, { onWarning: (m) => warnings.push(m) });
  try {
    // Each dead backup is found and marked failed with a message, by whichever process
    // opened the repository next (the next child, or this one for the last).
    const reaped = [...childWarnings, ...warnings].filter((w) => /left running: its process \(pid \d+ on host .*\) died/.test(w));
    expect(reaped).toHaveLength(3);
    expect(repo.listBackups({ status: 'failed' })).toHaveLength(3);
    expect(repo.listBackups({ status: 'running' })).toHaveLength(0);
    const report = await repo.check({ readData: true });
    expect(report.problems).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.chunksVerified).toBe(40);
    const before = assertAllChunkFilesWhole(dir);
    expect(before).toBeGreaterThan(40);

    // orphanGraceMs 0: also remove chunk files written but never indexed before the kill.
    const gc = await repo.gc({ orphanGraceMs: 0 });
    // Rows of a backup killed early may never have been committed: between 1 and 3 had rows.
    expect(gc.failedBackupsCleaned).toBeGreaterThanOrEqual(1);
    expect(gc.failedBackupsCleaned).toBeLessThanOrEqual(3);
    // Only the complete backup's 40 chunks remain referenced; the shared first 20 chunks of
    // the dead backups used seed 0, which the complete backup (seed 7) does not share.
    expect(gc.chunksKept).toBe(40);
    expect(gc.chunksDeleted).toBeGreaterThan(0);
    expect(assertAllChunkFilesWhole(dir)).toBe(40);
    expect(readdirSync(join(dir, 'tmp'))).toEqual([]);
    // The dead children's shared locks were reclaimed, loudly.
    expect(readdirSync(join(dir, 'locks'))).toEqual([]);
    expect(warnings.filter((w) => /removed stale shared lock .* dead process/.test(w))).toHaveLength(3);
    expect((await repo.check({ readData: true })).ok).toBe(true);
  } finally {
    await repo.close();
  }
});
