// Which disks of a domain a backup includes (pure), and how each is read.
//
// - Only device='disk' with a medium is backed up; cdrom/floppy/lun and empty drives are
//   skipped with a message (their content is not the guest's to lose).
// - Network and storage-pool volume disks cannot be exported by a pull backup here: skipped.
// - qcow2 on a file or block device: incremental-capable (a persistent bitmap per checkpoint).
// - Anything else (raw images): read in full in every backup, with a message; inside an
//   incremental job it gets backupmode='full' and every chunk is recorded.
import type { DomainDisk } from '../libvirt/domain-xml.js';
import { PullbackError } from '../errors.js';

export interface SelectedDisk {
  name: string;
  /** Image path (for offline export). */
  source: string;
  format: string;
  incrementalCapable: boolean;
}

export interface DiskSelection {
  selected: SelectedDisk[];
  /** Every disk of the domain that is not selected (backup='no' / checkpoint='no'). */
  excluded: string[];
  messages: string[];
}

export function selectDisks(
  domain: string,
  disks: readonly DomainDisk[],
  opts: { include?: readonly string[] | undefined; exclude?: readonly string[] | undefined },
): DiskSelection {
  const names = new Set(disks.map((d) => d.target));
  for (const n of [...(opts.include ?? []), ...(opts.exclude ?? [])]) {
    if (!names.has(n)) {
      throw new PullbackError('USAGE', `domain ${domain} has no disk ${n} (it has: ${[...names].join(', ') || 'none'})`);
    }
  }
  const selected: SelectedDisk[] = [];
  const excluded: string[] = [];
  const messages: string[] = [];
  for (const d of disks) {
    const skip = (why: string | undefined): void => {
      excluded.push(d.target);
      if (why !== undefined) messages.push(`disk ${d.target}: ${why}`);
    };
    if (opts.include !== undefined && opts.include.length > 0 && !opts.include.includes(d.target)) {
      skip(undefined);
      continue;
    }
    if (opts.exclude?.includes(d.target) === true) {
      skip('excluded');
      continue;
    }
    if (d.device !== 'disk') {
      skip(`${d.device} drive skipped (only disks are backed up)`);
      continue;
    }
    if (d.source === null) {
      skip('no medium; skipped');
      continue;
    }
    if (d.sourceType !== 'file' && d.sourceType !== 'block') {
      skip(`${d.sourceType} disk (${d.source}) skipped: pull-mode backups of ${d.sourceType} disks are not supported`);
      continue;
    }
    if (!d.backupable) {
      skip('not backupable (read-only or shareable); skipped');
      continue;
    }
    const format = d.driverType ?? 'raw';
    if (!d.incrementalCapable) {
      messages.push(`disk ${d.target}: ${format} image has no dirty bitmaps; it is read in full in every backup`);
    }
    selected.push({ name: d.target, source: d.source, format, incrementalCapable: d.incrementalCapable });
  }
  if (selected.length === 0) {
    throw new PullbackError('USAGE', `domain ${domain} has no disk to back up${messages.length > 0 ? ` (${messages.join('; ')})` : ''}`);
  }
  return { selected, excluded, messages };
}
