// `pullback init --repo DIR [--chunk-size SIZE] [--compression zstd:LEVEL]`: create a repository.
import type { Command } from 'commander';
import { isPullbackError } from '../../errors.js';
import { DEFAULT_CHUNK_SIZE, formatSize, parseCompression, parseSize } from '../../store/config.js';
import type { Repository } from '../../store/index.js';
import { UsageError, repoFrom, type CliContext } from '../context.js';

interface InitOpts {
  repo?: string;
  chunkSize?: string;
  compression?: string;
}

/** Option values that do not parse are usage errors (exit 2), not failures. */
function parseOr<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (isPullbackError(e, 'CONFIG_INVALID')) throw new UsageError(e.message);
    throw e;
  }
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command('init')
    .description('create a repository (a deduplicating chunk store) in DIR')
    .option('--repo <dir>', 'repository directory (default: $PULLBACK_REPO)')
    .option('--chunk-size <size>', `chunk size, a power of two from 64K to 16M (default ${formatSize(DEFAULT_CHUNK_SIZE)})`)
    .option('--compression <spec>', 'zstd:LEVEL (default zstd:1)')
    .action(async (opts: InitOpts) => {
      const { Repository } = await import('../../store/index.js');
      const dir = repoFrom(opts.repo);
      const chunkSize = opts.chunkSize === undefined ? undefined : parseOr(() => parseSize(opts.chunkSize as string));
      const level = opts.compression === undefined ? undefined : parseOr(() => parseCompression(opts.compression as string));
      const init = {
        onWarning: (m: string) => ctx.stderr.write(`pullback: warning: ${m}\n`),
        ...(chunkSize !== undefined ? { chunkSize } : {}),
        ...(level !== undefined ? { compressionLevel: level } : {}),
      };
      const repo = await parseOrInit(() => Repository.init(dir, init));
      const c = repo.config;
      await repo.close();
      ctx.stdout.write(
        `created repository ${dir}: chunk size ${formatSize(c.chunkSize)}, hash ${c.hash}, compression ${c.compression.algorithm}:${c.compression.level}\n`,
      );
    });
}

async function parseOrInit(f: () => Promise<Repository>): Promise<Repository> {
  try {
    return await f();
  } catch (e) {
    if (isPullbackError(e, 'CONFIG_INVALID')) throw new UsageError(e.message);
    throw e;
  }
}
