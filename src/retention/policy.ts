// Retention policy: which backups a prune keeps, and why. Pure: no I/O, no clock (the
// caller passes `now`). Semantics follow `restic forget` (docs/retention.md has the full
// text and the differences from restic and Proxmox Backup Server):
//
//   period   — an hour, day, ISO 8601 week, month or year, read from the calendar in UTC
//              (default) or the process's local time zone. Its key names it in reasons:
//              hourly 2026-11-21T14, daily 2026-11-21, weekly 2026-W47, monthly 2026-11,
//              yearly 2026.
//   rule     — keep-last N keeps the N newest backups; keep-<period> N keeps the newest
//              backup of each of the N newest periods that contain a backup (empty periods
//              do not count); keep-within D keeps every backup newer than now - D.
//   decision — rules are evaluated independently over the same list and a backup is kept
//              if ANY rule keeps it; `reasons` lists every rule that kept it.
//
// Only complete backups are subject to the rules (a missing status means complete).
// Running backups are always kept (reason 'running') and never count toward a rule;
// failed backups are always removed (reason 'failed'). An empty policy keeps everything
// (reason 'no policy'); the CLI refuses an empty policy before getting here.
import { PullbackError } from '../errors.js';
import type { TimeZoneMode } from './duration.js';

export type { TimeZoneMode } from './duration.js';

export interface RetentionPolicy {
  keepLast?: number;
  keepHourly?: number;
  keepDaily?: number;
  keepWeekly?: number;
  keepMonthly?: number;
  keepYearly?: number;
  /** Milliseconds; keeps backups with time > now - keepWithin. See durationMs(). */
  keepWithin?: number;
}

export interface PolicyInput {
  id: string;
  time: Date;
  status?: 'running' | 'complete' | 'failed';
}

export interface Decision {
  id: string;
  keep: boolean;
  /** e.g. ['last 1', 'daily 2026-11-21', 'weekly 2026-W47'] or ['not matched by any rule']. */
  reasons: string[];
}

export type PeriodUnit = 'hourly' | 'daily' | 'weekly' | 'monthly' | 'yearly';

/** The counting rules: policy key and the name used in reasons and CLI flags (--keep-<name>). */
export const COUNT_RULES = [
  ['keepLast', 'last'],
  ['keepHourly', 'hourly'],
  ['keepDaily', 'daily'],
  ['keepWeekly', 'weekly'],
  ['keepMonthly', 'monthly'],
  ['keepYearly', 'yearly'],
] as const;

const DAY_MS = 86_400_000;

const pad = (n: number, width: number): string => String(n).padStart(width, '0');

/** ISO 8601 week-year and week of a calendar date (weeks start Monday; week 1 holds Jan 4). */
function isoWeek(year: number, month0: number, day: number): { year: number; week: number } {
  const d = new Date(0);
  d.setUTCFullYear(year, month0, day);
  const weekday = d.getUTCDay() === 0 ? 7 : d.getUTCDay(); // Monday=1 .. Sunday=7
  d.setUTCDate(day + 4 - weekday); // the Thursday of this week decides its year
  const weekYear = d.getUTCFullYear();
  const jan1 = new Date(0);
  jan1.setUTCFullYear(weekYear, 0, 1);
  return { year: weekYear, week: Math.floor((d.getTime() - jan1.getTime()) / DAY_MS / 7) + 1 };
}

/** The key of the period of `unit` that contains `time`, e.g. '2026-W47'. */
export function periodKey(time: Date, unit: PeriodUnit, timeZone: TimeZoneMode = 'UTC'): string {
  const utc = timeZone === 'UTC';
  const y = utc ? time.getUTCFullYear() : time.getFullYear();
  const m0 = utc ? time.getUTCMonth() : time.getMonth();
  const d = utc ? time.getUTCDate() : time.getDate();
  const h = utc ? time.getUTCHours() : time.getHours();
  switch (unit) {
    case 'hourly':
      return `${pad(y, 4)}-${pad(m0 + 1, 2)}-${pad(d, 2)}T${pad(h, 2)}`;
    case 'daily':
      return `${pad(y, 4)}-${pad(m0 + 1, 2)}-${pad(d, 2)}`;
    case 'weekly': {
      const w = isoWeek(y, m0, d);
      return `${pad(w.year, 4)}-W${pad(w.week, 2)}`;
    }
    case 'monthly':
      return `${pad(y, 4)}-${pad(m0 + 1, 2)}`;
    case 'yearly':
      return pad(y, 4);
  }
}

/** True when the policy has no rule (every count and keepWithin absent or 0). */
export function isEmptyPolicy(policy: RetentionPolicy): boolean {
  return COUNT_RULES.every(([k]) => (policy[k] ?? 0) === 0) && (policy.keepWithin ?? 0) === 0;
}

