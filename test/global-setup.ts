// Builds dist/ once before the suite so tests that run bin/pullback exercise the current code.
// tsc emits even when it reports type errors; those are reported here and by the separate
// typecheck step of scripts/test.sh, so a type error elsewhere does not stop unrelated tests.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export default function setup(): void {
  const root = fileURLToPath(new URL('..', import.meta.url));
  try {
    execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
  } catch {
    process.stderr.write('global-setup: tsc reported errors (dist/ was still emitted)\n');
  }
}
