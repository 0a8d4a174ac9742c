// Child process of recovery.test.ts: one backup through the library that kills itself with
// SIGKILL the moment its record is complete (no cleanup can run). The job's end, which a
// backup starts beside its completion, never reaches libvirt here, so the job is surely left
// running, as when a pullback dies just before ending it.
//   node --import tsx die-after-complete.ts REPO DOMAIN SCRATCH_DIR
import { runBackup } from '../../src/backup/run.js';
import { VirshLibvirt } from '../../src/libvirt/virsh.js';
import { Repository } from '../../src/store/index.js';

const [repoDir, domain, scratchDir] = process.argv.slice(2) as [string, string, string];
/** A libvirt whose domjobabort never comes back (and never runs). */
class JobNeverEnds extends VirshLibvirt {
  override jobAbort(): Promise<void> {
    return new Promise(() => undefined);
  }
}

const repo = await Repository.open(repoDir);
await runBackup(
  {
    domain,
    scratchDir,
    afterComplete: () => {
      process.kill(process.pid, 'SIGKILL');
    },
  },
  { libvirt: new JobNeverEnds(), repo },
);
// Not reached: the process is killed above.
process.exit(3);
