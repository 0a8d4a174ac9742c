// Backup ids: `YYYYMMDDTHHMMSSZ-xxxx` (UTC time, 4 random hex digits). They sort by time as
// strings and contain only [0-9A-Z-], so `pullback.<id>` is a valid libvirt checkpoint name.
//
// A backup's recorded time orders it among its domain's backups ("latest", chains, retention).
// It is the clock's reading, except when the clock reads earlier than the domain's newest
// backup (a clock stepped back, a host clock fixed after running ahead): then it is 1 ms after
// that backup, so a new backup is never ranked older than the backups it follows. PBS refuses
// such a backup instead; for a nightly job that would mean no backups until the clock catches up.
import { randomBytes } from 'node:crypto';

export function newBackupId(time: Date): string {
  const iso = time.toISOString(); // 2026-11-22T01:30:00.000Z
  const stamp = `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}T${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}Z`;
  return `${stamp}-${randomBytes(2).toString('hex')}`;
}

export const BACKUP_ID = /^\d{8}T\d{6}Z-[0-9a-f]{4}$/;

/**
 * The time to record for a new backup taken at `now`, given the domain's newest backup (any
 * status). `behind` is set when the clock read earlier than that backup.
 */
export function backupTime(now: Date, newest: { id: string; time: Date } | undefined): { time: Date; behind?: { id: string; time: Date } } {
  if (newest === undefined || now.getTime() > newest.time.getTime()) return { time: now };
  const time = new Date(newest.time.getTime() + 1);
  return now.getTime() < newest.time.getTime() ? { time, behind: newest } : { time };
}
