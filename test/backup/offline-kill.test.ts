// kill -9 of pullback during a backup of a shut-off domain (found by the fidelity driver,
// docs/fidelity.md, defect 1): the qemu-nbd it started must die with it, or its image lock
// keeps the domain from starting and offline writers from opening the image; and the job
// directory it leaves is removed by the next backup.
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, spawnCli } from '../helpers/cli.js';
import { createTestDomain, type TestDomain } from '../helpers/domain.js';

const MiB = 1024 * 1024;

/** Pids of qemu-nbd processes whose command line mentions `needle`. */
async function qemuNbdPids(needle: string): Promise<number[]> {
  const pids: number[] = [];
  for (const p of await readdir('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    const cmd = await readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '');
    if (cmd.startsWith('qemu-nbd\0') && cmd.includes(needle)) pids.push(Number(p));
  }
  return pids;
}

describe('offline backup killed with SIGKILL', () => {
  let dom: TestDomain;
  let work: string;
  let repo: string;
  let scratch: string;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'pullback-offline-kill-'));
    repo = join(work, 'repo');
    scratch = join(work, 'scratch');
    dom = await createTestDomain({ disks: [{ size: 64 * MiB }, { size: 64 * MiB }], start: false });
    expect((await runCli(['init', '--repo', repo])).code).toBe(0);
  });
  afterAll(async () => {
    for (const pid of await qemuNbdPids(dom.dir)) process.kill(pid, 'SIGKILL');
    await dom?.destroy();
    await rm(work, { recursive: true, force: true });
  });

  it('leaves no qemu-nbd behind: the domain starts and the next backup is complete', async () => {
    await dom.writeRandom('vda', 0, 48 * MiB, 1);
    const child = spawnCli(['backup', '--repo', repo, '--domain', dom.name, '--scratch-dir', scratch]);
    const exited = new Promise((r) => child.once('exit', r));
    // Kill once qemu-nbd serves a disk: its socket is in the job directory.
    const deadline = Date.now() + 60_000;
    let serving = false;
    while (!serving && Date.now() < deadline) {
      const dirs = existsSync(scratch) ? readdirSync(scratch) : [];
      serving = dirs.some((d) => readdirSync(join(scratch, d)).some((f) => f.endsWith('.sock')));
      if (!serving) await sleep(5);
    }
    expect(serving).toBe(true);
    const killedDir = join(scratch, readdirSync(scratch)[0] as string);
    expect((await qemuNbdPids(dom.dir)).length).toBeGreaterThan(0);
    child.kill('SIGKILL');
    await exited;

    const gone = Date.now() + 5_000;
    while ((await qemuNbdPids(dom.dir)).length > 0 && Date.now() < gone) await sleep(20);
    expect(await qemuNbdPids(dom.dir)).toEqual([]);
    await dom.writeRandom('vdb', MiB, 4096, 2); // offline write: needs the image's write lock
    await dom.start();
    const next = await runCli(['backup', '--repo', repo, '--domain', dom.name, '--scratch-dir', scratch, '--json']);
    expect(next.code, next.stderr).toBe(0);
    // Its job directory (owner file, dead sockets) is removed by the next backup, and said so.
    expect(next.stderr).toContain(`removed ${killedDir}, left behind by a backup whose pullback died`);
    expect(existsSync(killedDir)).toBe(false);
    expect(readdirSync(scratch)).toEqual([]);
    const check = await runCli(['check', '--repo', repo]);
    expect(check.code, check.stdout + check.stderr).toBe(0);
  });
});
