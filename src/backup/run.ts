// The backup run: joins libvirt (job + checkpoint), NBD (reading) and the store (ingest).
//
// Life of a live backup (running domain):
//   leftover job check -> level decision -> repository record 'running' ->
//   backup-begin (pull job + checkpoint pullback.<id>, atomically) -> every disk read in
//   parallel -> job ended (domjobabort) while all chunks become durable and the record
//   'complete' (with domain and checkpoint XML) -> older pullback checkpoints deleted.
// On any failure or signal: job ended, the new checkpoint deleted, the record marked
// failed. A failed backup is never a base: bases come from complete records only.
// A shut-off domain goes through offline.ts instead (qemu-nbd over the images).
import { setMaxListeners } from 'node:events';
import { PullbackError, errorMessage } from '../errors.js';
import { buildBackupXml, type BackupDiskSpec } from '../libvirt/backup-xml.js';
import { buildCheckpointXml } from '../libvirt/checkpoint-xml.js';
import { parseDomainXml } from '../libvirt/domain-xml.js';
import type { Libvirt } from '../libvirt/libvirt.js';
import { QEMU_DIRTY_BITMAP_PREFIX } from '../nbd/constants.js';
import type { NbdTarget } from '../nbd/index.js';
import { newBackupId, type BackupRecord, type BackupWriter, type Repository } from '../store/index.js';
import { currentOwner } from '../store/owner.js';
import { prefetchFirstQueries } from './first-queries.js';
import { decideLevel, type Decision, type RequestedLevel } from './decide.js';
import { createJobDir, DEFAULT_SCRATCH_DIR, removeDeadJobDirs } from './job-dir.js';
import { JOB_END_TIMEOUT_MS, waitForJobEnd } from './job-end.js';
import { handleLeftoverJob } from './leftover.js';
import { backupOffline } from './offline.js';
import type { DiskProgress } from './read-disk.js';
import { formatMiB } from '../units.js';
import { defaultScratchFloor, scratchSpace, watchScratch, type ScratchWatch } from './scratch-watch.js';
import { selectDisks, type SelectedDisk } from './select-disks.js';
import { ensureBaseCheckpoint, olderCheckpoints } from './checkpoints.js';

export interface BackupOptions {
  domain: string;
  level?: RequestedLevel;
  disks?: readonly string[];
  excludeDisks?: readonly string[];
  scratchDir?: string;
  /**
   * Free space kept in the scratch directory while a live job runs (scratch-watch.ts): below
   * it the job is ended and the backup fails, before the guest's writes would. Default: 5% of
   * that filesystem, 64 MiB to 1 GiB.
   */
  scratchFloorBytes?: number;
  /** How often the scratch directory's free space is checked (ms, default 200). */
  scratchPollMs?: number;
  /** NBD connections per disk. */
  connections?: number;
  signal?: AbortSignal;
  /** Human-readable messages (decision, skipped disks, cleanup). */
  log?: (message: string) => void;
  onProgress?: (p: DiskProgress) => void;
  /**
   * Called once the job runs and the backup's point in time is fixed, before any data is
   * read: the moment to thaw guest filesystems frozen for consistency. (Tests also write to
   * the guest here, to prove such writes do not leak into the backup.)
   */
  afterJobStart?: () => Promise<void>;
  /**
   * Called once the backup's record is complete, before older checkpoints are deleted and
   * while its job is being ended. (Tests kill the process here: the next run must keep this
   * backup's checkpoint as its base, and end the job if it still runs.)
   */
  afterComplete?: () => Promise<void> | void;
  /** The first questions, already sent by the caller (prefetchFirstQueries); else sent here. */
  firstQueries?: Promise<void>;
}

export interface BackupDeps {
  libvirt: Libvirt;
  repo: Repository;
}

export interface DiskResult {
  name: string;
  size: number;
  bytesRead: number;
  bytesStored: number;
  chunksNew: number;
  chunksDeduped: number;
  seconds: number;
}

export interface BackupResult {
  id: string;
  domain: string;
  level: 'full' | 'incremental';
  reason: string;
  checkpoint: string;
  parent: string | null;
  mode: 'live' | 'offline';
  disks: DiskResult[];
}

