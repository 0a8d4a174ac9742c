// The reserve: a file of RESERVE_BYTES real (written) blocks in the repository root, kept so
// that a repository whose filesystem filled up can still be pruned and garbage-collected.
// On a full filesystem SQLite cannot even open the index (its -shm file must grow), so
// without it `pullback prune` — the way out — would fail like everything else. Borg keeps
// space in reserve for the same reason.
//   - created by any writable open (so also by `init`) that finds it missing with room to spare;
//   - released (deleted) when a command that frees space (prune, gc) opens a full repository;
//   - never read; not a chunk, not a manifest: check, gc and repair do not look at it.
import { existsSync, unlinkSync } from 'node:fs';
import { writeFileAtomic } from './atomic-file.js';
import type { Layout } from './layout.js';
import { filesystemFull, freeBytes } from './no-space.js';
import { MiB } from '../units.js';

export const RESERVE_BYTES = 8 * MiB;

/**
 * Creates the reserve if it is missing and the filesystem has room for it four times over
 * (so that keeping it never turns "nearly full" into "full"). False when it was not created.
 */
export async function ensureReserve(l: Layout): Promise<boolean> {
  if (existsSync(l.reserve)) return true;
  if (freeBytes(l.root) < 4 * RESERVE_BYTES) return false;
  try {
    // Zeros, written: ext4 and xfs allocate written blocks (unlike a sparse truncate).
    await writeFileAtomic(l.tmp, l.reserve, [Buffer.alloc(RESERVE_BYTES)]);
    return true;
  } catch {
    return false; // e.g. another process filled the disk meanwhile: try again next time
  }
}

/** Deletes the reserve when the filesystem is full; says whether it did. */
export function releaseReserveIfFull(l: Layout): boolean {
  if (!filesystemFull(l.root, RESERVE_BYTES) || !existsSync(l.reserve)) return false;
  try {
    unlinkSync(l.reserve);
    return true;
  } catch {
    return false;
  }
}
