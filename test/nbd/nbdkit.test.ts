// The NBD client against nbdkit: memory (filled by nbdcopy), sparse-random (checked against
// libnbd's nbdcopy as an independent reader), data (exact expected bytes, a size that is no
// multiple of 512), pattern behind blocksize-policy (size constraints that nbdkit enforces
// with EINVAL), and an eval plugin that fails some reads with EIO.
import { randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BASE_ALLOCATION,
  NbdClient,
  NbdPool,
  NbdServerError,
  getExtents,
} from '../../src/nbd/index.js';
import { execFileP, makeTempDir, nbdcopySha256, sameBytes, sha256, startNbdkit, type RunningServer } from './servers.js';

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

async function nbdkit(name: string, args: string[], filters: string[] = []): Promise<RunningServer> {
  const s = await startNbdkit(tmp.dir, name, args, { filters });
  servers.push(s);
  return s;
}

beforeAll(async () => {
  tmp = await makeTempDir('nbdkit');
});

afterAll(async () => {
  await Promise.allSettled(clients.map((c) => c.close()));
  await Promise.allSettled(servers.map((s) => s.stop()));
  await tmp.remove();
});

describe('nbdkit memory', () => {
  it('reads back what nbdcopy wrote, and unwritten space is a hole', async () => {
    const size = 16 * MiB;
    const expected = Buffer.alloc(size);
    randomBytes(MiB + 333).copy(expected, 0);
    randomBytes(5000).copy(expected, 10 * MiB);
    randomBytes(4096).copy(expected, size - 4096);
    const file = join(tmp.dir, 'mem-src.raw');
    const fh = await open(file, 'w');
    await fh.truncate(size);
    for (const [o, l] of [[0, MiB + 333], [10 * MiB, 5000], [size - 4096, 4096]] as const) {
      await fh.write(expected, o, l, o);
    }
    await fh.close();
    const s = await nbdkit('memory', ['memory', String(size)]);
    await execFileP('nbdcopy', [file, s.uri]);

    const pool = await track(NbdPool.open(s.target, { connections: 2, metaContexts: [BASE_ALLOCATION] }));
    expect(pool.connections).toBe(pool.primary.canMultiConn ? 2 : 1);
    expect(sha256(await pool.read(0, size))).toBe(sha256(expected));
    const ext = await getExtents(pool.primary);
    const at5M = ext.find((e) => e.offset <= 5 * MiB && 5 * MiB < e.offset + e.length);
    expect(at5M?.zero).toBe(true);
    expect(ext[0]).toMatchObject({ offset: 0, kind: 'data' });
  });
});

describe('nbdkit sparse-random', () => {
  it('matches libnbd nbdcopy byte for byte, and its zero extents read as zeros', async () => {
    const s = await nbdkit('sparse', ['sparse-random', String(32 * MiB + 4096 * 3), 'seed=4242', 'percent=30', 'runlength=131072', 'random-content=true']);
    const c = await track(NbdClient.connect(s.target, { metaContexts: [BASE_ALLOCATION] }));
    const data = await c.read(0, c.size);
    expect(sha256(data)).toBe(await nbdcopySha256(s.uri));
    const ext = await getExtents(c);
    const zeroExtents = ext.filter((e) => e.zero);
    expect(zeroExtents.length).toBeGreaterThan(0);
    expect(ext.some((e) => !e.zero)).toBe(true);
    for (const e of zeroExtents) {
      expect(data.subarray(e.offset, e.offset + e.length).equals(Buffer.alloc(e.length))).toBe(true);
    }
  });
});

