// restoreBackup: a backup's disks from the store into image files or block devices.
//
// Per disk: the chain (full, then each incremental) is resolved into one chunk map by the
// store (Repository.resolveChunkMap), planned (plan.ts), and written once (write-disk.ts):
// every chunk that reads back at that backup is fetched and written exactly once, however
// long the chain. Every chunk is checked against its digest as it is written; the first
// missing or corrupt chunk stops the restore with an error naming chunk, disk and offset.
//
// All or nothing: every disk is written under a temporary name, flushed and (with `verify`)
// re-read; only when all disks succeeded are they renamed into place. On failure the
// temporaries are removed, an output directory this run created is removed if empty, and
// existing files stay as they were. Block devices and NBD exports are written in place (see
// output.ts, nbd-output.ts).
// A shared repository lock is held throughout, so prune/repair cannot remove chunks under us.
import { mkdir, rmdir, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { PullbackError } from '../errors.js';
import type { Repository } from '../store/index.js';
import { layout } from '../store/layout.js';
import { freeBytes } from '../store/no-space.js';
import { formatMiB } from '../units.js';
import { isNbdUri, NbdOutput } from './nbd-output.js';
import { checkOutput, OutputTarget, type OutputCheck } from './output.js';
import { planDisk } from './plan.js';
import { verifyDisk } from './verify.js';
import { RestorePool } from './worker-pool.js';
import { outputSize, writeDisk, type ImageFormat, type WriteTarget } from './write-disk.js';

export interface RestoreProgressEvent {
  disk: string;
  phase: 'write' | 'verify';
  bytesDone: number;
  bytesTotal: number;
}

export interface RestoreOptions {
  backupId: string;
  /**
   * Disks to restore (default: all disks of the backup). With exactly one disk, `output` is
   * the file (or block device) to write; otherwise it is a directory that receives
   * `<disk>.<format>` per disk (created if missing). An NBD URI (nbd://, nbd+unix://) names
   * an export that receives one disk in raw format, written in place.
   */
  disks?: string[];
  output: string;
  format: ImageFormat;
  /** Overwrite existing outputs (files are replaced atomically; devices are written in place). */
  force?: boolean;
  /** Re-read every written image and compare it with the digests before keeping it. */
  verify?: boolean;
  signal?: AbortSignal;
  onProgress?: (e: RestoreProgressEvent) => void;
  /** Worker threads (default: one per core). */
  workers?: number;
  /**
   * Write chunk data with O_DIRECT where the output allows it (default true); false writes
   * everything through the page cache. The result is the same either way.
   */
  directIo?: boolean;
}

export interface RestoredDisk {
  name: string;
  /** Virtual size, bytes. */
  size: number;
  /** Absolute path of the output, or the NBD URI. */
  path: string;
  format: ImageFormat;
  bytesWritten: number;
  /** Data chunks written. */
  chunks: number;
  seconds: number;
}

export interface RestoreResult {
  backup: string;
  domain: string;
  disks: RestoredDisk[];
  verified: boolean;
  seconds: number;
}

/** In-flight jobs per worker: enough to keep each busy while the main thread dispatches. */
const JOBS_PER_WORKER = 4;

const DISK_NAME = /^[A-Za-z0-9_+-][A-Za-z0-9_.+-]*$/;

export async function restoreBackup(repo: Repository, opts: RestoreOptions): Promise<RestoreResult> {
  const started = performance.now();
  const record = repo.getBackup(opts.backupId);
  if (record === undefined) {
    throw new PullbackError('BACKUP_NOT_FOUND', `no backup ${opts.backupId} in repository ${repo.dir}: see \`pullback list --repo ${repo.dir}\``);
  }
  if (opts.format !== 'raw' && opts.format !== 'qcow2') {
    throw new PullbackError('USAGE', `unknown image format '${String(opts.format)}': use raw or qcow2`);
  }
  const have = record.disks.map((d) => d.name);
  const names = opts.disks ?? have;
  if (names.length === 0) throw new PullbackError('USAGE', 'no disks to restore');
  for (const n of names) {
    if (!have.includes(n)) {
      throw new PullbackError('BACKUP_NOT_FOUND', `backup ${record.id} of domain ${record.domain} has no disk "${n}" (it has: ${have.join(', ')})`);
    }
  }
  if (new Set(names).size !== names.length) throw new PullbackError('USAGE', `disk list ${names.join(', ')} names a disk twice`);
  if (opts.format === 'qcow2') {
    for (const d of record.disks) {
      if (names.includes(d.name) && d.size % 512 !== 0) {
        throw new PullbackError('RESTORE_FAILED', `disk ${d.name} of backup ${record.id} is ${d.size} bytes, not a multiple of 512: QEMU cannot represent it as qcow2; restore it as raw`);
      }
    }
  }

  const toNbd = isNbdUri(opts.output);
  if (toNbd) {
    NbdOutput.target(opts.output); // a malformed URI fails before any work
    if (names.length !== 1) {
      throw new PullbackError('USAGE', `an NBD export receives one disk, and backup ${record.id} has ${names.length}: pick one with --disk`);
    }
    if (opts.format !== 'raw') {
      throw new PullbackError('USAGE', 'an NBD export takes raw data (its server decides the image format): restore with --format raw');
    }
  }
  const single = opts.disks?.length === 1 || toNbd;
  const outDir = toNbd ? opts.output : resolve(opts.output);
  let createdDir = false;
  if (!single) {
    for (const n of names) {
      if (!DISK_NAME.test(n)) throw new PullbackError('RESTORE_FAILED', `disk name "${n}" cannot be used as a file name; restore it alone with --disk and a path`);
    }
    createdDir = await ensureOutputDir(outDir);
  }
  const pathOf = (n: string): string => (single ? outDir : join(outDir, `${n}.${opts.format}`));

  const targets: WriteTarget[] = [];
  const results: RestoredDisk[] = [];
  let lock: Awaited<ReturnType<Repository['lock']>> | undefined;
  let pool: RestorePool | undefined;
  try {
    const checks: OutputCheck[] = toNbd ? [] : names.map((n) => checkOutput(pathOf(n), opts.force === true, n));
    // Workers boot (a V8 isolate and their modules each) while this thread takes the lock and
    // resolves the first chunk map.
    pool = new RestorePool({ chunksDir: layout(repo.dir).chunks, chunkSize: repo.config.chunkSize, ...(opts.workers !== undefined ? { workers: opts.workers } : {}) });
    lock = await repo.lock('shared', `restore of backup ${record.id}`, opts.signal);
    const window = pool.workerCount * JOBS_PER_WORKER;
    for (const [k, name] of names.entries()) {
      opts.signal?.throwIfAborted();
      const t0 = performance.now();
      const plan = planDisk(repo.resolveChunkMap(record.id, name));
      const target = toNbd
        ? await NbdOutput.open(opts.output, plan.size, name, opts.signal)
        : OutputTarget.open(checks[k] as OutputCheck, outputSize(plan, opts.format), name, opts.directIo !== false);
      targets.push(target);
      // A file gets at least the disk's data (sparse raw; qcow2 adds its metadata): fail now
      // rather than after writing what fits.
      const free = target.kind === 'file' ? freeBytes(dirname(target.path)) : Number.POSITIVE_INFINITY;
      if (free < plan.dataBytes) {
        throw new PullbackError(
          'RESTORE_FAILED',
          `restoring disk ${name} of backup ${record.id} needs at least ${formatMiB(plan.dataBytes)} in ${dirname(target.path)} (its data), which has ${formatMiB(free)} free: free space there or restore elsewhere`,
        );
      }
      const common = { pool, window, backupId: record.id, ...(opts.signal !== undefined ? { signal: opts.signal } : {}) };
      const progress = (phase: RestoreProgressEvent['phase']) => (bytesDone: number, bytesTotal: number) =>
        opts.onProgress?.({ disk: name, phase, bytesDone, bytesTotal });
      const w = await writeDisk(plan, opts.format, target, { ...common, repoDir: repo.dir, onProgress: progress('write') });
      if (target instanceof NbdOutput) {
        if (opts.verify === true) {
          await target.verify(plan, `verifying disk ${name} of backup ${record.id} at ${target.path}`, opts.signal, progress('verify'));
        }
      } else {
        target.flush();
        if (opts.verify === true) await verifyDisk(plan, opts.format, target, { ...common, onProgress: progress('verify') });
      }
      results.push({
        name,
        size: plan.size,
        path: target.path,
        format: opts.format,
        bytesWritten: w.bytesWritten,
        chunks: w.chunks,
        seconds: (performance.now() - t0) / 1000,
      });
    }
    for (const t of targets) await t.commit();
  } catch (e) {
    for (const t of targets) await t.discard();
    if (createdDir) await rmdir(outDir).catch(() => undefined);
    const err = abortAware(e, opts.signal);
    // An export cannot be rolled back: say that it may now hold part of the backup.
    const written = targets.find((t): t is NbdOutput => t instanceof NbdOutput);
    if (written !== undefined && err instanceof PullbackError) {
      throw new PullbackError(err.code, `${err.message} (NBD export ${written.path} may be partly written)`, { cause: err.cause ?? err });
    }
    throw err;
  } finally {
    await pool?.close();
    await lock?.release();
  }
  return {
    backup: record.id,
    domain: record.domain,
    disks: results,
    verified: opts.verify === true,
    seconds: (performance.now() - started) / 1000,
  };
}

/** Creates the output directory if missing; true when this call created it. */
async function ensureOutputDir(dir: string): Promise<boolean> {
  try {
    const st = await stat(dir);
    if (!st.isDirectory()) {
      throw new PullbackError('OUTPUT_EXISTS', `${dir} exists and is not a directory; restoring several disks needs a directory (or pick one with --disk)`);
    }
    return false;
  } catch (e) {
    if (e instanceof PullbackError) throw e;
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new PullbackError('RESTORE_FAILED', `cannot use output directory ${dir}: ${(e as Error).message}`, { cause: e });
    }
  }
  await mkdir(dir, { recursive: true });
  return true;
}

/** signal.throwIfAborted() throws the bare reason: give it the ABORTED code. */
function abortAware(e: unknown, signal: AbortSignal | undefined): unknown {
  if (e instanceof PullbackError || signal?.aborted !== true || e !== signal.reason) return e;
  return new PullbackError('ABORTED', 'restore aborted', { cause: e });
}
