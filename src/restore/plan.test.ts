// Pure parts of restore: planning from a chunk map, and the qcow2 layout arithmetic.
import { describe, expect, test } from 'vitest';
import { ChunkMap } from '../store/index.js';
import { planDisk, splitRanges } from './plan.js';
import { CLUSTER_SIZE, dataChunkOffset, headerCluster, l1Cluster, l2Tables, qcow2Layout, refcountBlock, refcountTableCluster } from './qcow2-layout.js';

const K = 1024;
const M = 1024 * 1024;
const G = 1024 * M;
const digest = (n: number): Buffer => Buffer.alloc(32, n);

function mapOf(size: number, chunkSize: number, kinds: string): ChunkMap {
  const m = new ChunkMap('vda', size, chunkSize);
  [...kinds].forEach((k, i) => {
    if (k === 'D') m.setData(i, digest(i + 1));
    else if (k === 'Z') m.setZero(i);
  });
  return m;
}

describe('planDisk', () => {
  test('data indices ascending; zero and absent runs coalesce into byte ranges; short last chunk', () => {
    // 10 chunks of 64 KiB, the last 1000 bytes long.
    const size = 9 * 64 * K + 1000;
    const p = planDisk(mapOf(size, 64 * K, 'DZ.DDZZ..D'));
    expect([...p.data]).toEqual([0, 3, 4, 9]);
    expect(p.zeroRanges).toEqual([
      { offset: 64 * K, length: 2 * 64 * K },
      { offset: 5 * 64 * K, length: 4 * 64 * K },
    ]);
    expect(p.dataBytes).toBe(3 * 64 * K + 1000);
    expect(p.zeroBytes).toBe(6 * 64 * K);
    expect(p.dataBytes + p.zeroBytes).toBe(size);
  });

  test('a trailing zero run ends at the disk size, not the chunk boundary', () => {
    const p = planDisk(mapOf(2 * 64 * K + 512, 64 * K, 'D.Z'));
    expect(p.zeroRanges).toEqual([{ offset: 64 * K, length: 64 * K + 512 }]);
  });

  test('all zeros, all data', () => {
    expect(planDisk(mapOf(3 * 64 * K, 64 * K, '...')).zeroRanges).toEqual([{ offset: 0, length: 3 * 64 * K }]);
    const all = planDisk(mapOf(3 * 64 * K, 64 * K, 'DDD'));
    expect(all.zeroRanges).toEqual([]);
    expect(all.data.length).toBe(3);
  });

  test('splitRanges cuts at the maximum and keeps the ends', () => {
    expect([...splitRanges([{ offset: 10, length: 25 }, { offset: 100, length: 5 }], 10)]).toEqual([
      { offset: 10, length: 10 },
      { offset: 20, length: 10 },
      { offset: 30, length: 5 },
      { offset: 100, length: 5 },
    ]);
  });
});

