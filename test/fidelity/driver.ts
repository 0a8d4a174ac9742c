// The fidelity driver: one seeded run of random steps against real libvirt domains and the
// real CLI, with every invariant (verify.ts) checked after every step.
//
// Terms: a *step* is one entry of STEP_WEIGHTS (plan.ts, drawn by the seed's plan); the *step
// log* has one line per step (what was done and what came of it) and is part of every
// failure, with the seed and the command that replays the run. A run ends after `steps`
// steps or `durationMs`, whichever comes first.
import { readdir, readFile } from 'node:fs/promises';
import type { TestDomain } from '../helpers/domain.js';
import { newStats, type Ctx, type Stats } from './ctx.js';
import { Model } from './model.js';
import { drawStep, planRng, type PlannedStep } from './plan.js';
import { Rng } from './rng.js';
import { backupStep, killedBackupStep } from './steps-backup.js';
import { checkPower, libvirtdStep, powerStep, writesStep } from './steps-env.js';
import { gcStep, pruneStep } from './steps-repo.js';
import { checkListing, checkRepository, checkRestore, checkRestoreToNbd, restoreSample } from './verify.js';
import { createWorld, destroyWorld, type World } from './world.js';


export interface FidelityOptions {
  seed: number;
  steps: number;
  durationMs?: number;
  domains?: number;
  /** Where work dirs go (big files): default /var/tmp/pullback-fidelity. */
  baseDir?: string;
  /** Retained backups restored after each step besides each domain's newest. */
  extraRestores?: number;
  /** Set false to never restart libvirtd (e.g. when others share the daemon). */
  libvirtdRestarts?: boolean;
  /** Polled between steps: true ends the run early, cleanly (run.ts sets it on SIGINT/SIGTERM). */
  stop?: () => boolean;
  /** Each step log line as it is written. */
  onLog?: (line: string) => void;
}

export interface FidelityResult {
  seed: number;
  stats: Stats;
  log: string[];
}

export class FidelityFailure extends Error {
  constructor(
    readonly seed: number,
    readonly step: number,
    readonly log: string[],
    readonly workDir: string,
    cause: unknown,
  ) {
    const why = cause instanceof Error ? cause.message : String(cause);
    super(
      `fidelity run with seed ${seed} failed at step ${step}: ${why}\n` +
        `replay: npx tsx test/fidelity/run.ts --seed ${seed} --steps ${step}\n` +
        `files kept in ${workDir}\nstep log:\n${log.join('\n')}`,
      { cause },
    );
  }
}

export async function runFidelity(opts: FidelityOptions): Promise<FidelityResult> {
  const rng = new Rng(opts.seed);
  const world = await createWorld(rng, { domains: opts.domains ?? 2, baseDir: opts.baseDir ?? '/var/tmp/pullback-fidelity' });
  const log: string[] = [];
  let line = '';
  const plan = planRng(opts.seed);
  const ctx: Ctx = {
    rng,
    target: world.domains[0] as TestDomain,
    world,
    model: new Model(),
    stats: newStats(),
    step: 0,
    note: (t) => void (line += (line === '' ? '' : ' ') + t),
    powered: new Map(world.domains.map((d) => [d.name, true])),
  };
  const flush = (): void => {
    log.push(line);
    opts.onLog?.(line);
    line = '';
  };
  const deadline = opts.durationMs === undefined ? Infinity : Date.now() + opts.durationMs;
  let failed = false;
  try {
    ctx.note(`#0 seed ${opts.seed}: chunk size ${world.chunkSize}, domains ${world.domains.map((d) => `${d.name}[${d.disks.map((k) => `${k.target} ${k.format} ${k.size}`).join(', ')}]`).join(' ')}`);
    for (let i = 0; i < world.domains.length * 3; i++) await writesStep(ctx);
    flush();
    for (ctx.step = 1; ctx.step <= opts.steps && Date.now() < deadline && opts.stop?.() !== true; ctx.step++) {
      const planned = drawStep(plan, world.domains.length);
      ctx.target = world.domains[planned.target] as TestDomain;
      ctx.note(`#${ctx.step} ${planned.kind}:`);
      try {
        const t0 = Date.now();
        // Without libvirtd restarts the step is skipped, not redrawn: the run keeps its shape.
        if (planned.kind === 'libvirtd' && opts.libvirtdRestarts === false) ctx.note('skipped (no libvirtd restarts)');
        else await runStep(ctx, planned);
        const t1 = Date.now();
        await verify(ctx, opts.extraRestores ?? 1);
        ctx.note(`[${((t1 - t0) / 1000).toFixed(1)}+${((Date.now() - t1) / 1000).toFixed(1)} s]`);
      } finally {
        flush();
      }
      ctx.stats.steps++;
    }
    return { seed: opts.seed, stats: ctx.stats, log };
  } catch (e) {
    failed = true;
    throw new FidelityFailure(opts.seed, ctx.step, log, world.work, e);
  } finally {
    await killLeftoverQemuNbd(world).catch(() => undefined);
    await destroyWorld(world, { keepFiles: failed });
  }
}

async function runStep(ctx: Ctx, step: PlannedStep): Promise<void> {
  switch (step.kind) {
    case 'writes':
      return writesStep(ctx);
    case 'backup':
      return backupStep(ctx, 'none');
    case 'backupWithWrites':
      return backupStep(ctx, 'writes');
    case 'backupWithGc':
      return backupStep(ctx, 'gc');
    case 'killBackup':
      return killedBackupStep(ctx, step.kill ?? { afterServing: false, delayMs: 0 });
    case 'prune':
      return pruneStep(ctx, false);
    case 'killPrune':
      return pruneStep(ctx, true);
    case 'gc':
      return gcStep(ctx, false);
    case 'killGc':
      return gcStep(ctx, true);
    case 'power':
      return powerStep(ctx);
    case 'libvirtd':
      return libvirtdStep(ctx);
  }
}

async function verify(ctx: Ctx, extra: number): Promise<void> {
  const { world, model, rng } = ctx;
  await checkPower(ctx);
  await checkRepository(world.pb);
  await checkListing(world.pb, model);
  // Few retained: restore them all; else each domain's newest and `extra` others.
  const sample = model.retained.size <= 3 ? [...model.retained.values()] : restoreSample(rng, model, world.domains.map((d) => d.name), extra);
  for (const b of sample) {
    // One draw, as before NBD outputs existed, so recorded seeds replay the same steps.
    const u = rng.float();
    if (u >= 0.3 && u < 0.45) await checkRestoreToNbd(world.pb, b, world.restores, ctx.stats);
    else await checkRestore(world.pb, b, world.restores, u < 0.3 ? 'qcow2' : 'raw', ctx.stats);
  }
  ctx.note(`| verified: check ok, ${model.retained.size} retained, restored ${sample.map((b) => b.id.slice(-4)).join(',') || '-'}`);
}

/**
 * qemu-nbd processes serving images of this run's domains after the run (a killed offline
 * backup may leave them): ended by pid so the images can be removed. They are children of
 * processes this run started; nothing else is touched.
 */
async function killLeftoverQemuNbd(world: World): Promise<void> {
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmd.startsWith('qemu-nbd\0') && cmd.includes(world.work)) process.kill(Number(pid), 'SIGKILL');
  }
}
