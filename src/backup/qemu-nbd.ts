// Exporting a disk image read-only over NBD with qemu-nbd, for backups of shut-off domains.
// `-B BITMAP` also exports a persistent dirty bitmap as meta context qemu:dirty-bitmap:BITMAP.
// `-t -e 16`: stay up across connections and accept several at once (multi-conn reads).
//
// qemu-nbd must not outlive pullback: it holds a lock on the image, so a qemu-nbd left behind
// by a pullback killed with SIGKILL (no cleanup runs) keeps the domain from starting and
// offline writers from opening the image ("Failed to get "write" lock") until someone finds
// and kills it. So it is started through util-linux `setpriv --pdeathsig KILL`, which asks
// the kernel to SIGKILL it when its parent (this process' main thread, which spawns it)
// dies, however it dies; `setpriv` then execs qemu-nbd, which keeps that setting.
//
// Readiness: the socket file appears at bind(), a moment before listen(); a connect in between
// is refused (seen under load in CI: ECONNREFUSED). qemu-nbd writes `--pid-file` only after its
// server socket listens, so the pid file, not the socket, says the export is ready.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { PullbackError } from '../errors.js';

export interface QemuNbdExport {
  socket: string;
  exportName: string;
  stop(): Promise<void>;
}

export async function startQemuNbd(opts: {
  image: string;
  format: string;
  socket: string;
  exportName: string;
  bitmap?: string | undefined;
  signal?: AbortSignal | undefined;
}): Promise<QemuNbdExport> {
  const pidFile = `${opts.socket}.pid`;
  const args = ['-r', '-f', opts.format, '-k', opts.socket, '-x', opts.exportName, '-t', '-e', '16', '--pid-file', pidFile];
  if (opts.bitmap !== undefined) args.push('-B', opts.bitmap);
  args.push(opts.image);
  const child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', 'qemu-nbd', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.once('error', () => undefined);
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new PullbackError('BACKUP_FAILED', `qemu-nbd could not export ${opts.image}: ${stderr.trim() || `exit ${child.exitCode}`}`);
    }
    if (await exists(pidFile)) break;
    if (Date.now() > deadline || opts.signal?.aborted === true) {
      child.kill('SIGKILL');
      throw new PullbackError('BACKUP_FAILED', `qemu-nbd did not start serving ${opts.image} within 15 s: ${stderr.trim()}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return { socket: opts.socket, exportName: opts.exportName, stop: () => stopChild(child, exited) };
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

async function stopChild(child: ChildProcess, exited: Promise<number | null>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

export interface ImageBitmap {
  name: string;
  /** 'in-use' means the image was not closed cleanly since: the bitmap cannot be trusted. */
  flags: string[];
}

export interface ImageInfo {
  virtualSize: number;
  format: string;
  bitmaps: ImageBitmap[];
}

/** `qemu-img info --output=json -U`: size, format and persistent bitmaps of an image. */
export function imageInfo(image: string, signal?: AbortSignal): Promise<ImageInfo> {
  return new Promise((resolve, reject) => {
    execFile(
      'qemu-img',
      ['info', '--output=json', '-U', image],
      { maxBuffer: 16 * 1024 * 1024, ...(signal === undefined ? {} : { signal }) },
      (err, stdout, stderr) => {
        if (err !== null) {
          reject(new PullbackError('BACKUP_FAILED', `qemu-img info ${image} failed: ${stderr.trim() || err.message}`, { cause: err }));
          return;
        }
        try {
          const j = JSON.parse(stdout) as {
            'virtual-size': number;
            format: string;
            'format-specific'?: { data?: { bitmaps?: Array<{ name: string; flags: string[] }> } };
          };
          resolve({
            virtualSize: j['virtual-size'],
            format: j.format,
            bitmaps: (j['format-specific']?.data?.bitmaps ?? []).map((b) => ({ name: b.name, flags: b.flags })),
          });
        } catch (e) {
          reject(new PullbackError('BACKUP_FAILED', `qemu-img info ${image} printed unreadable JSON`, { cause: e }));
        }
      },
    );
  });
}
