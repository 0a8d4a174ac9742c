// `pullback run --config FILE [--json]`: the nightly job: back up the configured domains,
// prune, collect garbage, print a summary; exit 0 only when everything succeeded
// (docs/nightly.md; config example in examples/pullback.toml).
import type { Command } from 'commander';
import { PullbackError } from '../../errors.js';
import type { CliContext } from '../context.js';

interface RunOpts {
  config: string;
  json?: boolean;
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command('run')
    .description('the nightly job: back up the configured domains, prune, collect garbage, report (and write metrics)')
    .requiredOption('--config <file>', 'TOML config file (see examples/pullback.toml)')
    .option('--json', 'print the summary as JSON')
    .action(async (opts: RunOpts) => {
      const [{ VirshLibvirt }, { loadRunConfig }, { runNightly }, { runJson, runText }] = await Promise.all([
        import('../../libvirt/virsh.js'),
        import('../../retention/config.js'),
        import('../../retention/run.js'),
        import('../../retention/run-report.js'),
      ]);
      const config = await loadRunConfig(opts.config);
      const libvirt = new VirshLibvirt(config.libvirtUri === undefined ? {} : { uri: config.libvirtUri });
      const report = await runNightly(config, {
        libvirt,
        signal: ctx.signal,
        log: (m) => void ctx.stderr.write(`pullback run: ${m}\n`),
      });
      ctx.stdout.write(opts.json === true ? `${JSON.stringify(runJson(report), null, 2)}\n` : runText(report));
      if (!report.ok) {
        const failed = report.domains.filter((d) => !d.ok).map((d) => d.domain);
        const parts = [
          ...(failed.length > 0 ? [`${failed.length} domain(s) failed (${failed.join(', ')})`] : []),
          ...(report.pruneError !== undefined ? ['prune failed'] : []),
          ...(report.metricsError !== undefined ? ['metrics not written'] : []),
        ];
        throw new PullbackError('BACKUP_FAILED', `nightly run incomplete: ${parts.join('; ')}`);
      }
    });
}
