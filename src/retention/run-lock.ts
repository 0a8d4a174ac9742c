// The nightly-run lock: at most one `pullback run` per repository at a time, so a slow run
// and the next timer tick (or a manual run) never overlap. It is the file `<repo>/run.lock`,
// holding the owner (store/owner.ts: host, boot id, pid, process start time), created with
// link(2) from a complete temporary file, so it appears atomically and whole or not at all.
// A lock whose owner is provably dead (crash, kill -9, reboot) is taken over with a warning;
// a live or unprobeable owner (another host) makes the run fail with REPO_LOCKED.
// Repository locks (store/lock.ts) still guard each backup, prune and gc inside the run.
import { link, readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PullbackError } from '../errors.js';
import { currentOwner, describeOwner, liveness, parseOwner } from '../store/owner.js';

export const RUN_LOCK = 'run.lock';

export interface RunLock {
  readonly path: string;
  release(): Promise<void>;
}

interface LockBody {
  owner: unknown;
  config: string;
  since: string;
}

export async function acquireRunLock(repoDir: string, config: string, warn: (m: string) => void): Promise<RunLock> {
  const path = join(repoDir, RUN_LOCK);
  const owner = currentOwner();
  const tmp = `${path}.${owner.pid}.tmp`;
  const body: LockBody = { owner, config, since: new Date().toISOString() };
  try {
    await writeFile(tmp, `${JSON.stringify(body)}\n`);
  } catch (e) {
    throw new PullbackError('REPO_IO', `cannot write the run lock ${tmp}: ${(e as Error).message}`, { cause: e });
  }
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await link(tmp, path);
        return lockAt(path);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') {
          throw new PullbackError('REPO_IO', `cannot create the run lock ${path}: ${(e as Error).message}`, { cause: e });
        }
      }
      const holder = await readHolder(path);
      if (holder === 'gone') continue;
      if (holder === 'unreadable' || liveness(holder.owner) !== 'dead') {
        const who = holder === 'unreadable' ? 'an unknown process (the lock file is unreadable)' : `${describeOwner(holder.owner)} since ${holder.since} (config ${holder.config})`;
        throw new PullbackError(
          'REPO_LOCKED',
          `another pullback run is using repository ${repoDir}: ${who}; wait for it to finish, or if that process no longer exists remove ${path}`,
        );
      }
      // Not race-free against a second process taking over the same dead lock at the same
      // instant; runs come from one timer, so that is not a case worth a protocol.
      await unlink(path).catch(() => undefined);
      warn(`took over the run lock ${path} of a dead run (${describeOwner(holder.owner)}, since ${holder.since})`);
    }
    throw new PullbackError('REPO_LOCKED', `the run lock ${path} keeps changing hands: another pullback run is starting at the same time`);
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}

function lockAt(path: string): RunLock {
  let released = false;
  return {
    path,
    async release() {
      if (released) return;
      released = true;
      await unlink(path).catch(() => undefined);
    },
  };
}

async function readHolder(path: string): Promise<'gone' | 'unreadable' | { owner: NonNullable<ReturnType<typeof parseOwner>>; since: string; config: string }> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'gone' : 'unreadable';
  }
  try {
    const b = JSON.parse(text) as Partial<LockBody>;
    const owner = parseOwner(JSON.stringify(b.owner));
    if (owner === undefined) return 'unreadable';
    return { owner, since: String(b.since ?? '?'), config: String(b.config ?? '?') };
  } catch {
    return 'unreadable';
  }
}
