// Table tests for the retention policy. Every expected kept set is written out by hand
// (dates, ISO weeks and reasons were worked out on a calendar), never recomputed with the
// algorithm under test.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPullbackError } from '../errors.js';
import { durationMs, parseDuration } from './duration.js';
import { applyPolicy, isEmptyPolicy, periodKey, validatePolicy } from './policy.js';
import type { Decision, PolicyInput, RetentionPolicy } from './policy.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

function at(id: string, iso: string, status?: PolicyInput['status']): PolicyInput {
  return status === undefined ? { id, time: new Date(iso) } : { id, time: new Date(iso), status };
}

/** id -> reasons of the kept backups, in output order. */
function keptMap(ds: Decision[]): Record<string, string[]> {
  return Object.fromEntries(ds.filter((d) => d.keep).map((d) => [d.id, d.reasons]));
}

function removedIds(ds: Decision[]): string[] {
  return ds.filter((d) => !d.keep).map((d) => d.id);
}

/** One backup a day at `hhmm` UTC from `first` to `last` inclusive, id = 'YYYY-MM-DD'. */
function nightly(first: string, last: string, hhmm = '02:00'): PolicyInput[] {
  const out: PolicyInput[] = [];
  for (let t = Date.parse(`${first}T00:00:00Z`); t <= Date.parse(`${last}T00:00:00Z`); t += DAY) {
    const day = new Date(t).toISOString().slice(0, 10);
    out.push(at(day, `${day}T${hhmm}:00Z`));
  }
  return out;
}

function expectCode(fn: () => unknown, code: 'USAGE' | 'INTERNAL', text: string): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(isPullbackError(caught, code)).toBe(true);
  expect((caught as Error).message).toContain(text);
}

const NOW = new Date('2026-11-21T23:00:00Z');

describe('periodKey', () => {
  it.each([
    // ISO 8601 weeks: the week belongs to the year of its Thursday.
    ['2020-12-28T12:00:00Z', '2020-W53'],
    ['2020-12-31T12:00:00Z', '2020-W53'],
    ['2021-01-03T23:59:59.999Z', '2020-W53'],
    ['2021-01-04T00:00:00Z', '2021-W01'],
    ['2026-11-21T12:00:00Z', '2026-W47'],
    ['2026-11-22T23:59:59Z', '2026-W47'], // Sunday still belongs to the week of Monday 16th
    ['2026-11-23T00:00:00Z', '2026-W48'],
    ['2025-12-29T00:00:00Z', '2026-W01'], // Monday in December, already week 1 of 2026
    ['2026-12-31T12:00:00Z', '2026-W53'], // 2026 starts on a Thursday: 53 weeks
    ['2027-01-03T12:00:00Z', '2026-W53'],
    ['2027-01-04T12:00:00Z', '2027-W01'],
    ['2027-12-31T12:00:00Z', '2027-W52'],
    ['2024-12-30T12:00:00Z', '2025-W01'],
    ['2008-12-29T12:00:00Z', '2009-W01'],
    ['2010-01-03T12:00:00Z', '2009-W53'],
    ['2015-12-31T12:00:00Z', '2015-W53'],
  ])('weekly %s is %s', (iso, key) => {
    expect(periodKey(new Date(iso), 'weekly')).toBe(key);
  });

  it('formats hourly, daily, monthly and yearly keys in UTC by default', () => {
    const t = new Date('2026-02-03T04:05:06Z');
    expect(periodKey(t, 'hourly')).toBe('2026-02-03T04');
    expect(periodKey(t, 'daily')).toBe('2026-02-03');
    expect(periodKey(t, 'monthly')).toBe('2026-02');
    expect(periodKey(t, 'yearly')).toBe('2026');
  });
});

