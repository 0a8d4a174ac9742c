// The byte pipe under an NBD connection: a unix or TCP socket whose reads land in buffers
// chosen by a ReadSink (net.Socket `onread` with a buffer callback), so the reply parser can
// have the kernel copy read payloads straight into their destination. The sink can be swapped
// (handshake reader -> reply parser). A later NBD_OPT_STARTTLS would wrap this socket in a
// TLS socket and feed the sink through `feed()` instead; nothing above this file would change.
import net from 'node:net';
import { PullbackError } from '../errors.js';
import { describeTarget, type NbdTarget } from './uri.js';

export interface ReadSink {
  /** Buffer for the next socket read (must not be empty). */
  target(): Buffer;
  /** `n` bytes were read into `buf` (the buffer `target()` returned before). */
  commit(n: number, buf: Buffer): void;
}

export interface TransportOptions {
  signal?: AbortSignal | undefined;
  /** Connect timeout in ms; 0 = none. */
  timeoutMs: number;
}

export class Transport {
  private sink: ReadSink;
  private readonly socket: net.Socket;
  private closeError: Error | undefined;
  private closed = false;
  private readonly closeWaiters: Array<() => void> = [];
  /** Called once when the socket is gone (EOF, error or destroy), with the socket error if any. */
  onClose: ((err: Error | undefined) => void) | null = null;
  /** Called when the sink threw while consuming data (the socket is destroyed right after). */
  onSinkError: ((err: unknown) => void) | null = null;
  readonly where: string;

  private constructor(target: NbdTarget, initial: ReadSink) {
    this.sink = initial;
    this.where = describeTarget(target);
    const onread = {
      buffer: (): Buffer => this.sink.target(),
      callback: (n: number, buf: Uint8Array): boolean => {
        try {
          this.sink.commit(n, buf as Buffer);
        } catch (e) {
          if (this.onSinkError !== null) this.onSinkError(e);
          this.destroy();
          return false;
        }
        return true;
      },
    };
    this.socket =
      target.socketPath !== undefined
        ? net.connect({ path: target.socketPath, onread })
        : net.connect({ host: target.host ?? 'localhost', port: target.port ?? 10809, onread, noDelay: true });
    this.socket.on('error', (err) => {
      this.closeError ??= err;
    });
    this.socket.on('close', () => {
      this.closed = true;
      const cb = this.onClose;
      this.onClose = null;
      if (cb !== null) cb(this.closeError);
      for (const w of this.closeWaiters.splice(0)) w();
    });
  }

  /** Connects; the socket's bytes go to `sink` until `setSink()`. */
  static connect(target: NbdTarget, sink: ReadSink, opts: TransportOptions): Promise<Transport> {
    const t = new Transport(target, sink);
    return new Promise<Transport>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const cleanup = (): void => {
        if (timer !== undefined) clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        t.socket.off('connect', onConnect);
        t.onClose = null;
      };
      const fail = (err: PullbackError): void => {
        cleanup();
        t.destroy();
        reject(err);
      };
      const onConnect = (): void => {
        cleanup();
        resolve(t);
      };
      const onAbort = (): void =>
        fail(new PullbackError('NBD_ABORTED', `connecting to ${t.where} was aborted`, { cause: opts.signal?.reason }));
      t.onClose = (err) =>
        fail(
          new PullbackError(
            'NBD_CONNECT',
            `cannot connect to ${t.where}: ${err?.message ?? 'connection closed'}; is the NBD server running and the address right?`,
            { cause: err },
          ),
        );
      if (opts.signal?.aborted === true) {
        onAbort();
        return;
      }
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      if (opts.timeoutMs > 0) {
        timer = setTimeout(
          () => fail(new PullbackError('NBD_TIMEOUT', `connecting to ${t.where} timed out after ${opts.timeoutMs} ms`)),
          opts.timeoutMs,
        );
      }
      t.socket.once('connect', onConnect);
    });
  }

  /** Routes further reads to `sink`. Bytes already handed to the old sink stay there. */
  setSink(sink: ReadSink): void {
    this.sink = sink;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  write(buf: Buffer): void {
    if (!this.closed) this.socket.write(buf);
  }

  /** Half-closes our side and waits up to `timeoutMs` for the server to close; then destroys. */
  async end(timeoutMs: number): Promise<void> {
    if (this.closed) return;
    this.socket.end();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.destroy();
        resolve();
      }, timeoutMs);
      timer.unref();
      this.closeWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** Hard disconnect. */
  destroy(): void {
    if (!this.socket.destroyed) this.socket.destroy();
  }
}
