// Retention durations for `--keep-within`, in the spirit of restic's `1y5m7d2h`.
//
// Terms:
//   CalendarDuration — whole numbers of years, months, weeks, days and hours. Years, months,
//     weeks and days are calendar units (a month is not a fixed number of milliseconds); hours
//     are exact (3 600 000 ms).
//   cutoff — the instant a duration before a reference time `now` (see durationCutoff):
//     1. go back `years` and `months` on the calendar, keeping day-of-month and wall-clock
//        time; if that day does not exist in the target month, clamp it to the month's last
//        day (1m before 2026-03-31 is 2026-02-28; restic/Go would overflow to 2026-03-03);
//     2. go back `weeks * 7 + days` calendar days, keeping wall-clock time;
//     3. subtract `hours * 3600 s` exactly.
//   Calendar fields are read in UTC by default or in the process's local time zone
//   ('local'), the same choice the retention policy uses for its period boundaries.
//
// Syntax (strict, so a typo is an error instead of a surprising policy): one or more
// `<digits><unit>` terms, units in the order y, m, w, d, h, each at most once, no spaces
// inside, no sign, no fractions. `m` means MONTHS as in restic ("90m" is 90 months, not
// 90 minutes). Surrounding whitespace is ignored. A duration of zero is rejected.
import { PullbackError } from '../errors.js';

export type TimeZoneMode = 'UTC' | 'local';

export interface CalendarDuration {
  readonly years: number;
  readonly months: number;
  readonly weeks: number;
  readonly days: number;
  readonly hours: number;
}

const UNITS = [
  ['y', 'years'],
  ['m', 'months'],
  ['w', 'weeks'],
  ['d', 'days'],
  ['h', 'hours'],
] as const;

/** Largest accepted number in one term; keeps arithmetic in safe-integer range. */
const MAX_TERM = 1_000_000;
const HOUR_MS = 3_600_000;
const SYNTAX_HELP =
  'use numbers followed by y (years), m (months), w (weeks), d (days), h (hours), ' +
  'largest unit first, e.g. 7d, 2w, 36h, 1y6m';

function usage(text: string, why: string): PullbackError {
  return new PullbackError('USAGE', `invalid duration ${JSON.stringify(text)}: ${why}; ${SYNTAX_HELP}`);
}

/** Parses `7d`, `2w`, `36h`, `1y2m`, `1y2m3w4d5h`. Throws PullbackError('USAGE') on bad input. */
export function parseDuration(text: string): CalendarDuration {
  const s = text.trim();
  if (s === '') throw usage(text, 'it is empty');
  const out = { years: 0, months: 0, weeks: 0, days: 0, hours: 0 };
  const term = /(\d+)([a-zA-Z]?)/y;
  let pos = 0;
  let nextUnit = 0; // index into UNITS: units must appear in decreasing size, once each
  while (pos < s.length) {
    term.lastIndex = pos;
    const m = term.exec(s);
    if (m === null) throw usage(text, `expected a number at position ${pos + 1}`);
    const [whole, digits = '', unit = ''] = m;
    if (unit === '') throw usage(text, `the number ${digits} has no unit`);
    const idx = UNITS.findIndex(([u]) => u === unit);
    if (idx < 0) throw usage(text, `unknown unit "${unit}"`);
    if (idx < nextUnit) throw usage(text, `unit "${unit}" is repeated or out of order`);
    const value = Number(digits);
    if (value > MAX_TERM) throw usage(text, `${digits}${unit} is too large (at most ${MAX_TERM})`);
    const entry = UNITS[idx];
    if (entry !== undefined) out[entry[1]] = value;
    nextUnit = idx + 1;
    pos += whole.length;
  }
  if (out.years + out.months + out.weeks + out.days + out.hours === 0) {
    throw usage(text, 'it is zero (a zero keep-within keeps nothing; omit the option instead)');
  }
  return out;
}

/** Canonical text of a duration, e.g. `1y2m3d`; the inverse of parseDuration. */
export function formatDuration(d: CalendarDuration): string {
  const text = UNITS.filter(([, f]) => d[f] !== 0)
    .map(([u, f]) => `${d[f]}${u}`)
    .join('');
  return text === '' ? '0h' : text;
}

function isLeap(y: number): boolean {
  return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
}

function daysInMonth(y: number, month0: number): number {
  const lengths = [31, isLeap(y) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
  return lengths[month0] ?? 31;
}

/** The instant `d` before `now` (see the header for the exact arithmetic). */
export function durationCutoff(
  now: Date,
  d: CalendarDuration,
  opts: { timeZone?: TimeZoneMode } = {},
): Date {
  if (Number.isNaN(now.getTime())) {
    throw new PullbackError('INTERNAL', 'durationCutoff: the reference time is an invalid Date');
  }
  const utc = (opts.timeZone ?? 'UTC') === 'UTC';
  const year = utc ? now.getUTCFullYear() : now.getFullYear();
  const month0 = utc ? now.getUTCMonth() : now.getMonth();
  const day = utc ? now.getUTCDate() : now.getDate();

  const totalMonths = year * 12 + month0 - (d.years * 12 + d.months);
  const y = Math.floor(totalMonths / 12);
  const m0 = totalMonths - y * 12;
  const clampedDay = Math.min(day, daysInMonth(y, m0));

  // Build from `now` so the wall-clock time of day is kept; setFullYear also avoids
  // Date.UTC's 0..99 => 1900..1999 year mapping.
  const t = new Date(now.getTime());
  if (utc) t.setUTCFullYear(y, m0, clampedDay - (d.weeks * 7 + d.days));
  else t.setFullYear(y, m0, clampedDay - (d.weeks * 7 + d.days));
  const ms = t.getTime() - d.hours * HOUR_MS;
  if (!Number.isFinite(ms) || Math.abs(ms) > 8.64e15) {
    throw new PullbackError(
      'USAGE',
      `duration ${formatDuration(d)} before ${now.toISOString()} is outside the representable date range; use a shorter duration`,
    );
  }
  return new Date(ms);
}

/** The length in milliseconds of `d` counted back from `now` (what RetentionPolicy.keepWithin takes). */
export function durationMs(
  d: CalendarDuration,
  now: Date,
  opts: { timeZone?: TimeZoneMode } = {},
): number {
  return now.getTime() - durationCutoff(now, d, opts).getTime();
}
