// A full filesystem under the repository, told apart from other I/O failures so that the user
// is told to free space, and not (say) to rebuild an index that is fine. Recognised from an
// errno (ENOSPC; EDQUOT, a quota) or from SQLite: SQLITE_FULL, or an SQLITE_IOERR while the
// filesystem has no space left — opening the index in WAL mode must create and grow its -shm
// file, which on a full filesystem fails as a plain "disk I/O error".
import { statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import { PullbackError } from '../errors.js';

const NO_SPACE_ERRNOS = new Set(['ENOSPC', 'EDQUOT']);

/** Less free space than this counts as full: a chunk (1 MiB by default) no longer fits. */
const FULL_BELOW_BYTES = 1024 * 1024;

export function isNoSpaceErrno(code: unknown): boolean {
  return typeof code === 'string' && NO_SPACE_ERRNOS.has(code);
}

/** Bytes of a statfs result this process can still write. */
export function usableBytes(s: { bfree: number; bavail: number; bsize: number }): number {
  // root may also use the blocks ext4 reserves for it; others only the available ones.
  return (process.getuid?.() === 0 ? s.bfree : s.bavail) * s.bsize;
}

/** Bytes this process can still write on the filesystem holding `path` (Infinity if unknown). */
export function freeBytes(path: string): number {
  try {
    return usableBytes(statfsSync(path));
  } catch {
    return Number.POSITIVE_INFINITY;
  }
}

/** True when the filesystem holding `path` has less than `below` bytes left for this process. */
export function filesystemFull(path: string, below = FULL_BELOW_BYTES): boolean {
  return freeBytes(path) < below;
}

/** REPO_FULL: `what` failed because the filesystem of repository `root` is full. */
export function repoFullError(root: string, what: string, cause: unknown): PullbackError {
  return new PullbackError(
    'REPO_FULL',
    `${what}: no space left on the filesystem of repository ${root}; free space there (\`pullback prune\`, then \`pullback gc\`) or enlarge it, then run again`,
    { cause },
  );
}

/** An errno error while writing into repository `root` as REPO_FULL when it is about space. */
export function noSpaceFromErrno(e: unknown, root: string, what: string): PullbackError | undefined {
  return isNoSpaceErrno((e as { code?: unknown } | null)?.code) ? repoFullError(root, what, e) : undefined;
}

/** An SQLite error on the index at `dbPath` as REPO_FULL when it is about space. */
export function noSpaceFromSqlite(e: unknown, dbPath: string): PullbackError | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return undefined;
  const root = dirname(dbPath);
  if (code === 'SQLITE_FULL' || (code.startsWith('SQLITE_IOERR') && filesystemFull(root))) {
    return repoFullError(root, `the index database ${dbPath} could not be written`, e);
  }
  return undefined;
}