describe('applyPolicy: examples from the restic documentation', () => {
  // doc/060_forget.rst: one backup every Sunday for 12 weeks, `forget --keep-daily 4`.
  const sundays = [
    at('0a1f9759', '2019-09-01T11:00:00Z'),
    at('46cfe4d5', '2019-09-08T11:00:00Z'),
    at('f6b1f037', '2019-09-15T11:00:00Z'),
    at('eb430a5d', '2019-09-22T11:00:00Z'),
    at('8cf1cb9a', '2019-09-29T11:00:00Z'),
    at('5d33b116', '2019-10-06T11:00:00Z'),
    at('b9553125', '2019-10-13T11:00:00Z'),
    at('e1a7b58b', '2019-10-20T11:00:00Z'),
    at('8f8018c0', '2019-10-27T11:00:00Z'),
    at('59403279', '2019-11-03T11:00:00Z'),
    at('dfee9fb4', '2019-11-10T11:00:00Z'),
    at('e1ae2f40', '2019-11-17T11:00:00Z'),
  ];

  it('keep-daily 4 on weekly backups keeps the last four Sundays', () => {
    const ds = applyPolicy(sundays, { keepDaily: 4 }, new Date('2019-11-18T00:00:00Z'));
    expect(keptMap(ds)).toEqual({
      e1ae2f40: ['daily 2019-11-17'],
      dfee9fb4: ['daily 2019-11-10'],
      '59403279': ['daily 2019-11-03'],
      '8f8018c0': ['daily 2019-10-27'],
    });
    expect(removedIds(ds)).toEqual([
      'e1a7b58b', 'b9553125', '5d33b116', '8cf1cb9a', 'eb430a5d', 'f6b1f037', '46cfe4d5', '0a1f9759',
    ]);
  });

  it('daily 7 / weekly 5 / monthly 12 / yearly 75 over 100 years of daily backups', () => {
    // Ends on Sunday 2025-06-15 so the 7 dailies (Mon 9th..Sun 15th) hold exactly one weekly,
    // as in the docs: 7 daily + 4 more weekly + 11 more monthly (June's is a daily) + yearly.
    // The monthly for 2024-12 is also the yearly for 2024, so 73 more yearly: 95 in total.
    const backups = nightly('1925-06-16', '2025-06-15', '12:00');
    expect(backups).toHaveLength(36525);
    const ds = applyPolicy(backups, { keepDaily: 7, keepWeekly: 5, keepMonthly: 12, keepYearly: 75 }, new Date('2025-06-15T18:00:00Z'));
    const yearEnds: string[] = [];
    for (let y = 1951; y <= 2024; y++) yearEnds.push(`${y}-12-31`);
    const expected = [
      '2025-06-15', '2025-06-14', '2025-06-13', '2025-06-12', '2025-06-11', '2025-06-10', '2025-06-09', // daily
      '2025-06-08', '2025-06-01', '2025-05-25', '2025-05-18', // weekly (06-15 is already daily)
      '2025-05-31', '2025-04-30', '2025-03-31', '2025-02-28', '2025-01-31', // monthly
      '2024-11-30', '2024-10-31', '2024-09-30', '2024-08-31', '2024-07-31', // monthly (2024-12-31 below)
      ...yearEnds, // yearly 1951..2024 (2025 is 06-15)
    ];
    const kept = ds.filter((d) => d.keep).map((d) => d.id);
    expect(kept).toHaveLength(95);
    expect([...kept].sort()).toEqual([...new Set(expected)].sort());
    const m = keptMap(ds);
    expect(m['2025-06-15']).toEqual(['daily 2025-06-15', 'weekly 2025-W24', 'monthly 2025-06', 'yearly 2025']);
    expect(m['2024-12-31']).toEqual(['monthly 2024-12', 'yearly 2024']);
    expect(m['1951-12-31']).toEqual(['yearly 1951']);
    expect(m['2025-05-18']).toEqual(['weekly 2025-W20']);
  });
});

