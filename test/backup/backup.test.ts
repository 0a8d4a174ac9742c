// Backups of real libvirt domains with real checkpoints: full, incrementals, writes during
// the job, a raw disk beside qcow2 disks, a shut-off domain, and that every backup restores
// to exactly what the guest had when the backup began.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBackup, type BackupResult } from '../../src/backup/run.js';
import { restoreBackup } from '../../src/restore/index.js';
import { Repository } from '../../src/store/index.js';
import { createTestDomain, sha256File, type TestDomain } from '../helpers/domain.js';

const MiB = 1024 * 1024;
const CHUNK = MiB;

describe('backup of a running domain with qcow2 and raw disks', () => {
  let dom: TestDomain;
  let work: string;
  let repo: Repository;
  const logs: string[] = [];
  /** backup id -> disk -> sha256 the guest had when the backup began */
  const expected = new Map<string, Record<string, string>>();
  const results: BackupResult[] = [];

  const backup = async (extra: Partial<Parameters<typeof runBackup>[0]> = {}): Promise<BackupResult> => {
    const r = await runBackup(
      { domain: dom.name, scratchDir: join(work, 'scratch'), log: (m) => logs.push(m), ...extra },
      { libvirt: dom.libvirt, repo },
    );
    results.push(r);
    return r;
  };
  const shas = async (): Promise<Record<string, string>> => {
    const out: Record<string, string> = {};
    for (const d of dom.disks) out[d.target] = await dom.referenceSha256(d.target);
    return out;
  };

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'pullback-backup-'));
    dom = await createTestDomain({
      disks: [{ size: 24 * MiB }, { size: 16 * MiB + 512 }, { size: 8 * MiB, format: 'raw' }],
    });
    repo = await Repository.init(join(work, 'repo'), { chunkSize: CHUNK, onWarning: (m) => logs.push(m) });
  });
  afterAll(async () => {
    await repo?.close();
    await dom?.destroy();
    await rm(work, { recursive: true, force: true });
  });

  it('full backup: guest writes made while the job runs do not leak in', async () => {
    await dom.writeRandom('vda', 0, 3 * MiB, 1);
    await dom.writeRandom('vda', 10 * MiB + 4096, 70_000, 2);
    await dom.writeRandom('vdb', 16 * MiB + 512 - 1000, 1000, 3); // the very end of an odd-sized disk
    await dom.writeRandom('vdc', MiB, MiB, 4);
    const before = await shas();
    const r = await backup({
      afterJobStart: async () => {
        await dom.writeRandom('vda', 0, 64 * 1024, 5);
        await dom.writeRandom('vdb', 0, 2 * MiB, 6);
      },
    });
    expected.set(r.id, before);
    expect(r.level).toBe('full');
    expect(r.reason).toContain('no complete backup');
    expect(r.checkpoint).toBe(`pullback.${r.id}`);
    expect(await dom.libvirt.checkpointList(dom.name)).toEqual([r.checkpoint]);
    // Full reads allocated data only: vda has 3 MiB + the chunk holding the 70 kB write.
    expect(r.disks.find((d) => d.name === 'vda')?.bytesRead).toBe(4 * MiB);
    // The 1000 bytes at the end of vdb straddle chunk 15 and the 512-byte last chunk 16.
    expect(r.disks.find((d) => d.name === 'vdb')?.bytesRead).toBe(MiB + 512);
    expect(logs.some((l) => l.includes('disk vdc: raw image has no dirty bitmaps'))).toBe(true);
  });

  it('incrementals read only dirty chunks and record zeroed chunks', async () => {
    // Since the full: vda chunk 0 and vdb chunks 0-1 were written during the full's job.
    await dom.writeRandom('vda', 5 * MiB + 100, 200, 7); // dirties chunk 5
    await dom.writeZeroes('vda', MiB, 2 * MiB, { unmap: true }); // chunks 1-2: data -> zero, not read
    // A zero write inside a chunk whose rest holds data: the chunk is read, its data kept.
    await dom.writeZeroes('vda', 10 * MiB + 65536, 65536); // chunk 10 (holds the earlier 70 kB write)
    const before = await shas();
    const r = await backup();
    expected.set(r.id, before);
    expect(r.level).toBe('incremental');
    expect(r.parent).toBe(results[0]?.id);
    const vda = r.disks.find((d) => d.name === 'vda');
    const vdb = r.disks.find((d) => d.name === 'vdb');
    expect(vda?.bytesRead).toBe(3 * MiB); // chunks 0, 5 and 10
    expect(vdb?.bytesRead).toBe(2 * MiB); // chunks 0 and 1
    // Housekeeping: only the newest checkpoint is left.
    expect(await dom.libvirt.checkpointList(dom.name)).toEqual([r.checkpoint]);
  });

  it('an incremental with nothing changed reads nothing from the qcow2 disks', async () => {
    const before = await shas();
    const r = await backup();
    expected.set(r.id, before);
    expect(r.level).toBe('incremental');
    expect(r.disks.find((d) => d.name === 'vda')?.bytesRead).toBe(0);
    expect(r.disks.find((d) => d.name === 'vdb')?.bytesRead).toBe(0);
  });

  it('more incrementals, including a write at the last byte and a raw-disk change', async () => {
    for (let i = 0; i < 3; i++) {
      await dom.writeRandom('vda', (7 + i) * MiB + 4096 * i, 8192, 20 + i);
      await dom.writeRandom('vdb', 16 * MiB + 511, 1, 30 + i);
      await dom.writeRandom('vdc', 4 * MiB + i * 100_000, 50_000, 40 + i);
      const before = await shas();
      const r = await backup();
      expected.set(r.id, before);
      expect(r.level).toBe('incremental');
      expect(r.disks.find((d) => d.name === 'vda')?.bytesRead).toBe(CHUNK);
    }
  });

  it('a shut-off domain is backed up from its images without starting it', async () => {
    await dom.shutdown();
    await dom.writeRandom('vda', 20 * MiB, MiB, 50); // offline write: recorded in the bitmap
    const before = await shas();
    const r = await backup();
    expected.set(r.id, before);
    expect(r.mode).toBe('offline');
    expect(r.level).toBe('incremental');
    expect(await dom.isRunning()).toBe(false);
    expect(r.disks.find((d) => d.name === 'vda')?.bytesRead).toBe(MiB);
    expect(logs.some((l) => l.includes('is shut off: incremental backup'))).toBe(true);
    await dom.start();
    await dom.writeRandom('vdb', 3 * MiB, 4096, 51);
    const before2 = await shas();
    const r2 = await backup();
    expected.set(r2.id, before2);
    expect(r2.mode).toBe('live');
    expect(r2.level).toBe('incremental');
  });

  it('every backup restores to the guest content at its instant (raw and qcow2)', async () => {
    expect(expected.size).toBeGreaterThanOrEqual(7);
    let n = 0;
    for (const [id, want] of expected) {
      const format = n++ % 2 === 0 ? 'raw' : 'qcow2';
      const out = join(work, `restore-${id}`);
      await restoreBackup(repo, { backupId: id, output: out, format });
      for (const [disk, sha] of Object.entries(want)) {
        let file = join(out, `${disk}.${format}`);
        if (format === 'qcow2') {
          const raw = join(out, `${disk}.raw`);
          const { execFileSync } = await import('node:child_process');
          execFileSync('qemu-img', ['convert', '-O', 'raw', file, raw]);
          file = raw;
        }
        expect({ id, disk, sha: await sha256File(file) }).toEqual({ id, disk, sha });
      }
      await rm(out, { recursive: true, force: true });
    }
  });
});
