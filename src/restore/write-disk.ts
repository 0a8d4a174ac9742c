// Writing one disk's plan into an open output, in raw or qcow2 format.
//
// Data chunks are loaded by the pool's workers (read, decompress, BLAKE3-check) into slots of
// the shared slab (slab.ts), dispatched in guest order with a bounded number in flight. This
// thread writes the loaded slots out in the same order: runs of slots whose output ranges are
// adjacent go out as one positional writev of up to MAX_WRITE bytes (qcow2 data clusters are
// always adjacent; raw chunks are when their indices are). Writes go through the output's
// O_DIRECT descriptor when it has one and the run is aligned: the kernel reads the slots
// directly, nothing is copied into the page cache, the disk works while the workers decode
// the next chunks, and the final fsync has only the journal left to do. Otherwise they go
// through the page cache, with an fdatasync started every SYNC_EVERY bytes so that writeback
// overlaps the restore instead of following it. Only this thread writes, so no two threads
// spin on the file's inode lock.
// Zero ranges cost nothing on a file (its holes read as zeros, and a qcow2 image leaves them
// unallocated) and are written as zeros, from the slab's zero region, on a block device in raw
// format. An NBD export (nbd-output.ts) gets one NBD_CMD_WRITE per chunk straight from its
// slot, NBD_WRITES in flight, and NBD_CMD_WRITE_ZEROES for zero ranges (it may hold old data).
import { fdatasync, writev } from 'node:fs';
import { promisify } from 'node:util';
import { PullbackError, type ErrorCode } from '../errors.js';
import { toHex } from '../store/hash.js';
import { NBD_WRITES, NbdOutput } from './nbd-output.js';
import type { OutputTarget } from './output.js';
import { splitRanges, type DiskPlan } from './plan.js';
import { dataChunkOffset, headerCluster, l1Cluster, l2Tables, qcow2Layout, refcountBlock, refcountTableCluster, CLUSTER_SIZE } from './qcow2-layout.js';
import { abortError, type JobError } from './run-jobs.js';
import { ALIGN, slotView, zeroViews } from './slab.js';
import type { RestorePool } from './worker-pool.js';

export type ImageFormat = 'raw' | 'qcow2';

/** Largest single write (bytes): a run of adjacent slots, or one zero piece. */
const MAX_WRITE = 8 * 1024 * 1024;
/** Most buffers in one writev (Linux IOV_MAX is 1024). */
const MAX_IOVS = 1024;
/** Zero writes on devices go in pieces of this size. */
const ZERO_PIECE = MAX_WRITE;
/** An NBD export gets NBD_CMD_WRITE_ZEROES, which carries no payload: far larger pieces. */
const NBD_ZERO_PIECE = 1024 * 1024 * 1024;
/**
 * O_DIRECT writes in flight: the second waits in the kernel (ext4 serializes writes that
 * allocate) and starts the moment the first completes, without waiting for this thread to be
 * scheduled on a busy machine. Page-cache writes go one at a time (two would only spin on the
 * inode lock).
 */
const DIRECT_WRITES = 2;
/** Page-cache writes only: start an fdatasync after this many bytes (one at a time). */
const SYNC_EVERY = 64 * 1024 * 1024;

const writevP = promisify(writev);
const fdatasyncP = promisify(fdatasync);

