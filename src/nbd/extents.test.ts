import { describe, expect, it } from 'vitest';
import { NBD_STATE_HOLE, NBD_STATE_ZERO } from './constants.js';
import { kindOf, mergeExtents } from './extents.js';

const HZ = NBD_STATE_HOLE | NBD_STATE_ZERO;

describe('kindOf', () => {
  it('labels base:allocation flags', () => {
    expect(kindOf(0)).toBe('data');
    expect(kindOf(NBD_STATE_ZERO)).toBe('zero');
    expect(kindOf(NBD_STATE_HOLE)).toBe('hole');
    expect(kindOf(HZ)).toBe('hole');
    expect(kindOf(4)).toBe('data'); // unknown bits are ignored
  });
});

describe('mergeExtents', () => {
  it('splits at the boundaries of both maps and labels each piece', () => {
    const alloc = [
      { offset: 0, length: 100, flags: 0 },
      { offset: 100, length: 100, flags: HZ },
      { offset: 200, length: 56, flags: NBD_STATE_ZERO },
    ];
    const dirty = [
      { offset: 0, length: 50, flags: 0 },
      { offset: 50, length: 100, flags: 1 },
      { offset: 150, length: 106, flags: 0 },
    ];
    expect(mergeExtents(alloc, dirty, 0, 256)).toEqual([
      { offset: 0, length: 50, dirty: false, kind: 'data', zero: false },
      { offset: 50, length: 50, dirty: true, kind: 'data', zero: false },
      { offset: 100, length: 50, dirty: true, kind: 'hole', zero: true },
      { offset: 150, length: 50, dirty: false, kind: 'hole', zero: true },
      { offset: 200, length: 56, dirty: false, kind: 'zero', zero: true },
    ]);
  });

  it('coalesces equal neighbours and treats everything as dirty without a bitmap', () => {
    const alloc = [
      { offset: 0, length: 10, flags: 0 },
      { offset: 10, length: 10, flags: 0 },
      { offset: 20, length: 10, flags: NBD_STATE_HOLE },
    ];
    expect(mergeExtents(alloc, null, 0, 30)).toEqual([
      { offset: 0, length: 20, dirty: true, kind: 'data', zero: false },
      { offset: 20, length: 10, dirty: true, kind: 'hole', zero: false },
    ]);
  });

  it('gives the safe answer (dirty data) where a map has gaps, and honours a sub-range', () => {
    const alloc = [{ offset: 1000, length: 500, flags: HZ }];
    const dirty = [{ offset: 1200, length: 100, flags: 0 }];
    expect(mergeExtents(alloc, dirty, 900, 700)).toEqual([
      { offset: 900, length: 100, dirty: true, kind: 'data', zero: false },
      { offset: 1000, length: 200, dirty: true, kind: 'hole', zero: true },
      { offset: 1200, length: 100, dirty: false, kind: 'hole', zero: true },
      { offset: 1300, length: 200, dirty: true, kind: 'hole', zero: true },
      { offset: 1500, length: 100, dirty: true, kind: 'data', zero: false },
    ]);
  });

  it('returns nothing for an empty range', () => {
    expect(mergeExtents([], null, 5, 0)).toEqual([]);
  });
});
