// Strict validation of a parsed `pullback run` config (TOML; docs/nightly.md). Every key is
// known, every value has the documented type and range, and every error names the key
// (`retention.keep_daily`) and the file, so a typo never turns into a surprising policy.
import { PullbackError } from '../errors.js';
import { parseDuration, type CalendarDuration, type TimeZoneMode } from './duration.js';
import { isEmptyPolicy, type RetentionPolicy } from './policy.js';

export type DomainSelection = { kind: 'names'; names: string[] } | { kind: 'all'; include: string[]; exclude: string[] };

export interface RunConfig {
  /** The config file, for messages. */
  source: string;
  repository: string;
  libvirtUri?: string;
  /** Domains backed up at once. */
  concurrency: number;
  scratchDir?: string;
  /** Bytes kept free in the scratch directory while a job runs (scratch_keep_free_mib). */
  scratchKeepFreeBytes?: number;
  /** NBD connections per disk. */
  connections?: number;
  /** How long to wait for a repository lock held by someone else. */
  lockWaitSeconds: number;
  metricsFile?: string;
  domains: DomainSelection;
  /** Domain name -> disk targets to leave out. */
  excludeDisks: Record<string, string[]>;
  level: { fullEveryDays?: number; fullAfterIncrementals?: number };
  retention: {
    /** Count rules; keepWithin is applied at run time from `keepWithin` below. */
    counts: Omit<RetentionPolicy, 'keepWithin'>;
    keepWithin?: CalendarDuration;
    timeZone: TimeZoneMode;
  };
}

type Table = Record<string, unknown>;

const TOP = ['repository', 'libvirt_uri', 'concurrency', 'scratch_dir', 'scratch_keep_free_mib', 'connections', 'lock_wait_seconds', 'metrics_file', 'domains', 'level', 'retention'];
const DOMAINS = ['names', 'all', 'include', 'exclude', 'exclude_disks'];
const LEVEL = ['full_every_days', 'full_after_incrementals'];
const COUNTS = [
  ['keep_last', 'keepLast'],
  ['keep_hourly', 'keepHourly'],
  ['keep_daily', 'keepDaily'],
  ['keep_weekly', 'keepWeekly'],
  ['keep_monthly', 'keepMonthly'],
  ['keep_yearly', 'keepYearly'],
] as const;
const RETENTION = [...COUNTS.map(([k]) => k), 'keep_within', 'time_zone'];

class Checker {
  constructor(readonly source: string) {}

  fail(key: string, why: string): never {
    throw new PullbackError('CONFIG_INVALID', `config ${this.source}: ${key}: ${why}`);
  }

  table(v: unknown, key: string): Table {
    if (v === undefined) this.fail(key, 'is required (a table)');
    if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Date) this.fail(key, `must be a table, not ${describe(v)}`);
    return v as Table;
  }

  known(t: Table, keys: readonly string[], prefix: string): void {
    for (const k of Object.keys(t)) {
      if (!keys.includes(k)) this.fail(`${prefix}${k}`, `unknown key (known keys${prefix === '' ? '' : ` of [${prefix.slice(0, -1)}]`}: ${keys.join(', ')})`);
    }
  }

  string(v: unknown, key: string): string {
    if (v === undefined) this.fail(key, 'is required (a string)');
    if (typeof v !== 'string' || v === '') this.fail(key, `must be a non-empty string, not ${describe(v)}`);
    return v;
  }

  int(v: unknown, key: string, min: number, max: number): number {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) this.fail(key, `must be a whole number from ${min} to ${max}, not ${describe(v)}`);
    return v;
  }

  strings(v: unknown, key: string): string[] {
    if (!Array.isArray(v)) this.fail(key, `must be a list of strings, not ${describe(v)}`);
    return v.map((x, i) => this.string(x, `${key}[${i}]`));
  }
}

function describe(v: unknown): string {
  if (v === undefined) return 'missing';
  if (Array.isArray(v)) return 'a list';
  if (v instanceof Date) return 'a date';
  if (typeof v === 'object' && v !== null) return 'a table';
  return `${typeof v} ${JSON.stringify(v)}`;
}

