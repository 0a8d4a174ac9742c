// NbdServer: listens on a unix socket or TCP address and runs one ServerConnection per client,
// all serving the same read-only exports (so NBD_FLAG_CAN_MULTI_CONN holds: every connection
// sees the same immutable bytes). `close()` (or the `signal`) stops accepting, lets replies in
// flight go out, refuses new requests with NBD_ESHUTDOWN (proto.md "Terminating the
// transmission phase": "the server SHOULD wait for inflight requests to be serviced prior to
// initiating a hard disconnect"), then drops whatever is left after a grace period.
import { chmod, lstat, unlink } from 'node:fs/promises';
import net from 'node:net';
import { PullbackError } from '../../errors.js';
import { DEFAULT_MAXIMUM_PAYLOAD } from '../constants.js';
import { ServerConnection, type ConnectionLimits, type ServerEvent } from './connection.js';
import type { NbdExport } from './export.js';

export type ListenAddress = { socketPath: string } | { host: string; port: number };

export interface NbdServerOptions {
  exports: NbdExport[];
  /** Export an empty name selects (default: the only export). */
  defaultExport?: string;
  /** Largest read or write payload accepted (NBD_INFO_BLOCK_SIZE maximum; default 32 MiB). */
  maxPayload?: number;
  limits?: Partial<ConnectionLimits>;
  /** Further connections are refused (default 64). */
  maxConnections?: number;
  /** Permissions of a unix socket (default 0o600: only the owner may read backups). */
  socketMode?: number;
  /** Closes the server when aborted. */
  signal?: AbortSignal;
  onEvent?: (e: ServerEvent) => void;
}

export const DEFAULT_LIMITS: ConnectionLimits = {
  handshakeTimeoutMs: 30_000,
  maxInflightRequests: 256,
  maxInflightBytes: 64 << 20,
  maxBufferedBytes: 16 << 20,
};

const CLOSE_GRACE_MS = 5_000;

function listenError(where: string, e: unknown): PullbackError {
  const code = (e as NodeJS.ErrnoException).code;
  const hint =
    code === 'EADDRINUSE'
      ? ': something else is listening there; pick another --socket/--port or stop it'
      : code === 'EACCES' || code === 'EPERM'
        ? ': permission denied; pick a path or port you may use'
        : code === 'ENOENT'
          ? ': the directory does not exist'
          : '';
  return new PullbackError('SERVE_FAILED', `cannot listen on ${where} (${code ?? (e as Error).message})${hint}`, { cause: e });
}

/** A leftover socket file nobody listens on (a killed server) is removed; a live one is an error. */
async function clearStaleSocket(path: string): Promise<void> {
  let st;
  try {
    st = await lstat(path);
  } catch {
    return;
  }
  if (!st.isSocket()) {
    throw new PullbackError('SERVE_FAILED', `cannot listen on ${path}: it exists and is not a socket; choose another --socket path`);
  }
  const alive = await new Promise<boolean>((resolve) => {
    const c = net.connect(path);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
  if (alive) throw new PullbackError('SERVE_FAILED', `cannot listen on ${path}: another server is listening there (stop it or choose another --socket)`);
  await unlink(path).catch(() => undefined);
}

export class NbdServer {
  /** Where the server listens (the actual port when 0 was asked for). */
  readonly address: ListenAddress;
  /** Connections open now, the most at once, and in total. */
  get connections(): number {
    return this.open.size;
  }
  peakConnections = 0;
  totalConnections = 0;
  private readonly open = new Set<ServerConnection>();
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly srv: net.Server,
    address: ListenAddress,
    private readonly detach: () => void,
  ) {
    this.address = address;
  }

  static async listen(addr: ListenAddress, opts: NbdServerOptions): Promise<NbdServer> {
    opts.signal?.throwIfAborted();
    if (opts.exports.length === 0) throw new PullbackError('SERVE_FAILED', 'an NBD server needs at least one export');
    const maxPayload = opts.maxPayload ?? DEFAULT_MAXIMUM_PAYLOAD;
    const config = {
      exports: opts.exports,
      maxPayload,
      ...(opts.defaultExport !== undefined ? { defaultExport: opts.defaultExport } : {}),
    };
    const limits = { ...DEFAULT_LIMITS, ...opts.limits };
    const log = opts.onEvent ?? ((): void => undefined);
    const where = 'socketPath' in addr ? addr.socketPath : `${addr.host}:${addr.port}`;
    if ('socketPath' in addr) await clearStaleSocket(addr.socketPath);

    let self: NbdServer | undefined;
    let nextId = 1;
    const srv = net.createServer({ noDelay: true }, (socket) => {
      const s = self;
      if (s === undefined || s.closing !== undefined) {
        socket.destroy();
        return;
      }
      const conn = new ServerConnection(socket, nextId++, config, limits, log);
      s.open.add(conn);
      s.totalConnections++;
      s.peakConnections = Math.max(s.peakConnections, s.open.size);
      log({ level: 'debug', connection: conn.id, message: 'connected' });
      void conn.done.then(() => {
        s.open.delete(conn);
        log({ level: 'debug', connection: conn.id, message: 'disconnected' });
      });
    });
    srv.maxConnections = opts.maxConnections ?? 64;
    await new Promise<void>((resolve, reject) => {
      srv.once('error', (e) => reject(listenError(where, e)));
      if ('socketPath' in addr) srv.listen(addr.socketPath, resolve);
      else srv.listen(addr.port, addr.host, resolve);
    });
    srv.on('error', (e) => log({ level: 'warn', connection: 0, message: `server error: ${e.message}` }));
    let address: ListenAddress = addr;
    if ('socketPath' in addr) {
      await chmod(addr.socketPath, opts.socketMode ?? 0o600);
    } else {
      const a = srv.address();
      if (a !== null && typeof a === 'object') address = { host: addr.host, port: a.port };
    }
    const onAbort = (): void => void self?.close();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    self = new NbdServer(srv, address, () => opts.signal?.removeEventListener('abort', onAbort));
    return self;
  }

  /** Stops accepting, finishes replies in flight, closes every connection. Idempotent. */
  close(opts: { graceMs?: number } = {}): Promise<void> {
    this.closing ??= this.doClose(opts.graceMs ?? CLOSE_GRACE_MS);
    return this.closing;
  }

  private async doClose(graceMs: number): Promise<void> {
    this.detach();
    const stopped = new Promise<void>((resolve) => this.srv.close(() => resolve()));
    const conns = [...this.open];
    for (const c of conns) c.shutdown();
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, graceMs);
    });
    await Promise.race([Promise.all(conns.map((c) => c.done)), grace]);
    clearTimeout(timer);
    for (const c of this.open) c.destroy();
    await stopped;
    if ('socketPath' in this.address) await unlink(this.address.socketPath).catch(() => undefined);
  }
}
