// The transmission phase of one connection (proto.md "Transmission"): sends requests, keeps
// up to `maxInflight` of them in flight (the rest wait in a FIFO queue: backpressure), matches
// replies to requests by cookie, and checks every reply against what the spec allows.
//
// Failure model (what the caller sees):
// - a server error (EIO, EINVAL, ...) settles only its own request, with NbdServerError;
// - a protocol violation, an unexpected close, a request older than `timeoutMs`, or a
//   connection-wide abort ends the connection and rejects every request in flight or queued,
//   each with an error naming the export, the request's offset/length and the reason.
import { PullbackError, type ErrorCode } from '../errors.js';
import {
  COMMAND_NAMES,
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_DISC,
  NBD_CMD_FLAG_REQ_ONE,
  NBD_CMD_READ,
  NBD_ESHUTDOWN,
  NBD_MAX_BLOCK_STATUS_EXTENTS,
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_ERROR_BIT,
  NBD_REPLY_TYPE_ERROR_OFFSET,
  NBD_REPLY_TYPE_NONE,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_REPLY_TYPE_OFFSET_HOLE,
  REQUEST_HEADER_SIZE,
} from './constants.js';
import { Coverage } from './coverage.js';
import { decodeBlockStatus, decodeErrorChunk, decodeOffsetHole, replyTypeName } from './reply-codec.js';
import { ReplyParser, type PayloadTarget, type ReplyHandler } from './reply-parser.js';
import { NbdRequest } from './request.js';
import { encodeRequest, writeRequest } from './request-codec.js';
import { NbdServerError } from './server-error.js';
import type { Transport } from './transport.js';
import { NbdProtocolViolation } from './violation.js';

/** Block status chunks above this are refused (spec: servers SHOULD NOT send > 2^20 extents). */
const MAX_BLOCK_STATUS_PAYLOAD = 4 + 8 * NBD_MAX_BLOCK_STATUS_EXTENTS;
/** Error chunks carry a string of at most 4 KiB plus fixed fields; allow slack for unknown types. */
const MAX_ERROR_PAYLOAD = 64 * 1024;

export interface TransmissionOptions {
  /** "export 'vda' at unix:/run/x.sock", used in every message. */
  where: string;
  structuredReplies: boolean;
  /** Negotiated metadata contexts, id -> name. */
  contexts: ReadonlyMap<number, string>;
  maxInflight: number;
  /** A request unanswered for this long ends the connection; 0 = never. */
  timeoutMs: number;
}

interface Failure {
  code: ErrorCode;
  reason: string;
  cause: unknown;
}

export class Transmission implements ReplyHandler {
  readonly parser: ReplyParser;
  private readonly inflight = new Map<number, NbdRequest>();
  private queue: NbdRequest[] = [];
  private qHead = 0;
  private nextCookie = 1;
  private failure: Failure | null = null;
  private watchdog: NodeJS.Timeout | null = null;
  private outbox = Buffer.allocUnsafe(64 * REQUEST_HEADER_SIZE);
  private outboxUsed = 0;
  private flushScheduled = false;
  private readonly flushCallback = (): void => {
    this.flushScheduled = false;
    this.flush();
  };
  private idleWaiters: Array<() => void> = [];
  private shuttingDown = false;
  private discSent = false;
  /** Requests written to the socket so far (diagnostics, tests). */
  sent = 0;

  constructor(
    private readonly transport: Transport,
    private readonly opts: TransmissionOptions,
  ) {
    this.parser = new ReplyParser(this);
    transport.onSinkError = (e) => {
      if (e instanceof NbdProtocolViolation) {
        this.fail('NBD_PROTOCOL', `protocol violation by the server: ${e.message}; the connection was closed`, e);
      } else {
        this.fail('INTERNAL', `internal error while parsing replies: ${e instanceof Error ? e.message : String(e)}`, e);
      }
    };
    transport.onClose = (err) => {
      const cut = this.parser.pendingDescription();
      const why =
        cut !== null
          ? `the server closed the connection in the middle of ${cut} (truncated reply)`
          : this.discSent
            ? 'the connection was closed by NBD_CMD_DISC'
            : `the server closed the connection${err ? ` (${err.message})` : ''}`;
      this.fail('NBD_CLOSED', why, err);
    };
  }

