// The invariants checked after every step of a fidelity run:
// 1. `pullback check` passes (exit 0);
// 2. `pullback list` holds every retained backup of the model as complete, no backup the
//    model removed, and no complete backup the model does not know;
// 3. sampled retained backups (always each domain's newest) restore byte-identical to their
//    snapshots, in raw or qcow2 (converted back to raw with qemu-img to compare), or disk by
//    disk into a qemu-nbd export of a raw file full of random bytes (every zero range must be
//    written over them).
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { sha256File } from '../helpers/domain.js';
import type { Model, ModelBackup } from './model.js';
import { brief, type ListedBackup, type Pullback } from './pb.js';
import type { Rng } from './rng.js';
import { firstDifference } from './snapshot.js';

const execFileP = promisify(execFile);

export class FidelityViolation extends Error {}

export interface VerifyStats {
  restores: number;
  nbdRestores: number;
  disksCompared: number;
}

export async function checkRepository(pb: Pullback): Promise<void> {
  const r = await pb.check();
  if (r.code !== 0) throw new FidelityViolation(`pullback check failed: ${brief(r)}\n${r.stdout.trim()}`);
}

/** Compares the listing with the model; returns the listing. */
export async function checkListing(pb: Pullback, model: Model): Promise<ListedBackup[]> {
  const listed = await pb.list();
  const byId = new Map(listed.map((b) => [b.id, b]));
  const problems: string[] = [];
  for (const b of model.retained.values()) {
    const l = byId.get(b.id);
    if (l === undefined) problems.push(`backup ${b.id} of ${b.domain} (step ${b.step}, ${b.how}) disappeared`);
    else if (l.status !== 'complete') problems.push(`backup ${b.id} of ${b.domain} is ${l.status}, was complete`);
  }
  for (const l of listed) {
    if (l.status !== 'complete' || model.retained.has(l.id)) continue;
    const why = model.removed.get(l.id);
    problems.push(why === undefined ? `unknown complete backup ${l.id} of ${l.domain} appeared` : `backup ${l.id} was removed (${why}) but is listed again`);
  }
  if (problems.length > 0) throw new FidelityViolation(`listing does not match the model:\n  ${problems.join('\n  ')}`);
  return listed;
}

/** Restores `b` through the CLI and compares every disk with its snapshot. */
export async function checkRestore(pb: Pullback, b: ModelBackup, dir: string, format: 'raw' | 'qcow2', stats: VerifyStats): Promise<void> {
  const out = join(dir, `${b.id}-${format}`);
  await rm(out, { recursive: true, force: true });
  try {
    const r = await pb.restore(b.domain, b.id, out, format);
    if (r.code !== 0) throw new FidelityViolation(`restore of backup ${b.id} (${b.domain}, step ${b.step}, ${b.how}) failed: ${brief(r)}`);
    stats.restores++;
    for (const d of b.disks) {
      let raw = join(out, `${d.target}.raw`);
      if (format === 'qcow2') {
        const img = join(out, `${d.target}.qcow2`);
        raw = join(out, `${d.target}.converted.raw`);
        await execFileP('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', img, raw]);
      }
      const sha = await sha256File(raw);
      stats.disksCompared++;
      if (sha !== d.sha256) {
        throw new FidelityViolation(
          `backup ${b.id} (${b.domain}, step ${b.step}, ${b.how}) disk ${d.target} restores wrong data (${format}): ` +
            `${await firstDifference(d.path, raw)}`,
        );
      }
    }
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}

/** Restores each disk of `b` into a qemu-nbd export of a file full of random bytes; compares the file. */
export async function checkRestoreToNbd(pb: Pullback, b: ModelBackup, dir: string, stats: VerifyStats): Promise<void> {
  for (const d of b.disks) {
    const file = join(dir, `${b.id}-${d.target}.export.raw`);
    const sock = join(dir, `${b.id}-${d.target}.export.sock`);
    const pidFile = join(dir, `${b.id}-${d.target}.export.pid`);
    await writeFile(file, randomBytes(d.size));
    await execFileP('qemu-nbd', ['-t', '-f', 'raw', '--fork', '--pid-file', pidFile, '-k', sock, file]);
    const pid = Number((await readFile(pidFile, 'utf8')).trim());
    try {
      const r = await pb.restoreToNbd(b.domain, b.id, d.target, `nbd+unix:///?socket=${sock}`);
      if (r.code !== 0) throw new FidelityViolation(`restore of backup ${b.id} (${b.domain}, step ${b.step}, ${b.how}) disk ${d.target} into an NBD export failed: ${brief(r)}`);
    } finally {
      await stopPid(pid);
    }
    try {
      stats.disksCompared++;
      if ((await sha256File(file)) !== d.sha256) {
        throw new FidelityViolation(
          `backup ${b.id} (${b.domain}, step ${b.step}, ${b.how}) disk ${d.target} restores wrong data into an NBD export: ${await firstDifference(d.path, file)}`,
        );
      }
    } finally {
      await rm(file, { force: true });
    }
  }
  stats.restores++;
  stats.nbdRestores++;
}

async function stopPid(pid: number): Promise<void> {
  process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 500; i++) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  process.kill(pid, 'SIGKILL');
}

/** Which retained backups to restore now: each domain's newest, plus `extra` others at random. */
export function restoreSample(rng: Rng, model: Model, domains: readonly string[], extra: number): ModelBackup[] {
  const newest = domains.flatMap((d) => {
    const n = model.newest(d);
    return n === undefined ? [] : [n];
  });
  const others = [...model.retained.values()].filter((b) => !newest.includes(b));
  return [...newest, ...rng.sample(others, extra)];
}