describe('applyPolicy: 90 nights, keep-daily 7 / keep-weekly 4 / keep-monthly 3', () => {
  // 2026-01-01 .. 2026-03-31 at 02:00 UTC; 2026-03-31 is a Tuesday. Sundays: 03-15 (W11),
  // 03-22 (W12), 03-29 (W13); 03-30/31 are in W14.
  const backups = nightly('2026-01-01', '2026-03-31');
  const policy: RetentionPolicy = { keepDaily: 7, keepWeekly: 4, keepMonthly: 3 };
  const now = new Date('2026-03-31T12:00:00Z');
  const expectedKept = {
    '2026-03-31': ['daily 2026-03-31', 'weekly 2026-W14', 'monthly 2026-03'],
    '2026-03-30': ['daily 2026-03-30'],
    '2026-03-29': ['daily 2026-03-29', 'weekly 2026-W13'],
    '2026-03-28': ['daily 2026-03-28'],
    '2026-03-27': ['daily 2026-03-27'],
    '2026-03-26': ['daily 2026-03-26'],
    '2026-03-25': ['daily 2026-03-25'],
    '2026-03-22': ['weekly 2026-W12'],
    '2026-03-15': ['weekly 2026-W11'],
    '2026-02-28': ['monthly 2026-02'],
    '2026-01-31': ['monthly 2026-01'],
  };

  it('keeps exactly the hand-computed 11 backups', () => {
    expect(backups).toHaveLength(90);
    const ds = applyPolicy(backups, policy, now);
    expect(ds).toHaveLength(90);
    expect(keptMap(ds)).toEqual(expectedKept);
    for (const d of ds.filter((x) => !x.keep)) expect(d.reasons).toEqual(['not matched by any rule']);
  });

  it('returns decisions newest first', () => {
    const ids = applyPolicy(backups, policy, now).map((d) => d.id);
    expect(ids[0]).toBe('2026-03-31');
    expect(ids[89]).toBe('2026-01-01');
    expect(ids).toEqual([...ids].sort().reverse());
  });

  it('is idempotent: pruning the kept set again removes nothing', () => {
    const first = applyPolicy(backups, policy, now);
    const survivors = backups.filter((b) => first.find((d) => d.id === b.id)?.keep === true);
    const second = applyPolicy(survivors, policy, now);
    expect(second.every((d) => d.keep)).toBe(true);
    expect(keptMap(second)).toEqual(expectedKept);
  });
});

