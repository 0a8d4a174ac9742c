// `pullback prune --repo DIR [--domain NAME] [--keep-* N] [--keep-within D] [--dry-run] [--no-gc] [--json]`:
// remove the backups a retention policy does not keep, merging what retained backups still
// need forward, then collect garbage (docs/prune.md, docs/retention.md).
import type { Command } from 'commander';
import { isPullbackError } from '../../errors.js';
import { durationMs, parseDuration } from '../../retention/duration.js';
import { COUNT_RULES, isEmptyPolicy, type RetentionPolicy } from '../../retention/policy.js';
import { collect, repoFrom, UsageError, type CliContext } from '../context.js';

interface PruneOpts {
  repo?: string;
  domain: string[];
  keepLast?: string;
  keepHourly?: string;
  keepDaily?: string;
  keepWeekly?: string;
  keepMonthly?: string;
  keepYearly?: string;
  keepWithin?: string;
  dryRun?: boolean;
  gc: boolean;
  json?: boolean;
}


function count(flag: string, text: string): number {
  if (text === 'unlimited') return Infinity;
  if (!/^\d+$/.test(text)) throw new UsageError(`--keep-${flag} needs a whole number >= 0 or 'unlimited', not '${text}'`);
  return Number(text);
}

/** The policy the options describe; a usage error if it is empty or malformed. */
export function policyFromOptions(opts: Partial<Record<(typeof COUNT_RULES)[number][0] | 'keepWithin', string>>, now: Date): RetentionPolicy {
  const policy: RetentionPolicy = {};
  for (const [key, flag] of COUNT_RULES) {
    const v = opts[key];
    if (v !== undefined) policy[key] = count(flag, v);
  }
  if (opts.keepWithin !== undefined) {
    try {
      policy.keepWithin = durationMs(parseDuration(opts.keepWithin), now);
    } catch (e) {
      if (isPullbackError(e, 'USAGE')) throw new UsageError(`--keep-within: ${e.message}`);
      throw e;
    }
  }
  if (isEmptyPolicy(policy)) {
    throw new UsageError('no retention policy: give at least one of --keep-last/-hourly/-daily/-weekly/-monthly/-yearly N or --keep-within DURATION');
  }
  return policy;
}

export function register(program: Command, ctx: CliContext): void {
  const cmd = program
    .command('prune')
    .description('remove backups a retention policy does not keep (retained backups stay restorable), then collect garbage')
    .option('--repo <dir>', 'repository directory (default: $PULLBACK_REPO)')
    .option('--domain <name>', 'only this domain (repeatable; default: every domain)', collect, []);
  for (const [, flag] of COUNT_RULES) {
    cmd.option(`--keep-${flag} <n>`, flag === 'last' ? 'keep the N newest backups' : `keep the newest backup of each of the N newest ${flag === 'daily' ? 'days' : flag.replace(/ly$/, 's')} with a backup`);
  }
  cmd
    .option('--keep-within <duration>', 'keep every backup newer than now - DURATION (e.g. 7d, 2w, 1y6m)')
    .option('--dry-run', 'print what would be removed and why; change nothing')
    .option('--no-gc', 'do not collect garbage afterwards')
    .option('--json', 'print the report as JSON')
    .action(async (opts: PruneOpts) => {
      const [{ pruneRepository }, { pruneJson, pruneText }, { Repository }] = await Promise.all([
        import('../../retention/prune.js'),
        import('../../retention/prune-report.js'),
        import('../../store/index.js'),
      ]);
      const now = new Date();
      const policy = policyFromOptions(opts, now);
      const dir = repoFrom(opts.repo);
      const repo = await Repository.open(dir, { freeingSpace: true, onWarning: (m) => ctx.stderr.write(`pullback: warning: ${m}\n`) });
      try {
        const report = await pruneRepository(repo, {
          policy,
          now,
          dryRun: opts.dryRun === true,
          gc: opts.gc,
          signal: ctx.signal,
          ...(opts.domain.length > 0 ? { domains: opts.domain } : {}),
        });
        ctx.stdout.write(opts.json === true ? `${JSON.stringify(pruneJson(report), null, 2)}\n` : pruneText(report));
      } finally {
        await repo.close();
      }
    });
}
