// Backup ids: `YYYYMMDDTHHMMSSZ-xxxx` (UTC time, 4 random hex digits). They sort by time as
// strings and contain only [0-9A-Z-], so `pullback.<id>` is a valid libvirt checkpoint name.
import { randomBytes } from 'node:crypto';

export function newBackupId(time: Date): string {
  const iso = time.toISOString(); // 2026-11-22T01:30:00.000Z
  const stamp = `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}T${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}Z`;
  return `${stamp}-${randomBytes(2).toString('hex')}`;
}

export const BACKUP_ID = /^\d{8}T\d{6}Z-[0-9a-f]{4}$/;
