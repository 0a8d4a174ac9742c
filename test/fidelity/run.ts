// Command line for the fidelity driver (docs/fidelity.md):
//
//   npx tsx test/fidelity/run.ts --seed 42 --steps 200
//   npx tsx test/fidelity/run.ts --seeds 1-20 --steps 150 --total 45m --keep-going
//
// Options (environment variable in brackets):
//   --seed N | --seeds A-B | --seeds A,B,C   [FIDELITY_SEEDS]  default: one seed from the clock
//   --steps N        steps per seed (default 100)           [FIDELITY_STEPS]
//   --duration D     at most D per seed (e.g. 90s, 10m)     [FIDELITY_DURATION]
//   --total D        stop starting new seeds after D        [FIDELITY_TOTAL]
//   --domains N      domains per run (default 2)
//   --extra-restores N  retained backups restored per step besides each domain's newest (default 1)
//   --no-libvirtd-restart   never restart libvirtd
//   --keep-going     go on with the next seed after a failure
//   --quiet          no step log while running (failures still print theirs)
// Prints a JSON summary line per seed and the totals; exit 1 if any seed failed.
import { FidelityFailure, runFidelity } from './driver.js';

function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text);
  if (m === null) throw new Error(`bad duration '${text}' (use e.g. 90s, 10m, 1h)`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  return Number(m[1]) * unit;
}

function parseSeeds(text: string): number[] {
  const range = /^(\d+)-(\d+)$/.exec(text);
  if (range !== null) {
    const [a, b] = [Number(range[1]), Number(range[2])];
    return Array.from({ length: b - a + 1 }, (_, i) => a + i);
  }
  return text.split(',').map((s) => {
    if (!/^\d+$/.test(s)) throw new Error(`bad seed '${s}'`);
    return Number(s);
  });
}

function args(argv: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (!a.startsWith('--')) throw new Error(`unexpected argument '${a}'`);
    const flag = a.slice(2);
    if (['no-libvirtd-restart', 'keep-going', 'quiet'].includes(flag)) out.set(flag, 'yes');
    else {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      out.set(flag === 'seed' ? 'seeds' : flag, v);
    }
  }
  return out;
}

// SIGINT/SIGTERM: finish the current step, clean up (domains, files), print the totals.
let stopping = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (stopping) process.exit(130);
    stopping = true;
    console.error(`${sig}: stopping after the current step (again to quit at once)`);
  });
}

async function main(): Promise<number> {
  const a = args(process.argv.slice(2));
  const env = process.env;
  const seedsText = a.get('seeds') ?? env['FIDELITY_SEEDS'];
  const seeds = seedsText === undefined ? [Date.now() % 1_000_000] : parseSeeds(seedsText);
  const steps = Number(a.get('steps') ?? env['FIDELITY_STEPS'] ?? 100);
  const durationText = a.get('duration') ?? env['FIDELITY_DURATION'];
  const totalText = a.get('total') ?? env['FIDELITY_TOTAL'];
  const totalEnd = totalText === undefined ? Infinity : Date.now() + parseDuration(totalText);
  const quiet = a.has('quiet');
  const totals = { seeds: 0, failedSeeds: [] as number[], steps: 0, restores: 0, nbdRestores: 0, disksCompared: 0, backups: 0, kills: 0, writes: 0 };
  const started = Date.now();
  for (const seed of seeds) {
    if (Date.now() >= totalEnd || stopping) break;
    const perSeed = durationText === undefined ? undefined : parseDuration(durationText);
    const left = totalEnd - Date.now();
    const durationMs = perSeed === undefined ? (left === Infinity ? undefined : left) : Math.min(perSeed, left);
    try {
      const r = await runFidelity({
        seed,
        steps,
        ...(durationMs === undefined ? {} : { durationMs }),
        domains: Number(a.get('domains') ?? 2),
        extraRestores: Number(a.get('extra-restores') ?? 1),
        libvirtdRestarts: !a.has('no-libvirtd-restart'),
        stop: () => stopping,
        ...(quiet ? {} : { onLog: (l: string) => console.log(l) }),
      });
      totals.seeds++;
      for (const k of ['steps', 'restores', 'nbdRestores', 'disksCompared', 'backups', 'kills', 'writes'] as const) totals[k] += r.stats[k];
      console.log(JSON.stringify({ seed, ok: true, ...r.stats }));
    } catch (e) {
      totals.seeds++;
      totals.failedSeeds.push(seed);
      if (e instanceof FidelityFailure) {
        totals.steps += e.step;
        console.error(e.message);
        console.log(JSON.stringify({ seed, ok: false, step: e.step, error: String(e.cause instanceof Error ? e.cause.message : e.cause).split('\n')[0] }));
      } else {
        console.error(`seed ${seed}: the run could not be set up: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
      }
      if (!a.has('keep-going')) break;
    }
  }
  console.log(JSON.stringify({ totals: { ...totals, minutes: Math.round((Date.now() - started) / 600) / 100 } }));
  return totals.failedSeeds.length === 0 ? 0 : 1;
}

process.exitCode = await main();
