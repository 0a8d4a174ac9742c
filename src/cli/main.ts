// Entry point: argv -> commander -> command handlers. Exit codes: 0 success, 1 failure,
// 2 usage error, 130/143 interrupted. Errors print one line; --debug adds the stack.
import { Command, CommanderError } from 'commander';
import { setMaxListeners } from 'node:events';
import { readFileSync } from 'node:fs';
import { PullbackError, errorMessage } from '../errors.js';
import { UsageError, type CliContext } from './context.js';
import { commands } from './commands/index.js';

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

export async function main(argv: string[]): Promise<number> {
  const debug = argv.includes('--debug');
  const abort = new AbortController();
  // Every in-flight NBD request and store write listens on this one signal.
  setMaxListeners(0, abort.signal);
  let interrupted: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (interrupted !== undefined) process.exit(sig === 'SIGINT' ? 130 : 143);
    interrupted = sig;
    abort.abort(new PullbackError('ABORTED', `interrupted by ${sig}`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const ctx: CliContext = {
    stdout: process.stdout,
    stderr: process.stderr,
    interactive: process.stderr.isTTY === true,
    signal: abort.signal,
  };

  const program = new Command('pullback')
    .description('Incremental pull-mode backups of libvirt/QEMU virtual machines')
    .version(version(), '-V, --version')
    .option('--debug', 'print stack traces on error')
    .exitOverride()
    .configureOutput({ writeErr: (s) => ctx.stderr.write(s), writeOut: (s) => ctx.stdout.write(s) })
    .showHelpAfterError(false);
  program.addHelpCommand(false);
  for (const register of commands) register(program, ctx);

  try {
    await program.parseAsync(argv, { from: 'node' });
    return interrupted === undefined ? 0 : interrupted === 'SIGINT' ? 130 : 143;
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version exit through here with code 0.
      return e.exitCode === 0 ? 0 : 2;
    }
    if (e instanceof UsageError) {
      ctx.stderr.write(`pullback: ${e.message}\n`);
      return 2;
    }
    const code = e instanceof PullbackError ? ` [${e.code}]` : '';
    ctx.stderr.write(`pullback: error${code}: ${errorMessage(e)}\n`);
    if (debug && e instanceof Error) {
      ctx.stderr.write(`${e.stack ?? ''}\n`);
      let cause: unknown = e.cause;
      while (cause instanceof Error) {
        ctx.stderr.write(`caused by: ${cause.stack ?? cause.message}\n`);
        cause = cause.cause;
      }
    }
    if (interrupted !== undefined) return interrupted === 'SIGINT' ? 130 : 143;
    return 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
