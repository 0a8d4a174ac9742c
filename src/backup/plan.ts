// Backup planning (pure): turns the extents of one disk into per-chunk actions.
//
// Terms: a *chunk* is the fixed-size, disk-aligned unit of the repository (chunk i covers
// [i*chunkSize, min((i+1)*chunkSize, diskSize))). An *extent* is a range reported by NBD
// block status, labelled dirty/clean (qemu:dirty-bitmap) and data/zero/hole (base:allocation).
//
// Rules:
// - full: every chunk that holds any extent that does not read as zero is read. Chunks
//   that read entirely as zeros are left out: an absent chunk restores as zeros, so a full
//   records allocated data only.
// - incremental: only chunks that intersect a *dirty* extent matter. A dirty chunk is read
//   whole when ANY part of it, dirty or clean, may hold data: the store replaces whole
//   chunks, so the clean neighbours inside the chunk must come along. Only a dirty chunk that
//   reads entirely as zeros (every extent in it zero or a zero-reading hole) becomes a zero
//   marker; leaving it out would let the parent's stale data win when the chain is resolved.
//   (A zero write that covers part of a chunk must not turn the rest of it into zeros.)
// - An extent 'reads as zero' when base:allocation says so (NBD_STATE_ZERO, or kind zero/hole
//   when the caller has no separate flag). A HOLE without ZERO has undefined contents: data.

export interface PlanExtent {
  offset: number;
  length: number;
  dirty: boolean;
  kind: 'data' | 'zero' | 'hole';
  /** NBD_STATE_ZERO; when absent, 'zero' and 'hole' extents are taken to read as zeros. */
  zero?: boolean;
}

function readsAsZero(e: PlanExtent): boolean {
  return e.zero ?? e.kind !== 'data';
}

export type ChunkAction = 'read' | 'zero';

export interface ChunkPlan {
  /** Ascending chunk indices, each with its action. */
  chunks: Array<{ index: number; action: ChunkAction }>;
  /** Bytes that will be read over NBD (the last chunk may be short). */
  bytesToRead: number;
}

export interface PlanOptions {
  level: 'full' | 'incremental';
  chunkSize: number;
  diskSize: number;
}

export function planChunks(extents: readonly PlanExtent[], opts: PlanOptions): ChunkPlan {
  const { chunkSize, diskSize, level } = opts;
  if (!Number.isInteger(chunkSize) || chunkSize <= 0) throw new RangeError(`bad chunk size ${chunkSize}`);
  // Chunks that matter (full: all; incremental: those a dirty extent touches), and chunks
  // that may hold data anywhere in them.
  const touched = new Set<number>();
  const hasData = new Set<number>();
  const each = (e: PlanExtent, fn: (i: number) => void): void => {
    const start = Math.max(0, e.offset);
    const end = Math.min(diskSize, e.offset + e.length);
    if (e.length <= 0 || end <= start) return;
    const last = Math.floor((end - 1) / chunkSize);
    for (let i = Math.floor(start / chunkSize); i <= last; i++) fn(i);
  };
  for (const e of extents) {
    if (!readsAsZero(e)) each(e, (i) => hasData.add(i));
    if (level === 'incremental' && e.dirty) each(e, (i) => touched.add(i));
  }
  const state = new Map<number, 1 | 2>();
  if (level === 'full') for (const i of hasData) state.set(i, 2);
  else for (const i of touched) state.set(i, hasData.has(i) ? 2 : 1);
  const indices = [...state.keys()].sort((a, b) => a - b);
  let bytesToRead = 0;
  const chunks = indices.map((index) => {
    const action: ChunkAction = state.get(index) === 2 ? 'read' : 'zero';
    if (action === 'read') bytesToRead += chunkLength(index, chunkSize, diskSize);
    return { index, action };
  });
  return { chunks, bytesToRead };
}

/** Length of chunk `index` of a disk: chunkSize except for a short last chunk. */
export function chunkLength(index: number, chunkSize: number, diskSize: number): number {
  return Math.max(0, Math.min(chunkSize, diskSize - index * chunkSize));
}

/** Number of chunks that cover a disk. */
export function chunkCount(diskSize: number, chunkSize: number): number {
  return Math.ceil(diskSize / chunkSize);
}
