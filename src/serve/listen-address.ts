// Where `pullback serve` listens. Default: a unix socket under /run/pullback named after the
// domain and disk, readable only by its owner (backups hold guest data). TCP only when asked
// for, on 127.0.0.1 unless --bind says otherwise. Also the NBD URI clients should use.
import { join } from 'node:path';
import { PullbackError } from '../errors.js';
import { formatNbdUri } from '../nbd/uri.js';
import type { ListenAddress } from '../nbd/server/index.js';

export const DEFAULT_SOCKET_DIR = '/run/pullback';
export const DEFAULT_BIND = '127.0.0.1';

/** `/run/pullback/<domain>-<disk>.sock`, with path separators in names replaced. */
export function defaultSocketPath(domain: string, disk: string, dir = DEFAULT_SOCKET_DIR): string {
  const safe = (s: string): string => s.replace(/[/\0]/g, '_');
  return join(dir, `${safe(domain)}-${safe(disk)}.sock`);
}

export interface AddressChoice {
  socket?: string;
  port?: number;
  bind?: string;
}

/** Exactly one of socket or port; `bind` only with port. */
export function chooseAddress(choice: AddressChoice, fallbackSocket: string): ListenAddress {
  if (choice.socket !== undefined && choice.port !== undefined) {
    throw new PullbackError('USAGE', 'give either a unix socket or a TCP port to listen on, not both');
  }
  if (choice.bind !== undefined && choice.port === undefined) {
    throw new PullbackError('USAGE', 'a bind address needs a TCP port (--port N)');
  }
  if (choice.port !== undefined) {
    if (!Number.isInteger(choice.port) || choice.port < 0 || choice.port > 65535) {
      throw new PullbackError('USAGE', `TCP port ${choice.port} is invalid: use 1-65535 (or 0 for any free port)`);
    }
    return { host: choice.bind ?? DEFAULT_BIND, port: choice.port };
  }
  return { socketPath: choice.socket ?? fallbackSocket };
}

/** The URI a client (qemu-img, nbdcopy, nbdinfo, pullback nbd-*) connects to. */
export function uriOf(addr: ListenAddress, exportName: string): string {
  if ('socketPath' in addr) return formatNbdUri({ socketPath: addr.socketPath, exportName });
  // A wildcard bind is reachable locally through loopback.
  const host = addr.host === '0.0.0.0' ? '127.0.0.1' : addr.host === '::' ? '::1' : addr.host;
  return formatNbdUri({ host, port: addr.port, exportName });
}