  /** Requests queued or in flight, abandoned ones included (for load balancing across connections). */
  get pending(): number {
    return this.inflight.size + (this.queue.length - this.qHead);
  }

  describe(req: { type: number; offset: number; length: number }): string {
    return `${COMMAND_NAMES[req.type] ?? `command ${req.type}`} of ${this.opts.where}, offset ${req.offset}, length ${req.length}`;
  }

  submit(req: NbdRequest): void {
    if (this.failure !== null || this.shuttingDown || this.discSent) {
      const reason =
        this.failure !== null
          ? `the connection is closed: ${this.failure.reason}`
          : this.shuttingDown
            ? 'the server is shutting down (it answered ESHUTDOWN)'
            : 'the client is closed';
      this.settle(req, new PullbackError('NBD_CLOSED', `${this.describe(req)}: ${reason}`, { cause: this.failure?.cause }));
      return;
    }
    if (this.inflight.size < this.opts.maxInflight && this.qHead === this.queue.length) this.send(req);
    else this.queue.push(req);
  }

  /** The caller gave up on `req`: settle it now; its late reply (if any) is read and dropped. */
  abandon(req: NbdRequest, err: Error): void {
    if (req.settled) return;
    req.abandoned = true;
    req.dest = null;
    this.settle(req, err);
  }

