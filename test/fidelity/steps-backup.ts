// Backup steps of a fidelity run: a plain backup, a backup with guest writes or a gc running
// while its job runs, and a backup killed with SIGKILL at a random moment.
//
// Every backup is preceded by a snapshot of the domain's references: nothing writes between
// the snapshot and the job's start (concurrent writes wait until the job exports its disks:
// spawn.ts), so the snapshot is the content the backup must restore to. Writes made while
// the job runs are in the references only, i.e. they belong to the next backup.
import { brief } from './pb.js';
import type { TestDomain } from '../helpers/domain.js';
import { isPowered, type Ctx } from './ctx.js';
import type { BackupJson } from './pb.js';
import { dropSnapshot, snapshotDomain, type DiskSnapshot } from './snapshot.js';
import { exitBrief, jobDirs, killAfter, start, waitForJobStarted, type Exit } from './spawn.js';
import { FidelityViolation } from './verify.js';
import { randomWrite } from './writes.js';

type Level = 'auto' | 'full' | 'incremental';

function randomLevel(ctx: Ctx): Level {
  return ctx.rng.weighted({ auto: 5, full: 2, incremental: 2 });
}

async function snapshot(ctx: Ctx, dom: TestDomain, label: string): Promise<DiskSnapshot[]> {
  return snapshotDomain(dom, ctx.world.snaps, `s${ctx.step}-${label}`);
}

/**
 * Handles a finished backup process: a success is checked and added to the model with its
 * snapshot; an incremental that is refused as impossible is fine (the snapshot is dropped);
 * any other failure is a violation.
 */
async function recordResult(ctx: Ctx, dom: TestDomain, level: Level, exit: Exit, snap: DiskSnapshot[], how: string): Promise<void> {
  if (exit.code !== 0) {
    await dropSnapshot(snap);
    const msg = exitBrief(exit);
    if (level === 'incremental' && /an incremental backup is not possible/.test(exit.stderr)) {
      ctx.note(`refused: ${/not possible: ([^;]*)/.exec(exit.stderr)?.[1] ?? msg}`);
      return;
    }
    throw new FidelityViolation(`backup of ${dom.name} (--level ${level}) failed: ${msg}`);
  }
  const b = (JSON.parse(exit.stdout) as BackupJson).backup;
  const problems: string[] = [];
  if (b.domain !== dom.name) problems.push(`domain ${b.domain}`);
  if (level !== 'auto' && b.level !== level) problems.push(`level ${b.level} for --level ${level}`);
  const disks = b.disks.map((d) => `${d.name}:${d.size}`).join(',');
  const want = dom.disks.map((d) => `${d.target}:${d.size}`).join(',');
  if (disks !== want) problems.push(`disks ${disks}, expected ${want}`);
  if (problems.length > 0) throw new FidelityViolation(`backup ${b.id} of ${dom.name} reported ${problems.join('; ')}`);
  ctx.model.add({ id: b.id, domain: dom.name, step: ctx.step, how: `${how} ${b.level}`, seq: ctx.model.seq(), disks: snap });
  ctx.stats.backups++;
  const read = b.disks.reduce((a, d) => a + d.bytesRead, 0);
  ctx.note(`-> ${b.id} ${b.level} (${b.reason}); read ${read} bytes`);
}

