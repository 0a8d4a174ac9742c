// Pure decoding of structured reply chunk payloads other than bulk read data
// (proto.md "Structured reply types"): OFFSET_HOLE, BLOCK_STATUS and the error chunks.
// Each decoder checks the length rules the spec states for its type and throws
// NbdProtocolViolation when they are broken.
import {
  NBD_REPLY_TYPE_ERROR,
  NBD_REPLY_TYPE_ERROR_OFFSET,
  REPLY_TYPE_NAMES,
} from './constants.js';
import { readUInt64 } from './request-codec.js';
import { NbdProtocolViolation } from './violation.js';

export function replyTypeName(type: number): string {
  return REPLY_TYPE_NAMES[type] ?? `reply type 0x${type.toString(16)}`;
}

/** NBD_REPLY_TYPE_OFFSET_HOLE: 64-bit offset, 32-bit nonzero hole size; length exactly 12. */
export function decodeOffsetHole(payload: Buffer): { offset: number; length: number } {
  if (payload.length !== 12) {
    throw new NbdProtocolViolation(`NBD_REPLY_TYPE_OFFSET_HOLE has length ${payload.length}, the spec requires 12`);
  }
  const offset = readUInt64(payload, 0);
  const length = payload.readUInt32BE(8);
  if (length === 0) throw new NbdProtocolViolation('NBD_REPLY_TYPE_OFFSET_HOLE with a hole size of 0');
  return { offset, length };
}

export interface ErrorChunk {
  errno: number;
  message: string;
  /** Set for NBD_REPLY_TYPE_ERROR_OFFSET. */
  offset?: number;
}

/**
 * Error chunks (type bit 15 set): 32-bit errno, 16-bit message length, message, then
 * type-specific fields (a 64-bit offset for ERROR_OFFSET). Unknown error types are still
 * errors as long as the message fits (proto.md: "MUST consider the current reply as errored").
 */
export function decodeErrorChunk(type: number, payload: Buffer): ErrorChunk {
  const name = replyTypeName(type);
  const fixed = type === NBD_REPLY_TYPE_ERROR_OFFSET ? 14 : 6;
  if (payload.length < fixed) {
    throw new NbdProtocolViolation(`${name} has length ${payload.length}, the spec requires at least ${fixed}`);
  }
  const errno = payload.readUInt32BE(0);
  const msgLen = payload.readUInt16BE(4);
  if (msgLen > payload.length - fixed) {
    throw new NbdProtocolViolation(`${name} message length ${msgLen} does not fit in its ${payload.length}-byte payload`);
  }
  const message = payload.toString('utf8', 6, 6 + msgLen);
  if (errno === 0 && (type === NBD_REPLY_TYPE_ERROR || type === NBD_REPLY_TYPE_ERROR_OFFSET)) {
    throw new NbdProtocolViolation(`${name} with error value 0 (the spec requires nonzero)`);
  }
  if (type === NBD_REPLY_TYPE_ERROR_OFFSET) {
    return { errno, message, offset: readUInt64(payload, 6 + msgLen) };
  }
  return { errno, message };
}

export interface BlockStatusChunk {
  contextId: number;
  /** Descriptors in order: lengths[i] bytes with flags[i], consecutive from the request offset. */
  lengths: number[];
  flags: number[];
}

/** NBD_REPLY_TYPE_BLOCK_STATUS: 32-bit context id, then one or more (32-bit length, 32-bit flags). */
export function decodeBlockStatus(payload: Buffer): BlockStatusChunk {
  if (payload.length < 12 || (payload.length - 4) % 8 !== 0) {
    throw new NbdProtocolViolation(
      `NBD_REPLY_TYPE_BLOCK_STATUS has length ${payload.length}, the spec requires 4 + a positive multiple of 8`,
    );
  }
  const contextId = payload.readUInt32BE(0);
  const n = (payload.length - 4) / 8;
  const lengths = new Array<number>(n);
  const flags = new Array<number>(n);
  for (let i = 0, p = 4; i < n; i++, p += 8) {
    const len = payload.readUInt32BE(p);
    if (len === 0) throw new NbdProtocolViolation(`NBD_REPLY_TYPE_BLOCK_STATUS descriptor ${i} has length 0`);
    lengths[i] = len;
    flags[i] = payload.readUInt32BE(p + 4);
  }
  return { contextId, lengths, flags };
}

// ---- Server side (src/nbd/server): encoding replies. Appended for `pullback serve`; the
// inverse of the decoders above and of reply-parser.ts (round-trip tested). Cookies are the
// client's 8 raw bytes, echoed verbatim (proto.md "Transmission": same value for handle).
import {
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_NONE,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_REPLY_TYPE_OFFSET_HOLE,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_MAGIC,
  NBD_MAX_STRING,
} from './constants.js';

