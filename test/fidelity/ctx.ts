// What every fidelity step works with: the seeded generator, the world (repository,
// domains), the model, the counters and the step log.
//
// Terms: `note` appends to the current step's log line; `powered` is the driver's view of
// which domains run (a step that changes it updates it; verify compares with libvirt).
// Two generators per seed: the driver's *plan* (plan.ts) draws the shape of the run — each
// step's kind, its target domain, a killed backup's kill moment — and `rng` everything else
// (write sizes, levels, policies, ...), whose number of draws can depend on timing (e.g.
// whether a backup had finished). So a seed always replays the same kinds, targets, power
// states and kill moments, whatever happened in between.
import type { TestDomain } from '../helpers/domain.js';
import type { Model } from './model.js';
import type { Rng } from './rng.js';
import type { World } from './world.js';

export interface Stats {
  steps: number;
  restores: number;
  /** Of which into an NBD export (disk by disk). */
  nbdRestores: number;
  disksCompared: number;
  backups: number;
  kills: number;
  writes: number;
}

export interface Ctx {
  rng: Rng;
  /** The domain this step acts on (drawn by the plan). */
  target: TestDomain;
  world: World;
  model: Model;
  stats: Stats;
  step: number;
  note(text: string): void;
  powered: Map<string, boolean>;
}

export function domainByName(ctx: Ctx, name: string): TestDomain {
  const d = ctx.world.domains.find((x) => x.name === name);
  if (d === undefined) throw new Error(`no domain ${name}`);
  return d;
}

export function isPowered(ctx: Ctx, dom: TestDomain): boolean {
  return ctx.powered.get(dom.name) === true;
}

export function newStats(): Stats {
  return { steps: 0, restores: 0, nbdRestores: 0, disksCompared: 0, backups: 0, kills: 0, writes: 0 };
}
