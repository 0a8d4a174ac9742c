// What every fidelity step works with: the seeded generator, the world (repository,
// domains), the model, the counters and the step log.
//
// Terms: `note` appends to the current step's log line; `powered` is the driver's view of
// which domains run (a step that changes it updates it; verify compares with libvirt).
import type { TestDomain } from '../helpers/domain.js';
import type { Model } from './model.js';
import type { Rng } from './rng.js';
import type { World } from './world.js';

export interface Stats {
  steps: number;
  restores: number;
  disksCompared: number;
  backups: number;
  kills: number;
  writes: number;
}

export interface Ctx {
  rng: Rng;
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
  return { steps: 0, restores: 0, disksCompared: 0, backups: 0, kills: 0, writes: 0 };
}