export interface DiskPlan extends SelectedDisk {
  size: number;
}

export async function runBackup(opts: BackupOptions, deps: BackupDeps): Promise<BackupResult> {
  const { libvirt, repo } = deps;
  const log = opts.log ?? (() => undefined);
  const signal = opts.signal;
  const call = signal === undefined ? {} : { signal };
  const domain = opts.domain;

  // One virsh process answers the questions below (virsh-batch.ts); each call then uses its answer.
  await (opts.firstQueries ?? prefetchFirstQueries(libvirt, domain, call));
  await libvirt.ping(call);
  const state = await libvirt.domainState(domain, call);
  const inactiveXml = await libvirt.dumpXml(domain, { ...call, inactive: true });
  const running = state !== 'shut off' && state !== 'crashed';
  const liveXml = running ? await libvirt.dumpXml(domain, call) : inactiveXml;
  const selection = selectDisks(domain, parseDomainXml(liveXml).disks, { include: opts.disks, exclude: opts.excludeDisks });
  for (const m of selection.messages) log(m);
  if (selection.selected.length > 1) await libvirt.prefetch(domain, selection.selected.map((d) => ({ capacity: d.name })), call);
  const disks: DiskPlan[] = [];
  for (const d of selection.selected) disks.push({ ...d, size: await libvirt.blockCapacity(domain, d.name, call) });

  if (running) await handleLeftoverJob(domain, { libvirt, repo, log });

  const base = repo.latestComplete(domain);
  const checkpointNames = await ensureBaseCheckpoint(domain, base, { libvirt, log, running });
  const checkpoints = new Set(checkpointNames);
  const decision = decideLevel({
    requested: opts.level ?? 'auto',
    base: base === undefined ? undefined : { id: base.id, checkpoint: base.checkpoint, disks: base.disks },
    disks: disks.map((d) => ({ name: d.name, size: d.size, incrementalCapable: d.incrementalCapable })),
    checkpoints,
  });
  if (decision.level === 'error') throw new PullbackError('BACKUP_FAILED', `domain ${domain}: ${decision.reason}`);

  await removeDeadJobDirs(opts.scratchDir ?? DEFAULT_SCRATCH_DIR, log);
  if (!running) {
    return backupOffline({ domain, decision, disks, base, inactiveXml, checkpoints, opts, deps });
  }
  log(`domain ${domain}: ${decision.level} backup (${decision.reason})`);
  const live = { domain, disks, excluded: selection.excluded, inactiveXml, checkpointNames, opts, deps };
  try {
    return await backupLive({ ...live, decision });
  } catch (e) {
    // libvirt checks the base checkpoint's bitmaps only when the job begins: one removed or
    // damaged behind its back (by hand, an image copied in) fails every incremental from it.
    // `auto` then takes the full that any other unusable base gets; the broken checkpoint is
    // deleted as an older one after it (metadata only: its bitmap is gone).
    const broken = brokenBitmap(e);
    if (decision.level !== 'incremental' || broken === undefined) throw e;
    if ((opts.level ?? 'auto') !== 'auto') {
      throw new PullbackError(
        'BACKUP_FAILED',
        `domain ${domain}: checkpoint ${decision.sinceCheckpoint} cannot be the base of an incremental: ${broken}; run with --level auto or full`,
        { cause: e },
      );
    }
    const full = { level: 'full' as const, reason: `the bitmap of checkpoint ${decision.sinceCheckpoint} is unusable: ${broken}` };
    log(`domain ${domain}: ${full.reason}; taking a full backup instead`);
    return backupLive({ ...live, decision: full });
  }
}

/** libvirt's reason when backup-begin found the incremental base's bitmap missing or broken. */
function brokenBitmap(e: unknown): string | undefined {
  if (!(e instanceof PullbackError) || e.code !== 'CHECKPOINT_BITMAP_MISSING') return undefined;
  return /missing or broken bitmap [^\n]*/.exec(e.message)?.[0]?.trim() ?? e.message;
}

