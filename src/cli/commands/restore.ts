// `pullback restore`: a backup's disks back into image files or block devices, optionally
// defining a new libvirt domain on them (--define). See docs/restore.md.
import type { Command } from 'commander';
import { isPullbackError, PullbackError } from '../../errors.js';
import type { RestoreResult } from '../../restore/index.js';
import { repoFrom, UsageError, type CliContext } from '../context.js';

interface RestoreOpts {
  repo?: string;
  domain: string;
  backup: string;
  disk?: string;
  output: string;
  format: string;
  define?: string;
  connect?: string;
  verify?: boolean;
  force?: boolean;
  json?: boolean;
  workers?: string;
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command('restore')
    .description('restore a backup: every disk into a directory, or one disk (--disk) into a file, block device or NBD export')
    .option('--repo <dir>', 'repository directory (default: $PULLBACK_REPO)')
    .requiredOption('--domain <name>', 'domain whose backup to restore')
    .option('--backup <id>', 'backup id, or latest', 'latest')
    .option('--disk <target>', 'restore only this disk; --output is then the image path')
    .requiredOption('--output <path>', 'directory (all disks) or image path / block device (--disk), or an NBD export (nbd://HOST[:PORT]/NAME, nbd+unix:///NAME?socket=PATH; raw, one disk)')
    .option('--format <format>', 'raw | qcow2', 'raw')
    .option('--define <newname>', 'define a new libvirt domain on the restored images (new UUID and MACs)')
    .option('--connect <uri>', 'libvirt URI for --define (default: $LIBVIRT_DEFAULT_URI or qemu:///system)')
    .option('--verify', 're-read the written images and compare them with the backup before keeping them')
    .option('--force', 'overwrite existing outputs')
    .option('--workers <n>', 'worker threads (default: one per core)')
    .option('--json', 'print one JSON summary at the end')
    .action(async (opts: RestoreOpts) => {
      const [{ VirshLibvirt }, { checkDefinable, defineRestoredDomain, isNbdUri, resolveBackupSpec, restoreBackup }, { Repository }, { diskProgress, formatBytes }] =
        await Promise.all([
          import('../../libvirt/virsh.js'),
          import('../../restore/index.js'),
          import('../../store/index.js'),
          import('../progress.js'),
        ]);
      if (opts.format !== 'raw' && opts.format !== 'qcow2') throw new UsageError(`--format must be raw or qcow2, not '${opts.format}'`);
      const workers = opts.workers === undefined ? undefined : Number(opts.workers);
      if (workers !== undefined && (!Number.isInteger(workers) || workers < 1 || workers > 64)) {
        throw new UsageError(`--workers must be an integer from 1 to 64, not '${opts.workers}'`);
      }
      const dir = repoFrom(opts.repo);
      const repo = await Repository.open(dir, { readOnlyIfUnwritable: true, onWarning: (m) => ctx.stderr.write(`pullback: warning: ${m}\n`) });
      const progress = diskProgress(ctx, opts.json !== true);
      let result: RestoreResult;
      let defined: string | null = null;
      try {
        const record = resolveBackupSpec(repo, opts.domain, opts.backup);
        if (isNbdUri(opts.output)) {
          if (opts.define !== undefined) {
            throw new UsageError('--define needs the disks restored into image files or block devices, not into an NBD export');
          }
        }
        const libvirt = opts.define === undefined ? undefined : new VirshLibvirt(opts.connect === undefined ? {} : { uri: opts.connect });
        if (libvirt !== undefined && opts.define !== undefined) {
          if (opts.disk !== undefined && record.disks.length > 1) {
            throw new UsageError(`--define needs every disk of the backup restored; drop --disk (backup ${record.id} has ${record.disks.map((d) => d.name).join(', ')})`);
          }
          await checkDefinable(libvirt, record, opts.define, { signal: ctx.signal });
        }
        result = await restoreBackup(repo, {
          backupId: record.id,
          ...(opts.disk !== undefined ? { disks: [opts.disk] } : {}),
          output: opts.output,
          format: opts.format,
          force: opts.force === true,
          verify: opts.verify === true,
          signal: ctx.signal,
          onProgress: (e) => progress.update({ disk: e.phase === 'verify' ? `${e.disk} verify` : e.disk, bytesDone: e.bytesDone, bytesTotal: e.bytesTotal }),
          ...(workers !== undefined ? { workers } : {}),
        }).catch((e: unknown) => {
          // What restoreBackup refuses before any work (an NBD export given qcow2 or several
          // disks) is a usage error: exit 2, as serve does.
          throw isPullbackError(e, 'USAGE') ? new UsageError(e.message) : e;
        });
        progress.stop();
        if (libvirt !== undefined && opts.define !== undefined) {
          try {
            defined = (await defineRestoredDomain(libvirt, record, opts.define, result.disks, { signal: ctx.signal })).name;
          } catch (e) {
            const paths = result.disks.map((d) => d.path).join(', ');
            const code = isPullbackError(e) ? e.code : 'RESTORE_FAILED';
            throw new PullbackError(code, `the disks were restored (${paths}) but defining domain ${opts.define} failed: ${(e as Error).message}`, { cause: e });
          }
        }
      } finally {
        progress.stop();
        await repo.close();
      }
      if (opts.json === true) {
        const { seconds: _s, ...summary } = result;
        ctx.stdout.write(`${JSON.stringify({ restore: { ...summary, defined } })}\n`);
        return;
      }
      for (const d of result.disks) {
        const mbps = d.seconds > 0 ? d.bytesWritten / 1e6 / d.seconds : 0;
        ctx.stdout.write(
          `${d.name}: ${formatBytes(d.size)} restored to ${d.path} (${d.format}), ${d.chunks} chunks, ` +
            `${formatBytes(d.bytesWritten)} written in ${d.seconds.toFixed(1)} s (${mbps.toFixed(0)} MB/s)\n`,
        );
      }
      ctx.stdout.write(
        `restored backup ${result.backup} of ${result.domain}${result.verified ? ', verified' : ''}` +
          `${defined === null ? '' : `; defined domain ${defined}`}\n`,
      );
    });
}
