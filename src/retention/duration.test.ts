// Table tests for retention durations: syntax, errors, and calendar arithmetic (UTC and a
// DST-observing local zone). Expected instants are written out by hand.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPullbackError } from '../errors.js';
import { durationCutoff, durationMs, formatDuration, parseDuration } from './duration.js';

const zero = { years: 0, months: 0, weeks: 0, days: 0, hours: 0 };
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

describe('parseDuration', () => {
  it.each([
    ['7d', { ...zero, days: 7 }],
    ['2w', { ...zero, weeks: 2 }],
    ['36h', { ...zero, hours: 36 }],
    ['1y2m', { ...zero, years: 1, months: 2 }],
    ['90m', { ...zero, months: 90 }], // m is months, as in restic
    ['1y2m3w4d5h', { years: 1, months: 2, weeks: 3, days: 4, hours: 5 }],
    ['2y5m7d3h', { ...zero, years: 2, months: 5, days: 7, hours: 3 }], // restic docs example
    ['  7d\n', { ...zero, days: 7 }],
    ['0y7d', { ...zero, days: 7 }],
    ['007d', { ...zero, days: 7 }],
    ['1000000h', { ...zero, hours: 1_000_000 }],
  ])('parses %j', (text, expected) => {
    expect(parseDuration(text)).toEqual(expected);
  });

  it.each([
    ['', 'empty'],
    ['   ', 'empty'],
    ['7', 'has no unit'],
    ['d', 'expected a number at position 1'],
    ['7x', 'unknown unit "x"'],
    ['7D', 'unknown unit "D"'],
    ['7 d', 'has no unit'],
    ['-7d', 'expected a number at position 1'],
    ['1.5d', 'has no unit'],
    ['7d!', 'expected a number at position 3'],
    ['2d1y', 'repeated or out of order'],
    ['1d1d', 'repeated or out of order'],
    ['0d', 'zero'],
    ['0y0h', 'zero'],
    ['1000001d', 'too large'],
  ])('rejects %j with USAGE (%s)', (text, why) => {
    let caught: unknown;
    try {
      parseDuration(text);
    } catch (e) {
      caught = e;
    }
    expect(isPullbackError(caught, 'USAGE')).toBe(true);
    const msg = (caught as Error).message;
    expect(msg).toContain(JSON.stringify(text));
    expect(msg).toContain(why);
    expect(msg).toContain('e.g. 7d'); // says what to do
  });

  it.each(['7d', '2w', '36h', '1y2m', '1y2m3w4d5h', '90m'])('formatDuration inverts parseDuration for %s', (text) => {
    expect(formatDuration(parseDuration(text))).toBe(text);
  });
});

describe('durationCutoff (UTC)', () => {
  const cut = (now: string, d: string): string => durationCutoff(new Date(now), parseDuration(d)).toISOString();

  it.each([
    ['2026-11-21T12:00:00.000Z', '7d', '2026-11-14T12:00:00.000Z'],
    ['2026-11-21T12:00:00.000Z', '2w', '2026-11-07T12:00:00.000Z'],
    ['2026-11-21T12:00:00.000Z', '36h', '2026-11-20T00:00:00.000Z'],
    ['2026-03-31T10:00:00.000Z', '1m', '2026-02-28T10:00:00.000Z'], // clamped to month end
    ['2024-03-31T10:00:00.000Z', '1m', '2024-02-29T10:00:00.000Z'], // leap year
    ['2026-05-31T10:00:00.000Z', '1m', '2026-04-30T10:00:00.000Z'],
    ['2024-02-29T00:00:00.000Z', '1y', '2023-02-28T00:00:00.000Z'],
    ['2026-01-15T00:00:00.000Z', '2m', '2025-11-15T00:00:00.000Z'], // across a year
    ['2026-01-15T00:00:00.000Z', '13m', '2024-12-15T00:00:00.000Z'],
    ['2026-03-01T00:30:00.000Z', '1d', '2026-02-28T00:30:00.000Z'],
    ['2026-05-10T12:00:00.000Z', '1y2m3d4h', '2025-03-07T08:00:00.000Z'], // y, m, then d, then h
    ['2026-03-31T00:00:00.000Z', '1m1d', '2026-02-27T00:00:00.000Z'], // clamp first, then days
    ['0100-03-01T00:00:00.000Z', '1y', '0099-03-01T00:00:00.000Z'], // no 0..99 => 19xx mapping
  ])('%s minus %s is %s', (now, d, expected) => {
    expect(cut(now, d)).toBe(expected);
  });

  it('durationMs counts calendar months by their real length', () => {
    expect(durationMs(parseDuration('7d'), new Date('2026-11-21T12:00:00Z'))).toBe(7 * DAY);
    expect(durationMs(parseDuration('1m'), new Date('2026-03-31T00:00:00Z'))).toBe(31 * DAY);
    expect(durationMs(parseDuration('1m'), new Date('2026-03-15T00:00:00Z'))).toBe(28 * DAY);
    expect(durationMs(parseDuration('1y'), new Date('2025-01-01T00:00:00Z'))).toBe(366 * DAY);
  });

  it('rejects a cutoff outside the Date range with USAGE', () => {
    expect(() => durationCutoff(new Date('2026-01-01T00:00:00Z'), parseDuration('1000000y'))).toThrow(
      expect.objectContaining({ code: 'USAGE' }),
    );
  });
});

describe('durationCutoff (local time, America/New_York)', () => {
  const savedTz = process.env['TZ'];
  beforeAll(() => {
    process.env['TZ'] = 'America/New_York';
  });
  afterAll(() => {
    if (savedTz === undefined) delete process.env['TZ'];
    else process.env['TZ'] = savedTz;
  });

  // US DST began 2026-03-08 02:00 local: 12:00 EDT on 03-08 is 16:00Z, 12:00 EST on 03-07 is 17:00Z.
  const now = new Date('2026-03-08T16:00:00Z');

  it('the zone is in effect for this test', () => {
    expect(now.getHours()).toBe(12);
  });

  it('one local calendar day across the DST switch is 23 hours', () => {
    expect(durationCutoff(now, parseDuration('1d'), { timeZone: 'local' }).toISOString()).toBe('2026-03-07T17:00:00.000Z');
    expect(durationMs(parseDuration('1d'), now, { timeZone: 'local' })).toBe(23 * HOUR);
  });

  it('in UTC mode the same day is 24 hours, and hours are always exact', () => {
    expect(durationMs(parseDuration('1d'), now)).toBe(24 * HOUR);
    expect(durationMs(parseDuration('24h'), now, { timeZone: 'local' })).toBe(24 * HOUR);
  });

  it('month clamping uses the local calendar date', () => {
    // 2026-04-01T02:00Z is 2026-03-31 22:00 EDT; one month back is 2026-02-28 22:00 EST = 03-01T03:00Z.
    const t = durationCutoff(new Date('2026-04-01T02:00:00Z'), parseDuration('1m'), { timeZone: 'local' });
    expect(t.toISOString()).toBe('2026-03-01T03:00:00.000Z');
  });
});
