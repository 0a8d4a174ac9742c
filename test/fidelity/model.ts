// The reference model of a fidelity run: which backups must exist and what each must restore.
//
// Terms:
// - *retained*: a backup the CLI reported complete (or one a killed run completed, adopted
//   right after the kill) that no prune has removed; it must stay listed as complete and
//   restore byte-identical to its snapshot, forever.
// - *removed*: taken out by a prune whose report (or, for a killed prune, whose policy)
//   allowed it; recorded with the step, so a later reappearance is an error too.
// - *candidate*: the snapshot taken before a backup that was killed: if that backup turns out
//   complete anyway, it is adopted with this snapshot.
import type { DiskSnapshot } from './snapshot.js';
import { dropSnapshot } from './snapshot.js';

export interface ModelBackup {
  id: string;
  domain: string;
  /** Step at which it was taken, and how (for the log). */
  step: number;
  how: string;
  /** Order of creation: backups of one domain never overlap in a run, so this is time order. */
  seq: number;
  disks: DiskSnapshot[];
}

export class Model {
  readonly retained = new Map<string, ModelBackup>();
  readonly removed = new Map<string, string>();
  private nextSeq = 0;

  seq(): number {
    return this.nextSeq++;
  }

  add(b: ModelBackup): void {
    if (this.retained.has(b.id) || this.removed.has(b.id)) throw new Error(`backup id ${b.id} reported twice`);
    this.retained.set(b.id, b);
  }

  async remove(id: string, why: string): Promise<void> {
    const b = this.retained.get(id);
    if (b === undefined) return;
    this.retained.delete(id);
    this.removed.set(id, why);
    await dropSnapshot(b.disks);
  }

  /** Retained backups of one domain, oldest first. */
  ofDomain(domain: string): ModelBackup[] {
    return [...this.retained.values()].filter((b) => b.domain === domain).sort((a, b) => a.seq - b.seq);
  }

  newest(domain: string): ModelBackup | undefined {
    return this.ofDomain(domain).pop();
  }
}
