// readSequential: stream a range of an export to a consumer in offset order, with many reads
// in flight. A fixed ring of `window` request-sized buffers is reused, so memory stays at
// window × requestSize however large the export; each piece's buffer is only valid until the
// consumer's promise settles. With `skipZeroes`, ranges that base:allocation reports as
// reading zeros (NBD_STATE_ZERO) are not read at all: the consumer gets `null` data for them
// (as nbdcopy does). Used by `pullback nbd-read` and bench/nbd-read.ts.
import { PullbackError } from '../errors.js';
import { NbdClient, type ReadHandle } from './client.js';
import { BASE_ALLOCATION } from './constants.js';
import { getExtents } from './get-extents.js';
import { NbdPool } from './pool.js';

export interface SequentialReadOptions {
  offset?: number;
  length?: number;
  /** Skip ranges known to read as zeros (needs 'base:allocation' negotiated). */
  skipZeroes?: boolean;
  /** Buffers (= reads) in flight; default connections × maxInflight. */
  window?: number;
  signal?: AbortSignal;
}

/** One piece handed to the consumer; `data` is null for a skipped zero range. */
export type PieceConsumer = (offset: number, length: number, data: Buffer | null) => void | Promise<void>;

interface Piece {
  offset: number;
  length: number;
  zero: boolean;
}

async function plan(source: NbdClient, start: number, length: number, pieceSize: number, skipZeroes: boolean, signal: AbortSignal | undefined): Promise<Piece[]> {
  let ranges: Piece[] = [{ offset: start, length, zero: false }];
  if (skipZeroes) {
    const ext = await getExtents(source, { offset: start, length, ...(signal === undefined ? {} : { signal }) });
    ranges = [];
    for (const e of ext) {
      const last = ranges[ranges.length - 1];
      if (last !== undefined && last.zero === e.zero) last.length += e.length;
      else ranges.push({ offset: e.offset, length: e.length, zero: e.zero });
    }
  }
  const pieces: Piece[] = [];
  for (const r of ranges) {
    if (r.zero) {
      pieces.push(r);
      continue;
    }
    for (let p = r.offset; p < r.offset + r.length; ) {
      const next = Math.min(r.offset + r.length, (Math.floor(p / pieceSize) + 1) * pieceSize);
      pieces.push({ offset: p, length: next - p, zero: false });
      p = next;
    }
  }
  return pieces;
}

export async function readSequential(source: NbdPool | NbdClient, consume: PieceConsumer, opts: SequentialReadOptions = {}): Promise<void> {
  const primary = source instanceof NbdPool ? source.primary : source;
  const start = opts.offset ?? 0;
  const length = opts.length ?? primary.size - start;
  primary.validateRange('sequential read', start, length);
  const skipZeroes = opts.skipZeroes === true;
  if (skipZeroes && !primary.metaContexts.has(BASE_ALLOCATION)) {
    throw new PullbackError('NBD_INVALID_ARGUMENT', `skipZeroes needs '${BASE_ALLOCATION}'; connect with metaContexts: ['${BASE_ALLOCATION}']`);
  }
  const connections = source instanceof NbdPool ? source.connections : 1;
  const window = Math.max(1, opts.window ?? connections * primary.maxInflight);
  const pieceSize = primary.requestSize;
  const signal = opts.signal;
  const pieces = await plan(primary, start, length, pieceSize, skipZeroes, signal);
  const slots = Array.from({ length: Math.min(window, pieces.length) }, () => Buffer.allocUnsafe(pieceSize));
  const K = slots.length;
  const handles: Array<ReadHandle | null> = new Array<ReadHandle | null>(K).fill(null);
  const pending: Array<Promise<void>> = new Array<Promise<void>>(K);

  const read = (i: number): Promise<void> => {
    const piece = pieces[i] as Piece;
    if (piece.zero) return Promise.resolve();
    const p = new Promise<void>((resolve, reject) => {
      handles[i % K] = source.submitRead(slots[i % K] as Buffer, 0, piece.offset, piece.length, (err) => (err === null ? resolve() : reject(err)));
    });
    p.catch(() => undefined); // awaited below in order; avoid unhandled rejections of later pieces
    return p;
  };
  const abortError = (): PullbackError =>
    new PullbackError('NBD_ABORTED', `sequential read of export '${primary.exportName}' was aborted`, { cause: signal?.reason });
  const onAbort = (): void => {
    const err = abortError();
    for (const h of handles) h?.cancel(err);
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for (let i = 0; i < K; i++) pending[i] = read(i);
    for (let i = 0; i < pieces.length; i++) {
      if (signal?.aborted === true) throw abortError();
      const slot = i % K;
      await pending[slot];
      const piece = pieces[i] as Piece;
      await consume(piece.offset, piece.length, piece.zero ? null : (slots[slot] as Buffer).subarray(0, piece.length));
      if (i + K < pieces.length) pending[slot] = read(i + K);
    }
  } catch (e) {
    const err = e instanceof Error ? e : new Error(String(e));
    for (const h of handles) h?.cancel(err);
    throw e;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}
