// `restore --define NEWNAME`: a new libvirt domain from the backed-up domain XML, beside the
// original and independent of it. The XML is rewritten by transformDomainForRestore
// (src/libvirt/restore-xml.ts): the new name, no <uuid> and no <mac> (libvirt generates
// fresh ones), and every restored disk pointing at its restored image and format. The
// original domain is never looked at or changed; a domain that already has NEWNAME is refused.
// Disks of the XML that the backup does not hold (not backed up) are dropped from the new
// domain and reported; a backed-up disk that was not restored is an error (the new domain
// would otherwise write into the original's image).
import { PullbackError } from '../errors.js';
import { parseDomainXml } from '../libvirt/domain-xml.js';
import type { CallOptions, Libvirt } from '../libvirt/libvirt.js';
import { transformDomainForRestore, type RestoredDisk as XmlDisk } from '../libvirt/restore-xml.js';
import type { BackupRecord } from '../store/index.js';
import type { RestoredDisk } from './restore.js';

export interface DefineResult {
  name: string;
  /** The XML handed to libvirt. */
  xml: string;
  /** Disks of the backed-up XML left out because the backup does not hold them. */
  droppedDisks: string[];
}

/** Fails fast, before any restore work, when NEWNAME is taken or there is no XML to define. */
export async function checkDefinable(libvirt: Libvirt, record: BackupRecord, newName: string, opts: CallOptions = {}): Promise<void> {
  if (record.domainXml === undefined || record.domainXml.trim() === '') {
    throw new PullbackError('RESTORE_FAILED', `backup ${record.id} of domain ${record.domain} holds no domain XML, so --define cannot make a domain from it`);
  }
  const existing = await libvirt.listDomains(opts);
  if (existing.includes(newName)) {
    throw new PullbackError(
      'OUTPUT_EXISTS',
      `a domain named ${newName} already exists at ${libvirt.uri}; pick another name for --define (the existing domain was not touched)`,
    );
  }
}

export async function defineRestoredDomain(
  libvirt: Libvirt,
  record: BackupRecord,
  newName: string,
  restored: readonly RestoredDisk[],
  opts: CallOptions = {},
): Promise<DefineResult> {
  await checkDefinable(libvirt, record, newName, opts);
  const source = record.domainXml as string;
  const backedUp = new Set(record.disks.map((d) => d.name));
  const disks: Record<string, XmlDisk | 'remove'> = {};
  for (const d of restored) disks[d.name] = { path: d.path, format: d.format };
  const droppedDisks: string[] = [];
  for (const d of parseDomainXml(source).disks) {
    if (disks[d.target] !== undefined || backedUp.has(d.target)) continue;
    if (d.device === 'disk' && !d.readonly) {
      disks[d.target] = 'remove';
      droppedDisks.push(d.target);
    }
  }
  const notRestored = [...backedUp].filter((n) => !restored.some((d) => d.name === n));
  if (notRestored.length > 0) {
    throw new PullbackError(
      'USAGE',
      `--define needs every backed-up disk restored, but ${notRestored.join(', ')} ${notRestored.length === 1 ? 'was' : 'were'} not; restore without --disk`,
    );
  }
  const xml = transformDomainForRestore(source, { name: newName, disks });
  await libvirt.define(xml, opts);
  return { name: newName, xml, droppedDisks };
}
