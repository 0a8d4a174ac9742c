// NbdClient: one connection to one export. Connects (handshake.ts), then serves reads,
// block-status queries and (on a writable export) writes over a pipelined Transmission. Reads of any length are split into
// requests of at most `requestSize` bytes on boundaries aligned to the server's block size
// (proto.md "Size constraints": offsets and lengths MUST be multiples of the minimum block
// size; payloads MUST NOT exceed the maximum), and holes come back as zeros.
//
// Timeouts and aborts: `requestTimeoutMs` bounds every handshake step and every request in
// flight; a request exceeding it ends the connection (the server is considered hung).
// `signal` in the connect options aborts the handshake and later tears the whole connection
// down; `signal` on a single call abandons only that call.
import { PullbackError, isPullbackError } from '../errors.js';
import {
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLAG_NO_HOLE,
  NBD_CMD_FLAG_REQ_ONE,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_FLAG_CAN_MULTI_CONN,
  NBD_FLAG_READ_ONLY,
  NBD_FLAG_SEND_FLUSH,
  NBD_FLAG_SEND_FUA,
  NBD_FLAG_SEND_WRITE_ZEROES,
} from './constants.js';
import type { HandshakeChannel } from './handshake-channel.js';
import {
  optAbort,
  optGo,
  optListMetaContext,
  optSetMetaContext,
  optStructuredReply,
  type BlockSize,
  type ExportInfo,
} from './handshake.js';
import type { BlockStatusChunk } from './reply-codec.js';
import { NbdRequest } from './request.js';
import { openSession } from './session.js';
import { Transmission } from './transmission.js';
import type { Transport } from './transport.js';
import { describeTarget, type NbdTarget } from './uri.js';

export interface NbdConnectOptions {
  /** Metadata contexts to select, e.g. ['base:allocation', 'qemu:dirty-bitmap:backup-vda']. */
  metaContexts?: string[];
  /** Negotiate structured replies (default true); false forces simple replies. */
  structuredReplies?: boolean;
  /** Aborts the handshake; after connecting, aborting tears the connection down. */
  signal?: AbortSignal;
  /** Bound on each handshake step and on each request in flight (ms, default 60000, 0 = none). */
  requestTimeoutMs?: number;
  /** Requests in flight on this connection before further ones queue (default 16). */
  maxInflight?: number;
  /** Largest NBD_CMD_READ sent (bytes, default 256 KiB, capped by the server's maximum). */
  requestSize?: number;
}

export interface Extent {
  offset: number;
  length: number;
  flags: number;
}

export interface RequestOptions {
  signal?: AbortSignal;
}

/** A read in progress (see NbdClient.submitRead). */
export interface ReadHandle {
  settled: boolean;
  cancel(err: Error): void;
}

export const DEFAULT_REQUEST_TIMEOUT_MS = 60_000;
export const DEFAULT_MAX_INFLIGHT = 16;
export const DEFAULT_REQUEST_SIZE = 256 * 1024;
/** Never send a read larger than 32 MiB, whatever the server allows (proto.md "Size constraints"). */
const MAX_READ_REQUEST = 1 << 25;
/** Block status queries are chunked to 2 GiB (the length field is 32 bits). */
const MAX_BLOCK_STATUS_REQUEST = 2 ** 31;
/** NBD_CMD_WRITE_ZEROES carries no payload; 1 GiB per request keeps each one short-lived. */
const MAX_WRITE_ZEROES_REQUEST = 2 ** 30;
/** Zeros sent with NBD_CMD_WRITE when the server lacks NBD_CMD_WRITE_ZEROES (shared, never written to). */
const ZERO_BUFFER = Buffer.alloc(1 << 20);

export interface WriteOptions extends RequestOptions {
  /** NBD_CMD_FLAG_FUA: the server replies only once the data is durable (when it offers FUA). */
  fua?: boolean;
}

export interface WriteZeroesOptions extends WriteOptions {
  /** NBD_CMD_FLAG_NO_HOLE: the range must stay allocated (no hole punched). */
  noHole?: boolean;
}

/** The largest multiple of `min` not above `max`, and at least `min`. */
function alignedStep(max: number, min: number): number {
  return Math.max(max - (max % min), min);
}

function chooseRequestSize(bs: BlockSize, wanted: number): number {
  let size = Math.min(wanted, bs.maximum, MAX_READ_REQUEST);
  if (size >= bs.preferred) size -= size % bs.preferred;
  size -= size % bs.minimum;
  return Math.max(size, bs.minimum);
}

