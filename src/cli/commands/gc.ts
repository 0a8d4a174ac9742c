// `pullback gc --repo DIR [--dry-run] [--json]`: delete chunks that no backup references.
import type { Command } from 'commander';
import type { GcReport } from '../../store/index.js';
import { repoFrom, type CliContext } from '../context.js';

interface GcOpts {
  repo?: string;
  dryRun?: boolean;
  json?: boolean;
}

function summary(r: GcReport): string {
  const verb = r.dryRun ? 'would delete' : 'deleted';
  const lines = [
    `${verb} ${r.chunksDeleted} unreferenced chunk(s), ${(r.bytesFreed / 1e6).toFixed(1)} MB; ${r.chunksKept} chunk(s) kept`,
    `${verb} ${r.orphanFilesDeleted} orphan chunk file(s) and ${r.tmpFilesDeleted} temporary file(s); ` +
      `${r.dryRun ? 'would drop' : 'dropped'} the chunk maps of ${r.failedBackupsCleaned} failed backup(s)`,
  ];
  for (const w of r.warnings) lines.push(`warning: ${w}`);
  return `${lines.join('\n')}\n`;
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command('gc')
    .description('delete chunks no backup references (safe while backups run)')
    .option('--repo <dir>', 'repository directory (default: $PULLBACK_REPO)')
    .option('--dry-run', 'report what would be deleted without deleting')
    .option('--json', 'print the report as JSON')
    .action(async (opts: GcOpts) => {
      const { Repository } = await import('../../store/index.js');
      const dir = repoFrom(opts.repo);
      const repo = await Repository.open(dir, { freeingSpace: true, onWarning: (m) => ctx.stderr.write(`pullback: warning: ${m}\n`) });
      let report: GcReport;
      try {
        report = await repo.gc({ dryRun: opts.dryRun === true, signal: ctx.signal });
      } finally {
        await repo.close();
      }
      ctx.stdout.write(opts.json === true ? `${JSON.stringify(report, null, 2)}\n` : summary(report));
    });
}
