// <domainbackup> documents (libvirt formatbackup.rst). Pure: no I/O.
//
// A *pull-mode* backup makes QEMU serve a point-in-time view of each included disk over NBD
// on a unix socket; the client reads it and then ends the job (domjobabort). Each included
// disk needs a *scratch* file that holds the old contents of blocks the guest overwrites
// meanwhile. A *full* backup exports every block; an *incremental* one also exports a dirty
// bitmap (exportbitmap, read as NBD meta context qemu:dirty-bitmap:NAME) of the blocks
// changed since the named checkpoint. A disk may override the backup's mode (backupmode=
// 'full' for a disk that has no bitmap, e.g. a raw image, inside an incremental backup).
import { PullbackError } from '../errors.js';
import { child, childElements, childText, el, expectRoot, parseXml, serializeXml } from './xml-tree.js';
import type { XmlElement } from './xml-tree.js';

export type BackupDiskSpec =
  | {
      name: string;
      backup: true;
      /** Path of the scratch file (libvirt creates it; must not be shared with another job). */
      scratch: string;
      /** Overrides the backup's mode for this disk (libvirt >= 7.6). */
      backupMode?: 'full' | 'incremental';
      /** With backupMode 'incremental': the checkpoint for this disk, if not the backup's. */
      incremental?: string;
      /** NBD export name; libvirt's default is the disk's target name. */
      exportName?: string;
      /** Name of the exported dirty bitmap (incremental); libvirt's default is 'backup-<target>'. */
      exportBitmap?: string;
    }
  | { name: string; backup: false };

export interface BackupSpec {
  /** Checkpoint name for an incremental backup; absent for a full backup. */
  incremental?: string;
  /** Unix socket QEMU's NBD server listens on. */
  socket: string;
  /** Every disk of the domain, included or not. */
  disks: BackupDiskSpec[];
}

export interface BackupJobDisk {
  name: string;
  backup: boolean;
  backupMode: 'full' | 'incremental' | null;
  incremental: string | null;
  /** NBD export name for this disk. */
  exportName: string | null;
  /** Dirty bitmap exported with the disk (incremental only), as in qemu:dirty-bitmap:NAME. */
  exportBitmap: string | null;
  scratch: string | null;
}

export interface BackupJobInfo {
  mode: 'pull' | 'push';
  incremental: string | null;
  server: { transport: string; socket: string | null; name: string | null; port: string | null } | null;
  disks: BackupJobDisk[];
}

/** Builds the first argument of `virsh backup-begin` for a pull-mode backup. */
export function buildBackupXml(spec: BackupSpec): string {
  if (!spec.socket.startsWith('/')) {
    throw new PullbackError('XML_INVALID', `backup socket path must be absolute, got '${spec.socket}'`);
  }
  if (!spec.disks.some((d) => d.backup)) {
    throw new PullbackError('XML_INVALID', 'a backup must include at least one disk');
  }
  const children: XmlElement[] = [];
  if (spec.incremental !== undefined) children.push(el('incremental', {}, spec.incremental));
  children.push(el('server', { transport: 'unix', socket: spec.socket }));
  children.push(el('disks', {}, spec.disks.map(diskElement)));
  return serializeXml({ prolog: [], root: el('domainbackup', { mode: 'pull' }, children) }, { indent: true });
}

function diskElement(d: BackupDiskSpec): XmlElement {
  if (!d.backup) return el('disk', { name: d.name, backup: 'no' });
  if (!d.scratch.startsWith('/')) {
    throw new PullbackError('XML_INVALID', `scratch file for disk ${d.name} must be an absolute path, got '${d.scratch}'`);
  }
  const attrs: Record<string, string> = { name: d.name, backup: 'yes', type: 'file' };
  if (d.backupMode !== undefined) attrs['backupmode'] = d.backupMode;
  if (d.incremental !== undefined) attrs['incremental'] = d.incremental;
  if (d.exportName !== undefined) attrs['exportname'] = d.exportName;
  if (d.exportBitmap !== undefined) attrs['exportbitmap'] = d.exportBitmap;
  return el('disk', attrs, [el('scratch', { file: d.scratch })]);
}

/** Parses `virsh backup-dumpxml` output of a running job (or a backup XML we built). */
export function parseBackupXml(xml: string): BackupJobInfo {
  const what = 'backup job XML';
  const root = expectRoot(parseXml(xml, what), 'domainbackup', what);
  const mode = root.attrs['mode'] ?? 'push';
  if (mode !== 'pull' && mode !== 'push') throw new PullbackError('XML_INVALID', `${what}: unknown mode='${mode}'`);
  const server = child(root, 'server');
  const disks = child(root, 'disks');
  return {
    mode,
    incremental: childText(root, 'incremental') ?? null,
    server:
      server === undefined
        ? null
        : {
            transport: server.attrs['transport'] ?? 'tcp',
            socket: server.attrs['socket'] ?? null,
            name: server.attrs['name'] ?? null,
            port: server.attrs['port'] ?? null,
          },
    disks: disks === undefined ? [] : childElements(disks, 'disk').map(parseDisk),
  };
}

function parseDisk(d: XmlElement): BackupJobDisk {
  const name = d.attrs['name'];
  if (name === undefined) throw new PullbackError('XML_INVALID', 'backup job XML: a <disk> has no name');
  const mode = d.attrs['backupmode'];
  if (mode !== undefined && mode !== 'full' && mode !== 'incremental') {
    throw new PullbackError('XML_INVALID', `backup job XML, disk ${name}: unknown backupmode='${mode}'`);
  }
  const scratch = child(d, 'scratch');
  return {
    name,
    backup: (d.attrs['backup'] ?? 'yes') === 'yes',
    backupMode: mode ?? null,
    incremental: d.attrs['incremental'] ?? null,
    exportName: d.attrs['exportname'] ?? null,
    exportBitmap: d.attrs['exportbitmap'] ?? null,
    scratch: scratch === undefined ? null : (scratch.attrs['file'] ?? scratch.attrs['dev'] ?? null),
  };
}