interface LiveInput {
  domain: string;
  decision: Exclude<Decision, { level: 'error' }>;
  disks: DiskPlan[];
  excluded: string[];
  inactiveXml: string;
  /** libvirt's checkpoints of the domain just before the job, parents first. */
  checkpointNames: string[];
  opts: BackupOptions;
  deps: BackupDeps;
}

async function backupLive(input: LiveInput): Promise<BackupResult> {
  const { domain, decision, disks, opts } = input;
  const { libvirt, repo } = input.deps;
  const log = opts.log ?? (() => undefined);
  const time = repo.newBackupTime(domain);
  const id = newBackupId(time);
  const checkpoint = `pullback.${id}`;
  const parentId = decision.level === 'incremental' ? decision.parentId : null;
  const bitmapDisks = disks.filter((d) => d.incrementalCapable);
  const jobDir = await createJobDir(opts.scratchDir ?? DEFAULT_SCRATCH_DIR, id, currentOwner());
  // Fires when the scratch directory runs low; every read stops and the job ends.
  const scratchLow = new AbortController();
  const signal = opts.signal === undefined ? scratchLow.signal : AbortSignal.any([opts.signal, scratchLow.signal]);
  setMaxListeners(0, signal); // every NBD request in flight listens (as on the CLI's own signal)
  const readOpts = { ...opts, signal };
  let watch: ScratchWatch | undefined;

  let writer: BackupWriter | undefined;
  let jobStarted = false;
  /** The job's end, once the reads are done (it then runs beside the store's completion). */
  let jobEnding: Promise<void> | undefined;
  let checkpointCreated = false;
  try {
    const space = await scratchSpace(jobDir.path);
    const floor = opts.scratchFloorBytes ?? defaultScratchFloor(space.total);
    if (space.free < floor) throw scratchError(domain, jobDir.path, space.free, floor, false);
    writer = await beginRecord(repo, { id, time, domain, level: decision.level, parentId, checkpoint, disks, domainXml: input.inactiveXml });
    // Export and bitmap names are ours to choose: knowing them, no backup-dumpxml is needed.
    const exportOf = (d: DiskPlan): { exportName: string; exportBitmap?: string } =>
      decision.level === 'incremental' && d.incrementalCapable ? { exportName: d.name, exportBitmap: `backup-${d.name}` } : { exportName: d.name };
    const diskSpecs: BackupDiskSpec[] = [
      ...disks.map(
        (d): BackupDiskSpec => ({
          name: d.name,
          backup: true,
          scratch: jobDir.scratch(d.name),
          ...(decision.level === 'incremental' && !d.incrementalCapable ? { backupMode: 'full' as const } : {}),
          ...exportOf(d),
        }),
      ),
      ...input.excluded.map((name): BackupDiskSpec => ({ name, backup: false })),
    ];
    const backupXml = buildBackupXml({
      ...(decision.level === 'incremental' ? { incremental: decision.sinceCheckpoint } : {}),
      socket: jobDir.socket,
      disks: diskSpecs,
    });
    const checkpointXml =
      bitmapDisks.length === 0
        ? null
        : buildCheckpointXml({
            name: checkpoint,
            description: `pullback backup ${id}`,
            disks: [
              ...disks.map((d) => ({ name: d.name, checkpoint: d.incrementalCapable })),
              ...input.excluded.map((name) => ({ name, checkpoint: false })),
            ],
          });
    // handleLeftoverJob has just made sure no job runs: backupBegin need not ask again.
    await libvirt.backupBegin(domain, backupXml, checkpointXml, { signal, checkActiveJob: false });
    jobStarted = true;
    checkpointCreated = checkpointXml !== null;
    watch = watchScratch(jobDir.path, floor, opts.scratchPollMs ?? 200, (low) => {
      const err = scratchError(domain, jobDir.path, low.free, floor, true);
      log(err.message);
      scratchLow.abort(err);
      void endJob(libvirt, domain, log); // at once: guest writes stop copying into scratch
    });

    // The checkpoint's XML is final once the job runs: fetch it while the disks are read.
    const cpXmlPromise = checkpointCreated ? libvirt.checkpointDumpXml(domain, checkpoint) : Promise.resolve(undefined);
    cpXmlPromise.catch(() => undefined); // awaited below; a failure then is reported there
    await opts.afterJobStart?.();
    const timings = await Promise.all(
      disks.map(async (d): Promise<{ name: string; seconds: number }> => {
        // An export or bitmap libvirt did not create fails here as "no such export/context".
        const { exportName, exportBitmap } = exportOf(d);
        const target = { socketPath: jobDir.socket, exportName };
        return readSelectedDisk({ domain, level: decision.level, repo, writer: writer as BackupWriter, opts: readOpts }, d, target, exportBitmap);
      }),
    );
    // Every read has succeeded: the data is the job's point in time, even if the scratch watch
    // ended the job just now. (A read the job's end cut short has failed instead.) The job has
    // nothing more to give: it ends while the store makes the backup durable, which takes
    // about as long and needs nothing from it. A crash in between leaves a complete backup
    // and maybe a job, which the next run ends (leftover.ts).
    const cpXml = await cpXmlPromise; // before the job's end: one virsh session, one call at a time
    watch.stop();
    jobEnding = endJob(libvirt, domain, log);
    const record: BackupRecord = await writer.complete(cpXml === undefined ? {} : { checkpointXml: cpXml });
    await opts.afterComplete?.();
    await jobEnding;
    jobStarted = false;
    // Only now that this backup is complete are the checkpoints it made redundant deleted.
    const older = checkpointCreated ? olderCheckpoints(input.checkpointNames, checkpoint) : [];
    const deleted = await libvirt.deleteCheckpoints(domain, older);
    for (const [i, err] of deleted.entries()) {
      const old = older[i] ?? '';
      if (err === null) continue;
      // libvirt refuses to delete a checkpoint whose bitmap is already gone from the image
      // (removed by hand, or an image restored from elsewhere): only its metadata is left.
      if (err.code === 'CHECKPOINT_BITMAP_MISSING') {
        try {
          await libvirt.checkpointDelete(domain, old, { metadataOnly: true });
          log(`domain ${domain}: old checkpoint ${old} had lost its bitmap; deleted its metadata`);
          continue;
        } catch {
          // reported below with the first error
        }
      }
      log(`domain ${domain}: could not delete old checkpoint ${old}: ${errorMessage(err)}`);
    }
    await jobDir.remove();
    return {
      id: record.id,
      domain,
      level: decision.level,
      reason: decision.reason,
      checkpoint: checkpointCreated ? checkpoint : '',
      parent: parentId,
      mode: 'live',
      disks: diskResults(record, timings),
    };
  } catch (e) {
    watch?.stop();
    // Cleanup must run even when `signal` fired: none of these calls take it.
    if (jobEnding !== undefined) await jobEnding;
    else if (jobStarted) await endJob(libvirt, domain, log);
    if (checkpointCreated) {
      await libvirt.checkpointDelete(domain, checkpoint).catch((err: unknown) => {
        log(`could not delete checkpoint ${checkpoint} of the failed backup: ${errorMessage(err)}`);
      });
    }
    // Reads that failed because the scratch ran low fail with that reason, not their own.
    const err = scratchLow.signal.aborted ? (scratchLow.signal.reason as PullbackError) : e;
    if (writer !== undefined) await writer.fail(errorMessage(err)).catch(() => undefined);
    await jobDir.remove().catch(() => undefined);
    throw err;
  }
}

