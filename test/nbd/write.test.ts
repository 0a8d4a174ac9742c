// NbdClient writes against real servers: qemu-nbd on a raw image (large writes split at the
// server's 32 MiB maximum, NBD_CMD_WRITE_ZEROES, flush, the image file compared byte for
// byte with a model), nbdkit memory behind the nozero filter (no NBD_CMD_WRITE_ZEROES: zeros
// go out as writes) and without it (a zero range beyond 1 GiB), and an nbdkit eval plugin
// that logs what reaches it and fails writes in one range with EIO (a server error fails
// only its own request; flags FUA and NO_HOLE reach the plugin; abort abandons one write).
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NbdClient, NbdServerError } from '../../src/nbd/index.js';
import { makeTempDir, sameBytes, sha256, startNbdkit, startQemuNbd, type RunningServer } from './servers.js';

const KiB = 1024;
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

let tmp: { dir: string; remove(): Promise<void> };
const servers: RunningServer[] = [];
const clients: NbdClient[] = [];

async function connect(s: RunningServer): Promise<NbdClient> {
  const c = await NbdClient.connect(s.target);
  clients.push(c);
  return c;
}

beforeAll(async () => {
  tmp = await makeTempDir('nbd-write');
});

afterAll(async () => {
  await Promise.allSettled(clients.map((c) => c.close()));
  await Promise.allSettled(servers.map((s) => s.stop()));
  await tmp.remove();
});

describe('qemu-nbd, writable raw image', () => {
  it('writes, zeroes and flushes: the image file ends up exactly as the model', async () => {
    const size = 40 * MiB + 3 * 512;
    const model = randomBytes(size);
    const image = join(tmp.dir, 'rw.raw');
    writeFileSync(image, model);
    const s = await startQemuNbd(tmp.dir, image, { format: 'raw', name: 'rw', writable: true });
    servers.push(s);
    const c = await connect(s);
    expect({ readOnly: c.readOnly, canFlush: c.canFlush, canWriteZeroes: c.canWriteZeroes }).toEqual({
      readOnly: false,
      canFlush: true,
      canWriteZeroes: true,
    });
    expect(c.blockSize.maximum).toBe(32 * MiB);

    const writes: Array<[number, Buffer]> = [
      [4096, randomBytes(34 * MiB)], // more than one request: split at 32 MiB
      [512, randomBytes(512)],
      [35 * MiB, randomBytes(64 * KiB)],
      [size - 1536, randomBytes(1536)], // ends exactly at the export's end
    ];
    const sentBefore = c.requestsSent;
    await Promise.all(writes.map(([o, d]) => c.write(o, d)));
    expect(c.requestsSent - sentBefore).toBe(5);
    for (const [o, d] of writes) d.copy(model, o);

    await c.writeZeroes(36 * MiB, 3 * MiB + 512);
    model.fill(0, 36 * MiB, 39 * MiB + 512);
    await c.writeZeroes(8 * MiB, MiB, { noHole: true });
    model.fill(0, 8 * MiB, 9 * MiB);
    await c.flush();

    // Read back through another connection, then the file itself once the server is gone.
    const r = await connect(s);
    expect(sameBytes(await r.read(0, size), model)).toBe('equal');
    await c.close();
    await r.close();
    await s.stop();
    expect(sha256(readFileSync(image))).toBe(sha256(model));
  });

  it('a read-only export refuses writes before sending anything', async () => {
    const image = join(tmp.dir, 'ro.raw');
    const content = randomBytes(MiB);
    writeFileSync(image, content);
    const s = await startQemuNbd(tmp.dir, image, { format: 'raw', name: 'ro' });
    servers.push(s);
    const c = await connect(s);
    expect(c.readOnly).toBe(true);
    const sent = c.requestsSent;
    await expect(c.write(0, Buffer.alloc(4096))).rejects.toMatchObject({ code: 'NBD_INVALID_ARGUMENT', message: /read-only/ });
    await expect(c.writeZeroes(0, 4096)).rejects.toMatchObject({ code: 'NBD_INVALID_ARGUMENT', message: /read-only/ });
    await expect(c.write(MiB - 512, Buffer.alloc(1024))).rejects.toMatchObject({ code: 'NBD_INVALID_ARGUMENT', message: /past the end/ });
    expect(c.requestsSent).toBe(sent);
    expect(sha256(readFileSync(image))).toBe(sha256(content));
  });
});