export interface WriteContext {
  pool: RestorePool;
  /** Load jobs in flight at most. */
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

/** What a write is about, for error messages. */
type Tag = { kind: 'chunk'; index: number; offset: number; hex: string } | { kind: 'zero'; offset: number; length: number };

/** One write of the plan: a data chunk (loaded by a worker first) or a zero piece. */
interface Planned {
  tag: Tag;
  /** Where it goes in the output (file or device offset), and how many bytes. */
  at: number;
  length: number;
  /** Data chunks: the digest to load and check. */
  hex?: string;
}

interface Queued extends Planned {
  /** The slot a data chunk is loaded into; -1 for a zero piece. */
  slot: number;
  /** Loaded and checked (data), or nothing to load (zeros). */
  ready: boolean;
}

/** Size of the output file (or the device bytes needed) for `plan` in `format`. */
export function outputSize(plan: DiskPlan, format: ImageFormat): number {
  return format === 'raw' ? plan.size : qcow2Layout(plan).fileSize;
}

/** Where a disk is written: a file or block device, or an NBD export (raw only). */
export type WriteTarget = OutputTarget | NbdOutput;

export async function writeDisk(plan: DiskPlan, format: ImageFormat, target: WriteTarget, ctx: WriteContext): Promise<DiskWriteResult> {
  if (target instanceof NbdOutput && format !== 'raw') {
    throw new PullbackError('USAGE', `an NBD export takes raw data (its server decides the image format): restore disk ${plan.disk} with --format raw`);
  }
  const zeroFill = format === 'raw' && target.kind !== 'file';
  const total = plan.dataBytes + (zeroFill ? plan.zeroBytes : 0);
  let metaBytes = 0;
  let place: (rank: number, index: number) => number = (_r, i) => i * plan.chunkSize;
  if (format === 'qcow2' && !(target instanceof NbdOutput)) {
    const layout = qcow2Layout(plan);
    metaBytes = await writeQcow2Metadata(target, layout, plan.data);
    place = (rank) => dataChunkOffset(layout, rank);
  }
  ctx.onProgress?.(0, total);
  const piece = target instanceof NbdOutput ? NBD_ZERO_PIECE : ZERO_PIECE;
  const w = await writeInOrder(plannedInOrder(plan, place, zeroFill, piece), target, ctx, (done) => ctx.onProgress?.(done, total), plan);
  return { bytesWritten: w.bytes + metaBytes, chunks: w.chunks };
}

/** Data chunks and (with zeroFill) zero pieces, interleaved in guest order for locality. */
function* plannedInOrder(plan: DiskPlan, place: (rank: number, index: number) => number, zeroFill: boolean, zeroPiece: number): Generator<Planned> {
  const zeros = zeroFill ? splitRanges(plan.zeroRanges, zeroPiece) : [][Symbol.iterator]();
  let z = zeros.next();
  for (let rank = 0; rank < plan.data.length; rank++) {
    const index = plan.data[rank] as number;
    const offset = index * plan.chunkSize;
    for (; z.done !== true && z.value.offset < offset; z = zeros.next()) {
      const { offset: o, length } = z.value;
      yield { tag: { kind: 'zero', offset: o, length }, at: o, length };
    }
    const hex = toHex(plan.map.digestAt(index));
    yield { tag: { kind: 'chunk', index, offset, hex }, at: place(rank, index), length: plan.map.lengthOf(index), hex };
  }
  for (; z.done !== true; z = zeros.next()) {
    const { offset: o, length } = z.value;
    yield { tag: { kind: 'zero', offset: o, length }, at: o, length };
  }
}

/**
 * The load/write pipeline. At most `ctx.window` loads in flight and one slot per loaded or
 * loading chunk; DIRECT_WRITES writes in flight with O_DIRECT, else one. The first failure (a load error, a write error, the
 * pool breaking, the signal) stops new loads and writes; the promise settles only after
 * every load and write already started has finished, so the caller can close or remove the
 * output safely afterwards.
 */
function writeInOrder(
  planned: Iterator<Planned>,
  target: WriteTarget,
  ctx: WriteContext,
  onWritten: (bytesDone: number) => void,
  plan: DiskPlan,
): Promise<{ bytes: number; chunks: number }> {
  const slab = ctx.pool.slab;
  return new Promise((resolve, reject) => {
    const free: number[] = [];
    for (let k = slab.slots - 1; k >= 0; k--) free.push(k);
    /** Planned writes in output order; [head, length) are not written yet. */
    let queue: Queued[] = [];
    let head = 0;
    let lookahead: Planned | undefined;
    let exhausted = false;
    let loading = 0;
    let writing = 0;
    let syncing = false;
    let sinceSync = 0;
    const nbd = target instanceof NbdOutput ? target.client : undefined;
    let direct = !(target instanceof NbdOutput) && target.directFd !== undefined;
    let bytes = 0;
    let chunks = 0;
    let failure: Error | undefined;
    let settled = false;

    const fail = (e: Error): void => {
      failure ??= e;
    };
    const onAbort = (): void => {
      fail(abortError(ctx.signal));
      pump();
    };

    /** The next planned write, or undefined when the plan is exhausted. */
    const peek = (): Planned | undefined => {
      if (lookahead === undefined && !exhausted) {
        let r: IteratorResult<Planned>;
        try {
          r = planned.next();
        } catch (e) {
          fail(e instanceof Error ? e : new Error(String(e)));
          exhausted = true;
          return undefined;
        }
        if (r.done === true) exhausted = true;
        else lookahead = r.value;
      }
      return lookahead;
    };

    const dispatch = (): void => {
      // Zero pieces queue without a slot; bound the queue so a long zero run is not listed at once.
      while (failure === undefined && queue.length - head < 2 * slab.slots) {
        const p = peek();
        if (p === undefined) return;
        if (p.hex === undefined) {
          queue.push({ ...p, slot: -1, ready: true });
          lookahead = undefined;
          continue;
        }
        if (free.length === 0 || loading >= ctx.window) return;
        const item: Queued = { ...p, slot: free.pop() as number, ready: false };
        lookahead = undefined;
        queue.push(item);
        loading++;
        ctx.pool.run({ type: 'load', hex: p.hex, length: p.length, slot: item.slot }).then(
          (r) => {
            loading--;
            if (r.type === 'error') fail(loadError(r, item.tag, plan, target, ctx));
            else item.ready = true;
            pump();
          },
          (e: unknown) => {
            loading--;
            fail(e instanceof Error ? e : new Error(String(e)));
            pump();
          },
        );
      }
    };

    const aligned = (q: Queued): boolean => q.at % ALIGN === 0 && q.length % ALIGN === 0;

    const startWrites = (): void => {
      while (failure === undefined && writing < (nbd !== undefined ? NBD_WRITES : direct ? DIRECT_WRITES : 1)) {
        if (!startWrite()) return;
      }
    };

    /** Starts a write of the ready run at the head of the queue; false when there is none. */
    const startWrite = (): boolean => {
      const first = queue[head];
      if (first === undefined || !first.ready) return false;
      const viaDirect = direct && aligned(first);
      const run: Queued[] = [first];
      // NBD sends from the slot itself (or no payload at all for zeros): no buffer list.
      const bufs: Buffer[] = nbd !== undefined ? [] : first.slot >= 0 ? [slotView(slab, first.slot, first.length)] : zeroViews(slab, first.length);
      let end = first.at + first.length;
      let length = first.length;
      // NBD: one request per chunk or zero piece (the server splits nothing; requests pipeline).
      for (let j = head + 1; nbd === undefined && j < queue.length; j++) {
        const q = queue[j] as Queued;
        if (!q.ready || q.at !== end || length + q.length > MAX_WRITE) break;
        if (direct && aligned(q) !== viaDirect) break;
        const more = q.slot >= 0 ? [slotView(slab, q.slot, q.length)] : zeroViews(slab, q.length);
        if (bufs.length + more.length > MAX_IOVS) break;
        bufs.push(...more);
        run.push(q);
        end += q.length;
        length += q.length;
      }
      head += run.length;
      if (head >= 1024) {
        queue = queue.slice(head);
        head = 0;
      }
      writing++;
      const call = ctx.signal === undefined ? {} : { signal: ctx.signal };
      const written =
        nbd === undefined
          ? writeAll(bufs, first.at, viaDirect)
          : first.slot >= 0
            ? nbd.write(first.at, slotView(slab, first.slot, first.length), call)
            : nbd.writeZeroes(first.at, first.length, call);
      written.then(
        () => {
          writing--;
          for (const q of run) {
            if (q.slot >= 0) {
              free.push(q.slot);
              chunks++;
            }
          }
          bytes += length;
          if (failure === undefined) onWritten(bytes);
          if (!viaDirect) sinceSync += length;
          pump();
        },
        (e: unknown) => {
          writing--;
          fail(writeError(e, first.tag, plan, target, ctx));
          pump();
        },
      );
      return true;
    };

    /** Writes all of `bufs` at `position`; an O_DIRECT write the kernel refuses is redone through the page cache. */
    const writeAll = async (bufs: Buffer[], position: number, viaDirect: boolean): Promise<void> => {
      let rest = bufs;
      let pos = position;
      let useDirect = viaDirect;
      if (target instanceof NbdOutput) throw new PullbackError('INTERNAL', 'writeAll called for an NBD export');
      while (rest.length > 0) {
        let n: number;
        try {
          n = (await writevP(useDirect ? (target.directFd as number) : target.fd, rest, pos)).bytesWritten;
        } catch (e) {
          if (useDirect && (e as NodeJS.ErrnoException).code === 'EINVAL') {
            // Alignment this filesystem or device does not accept: page cache from now on.
            useDirect = false;
            direct = false;
            continue;
          }
          throw e;
        }
        if (n === 0) throw new Error(`writing at offset ${pos} made no progress`);
        pos += n;
        rest = advance(rest, n);
      }
    };

    /** Page-cache writes: start writeback early, one fdatasync at a time. */
    const startSync = (): void => {
      if (syncing || failure !== undefined || sinceSync < SYNC_EVERY || target instanceof NbdOutput) return;
      syncing = true;
      sinceSync = 0;
      fdatasyncP(target.fd).then(
        () => {
          syncing = false;
          pump();
        },
        (e: unknown) => {
          syncing = false;
          fail(new PullbackError('RESTORE_FAILED', `restoring backup ${ctx.backupId} disk ${plan.disk}: flushing ${target.writePath} failed: ${(e as Error).message}`, { cause: e }));
          pump();
        },
      );
    };

    const pump = (): void => {
      dispatch();
      startWrites();
      startSync();
      const drained = exhausted && lookahead === undefined && head === queue.length;
      if (!settled && loading === 0 && writing === 0 && !syncing && (failure !== undefined || drained)) {
        settled = true;
        ctx.signal?.removeEventListener('abort', onAbort);
        if (failure !== undefined) reject(failure);
        else resolve({ bytes, chunks });
      }
    };

    if (ctx.signal?.aborted === true) fail(abortError(ctx.signal));
    else ctx.signal?.addEventListener('abort', onAbort, { once: true });
    pump();
  });
}

/** `bufs` without its first `n` bytes. */
function advance(bufs: Buffer[], n: number): Buffer[] {
  let i = 0;
  let left = n;
  while (i < bufs.length && left >= (bufs[i] as Buffer).length) left -= (bufs[i++] as Buffer).length;
  const rest = bufs.slice(i);
  if (left > 0 && rest.length > 0) rest[0] = (rest[0] as Buffer).subarray(left);
  return rest;
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

function writeError(e: unknown, tag: Tag, plan: DiskPlan, target: WriteTarget, ctx: WriteContext): PullbackError {
  const errno = (e as NodeJS.ErrnoException).code ?? '';
  return loadError({ type: 'error', job: 0, kind: 'output-io', message: (e as Error).message ?? String(e), errno }, tag, plan, target, ctx);
}

function loadError(reply: JobError, tag: Tag, plan: DiskPlan, target: WriteTarget, ctx: WriteContext): PullbackError {
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
