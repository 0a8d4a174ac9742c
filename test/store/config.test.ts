// Repository parameters: size and compression parsing, config validation, backup ids.
import { describe, expect, test } from 'vitest';
import { BACKUP_ID, newBackupId } from '../../src/store/backup-id.js';
import { makeConfig, parseCompression, parseConfig, parseSize } from '../../src/store/config.js';

describe('config', () => {
  test('sizes', () => {
    expect(parseSize('1M')).toBe(1048576);
    expect(parseSize('256K')).toBe(262144);
    expect(parseSize('256KiB')).toBe(262144);
    expect(parseSize('4mib')).toBe(4194304);
    expect(parseSize('65536')).toBe(65536);
    expect(() => parseSize('lots')).toThrow(/cannot parse size "lots"/);
    expect(() => parseSize('1.5M')).toThrow(/cannot parse size/);
  });

  test('chunk size must be a power of two from 64 KiB to 16 MiB', () => {
    expect(makeConfig({ chunkSize: 64 * 1024 }).chunkSize).toBe(65536);
    expect(makeConfig({ chunkSize: 16 * 1024 * 1024 }).chunkSize).toBe(16777216);
    expect(makeConfig({}).chunkSize).toBe(1048576);
    for (const bad of [32 * 1024, 32 * 1024 * 1024, 3 * 1024 * 1024, 0, 1.5]) {
      expect(() => makeConfig({ chunkSize: bad })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
    }
  });

  test('compression', () => {
    expect(parseCompression('zstd:3')).toBe(3);
    expect(parseCompression('zstd:19')).toBe(19);
    expect(parseCompression('zstd:-5')).toBe(-5);
    expect(parseCompression('zstd')).toBe(1);
    expect(() => parseCompression('gzip:9')).toThrow(/use zstd:LEVEL/);
    expect(() => parseCompression('zstd:99')).toThrow(/zstd level 99 is invalid/);
  });

  test('config.json validation names the file and the problem', () => {
    const good = { formatVersion: 1, chunkSize: 1048576, hash: 'blake3', compression: { algorithm: 'zstd', level: 3 } };
    expect(parseConfig(good, 'c.json')).toEqual(good);
    expect(() => parseConfig({ ...good, formatVersion: 2 }, 'c.json')).toThrow(expect.objectContaining({ code: 'REPO_VERSION' }));
    expect(() => parseConfig({ ...good, hash: 'sha1' }, 'c.json')).toThrow(/c.json is not a valid pullback repository config: unsupported hash "sha1"/);
    expect(() => parseConfig({ ...good, chunkSize: 1000 }, 'c.json')).toThrow(expect.objectContaining({ code: 'REPO_INVALID' }));
    expect(() => parseConfig([], 'c.json')).toThrow(/formatVersion missing/);
    expect(() => parseConfig(null, 'c.json')).toThrow(/not a JSON object/);
  });

  test('backup ids sort by time and fit a libvirt checkpoint name', () => {
    const a = newBackupId(new Date('2026-11-22T01:30:00.999Z'));
    const b = newBackupId(new Date('2026-11-22T01:30:01Z'));
    expect(a).toMatch(/^20261122T013000Z-[0-9a-f]{4}$/);
    expect(a).toMatch(BACKUP_ID);
    expect(a < b).toBe(true);
    expect(`pullback.${a}`).toMatch(/^[A-Za-z0-9._-]+$/);
  });
});
