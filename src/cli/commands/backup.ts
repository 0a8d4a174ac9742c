// `pullback backup`: one pull-mode backup of a domain into a repository.
import type { Command } from 'commander';
import type { BackupResult } from '../../backup/run.js';
import { DEFAULT_SCRATCH_DIR } from '../../backup/job-dir.js';
import { collect, repoFrom, UsageError, type CliContext } from '../context.js';

interface BackupOpts {
  repo?: string;
  domain: string;
  connect?: string;
  level: string;
  disk: string[];
  excludeDisk: string[];
  scratchDir: string;
  scratchKeepFree?: string;
  connections: string;
  json?: boolean;
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command('backup')
    .description('back up a domain: full or incremental pull-mode backup with a libvirt checkpoint')
    .option('--repo <dir>', 'repository directory (default: $PULLBACK_REPO)')
    .requiredOption('--domain <name>', 'libvirt domain to back up')
    .option('--connect <uri>', 'libvirt URI (default: $LIBVIRT_DEFAULT_URI or qemu:///system)')
    .option('--level <level>', 'auto | full | incremental', 'auto')
    .option('--disk <target>', 'back up only this disk (repeatable)', collect, [])
    .option('--exclude-disk <target>', 'leave this disk out (repeatable)', collect, [])
    .option('--scratch-dir <dir>', 'where the job socket and scratch files go', DEFAULT_SCRATCH_DIR)
    .option('--scratch-keep-free <size>', 'free space kept in the scratch directory while the job runs; below it the job ends before guest writes fail (default 5% of it, 64M..1G)')
    .option('--connections <n>', 'NBD connections per disk', '4')
    .option('--json', 'print one JSON object at the end')
    .action(async (opts: BackupOpts) => {
      if (!['auto', 'full', 'incremental'].includes(opts.level)) {
        throw new UsageError(`--level must be auto, full or incremental, not '${opts.level}'`);
      }
      const connections = Number(opts.connections);
      if (!Number.isInteger(connections) || connections < 1 || connections > 16) {
        throw new UsageError(`--connections must be an integer from 1 to 16, not '${opts.connections}'`);
      }
      let scratchFloorBytes: number | undefined;
      if (opts.scratchKeepFree !== undefined) {
        const { parseSize } = await import('../../store/config.js');
        try {
          scratchFloorBytes = parseSize(opts.scratchKeepFree);
        } catch {
          throw new UsageError(`--scratch-keep-free must be a size such as 512M or 2G, not '${opts.scratchKeepFree}'`);
        }
      }
      const dir = repoFrom(opts.repo);
      // virsh first: its session starts (links, connects to libvirtd) and answers the backup's
      // first questions while the rest loads.
      const [{ VirshLibvirt }, { prefetchFirstQueries }] = await Promise.all([
        import('../../libvirt/virsh.js'),
        import('../../backup/first-queries.js'),
      ]);
      const libvirt = new VirshLibvirt(opts.connect === undefined ? {} : { uri: opts.connect });
      const firstQueries = prefetchFirstQueries(libvirt, opts.domain, { signal: ctx.signal });
      // Loaded here, not at start-up: every command pays only for the modules it runs.
      const [{ runBackup }, { Repository }, { diskProgress, formatBytes }] = await Promise.all([
        import('../../backup/run.js'),
        import('../../store/index.js'),
        import('../progress.js'),
      ]);
      const log = (m: string): void => void ctx.stderr.write(`${m}\n`);
      const repo = await Repository.open(dir, { onWarning: (m) => log(`warning: ${m}`) });
      const progress = diskProgress(ctx, opts.json !== true);
      let result: BackupResult;
      try {
        result = await runBackup(
          {
            domain: opts.domain,
            level: opts.level as 'auto' | 'full' | 'incremental',
            disks: opts.disk,
            excludeDisks: opts.excludeDisk,
            scratchDir: opts.scratchDir,
            ...(scratchFloorBytes === undefined ? {} : { scratchFloorBytes }),
            connections,
            signal: ctx.signal,
            firstQueries,
            log,
            onProgress: (p) => progress.update(p),
          },
          { libvirt, repo },
        );
      } finally {
        progress.stop();
        await repo.close();
      }
      if (opts.json === true) {
        const { mode: _mode, ...backup } = result;
        ctx.stdout.write(`${JSON.stringify({ backup })}\n`);
        return;
      }
      for (const d of result.disks) {
        const mbps = d.seconds > 0 ? d.bytesRead / 1e6 / d.seconds : 0;
        ctx.stdout.write(
          `${d.name}: read ${formatBytes(d.bytesRead)} of ${formatBytes(d.size)} in ${d.seconds.toFixed(1)} s (${mbps.toFixed(0)} MB/s), ` +
            `stored ${formatBytes(d.bytesStored)} (${d.chunksNew} new chunks, ${d.chunksDeduped} deduplicated)\n`,
        );
      }
      ctx.stdout.write(
        `backup ${result.id} of ${result.domain}: ${result.level} (${result.reason}), ` +
          `checkpoint ${result.checkpoint || 'none'}${result.parent === null ? '' : `, parent ${result.parent}`}\n`,
      );
    });
}
