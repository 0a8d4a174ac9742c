// Backups of a shut-off domain, without starting it: each image is exported read-only by
// qemu-nbd. libvirt cannot create or delete checkpoints of an inactive domain, so:
// - incremental: when the base backup's checkpoint bitmap is present and was cleanly closed
//   in every qcow2 image, `qemu-nbd -B` exports it and only dirty chunks are read;
// - the backup records as its checkpoint the newest pullback checkpoint whose bitmaps are
//   valid: nothing wrote to the disks since the domain stopped, so that bitmap holds every
//   change since this backup too, and the next incremental can start from it.
// Otherwise the backup is full. The log says which, and why.
import { join } from 'node:path';
import { errorMessage } from '../errors.js';
import type { BackupRecord, BackupWriter } from '../store/index.js';
import { newBackupId } from '../store/index.js';
import { currentOwner } from '../store/owner.js';
import { CHECKPOINT_PREFIX } from './checkpoints.js';
import type { Decision } from './decide.js';
import { createJobDir, DEFAULT_SCRATCH_DIR } from './job-dir.js';
import { imageInfo, startQemuNbd, type QemuNbdExport } from './qemu-nbd.js';
import { beginRecord, diskResults, readSelectedDisk, type BackupDeps, type BackupOptions, type BackupResult, type DiskPlan } from './run.js';

export interface OfflineInput {
  domain: string;
  decision: Exclude<Decision, { level: 'error' }>;
  disks: DiskPlan[];
  base: BackupRecord | undefined;
  inactiveXml: string;
  checkpoints: ReadonlySet<string>;
  opts: BackupOptions;
  deps: BackupDeps;
}

/** A bitmap problem of `name` in any incremental-capable disk, or undefined when usable everywhere. */
async function bitmapProblem(disks: DiskPlan[], name: string): Promise<string | undefined> {
  for (const d of disks.filter((x) => x.incrementalCapable)) {
    const info = await imageInfo(d.source);
    const b = info.bitmaps.find((x) => x.name === name);
    if (b === undefined) return `bitmap ${name} is missing from ${d.name} (${d.source})`;
    if (b.flags.includes('in-use')) return `bitmap ${name} in ${d.name} is inconsistent (the image was not closed cleanly)`;
  }
  return undefined;
}

export async function backupOffline(input: OfflineInput): Promise<BackupResult> {
  const { domain, disks, opts } = input;
  const { repo } = input.deps;
  const log = opts.log ?? (() => undefined);
  const signal = opts.signal;

  let decision = input.decision;
  if (decision.level === 'incremental') {
    const problem = await bitmapProblem(disks, decision.sinceCheckpoint);
    if (problem !== undefined) decision = { level: 'full', reason: problem };
  }
  // The checkpoint this backup can be a base for: the newest valid pullback checkpoint.
  let checkpoint = '';
  for (const name of [...input.checkpoints].reverse()) {
    if (!name.startsWith(CHECKPOINT_PREFIX)) continue;
    if ((await bitmapProblem(disks, name)) === undefined) {
      checkpoint = name;
      break;
    }
  }
  log(
    `domain ${domain} is shut off: ${decision.level} backup from its images with qemu-nbd (${decision.reason})` +
      (checkpoint === '' ? '; no valid checkpoint, so the next backup will be full' : `; next incremental from ${checkpoint}`),
  );

  const time = repo.newBackupTime(domain);
  const id = newBackupId(time);
  const parentId = decision.level === 'incremental' ? decision.parentId : null;
  const jobDir = await createJobDir(opts.scratchDir ?? DEFAULT_SCRATCH_DIR, id, currentOwner());
  let writer: BackupWriter | undefined;
  const exports: QemuNbdExport[] = [];
  try {
    writer = await beginRecord(repo, { id, time, domain, level: decision.level, parentId, checkpoint, disks, domainXml: input.inactiveXml });
    const timings = await Promise.all(
      disks.map(async (d): Promise<{ name: string; seconds: number }> => {
        const incremental = decision.level === 'incremental' && d.incrementalCapable;
        const bitmap = incremental && decision.level === 'incremental' ? decision.sinceCheckpoint : undefined;
        const exp = await startQemuNbd({
          image: d.source,
          format: d.format,
          socket: join(jobDir.path, `${d.name}.sock`),
          exportName: d.name,
          bitmap,
          signal,
        });
        exports.push(exp);
        const target = { socketPath: exp.socket, exportName: exp.exportName };
        return readSelectedDisk({ domain, level: decision.level, repo, writer: writer as BackupWriter, opts }, d, target, bitmap);
      }),
    );
    const record = await writer.complete({});
    return {
      id: record.id,
      domain,
      level: decision.level,
      reason: decision.reason,
      checkpoint,
      parent: parentId,
      mode: 'offline',
      disks: diskResults(record, timings),
    };
  } catch (e) {
    if (writer !== undefined) await writer.fail(errorMessage(e)).catch(() => undefined);
    throw e;
  } finally {
    await Promise.allSettled(exports.map((x) => x.stop()));
    await jobDir.remove().catch(() => undefined);
  }
}