describe('applyPolicy: table cases', () => {
  it('ISO weeks span the year boundary: 2020-12-28..2021-01-03 is one week (2020-W53)', () => {
    const ds = applyPolicy(
      [
        at('mon-dec28', '2020-12-28T10:00:00Z'),
        at('thu-dec31', '2020-12-31T10:00:00Z'),
        at('sun-jan03', '2021-01-03T10:00:00Z'),
        at('mon-jan04', '2021-01-04T10:00:00Z'),
      ],
      { keepWeekly: 2 },
      new Date('2021-01-05T00:00:00Z'),
    );
    expect(keptMap(ds)).toEqual({ 'mon-jan04': ['weekly 2021-W01'], 'sun-jan03': ['weekly 2020-W53'] });
    expect(removedIds(ds)).toEqual(['thu-dec31', 'mon-dec28']);
  });

  it('2026-W53 exists and holds 2026-12-31 and 2027-01-03', () => {
    const ds = applyPolicy(
      [at('dec27', '2026-12-27T10:00:00Z'), at('dec31', '2026-12-31T10:00:00Z'), at('jan03', '2027-01-03T10:00:00Z')],
      { keepWeekly: 2, keepYearly: 2 },
      new Date('2027-01-04T00:00:00Z'),
    );
    expect(keptMap(ds)).toEqual({
      jan03: ['weekly 2026-W53', 'yearly 2027'],
      dec31: ['yearly 2026'],
      dec27: ['weekly 2026-W52'],
    });
  });

  it('month ends: the last instant of a month and the first of the next are different months', () => {
    const ds = applyPolicy(
      [
        at('jan31-late', '2026-01-31T23:59:59.999Z'),
        at('feb01-first', '2026-02-01T00:00:00.000Z'),
        at('feb28', '2026-02-28T12:00:00Z'),
        at('mar01', '2026-03-01T00:00:00Z'),
        at('leap-feb29', '2024-02-29T12:00:00Z'),
        at('leap-mar01', '2024-03-01T00:00:00Z'),
      ],
      { keepMonthly: 4 },
      NOW,
    );
    expect(keptMap(ds)).toEqual({
      mar01: ['monthly 2026-03'],
      feb28: ['monthly 2026-02'],
      'jan31-late': ['monthly 2026-01'],
      'leap-mar01': ['monthly 2024-03'],
    });
    expect(removedIds(ds)).toEqual(['feb01-first', 'leap-feb29']);
  });

  it('several backups a day: the newest of each day is the daily one', () => {
    const ds = applyPolicy(
      [
        at('d21-08', '2026-11-21T08:00:00Z'),
        at('d21-20', '2026-11-21T20:00:00Z'),
        at('d21-14', '2026-11-21T14:00:00Z'),
        at('d20-23', '2026-11-20T23:59:59Z'),
        at('d20-01', '2026-11-20T01:00:00Z'),
        at('d19-12', '2026-11-19T12:00:00Z'),
      ],
      { keepDaily: 2 },
      NOW,
    );
    expect(keptMap(ds)).toEqual({ 'd21-20': ['daily 2026-11-21'], 'd20-23': ['daily 2026-11-20'] });
    expect(removedIds(ds)).toEqual(['d21-14', 'd21-08', 'd20-01', 'd19-12']);
  });

  it('keep-hourly keeps the newest backup of each hour', () => {
    const ds = applyPolicy(
      [
        at('h14-10', '2026-11-21T14:10:00Z'),
        at('h14-50', '2026-11-21T14:50:00Z'),
        at('h13-59', '2026-11-21T13:59:59Z'),
        at('h13-00', '2026-11-21T13:00:00Z'),
        at('h11-30', '2026-11-21T11:30:00Z'),
      ],
      { keepHourly: 3 },
      NOW,
    );
    expect(keptMap(ds)).toEqual({
      'h14-50': ['hourly 2026-11-21T14'],
      'h13-59': ['hourly 2026-11-21T13'],
      'h11-30': ['hourly 2026-11-21T11'], // hour 12 had no backup and does not count
    });
  });

  it('gaps: days, weeks and months without a backup do not count', () => {
    const backups = [
      at('nov20', '2026-11-20T02:00:00Z'), // W47
      at('nov10', '2026-11-10T02:00:00Z'), // W46
      at('nov01', '2026-11-01T02:00:00Z'), // W44 (Sunday)
      at('sep05', '2026-09-05T02:00:00Z'), // W36
      at('jan10', '2026-01-10T02:00:00Z'), // W02
    ];
    expect(keptMap(applyPolicy(backups, { keepDaily: 4 }, NOW))).toEqual({
      nov20: ['daily 2026-11-20'],
      nov10: ['daily 2026-11-10'],
      nov01: ['daily 2026-11-01'],
      sep05: ['daily 2026-09-05'],
    });
    expect(keptMap(applyPolicy(backups, { keepWeekly: 3 }, NOW))).toEqual({
      nov20: ['weekly 2026-W47'],
      nov10: ['weekly 2026-W46'],
      nov01: ['weekly 2026-W44'],
    });
    expect(keptMap(applyPolicy(backups, { keepMonthly: 3 }, NOW))).toEqual({
      nov20: ['monthly 2026-11'],
      sep05: ['monthly 2026-09'],
      jan10: ['monthly 2026-01'],
    });
  });

  it('a count larger than the history keeps one per period and nothing more', () => {
    const ds = applyPolicy(
      [at('a', '2026-11-21T10:00:00Z'), at('b', '2026-11-21T09:00:00Z'), at('c', '2026-11-20T10:00:00Z')],
      { keepDaily: 30 },
      NOW,
    );
    expect(keptMap(ds)).toEqual({ a: ['daily 2026-11-21'], c: ['daily 2026-11-20'] });
    expect(removedIds(ds)).toEqual(['b']);
  });

  it('Infinity means every period', () => {
    const ds = applyPolicy(nightly('2026-01-01', '2026-03-31'), { keepMonthly: Infinity }, NOW);
    expect(keptMap(ds)).toEqual({
      '2026-03-31': ['monthly 2026-03'],
      '2026-02-28': ['monthly 2026-02'],
      '2026-01-31': ['monthly 2026-01'],
    });
  });

  it('keep-last combined with keep-daily: rules count independently (restic, not PBS)', () => {
    // Three backups today, two yesterday, one the day before. keep-last 2 takes both newest of
    // today; keep-daily 2 takes the newest of today (again) and of yesterday. PBS would skip
    // the already-covered day and also keep the day before; restic and we do not.
    const ds = applyPolicy(
      [
        at('t3', '2026-11-21T20:00:00Z'),
        at('t2', '2026-11-21T14:00:00Z'),
        at('t1', '2026-11-21T08:00:00Z'),
        at('y2', '2026-11-20T20:00:00Z'),
        at('y1', '2026-11-20T08:00:00Z'),
        at('z1', '2026-11-19T20:00:00Z'),
      ],
      { keepLast: 2, keepDaily: 2 },
      NOW,
    );
    expect(keptMap(ds)).toEqual({
      t3: ['last 1', 'daily 2026-11-21'],
      t2: ['last 2'],
      y2: ['daily 2026-11-20'],
    });
    expect(removedIds(ds)).toEqual(['t1', 'y1', 'z1']);
  });

  it('keep-within keeps backups strictly newer than now - duration, including future ones', () => {
    const now = new Date('2026-11-21T12:00:00Z');
    const ds = applyPolicy(
      [
        at('future', '2026-11-22T12:00:00Z'), // clock skew: still kept
        at('recent', '2026-11-20T12:00:00Z'),
        at('just-inside', '2026-11-14T12:00:00.001Z'),
        at('at-cutoff', '2026-11-14T12:00:00.000Z'),
        at('old', '2026-11-01T12:00:00Z'),
      ],
      { keepWithin: durationMs(parseDuration('7d'), now) },
      now,
    );
    expect(keptMap(ds)).toEqual({
      future: ['within 7d'],
      recent: ['within 7d'],
      'just-inside': ['within 7d'],
    });
    expect(removedIds(ds)).toEqual(['at-cutoff', 'old']);
  });

  it('keep-within with a calendar month measured back from now (2026-03-31 - 1m = 02-28)', () => {
    const now = new Date('2026-03-31T00:00:00Z');
    const within = durationMs(parseDuration('1m'), now);
    expect(within).toBe(31 * DAY);
    const ds = applyPolicy(
      [at('in', '2026-02-28T00:00:01Z'), at('edge', '2026-02-28T00:00:00Z'), at('out', '2026-02-27T23:00:00Z')],
      { keepWithin: within },
      now,
    );
    expect(keptMap(ds)).toEqual({ in: ['within 31d'] });
  });

  it('keep-within reasons spell out odd spans', () => {
    const ds = applyPolicy([at('a', '2026-11-21T22:00:00Z')], { keepWithin: 36 * HOUR + 90_000 }, NOW);
    expect(keptMap(ds)).toEqual({ a: ['within 1d12h1min30s'] });
  });

  it('keep-within and keep-last together list both reasons', () => {
    const ds = applyPolicy(
      [at('new', '2026-11-21T10:00:00Z'), at('mid', '2026-11-18T10:00:00Z'), at('old', '2026-10-01T10:00:00Z')],
      { keepLast: 1, keepWithin: 7 * DAY },
      NOW,
    );
    expect(keptMap(ds)).toEqual({ new: ['last 1', 'within 7d'], mid: ['within 7d'] });
    expect(removedIds(ds)).toEqual(['old']);
  });

  it('duplicate timestamps: ties are broken by id (ascending), whatever the input order', () => {
    const t = '2026-11-21T10:00:00Z';
    const input = [at('b', t), at('c', t), at('a', t), at('older', '2026-11-20T10:00:00Z')];
    for (const order of [input, [...input].reverse()]) {
      const ds = applyPolicy(order, { keepLast: 1, keepDaily: 2 }, NOW);
      expect(ds.map((d) => d.id)).toEqual(['a', 'b', 'c', 'older']);
      expect(keptMap(ds)).toEqual({ a: ['last 1', 'daily 2026-11-21'], older: ['daily 2026-11-20'] });
    }
  });

  it('unsorted input gives the same decisions as sorted input', () => {
    const sorted = nightly('2026-01-01', '2026-03-31');
    const reversed = [...sorted].reverse();
    // A fixed permutation: stride 37 over 90 elements visits every index once (gcd 1).
    const strided = sorted.map((_, i) => sorted[(i * 37) % sorted.length] as PolicyInput);
    const policy: RetentionPolicy = { keepLast: 3, keepDaily: 5, keepWeekly: 3, keepMonthly: 2 };
    const expected = applyPolicy(sorted, policy, NOW);
    expect(applyPolicy(reversed, policy, NOW)).toEqual(expected);
    expect(applyPolicy(strided, policy, NOW)).toEqual(expected);
    expect(keptMap(expected)).toEqual({
      '2026-03-31': ['last 1', 'daily 2026-03-31', 'weekly 2026-W14', 'monthly 2026-03'],
      '2026-03-30': ['last 2', 'daily 2026-03-30'],
      '2026-03-29': ['last 3', 'daily 2026-03-29', 'weekly 2026-W13'],
      '2026-03-28': ['daily 2026-03-28'],
      '2026-03-27': ['daily 2026-03-27'],
      '2026-03-22': ['weekly 2026-W12'],
      '2026-02-28': ['monthly 2026-02'],
    });
  });

  it('does not mutate its input', () => {
    const input = [at('x', '2026-11-20T10:00:00Z'), at('y', '2026-11-21T10:00:00Z')];
    const copy = input.map((b) => ({ ...b }));
    applyPolicy(input, { keepLast: 1 }, NOW);
    expect(input).toEqual(copy);
  });

  it('running backups are always kept and not counted; failed ones are always removed', () => {
    const ds = applyPolicy(
      [
        at('run-new', '2026-11-21T22:00:00Z', 'running'),
        at('fail-new', '2026-11-21T21:00:00Z', 'failed'),
        at('ok-2', '2026-11-21T20:00:00Z', 'complete'),
        at('ok-1', '2026-11-20T20:00:00Z'), // no status means complete
        at('run-stale', '2026-10-01T20:00:00Z', 'running'),
      ],
      { keepLast: 1, keepWithin: 7 * DAY },
      NOW,
    );
    expect(ds).toEqual([
      { id: 'run-new', keep: true, reasons: ['running'] },
      { id: 'fail-new', keep: false, reasons: ['failed'] }, // even inside keep-within
      { id: 'ok-2', keep: true, reasons: ['last 1', 'within 7d'] },
      { id: 'ok-1', keep: true, reasons: ['within 7d'] },
      { id: 'run-stale', keep: true, reasons: ['running'] },
    ]);
  });

  it('keep-last counts only complete backups', () => {
    const ds = applyPolicy(
      [at('r', '2026-11-21T03:00:00Z', 'running'), at('f', '2026-11-21T02:00:00Z', 'failed'), at('c2', '2026-11-21T01:00:00Z'), at('c1', '2026-11-20T01:00:00Z')],
      { keepLast: 2 },
      NOW,
    );
    expect(keptMap(ds)).toEqual({ r: ['running'], c2: ['last 1'], c1: ['last 2'] });
  });

  it('an empty policy keeps everything, failed included, with reason "no policy"', () => {
    const input = [at('a', '2026-11-21T01:00:00Z'), at('f', '2026-11-20T01:00:00Z', 'failed'), at('r', '2026-11-19T01:00:00Z', 'running')];
    for (const p of [{}, { keepLast: 0, keepDaily: 0, keepWithin: 0 }] satisfies RetentionPolicy[]) {
      expect(isEmptyPolicy(p)).toBe(true);
      expect(applyPolicy(input, p, NOW)).toEqual([
        { id: 'a', keep: true, reasons: ['no policy'] },
        { id: 'f', keep: true, reasons: ['no policy'] },
        { id: 'r', keep: true, reasons: ['no policy'] },
      ]);
    }
    expect(isEmptyPolicy({ keepYearly: 1 })).toBe(false);
    expect(isEmptyPolicy({ keepWithin: 1 })).toBe(false);
  });

  it('no backups gives no decisions', () => {
    expect(applyPolicy([], { keepLast: 3 }, NOW)).toEqual([]);
  });

  it('a backup matched by no rule says so', () => {
    const ds = applyPolicy([at('new', '2026-11-21T01:00:00Z'), at('old', '2026-11-20T01:00:00Z')], { keepYearly: 1 }, NOW);
    expect(ds).toEqual([
      { id: 'new', keep: true, reasons: ['yearly 2026'] },
      { id: 'old', keep: false, reasons: ['not matched by any rule'] },
    ]);
  });
});

