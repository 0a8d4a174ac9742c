// The NBD client against QEMU's servers: qemu-nbd (raw and qcow2, `-B` dirty bitmap made with
// `qemu-img bitmap` and written with `qemu-io`, `-A` allocation depth, unix and TCP) and
// qemu-storage-daemon. Data read must equal the source byte for byte (sha256) for random,
// zero and sparse regions, unaligned sizes and the very end; dirty extents must equal what
// was written after the bitmap was created.
import { randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPullbackError } from '../../src/errors.js';
import {
  BASE_ALLOCATION,
  NBD_STATE_HOLE,
  NBD_STATE_ZERO,
  NbdClient,
  NbdPool,
  QEMU_ALLOCATION_DEPTH,
  getExtents,
  listExports,
  listMetaContexts,
  parseNbdUri,
  type Extent,
  type LabelledExtent,
} from '../../src/nbd/index.js';
import { execFileP, makeTempDir, qemuIo, qemuIoWrite, sha256, startQemuNbd, startQsd, type RunningServer } from './servers.js';

const KiB = 1024;
const MiB = 1024 * 1024;

let tmp: { dir: string; remove(): Promise<void> };
const servers: RunningServer[] = [];
const clients: Array<{ close(): Promise<void> }> = [];

async function track<T extends { close(): Promise<void> }>(c: Promise<T>): Promise<T> {
  const v = await c;
  clients.push(v);
  return v;
}

// ---- raw fixture: random, explicit zeros, a hole, an unaligned random run, a random tail.
const RAW_SIZE = 8 * MiB + 1536; // a multiple of 512 (qemu rounds raw sizes), not of 4 KiB
const rawExpected = Buffer.alloc(RAW_SIZE);
let raw: RunningServer;
let rawPath: string;

// ---- qcow2 fixture with a dirty bitmap: writes before and after `qemu-img bitmap --add`.
const Q_SIZE = 16 * MiB + 2560;
const GRANULARITY = 64 * KiB; // qcow2 default cluster size = default bitmap granularity
const qExpected = Buffer.alloc(Q_SIZE);
const dirtyWrites: Array<[number, number]> = [];
let qcow: RunningServer;
let qcowPath: string;

beforeAll(async () => {
  tmp = await makeTempDir('qemu');
  rawPath = join(tmp.dir, 'disk.raw');
  const fh = await open(rawPath, 'w');
  await fh.truncate(RAW_SIZE);
  const put = async (offset: number, data: Buffer): Promise<void> => {
    data.copy(rawExpected, offset);
    await fh.write(data, 0, data.length, offset);
  };
  await put(0, randomBytes(MiB));
  await put(MiB, Buffer.alloc(MiB)); // allocated zeros
  await put(5 * MiB, randomBytes(12345)); // [2 MiB, 5 MiB) stays a hole
  await put(8 * MiB - 4096, randomBytes(4096 + 1536)); // up to the very last byte
  await fh.close();
  raw = await startQemuNbd(tmp.dir, rawPath, { format: 'raw', name: 'raw', exportName: 'disk' });
  servers.push(raw);

  qcowPath = join(tmp.dir, 'disk.qcow2');
  await execFileP('qemu-img', ['create', '-q', '-f', 'qcow2', qcowPath, String(Q_SIZE)]);
  const qput = async (offset: number, data: Buffer, dirty: boolean): Promise<void> => {
    await qemuIoWrite(tmp.dir, qcowPath, 'qcow2', offset, data);
    data.copy(qExpected, offset);
    if (dirty) dirtyWrites.push([offset, data.length]);
  };
  await qput(0, randomBytes(4 * MiB), false);
  await qput(8 * MiB, randomBytes(MiB), false);
  await execFileP('qemu-img', ['bitmap', '--add', qcowPath, 'bm0']);
  await qput(MiB + 4096, randomBytes(60 * KiB), true);
  await qput(8 * MiB + 128 * KiB, randomBytes(64 * KiB), true);
  await qemuIo(qcowPath, 'qcow2', [`write -z ${12 * MiB} ${64 * KiB}`]);
  qExpected.fill(0, 12 * MiB, 12 * MiB + 64 * KiB);
  dirtyWrites.push([12 * MiB, 64 * KiB]);
  await qput(Q_SIZE - 3000, randomBytes(3000), true);
  qcow = await startQemuNbd(tmp.dir, qcowPath, { format: 'qcow2', bitmap: 'bm0', name: 'qcow', exportName: 'vda' });
  servers.push(qcow);
});

