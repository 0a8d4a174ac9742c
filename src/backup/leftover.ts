// A backup job left running by a pullback that was killed (kill -9, power loss of the host
// is different: the job dies with QEMU). Pull-mode jobs never end by themselves, so the
// domain stays busy and its scratch files grow until someone ends the job.
//
// A job is pullback's when its NBD socket sits in a pullback job directory
// (job-dir.ts); its owner.json says which process ran it. A dead owner means the job is a
// leftover: end it, delete the checkpoint it created, mark its backup failed, and say so
// (unless its backup had completed: then the checkpoint is kept as the next base).
// A live owner (another pullback backing up this domain right now) or a job of another
// tool is left alone with a clear error.
import { readFile, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { PullbackError, errorMessage } from '../errors.js';
import { parseBackupXml } from '../libvirt/backup-xml.js';
import type { Libvirt } from '../libvirt/libvirt.js';
import type { Repository } from '../store/index.js';
import { describeOwner, liveness, parseOwner } from '../store/owner.js';
import { CHECKPOINT_PREFIX } from './checkpoints.js';
import { backupIdFromSocket } from './job-dir.js';
import { waitForJobEnd } from './job-end.js';

export async function handleLeftoverJob(
  domain: string,
  deps: { libvirt: Libvirt; repo: Repository; log: (m: string) => void },
): Promise<void> {
  const { libvirt, repo, log } = deps;
  const job = await libvirt.jobInfo(domain);
  if (!job.active) return;
  const abortHint = `end it with 'virsh -c ${libvirt.uri} domjobabort ${domain}' if it is stale`;
  if (job.operation !== 'Backup') {
    throw new PullbackError('DOMAIN_BUSY', `domain ${domain} has an active ${job.operation ?? 'unknown'} job; wait for it to finish`);
  }
  let socket: string | null = null;
  try {
    socket = parseBackupXml(await libvirt.backupDumpXml(domain)).server?.socket ?? null;
  } catch {
    // The job may have ended in between; fall through to the checks below.
  }
  const id = backupIdFromSocket(socket);
  if (id === undefined || socket === null) {
    throw new PullbackError(
      'DOMAIN_BUSY',
      `domain ${domain} has a backup job that pullback did not start (socket ${socket ?? 'unknown'}); pullback leaves it alone: ${abortHint}`,
    );
  }
  const ownerText = await readFile(join(dirname(socket), 'owner.json'), 'utf8').catch(() => undefined);
  const owner = ownerText === undefined ? undefined : parseOwner(ownerText.trim());
  const state = owner === undefined ? 'unknown' : liveness(owner);
  const rec = repo.getBackup(id);
  // A job without its directory belongs to a pullback that has ended it already (the directory
  // goes last) while libvirt is still tearing it down (job-end.ts): wait for that.
  if (owner === undefined && rec?.status !== 'running' && (await waitForJobEnd(libvirt, domain))) return;
  if (state !== 'dead') {
    const who = owner === undefined ? 'an unknown process' : describeOwner(owner);
    throw new PullbackError(
      'DOMAIN_BUSY',
      `domain ${domain} is being backed up by another pullback (backup ${id}, ${who}); wait for it, or ${abortHint}`,
    );
  }
  log(`domain ${domain}: backup job of backup ${id} was left running by a pullback that died (${describeOwner(owner as NonNullable<typeof owner>)}); ending it`);
  try {
    await libvirt.jobAbort(domain);
  } catch (e) {
    if (!(e instanceof PullbackError && e.code === 'JOB_NOT_ACTIVE')) throw e;
  }
  if (!(await waitForJobEnd(libvirt, domain))) {
    throw new PullbackError('DOMAIN_BUSY', `domain ${domain}: the leftover backup job of backup ${id} was ended but libvirt still lists it; try again later, or ${abortHint}`);
  }
  const checkpoint = `${CHECKPOINT_PREFIX}${id}`;
  if (rec?.status === 'complete') {
    // Killed after its record was complete (between that and ending the job): every chunk is
    // durable, so its checkpoint is a valid base; deleting it would force the next backup full.
    log(`domain ${domain}: backup ${id} had completed; its checkpoint ${checkpoint} stays as the base for the next incremental`);
  } else if ((await libvirt.checkpointList(domain)).includes(checkpoint)) {
    try {
      await libvirt.checkpointDelete(domain, checkpoint);
      log(`domain ${domain}: deleted checkpoint ${checkpoint} of the unfinished backup`);
    } catch (e) {
      log(`domain ${domain}: could not delete checkpoint ${checkpoint}: ${errorMessage(e)}`);
    }
  }
  if (rec?.status === 'running') repo.markFailed(id, 'its pullback process died; the job was ended by a later run');
  await rm(dirname(socket), { recursive: true, force: true });
}