describe('nbdkit data', () => {
  // 2 MiB + 5: not a multiple of 512; the last 7 bytes are set.
  const SIZE = 2 * MiB + 5;
  const expected = Buffer.alloc(SIZE);
  expected.set([1, 2, 3], 4096);
  for (let i = 0; i < 1000; i++) expected.set([0x55, 0xaa], 4099 + 2 * i);
  expected.write('hello nbd', MiB);
  expected.set([0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0xfa, 0xf9], SIZE - 7);
  const spec = `@4096 1 2 3 ( 0x55 0xaa )*1000 @${MiB} "hello nbd" @${SIZE - 7} 0xff 0xfe 0xfd 0xfc 0xfb 0xfa 0xf9`;

  let s: RunningServer;
  beforeAll(async () => {
    s = await nbdkit('data', ['data', `data=${spec}`, `size=${SIZE}`]);
  });

  for (const structuredReplies of [true, false]) {
    it(`reads exact bytes up to the unaligned end (structured replies: ${structuredReplies})`, async () => {
      const c = await track(NbdClient.connect(s.target, { structuredReplies }));
      expect(c.size).toBe(SIZE);
      expect(sha256(await c.read(0, SIZE))).toBe(sha256(expected));
      for (const [o, l] of [[SIZE - 1, 1], [SIZE - 7, 7], [SIZE - 4097, 4097], [4095, 2010], [MiB - 1, 11]] as const) {
        expect(sameBytes(await c.read(o, l), expected.subarray(o, o + l)), `read(${o}, ${l})`).toBe('equal');
      }
    });
  }
});

describe('nbdkit pattern behind blocksize-policy (enforced size constraints)', () => {
  it('honours minimum and maximum block size: unaligned reads are widened, large ones split', async () => {
    const size = 4 * MiB;
    const expected = Buffer.alloc(size);
    for (let o = 0; o < size; o += 8) expected.writeBigUInt64BE(BigInt(o), o);
    const s = await nbdkit(
      'policy',
      ['pattern', String(size), 'blocksize-minimum=4096', 'blocksize-preferred=65536', 'blocksize-maximum=262144', 'blocksize-error-policy=error'],
      ['blocksize-policy'],
    );
    const c = await track(NbdClient.connect(s.target, { requestSize: MiB }));
    expect(c.blockSize).toEqual({ minimum: 4096, preferred: 65536, maximum: 262144 });
    expect(c.requestSize).toBe(262144);
    expect(sha256(await c.read(0, size))).toBe(sha256(expected));
    for (const [o, l] of [[1, 5000], [4095, 2], [size - 100, 100], [123457, 700001]] as const) {
      expect(sameBytes(await c.read(o, l), expected.subarray(o, o + l)), `read(${o}, ${l})`).toBe('equal');
    }
    const pool = await track(NbdPool.open(s.target, { connections: 2 }));
    expect(sameBytes(await pool.read(4097, 300000), expected.subarray(4097, 304097))).toBe('equal');
  });
});

describe('nbdkit eval plugin failing reads with EIO', () => {
  it('fails only the reads that hit the bad range; the connection stays usable', async () => {
    const s = await nbdkit('eval', [
      'eval',
      'get_size=echo 1048576',
      `pread=if [ "$4" -ge 524288 ]; then echo "EIO simulated bad sector" >&2; exit 1; fi; head -c "$3" /dev/zero | tr '\\0' A`,
    ]);
    const c = await track(NbdClient.connect(s.target, { requestSize: 64 * KiB }));
    expect(await c.read(0, 4096)).toEqual(Buffer.alloc(4096, 'A'));
    const bad = await c.read(600 * KiB, 4096).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(NbdServerError);
    expect((bad as NbdServerError).errnoName).toBe('EIO');
    expect(String(bad)).toMatch(/NBD_CMD_READ of export '' at unix:.*offset 614400, length 4096: the server answered EIO/);
    // A read straddling the bad range fails as a whole.
    await expect(c.read(512 * KiB - 64 * KiB, 128 * KiB)).rejects.toMatchObject({ code: 'NBD_SERVER_ERROR' });
    expect(await c.read(4096, 8192)).toEqual(Buffer.alloc(8192, 'A'));
  });
});
