// The pullback CLI as the fidelity driver uses it: every call goes through bin/pullback (the
// built CLI, dist/), exactly as a user or the nightly job runs it.
//
// Terms: `args*` build argument lists (also used to spawn a process that will be killed);
// the other methods run a command to its end and parse its --json output.
import { runCli, type CliResult } from '../helpers/cli.js';

export interface ListedBackup {
  id: string;
  domain: string;
  time: string;
  level: 'full' | 'incremental';
  parent: string | null;
  status: 'running' | 'complete' | 'failed';
  checkpoint: string;
  disks: Array<{ name: string; size: number }>;
}

export interface BackupJson {
  backup: { id: string; domain: string; level: 'full' | 'incremental'; reason: string; checkpoint: string; parent: string | null; disks: Array<{ name: string; size: number; bytesRead: number }> };
}

export interface PruneDecision {
  id: string;
  status: string;
  keep: boolean;
  reasons: string[];
}

export interface PruneJson {
  dryRun: boolean;
  removed: number;
  domains: Array<{ domain: string; decisions: PruneDecision[] }>;
}

/** Generous: a CLI call that hangs is itself a finding, but 2 cores under load are slow. */
const TIMEOUT_MS = 300_000;

export class Pullback {
  constructor(
    readonly repo: string,
    readonly scratch: string,
  ) {}

  run(args: string[]): Promise<CliResult> {
    return runCli(args, { timeoutMs: TIMEOUT_MS });
  }

  argsBackup(domain: string, level: string): string[] {
    return ['backup', '--repo', this.repo, '--domain', domain, '--level', level, '--scratch-dir', this.scratch, '--json'];
  }

  argsPrune(policy: string[], opts: { dryRun?: boolean; gc?: boolean; domain?: string } = {}): string[] {
    return [
      'prune',
      '--repo',
      this.repo,
      ...policy,
      ...(opts.domain === undefined ? [] : ['--domain', opts.domain]),
      ...(opts.dryRun === true ? ['--dry-run'] : []),
      ...(opts.gc === false ? ['--no-gc'] : []),
      '--json',
    ];
  }

  argsGc(): string[] {
    return ['gc', '--repo', this.repo, '--json'];
  }

  check(): Promise<CliResult> {
    return this.run(['check', '--repo', this.repo]);
  }

  async list(): Promise<ListedBackup[]> {
    const r = await this.run(['list', '--repo', this.repo, '--json']);
    if (r.code !== 0) throw new Error(`pullback list failed (exit ${r.code}): ${r.stderr.trim()}`);
    return JSON.parse(r.stdout) as ListedBackup[];
  }

  restore(domain: string, id: string, output: string, format: 'raw' | 'qcow2'): Promise<CliResult> {
    return this.run(['restore', '--repo', this.repo, '--domain', domain, '--backup', id, '--output', output, '--format', format, '--json']);
  }

  restoreToNbd(domain: string, id: string, disk: string, uri: string): Promise<CliResult> {
    return this.run(['restore', '--repo', this.repo, '--domain', domain, '--backup', id, '--disk', disk, '--output', uri, '--verify', '--json']);
  }
}

/** One line for the step log / an error: exit code and the first line of stderr. */
export function brief(r: CliResult): string {
  const err = r.stderr.trim().split('\n').filter((l) => l.trim() !== '');
  return `exit ${r.code}${err.length > 0 ? `: ${err.join(' | ').slice(0, 600)}` : ''}`;
}