describe('applyPolicy: invalid input', () => {
  it.each([
    [{ keepDaily: -1 }, 'keepDaily'],
    [{ keepLast: 1.5 }, 'keepLast'],
    [{ keepWeekly: Number.NaN }, 'keepWeekly'],
    [{ keepWithin: -5 }, 'keepWithin'],
    [{ keepWithin: Infinity }, 'keepWithin'],
  ] satisfies [RetentionPolicy, string][])('rejects policy %j with USAGE', (policy, field) => {
    expectCode(() => applyPolicy([], policy, NOW), 'USAGE', field);
    expectCode(() => validatePolicy(policy), 'USAGE', field);
  });

  it('rejects duplicate ids, invalid times and an invalid now with INTERNAL', () => {
    const a = at('a', '2026-11-21T01:00:00Z');
    expectCode(() => applyPolicy([a, at('a', '2026-11-20T01:00:00Z')], { keepLast: 1 }, NOW), 'INTERNAL', '"a" appears twice');
    expectCode(() => applyPolicy([at('bad', 'not a date')], { keepLast: 1 }, NOW), 'INTERNAL', '"bad" has an invalid time');
    expectCode(() => applyPolicy([a], { keepLast: 1 }, new Date(Number.NaN)), 'INTERNAL', '`now` is an invalid Date');
    const weird = { id: 'w', time: new Date(), status: 'paused' } as unknown as PolicyInput;
    expectCode(() => applyPolicy([weird], { keepLast: 1 }, NOW), 'INTERNAL', 'unknown status "paused"');
  });
});

