// Handshake-only sessions that ask a server what it has, then leave with NBD_OPT_ABORT:
// NBD_OPT_LIST (exports) and NBD_OPT_LIST_META_CONTEXT (metadata contexts of one export).
import { PullbackError } from '../errors.js';
import { DEFAULT_REQUEST_TIMEOUT_MS } from './client.js';
import { optList, optListMetaContext, optStructuredReply } from './handshake.js';
import { withSession } from './session.js';
import { describeTarget, type NbdTarget } from './uri.js';

export interface DiscoveryOptions {
  signal?: AbortSignal;
  /** Bound on each handshake step (ms, default 60000, 0 = none). */
  timeoutMs?: number;
}

function sessionOpts(opts: DiscoveryOptions): { signal: AbortSignal | undefined; timeoutMs: number } {
  return { signal: opts.signal, timeoutMs: opts.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS };
}

/** The exports a server lists (NBD_OPT_LIST); `target.exportName` is ignored. */
export function listExports(target: NbdTarget, opts: DiscoveryOptions = {}): Promise<Array<{ name: string; description: string }>> {
  return withSession(target, sessionOpts(opts), async (s) => {
    if (!s.greeting.fixedNewstyle) {
      throw new PullbackError('NBD_OPTION', `${describeTarget(target)} does not speak fixed newstyle, so it cannot list exports`);
    }
    return optList(s.channel);
  });
}

/** Metadata contexts of `target.exportName` matching `queries` (all contexts when empty). */
export function listMetaContexts(target: NbdTarget, queries: string[], opts: DiscoveryOptions = {}): Promise<string[]> {
  return withSession(target, sessionOpts(opts), async (s) => {
    // proto.md: NBD_OPT_LIST_META_CONTEXT SHOULD NOT be sent before structured replies.
    if (!s.greeting.fixedNewstyle || !(await optStructuredReply(s.channel))) {
      throw new PullbackError('NBD_OPTION', `${describeTarget(target)} does not support structured replies, so it has no metadata contexts`);
    }
    return optListMetaContext(s.channel, target.exportName, queries);
  });
}
