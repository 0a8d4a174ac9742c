// Backup planning (pure): turns the extents of one disk into per-chunk actions.
//
// Terms: a *chunk* is the fixed-size, disk-aligned unit of the repository (chunk i covers
// [i*chunkSize, min((i+1)*chunkSize, diskSize))). An *extent* is a range reported by NBD
// block status, labelled dirty/clean (qemu:dirty-bitmap) and data/zero/hole (base:allocation).
//
// Rules:
// - full: every chunk that holds any `data` extent is read. Chunks that are only zero/hole
//   are left out: an absent chunk restores as zeros, so a full records allocated data only.
// - incremental: only chunks that intersect a *dirty* extent matter. A dirty chunk with any
//   data is read whole (clean neighbours inside the chunk are read too: the store works in
//   whole chunks). A dirty chunk that is entirely zero/hole becomes a zero marker: leaving it
//   out would let the parent's stale data win when the chain is resolved.

export interface PlanExtent {
  offset: number;
  length: number;
  dirty: boolean;
  kind: 'data' | 'zero' | 'hole';
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
  // Per touched chunk: 1 = relevant but no data seen (zero), 2 = has data (read).
  const state = new Map<number, 1 | 2>();
  for (const e of extents) {
    if (e.length <= 0) continue;
    if (level === 'incremental' && !e.dirty) continue;
    const start = Math.max(0, e.offset);
    const end = Math.min(diskSize, e.offset + e.length);
    if (end <= start) continue;
    const first = Math.floor(start / chunkSize);
    const last = Math.floor((end - 1) / chunkSize);
    const mark: 1 | 2 = e.kind === 'data' ? 2 : 1;
    if (level === 'full' && mark === 1) continue;
    for (let i = first; i <= last; i++) {
      if (mark === 2 || state.get(i) !== 2) state.set(i, mark);
    }
  }
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
