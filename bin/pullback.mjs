// The CLI entry for node (bin/pullback, the launcher, runs it): the compiled CLI in dist/,
// built by `npm run build` as part of the README's setup.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const entry = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  process.stderr.write('pullback: not built yet: run `npm ci && npm run build` in the repository (see README)\n');
  process.exit(2);
}
const { main } = await import(entry.href);
process.exitCode = await main(process.argv);
