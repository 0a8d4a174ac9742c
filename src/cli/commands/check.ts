// `pullback check --repo DIR [--read-data] [--json]`: verify the repository; exit 1 on any problem.
import type { Command } from 'commander';
import { PullbackError } from '../../errors.js';
import type { CheckReport, ProgressEvent } from '../../store/index.js';
import { repoFrom, type CliContext } from '../context.js';

interface CheckOpts {
  repo?: string;
  readData?: boolean;
  json?: boolean;
}

export function progressPrinter(ctx: CliContext): ((e: ProgressEvent) => void) | undefined {
  if (!ctx.interactive) return undefined;
  let last = 0;
  return (e) => {
    const now = Date.now();
    if (now - last < 200 && e.done !== e.total) return;
    last = now;
    ctx.stderr.write(`\r${e.phase}: ${e.done}/${e.total}\x1b[K${e.done === e.total ? '\n' : ''}`);
  };
}

function summary(r: CheckReport, readData: boolean): string {
  const lines = [
    `checked ${r.backupsChecked} complete backup(s), ${r.manifestsChecked} manifest(s), ${r.chunksChecked} referenced chunk(s)` +
      (readData ? `; re-hashed ${r.chunksVerified} chunk(s), ${(r.bytesVerified / 1e6).toFixed(1)} MB` : ''),
  ];
  for (const w of r.warnings) lines.push(`warning: ${w}`);
  for (const p of r.problems) lines.push(`${p.kind}: ${p.message}`);
  lines.push(r.ok ? 'repository OK' : `${r.problems.length} problem(s) found`);
  return `${lines.join('\n')}\n`;
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command('check')
    .description('verify the repository index, manifests and chunk files; --read-data also re-hashes every chunk')
    .option('--repo <dir>', 'repository directory (default: $PULLBACK_REPO)')
    .option('--read-data', 'read and re-hash every referenced chunk')
    .option('--json', 'print the report as JSON')
    .action(async (opts: CheckOpts) => {
      const { Repository } = await import('../../store/index.js');
      const dir = repoFrom(opts.repo);
      const repo = await Repository.open(dir, { readOnlyIfUnwritable: true, onWarning: (m) => ctx.stderr.write(`pullback: warning: ${m}\n`) });
      let report: CheckReport;
      try {
        const onProgress = opts.json === true ? undefined : progressPrinter(ctx);
        report = await repo.check({
          readData: opts.readData === true,
          signal: ctx.signal,
          ...(onProgress !== undefined ? { onProgress } : {}),
        });
      } finally {
        await repo.close();
      }
      ctx.stdout.write(opts.json === true ? `${JSON.stringify(report, null, 2)}\n` : summary(report, opts.readData === true));
      if (!report.ok) {
        throw new PullbackError('REPO_CORRUPT', `check found ${report.problems.length} problem(s) in repository ${dir}`);
      }
    });
}
