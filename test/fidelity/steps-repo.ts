// Repository steps of a fidelity run: prune with a random policy, gc, each possibly killed
// with SIGKILL at a random moment.
//
// A prune may remove only what its policy allows: the ids its --json report lists as removed
// (checked against policy.ts's lower bound of what must be kept), or for a killed prune,
// whatever vanished that the policy did not have to keep. A gc removes no backup at all.
import type { Ctx } from './ctx.js';
import type { PruneJson } from './pb.js';
import { mustKeep, randomPolicy } from './policy.js';
import { exitBrief, killAfter, start } from './spawn.js';
import { FidelityViolation } from './verify.js';

export async function pruneStep(ctx: Ctx, kill: boolean): Promise<void> {
  const { rng, world, model } = ctx;
  const policy = randomPolicy(rng);
  const before = await world.pb.list();
  // --domain only names domains with backups (an unknown domain is an error, docs/prune.md).
  const known = world.domains.map((d) => d.name).filter((n) => before.some((b) => b.domain === n));
  const domain = rng.chance(0.25) && known.length > 0 ? rng.pick(known) : undefined;
  const dryRun = rng.chance(0.15);
  const gc = rng.chance(0.75);
  const domains = domain === undefined ? world.domains.map((d) => d.name) : [domain];
  const args = world.pb.argsPrune(policy.args, { dryRun, gc, ...(domain === undefined ? {} : { domain }) });
  ctx.note(`prune ${args.slice(3).join(' ')}`);
  const run = start(args);
  let removed: string[];
  if (kill) {
    // A prune of a run this size takes ~0.3-0.8 s: most later kills would come too late.
    const delay = rng.int(0, 600);
    const { killed, exit } = await killAfter(run, delay);
    ctx.note(`SIGKILL after ${delay} ms: ${killed ? 'killed' : 'had finished'}`);
    if (killed) ctx.stats.kills++;
    else if (exit.code !== 0) throw new FidelityViolation(`prune failed: ${exitBrief(exit)}`);
    const after = new Set((await world.pb.list()).map((b) => b.id));
    removed = before.filter((b) => b.status === 'complete' && !after.has(b.id)).map((b) => b.id);
  } else {
    const exit = await run.finished;
    if (exit.code !== 0) throw new FidelityViolation(`prune failed: ${exitBrief(exit)}`);
    const report = JSON.parse(exit.stdout) as PruneJson;
    removed = report.domains.flatMap((d) => d.decisions.filter((x) => !x.keep && x.status === 'complete').map((x) => x.id));
    const strayDomain = report.domains.find((d) => !domains.includes(d.domain));
    if (strayDomain !== undefined) throw new FidelityViolation(`prune --domain ${domain ?? ''} touched domain ${strayDomain.domain}`);
  }
  const keep = mustKeep(policy, before, domains, Date.now());
  const wrong = removed.filter((id) => keep.has(id));
  if (wrong.length > 0) throw new FidelityViolation(`prune removed backups its policy must keep: ${wrong.join(', ')}`);
  if (dryRun && removed.length > 0 && kill) throw new FidelityViolation(`a dry-run prune removed ${removed.join(', ')}`);
  const unknown = removed.filter((id) => !model.retained.has(id));
  if (unknown.length > 0) throw new FidelityViolation(`prune removed backups the model does not know: ${unknown.join(', ')}`);
  if (!dryRun) for (const id of removed) await model.remove(id, `prune at step ${ctx.step}`);
  ctx.note(`${dryRun ? 'would remove' : 'removed'} ${removed.length}: ${removed.join(' ') || '-'}; ${model.retained.size} retained`);
}

export async function gcStep(ctx: Ctx, kill: boolean): Promise<void> {
  const { rng, world } = ctx;
  const run = start(world.pb.argsGc());
  if (!kill) {
    const exit = await run.finished;
    if (exit.code !== 0) throw new FidelityViolation(`gc failed: ${exitBrief(exit)}`);
    ctx.note('gc: ok');
    return;
  }
  const delay = rng.int(0, 500); // gc takes ~0.2-0.6 s here
  const { killed, exit } = await killAfter(run, delay);
  if (killed) ctx.stats.kills++;
  else if (exit.code !== 0) throw new FidelityViolation(`gc failed: ${exitBrief(exit)}`);
  ctx.note(`gc, SIGKILL after ${delay} ms: ${killed ? 'killed' : 'had finished'}`);
}
