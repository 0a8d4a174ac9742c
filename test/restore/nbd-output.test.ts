// `pullback restore --output nbd+unix://...`: a backup restored into a live NBD export served by
// qemu-nbd (raw and qcow2 images behind it). The export starts full of other data, so every
// range the backup has as zeros must be overwritten too; the image behind the export must
// then hold exactly the guest content at that backup (sha256), for the newest backup and for
// an older one of the chain. Refusals: a read-only export, an export too small, qcow2 format,
// several disks, --define.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Repository } from '../../src/store/index.js';
import { startNbdkit, startQemuNbd, type RunningServer } from '../nbd/servers.js';
import { KiB, MiB, quietInit, tempDir } from '../store/helpers.js';
import { buildChain, sha256, type ChainStep } from './chain.js';
import { cli, type CliResult } from './cli-run.js';

const run = promisify(execFile);
const CS = 64 * KiB;
// Not a multiple of the chunk size: the short last chunk goes out as one unaligned-length write
// that ends exactly at the disk's end.
const VDA = 2 * MiB + 3 * 4096;
let t: ReturnType<typeof tempDir>;
let repo: Repository;
let steps: ChainStep[];

beforeAll(async () => {
  t = tempDir('pullback-restore-nbd-');
  repo = await quietInit(join(t.dir, 'repo'), { chunkSize: CS });
  steps = await buildChain(repo, {
    domain: 'web',
    disks: [
      { name: 'vda', size: VDA },
      { name: 'vdb', size: MiB },
    ],
    incrementals: 3,
    seed: 11,
  });
  await repo.close();
});
afterAll(() => t?.cleanup());

/** qemu-nbd serving `image` writable (or read-only) on a unix socket, one client at a time (its default). */
const serve = (image: string, format: 'raw' | 'qcow2', name: string, readOnly = false): Promise<RunningServer> =>
  startQemuNbd(t.dir, image, { format, name, writable: !readOnly, shared: 1 });

/** A raw image of `size` bytes full of random bytes: what a reused volume holds. */
function dirtyRaw(name: string, size: number): string {
  const path = join(t.dir, name);
  writeFileSync(path, randomBytes(size));
  return path;
}

const restoreTo = (uri: string, extra: string[] = []): Promise<CliResult> =>
  cli(['restore', '--repo', repo.dir, '--domain', 'web', '--disk', 'vda', '--output', uri, ...extra]);

function expectOneLineError(r: CliResult, code: string, pattern: RegExp): void {
  expect(r.code, r.stderr).toBe(1);
  expect(r.stderr).toMatch(new RegExp(`^pullback: error \\[${code}\\]: .*\\n$`));
  expect(r.stderr).toMatch(pattern);
}

/** Usage errors: exit 2, one line, no error code. */
function expectUsage(r: CliResult, pattern: RegExp): void {
  expect(r.code, r.stderr).toBe(2);
  expect(r.stderr).toMatch(/^pullback: [^\n]*\n$/);
  expect(r.stderr).toMatch(pattern);
}

