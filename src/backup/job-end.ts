// Waiting for a backup job to be gone. Ending a pull-mode job is asynchronous in libvirt:
// `domjobabort` returns once QEMU was asked to cancel the job's block jobs, and the domain's
// job ends when QEMU reports them cancelled — under load a second later. Seen in CI: a backup
// returned, the next one found the job still active ("being backed up by another pullback"),
// and libvirt tore the job down after pullback had already removed its scratch files. So
// whoever ends a job waits until libvirt says the domain has none before going on.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Libvirt } from '../libvirt/libvirt.js';

/** How long a job may take to end after domjobabort before we give up waiting. */
export const JOB_END_TIMEOUT_MS = 30_000;

/** True once `domain` has no active job; false if it still has one after `timeoutMs`. */
export async function waitForJobEnd(libvirt: Libvirt, domain: string, timeoutMs = JOB_END_TIMEOUT_MS): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (let pause = 20; ; pause = Math.min(250, pause * 2)) {
    if (!(await libvirt.jobInfo(domain)).active) return true;
    if (Date.now() + pause > deadline) return false;
    await sleep(pause);
  }
}
