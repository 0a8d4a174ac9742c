import { describe, expect, it } from 'vitest';
import { backupIdFromSocket } from './job-dir.js';

describe('backupIdFromSocket', () => {
  it('finds the backup id in a pullback job socket path', () => {
    expect(backupIdFromSocket('/var/tmp/pullback/pullback-20261122T013000Z-3f9a/nbd.sock')).toBe('20261122T013000Z-3f9a');
  });
  it('ignores sockets of other tools', () => {
    expect(backupIdFromSocket('/var/tmp/virtnbdbackup.123/sock')).toBeUndefined();
    expect(backupIdFromSocket('/tmp/pullback-notanid/nbd.sock')).toBeUndefined();
    expect(backupIdFromSocket(null)).toBeUndefined();
  });
});
