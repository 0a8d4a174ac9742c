// Where a restored disk goes. Terms:
//   file    a regular file (or a path that does not exist yet): written under the temporary
//           name `<path>.pullback-tmp-<pid>`, made durable, and renamed over `path` only
//           when the whole restore succeeded (commit); on failure the temporary is removed
//           (discard) and an existing file at `path` is left untouched.
//   device  a block device: written in place (no rename is possible), opened O_EXCL so a
//           mounted or otherwise claimed device is refused by the kernel; zero ranges must
//           be written explicitly because the device holds old data.
// An existing output of either kind is only overwritten with `force`.
// Chunk data goes through a second descriptor opened O_DIRECT when the filesystem or device
// allows it (write-disk.ts): the kernel writes straight from the aligned slots, without a copy
// into the page cache, and the final fsync has little left to do. Metadata, short writes and
// read-back use the ordinary descriptor; fsync of either flushes the whole file.
import { closeSync, constants, fsyncSync, ftruncateSync, openSync, readFileSync, statSync, unlinkSync, write, type Stats } from 'node:fs';
import { rename, unlink } from 'node:fs/promises';
import { promisify } from 'node:util';
import { dirname } from 'node:path';
import { PullbackError } from '../errors.js';
import { fsyncDir } from '../store/atomic-file.js';

const writeP = promisify(write);

export type OutputKind = 'file' | 'device';

export interface OutputCheck {
  path: string;
  kind: OutputKind;
  /** The path exists (a file or a device) and will be overwritten. */
  exists: boolean;
  /** Bytes, for a device. */
  deviceSize?: number;
}

/** Decides what `path` is and whether we may write it; touches nothing. */
export function checkOutput(path: string, force: boolean, disk: string): OutputCheck {
  let st: Stats;
  try {
    st = statSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { path, kind: 'file', exists: false };
    throw new PullbackError('RESTORE_FAILED', `cannot restore disk ${disk} to ${path}: ${code ?? (e as Error).message}`, { cause: e });
  }
  if (st.isDirectory()) {
    throw new PullbackError('OUTPUT_EXISTS', `cannot restore disk ${disk} to ${path}: it is a directory; give a file or block device path`);
  }
  if (!st.isFile() && !st.isBlockDevice()) {
    throw new PullbackError('RESTORE_FAILED', `cannot restore disk ${disk} to ${path}: it is neither a regular file nor a block device`);
  }
  if (!force) {
    throw new PullbackError(
      'OUTPUT_EXISTS',
      `${st.isBlockDevice() ? 'block device' : 'file'} ${path} already exists (restoring disk ${disk}); pass --force to overwrite it`,
    );
  }
  if (st.isFile()) return { path, kind: 'file', exists: true };
  return { path, kind: 'device', exists: true, deviceSize: blockDeviceSize(st, path) };
}

/** Size of a block device from sysfs (fstat reports 0 for devices). */
function blockDeviceSize(st: Stats, path: string): number {
  const major = Number((BigInt(st.rdev) >> 8n) & 0xfffn);
  const minor = Number((BigInt(st.rdev) & 0xffn) | ((BigInt(st.rdev) >> 12n) & 0xfff00n));
  const sys = `/sys/dev/block/${major}:${minor}/size`;
  try {
    return Number(readFileSync(sys, 'utf8').trim()) * 512;
  } catch (e) {
    throw new PullbackError('RESTORE_FAILED', `cannot find the size of block device ${path} (${sys}): ${(e as Error).message}`, { cause: e });
  }
}

/** `path` opened read-write O_DIRECT, or undefined when the kernel refuses (e.g. EINVAL). */
function openDirect(path: string): number | undefined {
  try {
    return openSync(path, constants.O_RDWR | constants.O_DIRECT);
  } catch {
    return undefined;
  }
}

export class OutputTarget {
  private closed = false;

  private constructor(
    readonly check: OutputCheck,
    /** What is being written: the temporary file, or the device itself. */
    readonly writePath: string,
    readonly fd: number,
    /** The same output opened O_DIRECT, when possible and asked for; closed with `fd`. */
    readonly directFd: number | undefined,
  ) {}

  get path(): string {
    return this.check.path;
  }

