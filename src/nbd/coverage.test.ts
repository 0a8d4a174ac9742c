import { describe, expect, it } from 'vitest';
import { Coverage } from './coverage.js';

describe('Coverage', () => {
  it('accepts in-order and out-of-order chunks and knows when the range is complete', () => {
    const c = new Coverage(1000, 100);
    expect(c.add(1050, 50)).toBeNull();
    expect(c.add(1000, 20)).toBeNull();
    expect(c.complete).toBe(false);
    expect(c.add(1020, 30)).toBeNull();
    expect(c.complete).toBe(true);
  });

  it('rejects chunks outside the request and overlaps', () => {
    const c = new Coverage(1000, 100);
    expect(c.add(990, 20)).toMatch(/outside the requested range \[1000, 1100\)/);
    expect(c.add(1090, 20)).toMatch(/outside/);
    expect(c.add(1010, 10)).toBeNull();
    expect(c.add(1040, 10)).toBeNull();
    expect(c.add(1015, 10)).toMatch(/overlaps bytes \[1015, 1020\)/);
    expect(c.add(1000, 11)).toMatch(/overlaps bytes \[1010, 1011\)/);
    expect(c.add(1045, 1)).toMatch(/overlaps/);
    expect(c.add(1020, 20)).toBeNull();
    expect(c.covered).toBe(40);
  });
});
