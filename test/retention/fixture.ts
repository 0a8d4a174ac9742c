// The repository the prune tests share: two domains with simulated daily histories, the
// policy applied to them, and the set it must keep (worked out by hand in docs/retention.md
// and docs/prune.md, listed here explicitly rather than recomputed).
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join, relative } from 'node:path';
import type { RetentionPolicy } from '../../src/retention/policy.js';
import { Repository } from '../../src/store/index.js';
import { runCli } from '../helpers/cli.js';
import { buildHistory, sha256, type HistoryBackup } from './history.js';

export const KiB = 1024;
export const CHUNK = 64 * KiB;
export const NOW = new Date('2026-03-31T12:00:00Z');
export const POLICY: RetentionPolicy = { keepDaily: 7, keepWeekly: 4, keepMonthly: 3 };

/** vm-a: nightly 2026-01-01 .. 2026-03-31, fulls on 01-01, 02-05 and 03-12. */
export const KEPT_A = ['2026-01-31', '2026-02-28', '2026-03-15', '2026-03-22', '2026-03-25', '2026-03-26', '2026-03-27', '2026-03-28', '2026-03-29', '2026-03-30', '2026-03-31'];
/** vm-b: nightly 2026-03-22 .. 2026-03-31, one chain: only 03-23 and 03-24 go (weekly keeps 03-22). */
export const KEPT_B = ['2026-03-22', '2026-03-25', '2026-03-26', '2026-03-27', '2026-03-28', '2026-03-29', '2026-03-30', '2026-03-31'];

export interface Fixture {
  a: HistoryBackup[];
  b: HistoryBackup[];
}

export async function buildFixture(dir: string): Promise<Fixture> {
  const repo = await Repository.init(dir, { chunkSize: CHUNK, workers: 2, onWarning: () => undefined });
  try {
    const a = await buildHistory(repo, {
      domain: 'vm-a',
      disks: [
        { name: 'vda', size: 20 * CHUNK + 4096 },
        { name: 'vdb', size: 8 * CHUNK },
      ],
      start: '2026-01-01',
      days: 90,
      fullDays: [35, 70],
      seed: 11,
    });
    const b = await buildHistory(repo, {
      domain: 'vm-b',
      disks: [{ name: 'vda', size: 12 * CHUNK }],
      start: '2026-03-22',
      days: 10,
      fullDays: [],
      seed: 12,
    });
    return { a, b };
  } finally {
    await repo.close();
  }
}

/**
 * Restores every disk of a backup through the built CLI (`pullback restore`, as a user would;
 * also 3x faster than restoreBackup under tsx, whose workers start slowly) and returns disk -> sha256.
 */
export async function restoreShas(repoDir: string, domain: string, id: string, work: string): Promise<Record<string, string>> {
  const out = join(work, `restore-${id}`);
  const r = await runCli(['restore', '--repo', repoDir, '--domain', domain, '--backup', id, '--output', out, '--format', 'raw', '--workers', '1', '--json']);
  if (r.code !== 0) throw new Error(`restore of ${id} failed (${r.code}): ${r.stderr}`);
  const disks = (JSON.parse(r.stdout) as { restore: { disks: Array<{ name: string; path: string }> } }).restore.disks;
  const shas: Record<string, string> = {};
  for (const d of disks) shas[d.name] = sha256(readFileSync(d.path));
  await rm(out, { recursive: true, force: true });
  return shas;
}

/** Every file under `dir` with its size and content hash (index.db-shm excluded: SQLite's shared memory). */
export function treeState(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const st = statSync(p);
      if (st.isDirectory()) walk(p);
      else if (!name.endsWith('-shm')) out[relative(dir, p)] = `${st.size}:${createHash('sha256').update(readFileSync(p)).digest('hex')}`;
    }
  };
  walk(dir);
  return out;
}

/** Bytes the directory occupies on disk (allocated blocks, like du). */
export function diskUsage(dir: string): number {
  let n = 0;
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const st = statSync(p);
      n += st.blocks * 512;
      if (st.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return n;
}
