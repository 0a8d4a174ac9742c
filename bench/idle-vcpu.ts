// What a test domain that boots no OS costs the machine while it runs: the CPU time of its
// QEMU process over 5 s, running and then paused (`virsh suspend`). Such a guest's vCPU does
// not halt the way an idle real guest does, so on a 2-core machine every running test or
// bench domain takes CPU from whatever is being measured (bench/virtnbdbackup.sh pauses them).
//
//   npx tsx bench/idle-vcpu.ts
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { createTestDomain } from '../test/helpers/domain.js';

const HZ = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));
const dom = await createTestDomain({ disks: [{ size: 64 * 1024 * 1024 }] });
try {
  const pid = execFileSync('pgrep', ['-f', `guest=${dom.name},`], { encoding: 'utf8' }).trim().split('\n')[0];
  /** utime + stime of the QEMU process, in clock ticks (proc(5): fields 14 and 15). */
  const ticks = (): number => {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return Number(f[11]) + Number(f[12]);
  };
  for (const state of ['running', 'paused'] as const) {
    if (state === 'paused') execFileSync('virsh', ['-c', dom.uri, 'suspend', dom.name]);
    await sleep(1000);
    const t0 = ticks();
    await sleep(5000);
    const used = (ticks() - t0) / HZ / 5;
    console.log(`${state}: the domain's QEMU used ${(100 * used).toFixed(0)}% of one core`);
  }
} finally {
  await dom.destroy();
}
