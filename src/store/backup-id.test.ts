import { describe, expect, it } from 'vitest';
import { BACKUP_ID, backupTime, newBackupId } from './backup-id.js';

describe('backup ids and times', () => {
  it('ids carry the UTC second and sort by time as strings', () => {
    const a = newBackupId(new Date('2026-11-22T01:30:05.999Z'));
    expect(a).toMatch(BACKUP_ID);
    expect(a.startsWith('20261122T013005Z-')).toBe(true);
    expect(newBackupId(new Date('2026-11-22T01:30:06Z')) > a).toBe(true);
  });

  it('the clock is used while it reads later than the newest backup', () => {
    const now = new Date('2026-11-22T02:00:00Z');
    expect(backupTime(now, undefined)).toEqual({ time: now });
    expect(backupTime(now, { id: 'x', time: new Date('2026-11-21T02:00:00Z') })).toEqual({ time: now });
  });

  it('a clock reading earlier than the newest backup gives 1 ms after it, and says so', () => {
    const newest = { id: '20261123T020000Z-abcd', time: new Date('2026-11-23T02:00:00Z') };
    expect(backupTime(new Date('2026-11-22T02:00:00Z'), newest)).toEqual({ time: new Date('2026-11-23T02:00:00.001Z'), behind: newest });
    // The same millisecond is not a clock problem, but the new backup must still rank after.
    expect(backupTime(new Date(newest.time), newest)).toEqual({ time: new Date('2026-11-23T02:00:00.001Z') });
  });
});
