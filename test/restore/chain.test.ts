// Every backup of a chain (full + 6 incrementals, three disks, zeros over earlier data, absent
// chunks, dedup, a short last chunk) restores to exactly the guest content at that backup's
// instant, as raw and as qcow2; raw is sparse, qcow2 passes `qemu-img check`, and each chunk
// that reads back at the backup is written once however long the chain.
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { restoreBackup } from '../../src/restore/index.js';
import { checkOutput, OutputTarget } from '../../src/restore/output.js';
import { qcow2Layout } from '../../src/restore/qcow2-layout.js';
import { planDisk } from '../../src/restore/plan.js';
import type { Repository } from '../../src/store/index.js';
import { KiB, MiB, quietInit, tempDir } from '../store/helpers.js';
import { buildChain, sha256, type ChainStep } from './chain.js';

const run = promisify(execFile);
const CS = 64 * KiB;
const DISKS = [
  { name: 'vda', size: 3 * MiB + 4608 }, // short last chunk (4608 bytes)
  { name: 'vdb', size: 2 * MiB },
  { name: 'vdc', size: 40 * CS + 512 },
];

let t: ReturnType<typeof tempDir>;
let repo: Repository;
let steps: ChainStep[];

beforeAll(async () => {
  t = tempDir('pullback-restore-chain-');
  repo = await quietInit(join(t.dir, 'repo'), { chunkSize: CS });
  steps = await buildChain(repo, { domain: 'vm1', disks: DISKS, incrementals: 6, seed: 11 });
});
afterAll(async () => {
  await repo?.close();
  t?.cleanup();
});

describe('restore every backup of a chain', () => {
  test('the chain is what the test claims: 7 backups, incrementals record few chunks, zeros and absent chunks present', () => {
    expect(steps.map((s) => s.record.level)).toEqual(['full', ...Array(6).fill('incremental')]);
    const last = steps[6]?.record.id as string;
    const maps = DISKS.map((d) => repo.resolveChunkMap(last, d.name).counts());
    expect(maps.every((c) => c.data > 0 && c.zero + c.absent > 0)).toBe(true);
    expect(repo.resolveChunkMap(steps[0]?.record.id as string, 'vda').counts().absent).toBeGreaterThan(0);
  });

  for (const format of ['raw', 'qcow2'] as const) {
    test(`as ${format}: sha256 of every disk at every backup equals the guest content`, async () => {
      for (const [k, step] of steps.entries()) {
        const out = join(t.dir, `${format}-${k}`);
        const r = await restoreBackup(repo, { backupId: step.record.id, output: out, format, verify: k % 2 === 0 });
        expect(r.backup).toBe(step.record.id);
        expect(r.domain).toBe('vm1');
        expect(r.verified).toBe(k % 2 === 0);
        expect(readdirSync(out).sort()).toEqual(DISKS.map((d) => `${d.name}.${format}`));
        for (const d of r.disks) {
          const want = step.images[d.name] as Buffer;
          expect(d.path).toBe(join(out, `${d.name}.${format}`));
          expect(d.size).toBe(want.length);
          const plan = planDisk(repo.resolveChunkMap(step.record.id, d.name));
          // Written once: the resolved map's data chunks, not the chain's sum of ingests.
          expect(d.chunks).toBe(plan.data.length);
          let content: Buffer;
          if (format === 'raw') {
            expect(d.bytesWritten).toBe(plan.dataBytes);
            content = readFileSync(d.path);
            // Sparse: zero ranges take no space (allow one 4 KiB block of slack per data chunk).
            const st = statSync(d.path);
            expect(st.size).toBe(want.length);
            expect(st.blocks * 512).toBeLessThanOrEqual(plan.dataBytes + plan.data.length * 4096);
          } else {
            const layout = qcow2Layout(plan);
            expect(statSync(d.path).size).toBe(layout.fileSize);
            expect(statSync(d.path).blocks * 512).toBeLessThanOrEqual(layout.fileSize);
            await run('qemu-img', ['check', '-f', 'qcow2', d.path]);
            const raw = `${d.path}.as-raw`;
            await run('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', d.path, raw]);
            content = readFileSync(raw);
          }
          expect(sha256(content), `backup ${k} disk ${d.name} ${format}`).toBe(sha256(want));
        }
      }
    });
  }

  test('each chunk is written once: restoring the last backup costs its map, not the chain', () => {
    const last = steps[6]?.record as (typeof steps)[number]['record'];
    const ingested = steps.reduce((n, s) => n + s.record.disks.reduce((m, d) => m + d.chunksNew + d.chunksDeduped, 0), 0);
    const mapped = DISKS.reduce((n, d) => n + repo.resolveChunkMap(last.id, d.name).counts().data, 0);
    // Sanity of the claim above: the chain ingested many more chunks than the map holds.
    expect(ingested).toBeGreaterThan(mapped);
  });

  test('through the page cache (directIo: false), with one worker: the same bytes, raw and qcow2', async () => {
    const step = steps[6] as ChainStep;
    for (const format of ['raw', 'qcow2'] as const) {
      const out = join(t.dir, `buffered-${format}`);
      const r = await restoreBackup(repo, { backupId: step.record.id, output: out, format, directIo: false, workers: 1, verify: true });
      for (const d of r.disks) {
        let content = readFileSync(d.path);
        if (format === 'qcow2') {
          await run('qemu-img', ['check', '-f', 'qcow2', d.path]);
          await run('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', d.path, `${d.path}.as-raw`]);
          content = readFileSync(`${d.path}.as-raw`);
        }
        expect(sha256(content), `${format} disk ${d.name}`).toBe(sha256(step.images[d.name] as Buffer));
      }
    }
  });

  test('chunk data is written O_DIRECT on this filesystem (the fast path the tests above take)', async () => {
    const path = join(t.dir, 'direct-probe.raw');
    writeFileSync(path, '');
    const target = OutputTarget.open(checkOutput(path, true, 'vda'), 4 * MiB, 'vda');
    try {
      expect(target.directFd).toBeDefined();
      // fdinfo flags are octal; O_DIRECT is 040000 on x86-64 and arm64's 0200000.
      const flags = /flags:\s+([0-7]+)/.exec(readFileSync(`/proc/self/fdinfo/${target.directFd as number}`, 'utf8'));
      const direct = process.arch === 'arm64' ? 0o200000 : 0o40000;
      expect(Number.parseInt(flags?.[1] ?? '0', 8) & direct).toBe(direct);
    } finally {
      await target.discard();
    }
  });

  test('one disk into a file with `disks: [name]`', async () => {
    const step = steps[3] as ChainStep;
    const path = join(t.dir, 'single', 'vdc-restored.img');
    await run('mkdir', ['-p', join(t.dir, 'single')]);
    const r = await restoreBackup(repo, { backupId: step.record.id, disks: ['vdc'], output: path, format: 'raw' });
    expect(r.disks.map((d) => d.path)).toEqual([path]);
    expect(readdirSync(join(t.dir, 'single'))).toEqual(['vdc-restored.img']);
    expect(sha256(readFileSync(path))).toBe(sha256(step.images['vdc'] as Buffer));
  });
});
