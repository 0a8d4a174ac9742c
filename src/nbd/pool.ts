// NbdPool: several connections to one export, used together for reads. Only when the server
// sets NBD_FLAG_CAN_MULTI_CONN (proto.md "Transmission flags": without it clients SHOULD NOT
// multiplex over more than one connection) — otherwise the pool holds a single connection.
// A read is cut into request-sized pieces, each sent on the connection with the fewest
// requests pending, and all land in one destination buffer.
import { PullbackError } from '../errors.js';
import { NbdClient, type Extent, type NbdConnectOptions, type ReadHandle, type RequestOptions } from './client.js';
import type { NbdTarget } from './uri.js';

export interface NbdPoolOptions extends NbdConnectOptions {
  /** Connections wanted; the pool uses 1 when the server does not allow multi-conn. */
  connections: number;
}

export class NbdPool {
  readonly clients: readonly NbdClient[];
  readonly size: number;
  readonly connections: number;

  private constructor(clients: NbdClient[]) {
    this.clients = clients;
    const first = clients[0] as NbdClient;
    this.size = first.size;
    this.connections = clients.length;
  }

  static async open(target: NbdTarget, opts: NbdPoolOptions): Promise<NbdPool> {
    if (!Number.isInteger(opts.connections) || opts.connections < 1) {
      throw new PullbackError('NBD_INVALID_ARGUMENT', `connections must be a positive integer, got ${opts.connections}`);
    }
    return NbdPool.extend(await NbdClient.connect(target, opts), target, opts);
  }

  /**
   * A pool around a connection already open (e.g. one that answered block status before it
   * was known whether there is anything to read): opens the others. Owns `first` from here
   * on: a failure closes it too.
   */
  static async extend(first: NbdClient, target: NbdTarget, opts: NbdPoolOptions): Promise<NbdPool> {
    const n = first.canMultiConn ? Math.max(1, opts.connections) : 1;
    const rest = await Promise.allSettled(Array.from({ length: n - 1 }, () => NbdClient.connect(target, opts)));
    const ok = rest.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    const bad = rest.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (bad !== undefined) {
      await Promise.allSettled([first, ...ok].map((c) => c.close()));
      throw bad.reason;
    }
    return new NbdPool([first, ...ok]);
  }

  /** The first connection: block status, export facts (all connections see the same export). */
  get primary(): NbdClient {
    return this.clients[0] as NbdClient;
  }

  async read(offset: number, length: number, opts: RequestOptions = {}): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(length);
    await this.readInto(buf, offset, opts);
    return buf;
  }

  /** Reads `dest.length` bytes at `offset` into `dest`, spread over all connections. */
  async readInto(dest: Buffer, offset: number, opts: RequestOptions = {}): Promise<void> {
    const primary = this.primary;
    if (this.clients.length === 1) return primary.readInto(dest, offset, opts);
    const length = dest.length;
    primary.validateRange('read', offset, length);
    if (length === 0) return;
    const min = primary.blockSize.minimum;
    const aStart = offset - (offset % min);
    const aEnd = Math.min(Math.ceil((offset + length) / min) * min, this.size);
    if (aStart !== offset || aEnd !== offset + length) {
      const bounce = Buffer.allocUnsafe(aEnd - aStart);
      await this.readInto(bounce, aStart, opts);
      bounce.copy(dest, 0, offset - aStart, offset - aStart + length);
      return;
    }
    const signal = opts.signal;
    const rs = primary.requestSize;
    await new Promise<void>((resolve, reject) => {
      if (signal?.aborted === true) {
        reject(new PullbackError('NBD_ABORTED', `read of ${primary.exportName} at offset ${offset}, length ${length} was aborted`, { cause: signal.reason }));
        return;
      }
      const pieces: Array<[number, number]> = [];
      for (let p = offset; p < offset + length; ) {
        const next = Math.min(offset + length, (Math.floor(p / rs) + 1) * rs);
        pieces.push([p, next]);
        p = next;
      }
      const handles: ReadHandle[] = [];
      let remaining = pieces.length;
      let settled = false;
      const finish = (err: Error | null): void => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        if (err === null) {
          resolve();
          return;
        }
        // One piece failed: stop the others writing into dest, report the first failure.
        for (const h of handles) h.cancel(err);
        reject(err);
      };
      const onDone = (err: Error | null): void => {
        if (err !== null) finish(err);
        else if (--remaining === 0) finish(null);
      };
      const onAbort = (): void =>
        finish(new PullbackError('NBD_ABORTED', `read of ${primary.exportName} at offset ${offset}, length ${length} was aborted`, { cause: signal?.reason }));
      signal?.addEventListener('abort', onAbort, { once: true });
      for (const [p, next] of pieces) {
        if (settled) break;
        handles.push(this.leastBusy().submitRead(dest, p - offset, p, next - p, onDone));
      }
    });
  }

  /**
   * Low-level read on the least busy connection (see NbdClient.submitRead): for callers that
   * keep many reads in flight themselves. [offset, offset+length) must be aligned to
   * blockSize.minimum; best at most `requestSize` long.
   */
  submitRead(dest: Buffer, destPos: number, offset: number, length: number, done: (err: Error | null) => void): ReadHandle {
    return this.leastBusy().submitRead(dest, destPos, offset, length, done);
  }

  /** Bytes per NBD_CMD_READ (same on every connection). */
  get requestSize(): number {
    return this.primary.requestSize;
  }

  blockStatus(context: string, offset: number, length: number, opts: { reqOne?: boolean; signal?: AbortSignal } = {}): Promise<Extent[]> {
    return this.primary.blockStatus(context, offset, length, opts);
  }

  async close(opts: { signal?: AbortSignal } = {}): Promise<void> {
    const results = await Promise.allSettled(this.clients.map((c) => c.close(opts)));
    const bad = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (bad !== undefined) throw bad.reason;
  }

  private leastBusy(): NbdClient {
    let best = this.clients[0] as NbdClient;
    for (const c of this.clients) if (c.pending < best.pending) best = c;
    return best;
  }
}
