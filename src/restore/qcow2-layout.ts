// A fresh qcow2 image laid out in one pass from a restore plan (pure: computes offsets and
// builds metadata clusters; writing is qcow2-writer.ts). Format: docs/interop/qcow2.txt of
// QEMU, version 3, 64 KiB clusters, 16-bit refcounts, no backing file, no compression, no
// snapshots, no extensions.
//
// Because the whole plan is known before anything is written, every host offset is fixed in
// advance and data can be written in any order by any worker:
//   cluster 0                  header (rest of the cluster zero: no header extensions)
//   refcount table             rtClusters clusters
//   refcount blocks            rbCount clusters, covering every cluster of the file
//   L1 table                   l1Clusters clusters
//   L2 tables                  one per L1 entry that maps at least one data chunk
//   data                       data chunk r (r-th in guest order) at dataOffset + r*chunkSize
// Zero and absent chunks stay unallocated (L2 entry 0): with no backing file they read as
// zeros ("Cluster mapping" in qcow2.txt), so the image is sparse. Every allocated cluster has
// refcount 1, so L1/L2 entries carry QCOW_OFLAG_COPIED (bit 63), as `qemu-img check` expects.
// A chunk size is a power of two >= 64 KiB (store config), so chunks are cluster-aligned and
// never straddle an L2 table (one table maps 512 MiB).
import { PullbackError } from '../errors.js';
import type { DiskPlan } from './plan.js';

export const CLUSTER_BITS = 16;
export const CLUSTER_SIZE = 1 << CLUSTER_BITS;
/** 8-byte entries per L2 table / L1 cluster / refcount table cluster. */
const ENTRIES_PER_CLUSTER = CLUSTER_SIZE / 8;
const REFCOUNT_ORDER = 4; // 16-bit refcounts, QEMU's default
const REFCOUNTS_PER_BLOCK = (CLUSTER_SIZE * 8) >> REFCOUNT_ORDER;
/** Bytes of guest data one L2 table maps. */
const L2_SPAN = ENTRIES_PER_CLUSTER * CLUSTER_SIZE;
const HEADER_LENGTH = 112; // v3 header through compression_type (0 = zlib), padded to 8
const COPIED = 1n << 63n;
/** QEMU refuses L1 tables above 32 MiB (qcow2.txt, "size"). */
const MAX_L1_BYTES = 32 * 1024 * 1024;

export interface Qcow2Layout {
  virtualSize: number;
  chunkSize: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  refcountBlockOffset: number;
  refcountBlocks: number;
  l1Offset: number;
  l1Entries: number;
  l1Clusters: number;
  l2Offset: number;
  /** Per L1 index: the number of its L2 table (offset l2Offset + n*CLUSTER_SIZE), or -1. */
  l2Of: Int32Array;
  l2Tables: number;
  dataOffset: number;
  dataClusters: number;
  /** Allocated clusters, metadata and data; the file is exactly this many clusters long. */
  totalClusters: number;
  fileSize: number;
}

const clustersFor = (bytes: number): number => Math.ceil(bytes / CLUSTER_SIZE);

export function qcow2Layout(plan: DiskPlan): Qcow2Layout {
  const { size, chunkSize, data } = plan;
  if (chunkSize % CLUSTER_SIZE !== 0 || L2_SPAN % chunkSize !== 0) {
    throw new PullbackError('INTERNAL', `chunk size ${chunkSize} does not fit qcow2 clusters of ${CLUSTER_SIZE} bytes`);
  }
  if (size % 512 !== 0) {
    // QEMU counts qcow2 virtual sizes in whole sectors and would cut the tail off.
    throw new PullbackError('RESTORE_FAILED', `disk ${plan.disk} is ${size} bytes, not a multiple of 512: QEMU cannot represent it as qcow2; restore it as raw`);
  }
  const l1Entries = Math.max(1, Math.ceil(size / L2_SPAN));
  if (l1Entries * 8 > MAX_L1_BYTES) {
    throw new PullbackError('RESTORE_FAILED', `disk ${plan.disk} (${size} bytes) is too large for a qcow2 image with 64 KiB clusters; restore it as raw`);
  }
  const l1Clusters = clustersFor(l1Entries * 8);
  const chunksPerL2 = L2_SPAN / chunkSize;
  const l2Of = new Int32Array(l1Entries).fill(-1);
  let l2Tables = 0;
  let dataClusters = 0;
  for (const i of data) {
    const k = Math.floor(i / chunksPerL2);
    if (l2Of[k] === -1) l2Of[k] = l2Tables++;
    dataClusters += clustersFor(Math.min(chunkSize, size - i * chunkSize));
  }
  // Refcount blocks must also count themselves and the table: iterate to the fixed point.
  const fixed = 1 + l1Clusters + l2Tables + dataClusters;
  let refcountBlocks = 0;
  let refcountTableClusters = 0;
  for (;;) {
    const total = fixed + refcountBlocks + refcountTableClusters;
    const rb = Math.ceil(total / REFCOUNTS_PER_BLOCK);
    const rt = clustersFor(rb * 8);
    if (rb === refcountBlocks && rt === refcountTableClusters) break;
    refcountBlocks = rb;
    refcountTableClusters = rt;
  }
  const refcountTableOffset = CLUSTER_SIZE;
  const refcountBlockOffset = refcountTableOffset + refcountTableClusters * CLUSTER_SIZE;
  const l1Offset = refcountBlockOffset + refcountBlocks * CLUSTER_SIZE;
  const l2Offset = l1Offset + l1Clusters * CLUSTER_SIZE;
  const dataOffset = l2Offset + l2Tables * CLUSTER_SIZE;
  const totalClusters = fixed + refcountBlocks + refcountTableClusters;
  return {
    virtualSize: size,
    chunkSize,
    refcountTableOffset,
    refcountTableClusters,
    refcountBlockOffset,
    refcountBlocks,
    l1Offset,
    l1Entries,
    l1Clusters,
    l2Offset,
    l2Of,
    l2Tables,
    dataOffset,
    dataClusters,
    totalClusters,
    fileSize: totalClusters * CLUSTER_SIZE,
  };
}

