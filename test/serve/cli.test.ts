// `pullback serve` as users run it (the built CLI, bin/pullback): prints the URI, serves
// until SIGTERM/SIGINT, removes its socket; usage and lookup errors exit 2 and 1.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildFixture, type Fixture } from './fixture.js';
import { run } from './helpers.js';

const execFileP = promisify(execFile);
const BIN = fileURLToPath(new URL('../../bin/pullback', import.meta.url));
let f: Fixture;
const children: ChildProcess[] = [];

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

async function pullback(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileP(BIN, args, { timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

/** Starts `pullback serve ARGS`, resolves with its first stdout line once it is listening. */
function startCli(args: string[]): Promise<{ child: ChildProcess; line: string; exit: Promise<number | null>; stderr: () => string }> {
  const child = spawn(BIN, ['serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let err = '';
  child.stderr?.on('data', (b: Buffer) => (err += b.toString()));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (b: Buffer) => {
      out += b.toString();
      const nl = out.indexOf('\n');
      if (nl >= 0) resolve({ child, line: out.slice(0, nl), exit, stderr: () => err });
    });
    void exit.then((code) => reject(new Error(`pullback serve exited with ${code} before listening: ${err}`)));
  });
}

beforeAll(async () => {
  f = await buildFixture(`serve-cli-${process.pid}`);
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  await f?.cleanup();
});

describe('pullback serve', () => {
  it('--json prints the URI, nbdcopy reads the latest backup, SIGTERM stops it and removes the socket', async () => {
    const socket = join(f.dir, 'cli.sock');
    const s = await startCli(['--repo', f.repoDir, '--domain', f.domain, '--disk', 'vda', '--socket', socket, '--json']);
    const info = JSON.parse(s.line) as { serve: { uri: string; backup: string; size: number } };
    expect(info.serve.uri).toBe(`nbd+unix:///vda?socket=${socket}`);
    expect(info.serve.backup).toBe(f.backups[2]?.record.id);
    const out = join(f.dir, 'cli.raw');
    await run('nbdcopy', [info.serve.uri, out]);
    expect(sha(await readFile(out))).toBe(sha(f.backups[2]?.images.get('vda') as Buffer));
    s.child.kill('SIGTERM');
    expect(await s.exit).toBe(143);
    expect(existsSync(socket)).toBe(false);
  });

  it('--backup ID serves that backup; the default socket is /run/pullback/<domain>-<disk>.sock', async () => {
    const id = f.backups[0]?.record.id as string;
    const s = await startCli(['--repo', f.repoDir, '--domain', f.domain, '--backup', id, '--disk', 'vdb']);
    const socket = `/run/pullback/${f.domain}-vdb.sock`;
    expect(s.line).toContain(`serving disk vdb`);
    expect(s.line).toContain(id);
    expect(existsSync(socket)).toBe(true);
    const out = join(f.dir, 'cli-default.raw');
    await run('nbdcopy', [`nbd+unix:///vdb?socket=${socket}`, out]);
    expect(sha(await readFile(out))).toBe(sha(f.backups[0]?.images.get('vdb') as Buffer));
    s.child.kill('SIGINT');
    expect(await s.exit).toBe(130);
    expect(existsSync(socket)).toBe(false);
    expect(s.stderr()).toContain('client on export');
  });

  it('usage errors exit 2; an unknown disk or domain exits 1 with the reason', async () => {
    const both = await pullback('serve', '--repo', f.repoDir, '--domain', f.domain, '--disk', 'vda', '--socket', 'x', '--port', '1');
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('--socket or --port');
    const bind = await pullback('serve', '--repo', f.repoDir, '--domain', f.domain, '--disk', 'vda', '--bind', '0.0.0.0');
    expect(bind.code).toBe(2);
    const disk = await pullback('serve', '--repo', f.repoDir, '--domain', f.domain, '--disk', 'sdz', '--socket', join(f.dir, 'n.sock'));
    expect(disk.code).toBe(1);
    expect(disk.stderr).toMatch(/BACKUP_NOT_FOUND.*has no disk sdz; its disks are vda, vdb/);
    const dom = await pullback('serve', '--repo', f.repoDir, '--domain', 'nosuch', '--disk', 'vda', '--socket', join(f.dir, 'n.sock'));
    expect(dom.code).toBe(1);
    expect(dom.stderr).toContain('domain nosuch has no complete backup');
  });
});
