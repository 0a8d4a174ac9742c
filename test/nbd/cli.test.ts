// `pullback nbd-info` and `pullback nbd-read` (the built CLI, bin/pullback) against qemu-nbd.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTempDir, sha256, startQemuNbd, type RunningServer } from './servers.js';

const execFileP = promisify(execFile);
const BIN = fileURLToPath(new URL('../../bin/pullback', import.meta.url));
const MiB = 1024 * 1024;
const SIZE = 6 * MiB + 512;

let tmp: { dir: string; remove(): Promise<void> };
let srv: RunningServer;
const expected = Buffer.alloc(SIZE);

async function pullback(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileP(BIN, args);
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

beforeAll(async () => {
  tmp = await makeTempDir('cli');
  const img = join(tmp.dir, 'disk.raw');
  randomBytes(2 * MiB).copy(expected, 0);
  randomBytes(512).copy(expected, SIZE - 512);
  const fh = await open(img, 'w');
  await fh.truncate(SIZE);
  await fh.write(expected, 0, 2 * MiB, 0);
  await fh.write(expected, SIZE - 512, 512, SIZE - 512);
  await fh.close();
  srv = await startQemuNbd(tmp.dir, img, { format: 'raw', exportName: 'disk' });
});

afterAll(async () => {
  await srv.stop();
  await tmp.remove();
});

describe('pullback nbd-info / nbd-read', () => {
  it('nbd-info --json shows size, flags, block sizes and contexts', async () => {
    const r = await pullback('nbd-info', srv.uri, '--json');
    expect(r.code).toBe(0);
    const info = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(info).toMatchObject({ exportName: 'disk', size: SIZE, readOnly: true, structuredReplies: true, contexts: ['base:allocation'] });
    expect(info['flags']).toContain('NBD_FLAG_CAN_MULTI_CONN');
  });

  it('nbd-info --map prints the allocation map', async () => {
    const r = await pullback('nbd-info', srv.uri, '--map');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/map of base:allocation:\n\s+0\s+2097152\s+0\s+data\n\s+2097152\s+\d+\s+3\s+hole,zero/);
  });

  it('nbd-read --sha256 --output reads the export byte for byte', async () => {
    const out = join(tmp.dir, 'copy.raw');
    const r = await pullback('nbd-read', srv.uri, '--sha256', '--json', '--output', out, '--connections', '2');
    expect(r.code).toBe(0);
    const res = JSON.parse(r.stdout) as { bytes: number; sha256: string; connections: number };
    expect(res).toMatchObject({ bytes: SIZE, connections: 2, sha256: sha256(expected) });
    expect(sha256(await readFile(out))).toBe(sha256(expected));
    const again = await pullback('nbd-read', srv.uri, '--output', out);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/\[OUTPUT_EXISTS\].*--force/);
  });

  it('fails with one clear line for a bad URI or a missing export', async () => {
    const bad = await pullback('nbd-info', 'nbd+unix:///disk');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^pullback: error \[NBD_URI\]: invalid NBD URI .*socket=PATH/);
    const missing = await pullback('nbd-read', srv.uri.replace('/disk?', '/nope?'));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/\[NBD_OPTION\].*export 'nope' does not exist/);
  });
});
