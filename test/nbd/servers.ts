// Real NBD servers for the NBD client tests: qemu-nbd, qemu-storage-daemon and nbdkit, each
// listening on a unix socket in a temp directory. `stop()` kills the server; `using`-style
// cleanup is done by the tests in afterAll/finally. Also image helpers (qemu-img, qemu-io)
// and an independent reference reader (nbdcopy from libnbd) for content we cannot predict.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { formatNbdUri, type NbdTarget } from '../../src/nbd/index.js';

export const execFileP = promisify(execFile);

export interface RunningServer {
  target: NbdTarget;
  uri: string;
  stop(): Promise<void>;
}

export async function makeTempDir(label: string): Promise<{ dir: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), `pb-nbd-${label}-`));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

async function waitFor(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function killPidFile(pidFile: string): Promise<void> {
  if (!existsSync(pidFile)) return;
  const pid = Number((await readFile(pidFile, 'utf8')).trim());
  if (!Number.isInteger(pid) || pid <= 1) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return; // already gone
  }
  const t0 = Date.now();
  for (;;) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    if (Date.now() - t0 > 5000) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
      return;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

function server(socketPath: string, exportName: string, stop: () => Promise<void>): RunningServer {
  const target = { socketPath, exportName };
  return { target, uri: formatNbdUri(target), stop };
}

/** qemu-nbd on a unix socket; `--fork` returns once it is listening. Read-only unless `writable`; shared. */
export async function startQemuNbd(
  dir: string,
  image: string,
  opts: {
    format: 'raw' | 'qcow2';
    bitmap?: string;
    allocationDepth?: boolean;
    exportName?: string;
    name?: string;
    tcpPort?: number;
    writable?: boolean;
    /** Clients served at once (`-e`); default 0 = unlimited. qemu-nbd's own default is 1. */
    shared?: number;
  },
): Promise<RunningServer> {
  const name = opts.name ?? 'qemu-nbd';
  const sock = join(dir, `${name}.sock`);
  const pidFile = join(dir, `${name}.pid`);
  // -t: keep serving after the last client leaves (tests connect many times).
  const args = [...(opts.writable === true ? [] : ['-r']), '-t', '-e', String(opts.shared ?? 0), '-f', opts.format, '--fork', '--pid-file', pidFile];
  if (opts.exportName !== undefined) args.push('-x', opts.exportName);
  if (opts.tcpPort !== undefined) args.push('-b', '127.0.0.1', '-p', String(opts.tcpPort));
  else args.push('-k', sock);
  if (opts.bitmap !== undefined) args.push('-B', opts.bitmap);
  if (opts.allocationDepth === true) args.push('-A');
  args.push(image);
  await execFileP('qemu-nbd', args);
  const stop = (): Promise<void> => killPidFile(pidFile);
  if (opts.tcpPort !== undefined) {
    const target = { host: '127.0.0.1', port: opts.tcpPort, exportName: opts.exportName ?? '' };
    return { target, uri: formatNbdUri(target), stop };
  }
  return server(sock, opts.exportName ?? '', stop);
}

/** qemu-storage-daemon exporting a qcow2 image (with optional bitmaps) over NBD. */
export async function startQsd(dir: string, image: string, opts: { exportName: string; bitmaps?: string[] }): Promise<RunningServer> {
  const sock = join(dir, 'qsd.sock');
  const pidFile = join(dir, 'qsd.pid');
  const bitmaps = (opts.bitmaps ?? []).map((b, i) => `,bitmaps.${i}=${b}`).join('');
  await execFileP('qemu-storage-daemon', [
    '--blockdev', `driver=file,node-name=file0,filename=${image},read-only=on`,
    '--blockdev', 'driver=qcow2,node-name=fmt0,file=file0,read-only=on',
    '--nbd-server', `addr.type=unix,addr.path=${sock}`,
    '--export', `type=nbd,id=exp0,node-name=fmt0,name=${opts.exportName},writable=off,allocation-depth=on${bitmaps}`,
    '--pidfile', pidFile,
    '--daemonize',
  ]);
  return server(sock, opts.exportName, () => killPidFile(pidFile));
}

/**
 * nbdkit in the foreground with --exit-with-parent (so it dies with the test process even
 * if cleanup never runs); ready once its pidfile exists.
 */
export async function startNbdkit(
  dir: string,
  name: string,
  pluginArgs: string[],
  opts: { filters?: string[]; exportName?: string; env?: Record<string, string> } = {},
): Promise<RunningServer & { child: ChildProcess }> {
  const sock = join(dir, `${name}.sock`);
  const pidFile = join(dir, `${name}.pid`);
  const filters = (opts.filters ?? []).map((f) => `--filter=${f}`);
  const child = spawn('nbdkit', ['-f', '--exit-with-parent', '-U', sock, '-P', pidFile, ...filters, ...pluginArgs], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, ...(opts.env ?? {}) },
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  let exited = false;
  child.on('exit', () => {
    exited = true;
  });
  try {
    await waitFor(() => existsSync(pidFile) || exited, `nbdkit ${pluginArgs.join(' ')}`);
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  }
  if (exited) throw new Error(`nbdkit ${pluginArgs.join(' ')} exited: ${stderr}`);
  const stop = async (): Promise<void> => {
    if (exited) return;
    const gone = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGTERM');
    await Promise.race([gone, new Promise((r) => setTimeout(r, 5000))]);
    if (!exited) child.kill('SIGKILL');
  };
  return { ...server(sock, opts.exportName ?? '', stop), child };
}

/** Runs qemu-io commands on an image file (offline). */
export async function qemuIo(image: string, format: 'raw' | 'qcow2', cmds: string[]): Promise<void> {
  await execFileP('qemu-io', ['-f', format, ...cmds.flatMap((c) => ['-c', c]), image]);
}

/** Writes `data` at `offset` of an image through qemu-io (so qcow2 bitmaps see it). */
export async function qemuIoWrite(dir: string, image: string, format: 'raw' | 'qcow2', offset: number, data: Buffer): Promise<void> {
  const tmp = join(dir, `write-${offset}.bin`);
  await writeFile(tmp, data);
  try {
    await qemuIo(image, format, [`write -s ${tmp} ${offset} ${data.length}`]);
  } finally {
    await rm(tmp, { force: true });
  }
}

export function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** sha256 of an export read by libnbd's nbdcopy: an independent reference reader. */
export async function nbdcopySha256(uri: string): Promise<string> {
  return await new Promise<string>((resolve, reject) => {
    const child = spawn('nbdcopy', [uri, '-'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const h = createHash('sha256');
    let err = '';
    child.stdout.on('data', (d: Buffer) => h.update(d));
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(h.digest('hex')) : reject(new Error(`nbdcopy failed: ${err}`))));
  });
}

/** Byte-exact comparison that stays fast for large buffers and names the first difference. */
export function sameBytes(actual: Buffer, expected: Buffer): string {
  if (actual.equals(expected)) return 'equal';
  if (actual.length !== expected.length) return `length ${actual.length} instead of ${expected.length}`;
  let i = 0;
  while (actual[i] === expected[i]) i++;
  return `first difference at byte ${i}: ${actual[i]} instead of ${expected[i]}`;
}