export class NbdClient {
  readonly target: NbdTarget;
  readonly exportName: string;
  readonly size: number;
  readonly transmissionFlags: number;
  readonly canMultiConn: boolean;
  readonly readOnly: boolean;
  /** NBD_FLAG_SEND_FLUSH: flush() reaches the server (otherwise it is a no-op). */
  readonly canFlush: boolean;
  /** NBD_FLAG_SEND_FUA: the `fua` write option reaches the server. */
  readonly canFua: boolean;
  /** NBD_FLAG_SEND_WRITE_ZEROES: writeZeroes() sends no payload (otherwise it writes zero buffers). */
  readonly canWriteZeroes: boolean;
  readonly structuredReplies: boolean;
  /** The server's size constraints (spec defaults when it advertised none). */
  readonly blockSize: { minimum: number; preferred: number; maximum: number };
  readonly blockSizeAdvertised: boolean;
  readonly description: string | undefined;
  /** Negotiated metadata contexts: name -> id. */
  readonly metaContexts: ReadonlyMap<string, number>;
  /** Bytes per NBD_CMD_READ. */
  readonly requestSize: number;
  /** Requests in flight on this connection before further ones queue. */
  readonly maxInflight: number;
  private readonly tx: Transmission;
  private readonly transport: Transport;
  private readonly where: string;
  private closePromise: Promise<void> | null = null;
  private readonly detachSignal: () => void;

