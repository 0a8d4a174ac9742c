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
