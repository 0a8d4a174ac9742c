// The shape of a fidelity run, drawn from its own generator (ctx.ts): each step's kind, the
// domain it acts on and, for a killed backup, when the kill comes. It depends on nothing
// but the seed and the number of domains, so `planRun` can list a seed's steps without
// running them (to pick a seed that reaches a given situation).
import { Rng } from './rng.js';

export const STEP_WEIGHTS = {
  writes: 26,
  backup: 18,
  backupWithWrites: 9,
  backupWithGc: 3,
  killBackup: 8,
  prune: 7,
  killPrune: 3,
  gc: 3,
  killGc: 3,
  power: 6,
  libvirtd: 2,
} as const;
export type StepKind = keyof typeof STEP_WEIGHTS;

export interface PlannedStep {
  kind: StepKind;
  /** Index into the run's domains. */
  target: number;
  /** killBackup: kill `delayMs` after the disks are served (else after the start). */
  kill?: { afterServing: boolean; delayMs: number };
}

export function drawStep(plan: Rng, domains: number): PlannedStep {
  const kind = plan.weighted(STEP_WEIGHTS);
  const target = plan.int(0, domains - 1);
  if (kind !== 'killBackup') return { kind, target };
  const afterServing = plan.chance(0.5);
  return { kind, target, kill: { afterServing, delayMs: afterServing ? plan.int(0, 600) : plan.int(0, 2500) } };
}

/** A seed's steps as the driver will draw them (the driver's plan generator: `planRng`). */
export function planRun(seed: number, steps: number, domains: number): PlannedStep[] {
  const plan = planRng(seed);
  return Array.from({ length: steps }, () => drawStep(plan, domains));
}

export function planRng(seed: number): Rng {
  return new Rng(seed + 0x51ed);
}
