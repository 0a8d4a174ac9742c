// NBD URIs (doc/uri.md of NetworkBlockDevice/nbd) <-> NbdTarget.
// A target is where an export lives: a unix socket path or a TCP host:port, plus the
// export name. `nbd://host[:port]/export` and `nbd+unix:///export?socket=PATH`.
// TLS schemes (nbds, nbds+unix) are recognised and refused until NBD_OPT_STARTTLS exists.
import { PullbackError } from '../errors.js';

/** Where an NBD export lives. Exactly one of socketPath or host is set. */
export interface NbdTarget {
  socketPath?: string;
  host?: string;
  port?: number;
  exportName: string;
}

/** IANA-assigned NBD port (doc/uri.md "NBD URI authority"). */
export const NBD_DEFAULT_PORT = 10809;

function uriError(uri: string, why: string): PullbackError {
  return new PullbackError(
    'NBD_URI',
    `invalid NBD URI '${uri}': ${why}; expected nbd://HOST[:PORT]/EXPORT or nbd+unix:///EXPORT?socket=PATH`,
  );
}

export function parseNbdUri(uri: string): NbdTarget {
  let url: URL;
  try {
    url = new URL(uri);
  } catch (e) {
    throw uriError(uri, 'not a URI');
  }
  const scheme = url.protocol.replace(/:$/, '');
  if (scheme === 'nbds' || scheme === 'nbds+unix') {
    throw new PullbackError('NBD_URI', `NBD URI '${uri}' requires TLS, which pullback does not support yet; use nbd:// or nbd+unix://`);
  }
  if (scheme !== 'nbd' && scheme !== 'nbd+unix') throw uriError(uri, `unknown scheme '${scheme}'`);

  // Export name: the path without its leading '/', percent-decoded (doc/uri.md "NBD URI export name").
  let exportName: string;
  try {
    exportName = decodeURIComponent(url.pathname.replace(/^\//, ''));
  } catch {
    throw uriError(uri, 'bad percent-encoding in the export name');
  }

  const params = url.searchParams;
  for (const key of params.keys()) {
    if (key !== 'socket' && !key.startsWith('x-')) {
      if (key.startsWith('tls-')) {
        throw new PullbackError('NBD_URI', `NBD URI '${uri}' asks for TLS (${key}), which pullback does not support yet`);
      }
      throw uriError(uri, `unknown query parameter '${key}'`);
    }
  }

  if (scheme === 'nbd+unix') {
    const socketPath = params.get('socket');
    if (socketPath === null || socketPath === '') throw uriError(uri, "nbd+unix needs a '?socket=PATH' parameter");
    if (url.host !== '') throw uriError(uri, 'nbd+unix must not have a host (use three slashes: nbd+unix:///...)');
    return { socketPath, exportName };
  }

  if (params.has('socket')) throw uriError(uri, "'socket' is only valid with nbd+unix");
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1'); // RFC 2732 brackets around IPv6 literals
  if (host === '') throw uriError(uri, 'nbd:// needs a host');
  const port = url.port === '' ? NBD_DEFAULT_PORT : Number(url.port);
  return { host, port, exportName };
}

/** The canonical URI of a target (round-trips through parseNbdUri). */
export function formatNbdUri(target: NbdTarget): string {
  // Slashes may stay literal in both the path and the query (RFC 3986 3.3, 3.4): more readable.
  const enc = (s: string): string => encodeURIComponent(s).replace(/%2F/g, '/');
  const path = enc(target.exportName);
  if (target.socketPath !== undefined) {
    return `nbd+unix:///${path}?socket=${enc(target.socketPath)}`;
  }
  const host = target.host ?? 'localhost';
  const h = host.includes(':') ? `[${host}]` : host;
  return `nbd://${h}:${target.port ?? NBD_DEFAULT_PORT}/${path}`;
}

/** Short human description for messages: `export 'vda' at unix:/run/x.sock`. */
export function describeTarget(target: NbdTarget): string {
  const where =
    target.socketPath !== undefined ? `unix:${target.socketPath}` : `${target.host ?? '?'}:${target.port ?? NBD_DEFAULT_PORT}`;
  return `export '${target.exportName}' at ${where}`;
}