afterAll(async () => {
  await Promise.allSettled(clients.map((c) => c.close()));
  await Promise.allSettled(servers.map((s) => s.stop()));
  await tmp.remove();
});

/** Ranges written after the bitmap, widened to its granularity and merged: what must be dirty. */
function expectedDirty(): Array<[number, number]> {
  const ranges = dirtyWrites
    .map(([o, l]): [number, number] => [Math.floor(o / GRANULARITY) * GRANULARITY, Math.min(Math.ceil((o + l) / GRANULARITY) * GRANULARITY, Q_SIZE)])
    .sort((a, b) => a[0] - b[0]);
  const out: Array<[number, number]> = [];
  for (const [s, e] of ranges) {
    const last = out[out.length - 1];
    if (last !== undefined && last[1] >= s) last[1] = Math.max(last[1], e);
    else out.push([s, e]);
  }
  return out;
}

function dirtyRanges(extents: LabelledExtent[]): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const e of extents.filter((x) => x.dirty)) {
    const last = out[out.length - 1];
    if (last !== undefined && last[1] === e.offset) last[1] += e.length;
    else out.push([e.offset, e.offset + e.length]);
  }
  return out;
}

function expectContiguous(extents: Array<{ offset: number; length: number }>, start: number, end: number): void {
  let p = start;
  for (const e of extents) {
    expect(e.offset).toBe(p);
    expect(e.length).toBeGreaterThan(0);
    p += e.length;
  }
  expect(p).toBe(end);
}

function flagsAt(extents: Extent[], offset: number): number {
  const e = extents.find((x) => x.offset <= offset && offset < x.offset + x.length);
  if (e === undefined) throw new Error(`no extent at ${offset}`);
  return e.flags;
}

// Unaligned lengths and offsets, including the very end of the disk.
const ODD_READS: Array<[number, number]> = [
  [0, 1],
  [1, 4095],
  [4095, 12345],
  [MiB - 100, 200], // random -> explicit zeros
  [2 * MiB - 7, 3 * MiB + 13], // zeros -> hole -> random
  [5 * MiB + 12340, 10], // end of the unaligned random run
  [RAW_SIZE - 1, 1],
  [RAW_SIZE - 5000, 5000],
  [RAW_SIZE - 1536, 1536],
];

