// Restoring onto a block device (a loop device over a file full of garbage): every zero or
// absent range of the backup must be written as zeros, never left holding the old bytes;
// raw and qcow2; --force is required; a device that is too small is refused.
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { PullbackError } from '../../src/errors.js';
import { restoreBackup } from '../../src/restore/index.js';
import type { Repository } from '../../src/store/index.js';
import { KiB, MiB, quietInit, tempDir } from '../store/helpers.js';
import { buildChain, sha256, type ChainStep } from './chain.js';

const run = promisify(execFile);
const CS = 64 * KiB;
const SIZE = 2 * MiB;

let t: ReturnType<typeof tempDir>;
let repo: Repository;
let last: ChainStep;
const loops: string[] = [];

/** A loop device over a new file of `size` bytes of 0xAA (the "stale data"). */
async function garbageDevice(name: string, size: number): Promise<string> {
  const file = join(t.dir, name);
  writeFileSync(file, Buffer.alloc(size, 0xaa));
  const { stdout } = await run('losetup', ['--find', '--show', file]);
  const dev = stdout.trim();
  loops.push(dev);
  return dev;
}

beforeAll(async () => {
  t = tempDir('pullback-restore-dev-');
  repo = await quietInit(join(t.dir, 'repo'), { chunkSize: CS });
  const steps = await buildChain(repo, { domain: 'vm1', disks: [{ name: 'vda', size: SIZE }], incrementals: 3, seed: 23 });
  last = steps[steps.length - 1] as ChainStep;
  const counts = repo.resolveChunkMap(last.record.id, 'vda').counts();
  // The point of the test: the backup has zeros where the device has garbage.
  expect(counts.zero + counts.absent).toBeGreaterThan(2);
});
afterAll(async () => {
  for (const dev of loops) await run('losetup', ['--detach', dev]).catch(() => undefined);
  await repo?.close();
  t?.cleanup();
});

describe('block device output', () => {
  test('raw: zeros are written over stale data; --force required; --verify passes', async () => {
    const dev = await garbageDevice('raw.img', SIZE);
    const e = await restoreBackup(repo, { backupId: last.record.id, disks: ['vda'], output: dev, format: 'raw' }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(PullbackError);
    expect((e as PullbackError).code).toBe('OUTPUT_EXISTS');
    expect((e as PullbackError).message).toContain(`block device ${dev}`);
    expect(readFileSync(dev).every((b) => b === 0xaa)).toBe(true);

    const r = await restoreBackup(repo, { backupId: last.record.id, disks: ['vda'], output: dev, format: 'raw', force: true, verify: true });
    expect(r.disks[0]?.path).toBe(dev);
    // Data chunks plus explicit zeros: the whole disk was written.
    expect(r.disks[0]?.bytesWritten).toBe(SIZE);
    expect(sha256(readFileSync(dev))).toBe(sha256(last.images['vda'] as Buffer));
  });

  test('qcow2 onto a larger device: unallocated clusters read as zeros whatever the device held', async () => {
    const dev = await garbageDevice('qcow2.img', 2 * SIZE);
    await restoreBackup(repo, { backupId: last.record.id, disks: ['vda'], output: dev, format: 'qcow2', force: true, verify: true });
    await run('qemu-img', ['check', '-f', 'qcow2', dev]);
    const raw = join(t.dir, 'from-dev.raw');
    await run('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', dev, raw]);
    expect(sha256(readFileSync(raw))).toBe(sha256(last.images['vda'] as Buffer));
  });

  test('a device smaller than the disk is refused before anything is written', async () => {
    const dev = await garbageDevice('small.img', SIZE / 2);
    const e = await restoreBackup(repo, { backupId: last.record.id, disks: ['vda'], output: dev, format: 'raw', force: true }).catch((x: unknown) => x);
    expect((e as PullbackError).code).toBe('RESTORE_FAILED');
    expect((e as PullbackError).message).toMatch(/too small/);
    expect(readFileSync(dev).every((b) => b === 0xaa)).toBe(true);
  });
});
