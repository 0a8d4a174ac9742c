// The pure and small parts of the nightly run: config parsing and its errors (the example
// file included), the level policy, domain selection globs, the metrics text, the run lock.
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { isPullbackError } from '../../src/errors.js';
import { loadRunConfig, parseRunConfig } from '../../src/retention/config.js';
import { metricsText, writeMetricsFile } from '../../src/retention/metrics.js';
import { matchesGlob, selectDomains } from '../../src/retention/run-domains.js';
import { chooseLevel } from '../../src/retention/run-level.js';
import { acquireRunLock } from '../../src/retention/run-lock.js';

const EXAMPLE = new URL('../../examples/pullback.toml', import.meta.url).pathname;
const BASE = 'repository = "/r"\n[domains]\nnames = ["a"]\n[retention]\nkeep_daily = 7\n';

function configError(text: string): string {
  try {
    parseRunConfig(text, '/etc/pullback/p.toml');
  } catch (e) {
    expect(isPullbackError(e, 'CONFIG_INVALID'), String(e)).toBe(true);
    return (e as Error).message;
  }
  throw new Error('no error');
}

describe('config', () => {
  test('the example file in the repository is valid and means what it says', async () => {
    const c = await loadRunConfig(EXAMPLE);
    expect(c).toMatchObject({
      repository: '/var/backups/pullback',
      libvirtUri: 'qemu:///system',
      concurrency: 2,
      lockWaitSeconds: 3600,
      metricsFile: '/var/lib/prometheus/node-exporter/pullback.prom',
      domains: { kind: 'names', names: ['web', 'db'] },
      excludeDisks: { db: ['vdc'] },
      level: { fullEveryDays: 30, fullAfterIncrementals: 29 },
      retention: { counts: { keepDaily: 7, keepWeekly: 4, keepMonthly: 6 }, timeZone: 'UTC' },
    });
  });

  test('defaults, all = true with globs, keep_within, relative paths', () => {
    const c = parseRunConfig(
      'repository = "repo"\nmetrics_file = "m/x.prom"\n[domains]\nall = true\nexclude = ["test-*"]\n[retention]\nkeep_within = "1w2d"\ntime_zone = "local"\n',
      '/etc/pullback/p.toml',
    );
    expect(c.repository).toBe('/etc/pullback/repo');
    expect(c.metricsFile).toBe('/etc/pullback/m/x.prom');
    expect(c.concurrency).toBe(1);
    expect(c.lockWaitSeconds).toBe(600);
    expect(c.scratchKeepFreeBytes).toBeUndefined();
    expect(parseRunConfig(`scratch_keep_free_mib = 512\n${BASE}`, '/etc/pullback/p.toml').scratchKeepFreeBytes).toBe(512 * 1024 * 1024);
    expect(c.domains).toEqual({ kind: 'all', include: ['*'], exclude: ['test-*'] });
    expect(c.retention).toEqual({ counts: {}, keepWithin: { years: 0, months: 0, weeks: 1, days: 2, hours: 0 }, timeZone: 'local' });
  });

  const bad: Array<[string, string, RegExp]> = [
    ['unknown top-level key', `concurency = 2\n${BASE}`, /config \/etc\/pullback\/p.toml: concurency: unknown key \(known keys: repository, .*concurrency/],
    ['unknown key in a table', BASE.replace('keep_daily', 'keep_dayly'), /retention.keep_dayly: unknown key \(known keys of \[retention\]: keep_last, /],
    ['wrong type', `concurrency = "2"\n${BASE}`, /concurrency: must be a whole number from 1 to 64, not string "2"/],
    ['out of range', `concurrency = 0\n${BASE}`, /concurrency: must be a whole number from 1 to 64, not number 0/],
    ['fraction', BASE.replace('7', '7.5'), /retention.keep_daily: must be a whole number from 0 to 1000000, not number 7.5/],
    ['missing repository', BASE.replace('repository = "/r"\n', ''), /repository: is required \(a string\)/],
    ['missing domains', 'repository = "/r"\n[retention]\nkeep_daily = 1\n', /domains: is required \(a table\)/],
    ['names and all', BASE.replace('names = ["a"]', 'names = ["a"]\nall = true'), /domains: give either names = \[...\] or all = true, not both/],
    ['include without all', BASE.replace('names = ["a"]', 'names = ["a"]\ninclude = ["x"]'), /domains.include: only applies with all = true/],
    ['a name not a string', BASE.replace('["a"]', '["a", 3]'), /domains.names\[1\]: must be a non-empty string, not number 3/],
    ['exclude_disks not a list', `${BASE.replace('[retention]', '[domains.exclude_disks]\na = "vdb"\n[retention]')}`, /domains.exclude_disks.a: must be a list of strings, not string "vdb"/],
    ['empty retention', BASE.replace('keep_daily = 7', 'keep_daily = 0'), /retention: has no rule/],
    ['missing retention', 'repository = "/r"\n[domains]\nnames = ["a"]\n', /retention: is required \(a table\)/],
    ['bad duration', BASE.replace('keep_daily = 7', 'keep_within = "90min"'), /retention.keep_within: invalid duration "90min"/],
    ['bad time zone', `${BASE}time_zone = "CET"\n`, /retention.time_zone: must be "UTC" or "local", not string "CET"/],
    ['scratch_keep_free_mib out of range', `scratch_keep_free_mib = -1\n${BASE}`, /scratch_keep_free_mib: must be a whole number from 0 to 1048576, not number -1/],
    ['level out of range', `${BASE}[level]\nfull_every_days = 0\n`, /level.full_every_days: must be a whole number from 1 to 36500/],
    ['TOML syntax', 'repository = \n', /config \/etc\/pullback\/p.toml: line 1, column \d+: /],
  ];
  test.each(bad)('%s is an error naming the key', (_name, text, re) => {
    expect(configError(text)).toMatch(re);
  });

  test('a missing file says so and points at the example', async () => {
    await expect(loadRunConfig('/nonexistent/pullback.toml')).rejects.toThrow(/cannot read config \/nonexistent\/pullback.toml \(ENOENT\): see examples\/pullback.toml/);
  });
});

describe('level policy', () => {
  const day = (d: number): Date => new Date(Date.UTC(2026, 0, d, 2));
  const chain = (n: number, start = 1): Array<{ id: string; time: Date; level: 'full' | 'incremental' }> =>
    Array.from({ length: n }, (_, i) => ({ id: `b${i}`, time: day(start + i), level: i === 0 ? ('full' as const) : ('incremental' as const) }));
  test.each([
    ['no backup yet', [], {}, 1, 'auto', 'no previous backup'],
    ['no rule', chain(40), {}, 41, 'auto', 'chain of 40 backup(s) since b0'],
    ['chain younger than full_every_days', chain(6), { fullEveryDays: 7 }, 6.9, 'auto', 'chain of 6'],
    ['full_every_days reached', chain(7), { fullEveryDays: 7 }, 8, 'full', "the chain's full b0 is 7 day(s) old (full_every_days = 7)"],
    ['full_after_incrementals reached', chain(4), { fullAfterIncrementals: 3 }, 5, 'full', 'the chain has 3 incremental(s) (full_after_incrementals = 3)'],
    ['full_after_incrementals not reached', chain(3), { fullAfterIncrementals: 3 }, 4, 'auto', 'chain of 3'],
    ['full_after_incrementals = 0: always full', chain(1), { fullAfterIncrementals: 0 }, 2, 'full', 'the chain has 0 incremental(s)'],
  ] as const)('%s', (_n, c, policy, nowDay, level, reason) => {
    const now = new Date(Date.UTC(2026, 0, 1, 2) + (nowDay - 1) * 86_400_000);
    const got = chooseLevel(c, policy, now);
    expect(got.level).toBe(level);
    expect(got.reason).toContain(reason);
  });
});

describe('domain selection', () => {
  test.each([
    ['web-1', 'web-*', true],
    ['web-1', 'web-?', true],
    ['web-10', 'web-?', false],
    ['db', 'web-*', false],
    ['vm.a', 'vm.a', true],
    ['vmxa', 'vm.a', false],
    ['b2', '[abc]2', true],
    ['d2', '[a-c]2', false],
    ['d2', '[!a-c]2', true],
    ['x(1)', 'x(1)', true],
  ] as const)('%s ~ %s: %s', (name, glob, hit) => {
    expect(matchesGlob(name, glob)).toBe(hit);
  });
  test('all = true: include minus exclude, sorted; names: as listed, even unknown ones', () => {
    const known = ['web-2', 'test-web', 'db', 'web-1', 'scratch'];
    expect(selectDomains({ kind: 'all', include: ['web-*', 'db', 'test-*'], exclude: ['test-*'] }, known)).toEqual(['db', 'web-1', 'web-2']);
    expect(selectDomains({ kind: 'names', names: ['zz', 'db'] }, known)).toEqual(['zz', 'db']);
  });
});

describe('metrics', () => {
  let work: string;
  beforeEach(async () => {
    work = await mkdtemp(join(tmpdir(), 'pullback-metrics-'));
  });
  afterEach(async () => {
    await rm(work, { recursive: true, force: true });
  });

  test('text exposition format, escaped labels, a failed domain without a success', async () => {
    const m = {
      started: new Date('2026-03-31T02:00:00Z'),
      seconds: 12.5,
      success: false,
      pruneRemoved: 3,
      gcFreedBytes: 1000,
      domains: [
        { domain: 'web', lastSuccess: new Date('2026-03-31T02:00:01Z'), success: true, seconds: 10.25, bytesRead: 4096, bytesStored: 100 },
        { domain: 'odd"name\\x', success: false, seconds: 0.5, bytesRead: 0, bytesStored: 0 },
      ],
    };
    const text = metricsText(m);
    expect(text).toContain('# TYPE pullback_last_success_timestamp_seconds gauge\npullback_last_success_timestamp_seconds{domain="web"} 1774922401\n# HELP');
    expect(text).not.toContain('pullback_last_success_timestamp_seconds{domain="odd');
    expect(text).toContain('pullback_last_run_success{domain="odd\\"name\\\\x"} 0');
    expect(text).toContain('pullback_duration_seconds{domain="web"} 10.250');
    expect(text).toContain('pullback_bytes_read{domain="web"} 4096');
    expect(text).toContain('pullback_bytes_stored{domain="web"} 100');
    expect(text).toContain('pullback_run_success 0\n');
    expect(text).toContain('pullback_prune_removed_backups 3\n');
    // Every non-comment line is `name{labels} value` or `name value`.
    for (const line of text.trim().split('\n').filter((l) => !l.startsWith('#'))) expect(line).toMatch(/^[a-z_]+(\{domain="(?:[^"\\]|\\.)*"\})? -?\d+(\.\d+)?$/);
    const path = join(work, 'pullback.prom');
    await writeMetricsFile(path, m);
    expect(await readFile(path, 'utf8')).toBe(text);
  });
});

describe('run lock', () => {
  let work: string;
  beforeEach(async () => {
    work = await mkdtemp(join(tmpdir(), 'pullback-runlock-'));
  });
  afterEach(async () => {
    await rm(work, { recursive: true, force: true });
  });

  test('a second run is refused while the first holds the lock; released, it can be taken again', async () => {
    const warnings: string[] = [];
    const a = await acquireRunLock(work, 'a.toml', (m) => warnings.push(m));
    const err = await acquireRunLock(work, 'b.toml', (m) => warnings.push(m)).catch((e: unknown) => e);
    expect(isPullbackError(err, 'REPO_LOCKED')).toBe(true);
    expect((err as Error).message).toMatch(new RegExp(`another pullback run is using repository ${work}: pid ${process.pid} on host .* \\(config a.toml\\); .*remove ${work}/run.lock`));
    await a.release();
    const b = await acquireRunLock(work, 'b.toml', (m) => warnings.push(m));
    await b.release();
    expect(warnings).toEqual([]);
  });

  test('the lock of a dead run is taken over with a warning', async () => {
    // A real process that exits: its lock file stays behind, as after kill -9.
    const child = spawn(process.execPath, ['--import', 'tsx', '-e', `import('${new URL('../../src/retention/run-lock.ts', import.meta.url).pathname}').then((m) => m.acquireRunLock(${JSON.stringify(work)}, 'dead.toml', () => {})).then(() => process.exit(0))`], { stdio: 'ignore' });
    expect(await new Promise((r) => child.on('exit', r))).toBe(0);
    expect(await readFile(join(work, 'run.lock'), 'utf8')).toContain('dead.toml');
    const warnings: string[] = [];
    const lock = await acquireRunLock(work, 'live.toml', (m) => warnings.push(m));
    expect(warnings).toEqual([expect.stringMatching(/^took over the run lock .*run.lock of a dead run \(pid \d+ on host/)]);
    expect(await readFile(join(work, 'run.lock'), 'utf8')).toContain('live.toml');
    await lock.release();
  });
});

