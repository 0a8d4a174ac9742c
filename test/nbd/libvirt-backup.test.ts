// The NBD client against a real libvirt pull-mode backup export of a throwaway domain
// (test/helpers/domain.ts): a full backup with checkpoint cp0 read byte for byte over several
// connections, then an incremental one from cp0 whose dirty bitmap, read as
// qemu:dirty-bitmap:NAME and merged with base:allocation, must be exactly the granules the
// guest wrote since cp0.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildBackupXml, parseBackupXml } from '../../src/libvirt/backup-xml.js';
import { buildCheckpointXml } from '../../src/libvirt/checkpoint-xml.js';
import { VirshLibvirt } from '../../src/libvirt/virsh.js';
import {
  BASE_ALLOCATION,
  NbdClient,
  NbdPool,
  QEMU_DIRTY_BITMAP_PREFIX,
  getExtents,
  readSequential,
  type LabelledExtent,
} from '../../src/nbd/index.js';
import { createTestDomain, type TestDomain } from '../helpers/domain.js';
import { sha256 } from './servers.js';

const MiB = 1024 * 1024;
const GRANULE = 64 * 1024; // qcow2 cluster = default bitmap granularity
const SIZE = 16 * MiB + 512; // not a multiple of 4 KiB nor of the cluster

let dom: TestDomain;
let work: string;
const lv = new VirshLibvirt();

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'pb-nbd-libvirt-'));
  dom = await createTestDomain({ disks: [{ size: SIZE }] });
});

afterAll(async () => {
  await lv.jobAbort(dom.name).catch(() => undefined);
  await dom?.destroy();
  await rm(work, { recursive: true, force: true });
});

function backupXml(sock: string, incremental?: string): string {
  return buildBackupXml({
    ...(incremental === undefined ? {} : { incremental }),
    socket: sock,
    disks: [{ name: 'vda', backup: true as const, scratch: join(work, `vda.${Date.now()}.scratch`) }],
  });
}

function checkpointXml(name: string): string {
  return buildCheckpointXml({ name, description: `nbd test ${name}`, disks: [{ name: 'vda', checkpoint: true }] });
}

/** Runs `body` while a pull backup job exports vda; always ends the job. */
async function withBackup<T>(sock: string, incremental: string | undefined, checkpoint: string, body: (exportBitmap: string | null) => Promise<T>): Promise<T> {
  await lv.backupBegin(dom.name, backupXml(sock, incremental), checkpointXml(checkpoint));
  try {
    const job = parseBackupXml(await lv.backupDumpXml(dom.name));
    const disk = job.disks.find((d) => d.name === 'vda');
    expect(disk?.exportName).toBe('vda');
    return await body(disk?.exportBitmap ?? null);
  } finally {
    await lv.jobAbort(dom.name); // pull mode: the client ends the job
  }
}

async function sha256Of(pool: NbdPool): Promise<string> {
  const { createHash } = await import('node:crypto');
  const h = createHash('sha256');
  const zeros = Buffer.alloc(MiB);
  await readSequential(
    pool,
    (_o, length, data) => {
      if (data !== null) h.update(data);
      else for (let n = length; n > 0; n -= zeros.length) h.update(zeros.subarray(0, Math.min(n, zeros.length)));
    },
    { skipZeroes: true },
  );
  return h.digest('hex');
}

function dirtyRanges(extents: LabelledExtent[]): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const e of extents.filter((x) => x.dirty)) {
    const last = out[out.length - 1];
    if (last !== undefined && last[1] === e.offset) last[1] += e.length;
    else out.push([e.offset, e.offset + e.length]);
  }
  return out;
}

describe('libvirt pull-mode backup export', () => {
  it('full backup: reads the disk byte for byte over several connections', async () => {
    await dom.writeRandom('vda', 0, 2 * MiB + 123, 11);
    await dom.writeRandom('vda', 6 * MiB + 7, 100_000, 12);
    await dom.writeRandom('vda', SIZE - 4096, 4096, 13); // up to the last byte
    const sock = join(work, 'full.sock');
    await withBackup(sock, undefined, 'cp0', async (bitmap) => {
      expect(bitmap).toBeNull();
      const target = { socketPath: sock, exportName: 'vda' };
      const pool = await NbdPool.open(target, { connections: 4, metaContexts: [BASE_ALLOCATION] });
      try {
        expect(pool.size).toBe(SIZE);
        expect(pool.primary.canMultiConn).toBe(true);
        expect(pool.connections).toBe(4);
        expect(pool.primary.readOnly).toBe(true);
        expect(await sha256Of(pool)).toBe(await dom.referenceSha256('vda'));
        const tail = await pool.read(SIZE - 5000, 5000);
        const whole = await pool.read(0, SIZE);
        expect(sha256(tail)).toBe(sha256(whole.subarray(SIZE - 5000)));
        expect(sha256(whole)).toBe(await dom.referenceSha256('vda'));
        const ext = await getExtents(pool.primary);
        expect(ext.every((e) => e.dirty)).toBe(true);
        expect(ext.some((e) => e.kind === 'hole' || e.zero)).toBe(true); // never-written space
      } finally {
        await pool.close();
      }
    });
  });

  it('incremental backup: dirty extents are exactly the granules written since cp0', async () => {
    const writes: Array<[number, number]> = [
      [MiB + 4096, 60_000], // inside one granule
      [4 * MiB - 10, 20], // straddles a granule boundary
      [10 * MiB, 3 * GRANULE], // several granules
      [SIZE - 512, 512], // the last, partial granule
    ];
    for (const [i, [o, l]] of writes.entries()) await dom.writeRandom('vda', o, l, 100 + i);
    await dom.writeZeroes('vda', 12 * MiB, GRANULE);
    writes.push([12 * MiB, GRANULE]);
    const expected = writes
      .map(([o, l]): [number, number] => [Math.floor(o / GRANULE) * GRANULE, Math.min(Math.ceil((o + l) / GRANULE) * GRANULE, SIZE)])
      .sort((a, b) => a[0] - b[0]);

    const sock = join(work, 'inc.sock');
    await withBackup(sock, 'cp0', 'cp1', async (bitmap) => {
      expect(bitmap).not.toBeNull();
      const context = `${QEMU_DIRTY_BITMAP_PREFIX}${bitmap}`;
      const client = await NbdClient.connect({ socketPath: sock, exportName: 'vda' }, { metaContexts: [BASE_ALLOCATION, context] });
      try {
        const ext = await getExtents(client, { dirtyBitmap: context });
        expect(dirtyRanges(ext)).toEqual(expected);
        // The zeroed granule reads as zeros; data read from dirty ranges matches the reference.
        expect(ext.find((e) => e.offset <= 12 * MiB && 12 * MiB < e.offset + e.length)).toMatchObject({ dirty: true, zero: true });
        expect(sha256(await client.read(0, SIZE))).toBe(await dom.referenceSha256('vda'));
      } finally {
        await client.close();
      }
    });
  });
});