  private constructor(
    target: NbdTarget,
    info: ExportInfo,
    structured: boolean,
    contexts: Map<string, number>,
    transport: Transport,
    channel: HandshakeChannel,
    opts: NbdConnectOptions,
  ) {
    this.target = target;
    this.exportName = info.exportName;
    this.size = info.size;
    this.transmissionFlags = info.transmissionFlags;
    this.canMultiConn = (info.transmissionFlags & NBD_FLAG_CAN_MULTI_CONN) !== 0;
    this.readOnly = (info.transmissionFlags & NBD_FLAG_READ_ONLY) !== 0;
    this.canFlush = (info.transmissionFlags & NBD_FLAG_SEND_FLUSH) !== 0;
    this.canFua = (info.transmissionFlags & NBD_FLAG_SEND_FUA) !== 0;
    this.canWriteZeroes = (info.transmissionFlags & NBD_FLAG_SEND_WRITE_ZEROES) !== 0;
    this.structuredReplies = structured;
    this.blockSize = info.blockSize;
    this.blockSizeAdvertised = info.blockSizeAdvertised;
    this.description = info.description;
    this.metaContexts = contexts;
    this.requestSize = chooseRequestSize(info.blockSize, opts.requestSize ?? DEFAULT_REQUEST_SIZE);
    this.maxInflight = Math.max(1, opts.maxInflight ?? DEFAULT_MAX_INFLIGHT);
    this.transport = transport;
    this.where = describeTarget(target);
    this.tx = new Transmission(transport, {
      where: this.where,
      structuredReplies: structured,
      contexts: new Map([...contexts].map(([name, id]) => [id, name])),
      maxInflight: this.maxInflight,
      timeoutMs: opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
    });
    transport.setSink(this.tx.parser);
    const leftover = channel.leftover();
    if (leftover.length > 0) {
      try {
        this.tx.parser.feed(leftover);
      } catch (e) {
        this.tx.fail('NBD_PROTOCOL', `protocol violation by the server: ${e instanceof Error ? e.message : String(e)}`, e);
      }
    }
    const signal = opts.signal;
    const onAbort = (): void => this.tx.fail('NBD_ABORTED', 'the connection was aborted by the caller', signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    this.detachSignal = () => signal?.removeEventListener('abort', onAbort);
  }

  static async connect(target: NbdTarget, opts: NbdConnectOptions = {}): Promise<NbdClient> {
    const timeoutMs = opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    const { transport, channel, greeting } = await openSession(target, { signal: opts.signal, timeoutMs });
    const where = describeTarget(target);
    try {
      let structured = false;
      if (opts.structuredReplies !== false && greeting.fixedNewstyle) structured = await optStructuredReply(channel);
      const wanted = opts.metaContexts ?? [];
      let contexts = new Map<string, number>();
      if (wanted.length > 0) {
        if (!structured) {
          throw new PullbackError(
            'NBD_OPTION',
            `${where} does not support structured replies, which metadata contexts (${wanted.join(', ')}) require`,
          );
        }
        contexts = await optSetMetaContext(channel, target.exportName, wanted);
        const missing = wanted.filter((w) => !contexts.has(w));
        if (missing.length > 0) {
          const offered = await optListMetaContext(channel, target.exportName, []).catch(() => [] as string[]);
          throw new PullbackError(
            'NBD_OPTION',
            `${where} does not offer metadata context ${missing.map((m) => `'${m}'`).join(', ')} (it offers: ${offered.join(', ') || 'none'}); check the dirty bitmap name (qemu-nbd -B NAME, or exportbitmap in 'virsh backup-dumpxml')`,
          );
        }
      }
      const info = await optGo(channel, target.exportName, greeting);
      return new NbdClient(target, info, structured, contexts, transport, channel, opts);
    } catch (e) {
      if (isPullbackError(e, 'NBD_OPTION')) await optAbort(channel);
      transport.destroy();
      throw e;
    }
  }

  /** Requests sent on this connection so far. */
  get requestsSent(): number {
    return this.tx.sent;
  }

  /** Requests queued or in flight on this connection. */
  get pending(): number {
    return this.tx.pending;
  }

  /** Reads `length` bytes at `offset`. Holes and zero ranges come back as zeros. */
  async read(offset: number, length: number, opts: RequestOptions = {}): Promise<Buffer> {
    this.validateRange('read', offset, length);
    const buf = Buffer.allocUnsafe(length);
    await this.readInto(buf, offset, opts);
    return buf;
  }

  /** Reads `dest.length` bytes at `offset` into `dest` (no intermediate copies when aligned). */
  async readInto(dest: Buffer, offset: number, opts: RequestOptions = {}): Promise<void> {
    const length = dest.length;
    this.validateRange('read', offset, length);
    if (length === 0) return;
    const min = this.blockSize.minimum;
    const aStart = offset - (offset % min);
    const aEnd = Math.min(Math.ceil((offset + length) / min) * min, this.size);
    if (aStart === offset && aEnd === offset + length) {
      await this.readAligned(dest, 0, offset, length, opts.signal);
      return;
    }
    // Unaligned for this server: read the enclosing aligned range and copy out.
    const bounce = Buffer.allocUnsafe(aEnd - aStart);
    await this.readAligned(bounce, 0, aStart, aEnd - aStart, opts.signal);
    bounce.copy(dest, 0, offset - aStart, offset - aStart + length);
  }

  /**
   * Extents of one negotiated metadata context over [offset, offset+length), clipped to that
   * range and with adjacent equal-flag extents merged. Sends as many NBD_CMD_BLOCK_STATUS
   * requests as needed (servers may answer any prefix); with `reqOne`, one extent per request.
   */
  async blockStatus(
    context: string,
    offset: number,
    length: number,
    opts: { reqOne?: boolean; signal?: AbortSignal } = {},
  ): Promise<Extent[]> {
    const id = this.metaContexts.get(context);
    if (id === undefined) {
      throw new PullbackError(
        'NBD_INVALID_ARGUMENT',
        `metadata context '${context}' was not negotiated with ${this.where} (negotiated: ${[...this.metaContexts.keys()].join(', ') || 'none'}); pass it in metaContexts when connecting`,
      );
    }
    this.validateRange('block status', offset, length);
    const out: Extent[] = [];
    const end = offset + length;
    const min = this.blockSize.minimum;
    const aEnd = Math.min(Math.ceil(end / min) * min, this.size);
    let cur = offset - (offset % min);
    const flags = opts.reqOne === true ? NBD_CMD_FLAG_REQ_ONE : 0;
    while (cur < end) {
      const status = await this.blockStatusOnce(cur, Math.min(aEnd - cur, MAX_BLOCK_STATUS_REQUEST), flags, opts.signal);
      const chunk = status.get(id) as BlockStatusChunk;
      let p = cur;
      for (let i = 0; i < chunk.lengths.length && p < end; i++) {
        const l = chunk.lengths[i] as number;
        const f = chunk.flags[i] as number;
        const s = Math.max(p, offset);
        const e = Math.min(p + l, end);
        if (e > s) {
          const last = out[out.length - 1];
          if (last !== undefined && last.flags === f && last.offset + last.length === s) last.length += e - s;
          else out.push({ offset: s, length: e - s, flags: f });
        }
        p += l;
      }
      cur = p;
    }
    return out;
  }

  /**
   * Writes `data` at `offset` (NBD_CMD_WRITE, split at the server's maximum payload and 32 MiB;
   * the pieces pipeline). The range must be aligned to blockSize.minimum or end at the export's
   * end. `data` must stay unchanged until the promise settles: it is sent from where it lies.
   */
  async write(offset: number, data: Buffer, opts: WriteOptions = {}): Promise<void> {
    this.checkWritable('write', offset, data.length);
    const step = alignedStep(Math.min(this.blockSize.maximum, MAX_READ_REQUEST), this.blockSize.minimum);
    const flags = opts.fua === true && this.canFua ? NBD_CMD_FLAG_FUA : 0;
    const pieces: Array<Promise<unknown>> = [];
    for (let p = 0; p < data.length; p += step) {
      const piece = data.subarray(p, Math.min(p + step, data.length));
      pieces.push(this.command('write', NBD_CMD_WRITE, flags, offset + p, piece.length, piece, opts.signal));
    }
    await settleAll(pieces);
  }

  /**
   * Makes [offset, offset+length) read as zeros: NBD_CMD_WRITE_ZEROES when the server offers
   * it (it may punch a hole unless `noHole`; proto.md "NBD_CMD_WRITE_ZEROES"), else NBD_CMD_WRITE
   * of zero buffers. Same alignment rule as write().
   */
  async writeZeroes(offset: number, length: number, opts: WriteZeroesOptions = {}): Promise<void> {
    this.checkWritable('write zeroes', offset, length);
    const fua = opts.fua === true && this.canFua ? NBD_CMD_FLAG_FUA : 0;
    const pieces: Array<Promise<unknown>> = [];
    const min = this.blockSize.minimum;
    if (this.canWriteZeroes) {
      const step = alignedStep(MAX_WRITE_ZEROES_REQUEST, min);
      const flags = fua | (opts.noHole === true ? NBD_CMD_FLAG_NO_HOLE : 0);
      for (let p = offset; p < offset + length; p += step) {
        pieces.push(this.command('write zeroes', NBD_CMD_WRITE_ZEROES, flags, p, Math.min(step, offset + length - p), null, opts.signal));
      }
    } else {
      const step = alignedStep(Math.min(this.blockSize.maximum, ZERO_BUFFER.length), min);
      for (let p = offset; p < offset + length; p += step) {
        const n = Math.min(step, offset + length - p);
        // step exceeds the shared buffer only when the minimum block size does (> 1 MiB).
        const zeros = n <= ZERO_BUFFER.length ? ZERO_BUFFER.subarray(0, n) : Buffer.alloc(n);
        pieces.push(this.command('write zeroes', NBD_CMD_WRITE, fua, p, n, zeros, opts.signal));
      }
    }
    await settleAll(pieces);
  }

  /**
   * NBD_CMD_FLUSH once every request sent so far has been answered (the spec's flush covers
   * only completed writes: proto.md "NBD_CMD_FLUSH"). A no-op when the server does not offer it.
   */
  async flush(opts: RequestOptions = {}): Promise<void> {
    await this.tx.whenIdle();
    if (!this.canFlush) return;
    await this.command('flush', NBD_CMD_FLUSH, 0, 0, 0, null, opts.signal);
  }

  /**
   * Waits for everything in flight (bounded by requestTimeoutMs), sends NBD_CMD_DISC and closes
   * the socket. Idempotent. Aborting `signal` stops waiting: the connection is dropped at once.
   */
  close(opts: { signal?: AbortSignal } = {}): Promise<void> {
    const signal = opts.signal;
    const onAbort = (): void => this.tx.fail('NBD_ABORTED', 'closing was aborted by the caller', signal?.reason);
    if (signal?.aborted === true) onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    this.closePromise ??= (async () => {
      await this.tx.whenIdle();
      this.tx.sendDisc();
      await this.transport.end(5000);
      this.detachSignal();
    })();
    return this.closePromise.finally(() => signal?.removeEventListener('abort', onAbort));
  }

  /** Throws NBD_INVALID_ARGUMENT unless [offset, offset+length) is a valid range of the export. */
  validateRange(what: string, offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new PullbackError('NBD_INVALID_ARGUMENT', `${what} of ${this.where}: offset ${offset} and length ${length} must be non-negative integers`);
    }
    if (offset + length > this.size) {
      throw new PullbackError(
        'NBD_INVALID_ARGUMENT',
        `${what} of ${this.where}: range [${offset}, ${offset + length}) runs past the end of the export (${this.size} bytes)`,
      );
    }
  }

