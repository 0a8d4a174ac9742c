// One transmission-phase request in our bookkeeping: what was asked (command, offset,
// length), where read data goes, what the reply has delivered so far, and how to report
// the outcome (and, for NBD_CMD_WRITE, the payload sent after the header). A request is *queued* (waiting for an in-flight slot), *in flight* (sent,
// matched to replies by its cookie) or *settled*. An *abandoned* request was settled early
// (its caller gave up) but stays in flight until the server's reply ends, with its payload
// discarded, because NBD has no way to cancel a request.
import type { Coverage } from './coverage.js';
import type { BlockStatusChunk, ErrorChunk } from './reply-codec.js';

export type RequestDone = (err: Error | null, req: NbdRequest) => void;

export class NbdRequest {
  cookie = 0;
  sentAt = 0;
  settled = false;
  abandoned = false;
  /** READ: bytes covered so far (structured replies). */
  coverage: Coverage | null = null;
  /** BLOCK_STATUS: one chunk per metadata context id. */
  status: Map<number, BlockStatusChunk> | null = null;
  /** Error chunks received (the request fails at its final chunk). */
  errors: ErrorChunk[] | null = null;
  /** WRITE: the data sent right after the header (`length` bytes). */
  payload: Buffer | null = null;

  constructor(
    readonly type: number,
    readonly flags: number,
    readonly offset: number,
    readonly length: number,
    /** READ: destination of the data; null once abandoned (payload is then discarded). */
    public dest: Buffer | null,
    readonly destPos: number,
    readonly done: RequestDone,
  ) {}
}
