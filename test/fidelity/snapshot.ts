// Frozen copies of a test domain's disk references: what each disk held at one instant.
//
// Terms: a *disk snapshot* is a sparse copy of one disk's reference file (test/helpers/
// domain.ts) plus its sha256 and size; a *domain snapshot* is one per disk of the domain.
// The driver takes one right before each backup starts (the helper only changes a reference
// when the driver writes, and the driver writes nothing between the snapshot and the
// instant the backup job begins), so a snapshot is exactly the content the backup must
// restore to. Copies are kept (not just hashes) so a mismatch can name the first differing
// byte.
import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { sha256File, type TestDomain } from '../helpers/domain.js';

const execFileP = promisify(execFile);

export interface DiskSnapshot {
  target: string;
  path: string;
  sha256: string;
  size: number;
}

export async function snapshotDomain(dom: TestDomain, dir: string, label: string): Promise<DiskSnapshot[]> {
  const out: DiskSnapshot[] = [];
  for (const d of dom.disks) {
    const path = join(dir, `${label}-${dom.name}-${d.target}.raw`);
    await execFileP('cp', ['--sparse=always', dom.reference(d.target), path]);
    out.push({ target: d.target, path, sha256: await sha256File(path), size: d.size });
  }
  return out;
}

export async function dropSnapshot(disks: readonly DiskSnapshot[]): Promise<void> {
  for (const d of disks) await rm(d.path, { force: true });
}

/** First byte offset at which two files differ, or a note on their sizes; for failure messages. */
export async function firstDifference(a: string, b: string): Promise<string> {
  try {
    await execFileP('cmp', [a, b]);
    return 'identical';
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string };
    return `${(err.stdout ?? '').trim()} ${(err.stderr ?? '').trim()}`.trim();
  }
}
