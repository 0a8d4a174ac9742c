// `pullback serve` (startServe) read by real clients: nbdinfo, nbdcopy, qemu-img, qemu-io
// through a qcow2 overlay, our own NbdClient/NbdPool, and restore for comparison. Every
// backup of a three-backup chain must read back exactly as the guest disk was at that backup.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NbdClient, NbdPool, NbdServerError, parseNbdUri, readSequential } from '../../src/nbd/index.js';
import { restoreBackup } from '../../src/restore/index.js';
import { startServe, type ServeHandle } from '../../src/serve/index.js';
import { buildFixture, CHUNK, type Fixture } from './fixture.js';
import { expectedMap, run } from './helpers.js';

let f: Fixture;
const handles = new Map<string, ServeHandle>();

/** One server per (backup, disk, transport), shared by the tests (each starts worker threads). */
async function serve(backupIndex: number, disk = 'vda', extra: { port?: number } = {}): Promise<ServeHandle> {
  const key = `${backupIndex}-${disk}-${extra.port === undefined ? 'unix' : 'tcp'}`;
  const known = handles.get(key);
  if (known !== undefined) return known;
  const b = f.backups[backupIndex];
  if (b === undefined) throw new Error(`no backup ${backupIndex}`);
  const h = await startServe(f.repo, {
    backupId: b.record.id,
    disk,
    workers: 1,
    ...(extra.port !== undefined ? { port: extra.port } : { socket: join(f.dir, `${key}.sock`) }),
  });
  handles.set(key, h);
  return h;
}

function image(backupIndex: number, disk = 'vda'): Buffer {
  const img = f.backups[backupIndex]?.images.get(disk);
  if (img === undefined) throw new Error(`no image for backup ${backupIndex} disk ${disk}`);
  return img;
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

beforeAll(async () => {
  f = await buildFixture();
});

afterAll(async () => {
  for (const h of handles.values()) await h.close();
  await f?.cleanup();
});

describe('serve: real clients read every backup of the chain', () => {
  it('nbdinfo reports size, read-only, multi-conn, base:allocation and block sizes', async () => {
    const h = await serve(2);
    const info = JSON.parse(await run('nbdinfo', ['--json', h.uri])) as {
      protocol: string;
      exports: Array<Record<string, unknown>>;
    };
    expect(info.protocol).toBe('newstyle-fixed');
    const e = info.exports[0] as Record<string, unknown>;
    expect(e['export-name']).toBe('vda');
    expect(e['export-size']).toBe(image(2).length);
    expect(e['is_read_only']).toBe(true);
    expect(e['can_multi_conn']).toBe(true);
    expect(e['can_trim']).toBe(false);
    expect(e['contexts']).toEqual(['base:allocation']);
    expect(e['block_size_minimum']).toBe(1);
    expect(e['block_size_preferred']).toBe(CHUNK);
    expect(e['block_size_maximum']).toBe(32 * 1024 * 1024);
    expect(String(e['description'])).toContain(f.backups[2]?.record.id);
  });

  it('nbdinfo --map matches the chunk map: zero and absent chunks are hole,zero', async () => {
    for (const i of [0, 1, 2]) {
      const h = await serve(i);
      const map = JSON.parse(await run('nbdinfo', ['--map', '--json', h.uri])) as Array<{ offset: number; length: number; type: number }>;
      expect(map.map((m) => [m.offset, m.length, m.type])).toEqual(expectedMap(image(i)));
    }
  });

  it('nbdcopy copies each backup byte for byte', async () => {
    for (const i of [0, 1, 2]) {
      const h = await serve(i);
      const out = join(f.dir, `nbdcopy-${i}.raw`);
      await run('nbdcopy', [h.uri, out]);
      const got = await readFile(out);
      expect(got.length).toBe(image(i).length);
      expect(sha(got)).toBe(sha(image(i)));
    }
    // The backups really differ (a test that passes by serving the wrong backup would not).
    expect(sha(image(0))).not.toBe(sha(image(1)));
    expect(sha(image(1))).not.toBe(sha(image(2)));
  });

  it('qemu-img info and convert -O raw read the export (qemu rounds the size up to 512)', async () => {
    const h = await serve(1);
    const info = JSON.parse(await run('qemu-img', ['info', '--output=json', h.uri])) as { 'virtual-size': number };
    const size = image(1).length;
    expect(info['virtual-size']).toBe(Math.ceil(size / 512) * 512);
    const out = join(f.dir, 'qemu-img-1.raw');
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', h.uri, out]);
    const got = await readFile(out);
    expect(sha(got.subarray(0, size))).toBe(sha(image(1)));
    expect(got.subarray(size).every((b) => b === 0)).toBe(true);
  });

  it('an empty export name selects the disk (nbd+unix:///?socket=...)', async () => {
    const h = await serve(0, 'vdb');
    const socket = parseNbdUri(h.uri).socketPath as string;
    const out = join(f.dir, 'default-export.raw');
    await run('nbdcopy', [`nbd+unix:///?socket=${socket}`, out]);
    expect(sha(await readFile(out))).toBe(sha(image(0, 'vdb')));
  });

  it('a qcow2 overlay on the export takes guest writes while the backup stays unchanged', async () => {
    const h = await serve(2, 'vdb');
    const overlay = join(f.dir, 'overlay.qcow2');
    await run('qemu-img', ['create', '-f', 'qcow2', '-b', h.uri, '-F', 'raw', overlay]);
    await run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x5a 65536 4096', overlay]);
    const flat = join(f.dir, 'overlay-flat.raw');
    await run('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', overlay, flat]);
    const want = Buffer.from(image(2, 'vdb'));
    want.fill(0x5a, 65536, 65536 + 4096);
    expect(sha(await readFile(flat))).toBe(sha(want));
    const direct = join(f.dir, 'after-overlay.raw');
    await run('nbdcopy', [h.uri, direct]);
    expect(sha(await readFile(direct))).toBe(sha(image(2, 'vdb')));
  });

  it('writes through NBD are refused (EPERM) and the server keeps serving', async () => {
    const h = await serve(2, 'vdb');
    await expect(run('qemu-io', ['-f', 'raw', '-c', 'write -P 1 0 4096', h.uri])).rejects.toThrow();
    const out = join(f.dir, 'after-write.raw');
    await run('nbdcopy', [h.uri, out]);
    expect(sha(await readFile(out))).toBe(sha(image(2, 'vdb')));
  });

  it('serves several clients at once (nbdcopy x3 with multi-conn, qemu-img, nbdinfo)', async () => {
    const h = await serve(2);
    const outs = [0, 1, 2].map((k) => join(f.dir, `concurrent-${k}.raw`));
    const q = join(f.dir, 'concurrent-q.raw');
    await Promise.all([
      ...outs.map((o) => run('nbdcopy', ['--connections=4', '--requests=16', h.uri, o])),
      run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', h.uri, q]),
      run('nbdinfo', ['--map', h.uri]),
    ]);
    for (const o of outs) expect(sha(await readFile(o))).toBe(sha(image(2)));
    expect(sha((await readFile(q)).subarray(0, image(2).length))).toBe(sha(image(2)));
    expect(h.server.peakConnections).toBeGreaterThanOrEqual(4);
  });

  it('listens on TCP 127.0.0.1 when given a port', async () => {
    const h = await serve(1, 'vda', { port: 0 });
    expect(h.address).toMatchObject({ host: '127.0.0.1' });
    expect(h.uri).toMatch(/^nbd:\/\/127\.0\.0\.1:\d+\/vda$/);
    const out = join(f.dir, 'tcp.raw');
    await run('nbdcopy', [h.uri, out]);
    expect(sha(await readFile(out))).toBe(sha(image(1)));
  });
});

