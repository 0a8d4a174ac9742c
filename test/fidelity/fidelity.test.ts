// The fidelity driver inside the normal suite: a short seeded run (a few minutes), plus every
// seed that once found a defect, replayed up to the step where it did (docs/fidelity.md).
// A failure prints the seed, the step log and the replay command.
//
// libvirtd is not restarted here: other test files use it at the same time (vitest runs two
// files at once), and a restart would fail their virsh calls. scripts/fidelity.sh and
// test/fidelity/run.ts restart it; FIDELITY_LIBVIRTD_RESTART=1 enables it here too.
// FIDELITY_SEEDS / FIDELITY_STEPS override the default run.
import { describe, expect, it } from 'vitest';
import { runFidelity } from './driver.js';
import { REGRESSIONS } from './regressions.js';

const seeds = (process.env['FIDELITY_SEEDS'] ?? '7').split(',').map(Number);
const steps = Number(process.env['FIDELITY_STEPS'] ?? 24);
const libvirtdRestarts = process.env['FIDELITY_LIBVIRTD_RESTART'] === '1';

describe('fidelity: random steps, every retained backup restores exactly', () => {
  for (const seed of seeds) {
    it(`seed ${seed}, ${steps} steps`, async () => {
      const r = await runFidelity({ seed, steps, libvirtdRestarts });
      expect(r.stats.steps).toBe(steps);
      expect(r.stats.restores).toBeGreaterThan(0);
      expect(r.stats.nbdRestores).toBeGreaterThan(0);
    }, 20 * 60_000);
  }
});

describe('fidelity regressions: seeds that found defects', () => {
  for (const r of REGRESSIONS) {
    it(`seed ${r.seed} (${r.steps} steps): ${r.defect}`, async () => {
      const res = await runFidelity({ seed: r.seed, steps: r.steps, libvirtdRestarts: r.libvirtdRestarts ?? libvirtdRestarts });
      expect(res.stats.steps).toBe(r.steps);
    }, 20 * 60_000);
  }
});
