// Incremental parser of the transmission-phase byte stream from the server: simple replies
// (proto.md "Simple reply message") and structured reply chunks ("Structured reply chunk
// message"). It frames messages and routes payloads; what a message *means* (which request,
// whether it is allowed) is decided by a ReplyHandler, which may throw NbdProtocolViolation.
//
// Zero-copy: the socket reads straight into buffers the parser hands out (`target()`), then
// reports how much arrived (`commit()`). While a read payload is expected and nothing else is
// buffered, the target is the caller's destination buffer itself, so bulk data is copied only
// by the kernel. Headers and small payloads land in a scratch buffer; the part of a bulk
// payload that arrived together with its header is copied out once. `feed()` accepts bytes
// from anywhere (arbitrary chunking) through the same path.
import {
  NBD_EXTENDED_REPLY_MAGIC,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_MAGIC,
  SIMPLE_REPLY_HEADER_SIZE,
  STRUCTURED_REPLY_HEADER_SIZE,
} from './constants.js';
import { replyTypeName } from './reply-codec.js';
import { readUInt64 } from './request-codec.js';
import { NbdProtocolViolation } from './violation.js';

/** Where payload bytes go: `buf` at `pos`, or nowhere (discarded) when `buf` is null. */
export interface PayloadTarget {
  buf: Buffer | null;
  pos: number;
}

export interface ReplyHandler {
  /** A simple reply header. Returns the payload's target and length, or null if no payload follows. */
  onSimpleReply(cookie: number, errno: number): (PayloadTarget & { length: number }) | null;
  /** The simple reply's payload has fully arrived. */
  onSimpleReplyDone(cookie: number): void;
  /** A structured chunk header. Returns true when the payload is bulk read data (OFFSET_DATA). */
  onChunkHeader(cookie: number, flags: number, type: number, length: number): boolean;
  /** OFFSET_DATA: its offset has arrived; where do its `dataLength` bytes go? */
  onDataChunk(cookie: number, flags: number, offset: number, dataLength: number): PayloadTarget;
  /** OFFSET_DATA: all of its data has arrived. */
  onDataChunkDone(cookie: number, flags: number): void;
  /** Any other chunk, with its whole payload (only valid during the call). */
  onChunk(cookie: number, flags: number, type: number, payload: Buffer): void;
}

const HEADER = 0; // expecting a reply header
const DIRECT = 1; // payload bytes going to a target (or discarded)
const DATA_OFFSET = 2; // expecting the 8-byte offset of an OFFSET_DATA chunk
const SMALL = 3; // expecting a small payload, gathered in scratch
const DEAD = 4; // after a violation: ignore everything

const KIND_SIMPLE = 0;
const KIND_DATA = 1;
const KIND_BIG = 2;

/** Structured chunk header + the 8-byte offset of an OFFSET_DATA payload. */
const HEADER_PEEK = STRUCTURED_REPLY_HEADER_SIZE + 8;

const EMPTY = Buffer.alloc(0);
const TWO_32 = 0x1_0000_0000;

export class ReplyParser {
  private readonly scratch: Buffer;
  private start = 0;
  private end = 0;
  private state = HEADER;
  private cookie = 0;
  private flags = 0;
  private type = 0;
  private length = 0;
  private simple = false;
  private dBuf: Buffer | null = null;
  private dPos = 0;
  private dRemaining = 0;
  private dTotal = 0;
  private dKind = KIND_SIMPLE;
  private bigBuf: Buffer = EMPTY;
  private lastTarget: Buffer | null = null;
  private lastIsScratch = false;
  /** The last message ended with a payload read straight into its destination. */
  private afterBulk = false;

  constructor(
    private readonly handler: ReplyHandler,
    scratchSize = 64 * 1024,
  ) {
    this.scratch = Buffer.allocUnsafe(scratchSize);
  }

  /** Where the next socket read should land. */
  target(): Buffer {
    let t: Buffer;
    if (this.state === DIRECT && this.start === this.end) {
      t =
        this.dBuf !== null
          ? this.dBuf.subarray(this.dPos, this.dPos + this.dRemaining)
          : this.scratch.subarray(0, Math.min(this.scratch.length, this.dRemaining));
      this.lastIsScratch = false;
    } else {
      if (this.start === this.end) {
        this.start = this.end = 0;
      } else if (this.scratch.length - this.end < 4096 && this.start > 0) {
        this.scratch.copyWithin(0, this.start, this.end);
        this.end -= this.start;
        this.start = 0;
      }
      // Right after a bulk payload, the next reply is probably bulk too: read just its header
      // and data offset, so that its payload goes straight to its destination, not via scratch.
      const limit = this.afterBulk && this.state === HEADER && this.start === this.end ? HEADER_PEEK : this.scratch.length;
      t = this.scratch.subarray(this.end, Math.min(this.scratch.length, this.end + limit));
      this.lastIsScratch = true;
    }
    this.lastTarget = t;
    return t;
  }

  /** `n` bytes arrived in `buf`; zero-copy when `buf` is the last target handed out. */
  commit(n: number, buf: Buffer): void {
    if (buf !== this.lastTarget) {
      this.feed(buf.subarray(0, n));
      return;
    }
    this.lastTarget = null;
    if (this.state === DEAD) return;
    try {
      if (this.lastIsScratch) {
        this.end += n;
        this.parse();
      } else {
        this.dPos += n;
        this.dRemaining -= n;
        if (this.dRemaining === 0) {
          this.finishDirect();
          this.afterBulk = this.dTotal >= 4096;
          this.parse();
        }
      }
    } catch (e) {
      this.state = DEAD;
      throw e;
    }
  }