describe('serve: our own NBD client', () => {
  it('reads everything, unaligned ranges across chunk boundaries, and block status', async () => {
    const h = await serve(2);
    const img = image(2);
    const c = await NbdClient.connect(parseNbdUri(h.uri), { metaContexts: ['base:allocation'] });
    try {
      expect(c.size).toBe(img.length);
      expect(c.readOnly).toBe(true);
      expect(c.canMultiConn).toBe(true);
      expect(sha(await c.read(0, c.size))).toBe(sha(img));
      for (const [off, len] of [
        [1, 1],
        [CHUNK - 3, 7],
        [5 * CHUNK + 17, 3 * CHUNK + 5],
        [c.size - 12345 - 1, 12346],
        [c.size - 1, 1],
      ] as const) {
        expect((await c.read(off, len)).equals(img.subarray(off, off + len))).toBe(true);
      }
      const extents = await c.blockStatus('base:allocation', 0, c.size);
      expect(extents.map((e) => [e.offset, e.length, e.flags])).toEqual(expectedMap(img));
      // Requests beyond the end are refused with EINVAL; the connection stays usable.
      const err = await c.read(c.size - 10, 20).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      expect((await c.read(0, 10)).equals(img.subarray(0, 10))).toBe(true);
    } finally {
      await c.close();
    }
  });

  it('multi-conn pool with readSequential gives the same bytes', async () => {
    const h = await serve(1);
    const img = image(1);
    const pool = await NbdPool.open(parseNbdUri(h.uri), { connections: 4, metaContexts: ['base:allocation'], requestSize: 48 * 1024 });
    const got = Buffer.alloc(img.length, 0xee);
    try {
      await readSequential(pool, (offset, length, data) => {
        if (data === null) got.fill(0, offset, offset + length);
        else data.copy(got, offset, 0, length);
      }, { skipZeroes: true });
    } finally {
      await pool.close();
    }
    expect(sha(got)).toBe(sha(img));
  });

  it('simple replies (no structured replies negotiated) carry holes as zeros', async () => {
    const h = await serve(0);
    const c = await NbdClient.connect(parseNbdUri(h.uri), { structuredReplies: false });
    try {
      expect(c.structuredReplies).toBe(false);
      expect(sha(await c.read(0, c.size))).toBe(sha(image(0)));
    } finally {
      await c.close();
    }
  });

  it('an unknown export name is refused with NBD_REP_ERR_UNKNOWN', async () => {
    const h = await serve(0);
    const target = { ...parseNbdUri(h.uri), exportName: 'vdz' };
    await expect(NbdClient.connect(target)).rejects.toMatchObject({ code: 'NBD_OPTION' });
  });
});