  /** Resolves when nothing is queued or in flight (including abandoned requests). */
  whenIdle(): Promise<void> {
    if (this.inflight.size === 0 && this.qHead === this.queue.length) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** NBD_CMD_DISC: soft disconnect; nothing may be sent afterwards (proto.md NBD_CMD_DISC). */
  sendDisc(): void {
    if (this.discSent || this.failure !== null) return;
    this.discSent = true;
    this.flush();
    this.transport.write(encodeRequest(0, NBD_CMD_DISC, 0, 0, 0));
  }

  /** Ends the connection and rejects everything outstanding. */
  fail(code: ErrorCode, reason: string, cause?: unknown): void {
    if (this.failure !== null) return;
    this.failure = { code, reason, cause };
    this.stopWatchdog();
    this.transport.destroy();
    const reqs = [...this.inflight.values(), ...this.queue.slice(this.qHead)];
    this.inflight.clear();
    this.queue = [];
    this.qHead = 0;
    for (const r of reqs) {
      this.settle(r, new PullbackError(code, `${this.describe(r)}: ${reason}`, { cause }));
    }
    this.notifyIdle();
  }

  // ---- sending

  private send(req: NbdRequest): void {
    let cookie = this.nextCookie;
    while (cookie === 0 || this.inflight.has(cookie)) cookie = (cookie + 1) >>> 0;
    this.nextCookie = (cookie + 1) >>> 0;
    req.cookie = cookie;
    req.sentAt = performance.now();
    if (req.type === NBD_CMD_READ && this.opts.structuredReplies) req.coverage = new Coverage(req.offset, req.length);
    this.inflight.set(cookie, req);
    // Headers wait in an outbox flushed once per event-loop turn (setImmediate runs after the
    // poll phase has handled every reply that arrived): one write syscall for all requests
    // refilled in that turn instead of one per request.
    if (this.outboxUsed + REQUEST_HEADER_SIZE > this.outbox.length) this.flush();
    writeRequest(this.outbox, this.outboxUsed, req.flags, req.type, cookie, req.offset, req.length);
    this.outboxUsed += REQUEST_HEADER_SIZE;
    if (req.payload !== null) {
      // NBD_CMD_WRITE: the data follows its header directly on the wire (proto.md "Request
      // message"), so the headers gathered so far go out now, then the payload. The socket
      // keeps a reference to it until written; the caller keeps it unchanged until the reply.
      this.flush();
      this.transport.write(req.payload);
      req.payload = null;
    }
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flushCallback);
    }
    this.sent++;
    if (this.watchdog === null && this.opts.timeoutMs > 0) this.startWatchdog();
  }

  private flush(): void {
    if (this.outboxUsed === 0 || this.failure !== null) return;
    // The socket may hold on to the buffer until written: hand it over and start a new one.
    this.transport.write(this.outbox.subarray(0, this.outboxUsed));
    this.outbox = Buffer.allocUnsafe(this.outbox.length);
    this.outboxUsed = 0;
  }

  private pump(): void {
    while (this.qHead < this.queue.length && this.inflight.size < this.opts.maxInflight) {
      const req = this.queue[this.qHead++] as NbdRequest;
      if (!req.abandoned) this.send(req);
    }
    if (this.qHead === this.queue.length) {
      this.queue = [];
      this.qHead = 0;
    } else if (this.qHead > 1024) {
      this.queue = this.queue.slice(this.qHead);
      this.qHead = 0;
    }
  }

  private startWatchdog(): void {
    const period = Math.min(1000, Math.max(20, this.opts.timeoutMs / 4));
    this.watchdog = setInterval(() => {
      // Map iteration order is insertion order: the first entry is the oldest in flight.
      const oldest = this.inflight.values().next();
      if (oldest.done === true) {
        if (this.qHead === this.queue.length) this.stopWatchdog();
        return;
      }
      const age = performance.now() - oldest.value.sentAt;
      if (age > this.opts.timeoutMs) {
        this.fail(
          'NBD_TIMEOUT',
          `no reply from the server within ${this.opts.timeoutMs} ms (oldest request: ${this.describe(oldest.value)}); the connection was closed. Is the server hung? Raise requestTimeoutMs if it is only slow`,
        );
      }
    }, period);
  }

  private stopWatchdog(): void {
    if (this.watchdog !== null) clearInterval(this.watchdog);
    this.watchdog = null;
  }

  // ---- completing

  private settle(req: NbdRequest, err: Error | null): void {
    if (req.settled) return;
    req.settled = true;
    req.done(err, req);
  }

  private notifyIdle(): void {
    if (this.inflight.size !== 0 || this.qHead !== this.queue.length) return;
    for (const w of this.idleWaiters.splice(0)) w();
  }

  /** The reply to `req` is complete (its last chunk, or its simple reply). */
  private finish(req: NbdRequest): void {
    if (req.errors === null && !req.abandoned) {
      if (req.coverage !== null && !req.coverage.complete) {
        throw new NbdProtocolViolation(
          `reply to ${this.describe(req)} ended successfully after covering only ${req.coverage.covered} of ${req.length} bytes`,
        );
      }
      if (req.status !== null) {
        for (const [id, name] of this.opts.contexts) {
          if (!req.status.has(id)) {
            throw new NbdProtocolViolation(
              `reply to ${this.describe(req)} ended without a NBD_REPLY_TYPE_BLOCK_STATUS chunk for context '${name}' (id ${id})`,
            );
          }
        }
      }
    }
    this.inflight.delete(req.cookie);
    const first = req.errors?.[0];
    if (first !== undefined) {
      if (first.errno === NBD_ESHUTDOWN) this.shuttingDown = true;
      this.settle(req, new NbdServerError(this.describe(req), first.errno, first.message, first.offset));
    } else {
      this.settle(req, null);
    }
    if (this.shuttingDown) {
      // proto.md: on ESHUTDOWN the client MUST initiate a soft disconnect: send nothing new.
      const queued = this.queue.slice(this.qHead);
      this.queue = [];
      this.qHead = 0;
      for (const r of queued) {
        this.settle(r, new PullbackError('NBD_CLOSED', `${this.describe(r)}: the server is shutting down (it answered ESHUTDOWN)`));
      }
      if (this.inflight.size === 0) this.sendDisc();
    }
    this.pump();
    if (this.inflight.size === 0) this.notifyIdle();
  }

  private lookup(cookie: number, what: string): NbdRequest {
    const req = this.inflight.get(cookie);
    if (req === undefined) {
      throw new NbdProtocolViolation(`${what} for cookie ${cookie}, which matches no request in flight`);
    }
    return req;
  }

  private checkRange(req: NbdRequest, offset: number, length: number, what: string): void {
    const cov = req.coverage as Coverage;
    const bad = cov.add(offset, length);
    if (bad !== null) throw new NbdProtocolViolation(`${what} in the reply to ${this.describe(req)} ${bad}`);
  }

  // ---- ReplyHandler

  onSimpleReply(cookie: number, errno: number): (PayloadTarget & { length: number }) | null {
    const req = this.lookup(cookie, 'simple reply');
    if (req.type === NBD_CMD_READ) {
      if (this.opts.structuredReplies) {
        throw new NbdProtocolViolation(
          `simple reply to ${this.describe(req)} although structured replies were negotiated (the spec forbids that for NBD_CMD_READ)`,
        );
      }
      if (errno !== 0) {
        req.errors = [{ errno, message: '' }];
        this.finish(req);
        return null;
      }
      return { buf: req.dest, pos: req.destPos, length: req.length };
    }
    if (errno === 0 && req.type === NBD_CMD_BLOCK_STATUS) {
      throw new NbdProtocolViolation(`simple reply without error to ${this.describe(req)}; block status needs a structured reply`);
    }
    if (errno !== 0) req.errors = [{ errno, message: '' }];
    this.finish(req);
    return null;
  }

  onSimpleReplyDone(cookie: number): void {
    this.finish(this.lookup(cookie, 'simple reply'));
  }

  onChunkHeader(cookie: number, flags: number, type: number, length: number): boolean {
    if (!this.opts.structuredReplies) {
      throw new NbdProtocolViolation(`structured reply chunk (${replyTypeName(type)}) although structured replies were not negotiated`);
    }
    const req = this.lookup(cookie, `${replyTypeName(type)} chunk`);
    const isRead = req.type === NBD_CMD_READ;
    const wrongCommand = (): NbdProtocolViolation =>
      new NbdProtocolViolation(`${replyTypeName(type)} chunk in the reply to ${this.describe(req)}`);
    switch (type) {
      case NBD_REPLY_TYPE_OFFSET_DATA:
        if (!isRead) throw wrongCommand();
        if (length < 9) throw new NbdProtocolViolation(`NBD_REPLY_TYPE_OFFSET_DATA of length ${length} (the spec requires at least 9) in the reply to ${this.describe(req)}`);
        return true;
      case NBD_REPLY_TYPE_OFFSET_HOLE:
        if (!isRead) throw wrongCommand();
        if (length !== 12) throw new NbdProtocolViolation(`NBD_REPLY_TYPE_OFFSET_HOLE of length ${length} (the spec requires 12) in the reply to ${this.describe(req)}`);
        return false;
      case NBD_REPLY_TYPE_BLOCK_STATUS:
        if (req.type !== NBD_CMD_BLOCK_STATUS) throw wrongCommand();
        if (length > MAX_BLOCK_STATUS_PAYLOAD) {
          throw new NbdProtocolViolation(
            `oversized NBD_REPLY_TYPE_BLOCK_STATUS chunk of ${length} bytes (more than 2^20 extents) in the reply to ${this.describe(req)}`,
          );
        }
        if ((req.flags & NBD_CMD_FLAG_REQ_ONE) !== 0 && length !== 12) {
          throw new NbdProtocolViolation(
            `NBD_REPLY_TYPE_BLOCK_STATUS chunk with ${(length - 4) / 8} descriptors in the reply to ${this.describe(req)}, which set NBD_CMD_FLAG_REQ_ONE`,
          );
        }
        return false;
      case NBD_REPLY_TYPE_NONE:
        if (length !== 0 || (flags & NBD_REPLY_FLAG_DONE) === 0) {
          throw new NbdProtocolViolation(`NBD_REPLY_TYPE_NONE with length ${length} and flags ${flags} (must be empty and final)`);
        }
        return false;
      default:
        if ((type & NBD_REPLY_TYPE_ERROR_BIT) !== 0) {
          if (length > MAX_ERROR_PAYLOAD) {
            throw new NbdProtocolViolation(`oversized ${replyTypeName(type)} chunk of ${length} bytes in the reply to ${this.describe(req)}`);
          }
          return false;
        }
        throw new NbdProtocolViolation(`unknown structured reply type ${type} in the reply to ${this.describe(req)}`);
    }
  }

  onDataChunk(cookie: number, _flags: number, offset: number, dataLength: number): PayloadTarget {
    const req = this.lookup(cookie, 'NBD_REPLY_TYPE_OFFSET_DATA chunk');
    this.checkRange(req, offset, dataLength, 'NBD_REPLY_TYPE_OFFSET_DATA chunk');
    return { buf: req.dest, pos: req.destPos + (offset - req.offset) };
  }

  onDataChunkDone(cookie: number, flags: number): void {
    if ((flags & NBD_REPLY_FLAG_DONE) !== 0) this.finish(this.lookup(cookie, 'NBD_REPLY_TYPE_OFFSET_DATA chunk'));
  }

  onChunk(cookie: number, flags: number, type: number, payload: Buffer): void {
    const req = this.lookup(cookie, `${replyTypeName(type)} chunk`);
    if (type === NBD_REPLY_TYPE_OFFSET_HOLE) {
      const hole = decodeOffsetHole(payload);
      this.checkRange(req, hole.offset, hole.length, 'NBD_REPLY_TYPE_OFFSET_HOLE chunk');
      const pos = req.destPos + (hole.offset - req.offset);
      if (req.dest !== null) req.dest.fill(0, pos, pos + hole.length);
    } else if (type === NBD_REPLY_TYPE_BLOCK_STATUS) {
      this.onBlockStatus(req, payload);
    } else if ((type & NBD_REPLY_TYPE_ERROR_BIT) !== 0) {
      const e = decodeErrorChunk(type, payload);
      if (type === NBD_REPLY_TYPE_ERROR_OFFSET) {
        const off = e.offset as number;
        if (off < req.offset || off >= req.offset + req.length) {
          throw new NbdProtocolViolation(
            `NBD_REPLY_TYPE_ERROR_OFFSET names offset ${off}, outside the request (${this.describe(req)})`,
          );
        }
      }
      (req.errors ??= []).push(e);
    }
    if ((flags & NBD_REPLY_FLAG_DONE) !== 0) this.finish(req);
  }

  private onBlockStatus(req: NbdRequest, payload: Buffer): void {
    const chunk = decodeBlockStatus(payload);
    const name = this.opts.contexts.get(chunk.contextId);
    if (name === undefined) {
      throw new NbdProtocolViolation(`NBD_REPLY_TYPE_BLOCK_STATUS for context id ${chunk.contextId}, which was never negotiated`);
    }
    const status = (req.status ??= new Map());
    if (status.has(chunk.contextId)) {
      throw new NbdProtocolViolation(`two NBD_REPLY_TYPE_BLOCK_STATUS chunks for context '${name}' in the reply to ${this.describe(req)}`);
    }
    const n = chunk.lengths.length;
    if ((req.flags & NBD_CMD_FLAG_REQ_ONE) !== 0) {
      if ((chunk.lengths[0] as number) > req.length) {
        throw new NbdProtocolViolation(
          `oversized block status: the single extent of ${chunk.lengths[0]} bytes for '${name}' exceeds the ${req.length} bytes asked with NBD_CMD_FLAG_REQ_ONE (${this.describe(req)})`,
        );
      }
    } else {
      // All but the last descriptor must end before the requested length (the last MAY run past it).
      let sum = 0;
      for (let i = 0; i < n - 1; i++) sum += chunk.lengths[i] as number;
      if (n > 1 && sum >= req.length) {
        throw new NbdProtocolViolation(
          `oversized block status: ${n} extents for '${name}' add up to more than the ${req.length} bytes asked (${this.describe(req)})`,
        );
      }
    }
    status.set(chunk.contextId, chunk);
  }
}
