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