function scratchError(domain: string, dir: string, free: number, floor: number, during: boolean): PullbackError {
  const what = during
    ? `the scratch directory ${dir} ran low during the backup (${formatMiB(free)} free, below the ${formatMiB(floor)} kept free): the backup job was ended so that the guest's writes keep working`
    : `the scratch directory ${dir} has ${formatMiB(free)} free, less than the ${formatMiB(floor)} a backup keeps free there so that the guest's writes never fail`;
  return new PullbackError(
    'BACKUP_FAILED',
    `domain ${domain}: ${what}; give the scratch directory more room (--scratch-dir, or scratch_dir in the nightly config): it holds a copy of what the guest overwrites while a backup runs`,
  );
}

/**
 * read-disk.ts and the NBD client under it (~30 ms of module loading here): loaded while
 * libvirt starts the job or qemu-nbd the exports (beginRecord asks for it), not on the way
 * there.
 */
let readerModule: Promise<typeof import('./read-disk.js')> | undefined;
const loadReader = (): Promise<typeof import('./read-disk.js')> => (readerModule ??= import('./read-disk.js'));

/**
 * Opens the repository record of a backup (status running). A full reads data: its ingest
 * workers boot now, while libvirt starts the job or qemu-nbd the exports. (An incremental may
 * have nothing to read; it starts them at its first dirty chunk.)
 */
