// `pullback list`: the backups in a repository, oldest first.
import type { Command } from 'commander';
import type { BackupRecord } from '../../store/index.js';
import { repoFrom, type CliContext } from '../context.js';
import { formatBytes } from '../progress.js';

interface ListOpts {
  repo?: string;
  domain?: string;
  json?: boolean;
}

export function listJson(r: BackupRecord): object {
  return {
    id: r.id,
    domain: r.domain,
    time: r.time.toISOString(),
    level: r.level,
    checkpoint: r.checkpoint,
    parent: r.parentId,
    status: r.status,
    disks: r.disks.map((d) => ({ name: d.name, size: d.size, bytesRead: d.bytesRead, bytesStored: d.bytesStored })),
  };
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command('list')
    .description('list backups, oldest first')
    .option('--repo <dir>', 'repository directory (default: $PULLBACK_REPO)')
    .option('--domain <name>', 'only backups of this domain')
    .option('--json', 'print a JSON array')
    .action(async (opts: ListOpts) => {
      const { Repository } = await import('../../store/index.js');
      const repo = await Repository.open(repoFrom(opts.repo), { readOnly: true });
      let rows: BackupRecord[];
      try {
        rows = repo.listBackups(opts.domain === undefined ? {} : { domain: opts.domain });
      } finally {
        await repo.close();
      }
      if (opts.json === true) {
        ctx.stdout.write(`${JSON.stringify(rows.map(listJson), null, 2)}\n`);
        return;
      }
      if (rows.length === 0) {
        ctx.stdout.write('no backups\n');
        return;
      }
      for (const r of rows) {
        const read = r.disks.reduce((a, d) => a + d.bytesRead, 0);
        const stored = r.disks.reduce((a, d) => a + d.bytesStored, 0);
        ctx.stdout.write(
          `${r.id}  ${r.domain}  ${r.time.toISOString()}  ${r.level.padEnd(11)}  ${r.status.padEnd(8)}  ` +
            `disks ${r.disks.map((d) => d.name).join(',')}  read ${formatBytes(read)}  stored ${formatBytes(stored)}\n`,
        );
      }
    });
}