/** Validates a parsed TOML document; relative paths are resolved by the caller. */
export function validateRunConfig(doc: unknown, source: string): RunConfig {
  const c = new Checker(source);
  const top = c.table(doc, '(top level)');
  c.known(top, TOP, '');
  const config: RunConfig = {
    source,
    repository: c.string(top['repository'], 'repository'),
    concurrency: top['concurrency'] === undefined ? 1 : c.int(top['concurrency'], 'concurrency', 1, 64),
    lockWaitSeconds: top['lock_wait_seconds'] === undefined ? 600 : c.int(top['lock_wait_seconds'], 'lock_wait_seconds', 0, 86_400),
    domains: { kind: 'names', names: [] },
    excludeDisks: {},
    level: {},
    retention: { counts: {}, timeZone: 'UTC' },
  };
  if (top['libvirt_uri'] !== undefined) config.libvirtUri = c.string(top['libvirt_uri'], 'libvirt_uri');
  if (top['scratch_dir'] !== undefined) config.scratchDir = c.string(top['scratch_dir'], 'scratch_dir');
  if (top['scratch_keep_free_mib'] !== undefined) {
    config.scratchKeepFreeBytes = c.int(top['scratch_keep_free_mib'], 'scratch_keep_free_mib', 0, 1_048_576) * 1024 * 1024;
  }
  if (top['metrics_file'] !== undefined) config.metricsFile = c.string(top['metrics_file'], 'metrics_file');
  if (top['connections'] !== undefined) config.connections = c.int(top['connections'], 'connections', 1, 16);

  const d = c.table(top['domains'], 'domains');
  c.known(d, DOMAINS, 'domains.');
  const all = d['all'];
  if (all !== undefined && all !== true) c.fail('domains.all', `must be true (or left out and domains.names given), not ${describe(all)}`);
  if (all === true) {
    if (d['names'] !== undefined) c.fail('domains', 'give either names = [...] or all = true, not both');
    config.domains = {
      kind: 'all',
      include: d['include'] === undefined ? ['*'] : c.strings(d['include'], 'domains.include'),
      exclude: d['exclude'] === undefined ? [] : c.strings(d['exclude'], 'domains.exclude'),
    };
  } else {
    if (d['names'] === undefined) c.fail('domains', 'give names = ["vm1", ...] or all = true');
    for (const k of ['include', 'exclude']) if (d[k] !== undefined) c.fail(`domains.${k}`, 'only applies with all = true');
    const names = c.strings(d['names'], 'domains.names');
    if (names.length === 0) c.fail('domains.names', 'is empty');
    if (new Set(names).size !== names.length) c.fail('domains.names', 'names a domain twice');
    config.domains = { kind: 'names', names };
  }
  if (d['exclude_disks'] !== undefined) {
    const ex = c.table(d['exclude_disks'], 'domains.exclude_disks');
    for (const [dom, disks] of Object.entries(ex)) config.excludeDisks[dom] = c.strings(disks, `domains.exclude_disks.${dom}`);
  }

  if (top['level'] !== undefined) {
    const l = c.table(top['level'], 'level');
    c.known(l, LEVEL, 'level.');
    if (l['full_every_days'] !== undefined) config.level.fullEveryDays = c.int(l['full_every_days'], 'level.full_every_days', 1, 36_500);
    if (l['full_after_incrementals'] !== undefined) {
      config.level.fullAfterIncrementals = c.int(l['full_after_incrementals'], 'level.full_after_incrementals', 0, 100_000);
    }
  }

  const r = c.table(top['retention'], 'retention');
  c.known(r, RETENTION, 'retention.');
  for (const [key, field] of COUNTS) {
    if (r[key] !== undefined) config.retention.counts[field] = c.int(r[key], `retention.${key}`, 0, 1_000_000);
  }
  if (r['keep_within'] !== undefined) {
    const text = c.string(r['keep_within'], 'retention.keep_within');
    try {
      config.retention.keepWithin = parseDuration(text);
    } catch (e) {
      c.fail('retention.keep_within', (e as Error).message);
    }
  }
  const tz = r['time_zone'];
  if (tz !== undefined) {
    if (tz !== 'UTC' && tz !== 'local') c.fail('retention.time_zone', `must be "UTC" or "local", not ${describe(tz)}`);
    config.retention.timeZone = tz as TimeZoneMode;
  }
  if (isEmptyPolicy(config.retention.counts) && config.retention.keepWithin === undefined) {
    c.fail('retention', 'has no rule: give at least one of keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly (> 0) or keep_within');
  }
  return config;
}
