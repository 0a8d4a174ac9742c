// Running a pullback command in the background: to kill it with SIGKILL at a random moment,
// or to do something else (guest writes, gc) while it runs.
//
// Terms: a *run* is the spawned CLI with its collected output; `finished` resolves when it
// exits (code null when a signal ended it).
import { execFile, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { spawnCli } from '../helpers/cli.js';

const execFileP = promisify(execFile);

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface Run {
  child: ChildProcess;
  finished: Promise<Exit>;
  exited(): boolean;
}

export function start(args: string[]): Run {
  const child = spawnCli(args);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  let done = false;
  const finished = new Promise<Exit>((resolve) => {
    child.once('close', (code, signal) => {
      done = true;
      resolve({ code, signal, stdout, stderr });
    });
  });
  return { child, finished, exited: () => done };
}

/** SIGKILL after `delayMs` unless it exited first; says which happened. */
export async function killAfter(run: Run, delayMs: number): Promise<{ killed: boolean; exit: Exit }> {
  const timer = sleep(delayMs).then(() => 'timeout' as const);
  const winner = await Promise.race([timer, run.finished.then(() => 'exit' as const)]);
  if (winner === 'exit') return { killed: false, exit: await run.finished };
  run.child.kill('SIGKILL');
  const exit = await run.finished;
  return { killed: exit.signal === 'SIGKILL', exit };
}

/**
 * Waits until a new job directory (one not in `before`) has a socket that exports a disk —
 * the libvirt job's `nbd.sock` (live) or a qemu-nbd's `<disk>.sock` (offline) — and returns
 * the directory's name; undefined if the process exited first or nothing appeared in time.
 * Why exports and not the socket: libvirt 9 (qemuBackupBegin) starts the NBD server, so
 * QEMU creates the socket, *before* the transaction that fixes the backup's point in time;
 * the exports are added after it. A guest write after this returns is therefore after the
 * backup's instant.
 */
export async function waitForJobStarted(run: Run, scratch: string, before: ReadonlySet<string>, timeoutMs = 60_000): Promise<string | undefined> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && !run.exited()) {
    const dirs = existsSync(scratch) ? readdirSync(scratch).filter((n) => n.startsWith('pullback-') && !before.has(n)) : [];
    for (const d of dirs) {
      const socks = existsSync(join(scratch, d)) ? readdirSync(join(scratch, d)).filter((f) => f.endsWith('.sock')) : [];
      for (const f of socks) if (await hasExport(join(scratch, d, f))) return d;
    }
    await sleep(5);
  }
  return undefined;
}

async function hasExport(socket: string): Promise<boolean> {
  try {
    const { stdout } = await execFileP('nbdinfo', ['--list', '--json', `nbd+unix:///?socket=${socket}`], { timeout: 10_000 });
    const j = JSON.parse(stdout) as { exports?: unknown[] };
    return (j.exports ?? []).length > 0;
  } catch {
    return false;
  }
}

export function jobDirs(scratch: string): Set<string> {
  return new Set(existsSync(scratch) ? readdirSync(scratch).filter((n) => n.startsWith('pullback-')) : []);
}

/** One line for the step log / an error: exit code (or signal) and stderr. */
export function exitBrief(e: Exit): string {
  const err = e.stderr.trim().split('\n').filter((l) => l.trim() !== '');
  return `${e.code === null ? `signal ${e.signal ?? '?'}` : `exit ${e.code}`}${err.length > 0 ? `: ${err.join(' | ').slice(0, 600)}` : ''}`;
}
