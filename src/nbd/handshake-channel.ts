// The handshake's view of a connection: "read exactly n bytes" and "write", each read bounded
// by a timeout and an AbortSignal. It is the ReadSink of the transport until transmission
// starts; whatever it has buffered beyond the handshake is handed to the reply parser.
import { PullbackError } from '../errors.js';
import type { ReadSink, Transport } from './transport.js';

export interface OptionChannel {
  read(n: number): Promise<Buffer>;
  write(buf: Buffer): void;
  /** Where we are talking to, for messages: "export 'vda' at unix:/run/x.sock". */
  readonly where: string;
}

interface PendingRead {
  n: number;
  resolve: (b: Buffer) => void;
  reject: (e: Error) => void;
}

export class HandshakeChannel implements ReadSink, OptionChannel {
  private readonly scratch = Buffer.allocUnsafe(16 * 1024);
  private chunks: Buffer[] = [];
  private buffered = 0;
  private pending: PendingRead | null = null;
  private failure: Error | null = null;
  private transport: Transport | null = null;
  where = '';

  constructor(
    private readonly timeoutMs: number,
    private readonly signal: AbortSignal | undefined,
  ) {}

  attach(transport: Transport): void {
    this.transport = transport;
    this.where = transport.where;
    transport.onClose = (err) =>
      this.setFailure(
        new PullbackError(
          'NBD_HANDSHAKE',
          `the server closed the connection during the NBD handshake with ${this.where}${err ? ` (${err.message})` : ''}; check the export name and that this is an NBD server`,
          { cause: err },
        ),
      );
  }

  target(): Buffer {
    return this.scratch;
  }

  commit(n: number, buf: Buffer): void {
    this.chunks.push(Buffer.from(buf.subarray(0, n)));
    this.buffered += n;
    this.tryResolve();
  }

  write(buf: Buffer): void {
    this.transport?.write(buf);
  }

  read(n: number): Promise<Buffer> {
    if (this.pending !== null) throw new Error('HandshakeChannel: concurrent reads');
    if (this.buffered >= n) return Promise.resolve(this.take(n));
    if (this.failure !== null) return Promise.reject(this.failure);
    return new Promise<Buffer>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const done = (): void => {
        if (timer !== undefined) clearTimeout(timer);
        this.signal?.removeEventListener('abort', onAbort);
        this.pending = null;
      };
      const onAbort = (): void =>
        this.setFailure(new PullbackError('NBD_ABORTED', `NBD handshake with ${this.where} was aborted`, { cause: this.signal?.reason }));
      this.pending = {
        n,
        resolve: (b) => {
          done();
          resolve(b);
        },
        reject: (e) => {
          done();
          reject(e);
        },
      };
      if (this.signal?.aborted === true) {
        onAbort();
        return;
      }
      this.signal?.addEventListener('abort', onAbort, { once: true });
      if (this.timeoutMs > 0) {
        timer = setTimeout(
          () =>
            this.setFailure(
              new PullbackError(
                'NBD_TIMEOUT',
                `the NBD server did not answer within ${this.timeoutMs} ms during the handshake with ${this.where}`,
              ),
            ),
          this.timeoutMs,
        );
      }
    });
  }

  /** Bytes received beyond what the handshake consumed. */
  leftover(): Buffer {
    const b = Buffer.concat(this.chunks);
    this.chunks = [];
    this.buffered = 0;
    return b;
  }

  private setFailure(e: Error): void {
    this.failure ??= e;
    const p = this.pending;
    if (p !== null) p.reject(this.failure);
  }

  private tryResolve(): void {
    const p = this.pending;
    if (p !== null && this.buffered >= p.n) p.resolve(this.take(p.n));
  }

  private take(n: number): Buffer {
    const first = this.chunks[0];
    if (first !== undefined && first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      this.buffered -= n;
      return out;
    }
    const all = Buffer.concat(this.chunks);
    const out = all.subarray(0, n);
    this.chunks = all.length > n ? [all.subarray(n)] : [];
    this.buffered -= n;
    return out;
  }
}
