// `pullback serve --repo DIR --domain NAME [--backup ID|latest] --disk vda
//   (--socket PATH | --port N [--bind ADDR])`: one disk of a backup as a read-only NBD export,
// so qemu-img, nbdcopy, nbdinfo, qemu-nbd or a VM (through a qcow2 overlay) can use the backup
// without restoring it. Prints the NBD URI, then serves until SIGINT/SIGTERM. See docs/serve.md.
import type { Command } from 'commander';
import { PullbackError } from '../../errors.js';
import type { ServeHandle } from '../../serve/index.js';
import { formatSize, parseSize } from '../../store/config.js';
import { repoFrom, UsageError, type CliContext } from '../context.js';

interface ServeOpts {
  repo?: string;
  domain: string;
  backup: string;
  disk: string;
  socket?: string;
  port?: string;
  bind?: string;
  exportName?: string;
  cache: string;
  socketMode: string;
  verbose?: boolean;
  json?: boolean;
}

function parsePort(s: string): number {
  const n = Number(s);
  if (!/^\d+$/.test(s) || n > 65535) throw new UsageError(`--port must be a TCP port number (0-65535), not '${s}'`);
  return n;
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command('serve')
    .description('serve one disk of a backup as a read-only NBD export (for qemu-img, nbdcopy, qemu, nbdinfo) until interrupted')
    .option('--repo <dir>', 'repository directory (default: $PULLBACK_REPO)')
    .requiredOption('--domain <name>', 'domain whose backup to serve')
    .option('--backup <id>', 'backup id, or latest', 'latest')
    .requiredOption('--disk <target>', 'disk to serve, e.g. vda')
    .option('--socket <path>', 'unix socket to listen on (default /run/pullback/<domain>-<disk>.sock)')
    .option('--port <n>', 'listen on TCP instead (0 = any free port)')
    .option('--bind <addr>', 'TCP address to bind with --port', undefined)
    .option('--export-name <name>', 'NBD export name (default: the disk name)')
    .option('--cache <size>', 'memory for decompressed chunks', '64M')
    .option('--socket-mode <octal>', 'permissions of the unix socket', '600')
    .option('--verbose', 'log every connection and option')
    .option('--json', 'print the URI and details as one JSON line')
    .action(async (opts: ServeOpts) => {
      const [{ resolveBackupSpec }, { startServe }, { Repository }] = await Promise.all([
        import('../../restore/index.js'),
        import('../../serve/index.js'),
        import('../../store/index.js'),
      ]);
      if (opts.socket !== undefined && opts.port !== undefined) throw new UsageError('give --socket or --port, not both');
      if (opts.bind !== undefined && opts.port === undefined) throw new UsageError('--bind needs --port');
      if (!/^[0-7]{3,4}$/.test(opts.socketMode)) throw new UsageError(`--socket-mode must be octal like 600 or 660, not '${opts.socketMode}'`);
      let cacheBytes: number;
      try {
        cacheBytes = parseSize(opts.cache);
      } catch (e) {
        throw new UsageError(`--cache: ${(e as Error).message}`);
      }
      const port = opts.port === undefined ? undefined : parsePort(opts.port);
      if (opts.bind !== undefined && !/^(127\.|::1$|localhost$)/.test(opts.bind)) {
        ctx.stderr.write(
          `pullback: warning: serving on ${opts.bind}: anyone who can reach that address can read this backup (NBD here has no TLS and no authentication)\n`,
        );
      }
      const dir = repoFrom(opts.repo);
      const repo = await Repository.open(dir, { readOnly: true, onWarning: (m) => ctx.stderr.write(`pullback: warning: ${m}\n`) });
      let handle: ServeHandle | undefined;
      try {
        const record = resolveBackupSpec(repo, opts.domain, opts.backup);
        handle = await startServe(repo, {
          backupId: record.id,
          disk: opts.disk,
          cacheBytes,
          socketMode: parseInt(opts.socketMode, 8),
          signal: ctx.signal,
          ...(opts.socket !== undefined ? { socket: opts.socket } : {}),
          ...(port !== undefined ? { port } : {}),
          ...(opts.bind !== undefined ? { bind: opts.bind } : {}),
          ...(opts.exportName !== undefined ? { exportName: opts.exportName } : {}),
          onEvent: (e) => {
            if (e.level === 'warn' || opts.verbose === true || (e.level === 'info' && opts.json !== true)) {
              ctx.stderr.write(`pullback serve: ${e.connection > 0 ? `[client ${e.connection}] ` : ''}${e.message}\n`);
            }
          },
        });
        const h = handle;
        if (opts.json === true) {
          ctx.stdout.write(
            `${JSON.stringify({ serve: { uri: h.uri, backup: h.backup.id, domain: h.backup.domain, disk: h.disk, size: h.size, exportName: h.exportName, address: h.address } })}\n`,
          );
        } else {
          ctx.stdout.write(
            `serving disk ${h.disk} (${formatSize(h.size)}) of backup ${h.backup.id} of ${h.backup.domain}, read-only\n` +
              `  ${h.uri}\n` +
              `e.g. qemu-img convert -O qcow2 '${h.uri}' ${h.disk}.qcow2 | nbdcopy '${h.uri}' ${h.disk}.raw | nbdinfo --map '${h.uri}'\n` +
              `stop with Ctrl-C (SIGINT) or SIGTERM\n`,
          );
        }
        await h.closed;
      } catch (e) {
        if (e instanceof PullbackError && e.code === 'USAGE') throw new UsageError(e.message);
        throw e;
      } finally {
        await handle?.close();
        await repo.close();
      }
    });
}
