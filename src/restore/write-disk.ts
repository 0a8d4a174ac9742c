// Writing one disk's plan into an open output, in raw or qcow2 format. Each data chunk is one
// pool job (read, decompress, verify the digest, pwrite), dispatched in guest order with a
// bounded window; zero ranges cost nothing on a file (its holes read as zeros, and a qcow2
// image leaves them unallocated) and are written as zeros on a block device in raw format.
import { PullbackError, type ErrorCode } from '../errors.js';
import { toHex } from '../store/hash.js';
import type { OutputTarget } from './output.js';
import { splitRanges, type DiskPlan } from './plan.js';
import { dataChunkOffset, headerCluster, l1Cluster, l2Tables, qcow2Layout, refcountBlock, refcountTableCluster, CLUSTER_SIZE } from './qcow2-layout.js';
import { runJobs, type JobError, type TaggedJob } from './run-jobs.js';
import type { RestorePool } from './worker-pool.js';

export type ImageFormat = 'raw' | 'qcow2';

/** Zero writes on devices go in pieces of this size (one job each). */
const ZERO_PIECE = 16 * 1024 * 1024;

export interface WriteContext {
  pool: RestorePool;
  /** Jobs in flight at most. */
  window: number;
  backupId: string;
  repoDir: string;
  signal?: AbortSignal;
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
}

export interface DiskWriteResult {
  /** Bytes written to the output: chunk data, qcow2 metadata, explicit zeros. */
  bytesWritten: number;
  /** Data chunks written. */
  chunks: number;
}

/** What a job is about, for error messages. */
type Tag = { kind: 'chunk'; index: number; offset: number; hex: string } | { kind: 'zero'; offset: number; length: number };

/** Size of the output file (or the device bytes needed) for `plan` in `format`. */
export function outputSize(plan: DiskPlan, format: ImageFormat): number {
  return format === 'raw' ? plan.size : qcow2Layout(plan).fileSize;
}

export async function writeDisk(plan: DiskPlan, format: ImageFormat, target: OutputTarget, ctx: WriteContext): Promise<DiskWriteResult> {
  const fd = target.fd;
  const zeroFill = format === 'raw' && target.kind === 'device';
  const total = plan.dataBytes + (zeroFill ? plan.zeroBytes : 0);
  let metaBytes = 0;
  let place: (rank: number, index: number) => number = (_r, i) => i * plan.chunkSize;
  if (format === 'qcow2') {
    const layout = qcow2Layout(plan);
    metaBytes = await writeQcow2Metadata(target, layout, plan.data);
    place = (rank) => dataChunkOffset(layout, rank);
  }
  let done = 0;
  let chunks = 0;
  ctx.onProgress?.(0, total);
  await runJobs<Tag>(ctx.pool, jobsInOrder(plan, fd, place, zeroFill), {
    window: ctx.window,
    ...(ctx.signal !== undefined ? { signal: ctx.signal } : {}),
    onDone: (bytes, tag) => {
      done += bytes;
      if (tag.kind === 'chunk') chunks++;
      ctx.onProgress?.(done, total);
    },
    onError: (reply, tag) => jobError(reply, tag, plan, target, ctx),
  });
  return { bytesWritten: done + metaBytes, chunks };
}

/** Data chunks and (with zeroFill) zero pieces, interleaved in guest order for locality. */
function* jobsInOrder(
  plan: DiskPlan,
  fd: number,
  place: (rank: number, index: number) => number,
  zeroFill: boolean,
): Generator<TaggedJob<Tag>> {
  const zeros = zeroFill ? splitRanges(plan.zeroRanges, ZERO_PIECE) : [][Symbol.iterator]();
  let z = zeros.next();
  for (let rank = 0; rank < plan.data.length; rank++) {
    const index = plan.data[rank] as number;
    const offset = index * plan.chunkSize;
    for (; z.done !== true && z.value.offset < offset; z = zeros.next()) {
      const { offset: o, length } = z.value;
      yield { job: { type: 'zero', fd, offset: o, length }, tag: { kind: 'zero', offset: o, length } };
    }
    const hex = toHex(plan.map.digestAt(index));
    const length = plan.map.lengthOf(index);
    yield { job: { type: 'write', hex, length, fd, offset: place(rank, index) }, tag: { kind: 'chunk', index, offset, hex } };
  }
  for (; z.done !== true; z = zeros.next()) {
    const { offset: o, length } = z.value;
    yield { job: { type: 'zero', fd, offset: o, length }, tag: { kind: 'zero', offset: o, length } };
  }
}

export async function writeQcow2Metadata(target: OutputTarget, l: ReturnType<typeof qcow2Layout>, data: Uint32Array): Promise<number> {
  let n = 0;
  const put = async (buf: Buffer, offset: number): Promise<void> => {
    await target.writeAt(buf, offset);
    n += buf.length;
  };
  await put(headerCluster(l), 0);
  for (let c = 0; c < l.refcountTableClusters; c++) await put(refcountTableCluster(l, c), l.refcountTableOffset + c * CLUSTER_SIZE);
  for (let b = 0; b < l.refcountBlocks; b++) await put(refcountBlock(l, b), l.refcountBlockOffset + b * CLUSTER_SIZE);
  for (let c = 0; c < l.l1Clusters; c++) await put(l1Cluster(l, c), l.l1Offset + c * CLUSTER_SIZE);
  for (const [t, table] of l2Tables(l, data)) await put(table, l.l2Offset + t * CLUSTER_SIZE);
  return n;
}

const CAUSE: Record<JobError['kind'], ErrorCode> = {
  'chunk-missing': 'CHUNK_MISSING',
  'chunk-corrupt': 'CHUNK_CORRUPT',
  'chunk-length': 'REPO_CORRUPT',
  'repo-io': 'REPO_IO',
  'output-io': 'RESTORE_FAILED',
  mismatch: 'RESTORE_FAILED',
};

function jobError(reply: JobError, tag: Tag, plan: DiskPlan, target: OutputTarget, ctx: WriteContext): PullbackError {
  const cause = new PullbackError(CAUSE[reply.kind], reply.message, reply.errno === '' ? {} : { cause: Object.assign(new Error(reply.message), { code: reply.errno }) });
  const where = `restoring backup ${ctx.backupId} disk ${plan.disk}`;
  if (tag.kind === 'zero') {
    return new PullbackError('RESTORE_FAILED', `${where}: writing zeros to ${target.path} at byte offset ${tag.offset} failed: ${reply.message}`, { cause });
  }
  const what = `chunk ${tag.index} (byte offset ${tag.offset}, digest ${tag.hex})`;
  switch (reply.kind) {
    case 'chunk-missing':
      return new PullbackError(
        'RESTORE_FAILED',
        `${where}: ${what} is missing from repository ${ctx.repoDir} (${reply.message}); the restore stopped; run \`pullback check --repo ${ctx.repoDir}\` to see which backups are affected`,
        { cause },
      );
    case 'chunk-corrupt':
      return new PullbackError(
        'RESTORE_FAILED',
        `${where}: ${what} is corrupt (${reply.message}); the restore stopped; run \`pullback check --repo ${ctx.repoDir} --read-data\``,
        { cause },
      );
    case 'chunk-length':
    case 'repo-io':
      return new PullbackError('RESTORE_FAILED', `${where}: reading ${what} failed: ${reply.message}`, { cause });
    default:
      return new PullbackError('RESTORE_FAILED', `${where}: writing ${what} to ${target.path} failed: ${reply.message}`, { cause });
  }
}
