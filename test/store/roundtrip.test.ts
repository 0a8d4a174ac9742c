// Round trips through the real store: random, compressible and zero chunks come back
// byte-identical; compressible chunks are stored compressed, random ones raw; zeros are not
// stored at all; incrementals resolve through their chain.
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { Repository, type IngestProgress } from '../../src/store/index.js';
import { chunkBytes, KiB, quietInit, randomChunk, tempDir, textChunk } from './helpers.js';

const CS = 64 * KiB;
let t: ReturnType<typeof tempDir>;
let repo: Repository | undefined;

beforeEach(() => {
  t = tempDir();
});
afterEach(async () => {
  await repo?.close();
  repo = undefined;
  t.cleanup();
});

async function readDisk(r: Repository, backup: string, disk: string): Promise<Buffer> {
  const map = r.resolveChunkMap(backup, disk);
  const out = Buffer.alloc(map.size);
  for (let i = 0; i < map.count; i++) {
    const e = map.get(i);
    if (e.kind === 'data') (await r.readChunk(e.digest)).copy(out, i * map.chunkSize);
  }
  return out;
}

describe('round trip', () => {
  test('random, text and zero chunks come back identical; storage is as expected', async () => {
    repo = await quietInit(`${t.dir}/repo`, { chunkSize: CS });
    const size = 10 * CS - 1000; // last chunk short
    const image = Buffer.alloc(size);
    randomChunk(CS).copy(image, 0);
    textChunk(CS, 1).copy(image, CS);
    // chunks 2,3 zero; 4 random; 5 text; 6 zero; 7 random; 8 text; 9 short random
    randomChunk(CS).copy(image, 4 * CS);
    textChunk(CS, 2).copy(image, 5 * CS);
    randomChunk(CS).copy(image, 7 * CS);
    textChunk(CS, 3).copy(image, 8 * CS);
    randomChunk(size - 9 * CS).copy(image, 9 * CS);
    const seen: IngestProgress[] = [];
    const w = await repo.beginBackup({ domain: 'vm1', level: 'full', parentId: null, checkpoint: 'c1', disks: [{ name: 'vda', size }], onProgress: (p) => seen.push(p) });
    for (let i = 0; i < 10; i++) {
      if (i === 6) continue; // never read: stays absent, reads back as zero
      await w.ingest('vda', i, image.subarray(i * CS, Math.min(size, (i + 1) * CS)));
    }
    const rec = await w.complete();
    expect(rec.status).toBe('complete');
    expect(seen.length).toBeGreaterThan(0);
    expect(seen[seen.length - 1]).toMatchObject({ backupId: rec.id, chunksCommitted: 9, chunksInFlight: 0, bytesRead: size - CS });
    expect(w.progress()).toEqual(seen[seen.length - 1]);
    const st = rec.disks[0];
    expect(st).toMatchObject({ name: 'vda', size, chunksNew: 7, chunksDeduped: 0, chunksZero: 2 });
    expect(st?.bytesRead).toBe(size - CS);

    const map = repo.resolveChunkMap(rec.id, 'vda');
    expect(map.count).toBe(10);
    expect(map.get(2).kind).toBe('zero');
    expect(map.get(6).kind).toBe('absent');
    expect(map.counts()).toEqual({ data: 7, zero: 2, absent: 1 });
    expect((await readDisk(repo, rec.id, 'vda')).equals(image)).toBe(true);

    // 4 random chunks stored raw (header + 64 KiB-ish), 3 text chunks much smaller.
    const { files, bytes } = chunkBytes(repo.dir);
    expect(files).toBe(7);
    const randomBytesStored = 3 * (CS + 12) + (size - 9 * CS + 12);
    expect(bytes).toBeGreaterThan(randomBytesStored);
    expect(bytes).toBeLessThan(randomBytesStored + 3 * (CS / 2));
    expect(st?.bytesStored).toBe(bytes);
  });

  test('an incremental records only what it read and resolves through the chain', async () => {
    repo = await quietInit(`${t.dir}/repo`, { chunkSize: CS });
    const size = 8 * CS;
    const image = Buffer.alloc(size);
    for (let i = 0; i < 8; i++) textChunk(CS, 100 + i).copy(image, i * CS);
    const full = await repo.beginBackup({ domain: 'vm1', level: 'full', parentId: null, checkpoint: 'c1', disks: [{ name: 'vda', size }] });
    for (let i = 0; i < 8; i++) await full.ingest('vda', i, image.subarray(i * CS, (i + 1) * CS));
    const f = await full.complete();

    const v2 = Buffer.from(image);
    randomChunk(CS).copy(v2, 3 * CS);
    v2.fill(0, 5 * CS, 6 * CS);
    const inc = await repo.beginBackup({ domain: 'vm1', level: 'incremental', parentId: f.id, checkpoint: 'c2', disks: [{ name: 'vda', size }] });
    await inc.ingest('vda', 3, v2.subarray(3 * CS, 4 * CS));
    inc.zero('vda', 5);
    const i1 = await inc.complete({ checkpointXml: '<domaincheckpoint><name>c2</name></domaincheckpoint>' });
    expect(repo.getBackup(i1.id)?.checkpointXml).toBe('<domaincheckpoint><name>c2</name></domaincheckpoint>');
    expect(i1.disks[0]).toMatchObject({ chunksNew: 1, chunksZero: 1, chunksDeduped: 0 });

    expect(repo.chain(i1.id).map((b) => b.id)).toEqual([f.id, i1.id]);
    expect((await readDisk(repo, f.id, 'vda')).equals(image)).toBe(true);
    expect((await readDisk(repo, i1.id, 'vda')).equals(v2)).toBe(true);
    expect(repo.latestComplete('vm1')?.id).toBe(i1.id);
    expect(repo.listBackups({ domain: 'vm1' }).map((b) => b.id)).toEqual([f.id, i1.id]);
    const report = await repo.check({ readData: true });
    expect(report.problems).toEqual([]);
    expect(report.chunksVerified).toBe(9);
  });

  test('misuse is rejected with STORE_INVALID_ARGUMENT', async () => {
    repo = await quietInit(`${t.dir}/repo`, { chunkSize: CS });
    const w = await repo.beginBackup({ domain: 'vm1', level: 'full', parentId: null, checkpoint: 'c1', disks: [{ name: 'vda', size: 2 * CS }] });
    await expect(w.ingest('vdb', 0, Buffer.alloc(CS))).rejects.toMatchObject({ code: 'STORE_INVALID_ARGUMENT' });
    await expect(w.ingest('vda', 2, Buffer.alloc(CS))).rejects.toMatchObject({ code: 'STORE_INVALID_ARGUMENT' });
    await expect(w.ingest('vda', 0, Buffer.alloc(CS - 1))).rejects.toMatchObject({ code: 'STORE_INVALID_ARGUMENT' });
    await w.ingest('vda', 0, randomChunk(CS));
    await expect(w.ingest('vda', 0, randomChunk(CS))).rejects.toMatchObject({ code: 'STORE_INVALID_ARGUMENT' });
    await w.fail('test');
    expect(repo.getBackup(w.id)?.status).toBe('failed');
    await expect(repo.beginBackup({ domain: 'vm1', level: 'incremental', parentId: w.id, checkpoint: 'c', disks: [{ name: 'vda', size: CS }] }))
      .rejects.toMatchObject({ code: 'STORE_INVALID_ARGUMENT' });
    expect(() => repo?.resolveChunkMap(w.id, 'vda')).toThrow(/failed/);
  });
});

