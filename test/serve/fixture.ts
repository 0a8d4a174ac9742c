// A repository with a backup chain written through the store API, and the exact bytes each
// backup must read back as (the *model*: what the guest disk held at that backup).
// Covers what serving must get right: data chunks (random and compressible), zero markers
// (writer.zero) and ingested zeros, absent chunks (never written), a chunk duplicated inside
// a backup, incrementals that overwrite data, write zeros over earlier data, and change the
// short last chunk. Chunk size is the store's minimum (64 KiB) so disks stay small.
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Repository, type BackupRecord, type BackupWriter } from '../../src/store/index.js';

export const CHUNK = 64 * 1024;

export interface FixtureBackup {
  record: BackupRecord;
  /** Disk name -> full content at this backup. */
  images: Map<string, Buffer>;
}

export interface Fixture {
  dir: string;
  repoDir: string;
  repo: Repository;
  domain: string;
  backups: FixtureBackup[];
  cleanup(): Promise<void>;
}

/** xorshift32 bytes: deterministic, incompressible. */
export function pseudoRandom(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n + 4);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b.writeUInt32LE(x, i);
  }
  return b.subarray(0, n);
}

function text(n: number, seed: number): Buffer {
  const line = `pullback serve fixture line, seed ${seed}: the quick brown fox jumps over the lazy dog\n`;
  return Buffer.from(line.repeat(Math.ceil(n / line.length))).subarray(0, n);
}

export function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

type Op = { i: number; kind: 'random' | 'text' | 'zero-marker' | 'zero-ingest' | 'partial' };

async function record(w: BackupWriter, disk: string, model: Buffer, ops: Op[], seed: number): Promise<void> {
  for (const op of ops) {
    const start = op.i * CHUNK;
    const len = Math.min(CHUNK, model.length - start);
    const chunk = model.subarray(start, start + len);
    switch (op.kind) {
      case 'random':
        pseudoRandom(len, seed * 1000 + op.i).copy(chunk);
        break;
      case 'text':
        text(len, seed * 1000 + op.i).copy(chunk);
        break;
      case 'zero-marker':
      case 'zero-ingest':
        chunk.fill(0);
        break;
      case 'partial':
        // A guest write inside a chunk: the incremental stores the whole new chunk.
        pseudoRandom(Math.min(4096, len), seed * 7 + op.i).copy(chunk, Math.min(1000, len - 1));
        break;
    }
    if (op.kind === 'zero-marker') w.zero(disk, op.i);
    else await w.ingest(disk, op.i, Buffer.from(chunk));
  }
}

/**
 * Disk vda: 40 chunks + 12345 bytes (41 chunks, the last short); vdb: 9 chunks. Backups:
 * full, incremental 1, incremental 2 (chain of three).
 */
export async function buildFixture(domain = 'serve-test'): Promise<Fixture> {
  const dir = await mkdtemp(join(tmpdir(), 'pb-serve-'));
  const repoDir = join(dir, 'repo');
  const repo = await Repository.init(repoDir, { chunkSize: CHUNK, onWarning: () => undefined });
  const disks = [
    { name: 'vda', size: 40 * CHUNK + 12345 },
    { name: 'vdb', size: 9 * CHUNK },
  ];
  const models = new Map(disks.map((d) => [d.name, Buffer.alloc(d.size)]));
  const backups: FixtureBackup[] = [];
  const snapshot = (): Map<string, Buffer> => new Map([...models].map(([k, v]) => [k, Buffer.from(v)]));
  const vda = models.get('vda') as Buffer;
  const vdb = models.get('vdb') as Buffer;

  // Full: chunks 20-29 and 35-39 of vda never written (absent).
  const full = await repo.beginBackup({ domain, level: 'full', parentId: null, checkpoint: 'cp0', disks });
  const fullOps: Op[] = [];
  for (let i = 0; i < 20; i++) if (i !== 2) fullOps.push({ i, kind: i % 5 === 3 ? 'text' : i === 7 ? 'zero-marker' : i === 8 ? 'zero-ingest' : 'random' });
  for (let i = 30; i < 35; i++) fullOps.push({ i, kind: 'random' });
  fullOps.push({ i: 40, kind: 'random' }); // the short last chunk
  await record(full, 'vda', vda, fullOps, 1);
  vda.copy(vda, 2 * CHUNK, 1 * CHUNK, 2 * CHUNK); // chunk 2 = chunk 1: dedup inside a backup
  await full.ingest('vda', 2, Buffer.from(vda.subarray(2 * CHUNK, 3 * CHUNK)));
  await record(full, 'vdb', vdb, [0, 1, 2, 3, 4, 5, 6, 7, 8].map((i) => ({ i, kind: i === 4 ? 'zero-marker' : 'text' as const })), 2);
  backups.push({ record: await full.complete(), images: snapshot() });

  // Incremental 1: new data, zeros over data (both ways), data into absent chunks, the last chunk.
  const inc1 = await repo.beginBackup({ domain, level: 'incremental', parentId: backups[0]?.record.id ?? null, checkpoint: 'cp1', disks });
  await record(inc1, 'vda', vda, [
    { i: 0, kind: 'random' },
    { i: 4, kind: 'zero-marker' },
    { i: 5, kind: 'zero-ingest' },
    { i: 9, kind: 'partial' },
    { i: 22, kind: 'random' },
    { i: 23, kind: 'text' },
    { i: 40, kind: 'random' },
  ], 3);
  backups.push({ record: await inc1.complete(), images: snapshot() });

  // Incremental 2: data over earlier zeros, zeros over data written by inc1, a partial write.
  const inc2 = await repo.beginBackup({ domain, level: 'incremental', parentId: backups[1]?.record.id ?? null, checkpoint: 'cp2', disks });
  await record(inc2, 'vda', vda, [
    { i: 4, kind: 'random' },
    { i: 22, kind: 'zero-marker' },
    { i: 31, kind: 'zero-ingest' },
    { i: 40, kind: 'partial' },
    { i: 12, kind: 'partial' },
  ], 4);
  await record(inc2, 'vdb', vdb, [{ i: 8, kind: 'random' }], 5);
  backups.push({ record: await inc2.complete(), images: snapshot() });

  return {
    dir,
    repoDir,
    repo,
    domain,
    backups,
    cleanup: async () => {
      await repo.close().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