describe('nbdkit memory', () => {
  it('without NBD_CMD_WRITE_ZEROES (nozero filter), zeros are sent as writes and read back as zeros', async () => {
    const s = await startNbdkit(tmp.dir, 'nozero', ['memory', String(8 * MiB)], { filters: ['nozero'] });
    servers.push(s);
    const c = await connect(s);
    expect(c.canWriteZeroes).toBe(false);
    const data = randomBytes(8 * MiB);
    await c.write(0, data);
    const sent = c.requestsSent;
    await c.writeZeroes(KiB, 5 * MiB / 2); // 2.5 MiB: three writes of at most 1 MiB
    expect(c.requestsSent - sent).toBe(3);
    data.fill(0, KiB, KiB + (5 * MiB) / 2);
    expect(sameBytes(await c.read(0, 8 * MiB), data)).toBe('equal');
  });

  it('a zero range beyond 1 GiB goes out as several NBD_CMD_WRITE_ZEROES', async () => {
    const size = 4 * GiB;
    const s = await startNbdkit(tmp.dir, 'bigzero', ['memory', String(size)]);
    servers.push(s);
    const c = await connect(s);
    expect(c.canWriteZeroes).toBe(true);
    const marks = [0, GiB - 4096, GiB, 2 * GiB + 12_345, size - 4096];
    for (const m of marks) await c.write(m - (m % 512), Buffer.alloc(4096, 0xab));
    const sent = c.requestsSent;
    await c.writeZeroes(512, size - 1024); // everything but the first and last 512 bytes
    expect(c.requestsSent - sent).toBe(4);
    expect(await c.read(0, 1024)).toEqual(Buffer.concat([Buffer.alloc(512, 0xab), Buffer.alloc(512)]));
    for (const m of marks.slice(1, -1)) expect((await c.read(m - (m % 512), 4096)).equals(Buffer.alloc(4096)), `at ${m}`).toBe(true);
    expect(await c.read(size - 1024, 1024)).toEqual(Buffer.concat([Buffer.alloc(512), Buffer.alloc(512, 0xab)]));
  });
});

