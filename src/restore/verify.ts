// `--verify`: re-reads a written image and compares it with the backup's digests, before the
// output is committed. QEMU interprets the image, not our writer: `qemu-img map` says where
// each guest range lives in the file (identity for raw; through L1/L2 for qcow2) and which
// ranges are holes or unallocated; for qcow2, `qemu-img check` must also find no corruption
// and no leaked clusters. Then, in the worker pool:
//   every data chunk   its guest range is read from the mapped host offsets (holes count as
//                      zeros) and must hash to the chunk's digest
//   every zero range   must map as a hole / zero, or read back as all zeros
import { execFile } from 'node:child_process';
import { PullbackError } from '../errors.js';
import { toHex } from '../store/hash.js';
import type { OutputTarget } from './output.js';
import type { DiskPlan } from './plan.js';
import { runJobs, type JobError, type TaggedJob } from './run-jobs.js';
import type { ImageFormat } from './write-disk.js';
import type { RestorePool } from './worker-pool.js';

/** One entry of `qemu-img map --output=json`. */
export interface MapExtent {
  start: number;
  length: number;
  data: boolean;
  zero: boolean;
  /** Host offset, present when the range is allocated in this file. */
  offset?: number;
}

export interface VerifyContext {
  pool: RestorePool;
  window: number;
  backupId: string;
  signal?: AbortSignal;
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
}

export interface VerifyResult {
  /** Bytes actually read back (holes are not read). */
  bytesRead: number;
  chunksChecked: number;
}

type Tag = { kind: 'chunk'; index: number; hex: string } | { kind: 'zero'; offset: number; length: number };

export async function verifyDisk(plan: DiskPlan, format: ImageFormat, target: OutputTarget, ctx: VerifyContext): Promise<VerifyResult> {
  const where = `verifying disk ${plan.disk} of backup ${ctx.backupId} at ${target.writePath}`;
  if (format === 'qcow2') await qemuImgCheck(target.writePath, where, ctx.signal);
  // A device maps as one data range (no holes to find); QEMU sees a raw file rounded up to
  // whole sectors, so ranges are clipped to the disk.
  const extents =
    target.kind === 'device' && format === 'raw'
      ? [{ start: 0, length: plan.size, data: true, zero: false, offset: 0 }]
      : clip(await qemuImgMap(target.writePath, format, where, ctx.signal), plan.size);
  const mapped = extents.reduce((n, e) => n + e.length, 0);
  if (mapped !== plan.size) {
    throw new PullbackError('RESTORE_FAILED', `${where}: qemu-img maps ${mapped} bytes, the disk has ${plan.size}`);
  }
  let read = 0;
  let chunks = 0;
  const jobs = verifyJobs(plan, extents, target.fd);
  ctx.onProgress?.(0, plan.size);
  let done = 0;
  await runJobs<Tag>(ctx.pool, jobs, {
    window: ctx.window,
    ...(ctx.signal !== undefined ? { signal: ctx.signal } : {}),
    onDone: (bytes, tag) => {
      read += bytes;
      if (tag.kind === 'chunk') {
        chunks++;
        done += plan.map.lengthOf(tag.index);
      } else {
        done += tag.length;
      }
      ctx.onProgress?.(done, plan.size);
    },
    onError: (reply: JobError, tag) => {
      const what = tag.kind === 'chunk' ? `chunk ${tag.index} (byte offset ${tag.index * plan.chunkSize}, digest ${tag.hex})` : `zero range at byte offset ${tag.offset} (${tag.length} bytes)`;
      return new PullbackError('RESTORE_FAILED', `${where}: ${what}: ${reply.message}; the output was not kept`, {
        cause: new PullbackError('RESTORE_FAILED', reply.message),
      });
    },
  });
  // Holes of zero ranges were never read: report them as verified too.
  ctx.onProgress?.(plan.size, plan.size);
  return { bytesRead: read, chunksChecked: chunks };
}

