// The chunk cache over real worker threads and a real repository: shared loads, pinning
// (a pinned slot is never reused), overflow to private buffers when every slot is pinned,
// LRU reuse once released, and failed loads that free their slot.
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChunkCache, ChunkPool } from '../../src/serve/index.js';
import { KIND_DATA } from '../../src/store/index.js';
import { buildFixture, CHUNK, type Fixture } from './fixture.js';

let f: Fixture;
let pool: ChunkPool;
/** Distinct data-chunk digests of vda at the last backup, with their plaintext. */
let chunks: Array<{ digest: Buffer; plain: Buffer }>;

beforeAll(async () => {
  f = await buildFixture('serve-cache');
  const rec = f.backups[2]?.record;
  const map = f.repo.resolveChunkMap(rec?.id as string, 'vda');
  const img = f.backups[2]?.images.get('vda') as Buffer;
  const seen = new Set<string>();
  chunks = [];
  for (let i = 0; i < map.count; i++) {
    if (map.kindAt(i) !== KIND_DATA) continue;
    const d = Buffer.from(map.digestAt(i));
    if (seen.has(d.toString('hex'))) continue;
    seen.add(d.toString('hex'));
    chunks.push({ digest: d, plain: img.subarray(i * CHUNK, i * CHUNK + map.lengthOf(i)) });
  }
  pool = new ChunkPool({ chunksDir: join(f.repoDir, 'chunks'), slotSize: CHUNK, slotCount: 3, workers: 2 });
});

afterAll(async () => {
  await pool?.close();
  await f?.cleanup();
});

describe('ChunkCache', () => {
  it('shares one load between readers, pins slots, overflows when all are pinned, reuses after release', async () => {
    const fallbacks: string[] = [];
    const cache = new ChunkCache(pool, (d) => {
      fallbacks.push(d.toString('hex'));
      return pool.loadPrivate(d.toString('hex')); // what serve uses: a worker, a one-off buffer
    });
    const [a, b, c, d] = chunks;
    if (a === undefined || b === undefined || c === undefined || d === undefined) throw new Error('fixture has too few chunks');
    const [r1, r2] = await Promise.all([cache.acquire(a.digest), cache.acquire(a.digest)]);
    expect(r1.data.equals(a.plain)).toBe(true);
    expect(r2.data.equals(a.plain)).toBe(true);
    expect(cache.stats()).toMatchObject({ misses: 1, joined: 1 });
    const rb = await cache.acquire(b.digest);
    const rc = await cache.acquire(c.digest);
    // Three slots, all pinned: the fourth chunk comes from the fallback, correct all the same.
    const rd = await cache.acquire(d.digest);
    expect(rd.data.equals(d.plain)).toBe(true);
    expect(fallbacks).toEqual([d.digest.toString('hex')]);
    expect(cache.stats().overflows).toBe(1);
    // Pinned data was not overwritten by anything.
    expect(r1.data.equals(a.plain) && rb.data.equals(b.plain) && rc.data.equals(c.plain)).toBe(true);
    // Release b: the next new chunk reuses its slot (a is still pinned twice, c once).
    rb.release();
    rb.release(); // idempotent
    const rd2 = await cache.acquire(d.digest);
    expect(rd2.data.equals(d.plain)).toBe(true);
    expect(fallbacks).toHaveLength(1);
    expect(r1.data.equals(a.plain) && rc.data.equals(c.plain)).toBe(true);
    // A cached chunk is a hit.
    const again = await cache.acquire(c.digest);
    expect(cache.stats().hits).toBe(1);
    for (const r of [r1, r2, rc, rd, rd2, again]) r.release();
  });

  it('a chunk whose bytes changed on disk is refused (BLAKE3 check in the worker)', async () => {
    const cache = new ChunkCache(pool, (d) => f.repo.readChunk(d));
    for (const c of chunks.slice(0, 6)) {
      const hex = c.digest.toString('hex');
      const path = join(f.repoDir, 'chunks', hex.slice(0, 4), hex);
      const file = await readFile(path);
      const flipped = Buffer.from(file);
      const last = flipped.length - 1; // the last byte: plaintext (raw chunks) or the zstd frame
      flipped.writeUInt8(flipped.readUInt8(last) ^ 0x01, last);
      await writeFile(path, flipped);
      try {
        await expect(cache.acquire(c.digest)).rejects.toMatchObject({ code: 'CHUNK_CORRUPT' });
      } finally {
        await writeFile(path, file);
      }
      const ok = await cache.acquire(c.digest);
      expect(ok.data.equals(c.plain)).toBe(true);
      ok.release();
    }
  });

  it('a failed load rejects every reader and frees its slot', async () => {
    const cache = new ChunkCache(pool, (d) => f.repo.readChunk(d));
    const victim = chunks[chunks.length - 1];
    if (victim === undefined) throw new Error('fixture');
    const hex = victim.digest.toString('hex');
    await rm(join(f.repoDir, 'chunks', hex.slice(0, 4), hex));
    const results = await Promise.allSettled([cache.acquire(victim.digest), cache.acquire(victim.digest)]);
    for (const r of results) {
      expect(r.status).toBe('rejected');
      expect((r as PromiseRejectedResult).reason).toMatchObject({ code: 'CHUNK_MISSING' });
    }
    // All three slots are usable afterwards.
    const refs = await Promise.all(chunks.slice(0, 3).map((c) => cache.acquire(c.digest)));
    refs.forEach((r, i) => expect(r.data.equals(chunks[i]?.plain as Buffer)).toBe(true));
    expect(cache.stats().overflows).toBe(0);
    for (const r of refs) r.release();
  });
});
