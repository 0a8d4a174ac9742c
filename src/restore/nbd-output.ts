// A restore target that is an NBD export (`nbd://HOST[:PORT]/EXPORT`,
// `nbd+unix:///EXPORT?socket=PATH`): e.g. a qemu-nbd or qemu-storage-daemon export of a new
// VM's volume, or storage on another host. Terms:
//   export   the server's disk; raw bytes only (the server decides the image format), so only
//            `--format raw` restores into one
//   in place there is no temporary name and no rename: the export is written directly, as a
//            block device is; a failed restore leaves it partly written (and says so)
// The export may hold old data, so every range the backup has as zeros is written as zeros
// (NBD_CMD_WRITE_ZEROES, letting the server punch holes: proto.md "NBD_CMD_WRITE_ZEROES"
// guarantees they read back as zeros). The export must be at least the disk's size; bytes
// beyond it are left as they are. After the last write, NBD_CMD_FLUSH (when offered) makes
// the data durable before the restore reports success.
import { PullbackError, isPullbackError } from '../errors.js';
import { BASE_ALLOCATION, NBD_STATE_ZERO, NbdClient, parseNbdUri, type NbdTarget } from '../nbd/index.js';
import { digestOf, isAllZero, toHex } from '../store/hash.js';
import type { ByteRange, DiskPlan } from './plan.js';

/** Output strings that name an NBD export rather than a path. */
export function isNbdUri(output: string): boolean {
  return /^nbds?(\+unix)?:\/\//.test(output);
}

/** Writes in flight on the connection: enough to hide the round trip. */
export const NBD_WRITES = 8;

export class NbdOutput {
  readonly kind = 'nbd' as const;
  private closed = false;

  private constructor(
    /** The URI as given, for messages. */
    readonly path: string,
    readonly client: NbdClient,
  ) {}

  /** Same as `path`: an export has no temporary name. */
  get writePath(): string {
    return this.path;
  }

  /** Parses the URI only (no connection): usage errors come before any work. */
  static target(uri: string): NbdTarget {
    return parseNbdUri(uri);
  }

  /** Connects and checks that the export can take a disk of `size` bytes. */
  static async open(uri: string, size: number, disk: string, signal?: AbortSignal): Promise<NbdOutput> {
    let client: NbdClient;
    try {
      // base:allocation lets --verify skip what the server reports as zeros; servers without
      // it (or without structured replies) refuse the option, and are connected to plainly.
      // One connection only: qemu-nbd serves a single client unless started with -e.
      const connect = (metaContexts: string[]): Promise<NbdClient> =>
        NbdClient.connect(parseNbdUri(uri), { metaContexts, ...(signal === undefined ? {} : { signal }) });
      client = await connect([BASE_ALLOCATION]).catch((e: unknown) => (isPullbackError(e, 'NBD_OPTION') ? connect([]) : Promise.reject(e)));
    } catch (e) {
      if (isPullbackError(e, 'NBD_URI') || isPullbackError(e, 'ABORTED')) throw e;
      throw new PullbackError('RESTORE_FAILED', `cannot restore disk ${disk} to NBD export ${uri}: ${(e as Error).message}`, { cause: e });
    }
    const out = new NbdOutput(uri, client);
    try {
      if (client.readOnly) {
        throw new PullbackError('RESTORE_FAILED', `cannot restore disk ${disk} to NBD export ${uri}: the server exports it read-only`);
      }
      if (client.size < size) {
        throw new PullbackError(
          'RESTORE_FAILED',
          `NBD export ${uri} holds ${client.size} bytes, too small for disk ${disk} (${size} bytes needed)`,
        );
      }
      // Chunks start at multiples of the chunk size (at least 64 KiB, never below the server's
      // minimum block size, proto.md "Block size constraints"), so only the disk's end can be
      // unaligned, and a write may end unaligned only at the export's end.
      const min = client.blockSize.minimum;
      if (size % min !== 0 && client.size !== size) {
        throw new PullbackError(
          'RESTORE_FAILED',
          `NBD export ${uri} takes writes in multiples of ${min} bytes, and disk ${disk} (${size} bytes) ends inside one; export a volume of exactly ${size} bytes`,
        );
      }
    } catch (e) {
      await out.close();
      throw e;
    }
    return out;
  }