  /** Bytes from anywhere, split anyhow. */
  feed(chunk: Buffer): void {
    let p = 0;
    while (p < chunk.length && this.state !== DEAD) {
      const t = this.target();
      const k = Math.min(t.length, chunk.length - p);
      chunk.copy(t, 0, p, p + k);
      p += k;
      this.commit(k, t);
    }
  }

  /** True when no message is partly received (a clean place for the stream to end). */
  get idle(): boolean {
    return this.state === HEADER && this.start === this.end;
  }

  /** What was cut short if the stream ended now, e.g. "a structured reply header (5 of 20 bytes)". */
  pendingDescription(): string | null {
    const avail = this.end - this.start;
    switch (this.state) {
      case HEADER:
        if (avail === 0) return null;
        return `a reply header (${avail} bytes of it received)`;
      case DIRECT: {
        const got = this.dTotal - this.dRemaining + (this.start === this.end ? 0 : avail);
        const what = this.simple ? 'simple reply payload' : `${replyTypeName(this.type)} payload`;
        return `the ${what} for cookie ${this.cookie} (${got} of ${this.dTotal} bytes received)`;
      }
      case DATA_OFFSET:
      case SMALL:
        return `the ${replyTypeName(this.type)} payload for cookie ${this.cookie} (${avail} of ${this.length} bytes received)`;
      default:
        return null;
    }
  }

  private parse(): void {
    const s = this.scratch;
    for (;;) {
      const avail = this.end - this.start;
      switch (this.state) {
        case HEADER: {
          if (avail < 4) return;
          this.afterBulk = false;
          const magic = s.readUInt32BE(this.start);
          if (magic === NBD_STRUCTURED_REPLY_MAGIC) {
            if (avail < STRUCTURED_REPLY_HEADER_SIZE) return;
            const p = this.start;
            this.simple = false;
            this.flags = s.readUInt16BE(p + 4);
            this.type = s.readUInt16BE(p + 6);
            this.cookie = s.readUInt32BE(p + 8) * TWO_32 + s.readUInt32BE(p + 12);
            this.length = s.readUInt32BE(p + 16);
            this.start += STRUCTURED_REPLY_HEADER_SIZE;
            this.beginChunk();
          } else if (magic === NBD_SIMPLE_REPLY_MAGIC) {
            if (avail < SIMPLE_REPLY_HEADER_SIZE) return;
            const p = this.start;
            this.simple = true;
            const errno = s.readUInt32BE(p + 4);
            this.cookie = s.readUInt32BE(p + 8) * TWO_32 + s.readUInt32BE(p + 12);
            this.start += SIMPLE_REPLY_HEADER_SIZE;
            const t = this.handler.onSimpleReply(this.cookie, errno);
            if (t !== null) this.enterDirect(t.buf, t.pos, t.length, KIND_SIMPLE);
          } else {
            const extra = magic === NBD_EXTENDED_REPLY_MAGIC ? ' (an extended header, which was never negotiated)' : '';
            throw new NbdProtocolViolation(
              `reply has magic 0x${magic.toString(16).padStart(8, '0')}${extra}; expected 0x${NBD_SIMPLE_REPLY_MAGIC.toString(16)} (simple) or 0x${NBD_STRUCTURED_REPLY_MAGIC.toString(16)} (structured)`,
            );
          }
          break;
        }
        case DIRECT: {
          if (avail === 0) return;
          const k = Math.min(avail, this.dRemaining);
          if (this.dBuf !== null) s.copy(this.dBuf, this.dPos, this.start, this.start + k);
          this.start += k;
          this.dPos += k;
          this.dRemaining -= k;
          if (this.dRemaining > 0) return;
          this.finishDirect();
          break;
        }
        case DATA_OFFSET: {
          if (avail < 8) return;
          const offset = readUInt64(s, this.start);
          this.start += 8;
          const t = this.handler.onDataChunk(this.cookie, this.flags, offset, this.length - 8);
          this.enterDirect(t.buf, t.pos, this.length - 8, KIND_DATA);
          break;
        }
        case SMALL: {
          if (avail < this.length) return;
          const payload = s.subarray(this.start, this.start + this.length);
          this.start += this.length;
          this.state = HEADER;
          this.handler.onChunk(this.cookie, this.flags, this.type, payload);
          break;
        }
        default:
          this.start = this.end;
          return;
      }
    }
  }

  private beginChunk(): void {
    const isData = this.handler.onChunkHeader(this.cookie, this.flags, this.type, this.length);
    if (isData) {
      this.state = DATA_OFFSET;
    } else if (this.length === 0) {
      this.state = HEADER;
      this.handler.onChunk(this.cookie, this.flags, this.type, EMPTY);
    } else if (this.length <= this.scratch.length) {
      this.state = SMALL;
    } else {
      // Larger than scratch (a big block-status reply, already capped by the handler).
      this.bigBuf = Buffer.allocUnsafe(this.length);
      this.enterDirect(this.bigBuf, 0, this.length, KIND_BIG);
    }
  }

  private enterDirect(buf: Buffer | null, pos: number, length: number, kind: number): void {
    this.dBuf = buf;
    this.dPos = pos;
    this.dRemaining = length;
    this.dTotal = length;
    this.dKind = kind;
    this.state = DIRECT;
    if (length === 0) this.finishDirect();
  }

  private finishDirect(): void {
    this.state = HEADER;
    this.dBuf = null;
    switch (this.dKind) {
      case KIND_SIMPLE:
        this.handler.onSimpleReplyDone(this.cookie);
        break;
      case KIND_DATA:
        this.handler.onDataChunkDone(this.cookie, this.flags);
        break;
      default: {
        const payload = this.bigBuf;
        this.bigBuf = EMPTY;
        this.handler.onChunk(this.cookie, this.flags, this.type, payload);
      }
    }
  }
}
