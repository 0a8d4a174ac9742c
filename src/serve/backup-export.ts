// A backup's disk as an NBD export: the disk's resolved chunk map (the state of every chunk
// at that backup, however long the chain) over the chunk store. A read is cut at chunk
// boundaries; data chunks come from the cache (verified against their BLAKE3 digest when
// loaded), zero and absent chunks are pieces with no data (sent as holes). base:allocation
// reports data chunks as 0 and zero/absent chunks as NBD_STATE_HOLE | NBD_STATE_ZERO.
import { NBD_STATE_HOLE, NBD_STATE_ZERO } from '../nbd/constants.js';
import { ExportReadError, type AllocationExtent, type NbdExport, type ReadPiece } from '../nbd/server/index.js';
import { KIND_DATA, type ChunkMap } from '../store/index.js';
import type { ChunkCache } from './chunk-cache.js';

const ZERO_FLAGS = NBD_STATE_HOLE | NBD_STATE_ZERO;

export interface BackupExportInfo {
  name: string;
  description: string;
  backupId: string;
  /** Chunks to load ahead of a read that continues the previous one (0 = none). */
  readAhead?: number;
}

export class BackupExport implements NbdExport {
  readonly name: string;
  readonly description: string;
  readonly size: number;
  readonly preferredBlockSize: number;
  private readonly backupId: string;
  private readonly readAhead: number;
  /** End of the last read, to detect sequential access. */
  private lastEnd = -1;

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
        this.chunk(i, from).then((buf) => {
          piece.data = buf.subarray(from - start, to - start);
        }),
      );
    }
    const sequential = offset === this.lastEnd;
    this.lastEnd = end;
    if (sequential) this.prefetch(last + 1);
    await Promise.all(loads);
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
  private async chunk(i: number, errorOffset: number): Promise<Buffer> {
    const where = `chunk ${i} (bytes ${i * this.map.chunkSize}-${i * this.map.chunkSize + this.map.lengthOf(i) - 1}) of disk ${this.map.disk} in backup ${this.backupId}`;
    let buf: Buffer;
    try {
      buf = await this.cache.get(this.map.digestAt(i));
    } catch (e) {
      throw new ExportReadError(`${where}: ${e instanceof Error ? e.message : String(e)}`, errorOffset, { cause: e });
    }
    if (buf.length !== this.map.lengthOf(i)) {
      throw new ExportReadError(`${where}: the stored chunk is ${buf.length} bytes, expected ${this.map.lengthOf(i)}`, errorOffset);
    }
    return buf;
  }

  /** Starts loading the next data chunks of a sequential reader; errors surface on the real read. */
  private prefetch(from: number): void {
    for (let i = from, n = 0; i < this.map.count && n < this.readAhead; i++) {
      if (this.map.kindAt(i) !== KIND_DATA) continue;
      n++;
      const d = this.map.digestAt(i);
      if (!this.cache.has(d)) this.cache.get(d).catch(() => undefined);
    }
  }
}
