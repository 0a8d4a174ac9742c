// `pullback nbd-info` and `pullback nbd-read`: option definitions only; the work is in
// nbd-tools.ts, loaded when one of them runs (the NBD client is not needed to start up).
import type { Command } from 'commander';
import { BASE_ALLOCATION } from '../../nbd/constants.js';
import type { CliContext } from '../context.js';
import type { InfoOpts, ReadOpts } from './nbd-tools.js';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('nbd-info')
    .description('show what an NBD export offers: size, flags, block sizes, metadata contexts; --map prints extents')
    .argument('<uri>', "NBD URI, e.g. 'nbd+unix:///vda?socket=/run/x.sock' or nbd://host:10809/export")
    .option('--map [context]', `print the extent map of a metadata context (default ${BASE_ALLOCATION})`)
    .option('--list', 'list the exports of the server instead')
    .option('--json', 'print JSON')
    .action(async (uri: string, opts: InfoOpts) => (await import('./nbd-tools.js')).info(uri, opts, ctx));

  program
    .command('nbd-read')
    .description('read a whole NBD export (zero ranges skipped) and report bytes, seconds, MB/s, and the sha256')
    .argument('<uri>', 'NBD URI')
    .option('--output <file>', 'write the export into FILE (sparse where the export reads as zeros)')
    .option('--force', 'overwrite an existing output file')
    .option('--connections <n>', 'connections to use when the server allows multi-conn', '4')
    .option('--sha256', 'print the sha256 of the export')
    .option('--json', 'print one JSON line')
    .action(async (uri: string, opts: ReadOpts) => (await import('./nbd-tools.js')).read(uri, opts, ctx));
}
