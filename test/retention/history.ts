// A simulated backup history written through the real store with chosen timestamps, and a
// model of what each backup must restore to (sha256 per disk).
//
// Terms: the *model* is one Buffer per disk, the guest's content now. Each day mutates the
// model (new data, partial writes, zeros over data, duplicates of other chunks, the short
// last chunk) and records a backup at 02:00 UTC: a full (on the days listed in `fullDays`)
// records every allocated chunk, an incremental only the chunks that day changed.
// `contentSha` reads a backup back in-process (resolve + readChunk) for cheap checks of
// every backup; tests also restore through restoreBackup for the real path.
import { createHash } from 'node:crypto';
import type { Repository } from '../../src/store/index.js';
import { seededBytes, xorshift } from '../helpers/seeded-random.js';

export interface HistoryDisk {
  name: string;
  size: number;
}

export interface HistoryBackup {
  id: string;
  /** YYYY-MM-DD (UTC) of the backup. */
  day: string;
  level: 'full' | 'incremental';
  /** disk -> sha256 of the guest content at the backup. */
  sha: Record<string, string>;
}

export interface HistoryOptions {
  domain: string;
  disks: HistoryDisk[];
  /** First day, YYYY-MM-DD; one backup a day at 02:00 UTC. */
  start: string;
  days: number;
  /** Day numbers (0-based) that get a full; day 0 always does. */
  fullDays: number[];
  seed: number;
}

export const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

export async function buildHistory(repo: Repository, opts: HistoryOptions): Promise<HistoryBackup[]> {
  const cs = repo.config.chunkSize;
  const rand = xorshift(opts.seed);
  const pick = (n: number): number => Math.floor(rand() * n);
  let serial = opts.seed * 100_000;
  const models = new Map(opts.disks.map((d) => [d.name, Buffer.alloc(d.size)]));
  const allocated = new Map(opts.disks.map((d) => [d.name, new Set<number>()]));
  const lengthOf = (d: HistoryDisk, i: number): number => Math.min(cs, d.size - i * cs);
  const out: HistoryBackup[] = [];
  let parent: string | null = null;
  const t0 = Date.parse(`${opts.start}T02:00:00Z`);

  for (let day = 0; day < opts.days; day++) {
    const changed = new Map<string, Set<number>>();
    for (const d of opts.disks) {
      const model = models.get(d.name) as Buffer;
      const n = Math.ceil(d.size / cs);
      const set = new Set<number>();
      const touches = day === 0 ? Math.ceil(n * 0.6) : 1 + pick(3);
      for (let t = 0; t < touches; t++) {
        const i = day > 0 && t === 0 && day % 5 === 0 ? n - 1 : pick(n);
        const len = lengthOf(d, i);
        const base = i * cs;
        const what = day === 0 ? 0 : pick(5);
        if (what === 0 || what === 4) {
          seededBytes(serial++, len).copy(model, base);
        } else if (what === 1) {
          const off = pick(len);
          seededBytes(serial++, 4096).copy(model, base + off, 0, Math.min(4096, len - off));
        } else if (what === 2) {
          model.fill(0, base, base + len);
        } else {
          const j = pick(n - 1);
          if (j !== i) model.copy(model, base, j * cs, j * cs + len);
        }
        set.add(i);
        allocated.get(d.name)?.add(i);
      }
      changed.set(d.name, set);
    }
    const full = day === 0 || opts.fullDays.includes(day);
    const time = new Date(t0 + day * 86_400_000);
    const w = await repo.beginBackup({
      domain: opts.domain,
      level: full ? 'full' : 'incremental',
      parentId: full ? null : parent,
      checkpoint: `pullback.day${day}`,
      disks: opts.disks,
      time,
    });
    for (const d of opts.disks) {
      const model = models.get(d.name) as Buffer;
      const which = full ? (allocated.get(d.name) as Set<number>) : (changed.get(d.name) as Set<number>);
      for (const i of [...which].sort((a, b) => a - b)) {
        const chunk = model.subarray(i * cs, i * cs + lengthOf(d, i));
        if (chunk.every((b) => b === 0) && i % 2 === 0) w.zero(d.name, i);
        else await w.ingest(d.name, i, chunk);
      }
    }
    const rec = await w.complete();
    parent = rec.id;
    const sha: Record<string, string> = {};
    for (const [name, m] of models) sha[name] = sha256(m);
    out.push({ id: rec.id, day: time.toISOString().slice(0, 10), level: full ? 'full' : 'incremental', sha });
  }
  return out;
}

/** sha256 of a disk as the repository resolves it at `backupId` (read in-process). */
export async function contentSha(repo: Repository, backupId: string, disk: string): Promise<string> {
  const map = repo.resolveChunkMap(backupId, disk);
  const rec = repo.getBackup(backupId);
  const size = rec?.disks.find((d) => d.name === disk)?.size ?? 0;
  const cs = repo.config.chunkSize;
  const h = createHash('sha256');
  for (let i = 0; i * cs < size; i++) {
    const len = Math.min(cs, size - i * cs);
    const e = map.get(i);
    h.update(e.kind === 'data' ? await repo.readChunk(e.digest) : Buffer.alloc(len));
  }
  return h.digest('hex');
}
