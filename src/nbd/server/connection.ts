// One client connection, from greeting to close (proto.md "Handshake", "Transmission").
// Phases: `flags` (the client's 32-bit flags), `options` (haggling, negotiation.ts), then
// `transmission` (requests, answered concurrently and possibly out of order: "Replies need
// not be sent in the same order as requests"), and `closing` (input ignored).
//
// Flow control: request parsing stops (and the socket is paused) while too many requests or
// bytes are in flight, or while the socket's write buffer is over its bound; it resumes as
// replies complete or the socket drains. So memory per connection is bounded whatever the
// client sends. Hard disconnects happen only where proto.md allows them: a protocol violation
// (bad magic, unknown client flags, oversize option or write payload), an NBD_OPT_EXPORT_NAME
// for an unknown export, a handshake that stalls, or server shutdown once replies are out.
import type net from 'node:net';
import {
  IHAVEOPT,
  NBDMAGIC,
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_DISC,
  NBD_CMD_FLAG_DF,
  NBD_CMD_FLAG_REQ_ONE,
  NBD_CMD_READ,
  NBD_CMD_WRITE,
  NBD_EIO,
  NBD_EPERM,
  NBD_ESHUTDOWN,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_NO_ZEROES,
  REQUEST_HEADER_SIZE,
} from '../constants.js';
import { decodeOptionHeader, OPTION_HEADER_SIZE, optionName } from '../option-codec.js';
import { encodeNoneChunk } from '../reply-codec.js';
import { decodeRequest, type DecodedRequest } from '../request-codec.js';
import { NbdProtocolViolation } from '../violation.js';
import { shapeExtents } from './block-status.js';
import { ByteQueue } from './byte-queue.js';
import { checkRequest, commandName } from './check-request.js';
import { ExportReadError, type ReadPiece } from './export.js';
import { Negotiation, type NegotiationConfig, type Session } from './negotiation.js';
import { blockStatusReply, errorReply, okReply, readReply } from './replies.js';

/** Option data beyond this is taken as a denial of service (strings are at most 4 KiB). */
const MAX_OPTION_DATA = 1 << 20;

export interface ServerEvent {
  level: 'debug' | 'info' | 'warn';
  /** Connection number (1, 2, ...) within this server. */
  connection: number;
  message: string;
}

export interface ConnectionLimits {
  /** A handshake idle this long is dropped (ms; 0 = never). */
  handshakeTimeoutMs: number;
  maxInflightRequests: number;
  /** Sum of the lengths of reads in flight. */
  maxInflightBytes: number;
  /** Reply bytes queued in the socket before request parsing pauses. */
  maxBufferedBytes: number;
}

type Phase = 'flags' | 'options' | 'transmission' | 'closing';

export class ServerConnection {
  readonly id: number;
  /** Resolves once the socket is closed. */
  readonly done: Promise<void>;
  private phase: Phase = 'flags';
  private readonly queue = new ByteQueue();
  private negotiation: Negotiation | undefined;
  private optionHeader: { option: number; length: number } | undefined;
  private session: Session | undefined;
  private inflight = 0;
  private inflightBytes = 0;
  /** Bytes of a write payload still to skip, and the write they belong to. */
  private discard = 0;
  private discarding: DecodedRequest | undefined;
  private disconnectRequested = false;
  private shuttingDown = false;
  private paused = false;
  private readonly abort = new AbortController();
  /** Releases of read pieces whose reply is still being written. */
  private readonly unreleased = new Set<() => void>();