describe('deduplication', () => {
  test('the same data in another disk and another domain is stored once', async () => {
    repo = await quietInit(`${t.dir}/repo`, { chunkSize: CS });
    const data = Array.from({ length: 6 }, (_, i) => (i % 2 === 0 ? randomChunk(CS) : textChunk(CS, 40 + i)));
    const a = await repo.beginBackup({ domain: 'vm1', level: 'full', parentId: null, checkpoint: 'a', disks: [{ name: 'vda', size: 6 * CS }] });
    for (const [i, d] of data.entries()) await a.ingest('vda', i, d);
    const ra = await a.complete();
    const after1 = chunkBytes(repo.dir);
    expect(after1.files).toBe(6);
    expect(ra.disks[0]).toMatchObject({ chunksNew: 6, chunksDeduped: 0, bytesStored: after1.bytes });

    // Another domain, two disks, same chunks at other offsets (and twice within one backup).
    const b = await repo.beginBackup({ domain: 'vm2', level: 'full', parentId: null, checkpoint: 'b', disks: [{ name: 'sda', size: 6 * CS }, { name: 'sdb', size: 3 * CS }] });
    for (const [i, d] of data.entries()) await b.ingest('sda', 5 - i, d);
    for (let i = 0; i < 3; i++) await b.ingest('sdb', i, data[i] as Buffer);
    const rb = await b.complete();
    expect(chunkBytes(repo.dir)).toEqual(after1);
    expect(rb.disks.map((d) => [d.name, d.chunksNew, d.chunksDeduped, d.bytesStored])).toEqual([['sda', 0, 6, 0], ['sdb', 0, 3, 0]]);
    const mb = repo.resolveChunkMap(rb.id, 'sda');
    const ma = repo.resolveChunkMap(ra.id, 'vda');
    for (let i = 0; i < 6; i++) expect(mb.get(5 - i)).toEqual(ma.get(i));
    expect((await repo.check({ readData: true })).ok).toBe(true);
  });
});
