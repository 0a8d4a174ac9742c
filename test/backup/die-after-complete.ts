// Child process of recovery.test.ts: one backup through the library that kills itself with
// SIGKILL the moment its record is complete, before its job ends (no cleanup can run).
//   node --import tsx die-after-complete.ts REPO DOMAIN SCRATCH_DIR
import { runBackup } from '../../src/backup/run.js';
import { VirshLibvirt } from '../../src/libvirt/virsh.js';
import { Repository } from '../../src/store/index.js';

const [repoDir, domain, scratchDir] = process.argv.slice(2) as [string, string, string];
const repo = await Repository.open(repoDir);
await runBackup(
  {
    domain,
    scratchDir,
    afterComplete: () => {
      process.kill(process.pid, 'SIGKILL');
    },
  },
  { libvirt: new VirshLibvirt(), repo },
);
// Not reached: the process is killed above.
process.exit(3);