/** Host offset of the r-th data chunk (all earlier data chunks are full-length). */
export function dataChunkOffset(l: Qcow2Layout, rank: number): number {
  return l.dataOffset + rank * l.chunkSize;
}

/** Cluster 0: the header, zero-padded (the zero after it ends the header extensions). */
export function headerCluster(l: Qcow2Layout): Buffer {
  const b = Buffer.alloc(CLUSTER_SIZE);
  b.write('QFI\xfb', 0, 'latin1');
  b.writeUInt32BE(3, 4); // version
  // 8..19 backing file offset/size: 0
  b.writeUInt32BE(CLUSTER_BITS, 20);
  b.writeBigUInt64BE(BigInt(l.virtualSize), 24);
  // 32 crypt_method 0
  b.writeUInt32BE(l.l1Entries, 36);
  b.writeBigUInt64BE(BigInt(l.l1Offset), 40);
  b.writeBigUInt64BE(BigInt(l.refcountTableOffset), 48);
  b.writeUInt32BE(l.refcountTableClusters, 56);
  // 60 nb_snapshots 0, 64 snapshots_offset 0, 72..95 feature bits 0
  b.writeUInt32BE(REFCOUNT_ORDER, 96);
  b.writeUInt32BE(HEADER_LENGTH, 100);
  return b;
}

/** Cluster n of the refcount table: the offsets of the refcount blocks. */
export function refcountTableCluster(l: Qcow2Layout, n: number): Buffer {
  const b = Buffer.alloc(CLUSTER_SIZE);
  for (let e = 0; e < ENTRIES_PER_CLUSTER; e++) {
    const block = n * ENTRIES_PER_CLUSTER + e;
    if (block >= l.refcountBlocks) break;
    b.writeBigUInt64BE(BigInt(l.refcountBlockOffset + block * CLUSTER_SIZE), e * 8);
  }
  return b;
}

/** Refcount block n: 1 for every allocated cluster it covers, 0 beyond the end of the file. */
export function refcountBlock(l: Qcow2Layout, n: number): Buffer {
  const b = Buffer.alloc(CLUSTER_SIZE);
  const first = n * REFCOUNTS_PER_BLOCK;
  const count = Math.min(REFCOUNTS_PER_BLOCK, l.totalClusters - first);
  for (let e = 0; e < count; e++) b.writeUInt16BE(1, e * 2);
  return b;
}

/** Cluster n of the L1 table. */
export function l1Cluster(l: Qcow2Layout, n: number): Buffer {
  const b = Buffer.alloc(CLUSTER_SIZE);
  for (let e = 0; e < ENTRIES_PER_CLUSTER; e++) {
    const k = n * ENTRIES_PER_CLUSTER + e;
    if (k >= l.l1Entries) break;
    const t = l.l2Of[k] ?? -1;
    if (t >= 0) b.writeBigUInt64BE(BigInt(l.l2Offset + t * CLUSTER_SIZE) | COPIED, e * 8);
  }
  return b;
}

/**
 * Every L2 table, in table order, as [tableNumber, cluster]. `data` is the plan's ascending
 * data-chunk indices; ranks follow that order, as in dataChunkOffset.
 */
export function* l2Tables(l: Qcow2Layout, data: Uint32Array): Generator<[number, Buffer]> {
  const chunksPerL2 = L2_SPAN / l.chunkSize;
  const clustersPerChunk = l.chunkSize / CLUSTER_SIZE;
  let table: Buffer | undefined;
  let tableNo = -1;
  for (let rank = 0; rank < data.length; rank++) {
    const i = data[rank] as number;
    const k = Math.floor(i / chunksPerL2);
    const t = l.l2Of[k] ?? -1;
    if (t !== tableNo) {
      if (table !== undefined) yield [tableNo, table];
      table = Buffer.alloc(CLUSTER_SIZE);
      tableNo = t;
    }
    const host = dataChunkOffset(l, rank);
    const len = Math.min(l.chunkSize, l.virtualSize - i * l.chunkSize);
    const firstEntry = (i % chunksPerL2) * clustersPerChunk;
    for (let c = 0; c < clustersFor(len); c++) {
      (table as Buffer).writeBigUInt64BE(BigInt(host + c * CLUSTER_SIZE) | COPIED, (firstEntry + c) * 8);
    }
  }
  if (table !== undefined) yield [tableNo, table];
}