  constructor(
    private readonly socket: net.Socket,
    id: number,
    private readonly config: NegotiationConfig,
    private readonly limits: ConnectionLimits,
    private readonly log: (e: ServerEvent) => void,
  ) {
    this.id = id;
    this.done = new Promise((resolve) => {
      socket.once('close', () => {
        this.phase = 'closing';
        this.abort.abort(new Error('connection closed'));
        this.queue.clear();
        for (const release of this.unreleased) release();
        this.unreleased.clear();
        resolve();
      });
    });
    socket.on('error', (e) => this.emit('debug', `socket error: ${e.message}`));
    socket.on('data', (b: Buffer) => {
      this.queue.push(b);
      this.pump();
    });
    socket.on('drain', () => this.updateFlow());
    if (limits.handshakeTimeoutMs > 0) {
      socket.setTimeout(limits.handshakeTimeoutMs, () => {
        if (this.phase !== 'transmission') this.hardClose(`handshake idle for ${limits.handshakeTimeoutMs} ms`, 'warn');
      });
    }
    socket.setNoDelay(true);
    // S: NBDMAGIC, IHAVEOPT, handshake flags FIXED_NEWSTYLE | NO_ZEROES.
    const hello = Buffer.allocUnsafe(18);
    hello.writeBigUInt64BE(NBDMAGIC, 0);
    hello.writeBigUInt64BE(IHAVEOPT, 8);
    hello.writeUInt16BE(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES, 16);
    socket.write(hello);
  }

  /** Server shutdown: refuse new options and requests (NBD_REP_ERR_SHUTDOWN / NBD_ESHUTDOWN), close once idle. */
  shutdown(): void {
    this.shuttingDown = true;
    if (this.negotiation !== undefined) this.negotiation.shuttingDown = true;
    if (this.phase === 'flags') this.hardClose('server shutting down', 'debug');
    else this.maybeEnd();
  }

  destroy(): void {
    this.socket.destroy();
  }

  private emit(level: ServerEvent['level'], message: string): void {
    this.log({ level, connection: this.id, message });
  }

  private hardClose(reason: string, level: ServerEvent['level']): void {
    if (this.phase === 'closing') return;
    this.emit(level, `closing the connection: ${reason}`);
    this.phase = 'closing';
    this.queue.clear();
    this.socket.destroy();
  }

  /** Writes one reply (one writev); `onWritten` runs once the socket is done with its buffers. */
  private send(bufs: readonly Buffer[], onWritten?: () => void): void {
    if (this.socket.destroyed) {
      onWritten?.();
      return;
    }
    this.socket.cork();
    const last = bufs.length - 1;
    bufs.forEach((b, i) => {
      if (i === last && onWritten !== undefined) this.socket.write(b, () => onWritten());
      else this.socket.write(b);
    });
    this.socket.uncork();
  }

  private blocked(): boolean {
    return (
      this.inflight >= this.limits.maxInflightRequests ||
      this.inflightBytes >= this.limits.maxInflightBytes ||
      this.socket.writableLength >= this.limits.maxBufferedBytes
    );
  }

  private updateFlow(): void {
    const b = this.phase === 'transmission' && this.blocked();
    if (b && !this.paused) {
      this.paused = true;
      this.socket.pause();
    } else if (!b && this.paused) {
      this.paused = false;
      this.socket.resume();
      this.pump();
    }
  }

  private pump(): void {
    try {
      this.pumpUnsafe();
    } catch (e) {
      if (e instanceof NbdProtocolViolation) this.hardClose(`protocol violation: ${e.message}`, 'warn');
      else this.hardClose(`internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`, 'warn');
    }
  }

  private pumpUnsafe(): void {
    for (;;) {
      switch (this.phase) {
        case 'closing':
          this.queue.clear();
          return;
        case 'flags': {
          if (this.queue.length < 4) return;
          const flags = this.queue.take(4).readUInt32BE(0);
          // "the server MUST drop the TCP connection if the client sets an unknown flag".
          if ((flags & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) !== 0) {
            throw new NbdProtocolViolation(`unknown client flags 0x${flags.toString(16)}`);
          }
          this.negotiation = new Negotiation(this.config, (flags & NBD_FLAG_C_NO_ZEROES) !== 0);
          this.negotiation.shuttingDown = this.shuttingDown;
          this.phase = 'options';
          break;
        }
        case 'options':
          if (!this.option()) return;
          break;
        case 'transmission':
          if (!this.request()) return;
          break;
      }
    }
  }

