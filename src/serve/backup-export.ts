// A backup's disk as an NBD export: the disk's resolved chunk map (the state of every chunk
// at that backup, however long the chain) over the chunk store. A read is cut at chunk
// boundaries; data chunks come from the cache (verified against their BLAKE3 digest when
// loaded) and stay pinned there until the reply is written; zero and absent chunks are
// pieces with no data (sent as holes). base:allocation reports data chunks as 0 and
// zero/absent chunks as NBD_STATE_HOLE | NBD_STATE_ZERO. A read that continues the previous
// one (a sequential reader) prefetches the next few data chunks into free cache slots.
import { NBD_STATE_HOLE, NBD_STATE_ZERO } from '../nbd/constants.js';
import { ExportReadError, type AllocationExtent, type NbdExport, type ReadPiece } from '../nbd/server/index.js';
import { KIND_DATA, type ChunkMap } from '../store/index.js';
import type { ChunkCache, ChunkRef } from './chunk-cache.js';

const ZERO_FLAGS = NBD_STATE_HOLE | NBD_STATE_ZERO;
/** Recent read ends remembered to recognise sequential readers (several connections interleave). */
const RECENT_ENDS = 64;

export interface BackupExportInfo {
  name: string;
  description: string;
  backupId: string;
  /** Data chunks to prefetch ahead of a sequential reader (0 = none). */
  readAhead?: number;
}

export class BackupExport implements NbdExport {
  readonly name: string;
  readonly description: string;
  readonly size: number;
  readonly preferredBlockSize: number;
  private readonly backupId: string;
  private readonly readAhead: number;
  private readonly recentEnds: number[] = [];

  constructor(
    private readonly map: ChunkMap,
    private readonly cache: ChunkCache,
    info: BackupExportInfo,
  ) {
    this.name = info.name;
    this.description = info.description;
    this.size = map.size;
    this.preferredBlockSize = map.chunkSize;
    this.backupId = info.backupId;
    this.readAhead = info.readAhead ?? 0;
  }

  async read(offset: number, length: number, signal: AbortSignal): Promise<ReadPiece[]> {
    signal.throwIfAborted();
    const cs = this.map.chunkSize;
    const end = offset + length;
    const pieces: ReadPiece[] = [];
    const refs: ChunkRef[] = [];
    const loads: Array<Promise<void>> = [];
    const first = Math.floor(offset / cs);
    const last = Math.floor((end - 1) / cs);
    for (let i = first; i <= last; i++) {
      const start = i * cs;
      const from = Math.max(offset, start);
      const to = Math.min(end, start + this.map.lengthOf(i));
      const piece: ReadPiece = { offset: from, length: to - from, data: null };
      pieces.push(piece);
      if (this.map.kindAt(i) !== KIND_DATA) continue;
      loads.push(
        this.chunk(i, from).then((ref) => {
          refs.push(ref);
          piece.data = ref.data.subarray(from - start, to - start);
          piece.release = ref.release;
        }),
      );
    }
    if (this.sequential(offset, end)) this.prefetch(last + 1);
    const settled = await Promise.allSettled(loads);
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) {
      for (const r of refs) r.release();
      throw failed.reason;
    }
    return pieces;
  }

  allocation(offset: number, length: number): AllocationExtent[] {
    const cs = this.map.chunkSize;
    const end = Math.min(offset + length, this.size);
    const out: AllocationExtent[] = [];
    for (let i = Math.floor(offset / cs), pos = offset; pos < end; i++) {
      const to = Math.min(end, i * cs + this.map.lengthOf(i));
      const flags = this.map.kindAt(i) === KIND_DATA ? 0 : ZERO_FLAGS;
      const prev = out[out.length - 1];
      if (prev !== undefined && prev.flags === flags) prev.length += to - pos;
      else out.push({ length: to - pos, flags });
      pos = to;
    }
    return out;
  }

  /** Chunk i's plaintext, checked to be exactly as long as the map says. */
  private async chunk(i: number, errorOffset: number): Promise<ChunkRef> {
    const cs = this.map.chunkSize;
    const where = `chunk ${i} (bytes ${i * cs}-${i * cs + this.map.lengthOf(i) - 1}) of disk ${this.map.disk} in backup ${this.backupId}`;
    let ref: ChunkRef;
    try {
      ref = await this.cache.acquire(this.map.digestAt(i));
    } catch (e) {
      throw new ExportReadError(`${where}: ${e instanceof Error ? e.message : String(e)}`, errorOffset, { cause: e });
    }
    if (ref.data.length !== this.map.lengthOf(i)) {
      ref.release();
      throw new ExportReadError(`${where}: the stored chunk is ${ref.data.length} bytes, expected ${this.map.lengthOf(i)}`, errorOffset);
    }
    return ref;
  }

  /** True when this read starts where a recent one ended; remembers where it ends. */
  private sequential(offset: number, end: number): boolean {
    const k = this.recentEnds.indexOf(offset);
    if (k >= 0) this.recentEnds.splice(k, 1);
    this.recentEnds.push(end);
    if (this.recentEnds.length > RECENT_ENDS) this.recentEnds.shift();
    return k >= 0;
  }

  /** Starts loading the next data chunks after `from` (looking at most a few chunks further). */
  private prefetch(from: number): void {
    const limit = Math.min(this.map.count, from + 4 * this.readAhead);
    for (let i = from, n = 0; i < limit && n < this.readAhead; i++) {
      if (this.map.kindAt(i) !== KIND_DATA) continue;
      n++;
      this.cache.prefetch(this.map.digestAt(i));
    }
  }
}
