// What every command handler gets besides its own options: where to print, and whether
// the user asked for machine-readable output. Nothing below src/cli sees argv.
export interface CliContext {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /** True when stderr is a terminal: progress bars instead of progress lines. */
  interactive: boolean;
  /** Aborted on SIGINT/SIGTERM; long-running work must honour it. */
  signal: AbortSignal;
}

/** Repository directory from --repo or PULLBACK_REPO. */
export function repoFrom(opt: string | undefined): string {
  const repo = opt ?? process.env['PULLBACK_REPO'];
  if (repo === undefined || repo === '') {
    throw new UsageError('no repository given: pass --repo DIR or set PULLBACK_REPO');
  }
  return repo;
}

/** commander option parser for repeatable options (--disk vda --disk vdb). */
export const collect = (v: string, prev: string[]): string[] => [...prev, v];

export class UsageError extends Error {
  override name = 'UsageError';
}