/** Check jobs for data chunks, then check-zero jobs for allocated bytes inside zero ranges. */
function* verifyJobs(plan: DiskPlan, extents: readonly MapExtent[], fd: number): Generator<TaggedJob<Tag>> {
  const cursor = new ExtentCursor(extents);
  for (const index of plan.data) {
    // A piece that reads as zeros without data (a hole) is hashed as zeros: host offset -1.
    const pieces = cursor.pieces(index * plan.chunkSize, plan.map.lengthOf(index)).map((p): [number, number] => [p.host ?? -1, p.length]);
    const hex = toHex(plan.map.digestAt(index));
    yield { job: { type: 'check', hex, fd, pieces }, tag: { kind: 'chunk', index, hex } };
  }
  const zc = new ExtentCursor(extents);
  for (const r of plan.zeroRanges) {
    for (const p of zc.pieces(r.offset, r.length)) {
      if (p.host === undefined) continue;
      yield { job: { type: 'check-zero', fd, offset: p.host, length: p.length }, tag: { kind: 'zero', offset: p.guest, length: p.length } };
    }
  }
}

function clip(extents: MapExtent[], size: number): MapExtent[] {
  return extents.filter((e) => e.start < size).map((e) => (e.start + e.length <= size ? e : { ...e, length: size - e.start }));
}

interface Piece {
  guest: number;
  length: number;
  /** Host offset, or undefined when the range reads as zeros without data. */
  host?: number;
}

/** Walks sorted, contiguous extents for ascending guest ranges. */
class ExtentCursor {
  private i = 0;
  constructor(private readonly extents: readonly MapExtent[]) {}

  pieces(start: number, length: number): Piece[] {
    const out: Piece[] = [];
    const end = start + length;
    while (this.i < this.extents.length && this.endOf(this.i) <= start) this.i++;
    for (let j = this.i; j < this.extents.length; j++) {
      const e = this.extents[j] as MapExtent;
      if (e.start >= end) break;
      const a = Math.max(start, e.start);
      const b = Math.min(end, e.start + e.length);
      const readsZero = !e.data || e.zero || e.offset === undefined;
      out.push(readsZero ? { guest: a, length: b - a } : { guest: a, length: b - a, host: (e.offset as number) + (a - e.start) });
    }
    return out;
  }

  private endOf(j: number): number {
    const e = this.extents[j] as MapExtent;
    return e.start + e.length;
  }
}

function qemuImg(args: string[], signal: AbortSignal | undefined): Promise<{ stdout: string; stderr: string; code: number }> {
  return new Promise((resolve, reject) => {
    execFile('qemu-img', args, { maxBuffer: 1024 * 1024 * 1024, ...(signal !== undefined ? { signal } : {}) }, (err, stdout, stderr) => {
      if (err === null) {
        resolve({ stdout, stderr, code: 0 });
        return;
      }
      if (signal?.aborted === true) {
        reject(new PullbackError('ABORTED', 'verification aborted', { cause: err }));
        return;
      }
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        reject(new PullbackError('RESTORE_FAILED', '--verify needs qemu-img, which is not installed (Debian: qemu-utils)', { cause: err }));
        return;
      }
      resolve({ stdout, stderr, code: typeof err.code === 'number' ? err.code : 1 });
    });
  });
}

export async function qemuImgMap(path: string, format: ImageFormat, where: string, signal?: AbortSignal): Promise<MapExtent[]> {
  const r = await qemuImg(['map', '--output=json', '-f', format, path], signal);
  if (r.code !== 0) throw new PullbackError('RESTORE_FAILED', `${where}: qemu-img map failed: ${r.stderr.trim()}`);
  const raw = JSON.parse(r.stdout) as Array<{ start: number; length: number; data: boolean; zero: boolean; offset?: number }>;
  return raw.map((e) => ({ start: e.start, length: e.length, data: e.data, zero: e.zero, ...(e.offset !== undefined ? { offset: e.offset } : {}) }));
}

/** Exit 0 only: 2 = corruptions, 3 = leaked clusters, 1 = check failed (qemu-img(1)). */
export async function qemuImgCheck(path: string, where: string, signal?: AbortSignal): Promise<void> {
  const r = await qemuImg(['check', '-f', 'qcow2', path], signal);
  if (r.code !== 0) {
    const detail = `${r.stdout}\n${r.stderr}`.trim().split('\n').slice(0, 5).join('; ');
    throw new PullbackError('RESTORE_FAILED', `${where}: qemu-img check exited ${r.code}: ${detail}`);
  }
}
