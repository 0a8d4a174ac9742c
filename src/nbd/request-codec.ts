// Pure encoding of transmission-phase requests (proto.md "Request message"):
// 32-bit NBD_REQUEST_MAGIC, 16-bit command flags, 16-bit type, 64-bit cookie, 64-bit offset,
// 32-bit length. Our cookies are 32-bit counters, sent as the low half of the 64-bit field.
import { NBD_REQUEST_MAGIC, REQUEST_HEADER_SIZE } from './constants.js';

const TWO_32 = 0x1_0000_0000;

/** Writes one request header at `pos` of `buf` (which must have 28 bytes free there). */
export function writeRequest(
  buf: Buffer,
  pos: number,
  flags: number,
  type: number,
  cookie: number,
  offset: number,
  length: number,
): void {
  buf.writeUInt32BE(NBD_REQUEST_MAGIC, pos);
  buf.writeUInt16BE(flags, pos + 4);
  buf.writeUInt16BE(type, pos + 6);
  buf.writeUInt32BE(0, pos + 8);
  buf.writeUInt32BE(cookie >>> 0, pos + 12);
  buf.writeUInt32BE(Math.floor(offset / TWO_32), pos + 16);
  buf.writeUInt32BE(offset % TWO_32, pos + 20);
  buf.writeUInt32BE(length, pos + 24);
}

export function encodeRequest(flags: number, type: number, cookie: number, offset: number, length: number): Buffer {
  const buf = Buffer.allocUnsafe(REQUEST_HEADER_SIZE);
  writeRequest(buf, 0, flags, type, cookie, offset, length);
  return buf;
}

/** Reads a 64-bit big-endian unsigned integer as a JS number (exact below 2^53). */
export function readUInt64(buf: Buffer, pos: number): number {
  return buf.readUInt32BE(pos) * TWO_32 + buf.readUInt32BE(pos + 4);
}

// ---- Server side (src/nbd/server): decoding request headers. Appended for `pullback serve`.

export interface DecodedRequest {
  flags: number;
  type: number;
  /** The client's 64-bit handle as 8 raw bytes (echoed verbatim in every reply). */
  cookie: Buffer;
  offset: number;
  length: number;
}

/**
 * Decodes the 28-byte request header at `pos`. Returns a reason string (not a throw) when the
 * magic is wrong or the offset is beyond 2^53, which the caller turns into a hard disconnect.
 * The cookie is copied, so `buf` may be reused.
 */
export function decodeRequest(buf: Buffer, pos: number): DecodedRequest | string {
  const magic = buf.readUInt32BE(pos);
  if (magic !== NBD_REQUEST_MAGIC) {
    return `request has magic 0x${magic.toString(16)}, expected NBD_REQUEST_MAGIC (0x${NBD_REQUEST_MAGIC.toString(16)})`;
  }
  const hi = buf.readUInt32BE(pos + 16);
  if (hi >= 0x200000) return `request offset 0x${hi.toString(16)}${buf.readUInt32BE(pos + 20).toString(16).padStart(8, '0')} is beyond 2^53`;
  return {
    flags: buf.readUInt16BE(pos + 4),
    type: buf.readUInt16BE(pos + 6),
    cookie: Buffer.from(buf.subarray(pos + 8, pos + 16)),
    offset: readUInt64(buf, pos + 16),
    length: buf.readUInt32BE(pos + 24),
  };
}
