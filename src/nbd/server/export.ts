// What the NBD server serves: an *export* is a named, read-only byte range with a size. The
// protocol code (this folder) knows nothing of where bytes come from; src/serve implements
// this interface over a backup in the chunk store.
//   piece     a run of the export answered by one read: data, or null for "reads as zeros"
//             (sent as NBD_REPLY_TYPE_OFFSET_HOLE when structured replies are negotiated)
//   extent    a run with base:allocation flags (NBD_STATE_HOLE | NBD_STATE_ZERO, or 0 for data)
import { NBD_EIO } from '../constants.js';

export interface ReadPiece {
  offset: number;
  length: number;
  /** `length` bytes, or null when the range reads as zeros. Never mutated by the server. */
  data: Buffer | null;
  /** Called once `data` has been written to the socket (or will never be): the export may reuse its memory. */
  release?: () => void;
}

export interface AllocationExtent {
  length: number;
  /** base:allocation flags (proto.md "base:allocation metadata context"). */
  flags: number;
}

export interface NbdExport {
  /** Export name clients ask for (NBD_OPT_GO / NBD_OPT_EXPORT_NAME); '' also selects it when it is the default. */
  readonly name: string;
  readonly description: string;
  /** Size in bytes. */
  readonly size: number;
  /** Preferred block size to advertise (NBD_INFO_BLOCK_SIZE): a power of two >= 512. */
  readonly preferredBlockSize: number;
  /**
   * Pieces covering exactly [offset, offset + length), in order. Rejects with ExportReadError
   * (or any error, reported as EIO at `offset`) when the bytes cannot be produced.
   */
  read(offset: number, length: number, signal: AbortSignal): Promise<ReadPiece[]>;
  /** base:allocation extents from `offset`, in order, covering at least one byte and at most `length`. */
  allocation(offset: number, length: number): AllocationExtent[];
}

/** A read that failed at a known offset; sent as NBD_REPLY_TYPE_ERROR_OFFSET (or a simple reply's error). */
export class ExportReadError extends Error {
  override name = 'ExportReadError';
  readonly offset: number;
  readonly errno: number;

  constructor(message: string, offset: number, opts: { errno?: number; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.offset = offset;
    this.errno = opts.errno ?? NBD_EIO;
  }
}