export async function backupStep(ctx: Ctx, concurrent: 'none' | 'writes' | 'gc'): Promise<void> {
  const { rng, world } = ctx;
  const dom = ctx.target;
  const level = randomLevel(ctx);
  const live = isPowered(ctx, dom);
  const mode = concurrent === 'writes' && !live ? 'none' : concurrent; // a shut-off domain's images are locked by qemu-nbd
  ctx.note(`backup ${dom.name} --level ${level} (${live ? 'running' : 'shut off'}${mode === 'none' ? '' : `, ${mode} during the job`})`);
  const snap = await snapshot(ctx, dom, 'b');
  const before = jobDirs(world.pb.scratch);
  const run = start(world.pb.argsBackup(dom.name, level));
  if (mode !== 'none') {
    // Offline backups have no libvirt job: gc simply runs after a short random delay.
    const started = live ? await waitForJobStarted(run, world.pb.scratch, before) : await new Promise((r) => setTimeout(r, rng.int(0, 300)));
    if (live && started === undefined) ctx.note('(finished before its job could be seen)');
    else if (mode === 'writes') {
      const n = rng.int(1, 4);
      const done: string[] = [];
      for (let i = 0; i < n; i++) done.push(await randomWrite(rng, rng.chance(0.7) ? [dom] : world.domains, world.chunkSize));
      ctx.stats.writes += n;
      ctx.note(`during the job: ${done.join('; ')}${run.exited() ? ' (job ended meanwhile)' : ''}`);
    } else {
      const gc = await world.pb.run(world.pb.argsGc());
      if (gc.code !== 0) throw new FidelityViolation(`gc during a backup failed: ${brief(gc)}`);
      ctx.note(`gc during the job: ${gcSummary(gc.stdout)}`);
    }
  }
  await recordResult(ctx, dom, level, await run.finished, snap, mode === 'none' ? 'backup' : `backup+${mode}`);
}

export async function killedBackupStep(ctx: Ctx, kill: { afterServing: boolean; delayMs: number }): Promise<void> {
  const { world, model } = ctx;
  const dom = ctx.target;
  const level = randomLevel(ctx);
  // Either a random delay from the start (anywhere: startup, libvirt calls, reading,
  // completing), or a shorter one after the job (live) or qemu-nbd (offline) serves the
  // disks: reading or completing. Drawn by the plan: a seed kills at the same moment.
  const { afterServing, delayMs: delay } = kill;
  const snap = await snapshot(ctx, dom, 'k');
  const before = jobDirs(world.pb.scratch);
  const run = start(world.pb.argsBackup(dom.name, level));
  const served = afterServing ? await waitForJobStarted(run, world.pb.scratch, before) : undefined;
  const { killed, exit } = await killAfter(run, delay);
  const when = afterServing ? `${delay} ms after ${served === undefined ? '(unseen) ' : ''}serving` : `${delay} ms`;
  ctx.note(`backup ${dom.name} (${isPowered(ctx, dom) ? 'running' : 'shut off'}) --level ${level}, SIGKILL ${when}: ${killed ? 'killed' : 'had finished'}`);
  if (!killed) {
    await recordResult(ctx, dom, level, exit, snap, 'backup');
    return;
  }
  ctx.stats.kills++;
  // The kill may have come after the backup was recorded complete: then it is a backup like
  // any other, and its content is the snapshot.
  const listed = await world.pb.list();
  const fresh = listed.filter((b) => b.domain === dom.name && b.status === 'complete' && !model.retained.has(b.id) && !model.removed.has(b.id));
  if (fresh.length > 1) throw new FidelityViolation(`a killed backup left ${fresh.length} new complete backups: ${fresh.map((b) => b.id).join(', ')}`);
  const adopted = fresh[0];
  if (adopted === undefined) {
    await dropSnapshot(snap);
    const left = listed.filter((b) => b.domain === dom.name && b.status !== 'complete' && !model.removed.has(b.id)).map((b) => `${b.id} ${b.status}`);
    ctx.note(`left: ${left.join(', ') || 'no record'}`);
    return;
  }
  model.add({ id: adopted.id, domain: dom.name, step: ctx.step, how: `killed backup, complete ${adopted.level}`, seq: model.seq(), disks: snap });
  ctx.stats.backups++;
  ctx.note(`it had completed: ${adopted.id} ${adopted.level} (adopted)`);
}

function gcSummary(stdout: string): string {
  try {
    const r = JSON.parse(stdout) as { chunksDeleted: number; chunksKept: number; failedBackupsCleaned: number };
    return `deleted ${r.chunksDeleted}, kept ${r.chunksKept}, failed cleaned ${r.failedBackupsCleaned}`;
  } catch {
    return stdout.trim().slice(0, 200);
  }
}
