// Opening a connection up to the point where options can be sent: socket connect plus the
// fixed-newstyle greeting, with the connect timeout and AbortSignal applied to every step.
// Used by NbdClient (which goes on to NBD_OPT_GO) and by the discovery helpers (which end
// with NBD_OPT_ABORT).
import { PullbackError, isPullbackError } from '../errors.js';
import { HandshakeChannel } from './handshake-channel.js';
import { greet, optAbort, type Greeting } from './handshake.js';
import { Transport } from './transport.js';
import type { NbdTarget } from './uri.js';

export interface SessionOptions {
  signal?: AbortSignal | undefined;
  /** Per-step timeout in ms; 0 = none. */
  timeoutMs: number;
}

export interface Session {
  transport: Transport;
  channel: HandshakeChannel;
  greeting: Greeting;
}

export async function openSession(target: NbdTarget, opts: SessionOptions): Promise<Session> {
  if (target.socketPath === undefined && target.host === undefined) {
    throw new PullbackError('NBD_INVALID_ARGUMENT', 'NBD target has neither socketPath nor host');
  }
  const channel = new HandshakeChannel(opts.timeoutMs, opts.signal);
  const transport = await Transport.connect(target, channel, { signal: opts.signal, timeoutMs: opts.timeoutMs });
  channel.attach(transport);
  try {
    const greeting = await greet(channel);
    return { transport, channel, greeting };
  } catch (e) {
    transport.destroy();
    throw e;
  }
}

/** Runs `body` in a fresh session and leaves with NBD_OPT_ABORT (soft disconnect). */
export async function withSession<T>(
  target: NbdTarget,
  opts: SessionOptions,
  body: (s: Session) => Promise<T>,
): Promise<T> {
  const s = await openSession(target, opts);
  try {
    const out = await body(s);
    await optAbort(s.channel);
    return out;
  } catch (e) {
    // An option the server refused leaves the session usable: still leave politely.
    if (isPullbackError(e, 'NBD_OPTION')) await optAbort(s.channel);
    throw e;
  } finally {
    await s.transport.end(1000);
  }
}