export async function beginRecord(
  repo: Repository,
  r: {
    id: string;
    time: Date;
    domain: string;
    level: 'full' | 'incremental';
    parentId: string | null;
    checkpoint: string;
    disks: DiskPlan[];
    domainXml: string;
  },
): Promise<BackupWriter> {
  const writer = await repo.beginBackup({ ...r, disks: r.disks.map((d) => ({ name: d.name, size: d.size })) });
  if (r.level === 'full') writer.prepare();
  loadReader().catch(() => undefined); // a failure shows where it is awaited, in readSelectedDisk
  return writer;
}

/**
 * Reads one disk from its NBD export into the backup. With `bitmap` (the export's dirty
 * bitmap name) only dirty chunks are read; without it inside an incremental (a disk with no
 * bitmap, e.g. raw) the disk is read whole and every chunk recorded.
 */
export async function readSelectedDisk(
  c: { domain: string; level: 'full' | 'incremental'; repo: Repository; writer: BackupWriter; opts: BackupOptions },
  d: DiskPlan,
  target: NbdTarget,
  bitmap: string | undefined,
): Promise<{ name: string; seconds: number }> {
  const started = performance.now();
  const { readDisk } = await loadReader();
  await readDisk({
    domain: c.domain,
    disk: d.name,
    target,
    level: c.level,
    dirtyBitmap: bitmap === undefined ? undefined : `${QEMU_DIRTY_BITMAP_PREFIX}${bitmap}`,
    chunkSize: c.repo.config.chunkSize,
    size: d.size,
    writer: c.writer,
    connections: c.opts.connections ?? 4,
    signal: c.opts.signal,
    onProgress: c.opts.onProgress,
  });
  return { name: d.name, seconds: (performance.now() - started) / 1000 };
}

/** Per-disk figures: the store's final statistics (after every chunk landed) and read time. */
export function diskResults(record: BackupRecord, timings: Array<{ name: string; seconds: number }>): DiskResult[] {
  return record.disks.map((s) => ({
    name: s.name,
    size: s.size,
    bytesRead: s.bytesRead,
    bytesStored: s.bytesStored,
    chunksNew: s.chunksNew,
    chunksDeduped: s.chunksDeduped,
    seconds: timings.find((t) => t.name === s.name)?.seconds ?? 0,
  }));
}

async function endJob(libvirt: Libvirt, domain: string, log: (m: string) => void): Promise<void> {
  try {
    await libvirt.jobAbort(domain);
  } catch (e) {
    if (e instanceof PullbackError && e.code === 'JOB_NOT_ACTIVE') return;
    log(`could not end the backup job of domain ${domain}: ${errorMessage(e)}`);
    return;
  }
  await waitAfterEnd(libvirt, domain, log);
}

/** After domjobabort: until libvirt has torn the job down (job-end.ts), so its files can go. */
async function waitAfterEnd(libvirt: Libvirt, domain: string, log: (m: string) => void): Promise<void> {
  try {
    if (!(await waitForJobEnd(libvirt, domain))) {
      log(`the backup job of domain ${domain} was ended but libvirt still lists it after ${JOB_END_TIMEOUT_MS / 1000} s; check it with 'virsh domjobinfo ${domain}'`);
    }
  } catch (e) {
    log(`could not check that the backup job of domain ${domain} has ended: ${errorMessage(e)}`);
  }
}
