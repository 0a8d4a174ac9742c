// `pullback repair --repo DIR --rebuild-index`: rebuild the SQLite index from chunk files and manifests.
import type { Command } from 'commander';
import { UsageError, repoFrom, type CliContext } from '../context.js';

interface RepairOpts {
  repo?: string;
  rebuildIndex?: boolean;
  json?: boolean;
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command('repair')
    .description('repair a damaged repository: --rebuild-index recreates the index from the chunk storage')
    .option('--repo <dir>', 'repository directory (default: $PULLBACK_REPO)')
    .option('--rebuild-index', 'rebuild index.db from chunk files and manifests (the old one is kept aside)')
    .option('--json', 'print the report as JSON')
    .action(async (opts: RepairOpts) => {
      const { Repository } = await import('../../store/index.js');
      const dir = repoFrom(opts.repo);
      if (opts.rebuildIndex !== true) throw new UsageError('repair needs --rebuild-index (the only repair there is)');
      const report = await Repository.rebuildIndex(dir, {
        onWarning: (m) => ctx.stderr.write(`pullback: warning: ${m}\n`),
        signal: ctx.signal,
      });
      if (opts.json === true) {
        ctx.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
        return;
      }
      const lines = [
        `rebuilt index of ${dir}: ${report.backups} backup(s), ${report.chunks} chunk file(s), ${report.rows} chunk-map row(s)`,
      ];
      if (report.oldIndex !== null) lines.push(`the previous index was kept as ${report.oldIndex}`);
      for (const s of report.skippedManifests) lines.push(`warning: skipped manifest ${s.file}: ${s.reason}`);
      if (report.missingChunks > 0) {
        lines.push(`warning: ${report.missingChunks} chunk(s) named by manifests have no file: run \`pullback check --repo ${dir}\``);
      }
      ctx.stdout.write(`${lines.join('\n')}\n`);
    });
}