describe('serve: same bytes as restore', () => {
  it('restore -> raw equals what serve gives (the last backup, resolved through the chain)', async () => {
    for (const i of [2]) {
      const rec = f.backups[i]?.record;
      if (rec === undefined) throw new Error('fixture');
      const out = join(f.dir, `restored-${i}.raw`);
      await restoreBackup(f.repo, { backupId: rec.id, disks: ['vda'], output: out, format: 'raw', workers: 1 });
      const h = await serve(i);
      const served = join(f.dir, `served-${i}.raw`);
      await run('nbdcopy', [h.uri, served]);
      expect(sha(await readFile(served))).toBe(sha(await readFile(out)));
    }
  });
});

describe('serve: lifecycle', () => {
  it('close() disconnects clients, removes the socket and releases the repository lock', async () => {
    const b = f.backups[2]?.record;
    if (b === undefined) throw new Error('fixture');
    const socket = join(f.dir, 'lifecycle.sock');
    const locks = (): string[] => readdirSync(join(f.repoDir, 'locks')).filter((n) => n.endsWith('.lock')).sort();
    const before = locks();
    const h = await startServe(f.repo, { backupId: b.id, disk: 'vda', socket, workers: 1 });
    const ours = locks().filter((n) => !before.includes(n));
    expect(ours).toHaveLength(1);
    expect(ours[0]).toMatch(/^shared\./);
    const c = await NbdClient.connect(parseNbdUri(h.uri));
    await c.read(0, 4096);
    await h.close();
    await expect(c.read(0, 4096)).rejects.toThrow();
    await c.close().catch(() => undefined);
    expect(existsSync(socket)).toBe(false);
    expect(locks()).toEqual(before);
    await h.closed;
  });

  it('the abort signal stops the server', async () => {
    const b = f.backups[0]?.record;
    if (b === undefined) throw new Error('fixture');
    const ac = new AbortController();
    const socket = join(f.dir, 'abort.sock');
    const h = await startServe(f.repo, { backupId: b.id, disk: 'vdb', socket, signal: ac.signal, workers: 1 });
    ac.abort();
    await h.closed;
    expect(existsSync(socket)).toBe(false);
  });

  it('refuses a live socket path and an unknown disk', async () => {
    const b = f.backups[0]?.record;
    if (b === undefined) throw new Error('fixture');
    const socket = join(f.dir, 'busy.sock');
    const h = await startServe(f.repo, { backupId: b.id, disk: 'vdb', socket, workers: 1 });
    try {
      await expect(startServe(f.repo, { backupId: b.id, disk: 'vdb', socket })).rejects.toMatchObject({ code: 'SERVE_FAILED' });
      await expect(startServe(f.repo, { backupId: b.id, disk: 'sdq', socket: join(f.dir, 'x.sock') })).rejects.toMatchObject({
        code: 'BACKUP_NOT_FOUND',
      });
    } finally {
      await h.close();
    }
  });
});

describe('serve: damaged repository (runs last: it deletes a chunk of the fixture)', () => {
  it('a missing chunk fails only the reads that touch it, with EIO at its offset', async () => {
    const rec = f.backups[2]?.record;
    if (rec === undefined) throw new Error('fixture');
    const map = f.repo.resolveChunkMap(rec.id, 'vda');
    const victim = [...Array(map.count).keys()].find((i) => map.kindAt(i) === 2 && i > 10) as number;
    const hex = map.digestAt(victim).toString('hex');
    await rm(join(f.repoDir, 'chunks', hex.slice(0, 4), hex));
    // A fresh server: the shared ones may hold the chunk in their caches.
    const h = await startServe(f.repo, { backupId: rec.id, disk: 'vda', socket: join(f.dir, 'damaged.sock'), workers: 1 });
    try {
      const c = await NbdClient.connect(parseNbdUri(h.uri));
      try {
        const err = await c.read(victim * CHUNK + 100, 1000).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(NbdServerError);
        expect((err as NbdServerError).errnoName).toBe('EIO');
        expect((err as NbdServerError).errorOffset).toBe(victim * CHUNK + 100);
        expect((err as NbdServerError).serverMessage).toContain(`chunk ${victim}`);
        expect((err as NbdServerError).serverMessage).toContain('does not exist');
        expect((await c.read(0, CHUNK)).equals(image(2).subarray(0, CHUNK))).toBe(true);
      } finally {
        await c.close();
      }
      await expect(run('nbdcopy', [h.uri, join(f.dir, 'damaged.raw')])).rejects.toThrow();
    } finally {
      await h.close();
    }
  });
});
