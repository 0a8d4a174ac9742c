// startServe: one disk of one backup as a read-only NBD export, served until closed or the
// signal aborts. The chunk map is resolved once (the backup is complete and immutable);
// reads go through one chunk cache whose slots worker threads fill (chunk-pool.ts), so
// several clients (or one client with several connections: NBD_FLAG_CAN_MULTI_CONN) read
// the same bytes at the cost of one load, decompression and verification.
// A shared repository lock is held while serving, so prune and repair (exclusive) cannot
// remove the backup's chunks underneath a client; backups, restores and gc may run beside it.
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { PullbackError } from '../errors.js';
import { NbdServer, type ListenAddress, type ServerEvent } from '../nbd/server/index.js';
import type { BackupRecord, Repository } from '../store/index.js';
import { layout } from '../store/layout.js';
import { BackupExport } from './backup-export.js';
import { ChunkCache } from './chunk-cache.js';
import { ChunkPool } from './chunk-pool.js';
import { chooseAddress, DEFAULT_SOCKET_DIR, defaultSocketPath, uriOf } from './listen-address.js';

export interface ServeOptions {
  backupId: string;
  disk: string;
  /** Unix socket path (default /run/pullback/<domain>-<disk>.sock). */
  socket?: string;
  /** TCP port instead of a unix socket (0 = any free port). */
  port?: number;
  /** TCP address to bind (default 127.0.0.1). */
  bind?: string;
  /** Export name (default: the disk name). An empty name from the client selects it too. */
  exportName?: string;
  /** Memory for decompressed chunks (default 64 MiB; at least 8 chunks). */
  cacheBytes?: number;
  /** Chunks loaded ahead of a sequential reader (default 4). */
  readAhead?: number;
  /** Threads that read, decompress and verify chunks (default: one per core). */
  workers?: number;
  /** Unix socket permissions (default 0o600). */
  socketMode?: number;
  signal?: AbortSignal;
  onEvent?: (e: ServerEvent) => void;
}

export interface ServeHandle {
  uri: string;
  address: ListenAddress;
  exportName: string;
  backup: BackupRecord;
  disk: string;
  size: number;
  server: NbdServer;
  cache: ChunkCache;
  /** Stops serving (clients get their replies in flight, then are disconnected); idempotent. */
  close(): Promise<void>;
  /** Resolves when the server has closed, by close() or by the signal. */
  closed: Promise<void>;
}

export const DEFAULT_CACHE_BYTES = 64 << 20;
/** Even a small --cache keeps a few chunks (requests span chunks; prefetch needs room). */
const MIN_SLOTS = 8;
const DEFAULT_READ_AHEAD = 4;

export async function startServe(repo: Repository, opts: ServeOptions): Promise<ServeHandle> {
  opts.signal?.throwIfAborted();
  const backup = repo.getBackup(opts.backupId);
  if (backup === undefined) {
    throw new PullbackError('BACKUP_NOT_FOUND', `no backup ${opts.backupId} in repository ${repo.dir}: see \`pullback list --repo ${repo.dir}\``);
  }
  if (!backup.disks.some((d) => d.name === opts.disk)) {
    throw new PullbackError(
      'BACKUP_NOT_FOUND',
      `backup ${backup.id} of domain ${backup.domain} has no disk ${opts.disk}; its disks are ${backup.disks.map((d) => d.name).join(', ')}`,
    );
  }
  const address = chooseAddress(opts, defaultSocketPath(backup.domain, opts.disk));
  const lock = await repo.lock('shared', `serve of backup ${backup.id} disk ${opts.disk}`, opts.signal);
  const cleanups: Array<() => Promise<void>> = [];
  try {
    const map = repo.resolveChunkMap(backup.id, opts.disk);
    if ('socketPath' in address && opts.socket === undefined) {
      await mkdir(dirname(address.socketPath), { recursive: true, mode: 0o755 }).catch((e: unknown) => {
        throw new PullbackError('SERVE_FAILED', `cannot create ${DEFAULT_SOCKET_DIR} for the socket (${(e as Error).message}): pass --socket PATH`, { cause: e });
      });
    }
    const cs = repo.config.chunkSize;
    const pool = new ChunkPool({
      chunksDir: layout(repo.dir).chunks,
      slotSize: cs,
      slotCount: Math.max(MIN_SLOTS, Math.floor((opts.cacheBytes ?? DEFAULT_CACHE_BYTES) / cs)),
      ...(opts.workers !== undefined ? { workers: opts.workers } : {}),
    });
    cleanups.push(() => pool.close());
    const cache = new ChunkCache(pool, (digest) => pool.loadPrivate(digest.toString('hex')));
    const exportName = opts.exportName ?? opts.disk;
    const exp = new BackupExport(map, cache, {
      name: exportName,
      description: `pullback backup ${backup.id} of ${backup.domain}, disk ${opts.disk} (read-only)`,
      backupId: backup.id,
      readAhead: opts.readAhead ?? DEFAULT_READ_AHEAD,
    });
    const server = await NbdServer.listen(address, {
      exports: [exp],
      ...(opts.socketMode !== undefined ? { socketMode: opts.socketMode } : {}),
      ...(opts.onEvent !== undefined ? { onEvent: opts.onEvent } : {}),
    });
    let closing: Promise<void> | undefined;
    let resolveClosed: () => void = () => undefined;
    const closed = new Promise<void>((r) => {
      resolveClosed = r;
    });
    const close = (): Promise<void> => {
      closing ??= (async () => {
        opts.signal?.removeEventListener('abort', onAbort);
        try {
          await server.close();
          const st = cache.stats();
          opts.onEvent?.({
            level: 'info',
            connection: 0,
            message: `stopped after ${server.totalConnections} connection(s); chunk loads ${st.misses}, cache hits ${st.hits}, joined loads ${st.joined}, overflow loads ${st.overflows}`,
          });
        } finally {
          for (const c of cleanups) await c();
          await lock.release();
          resolveClosed();
        }
      })();
      return closing;
    };
    const onAbort = (): void => void close();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    if (opts.signal?.aborted === true) void close();
    return {
      uri: uriOf(server.address, exportName),
      address: server.address,
      exportName,
      backup,
      disk: opts.disk,
      size: map.size,
      server,
      cache,
      close,
      closed,
    };
  } catch (e) {
    for (const c of cleanups) await c();
    await lock.release();
    throw e;
  }
}