/** Throws PullbackError('USAGE') unless counts are integers >= 0 (or Infinity = every period)
 *  and keepWithin is a finite number of milliseconds >= 0. */
export function validatePolicy(policy: RetentionPolicy): void {
  for (const [key] of COUNT_RULES) {
    const v = policy[key];
    if (v === undefined) continue;
    if (!(v === Infinity || (Number.isInteger(v) && v >= 0))) {
      throw new PullbackError('USAGE', `retention policy: ${key} must be a whole number >= 0 (got ${v})`);
    }
  }
  const w = policy.keepWithin;
  if (w !== undefined && !(Number.isFinite(w) && w >= 0)) {
    throw new PullbackError('USAGE', `retention policy: keepWithin must be a finite number of milliseconds >= 0 (got ${w})`);
  }
}

/** Short text for a millisecond span in reasons: 604800000 -> '7d', 129600000 -> '1d12h'. */
function formatMs(ms: number): string {
  const parts: string[] = [];
  let rest = ms;
  for (const [unit, size] of [['d', DAY_MS], ['h', 3_600_000], ['min', 60_000], ['s', 1000], ['ms', 1]] as const) {
    const n = Math.floor(rest / size);
    if (n > 0) parts.push(`${n}${unit}`);
    rest -= n * size;
  }
  return parts.length === 0 ? '0ms' : parts.join('');
}

function checkInputs(backups: readonly PolicyInput[], now: Date): void {
  if (Number.isNaN(now.getTime())) throw new PullbackError('INTERNAL', 'applyPolicy: `now` is an invalid Date');
  const seen = new Set<string>();
  for (const b of backups) {
    if (seen.has(b.id)) throw new PullbackError('INTERNAL', `applyPolicy: backup id "${b.id}" appears twice in the input`);
    seen.add(b.id);
    if (!(b.time instanceof Date) || Number.isNaN(b.time.getTime())) {
      throw new PullbackError('INTERNAL', `applyPolicy: backup "${b.id}" has an invalid time`);
    }
    const s: unknown = b.status;
    if (s !== undefined && s !== 'running' && s !== 'complete' && s !== 'failed') {
      throw new PullbackError('INTERNAL', `applyPolicy: backup "${b.id}" has unknown status ${JSON.stringify(s)}`);
    }
  }
}

/** Newest first; equal times ordered by id (ascending code units), so the result never
 *  depends on input order. */
function newestFirst(a: PolicyInput, b: PolicyInput): number {
  const dt = b.time.getTime() - a.time.getTime();
  if (dt !== 0) return dt;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** Decides keep/remove for every backup; the result is sorted newest first (ties by id). */
export function applyPolicy(
  backups: readonly PolicyInput[],
  policy: RetentionPolicy,
  now: Date,
  opts: { timeZone?: TimeZoneMode } = {},
): Decision[] {
  validatePolicy(policy);
  checkInputs(backups, now);
  const timeZone = opts.timeZone ?? 'UTC';
  const sorted = [...backups].sort(newestFirst);

  if (isEmptyPolicy(policy)) {
    return sorted.map((b) => ({ id: b.id, keep: true, reasons: ['no policy'] }));
  }

  const reasons = new Map<string, string[]>(sorted.map((b) => [b.id, []]));
  const complete = sorted.filter((b) => (b.status ?? 'complete') === 'complete');

  for (const [key, name] of COUNT_RULES) {
    const count = policy[key] ?? 0;
    const periods = new Set<string>();
    let kept = 0;
    for (const b of complete) {
      if (kept >= count) break;
      // keep-last: every backup is its own "period"; the reason is its rank.
      const label = name === 'last' ? String(kept + 1) : periodKey(b.time, name, timeZone);
      if (name !== 'last' && periods.has(label)) continue; // an older backup of a kept period
      periods.add(label);
      kept += 1;
      reasons.get(b.id)?.push(`${name} ${label}`);
    }
  }

  const within = policy.keepWithin ?? 0;
  if (within > 0) {
    const cutoff = now.getTime() - within;
    for (const b of complete) {
      if (b.time.getTime() > cutoff) reasons.get(b.id)?.push(`within ${formatMs(within)}`);
    }
  }

  return sorted.map((b): Decision => {
    const status = b.status ?? 'complete';
    if (status === 'running') return { id: b.id, keep: true, reasons: ['running'] };
    if (status === 'failed') return { id: b.id, keep: false, reasons: ['failed'] };
    const r = reasons.get(b.id) ?? [];
    return r.length > 0 ? { id: b.id, keep: true, reasons: r } : { id: b.id, keep: false, reasons: ['not matched by any rule'] };
  });
}