  private checkWritable(what: string, offset: number, length: number): void {
    this.validateRange(what, offset, length);
    if (this.readOnly) {
      throw new PullbackError('NBD_INVALID_ARGUMENT', `${what} of ${this.where}: the export is read-only (NBD_FLAG_READ_ONLY)`);
    }
    const min = this.blockSize.minimum;
    if (offset % min !== 0 || (length % min !== 0 && offset + length !== this.size)) {
      throw new PullbackError(
        'NBD_INVALID_ARGUMENT',
        `${what} of ${this.where}: offset ${offset} and length ${length} must be multiples of the server's minimum block size (${min} bytes)`,
      );
    }
  }

  /** One request with no reply payload (WRITE, WRITE_ZEROES, FLUSH); `signal` abandons it. */
  private command(
    what: string,
    type: number,
    flags: number,
    offset: number,
    length: number,
    payload: Buffer | null,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    return new Promise((resolve, reject) => {
      const onAbort = (): void => this.tx.abandon(req, this.abortError(what, offset, length, signal));
      const req = new NbdRequest(type, flags, offset, length, null, 0, (err) => {
        signal?.removeEventListener('abort', onAbort);
        if (err !== null) reject(err);
        else resolve();
      });
      req.payload = payload;
      if (signal?.aborted === true) {
        onAbort();
        return;
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      this.tx.submit(req);
    });
  }

  private readAligned(dest: Buffer, destPos: number, offset: number, length: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted === true) {
        reject(this.abortError('read', offset, length, signal));
        return;
      }
      const onAbort = (): void => handle.cancel(this.abortError('read', offset, length, signal));
      const handle = this.submitRead(dest, destPos, offset, length, (err) => {
        signal?.removeEventListener('abort', onAbort);
        if (err === null) resolve();
        else reject(err);
      });
      if (!handle.settled) signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Low-level read for callers that manage many reads at once (NbdPool, benchmarks): sends
   * NBD_CMD_READ requests for [offset, offset+length), which must be aligned to
   * blockSize.minimum (or end at the export's end), writing into dest at destPos. `done` is
   * called exactly once. `cancel(err)` settles it with `err` and stops further writes to dest.
   */
  submitRead(dest: Buffer, destPos: number, offset: number, length: number, done: (err: Error | null) => void): ReadHandle {
    const reqs: NbdRequest[] = [];
    let remaining = 0;
    const handle: ReadHandle = {
      settled: false,
      cancel: (err: Error) => finish(err),
    };
    const finish = (err: Error | null): void => {
      if (handle.settled) return;
      handle.settled = true;
      // On failure, stop the sibling requests from writing into dest.
      if (err !== null) for (const r of reqs) this.tx.abandon(r, err);
      done(err);
    };
    const onDone = (err: Error | null): void => {
      if (err !== null) finish(err);
      else if (--remaining === 0) finish(null);
    };
    const rs = this.requestSize;
    const end = offset + length;
    for (let p = offset; p < end; ) {
      const next = Math.min(end, (Math.floor(p / rs) + 1) * rs);
      reqs.push(new NbdRequest(NBD_CMD_READ, 0, p, next - p, dest, destPos + (p - offset), onDone));
      p = next;
    }
    remaining = reqs.length;
    if (remaining === 0) finish(null);
    for (const r of reqs) {
      if (handle.settled) break;
      this.tx.submit(r);
    }
    return handle;
  }

  private abortError(what: string, offset: number, length: number, signal: AbortSignal | undefined): PullbackError {
    return new PullbackError('NBD_ABORTED', `${what} of ${this.where}, offset ${offset}, length ${length} was aborted`, {
      cause: signal?.reason,
    });
  }

  private blockStatusOnce(
    offset: number,
    length: number,
    flags: number,
    signal: AbortSignal | undefined,
  ): Promise<Map<number, BlockStatusChunk>> {
    return new Promise((resolve, reject) => {
      const onAbort = (): void => this.tx.abandon(req, this.abortError('block status', offset, length, signal));
      const req = new NbdRequest(NBD_CMD_BLOCK_STATUS, flags, offset, length, null, 0, (err, r) => {
        signal?.removeEventListener('abort', onAbort);
        if (err !== null) reject(err);
        else resolve(r.status ?? new Map());
      });
      if (signal?.aborted === true) {
        onAbort();
        return;
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      this.tx.submit(req);
    });
  }
}

/** Waits for every piece; rejects with the first failure (in request order) once all settled. */
async function settleAll(pieces: Array<Promise<unknown>>): Promise<void> {
  const results = await Promise.allSettled(pieces);
  const failed = results.find((r) => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
}