describe('qemu-nbd, raw image', () => {
  it('reads the whole export byte for byte (structured replies)', async () => {
    const c = await track(NbdClient.connect(raw.target));
    expect(c.size).toBe(RAW_SIZE);
    expect(c.structuredReplies).toBe(true);
    expect(c.readOnly).toBe(true);
    expect(sha256(await c.read(0, c.size))).toBe(sha256(rawExpected));
  });

  it('reads unaligned ranges and the very end of the disk', async () => {
    const c = await track(NbdClient.connect(raw.target));
    for (const [o, l] of ODD_READS) {
      expect(sha256(await c.read(o, l)), `read(${o}, ${l})`).toBe(sha256(rawExpected.subarray(o, o + l)));
    }
  });

  it('reads with simple replies when structured replies are off', async () => {
    const c = await track(NbdClient.connect(raw.target, { structuredReplies: false }));
    expect(c.structuredReplies).toBe(false);
    expect(sha256(await c.read(0, c.size))).toBe(sha256(rawExpected));
    for (const [o, l] of ODD_READS) expect(sha256(await c.read(o, l))).toBe(sha256(rawExpected.subarray(o, o + l)));
  });

  it('spreads a read over several connections (NBD_FLAG_CAN_MULTI_CONN) with small requests', async () => {
    const pool = await track(NbdPool.open(raw.target, { connections: 3, requestSize: 64 * KiB, maxInflight: 4 }));
    expect(pool.primary.canMultiConn).toBe(true);
    expect(pool.connections).toBe(3);
    expect(sha256(await pool.read(0, pool.size))).toBe(sha256(rawExpected));
    expect(sha256(await pool.read(4095, 3 * MiB + 1))).toBe(sha256(rawExpected.subarray(4095, 3 * MiB + 4096)));
    // All three connections carried requests, and nothing is left pending.
    expect(pool.clients.map((c) => c.requestsSent > 10)).toEqual([true, true, true]);
    expect(pool.clients.every((c) => c.pending === 0)).toBe(true);
  });

  it('reports base:allocation (hole, data) the same with and without NBD_CMD_FLAG_REQ_ONE', async () => {
    const c = await track(NbdClient.connect(raw.target, { metaContexts: [BASE_ALLOCATION] }));
    const all = await c.blockStatus(BASE_ALLOCATION, 0, c.size);
    expectContiguous(all, 0, c.size);
    expect(flagsAt(all, 0)).toBe(0);
    expect(flagsAt(all, 3 * MiB)).toBe(NBD_STATE_HOLE | NBD_STATE_ZERO);
    expect(flagsAt(all, 5 * MiB)).toBe(0);
    const one = await c.blockStatus(BASE_ALLOCATION, 0, c.size, { reqOne: true });
    expect(one).toEqual(all);
    // A sub-range is clipped to exactly that range.
    const part = await c.blockStatus(BASE_ALLOCATION, 3 * MiB + 1, 3 * MiB);
    expectContiguous(part, 3 * MiB + 1, 6 * MiB + 1);
    const ext = await getExtents(c);
    expectContiguous(ext, 0, c.size);
    expect(ext.every((e) => e.dirty)).toBe(true); // no bitmap: a full backup reads everything
    expect(ext.find((e) => e.offset <= 3 * MiB && 3 * MiB < e.offset + e.length)).toMatchObject({ kind: 'hole', zero: true });
    expect(ext[0]).toMatchObject({ offset: 0, kind: 'data', zero: false });
  });

  it('lists exports and metadata contexts, and names what is missing', async () => {
    const exports = await listExports(raw.target);
    expect(exports.map((e) => e.name)).toEqual(['disk']);
    expect(await listMetaContexts(raw.target, [])).toContain(BASE_ALLOCATION);
    const e1 = await NbdClient.connect({ ...raw.target, exportName: 'nope' }).catch((e: unknown) => e);
    expect(isPullbackError(e1, 'NBD_OPTION')).toBe(true);
    expect(String(e1)).toMatch(/NBD_OPT_GO .* failed with NBD_REP_ERR_UNKNOWN.*export 'nope' does not exist/);
    const e2 = await NbdClient.connect(raw.target, { metaContexts: ['qemu:dirty-bitmap:nothere'] }).catch((e: unknown) => e);
    expect(isPullbackError(e2, 'NBD_OPTION')).toBe(true);
    expect(String(e2)).toMatch(/does not offer metadata context 'qemu:dirty-bitmap:nothere' \(it offers: base:allocation/);
  });

  it('refuses bad arguments and use after close', async () => {
    const c = await NbdClient.connect(raw.target);
    await expect(c.read(RAW_SIZE - 10, 11)).rejects.toMatchObject({ code: 'NBD_INVALID_ARGUMENT' });
    await expect(c.blockStatus(BASE_ALLOCATION, 0, 10)).rejects.toMatchObject({ code: 'NBD_INVALID_ARGUMENT' });
    await c.close();
    await expect(c.read(0, 10)).rejects.toMatchObject({ code: 'NBD_CLOSED' });
  });

  it('works over TCP with an nbd:// URI', async () => {
    let tcp: RunningServer | undefined;
    let port = 0;
    for (let attempt = 0; tcp === undefined; attempt++) {
      port = 20000 + Math.floor(Math.random() * 30000);
      try {
        tcp = await startQemuNbd(tmp.dir, rawPath, { format: 'raw', name: `tcp${attempt}`, exportName: 'disk', tcpPort: port });
      } catch (e) {
        if (attempt === 4) throw e; // five random ports busy: give up
      }
    }
    servers.push(tcp);
    const target = parseNbdUri(`nbd://127.0.0.1:${port}/disk`);
    const c = await track(NbdClient.connect(target));
    expect(sha256(await c.read(0, c.size))).toBe(sha256(rawExpected));
  });
});

describe('qemu-nbd, qcow2 image with a dirty bitmap (-B)', () => {
  const BITMAP = 'qemu:dirty-bitmap:bm0';

  it('reads the image byte for byte, and the dirty extents are exactly what was written since', async () => {
    const c = await track(NbdClient.connect(qcow.target, { metaContexts: [BASE_ALLOCATION, BITMAP] }));
    expect(c.size).toBe(Q_SIZE);
    expect([...c.metaContexts.keys()].sort()).toEqual([BASE_ALLOCATION, BITMAP]);
    expect(sha256(await c.read(0, c.size))).toBe(sha256(qExpected));
    expect(sha256(await c.read(Q_SIZE - 3001, 3001))).toBe(sha256(qExpected.subarray(Q_SIZE - 3001)));
    const ext = await getExtents(c, { dirtyBitmap: BITMAP });
    expectContiguous(ext, 0, Q_SIZE);
    expect(dirtyRanges(ext)).toEqual(expectedDirty());
    // The zeroed range is dirty and reads as zeros; untouched space is a clean hole.
    expect(ext.find((e) => e.offset <= 12 * MiB && 12 * MiB < e.offset + e.length)).toMatchObject({ dirty: true, zero: true });
    expect(ext.find((e) => e.offset <= 6 * MiB && 6 * MiB < e.offset + e.length)).toMatchObject({ dirty: false, kind: 'hole' });
    // Raw bitmap extents agree with the merged view.
    const bm = await c.blockStatus(BITMAP, 0, Q_SIZE, { reqOne: true });
    expect(bm.filter((e) => e.flags === 1).map((e) => [e.offset, e.offset + e.length])).toEqual(expectedDirty());
  });

  it('exposes qemu:allocation-depth (-A)', async () => {
    const s = await startQemuNbd(tmp.dir, qcowPath, { format: 'qcow2', allocationDepth: true, name: 'depth' });
    servers.push(s);
    const c = await track(NbdClient.connect(s.target, { metaContexts: [QEMU_ALLOCATION_DEPTH] }));
    const depth = await c.blockStatus(QEMU_ALLOCATION_DEPTH, 0, c.size);
    expectContiguous(depth, 0, c.size);
    expect(flagsAt(depth, 0)).toBe(1); // allocated in the top (only) layer
    expect(flagsAt(depth, 6 * MiB)).toBe(0); // unallocated
  });
});

describe('qemu-storage-daemon export', () => {
  it('reads the qcow2 export and its bitmap like qemu-nbd does', async () => {
    const s = await startQsd(tmp.dir, qcowPath, { exportName: 'vda', bitmaps: ['bm0'] });
    servers.push(s);
    const c = await track(NbdClient.connect(s.target, { metaContexts: [BASE_ALLOCATION, 'qemu:dirty-bitmap:bm0'] }));
    expect(sha256(await c.read(0, c.size))).toBe(sha256(qExpected));
    const ext = await getExtents(c, { dirtyBitmap: 'qemu:dirty-bitmap:bm0' });
    expect(dirtyRanges(ext)).toEqual(expectedDirty());
    expect(await listMetaContexts(s.target, ['qemu:'])).toEqual(expect.arrayContaining(['qemu:dirty-bitmap:bm0', 'qemu:allocation-depth']));
  });
});
