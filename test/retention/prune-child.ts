// A prune in its own process, for kill -9 tests: `node --import tsx prune-child.ts REPO STEP#N`
// prunes REPO with the fixture's policy and kills itself with SIGKILL (no cleanup, no
// finally blocks: exactly what kill -9 does) the N-th time the prune reports STEP. Every step
// is printed first, so the test sees how far it got.
import { pruneRepository } from '../../src/retention/prune.js';
import { Repository } from '../../src/store/index.js';
import { NOW, POLICY } from './fixture.js';

const [repoDir = '', killAt = ''] = process.argv.slice(2);
const [killStep, killNth = '1'] = killAt.split('#');
const seen = new Map<string, number>();
const repo = await Repository.open(repoDir, { workers: 2, onWarning: (m) => process.stdout.write(`warning ${m}\n`) });
await pruneRepository(repo, {
  policy: POLICY,
  now: NOW,
  orphanGraceMs: 0,
  onStep: (step, detail) => {
    const n = (seen.get(step) ?? 0) + 1;
    seen.set(step, n);
    process.stdout.write(`step ${step}#${n} ${detail}\n`);
    if (step === killStep && String(n) === killNth) process.kill(process.pid, 'SIGKILL');
  },
});
await repo.close();
process.stdout.write('done\n');