  /** Data reaches stable storage (NBD_CMD_FLUSH), then the connection is closed. */
  async commit(): Promise<void> {
    try {
      await this.client.flush();
    } finally {
      await this.close();
    }
  }

  /** A failed restore: the export stays partly written; only the connection is closed. */
  async discard(): Promise<void> {
    await this.close();
  }

  private async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.client.close().catch(() => undefined);
  }

  /**
   * `--verify`: reads the disk's range back and compares every data chunk with its digest and
   * every zero range with zeros. Zero ranges the server reports as NBD_STATE_ZERO in
   * `base:allocation` (proto.md "base:allocation": such blocks read as zeros) are not read:
   * that is the same statement of the server as a hole in a read reply, and it keeps verifying
   * a large sparse disk from reading every zero byte. Returns the bytes verified.
   */
  async verify(plan: DiskPlan, where: string, signal?: AbortSignal, onProgress?: (done: number, total: number) => void): Promise<number> {
    let done = 0;
    const status = this.client.metaContexts.has(BASE_ALLOCATION) ? this.client : undefined;
    const pieces = verifyPieces(plan, status, signal);
    const reader = async (): Promise<void> => {
      for (let r = await pieces.next(); r.done !== true; r = await pieces.next()) {
        const p = r.value;
        signal?.throwIfAborted();
        if (p.known !== true) {
          const got = await this.client.read(p.offset, p.length, signal === undefined ? {} : { signal });
          if (p.hex === undefined ? !isAllZero(got) : toHex(digestOf(got)) !== p.hex) {
            const what = p.hex === undefined ? `bytes ${p.offset}..${p.offset + p.length - 1}, which the backup has as zeros,` : `chunk at byte offset ${p.offset}`;
            throw new PullbackError('RESTORE_FAILED', `${where}: ${what} read back different from the backup`);
          }
        }
        done += p.length;
        onProgress?.(done, plan.size);
      }
    };
    await Promise.all(Array.from({ length: NBD_WRITES }, reader));
    return done;
  }
}

interface Piece {
  offset: number;
  length: number;
  /** The chunk's digest; undefined for zeros. */
  hex?: string;
  /** Zeros the server already reported as such: nothing to read. */
  known?: boolean;
}

/**
 * Every data chunk, and every zero range in pieces of at most one chunk, in guest order.
 * With `status`, the parts of zero ranges flagged NBD_STATE_ZERO come as one known piece.
 */
async function* verifyPieces(plan: DiskPlan, status: NbdClient | undefined, signal: AbortSignal | undefined): AsyncGenerator<Piece> {
  let z = 0;
  for (let rank = 0; rank <= plan.data.length; rank++) {
    const index = plan.data[rank];
    const offset = index === undefined ? plan.size : index * plan.chunkSize;
    for (; z < plan.zeroRanges.length && (plan.zeroRanges[z] as ByteRange).offset < offset; z++) {
      yield* zeroPieces(plan.zeroRanges[z] as ByteRange, plan.chunkSize, status, signal);
    }
    if (index !== undefined) yield { offset, length: plan.map.lengthOf(index), hex: toHex(plan.map.digestAt(index)) };
  }
}

async function* zeroPieces(range: ByteRange, chunkSize: number, status: NbdClient | undefined, signal: AbortSignal | undefined): AsyncGenerator<Piece> {
  const extents =
    status === undefined
      ? [{ offset: range.offset, length: range.length, flags: 0 }]
      : await status.blockStatus(BASE_ALLOCATION, range.offset, range.length, signal === undefined ? {} : { signal });
  for (const e of extents) {
    if ((e.flags & NBD_STATE_ZERO) !== 0) {
      yield { offset: e.offset, length: e.length, known: true };
      continue;
    }
    for (let o = e.offset; o < e.offset + e.length; o += chunkSize) yield { offset: o, length: Math.min(chunkSize, e.offset + e.length - o) };
  }
}
