// Steps that change the world around the repository: guest writes, powering a domain off
// or on, restarting libvirtd.
import type { Ctx } from './ctx.js';
import { restartLibvirtd } from './libvirtd.js';
import { FidelityViolation } from './verify.js';
import { randomWrite } from './writes.js';

export async function writesStep(ctx: Ctx): Promise<void> {
  const n = ctx.rng.int(1, 6);
  const done: string[] = [];
  for (let i = 0; i < n; i++) done.push(await randomWrite(ctx.rng, ctx.world.domains, ctx.world.chunkSize));
  ctx.stats.writes += n;
  ctx.note(`writes: ${done.join('; ')}`);
}

export async function powerStep(ctx: Ctx): Promise<void> {
  const dom = ctx.target;
  if (ctx.powered.get(dom.name) === true) {
    await dom.shutdown();
    ctx.powered.set(dom.name, false);
    ctx.note(`shut off ${dom.name}`);
  } else {
    try {
      await dom.start();
    } catch (e) {
      throw new FidelityViolation(`starting ${dom.name} failed: ${e instanceof Error ? e.message : String(e)}`);
    }
    ctx.powered.set(dom.name, true);
    ctx.note(`started ${dom.name}`);
  }
}

export async function libvirtdStep(ctx: Ctx): Promise<void> {
  ctx.note(await restartLibvirtd());
}

/** The driver's view of power states must match libvirt's (a step may not lose a domain). */
export async function checkPower(ctx: Ctx): Promise<void> {
  for (const d of ctx.world.domains) {
    const running = await d.isRunning();
    if (running !== ctx.powered.get(d.name)) {
      throw new FidelityViolation(`domain ${d.name} is ${running ? 'running' : 'not running'}, expected ${ctx.powered.get(d.name) === true ? 'running' : 'shut off'}`);
    }
  }
}
