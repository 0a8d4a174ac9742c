// Level decision (pure): full or incremental, and why.
//
// An incremental is only sound when the base is the newest *complete* backup of the domain
// in this repository, libvirt still has that backup's checkpoint (its bitmap records every
// write since), and the disk set and sizes are unchanged. Anything else means a full.

export type RequestedLevel = 'auto' | 'full' | 'incremental';

export interface DecideInput {
  requested: RequestedLevel;
  /** The newest complete backup of the domain in the repository, if any. */
  base?: { id: string; checkpoint: string; disks: ReadonlyArray<{ name: string; size: number }> } | undefined;
  /** Disks to back up now, with their current virtual sizes. */
  disks: ReadonlyArray<{ name: string; size: number; incrementalCapable: boolean }>;
  /** Names of the checkpoints libvirt knows for the domain now. */
  checkpoints: ReadonlySet<string>;
  /** A reason the base checkpoint's bitmap cannot be used, when one was found. */
  bitmapProblem?: string | undefined;
}

export type Decision =
  | { level: 'full'; reason: string }
  | { level: 'incremental'; reason: string; parentId: string; sinceCheckpoint: string }
  | { level: 'error'; reason: string };

export function decideLevel(input: DecideInput): Decision {
  const { requested, base } = input;
  if (requested === 'full') return { level: 'full', reason: 'full backup requested' };
  const why = whyNotIncremental(input);
  if (why === undefined && base !== undefined) {
    return {
      level: 'incremental',
      reason: `changes since backup ${base.id} (checkpoint ${base.checkpoint})`,
      parentId: base.id,
      sinceCheckpoint: base.checkpoint,
    };
  }
  const reason = why ?? 'no base backup';
  if (requested === 'incremental') {
    return { level: 'error', reason: `an incremental backup is not possible: ${reason}; run with --level full or auto` };
  }
  return { level: 'full', reason };
}

function whyNotIncremental(input: DecideInput): string | undefined {
  const { base, disks, checkpoints } = input;
  if (base === undefined) return 'no complete backup of this domain in the repository';
  // A backup of a shut-off domain that had no valid checkpoint records none (offline.ts):
  // say so, rather than call the empty name missing.
  if (base.checkpoint === '') return `backup ${base.id} has no checkpoint to continue from (taken while the domain was shut off, with no valid checkpoint)`;
  if (!checkpoints.has(base.checkpoint)) {
    return `checkpoint ${base.checkpoint} of backup ${base.id} is missing from libvirt`;
  }
  if (input.bitmapProblem !== undefined) return input.bitmapProblem;
  const before = new Map(base.disks.map((d) => [d.name, d.size]));
  const now = new Map(disks.map((d) => [d.name, d.size]));
  const added = [...now.keys()].filter((n) => !before.has(n));
  const removed = [...before.keys()].filter((n) => !now.has(n));
  if (added.length > 0 || removed.length > 0) {
    const parts = [];
    if (added.length > 0) parts.push(`added ${added.join(', ')}`);
    if (removed.length > 0) parts.push(`removed ${removed.join(', ')}`);
    return `the disk set changed since backup ${base.id} (${parts.join('; ')})`;
  }
  for (const d of disks) {
    const was = before.get(d.name);
    if (was !== d.size) return `disk ${d.name} changed size since backup ${base.id} (${was} -> ${d.size} bytes)`;
  }
  if (!disks.some((d) => d.incrementalCapable)) return 'no disk of the domain can carry a dirty bitmap (none is qcow2)';
  return undefined;
}