describe('applyPolicy: local time zone', () => {
  const savedTz = process.env['TZ'];
  const useTz = (tz: string): void => {
    process.env['TZ'] = tz;
  };
  afterAll(() => {
    if (savedTz === undefined) delete process.env['TZ'];
    else process.env['TZ'] = savedTz;
  });

  describe('Asia/Kolkata (UTC+05:30)', () => {
    beforeAll(() => useTz('Asia/Kolkata'));
    // 18:45Z = 00:15 IST (22nd), 19:15Z = 00:45 IST, 19:40Z = 01:10 IST.
    const backups = [at('A', '2026-11-21T18:45:00Z'), at('B', '2026-11-21T19:15:00Z'), at('C', '2026-11-21T19:40:00Z')];

    it('hour boundaries follow the local clock', () => {
      expect(keptMap(applyPolicy(backups, { keepHourly: 2 }, NOW))).toEqual({
        C: ['hourly 2026-11-21T19'],
        A: ['hourly 2026-11-21T18'],
      });
      expect(keptMap(applyPolicy(backups, { keepHourly: 2 }, NOW, { timeZone: 'local' }))).toEqual({
        C: ['hourly 2026-11-22T01'],
        B: ['hourly 2026-11-22T00'],
      });
    });

    it('day boundaries follow the local calendar', () => {
      const days = [at('late', '2026-11-21T19:00:00Z'), at('early', '2026-11-21T17:00:00Z')];
      expect(keptMap(applyPolicy(days, { keepDaily: 2 }, NOW))).toEqual({ late: ['daily 2026-11-21'] });
      expect(keptMap(applyPolicy(days, { keepDaily: 2 }, NOW, { timeZone: 'local' }))).toEqual({
        late: ['daily 2026-11-22'],
        early: ['daily 2026-11-21'],
      });
    });
  });

  describe('America/New_York (UTC-05:00 in November)', () => {
    beforeAll(() => useTz('America/New_York'));
    // 2026-11-23T03:00Z is Sunday 22:00 local: ISO week 47 locally, week 48 in UTC.
    const backups = [at('X', '2026-11-23T03:00:00Z'), at('Y', '2026-11-22T12:00:00Z')];

    it('the zone is in effect for this test', () => {
      expect(new Date('2026-11-23T03:00:00Z').getDate()).toBe(22);
    });

    it('week boundaries follow the local calendar only when asked', () => {
      expect(keptMap(applyPolicy(backups, { keepWeekly: 2 }, NOW))).toEqual({
        X: ['weekly 2026-W48'],
        Y: ['weekly 2026-W47'],
      });
      expect(keptMap(applyPolicy(backups, { keepWeekly: 2 }, NOW, { timeZone: 'local' }))).toEqual({
        X: ['weekly 2026-W47'],
      });
    });

    it('month boundaries follow the local calendar', () => {
      // 2026-02-01T03:00Z is 2026-01-31 22:00 EST.
      const t = new Date('2026-02-01T03:00:00Z');
      expect(periodKey(t, 'monthly')).toBe('2026-02');
      expect(periodKey(t, 'monthly', 'local')).toBe('2026-01');
      expect(periodKey(new Date('2027-01-01T04:00:00Z'), 'yearly', 'local')).toBe('2026');
    });
  });
});