  /** One option if fully received; false when more bytes are needed. */
  private option(): boolean {
    if (this.optionHeader === undefined) {
      if (this.queue.length < OPTION_HEADER_SIZE) return false;
      this.optionHeader = decodeOptionHeader(this.queue.take(OPTION_HEADER_SIZE));
      if (this.optionHeader.length > MAX_OPTION_DATA) {
        throw new NbdProtocolViolation(`${optionName(this.optionHeader.option)} with ${this.optionHeader.length} bytes of data`);
      }
    }
    const { option, length } = this.optionHeader;
    if (this.queue.length < length) return false;
    const data = this.queue.take(length);
    this.optionHeader = undefined;
    const outcome = (this.negotiation as Negotiation).handle(option, data);
    this.emit('debug', `${optionName(option)}: ${outcome.kind}`);
    switch (outcome.kind) {
      case 'continue':
        this.send(outcome.replies);
        return true;
      case 'abort':
        this.send(outcome.replies);
        this.phase = 'closing';
        this.socket.end();
        return true;
      case 'close':
        this.hardClose(outcome.reason, 'warn');
        return true;
      case 'transmission':
        this.send(outcome.replies);
        this.session = outcome.session;
        this.phase = 'transmission';
        this.socket.setTimeout(0);
        this.emit(
          'info',
          `client on export '${outcome.session.export.name}' (${outcome.session.structured ? 'structured replies' : 'simple replies'}` +
            `${outcome.session.contexts.size > 0 ? `, ${[...outcome.session.contexts.values()].join(', ')}` : ''})`,
        );
        return true;
    }
  }

  /** One request (or part of a write payload); false when blocked or more bytes are needed. */
  private request(): boolean {
    if (this.discard > 0) {
      this.discard -= this.queue.skip(this.discard);
      if (this.discard > 0) return false;
      const w = this.discarding as DecodedRequest;
      this.discarding = undefined;
      this.fail(w, this.shuttingDown ? NBD_ESHUTDOWN : NBD_EPERM, this.shuttingDown ? 'the server is shutting down' : 'the export is read-only');
      return true;
    }
    if (this.disconnectRequested) {
      this.queue.clear(); // "A client MUST NOT send anything to the server after sending an NBD_CMD_DISC"
      return false;
    }
    if (this.blocked()) {
      this.updateFlow();
      return false;
    }
    if (this.queue.length < REQUEST_HEADER_SIZE) return false;
    const req = decodeRequest(this.queue.take(REQUEST_HEADER_SIZE), 0);
    if (typeof req === 'string') throw new NbdProtocolViolation(req);
    this.dispatch(req, this.session as Session);
    return true;
  }

  private fail(req: DecodedRequest, errno: number, message: string, offset?: number): void {
    this.send([errorReply(req.cookie, (this.session as Session).structured, errno, message, offset)]);
  }

  private dispatch(req: DecodedRequest, s: Session): void {
    if (req.type === NBD_CMD_DISC) {
      this.emit('debug', 'NBD_CMD_DISC');
      this.disconnectRequested = true;
      this.maybeEnd();
      return;
    }
    if (req.type === NBD_CMD_WRITE) {
      // The payload follows the header and must be consumed to stay in sync.
      if (req.length > this.config.maxPayload) {
        throw new NbdProtocolViolation(`NBD_CMD_WRITE with a ${req.length}-byte payload (maximum ${this.config.maxPayload})`);
      }
      this.discard = req.length;
      this.discarding = req;
      return;
    }
    if (this.shuttingDown) {
      this.fail(req, NBD_ESHUTDOWN, 'the server is shutting down');
      return;
    }
    const err = checkRequest(req, s, this.config.maxPayload);
    if (err !== null) {
      this.emit('debug', `refused: ${err.message}`);
      this.fail(req, err.errno, err.message);
      return;
    }
    switch (req.type) {
      case NBD_CMD_READ:
        this.read(req, s);
        return;
      case NBD_CMD_BLOCK_STATUS:
        this.blockStatus(req, s);
        return;
      default:
        this.send([okReply(req.cookie)]); // FLUSH and CACHE: nothing to do on a read-only export
    }
  }

