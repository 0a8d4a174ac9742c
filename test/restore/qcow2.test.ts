// The one-pass qcow2 writer's metadata against QEMU itself, at sizes the chain tests cannot
// reach: L1 tables over several clusters, L2 tables only where data is, more than one
// refcount block. Only metadata is written (data clusters stay holes in the file, which is
// all `qemu-img check` and `qemu-img map` look at), so multi-TiB images cost nothing.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { checkOutput, OutputTarget } from '../../src/restore/output.js';
import { planDisk } from '../../src/restore/plan.js';
import { dataChunkOffset, qcow2Layout } from '../../src/restore/qcow2-layout.js';
import { writeQcow2Metadata } from '../../src/restore/write-disk.js';
import { ChunkMap } from '../../src/store/index.js';
import { tempDir } from '../store/helpers.js';

const run = promisify(execFile);
const K = 1024;
const M = 1024 * K;
const G = 1024 * M;

let t: ReturnType<typeof tempDir>;
beforeAll(() => {
  t = tempDir('pullback-qcow2-');
});
afterAll(() => t.cleanup());

interface MapEntry {
  start: number;
  length: number;
  data?: boolean;
  offset?: number;
}

async function writeImage(name: string, map: ChunkMap): Promise<{ path: string; layout: ReturnType<typeof qcow2Layout> }> {
  const plan = planDisk(map);
  const layout = qcow2Layout(plan);
  const path = `${t.dir}/${name}.qcow2`;
  const target = OutputTarget.open(checkOutput(path, false, 'vda'), layout.fileSize, 'vda');
  try {
    await writeQcow2Metadata(target, layout, plan.data);
    await target.commit();
  } catch (e) {
    await target.discard();
    throw e;
  }
  return { path, layout };
}

async function check(path: string): Promise<void> {
  const r = await run('qemu-img', ['check', '--output=json', '-f', 'qcow2', path]);
  const j = JSON.parse(r.stdout) as Record<string, unknown>;
  expect(j['corruptions'] ?? 0).toBe(0);
  expect(j['leaks'] ?? 0).toBe(0);
  expect(j['check-errors'] ?? 0).toBe(0);
}

async function dataExtents(path: string): Promise<MapEntry[]> {
  const r = await run('qemu-img', ['map', '--output=json', '-f', 'qcow2', path], { maxBuffer: 64 * M });
  // `zero` is left out: data clusters of these images are holes in the file, which QEMU
  // reports as reading zero; only where guest ranges map matters here.
  return (JSON.parse(r.stdout) as MapEntry[]).filter((e) => e.data).map(({ start, length, offset }) => ({ start, length, offset } as MapEntry));
}

describe('qcow2 metadata accepted by QEMU', () => {
  test('5 TiB, three data chunks far apart: two L1 clusters, three L2 tables', async () => {
    const cs = 16 * M;
    const m = new ChunkMap('vda', 5 * 1024 * G, cs);
    const last = m.count - 1;
    for (const i of [0, 38, last]) m.setData(i, Buffer.alloc(32, i + 1));
    const { path, layout } = await writeImage('sparse5t', m);
    expect(layout.l1Clusters).toBe(2);
    expect(layout.l2Tables).toBe(3);
    await check(path);
    const info = JSON.parse((await run('qemu-img', ['info', '--output=json', path])).stdout) as Record<string, unknown>;
    expect(info['virtual-size']).toBe(5 * 1024 * G);
    expect(await dataExtents(path)).toEqual([
      { start: 0, length: cs, offset: dataChunkOffset(layout, 0) },
      { start: 38 * cs, length: cs, offset: dataChunkOffset(layout, 1) },
      { start: last * cs, length: cs, offset: dataChunkOffset(layout, 2) },
    ]);
  });

  test('3 GiB fully allocated at 64 KiB chunks: two refcount blocks, six L2 tables', async () => {
    const m = new ChunkMap('vda', 3 * G, 64 * K);
    for (let i = 0; i < m.count; i++) m.setData(i, Buffer.alloc(32, 1));
    const { path, layout } = await writeImage('full3g', m);
    expect(layout.refcountBlocks).toBe(2);
    await check(path);
    // Consecutive data chunks are consecutive in the file: QEMU sees one extent.
    expect(await dataExtents(path)).toEqual([
      { start: 0, length: 3 * G, offset: layout.dataOffset },
    ]);
  });

  test('refcount structures exactly at and just past one block', async () => {
    for (const n of [32760, 32761]) {
      const m = new ChunkMap('vda', 2 * G, 64 * K);
      for (let i = 0; i < n; i++) m.setData(32768 - n + i, Buffer.alloc(32, 2));
      const { path, layout } = await writeImage(`edge${n}`, m);
      expect(layout.refcountBlocks).toBe(n === 32760 ? 1 : 2);
      await check(path);
    }
  });

  test('short last chunk and no data at all', async () => {
    const m = new ChunkMap('vda', 5 * M + 512, M);
    m.setData(5, Buffer.alloc(32, 3));
    const { path, layout } = await writeImage('short', m);
    await check(path);
    expect(await dataExtents(path)).toEqual([{ start: 5 * M, length: 512, offset: dataChunkOffset(layout, 0) }]);
    const empty = await writeImage('empty', new ChunkMap('vda', 7 * M, M));
    await check(empty.path);
    expect(await dataExtents(empty.path)).toEqual([]);
  });
});
