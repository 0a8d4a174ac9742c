// Crash-safe file creation: write a temporary file, fsync it, rename it into place, fsync the
// directory. After a crash the final name holds either nothing or the complete file, never a
// prefix; after the directory fsync the name itself survives power loss. Temporary names carry
// host and pid (tmpName) so leftovers of dead processes can be recognised and removed by gc.
import { closeSync, constants, fsync, mkdirSync, openSync, renameSync, unlinkSync, writevSync } from 'node:fs';
import { promisify } from 'node:util';
import { mkdir, open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { threadId } from 'node:worker_threads';

let counter = 0;
const safeHost = hostname().replace(/[^A-Za-z0-9.-]/g, '_');

/** `<host>~<pid>~<thread>~<n>.tmp`: parsable by parseTmpName for stale-file cleanup. */
export function tmpName(tmpDir: string): string {
  counter += 1;
  return join(tmpDir, `${safeHost}~${process.pid}~${threadId}~${counter}.tmp`);
}

export function parseTmpName(name: string): { host: string; pid: number } | undefined {
  const m = /^(.+)~(\d+)~\d+~\d+\.tmp$/.exec(basename(name));
  if (m === null || m[1] === undefined || m[2] === undefined) return undefined;
  return { host: m[1], pid: Number(m[2]) };
}

export function isOwnHost(host: string): boolean {
  return host === safeHost;
}

export async function fsyncDir(dir: string): Promise<void> {
  const h = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}

/**
 * Creates `dir` if missing and makes its name durable. `known` caches directories already
 * known to exist, so the common case costs nothing.
 */
export async function ensureDir(dir: string, known?: Set<string>): Promise<void> {
  if (known?.has(dir) === true) return;
  const created = await mkdir(dir, { recursive: true });
  if (created !== undefined) await fsyncDir(dirname(dir));
  known?.add(dir);
}

/** Writes `parts` to `finalPath` atomically and durably (see header). */
export async function writeFileAtomic(
  tmpDir: string,
  finalPath: string,
  parts: readonly Uint8Array[],
  knownDirs?: Set<string>,
): Promise<void> {
  const tmp = tmpName(tmpDir);
  const h = await open(tmp, 'wx');
  try {
    try {
      await writeAll(h, parts);
      await h.sync();
    } finally {
      await h.close();
    }
    const dir = dirname(finalPath);
    await ensureDir(dir, knownDirs);
    await rename(tmp, finalPath);
    await fsyncDir(dir);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
}

/** writev does not promise to write everything (e.g. on ENOSPC after a partial write): loop. */
export async function writeAll(h: FileHandle, parts: readonly Uint8Array[]): Promise<void> {
  const total = parts.reduce((n, p) => n + p.byteLength, 0);
  const { bytesWritten } = await h.writev(parts as Uint8Array[]);
  if (bytesWritten === total) return;
  const rest = Buffer.concat(parts as Uint8Array[]).subarray(bytesWritten);
  let off = 0;
  while (off < rest.length) {
    const r = await h.write(rest, off, rest.length - off, bytesWritten + off);
    off += r.bytesWritten;
  }
}

/** Like writeFileAtomic, but the content comes from `fill`, which writes through the handle. */
export async function writeStreamAtomic(
  tmpDir: string,
  finalPath: string,
  fill: (h: FileHandle) => Promise<void>,
): Promise<void> {
  const tmp = tmpName(tmpDir);
  const h = await open(tmp, 'wx');
  try {
    try {
      await fill(h);
      await h.sync();
    } finally {
      await h.close();
    }
    const dir = dirname(finalPath);
    await ensureDir(dir);
    await rename(tmp, finalPath);
    await fsyncDir(dir);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
}

const fsyncFd = promisify(fsync);

/**
 * writeFileAtomic for worker threads that must not wait on the disk: the bytes are written at
 * once (a copy into the page cache, so `parts` may be reused when this returns); the two
 * fsyncs, of the file and then of its directory, run on libuv's thread pool, and the cheap
 * steps between them (close, rename, open) run inline: each thread-pool round trip costs
 * two context switches, which on a 2-core machine is measurable per chunk. The promise settles
 * when the file is durable under its final name.
 */
export function writeFileAtomicDeferred(
  tmpDir: string,
  finalPath: string,
  parts: readonly Uint8Array[],
  knownDirs?: Set<string>,
): Promise<void> {
  const tmp = tmpName(tmpDir);
  const fd = openSync(tmp, 'wx');
  try {
    const total = parts.reduce((n, p) => n + p.byteLength, 0);
    let written = writevSync(fd, parts as Uint8Array[]);
    if (written < total) {
      const rest = Buffer.concat(parts as Uint8Array[]);
      while (written < total) written += writevSync(fd, [rest.subarray(written)], written);
    }
  } catch (e) {
    closeSync(fd);
    removeQuietly(tmp);
    throw e;
  }
  const dir = dirname(finalPath);
  return (async () => {
    try {
      await fsyncFd(fd);
    } finally {
      closeSync(fd);
    }
    if (knownDirs?.has(dir) !== true) {
      if (mkdirSync(dir, { recursive: true }) !== undefined) await fsyncDir(dirname(dir));
      knownDirs?.add(dir);
    }
    renameSync(tmp, finalPath);
    const dfd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
    try {
      await fsyncFd(dfd);
    } finally {
      closeSync(dfd);
    }
  })().catch((e: unknown) => {
    removeQuietly(tmp);
    throw e;
  });
}

function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}
