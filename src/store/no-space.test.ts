import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PullbackError } from '../errors.js';
import { translateDbError } from './index-db.js';
import { filesystemFull, noSpaceFromErrno, noSpaceFromSqlite } from './no-space.js';

const err = (code: string): Error => Object.assign(new Error(code), { code });

describe('telling a full filesystem from other failures', () => {
  it('ENOSPC and EDQUOT are REPO_FULL naming the repository and what failed; other errnos are not', () => {
    for (const code of ['ENOSPC', 'EDQUOT']) {
      const e = noSpaceFromErrno(err(code), '/srv/repo', 'writing chunk storage failed');
      expect(e).toBeInstanceOf(PullbackError);
      expect(e?.code).toBe('REPO_FULL');
      expect(e?.message).toMatch(/^writing chunk storage failed: no space left on the filesystem of repository \/srv\/repo; /);
      expect((e?.cause as Error).message).toBe(code);
    }
    expect(noSpaceFromErrno(err('EIO'), '/srv/repo', 'x')).toBeUndefined();
    expect(noSpaceFromErrno(null, '/srv/repo', 'x')).toBeUndefined();
  });

  it('SQLITE_FULL is REPO_FULL; an SQLite I/O error is only when the filesystem is really full', () => {
    expect(noSpaceFromSqlite(err('SQLITE_FULL'), '/srv/repo/index.db')?.message).toMatch(
      /^the index database \/srv\/repo\/index\.db could not be written: no space left on the filesystem of repository \/srv\/repo;/,
    );
    // tmpdir() has room: an I/O error there is something else
    expect(filesystemFull(tmpdir())).toBe(false);
    expect(noSpaceFromSqlite(err('SQLITE_IOERR_SHMSIZE'), join(tmpdir(), 'index.db'))).toBeUndefined();
    expect(noSpaceFromSqlite(err('SQLITE_CORRUPT'), '/srv/repo/index.db')).toBeUndefined();
  });

  it('translateDbError: full before corrupt, and corrupt still says to rebuild', () => {
    expect((translateDbError(err('SQLITE_FULL'), '/srv/repo/index.db') as PullbackError).code).toBe('REPO_FULL');
    const corrupt = translateDbError(err('SQLITE_CORRUPT'), '/srv/repo/index.db') as PullbackError;
    expect(corrupt.code).toBe('REPO_CORRUPT');
    expect(corrupt.message).toContain('repair --rebuild-index');
  });
});