  get kind(): OutputKind {
    return this.check.kind;
  }

  /**
   * Opens the output for writing. A file is created sparse with `fileSize` bytes (holes read
   * as zeros); a device must hold at least `fileSize` bytes. With `direct`, a second
   * descriptor is opened O_DIRECT if the kernel accepts that for this output (not every
   * filesystem does); without one, everything is written through `fd`.
   */
  static open(check: OutputCheck, fileSize: number, disk: string, direct = true): OutputTarget {
    if (check.kind === 'device') {
      const have = check.deviceSize ?? 0;
      if (have < fileSize) {
        throw new PullbackError(
          'RESTORE_FAILED',
          `block device ${check.path} holds ${have} bytes, too small for disk ${disk} (${fileSize} bytes needed)`,
        );
      }
      let fd: number;
      try {
        fd = openSync(check.path, constants.O_RDWR | constants.O_EXCL);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        const hint = code === 'EBUSY' ? ': it is in use (mounted, or claimed by another program)' : '';
        throw new PullbackError('RESTORE_FAILED', `cannot open block device ${check.path} for disk ${disk} (${code})${hint}`, { cause: e });
      }
      // Not O_EXCL: the claim made by the first open is this process's.
      return new OutputTarget(check, check.path, fd, direct ? openDirect(check.path) : undefined);
    }
    const tmp = `${check.path}.pullback-tmp-${process.pid}`;
    let fd: number;
    try {
      try {
        fd = openSync(tmp, 'wx+', 0o600);
      } catch (e) {
        // A leftover of an earlier restore by a process with our pid: it is ours to replace.
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        unlinkSync(tmp);
        fd = openSync(tmp, 'wx+', 0o600);
      }
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const hint = code === 'ENOENT' ? `: directory ${dirname(tmp)} does not exist` : '';
      throw new PullbackError('RESTORE_FAILED', `cannot create ${tmp} for disk ${disk} (${code ?? (e as Error).message})${hint}`, { cause: e });
    }
    try {
      ftruncateSync(fd, fileSize);
    } catch (e) {
      closeSync(fd);
      unlinkSync(tmp);
      throw new PullbackError('RESTORE_FAILED', `cannot size ${tmp} to ${fileSize} bytes for disk ${disk}: ${(e as Error).message}`, { cause: e });
    }
    return new OutputTarget(check, tmp, fd, direct ? openDirect(tmp) : undefined);
  }

  /** Makes everything written so far durable. */
  flush(): void {
    try {
      fsyncSync(this.fd);
    } catch (e) {
      throw new PullbackError('RESTORE_FAILED', `flushing ${this.writePath} failed: ${(e as Error).message}`, { cause: e });
    }
  }

  /** Flushes, closes and (for a file) renames the temporary over the final path. */
  async commit(): Promise<void> {
    this.flush();
    this.close();
    if (this.kind === 'device') return;
    try {
      await rename(this.writePath, this.path);
      await fsyncDir(dirname(this.path));
    } catch (e) {
      throw new PullbackError('RESTORE_FAILED', `renaming ${this.writePath} to ${this.path} failed: ${(e as Error).message}`, { cause: e });
    }
  }

  /** Closes and removes the temporary file; a device keeps what was written. Never throws. */
  async discard(): Promise<void> {
    this.close();
    if (this.kind === 'file') await unlink(this.writePath).catch(() => undefined);
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.directFd !== undefined) closeSync(this.directFd);
    closeSync(this.fd);
  }

  /** Writes all of `buf` at `offset` (metadata; chunk data is written by the workers). */
  async writeAt(buf: Uint8Array, offset: number): Promise<void> {
    let done = 0;
    while (done < buf.length) {
      let n: number;
      try {
        n = (await writeP(this.fd, buf, done, buf.length - done, offset + done)).bytesWritten;
      } catch (e) {
        throw new PullbackError('RESTORE_FAILED', `writing ${this.writePath} at offset ${offset + done} failed: ${(e as Error).message}`, { cause: e });
      }
      if (n === 0) throw new PullbackError('RESTORE_FAILED', `writing ${this.writePath} at offset ${offset + done} made no progress`);
      done += n;
    }
  }
}
