// Repository locks across processes, as files in locks/. Kinds and what they exclude:
//   shared     backups and check: any number at once; excluded only by `exclusive`
//   gc         garbage collection: one at a time; runs beside backups (see gc.ts for why
//              that is safe); excluded by `gc` and `exclusive`
//   exclusive  prune, repair: excludes everything
// Acquiring writes our own lock file first and then looks for conflicting ones, so two
// conflicting acquirers can never both succeed (each sees the other's file). A conflicting
// lock whose owner is provably dead (owner.ts) is removed with a warning, never ignored
// silently; on conflict we remove our file, back off and retry until `waitMs` runs out.
import { randomBytes } from 'node:crypto';
import { readFile, readdir, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { PullbackError } from '../errors.js';
import { noSpaceFromErrno } from './no-space.js';
import { currentOwner, describeOwner, liveness, parseOwner, type Owner } from './owner.js';

export type LockKind = 'shared' | 'gc' | 'exclusive';

interface LockInfo {
  kind: LockKind;
  owner: Owner;
  purpose: string;
  time: string;
}

export interface RepoLock {
  readonly kind: LockKind;
  readonly file: string;
  release(): Promise<void>;
}

export interface LockOptions {
  /** Keep retrying this long before failing with REPO_LOCKED (default 0: fail at once). */
  waitMs?: number;
  signal?: AbortSignal;
  onWarning: (message: string) => void;
}

export function conflicts(a: LockKind, b: LockKind): boolean {
  if (a === 'exclusive' || b === 'exclusive') return true;
  return a === 'gc' && b === 'gc';
}

/** Unparsable lock files younger than this may still be mid-write (they are renamed in, but be lenient). */
const UNREADABLE_GRACE_MS = 10_000;

export async function acquireLock(
  lockDir: string,
  kind: LockKind,
  purpose: string,
  opts: LockOptions,
): Promise<RepoLock> {
  const deadline = Date.now() + (opts.waitMs ?? 0);
  const owner = currentOwner();
  const info: LockInfo = { kind, owner, purpose, time: new Date().toISOString() };
  for (let attempt = 0; ; attempt++) {
    opts.signal?.throwIfAborted();
    const name = `${kind}.${owner.pid}.${randomBytes(6).toString('hex')}.lock`;
    const file = join(lockDir, name);
    const tmp = `${file}.tmp`;
    try {
      await writeFile(tmp, JSON.stringify(info));
      await rename(tmp, file);
    } catch (e) {
      await unlink(tmp).catch(() => undefined);
      throw (
        noSpaceFromErrno(e, dirname(lockDir), `cannot create lock file in ${lockDir}`) ??
        new PullbackError('REPO_IO', `cannot create lock file in ${lockDir}: ${(e as Error).message}`, { cause: e })
      );
    }
    const blocker = await findConflict(lockDir, name, kind, opts.onWarning);
    if (blocker === undefined) return makeLock(kind, file);
    await unlink(file).catch(() => undefined);
    if (Date.now() >= deadline) {
      throw new PullbackError(
        'REPO_LOCKED',
        `repository is locked by ${blocker.info.purpose} (${describeOwner(blocker.info.owner)}, ${blocker.info.kind} lock since ${blocker.info.time}); ` +
          `wait for it to finish, or if that process no longer exists remove ${blocker.file}`,
      );
    }
    await sleep(50 + Math.floor(Math.random() * 150) + Math.min(attempt, 10) * 20, undefined, {
      signal: opts.signal,
    }).catch(() => opts.signal?.throwIfAborted());
  }
}

function makeLock(kind: LockKind, file: string): RepoLock {
  let released = false;
  return {
    kind,
    file,
    async release() {
      if (released) return;
      released = true;
      await unlink(file).catch(() => undefined);
    },
  };
}

async function findConflict(
  lockDir: string,
  own: string,
  kind: LockKind,
  warn: (m: string) => void,
): Promise<{ file: string; info: LockInfo } | undefined> {
  let names: string[];
  try {
    names = await readdir(lockDir);
  } catch (e) {
    throw new PullbackError('REPO_IO', `cannot list lock directory ${lockDir}: ${(e as Error).message}`, { cause: e });
  }
  for (const name of names) {
    if (name === own || !name.endsWith('.lock')) continue;
    const file = join(lockDir, name);
    const info = await readLock(file);
    if (info === 'gone') continue;
    if (info === 'unreadable') {
      const age = await stat(file).then((s) => Date.now() - s.mtimeMs, () => 0);
      if (age > UNREADABLE_GRACE_MS) {
        await unlink(file).catch(() => undefined);
        warn(`removed unreadable lock file ${file}`);
        continue;
      }
      return { file, info: { kind: 'exclusive', owner: currentOwner(), purpose: 'an unknown process', time: '?' } };
    }
    if (!conflicts(kind, info.kind)) continue;
    if (liveness(info.owner) === 'dead') {
      await unlink(file).catch(() => undefined);
      warn(
        `reclaimed stale ${info.kind} lock of ${info.purpose} left by dead process ${describeOwner(info.owner)} (since ${info.time})`,
      );
      continue;
    }
    return { file, info };
  }
  return undefined;
}

async function readLock(file: string): Promise<LockInfo | 'gone' | 'unreadable'> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 'gone';
    return 'unreadable';
  }
  try {
    const o = JSON.parse(text) as Partial<LockInfo> & { owner?: unknown };
    const owner = parseOwner(JSON.stringify(o.owner));
    if (owner === undefined || (o.kind !== 'shared' && o.kind !== 'gc' && o.kind !== 'exclusive')) return 'unreadable';
    return { kind: o.kind, owner, purpose: String(o.purpose ?? 'unknown'), time: String(o.time ?? '?') };
  } catch {
    return 'unreadable';
  }
}

/** Removes lock files of provably dead owners (any kind), with a warning each; returns how many. */
export async function reapStaleLocks(lockDir: string, warn: (m: string) => void): Promise<number> {
  let n = 0;
  let names: string[];
  try {
    names = await readdir(lockDir);
  } catch {
    return 0;
  }
  for (const name of names) {
    if (!name.endsWith('.lock')) continue;
    const file = join(lockDir, name);
    const info = await readLock(file);
    if (typeof info === 'string' || liveness(info.owner) !== 'dead') continue;
    await unlink(file).catch(() => undefined);
    warn(`removed stale ${info.kind} lock of ${info.purpose} left by dead process ${describeOwner(info.owner)} (since ${info.time})`);
    n++;
  }
  return n;
}