describe('qcow2 layout', () => {
  test('small disk: one of everything, data after metadata, file = allocated clusters', () => {
    const p = planDisk(mapOf(4 * M, M, 'D.DZ'));
    const l = qcow2Layout(p);
    expect(l.l1Entries).toBe(1);
    expect(l.l2Tables).toBe(1);
    expect(l.refcountBlocks).toBe(1);
    expect(l.refcountTableClusters).toBe(1);
    expect(l.dataClusters).toBe(32);
    // header, refcount table, refcount block, L1, L2, data
    expect(l.totalClusters).toBe(5 + 32);
    expect(l.dataOffset).toBe(5 * CLUSTER_SIZE);
    expect(dataChunkOffset(l, 1)).toBe(5 * CLUSTER_SIZE + M);
    expect(l.fileSize).toBe(37 * CLUSTER_SIZE);
  });

  test('L2 tables only where data is; L1 spans several clusters for > 4 TiB', () => {
    // 5 TiB at 16 MiB chunks: data at the first chunk, one at 608 MiB, one at the very end.
    const cs = 16 * M;
    const size = 5 * 1024 * G;
    const m = new ChunkMap('vda', size, cs);
    const last = m.count - 1;
    m.setData(0, digest(1));
    m.setData((608 * M) / cs, digest(2));
    m.setData(last, digest(3));
    const l = qcow2Layout(planDisk(m));
    expect(l.l1Entries).toBe(10240);
    expect(l.l1Clusters).toBe(2);
    expect(l.l2Tables).toBe(3);
    expect([...l.l2Of].filter((x) => x >= 0)).toEqual([0, 1, 2]);
    expect(l.l2Of[0]).toBe(0);
    expect(l.l2Of[1]).toBe(1);
    expect(l.l2Of[10239]).toBe(2);
    const l1b = l1Cluster(l, 1);
    // L1 entry 10239 is entry 2047 of the second L1 cluster: L2 table 2 with the COPIED bit.
    expect(l1b.readBigUInt64BE(2047 * 8)).toBe(BigInt(l.l2Offset + 2 * CLUSTER_SIZE) | (1n << 63n));
    const tables = [...l2Tables(l, planDisk(m).data)];
    expect(tables.map(([t]) => t)).toEqual([0, 1, 2]);
    // Chunk at 608 MiB = 96 MiB into the second L2 table = cluster entry 1536; it is data rank 1.
    const t1 = tables[1]?.[1] as Buffer;
    expect(t1.readBigUInt64BE(1536 * 8)).toBe(BigInt(dataChunkOffset(l, 1)) | (1n << 63n));
    expect(t1.readBigUInt64BE(1535 * 8)).toBe(0n);
    expect(t1.readBigUInt64BE((1536 + 255) * 8)).toBe(BigInt(dataChunkOffset(l, 1) + 255 * CLUSTER_SIZE) | (1n << 63n));
    expect(t1.readBigUInt64BE((1536 + 256) * 8)).toBe(0n);
  });

  test('refcount blocks count every cluster including themselves (fixed point)', () => {
    // 3 GiB of data at 1 MiB chunks = 49152 data clusters: needs 2 refcount blocks (32768 each).
    const m = new ChunkMap('vda', 3 * G, M);
    for (let i = 0; i < m.count; i++) m.setData(i, digest(1));
    const l = qcow2Layout(planDisk(m));
    expect(l.l2Tables).toBe(6);
    expect(l.refcountBlocks).toBe(2);
    expect(l.totalClusters).toBe(1 + 1 + 2 + 1 + 6 + 49152);
    const rt = refcountTableCluster(l, 0);
    expect(rt.readBigUInt64BE(0)).toBe(BigInt(l.refcountBlockOffset));
    expect(rt.readBigUInt64BE(8)).toBe(BigInt(l.refcountBlockOffset + CLUSTER_SIZE));
    expect(rt.readBigUInt64BE(16)).toBe(0n);
    const rb1 = refcountBlock(l, 1);
    const inSecond = l.totalClusters - 32768;
    expect(rb1.readUInt16BE((inSecond - 1) * 2)).toBe(1);
    expect(rb1.readUInt16BE(inSecond * 2)).toBe(0);
  });

  test('the fixed point adds a block when the blocks themselves overflow one', () => {
    // 2 GiB at 64 KiB chunks: header + L1 + 4 L2 tables = 6 metadata clusters before refcounts.
    const layoutWith = (dataChunks: number): ReturnType<typeof qcow2Layout> => {
      const m = new ChunkMap('vda', 2 * G, 64 * K);
      for (let i = 0; i < dataChunks; i++) m.setData(32768 - dataChunks + i, digest(1)); // the last chunks: all 4 L2 spans
      return qcow2Layout(planDisk(m));
    };
    // 6 + 32760 data + 1 block + 1 table = 32768 clusters: exactly one block's worth.
    const fits = layoutWith(32760);
    expect(fits.l2Tables).toBe(4);
    expect(fits.refcountBlocks).toBe(1);
    expect(fits.totalClusters).toBe(32768);
    // One more data cluster: the block would have to count itself beyond its reach.
    const spills = layoutWith(32761);
    expect(spills.refcountBlocks).toBe(2);
    expect(spills.totalClusters).toBe(32770);
  });

  test('header fields', () => {
    const l = qcow2Layout(planDisk(mapOf(4 * M, M, 'D...')));
    const h = headerCluster(l);
    expect(h.subarray(0, 4).toString('latin1')).toBe('QFI\xfb');
    expect(h.readUInt32BE(4)).toBe(3);
    expect(h.readUInt32BE(20)).toBe(16);
    expect(h.readBigUInt64BE(24)).toBe(BigInt(4 * M));
    expect(h.readUInt32BE(36)).toBe(1);
    expect(h.readBigUInt64BE(40)).toBe(BigInt(l.l1Offset));
    expect(h.readBigUInt64BE(48)).toBe(BigInt(CLUSTER_SIZE));
    expect(h.readUInt32BE(56)).toBe(1);
    expect(h.readUInt32BE(96)).toBe(4);
    expect(h.readUInt32BE(100)).toBe(112);
    expect(h.subarray(112).every((b) => b === 0)).toBe(true);
  });

  test('a size that is not a multiple of 512 is refused', () => {
    expect(() => qcow2Layout(planDisk(mapOf(M + 100, M, 'DD')))).toThrow(/not a multiple of 512/);
  });
});