  private read(req: DecodedRequest, s: Session): void {
    if (req.length === 0) {
      // "The client SHOULD NOT request a read length of 0": answer success with no content.
      this.send([s.structured ? encodeNoneChunk(req.cookie) : okReply(req.cookie)]);
      return;
    }
    this.inflight++;
    this.inflightBytes += req.length;
    this.answerRead(req, s)
      .catch((e: unknown) => this.hardClose(`internal error answering a read: ${e instanceof Error ? e.message : String(e)}`, 'warn'))
      .finally(() => {
        this.inflight--;
        this.inflightBytes -= req.length;
        this.maybeEnd();
        this.updateFlow();
      });
  }

  private async answerRead(req: DecodedRequest, s: Session): Promise<void> {
    let pieces: ReadPiece[] | undefined;
    let reply: Buffer[];
    try {
      pieces = await s.export.read(req.offset, req.length, this.abort.signal);
      checkPieces(pieces, req.offset, req.length);
      reply = readReply(req.cookie, req.offset, req.length, pieces, { structured: s.structured, df: (req.flags & NBD_CMD_FLAG_DF) !== 0 });
    } catch (e) {
      if (pieces !== undefined) releaseAll(pieces);
      if (this.phase === 'closing') return;
      const off = e instanceof ExportReadError ? e.offset : req.offset;
      const errno = e instanceof ExportReadError ? e.errno : NBD_EIO;
      const msg = e instanceof Error ? e.message : String(e);
      this.emit('warn', `${commandName(req.type)} at offset ${req.offset} length ${req.length} failed: ${msg}`);
      this.send([errorReply(req.cookie, s.structured, errno, msg, off)]);
      return;
    }
    // The pieces' memory is the export's (cache slots): give it back once the socket is done with it.
    const got = pieces;
    let done = false;
    const release = (): void => {
      if (done) return;
      done = true;
      this.unreleased.delete(release);
      releaseAll(got);
    };
    if (this.phase === 'closing') {
      release();
      return;
    }
    this.unreleased.add(release);
    this.send(reply, release);
  }

  private blockStatus(req: DecodedRequest, s: Session): void {
    let extents;
    try {
      extents = shapeExtents(s.export.allocation(req.offset, req.length), req.length, (req.flags & NBD_CMD_FLAG_REQ_ONE) !== 0);
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      this.emit('warn', `NBD_CMD_BLOCK_STATUS at offset ${req.offset} failed: ${msg}`);
      this.fail(req, NBD_EIO, msg, req.offset);
      return;
    }
    this.send(blockStatusReply(req.cookie, [...s.contexts.keys()].map((id) => ({ id, extents }))));
  }

  /** After NBD_CMD_DISC or at shutdown: "MUST handle all outstanding requests" first, then close. */
  private maybeEnd(): void {
    if (this.phase === 'closing') return;
    if (!(this.disconnectRequested || (this.shuttingDown && this.phase === 'transmission'))) return;
    if (this.inflight > 0 || this.discard > 0) return;
    this.phase = 'closing';
    this.queue.clear();
    this.socket.end();
  }
}

function releaseAll(pieces: readonly ReadPiece[]): void {
  for (const p of pieces) p.release?.();
}

/** The export's pieces must cover the read exactly; anything else is a bug we must not put on the wire. */
function checkPieces(pieces: readonly ReadPiece[], offset: number, length: number): void {
  let pos = offset;
  for (const p of pieces) {
    if (p.offset !== pos || !(p.length > 0) || (p.data !== null && p.data.length !== p.length)) {
      throw new Error(`export returned a malformed piece (offset ${p.offset}, length ${p.length}) for a read at ${offset}`);
    }
    pos += p.length;
  }
  if (pos !== offset + length) throw new Error(`export pieces cover ${pos - offset} of ${length} bytes at offset ${offset}`);
}
