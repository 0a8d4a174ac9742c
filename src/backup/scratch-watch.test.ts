import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { defaultScratchFloor, scratchSpace, watchScratch } from './scratch-watch.js';

const MiB = 1024 * 1024;

describe('scratch watch', () => {
  it('keeps 5% of the scratch filesystem free, between 64 MiB and 1 GiB', () => {
    expect(defaultScratchFloor(100 * MiB)).toBe(64 * MiB);
    expect(defaultScratchFloor(4096 * MiB)).toBe(Math.floor(4096 * MiB * 0.05));
    expect(defaultScratchFloor(1024 * 1024 * MiB)).toBe(1024 * MiB);
  });

  it('reports once when free space is below the floor, and never after stop()', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pullback-scratch-watch-'));
    try {
      const { free } = await scratchSpace(dir);
      const low: number[] = [];
      const w = watchScratch(dir, free + 1024 * MiB, 10, (s) => low.push(s.free));
      await sleep(100);
      w.stop();
      expect(low).toHaveLength(1);
      const quiet: number[] = [];
      const w2 = watchScratch(dir, 0, 10, (s) => quiet.push(s.free));
      await sleep(60);
      w2.stop();
      const w3 = watchScratch(dir, free + 1024 * MiB, 10, (s) => quiet.push(s.free));
      w3.stop();
      await sleep(60);
      expect(quiet).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
