// Reading one exported disk into a backup: extents -> plan -> pipelined chunk reads -> store.
//
// The export is any NBD export of the disk at the backup's instant: libvirt's pull-mode
// export of a running domain, or qemu-nbd over the image of a shut-off one. For an
// incremental, `dirtyBitmap` names the meta context holding the changes since the base
// checkpoint. Chunks are read `window` at a time over a multi-connection pool straight into
// the store's input slots (BackupWriter.reserve), so memory is bounded by the slots however
// large the disk.
import { PullbackError, errorMessage } from '../errors.js';
import { BASE_ALLOCATION, NbdClient, NbdPool, getExtents, type NbdTarget } from '../nbd/index.js';
import type { BackupWriter } from '../store/index.js';
import { chunkLength, planChunks } from './plan.js';

export interface ReadDiskOptions {
  domain: string;
  disk: string;
  target: NbdTarget;
  level: 'full' | 'incremental';
  /** Full meta context name, e.g. 'qemu:dirty-bitmap:backup-vda' (incremental only). */
  dirtyBitmap?: string | undefined;
  chunkSize: number;
  /** Expected virtual size; a mismatch with the export is an error. */
  size: number;
  writer: BackupWriter;
  connections?: number;
  /** Chunk reads in flight. */
  window?: number;
  signal?: AbortSignal | undefined;
  onProgress?: ((p: DiskProgress) => void) | undefined;
}

export interface DiskProgress {
  disk: string;
  bytesDone: number;
  bytesTotal: number;
  chunksPlanned: number;
}

export interface ReadDiskResult {
  chunksRead: number;
  chunksZero: number;
  bytesRead: number;
}

export async function readDisk(opts: ReadDiskOptions): Promise<ReadDiskResult> {
  const where = `domain ${opts.domain}, disk ${opts.disk}`;
  const contexts = [BASE_ALLOCATION];
  if (opts.dirtyBitmap !== undefined) contexts.push(opts.dirtyBitmap);
  const signal = opts.signal;
  const connectOpts = { connections: opts.connections ?? 4, metaContexts: contexts, ...(signal === undefined ? {} : { signal }) };
  const connectError = (e: unknown): PullbackError =>
    new PullbackError('BACKUP_FAILED', `${where}: cannot connect to the backup export: ${errorMessage(e)}`, { cause: e });
  // One connection first: the others are opened only when there is something to read (an
  // incremental with no change reads nothing).
  let first: NbdClient;
  try {
    first = await NbdClient.connect(opts.target, connectOpts);
  } catch (e) {
    throw connectError(e);
  }
  let pool: NbdPool | undefined;
  try {
    if (first.size !== opts.size) {
      throw new PullbackError('BACKUP_FAILED', `${where}: the export is ${first.size} bytes, libvirt said ${opts.size}`);
    }
    for (const c of contexts) {
      if (!first.metaContexts.has(c)) {
        throw new PullbackError('BACKUP_FAILED', `${where}: the export does not offer meta context ${c}`);
      }
    }
    const extents = await getExtents(first, {
      ...(opts.dirtyBitmap === undefined ? {} : { dirtyBitmap: opts.dirtyBitmap }),
      ...(signal === undefined ? {} : { signal }),
    });
    const plan = planChunks(extents, { level: opts.level, chunkSize: opts.chunkSize, diskSize: opts.size });
    const progress = { disk: opts.disk, bytesDone: 0, bytesTotal: plan.bytesToRead, chunksPlanned: plan.chunks.length };
    opts.onProgress?.({ ...progress });

    let chunksZero = 0;
    const reads: number[] = [];
    for (const c of plan.chunks) {
      if (c.action === 'zero') {
        opts.writer.zero(opts.disk, c.index);
        chunksZero++;
      } else reads.push(c.index);
    }

    if (reads.length === 0) return { chunksRead: 0, chunksZero, bytesRead: 0 };
    try {
      pool = await NbdPool.extend(first, opts.target, connectOpts);
    } catch (e) {
      throw connectError(e);
    }
    const readers = pool;
    const window = Math.max(1, Math.min(opts.window ?? 16, reads.length));
    let next = 0;
    let bytesRead = 0;
    let stopped = false;
    const call = signal === undefined ? {} : { signal };
    const worker = async (): Promise<void> => {
      while (next < reads.length && !stopped) {
        signal?.throwIfAborted();
        const index = reads[next++] as number;
        const len = chunkLength(index, opts.chunkSize, opts.size);
        const offset = index * opts.chunkSize;
        // Read straight into one of the store's input slots: no copy between read and ingest.
        const slot = await opts.writer.reserve(call);
        try {
          await readers.readInto(slot.buffer.subarray(0, len), offset, call);
        } catch (e) {
          slot.release();
          throw new PullbackError('BACKUP_FAILED', `${where}: read of ${len} bytes at offset ${offset} failed: ${errorMessage(e)}`, {
            cause: e,
          });
        }
        slot.ingest(opts.disk, index, len);
        bytesRead += len;
        progress.bytesDone = bytesRead;
        opts.onProgress?.({ ...progress });
      }
    };
    // The first failure stops the other workers from starting new reads.
    const results = await Promise.allSettled(
      Array.from({ length: window }, () =>
        worker().catch((e: unknown) => {
          stopped = true;
          throw e;
        }),
      ),
    );
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
    return { chunksRead: reads.length, chunksZero, bytesRead };
  } finally {
    // The pool owns `first` once it exists (and closed it if opening the others failed).
    await (pool ?? first).close().catch(() => undefined);
  }
}