const TWO_32_ = 0x1_0000_0000;

function writeU64(buf: Buffer, pos: number, v: number): void {
  buf.writeUInt32BE(Math.floor(v / TWO_32_), pos);
  buf.writeUInt32BE(v % TWO_32_, pos + 4);
}

/** Simple reply (proto.md "Simple reply message"): magic, error, handle; data follows for a good read. */
export function encodeSimpleReply(cookie: Buffer, errno: number): Buffer {
  const buf = Buffer.allocUnsafe(16);
  buf.writeUInt32BE(NBD_SIMPLE_REPLY_MAGIC, 0);
  buf.writeUInt32BE(errno, 4);
  cookie.copy(buf, 8, 0, 8);
  return buf;
}

/** Writes a structured chunk header (magic, flags, type, handle, payload length) at `pos`. */
export function writeChunkHeader(buf: Buffer, pos: number, cookie: Buffer, flags: number, type: number, length: number): void {
  buf.writeUInt32BE(NBD_STRUCTURED_REPLY_MAGIC, pos);
  buf.writeUInt16BE(flags, pos + 4);
  buf.writeUInt16BE(type, pos + 6);
  cookie.copy(buf, pos + 8, 0, 8);
  buf.writeUInt32BE(length, pos + 16);
}

/** NBD_REPLY_TYPE_OFFSET_DATA header plus the 64-bit offset (28 bytes); `dataLength` bytes follow. */
export function encodeOffsetDataHeader(cookie: Buffer, flags: number, offset: number, dataLength: number): Buffer {
  const buf = Buffer.allocUnsafe(28);
  writeChunkHeader(buf, 0, cookie, flags, NBD_REPLY_TYPE_OFFSET_DATA, 8 + dataLength);
  writeU64(buf, 20, offset);
  return buf;
}

/** NBD_REPLY_TYPE_OFFSET_HOLE: offset and nonzero hole size. */
export function encodeOffsetHole(cookie: Buffer, flags: number, offset: number, length: number): Buffer {
  const buf = Buffer.allocUnsafe(32);
  writeChunkHeader(buf, 0, cookie, flags, NBD_REPLY_TYPE_OFFSET_HOLE, 12);
  writeU64(buf, 20, offset);
  buf.writeUInt32BE(length, 28);
  return buf;
}

/** NBD_REPLY_TYPE_BLOCK_STATUS: context id, then (length, flags) descriptors. */
export function encodeBlockStatus(
  cookie: Buffer,
  flags: number,
  contextId: number,
  extents: ReadonlyArray<{ length: number; flags: number }>,
): Buffer {
  const buf = Buffer.allocUnsafe(24 + 8 * extents.length);
  writeChunkHeader(buf, 0, cookie, flags, NBD_REPLY_TYPE_BLOCK_STATUS, 4 + 8 * extents.length);
  buf.writeUInt32BE(contextId >>> 0, 20);
  let p = 24;
  for (const e of extents) {
    buf.writeUInt32BE(e.length, p);
    buf.writeUInt32BE(e.flags >>> 0, p + 4);
    p += 8;
  }
  return buf;
}

/** NBD_REPLY_TYPE_ERROR, or NBD_REPLY_TYPE_ERROR_OFFSET when `offset` is given; message cut to 4096 bytes. */
export function encodeErrorChunk(cookie: Buffer, flags: number, errno: number, message: string, offset?: number): Buffer {
  let m = Buffer.from(message, 'utf8');
  if (m.length > NBD_MAX_STRING) m = m.subarray(0, NBD_MAX_STRING);
  const extra = offset === undefined ? 0 : 8;
  const buf = Buffer.allocUnsafe(20 + 6 + m.length + extra);
  const type = offset === undefined ? NBD_REPLY_TYPE_ERROR : NBD_REPLY_TYPE_ERROR_OFFSET;
  writeChunkHeader(buf, 0, cookie, flags, type, 6 + m.length + extra);
  buf.writeUInt32BE(errno, 20);
  buf.writeUInt16BE(m.length, 24);
  m.copy(buf, 26);
  if (offset !== undefined) writeU64(buf, 26 + m.length, offset);
  return buf;
}

/** NBD_REPLY_TYPE_NONE with NBD_REPLY_FLAG_DONE: the final chunk of a successful reply. */
export function encodeNoneChunk(cookie: Buffer): Buffer {
  const buf = Buffer.allocUnsafe(20);
  writeChunkHeader(buf, 0, cookie, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, 0);
  return buf;
}