describe('restore into an NBD export', () => {
  test('raw image behind qemu-nbd, full of old data: latest backup, --verify, --json', async () => {
    const image = dirtyRaw('raw-target.img', VDA);
    const exp = await serve(image, 'raw', 'raw');
    let r: CliResult;
    try {
      r = await restoreTo(exp.uri, ['--verify', '--json']);
    } finally {
      await exp.stop();
    }
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    const j = JSON.parse(r.stdout) as { restore: { verified: boolean; disks: Array<{ name: string; path: string; format: string; size: number }> } };
    expect(j.restore.verified).toBe(true);
    expect(j.restore.disks).toMatchObject([{ name: 'vda', path: exp.uri, format: 'raw', size: VDA }]);
    const want = (steps[3] as ChainStep).images['vda'] as Buffer;
    expect(sha256(readFileSync(image))).toBe(sha256(want));
  });

  test('an older backup of the chain into a qcow2 image behind qemu-nbd', async () => {
    const image = join(t.dir, 'target.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', image, String(VDA)]);
    // Old data everywhere first, so zeros in the backup must be written.
    const fill = await serve(image, 'qcow2', 'fill');
    try {
      const r = await restoreTo(fill.uri, ['--backup', (steps[3] as ChainStep).record.id]);
      expect(r.code, r.stderr).toBe(0);
    } finally {
      await fill.stop();
    }
    const exp = await serve(image, 'qcow2', 'qcow2');
    let r: CliResult;
    try {
      r = await restoreTo(exp.uri, ['--backup', (steps[1] as ChainStep).record.id, '--verify']);
    } finally {
      await exp.stop();
    }
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/vda: .* restored to nbd\+unix:\/\/\/\?socket=.* \(raw\)/);
    const raw = join(t.dir, 'target-converted.raw');
    await run('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', image, raw]);
    const want = (steps[1] as ChainStep).images['vda'] as Buffer;
    expect(sha256(readFileSync(raw))).toBe(sha256(want));
    // The two backups differ, so this is not the first restore's content left in place.
    expect(sha256(want)).not.toBe(sha256((steps[3] as ChainStep).images['vda'] as Buffer));
  });

  test('refusals: read-only export, export too small, qcow2, several disks, --define', async () => {
    const image = dirtyRaw('ro.img', VDA);
    const before = sha256(readFileSync(image));
    const ro = await serve(image, 'raw', 'ro', true);
    try {
      expectOneLineError(await restoreTo(ro.uri), 'RESTORE_FAILED', /read-only/);
    } finally {
      await ro.stop();
    }
    expect(sha256(readFileSync(image))).toBe(before);

    const small = dirtyRaw('small.img', VDA - 4096);
    const sm = await serve(small, 'raw', 'small');
    try {
      expectOneLineError(await restoreTo(sm.uri), 'RESTORE_FAILED', new RegExp(`holds ${VDA - 4096} bytes, too small for disk vda \\(${VDA} bytes`));
      expectUsage(await restoreTo(sm.uri, ['--format', 'qcow2']), /--format raw/);
      const all = await cli(['restore', '--repo', repo.dir, '--domain', 'web', '--output', sm.uri]);
      expectUsage(all, /receives one disk.* has 2: pick one with --disk/);
      const def = await cli(['restore', '--repo', repo.dir, '--domain', 'web', '--output', sm.uri, '--define', 'copy']);
      expectUsage(def, /--define needs .* not into an NBD export/);
    } finally {
      await sm.stop();
    }
    expectOneLineError(await restoreTo('nbd://'), 'NBD_URI', /invalid NBD URI/);
  });

  test("a disk that ends inside the server's minimum block, into a larger export, is refused before writing", async () => {
    const size = MiB + 512;
    const oddRepo = await quietInit(join(t.dir, 'repo-odd'), { chunkSize: CS });
    try {
      const w = await oddRepo.beginBackup({ domain: 'odd', level: 'full', parentId: null, checkpoint: 'c0', disks: [{ name: 'vda', size }] });
      await w.ingest('vda', 0, randomBytes(CS));
      for (let i = 1; i < Math.ceil(size / CS); i++) w.zero('vda', i);
      await w.complete();
    } finally {
      await oddRepo.close();
    }
    const exp = await startNbdkit(t.dir, 'policy4k', ['memory', String(2 * MiB), 'blocksize-minimum=4096', 'blocksize-error-policy=error'], {
      filters: ['blocksize-policy'],
    });
    try {
      const r = await cli(['restore', '--repo', join(t.dir, 'repo-odd'), '--domain', 'odd', '--disk', 'vda', '--output', exp.uri]);
      expectOneLineError(r, 'RESTORE_FAILED', new RegExp(`takes writes in multiples of 4096 bytes, and disk vda \\(${size} bytes\\) ends inside one; export a volume of exactly ${size} bytes$`, 'm'));
      expect(r.stderr).not.toMatch(/partly written/);
    } finally {
      await exp.stop();
    }
  });

  test('--verify catches an export that does not hold what was written, in data and in zeros', async () => {
    // nbdkit null discards writes and reads zeros (its extents say so): the data chunks differ.
    const nul = await startNbdkit(t.dir, 'null', ['null', String(VDA)]);
    try {
      const r = await restoreTo(nul.uri, ['--verify']);
      expectOneLineError(r, 'RESTORE_FAILED', /verifying disk vda of backup \S+ at nbd\+unix:.*: chunk at byte offset \d+ read back different from the backup \(NBD export .* may be partly written\)/);
    } finally {
      await nul.stop();
    }

    // A disk the backup has as all zeros, into an export that discards writes, reads 'A' and
    // reports no extents (so every byte counts as data): the zero ranges are read and differ.
    const blankRepo = await quietInit(join(t.dir, 'repo-blank'), { chunkSize: CS });
    try {
      const w = await blankRepo.beginBackup({ domain: 'blank', level: 'full', parentId: null, checkpoint: 'c0', disks: [{ name: 'vda', size: VDA }] });
      for (let i = 0; i < Math.ceil(VDA / CS); i++) w.zero('vda', i);
      await w.complete();
    } finally {
      await blankRepo.close();
    }
    const liar = await startNbdkit(t.dir, 'liar', [
      'eval',
      `get_size=echo ${VDA}`,
      'can_write=exit 0',
      'pwrite=cat >/dev/null',
      `pread=head -c "$3" /dev/zero | tr '\\0' A`,
    ]);
    try {
      const r = await cli(['restore', '--repo', join(t.dir, 'repo-blank'), '--domain', 'blank', '--disk', 'vda', '--output', liar.uri, '--verify']);
      expectOneLineError(r, 'RESTORE_FAILED', /verifying disk vda of backup \S+ at .*: bytes \d+\.\.\d+, which the backup has as zeros, read back different from the backup/);
    } finally {
      await liar.stop();
    }
  });
});
