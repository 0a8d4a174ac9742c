import { describe, expect, it } from 'vitest';
import { chunkCount, chunkLength, planChunks, type PlanExtent } from './plan.js';

const MiB = 1024 * 1024;
const ext = (offset: number, length: number, kind: PlanExtent['kind'], dirty = false): PlanExtent => ({
  offset,
  length,
  kind,
  dirty,
});

describe('planChunks', () => {
  it('full: reads chunks holding data, skips zero and hole chunks', () => {
    const plan = planChunks(
      [ext(0, MiB, 'data'), ext(MiB, 2 * MiB, 'hole'), ext(3 * MiB, MiB, 'zero'), ext(4 * MiB, 4096, 'data')],
      { level: 'full', chunkSize: MiB, diskSize: 5 * MiB },
    );
    expect(plan.chunks).toEqual([
      { index: 0, action: 'read' },
      { index: 4, action: 'read' },
    ]);
    expect(plan.bytesToRead).toBe(2 * MiB);
  });

  it('full: a chunk that is partly data is read whole, including the hole part', () => {
    const plan = planChunks([ext(0, 4096, 'hole'), ext(4096, 4096, 'data'), ext(8192, MiB - 8192, 'hole')], {
      level: 'full',
      chunkSize: MiB,
      diskSize: MiB,
    });
    expect(plan.chunks).toEqual([{ index: 0, action: 'read' }]);
  });

  it('incremental: only dirty chunks; dirty zero/hole chunks become zero markers', () => {
    const plan = planChunks(
      [
        ext(0, MiB, 'data', false),
        ext(MiB, MiB, 'data', true),
        ext(2 * MiB, MiB, 'hole', true),
        ext(3 * MiB, MiB, 'zero', true),
        ext(4 * MiB, MiB, 'data', false),
      ],
      { level: 'incremental', chunkSize: MiB, diskSize: 5 * MiB },
    );
    expect(plan.chunks).toEqual([
      { index: 1, action: 'read' },
      { index: 2, action: 'zero' },
      { index: 3, action: 'zero' },
    ]);
    expect(plan.bytesToRead).toBe(MiB);
  });

  it('incremental: data anywhere in a dirty chunk wins over zero in the same chunk', () => {
    const plan = planChunks([ext(0, 4096, 'zero', true), ext(4096, 4096, 'data', true), ext(8192, 4096, 'hole', true)], {
      level: 'incremental',
      chunkSize: MiB,
      diskSize: MiB,
    });
    expect(plan.chunks).toEqual([{ index: 0, action: 'read' }]);
  });

  it('incremental: a dirty zero write inside a chunk whose clean rest holds data reads the chunk', () => {
    // The regression bench/virtnbdbackup.sh found: 256 KiB zeroed inside a 1 MiB chunk of data
    // was recorded as an all-zero chunk, and the chunk's other 768 KiB were lost.
    const plan = planChunks(
      [
        ext(0, 256 * 1024, 'data', false),
        ext(256 * 1024, 256 * 1024, 'zero', true),
        ext(512 * 1024, 512 * 1024, 'data', false),
        ext(MiB, MiB, 'zero', true),
      ],
      { level: 'incremental', chunkSize: MiB, diskSize: 2 * MiB },
    );
    expect(plan.chunks).toEqual([
      { index: 0, action: 'read' },
      { index: 1, action: 'zero' },
    ]);
  });

  it('a hole that does not read as zero (HOLE without ZERO) is data', () => {
    const plan = planChunks([{ offset: 0, length: MiB, dirty: true, kind: 'hole', zero: false }], {
      level: 'incremental',
      chunkSize: MiB,
      diskSize: MiB,
    });
    expect(plan.chunks).toEqual([{ index: 0, action: 'read' }]);
  });

  it('a dirty extent spanning chunk boundaries touches every chunk it overlaps', () => {
    const plan = planChunks([ext(MiB - 1, 2 * MiB + 2, 'data', true)], {
      level: 'incremental',
      chunkSize: MiB,
      diskSize: 8 * MiB,
    });
    expect(plan.chunks.map((c) => c.index)).toEqual([0, 1, 2, 3]);
  });

  it('the short last chunk counts its real length and extents past the end are clipped', () => {
    const diskSize = 3 * MiB + 12345;
    const plan = planChunks([ext(3 * MiB, 2 * MiB, 'data', true)], { level: 'incremental', chunkSize: MiB, diskSize });
    expect(plan.chunks).toEqual([{ index: 3, action: 'read' }]);
    expect(plan.bytesToRead).toBe(12345);
    expect(chunkCount(diskSize, MiB)).toBe(4);
    expect(chunkLength(3, MiB, diskSize)).toBe(12345);
    expect(chunkLength(4, MiB, diskSize)).toBe(0);
  });

  it('unsorted extents give sorted chunks', () => {
    const plan = planChunks([ext(5 * MiB, 10, 'data'), ext(0, 10, 'data')], { level: 'full', chunkSize: MiB, diskSize: 8 * MiB });
    expect(plan.chunks.map((c) => c.index)).toEqual([0, 5]);
  });
});
