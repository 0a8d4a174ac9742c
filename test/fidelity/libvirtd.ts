// Restarting libvirtd between backups, the way scripts/setup-hypervisor.sh runs it on these
// machines (no systemd): SIGTERM to the daemon named by its pid file, wait for it to exit,
// start `/usr/sbin/libvirtd -d` again, wait until `virsh list` answers. Running domains
// survive (QEMU is not libvirtd's child in the sense that matters: libvirtd reconnects to
// their monitors on start).
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);
const PID_FILE = '/run/libvirtd.pid';

export async function restartLibvirtd(uri = 'qemu:///system'): Promise<string> {
  const started = Date.now();
  const pid = Number((await readFile(PID_FILE, 'utf8')).trim());
  if (!Number.isInteger(pid) || pid <= 1) throw new Error(`${PID_FILE} holds no pid`);
  process.kill(pid, 'SIGTERM');
  await waitFor(() => !existsSync(`/proc/${pid}`), 60_000, `libvirtd ${pid} to exit after SIGTERM`);
  await execFileP('/usr/sbin/libvirtd', ['-d']);
  await waitFor(async () => (await execFileP('virsh', ['-c', uri, 'list']).then(() => true, () => false)), 60_000, 'virsh list to answer');
  return `libvirtd ${pid} restarted in ${Date.now() - started} ms`;
}

async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}