describe('nbdkit eval plugin: flags, flush, server errors, abort', () => {
  const size = MiB;
  let disk: string;
  let log: string;
  let s: RunningServer;

  beforeAll(async () => {
    disk = join(tmp.dir, 'eval.raw');
    log = join(tmp.dir, 'eval.log');
    writeFileSync(disk, Buffer.alloc(size));
    writeFileSync(log, '');
    const dd = `dd of=${disk} bs=64K iflag=fullblock oflag=seek_bytes seek="$4" conv=notrunc status=none`;
    s = await startNbdkit(tmp.dir, 'eval', [
      'eval',
      `get_size=echo ${size}`,
      'can_write=exit 0',
      'can_flush=exit 0',
      'can_zero=exit 0',
      'can_fua=echo native',
      `pread=dd if=${disk} bs=64K iflag=skip_bytes,count_bytes skip="$4" count="$3" status=none`,
      // Writes at 768 KiB and beyond fail; writes at 512 KiB take 2 s (to abort one in flight).
      `pwrite=echo "pwrite $3 $4 $5" >> ${log}; if [ "$4" -ge 786432 ]; then cat >/dev/null; echo "EIO simulated write failure" >&2; exit 1; fi; if [ "$4" -eq 524288 ]; then sleep 2; fi; ${dd}`,
      `zero=echo "zero $3 $4 $5" >> ${log}; head -c "$3" /dev/zero | ${dd}`,
      `flush=echo flush >> ${log}`,
    ]);
    servers.push(s);
  });

  const logLines = (): string[] => readFileSync(log, 'utf8').trim().split('\n').filter((l) => l !== '');

  it('FUA and NO_HOLE reach the server as flags; flush reaches it after the writes', async () => {
    const c = await connect(s);
    expect({ canFlush: c.canFlush, canFua: c.canFua, canWriteZeroes: c.canWriteZeroes }).toEqual({ canFlush: true, canFua: true, canWriteZeroes: true });
    writeFileSync(log, '');
    const a = randomBytes(8 * KiB);
    await c.write(0, a, { fua: true });
    await c.write(64 * KiB, a);
    await c.writeZeroes(4 * KiB, 4 * KiB, { noHole: true });
    await c.writeZeroes(128 * KiB, 4 * KiB);
    await c.flush();
    expect(logLines()).toEqual([
      'pwrite 8192 0 fua',
      'pwrite 8192 65536 ',
      'zero 4096 4096 ',
      'zero 4096 131072 may_trim',
      'flush',
    ]);
    const want = Buffer.alloc(size);
    a.copy(want, 0, 0, 4 * KiB);
    a.copy(want, 64 * KiB);
    expect(sameBytes(readFileSync(disk), want)).toBe('equal');
  });

  it('a server error fails only its own write; the others land and the connection stays usable', async () => {
    const c = await connect(s);
    const ok1 = randomBytes(4 * KiB);
    const ok2 = randomBytes(4 * KiB);
    const results = await Promise.allSettled([c.write(256 * KiB, ok1), c.write(800 * KiB, randomBytes(4 * KiB)), c.write(300 * KiB, ok2)]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    const err = (results[1] as PromiseRejectedResult).reason as unknown;
    expect(err).toBeInstanceOf(NbdServerError);
    expect((err as NbdServerError).errnoName).toBe('EIO');
    expect(String(err)).toMatch(/NBD_CMD_WRITE of export '' at unix:.*offset 819200, length 4096: the server answered EIO/);
    const disk1 = readFileSync(disk);
    expect(disk1.subarray(256 * KiB, 260 * KiB).equals(ok1)).toBe(true);
    expect(disk1.subarray(300 * KiB, 304 * KiB).equals(ok2)).toBe(true);
    const after = randomBytes(4 * KiB);
    await c.write(400 * KiB, after);
    expect(await c.read(400 * KiB, 4 * KiB)).toEqual(after);
  });

  it('aborting a write in flight rejects that write only', async () => {
    const c = await connect(s);
    const ac = new AbortController();
    const slow = c.write(512 * KiB, randomBytes(4 * KiB), { signal: ac.signal });
    const t0 = performance.now();
    setTimeout(() => ac.abort(new Error('operator pressed ^C')), 100);
    await expect(slow).rejects.toMatchObject({ code: 'NBD_ABORTED', message: /write of .* offset 524288, length 4096 was aborted/ });
    expect(performance.now() - t0).toBeLessThan(1500);
    const later = randomBytes(4 * KiB);
    await c.write(16 * KiB, later);
    expect(await c.read(16 * KiB, 4 * KiB)).toEqual(later);
  });

  it('unaligned writes are refused for a server with a 4 KiB minimum block size', async () => {
    const p = await startNbdkit(tmp.dir, 'policy-w', ['memory', String(MiB), 'blocksize-minimum=4096', 'blocksize-error-policy=error'], {
      filters: ['blocksize-policy'],
    });
    servers.push(p);
    const c = await connect(p);
    expect(c.blockSize.minimum).toBe(4096);
    await expect(c.write(512, Buffer.alloc(4096))).rejects.toMatchObject({ code: 'NBD_INVALID_ARGUMENT', message: /multiples of the server's minimum block size \(4096/ });
    await expect(c.writeZeroes(0, 1000)).rejects.toMatchObject({ code: 'NBD_INVALID_ARGUMENT' });
    await c.write(MiB - 8192, Buffer.alloc(8192, 7));
    expect(await c.read(MiB - 8192, 8192)).toEqual(Buffer.alloc(8192, 7));
  });
});
