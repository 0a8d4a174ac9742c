// Pure encoding/decoding of handshake-phase messages (proto.md "Fixed newstyle negotiation",
// "Option types", "Option reply types"). An *option* is a client request during option
// haggling; each gets one or more *option replies* (header + payload). Nothing here does I/O.
import {
  IHAVEOPT,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_DESCRIPTION,
  NBD_INFO_EXPORT,
  NBD_INFO_NAME,
  NBD_MAX_STRING,
  NBD_REP_MAGIC,
  OPTION_NAMES,
  OPTION_REPLY_NAMES,
} from './constants.js';
import { NbdProtocolViolation } from './violation.js';

/** C: IHAVEOPT, 32-bit option, 32-bit length, data. */
export function encodeOption(option: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const buf = Buffer.allocUnsafe(16 + data.length);
  buf.writeBigUInt64BE(IHAVEOPT, 0);
  buf.writeUInt32BE(option, 8);
  buf.writeUInt32BE(data.length, 12);
  data.copy(buf, 16);
  return buf;
}

function nbdString(s: string, what: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  if (b.length > NBD_MAX_STRING) {
    throw new RangeError(`${what} is ${b.length} bytes; NBD strings are at most ${NBD_MAX_STRING} bytes`);
  }
  if (b.includes(0)) throw new RangeError(`${what} contains a NUL character, which NBD strings must not`);
  return b;
}

/** Data of NBD_OPT_GO / NBD_OPT_INFO: name length, name, count of info requests, info types. */
export function encodeGoData(exportName: string, infos: readonly number[]): Buffer {
  const name = nbdString(exportName, 'export name');
  const buf = Buffer.allocUnsafe(4 + name.length + 2 + 2 * infos.length);
  buf.writeUInt32BE(name.length, 0);
  name.copy(buf, 4);
  let p = 4 + name.length;
  buf.writeUInt16BE(infos.length, p);
  p += 2;
  for (const info of infos) {
    buf.writeUInt16BE(info, p);
    p += 2;
  }
  return buf;
}

/** Data of NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT: export, number of queries, queries. */
export function encodeMetaContextData(exportName: string, queries: readonly string[]): Buffer {
  const parts: Buffer[] = [];
  const name = nbdString(exportName, 'export name');
  const head = Buffer.allocUnsafe(4);
  head.writeUInt32BE(name.length, 0);
  parts.push(head, name);
  const count = Buffer.allocUnsafe(4);
  count.writeUInt32BE(queries.length, 0);
  parts.push(count);
  for (const q of queries) {
    const qb = nbdString(q, 'metadata context query');
    const len = Buffer.allocUnsafe(4);
    len.writeUInt32BE(qb.length, 0);
    parts.push(len, qb);
  }
  return Buffer.concat(parts);
}

/** Data of NBD_OPT_EXPORT_NAME: the bare name. */
export function encodeExportNameData(exportName: string): Buffer {
  return nbdString(exportName, 'export name');
}

export interface OptionReplyHeader {
  option: number;
  type: number;
  length: number;
}

/** S: 64-bit reply magic, 32-bit option, 32-bit reply type, 32-bit length. */
export function decodeOptionReplyHeader(buf: Buffer, expectedOption: number): OptionReplyHeader {
  const magic = buf.readBigUInt64BE(0);
  if (magic !== NBD_REP_MAGIC) {
    throw new NbdProtocolViolation(
      `option reply has magic 0x${magic.toString(16)}, expected 0x${NBD_REP_MAGIC.toString(16)}`,
    );
  }
  const option = buf.readUInt32BE(8);
  const type = buf.readUInt32BE(12);
  const length = buf.readUInt32BE(16);
  if (option !== expectedOption) {
    throw new NbdProtocolViolation(
      `option reply is for ${optionName(option)}, expected a reply to ${optionName(expectedOption)}`,
    );
  }
  return { option, type, length };
}

export function optionName(option: number): string {
  return OPTION_NAMES[option] ?? `option ${option}`;
}

export function optionReplyName(type: number): string {
  return OPTION_REPLY_NAMES[type] ?? `reply type 0x${type.toString(16)}`;
}

/** NBD_REP_SERVER: 32-bit name length, name, then a free-text description. */
export function decodeRepServer(payload: Buffer): { name: string; description: string } {
  if (payload.length < 4) throw new NbdProtocolViolation(`NBD_REP_SERVER payload of ${payload.length} bytes is too short`);
  const nameLen = payload.readUInt32BE(0);
  if (nameLen > payload.length - 4) {
    throw new NbdProtocolViolation(`NBD_REP_SERVER name length ${nameLen} exceeds its payload of ${payload.length} bytes`);
  }
  return {
    name: payload.toString('utf8', 4, 4 + nameLen),
    description: payload.toString('utf8', 4 + nameLen),
  };
}

/** NBD_REP_META_CONTEXT: 32-bit context id, name. */
export function decodeRepMetaContext(payload: Buffer): { id: number; name: string } {
  if (payload.length < 4) {
    throw new NbdProtocolViolation(`NBD_REP_META_CONTEXT payload of ${payload.length} bytes is too short`);
  }
  return { id: payload.readUInt32BE(0), name: payload.toString('utf8', 4) };
}

export type RepInfo =
  | { info: 'export'; size: number; flags: number }
  | { info: 'name'; name: string }
  | { info: 'description'; description: string }
  | { info: 'block-size'; minimum: number; preferred: number; maximum: number }
  | { info: 'unknown'; type: number };

/** NBD_REP_INFO: 16-bit information type then a type-specific payload (proto.md under NBD_REP_INFO). */
export function decodeRepInfo(payload: Buffer): RepInfo {
  if (payload.length < 2) throw new NbdProtocolViolation(`NBD_REP_INFO payload of ${payload.length} bytes is too short`);
  const type = payload.readUInt16BE(0);
  const need = (n: number, name: string): void => {
    if (payload.length !== n) {
      throw new NbdProtocolViolation(`NBD_REP_INFO ${name} has length ${payload.length}, the spec requires ${n}`);
    }
  };
  switch (type) {
    case NBD_INFO_EXPORT: {
      need(12, 'NBD_INFO_EXPORT');
      const size = payload.readBigUInt64BE(2);
      if (size > BigInt(Number.MAX_SAFE_INTEGER)) {
        throw new NbdProtocolViolation(`export size ${size} is beyond 2^53 bytes`);
      }
      return { info: 'export', size: Number(size), flags: payload.readUInt16BE(10) };
    }
    case NBD_INFO_NAME:
      return { info: 'name', name: payload.toString('utf8', 2) };
    case NBD_INFO_DESCRIPTION:
      return { info: 'description', description: payload.toString('utf8', 2) };
    case NBD_INFO_BLOCK_SIZE: {
      need(14, 'NBD_INFO_BLOCK_SIZE');
      return {
        info: 'block-size',
        minimum: payload.readUInt32BE(2),
        preferred: payload.readUInt32BE(6),
        maximum: payload.readUInt32BE(10),
      };
    }
    default:
      // "The client MUST ignore information replies it does not understand."
      return { info: 'unknown', type };
  }
}

// ---- Server side (src/nbd/server): decoding options, encoding option replies. Appended for
// `pullback serve`; the inverse of the client functions above (round-trip tested).

export const OPTION_HEADER_SIZE = 16;

/** C: IHAVEOPT, 32-bit option, 32-bit length (proto.md "Newstyle negotiation"). */
export function decodeOptionHeader(buf: Buffer): { option: number; length: number } {
  const magic = buf.readBigUInt64BE(0);
  if (magic !== IHAVEOPT) {
    throw new NbdProtocolViolation(`option has magic 0x${magic.toString(16)}, expected IHAVEOPT (0x${IHAVEOPT.toString(16)})`);
  }
  return { option: buf.readUInt32BE(8), length: buf.readUInt32BE(12) };
}

/** S: reply magic, option, reply type, length, data (proto.md "Fixed newstyle negotiation"). */
export function encodeOptionReply(option: number, type: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const buf = Buffer.allocUnsafe(20 + payload.length);
  buf.writeBigUInt64BE(NBD_REP_MAGIC, 0);
  buf.writeUInt32BE(option >>> 0, 8);
  buf.writeUInt32BE(type >>> 0, 12);
  buf.writeUInt32BE(payload.length, 16);
  payload.copy(buf, 20);
  return buf;
}

/** An error reply's optional message, cut to the 4096-byte string limit. */
export function encodeOptionError(option: number, type: number, message: string): Buffer {
  let m = Buffer.from(message, 'utf8');
  if (m.length > NBD_MAX_STRING) m = m.subarray(0, NBD_MAX_STRING);
  return encodeOptionReply(option, type, m);
}

/** Inverse of encodeGoData. Throws NbdProtocolViolation when the lengths do not add up. */
export function decodeGoData(data: Buffer): { exportName: string; infos: number[] } {
  if (data.length < 6) throw new NbdProtocolViolation(`NBD_OPT_GO/INFO data of ${data.length} bytes is shorter than 6`);
  const nameLen = data.readUInt32BE(0);
  if (nameLen > data.length - 6) {
    throw new NbdProtocolViolation(`export name length ${nameLen} does not fit in the ${data.length}-byte option data`);
  }
  const exportName = data.toString('utf8', 4, 4 + nameLen);
  let p = 4 + nameLen;
  const n = data.readUInt16BE(p);
  p += 2;
  if (data.length !== p + 2 * n) {
    throw new NbdProtocolViolation(`${n} information requests need ${p + 2 * n} bytes of option data, got ${data.length}`);
  }
  const infos: number[] = [];
  for (let i = 0; i < n; i++, p += 2) infos.push(data.readUInt16BE(p));
  return { exportName, infos };
}

/** Inverse of encodeMetaContextData. Throws NbdProtocolViolation when the lengths do not add up. */
export function decodeMetaContextData(data: Buffer): { exportName: string; queries: string[] } {
  const need = (p: number, n: number, what: string): void => {
    if (p + n > data.length) {
      throw new NbdProtocolViolation(`${what} needs ${n} bytes at offset ${p} of the ${data.length}-byte option data`);
    }
  };
  need(0, 4, 'export name length');
  const nameLen = data.readUInt32BE(0);
  need(4, nameLen, 'export name');
  const exportName = data.toString('utf8', 4, 4 + nameLen);
  let p = 4 + nameLen;
  need(p, 4, 'number of queries');
  const n = data.readUInt32BE(p);
  p += 4;
  const queries: string[] = [];
  for (let i = 0; i < n; i++) {
    need(p, 4, `length of query ${i}`);
    const len = data.readUInt32BE(p);
    p += 4;
    need(p, len, `query ${i}`);
    queries.push(data.toString('utf8', p, p + len));
    p += len;
  }
  if (p !== data.length) throw new NbdProtocolViolation(`${data.length - p} bytes follow the last query`);
  return { exportName, queries };
}

/** NBD_REP_SERVER payload: name length, name, description. */
export function encodeRepServer(name: string, description = ''): Buffer {
  const n = nbdString(name, 'export name');
  const d = nbdString(description, 'export description');
  const buf = Buffer.allocUnsafe(4 + n.length + d.length);
  buf.writeUInt32BE(n.length, 0);
  n.copy(buf, 4);
  d.copy(buf, 4 + n.length);
  return buf;
}

/** NBD_REP_META_CONTEXT payload: context id, name. */
export function encodeRepMetaContext(id: number, name: string): Buffer {
  const n = nbdString(name, 'metadata context name');
  const buf = Buffer.allocUnsafe(4 + n.length);
  buf.writeUInt32BE(id >>> 0, 0);
  n.copy(buf, 4);
  return buf;
}

/** NBD_REP_INFO payloads (proto.md under NBD_REP_INFO); inverse of decodeRepInfo. */
export function encodeInfoExport(size: number, flags: number): Buffer {
  const buf = Buffer.allocUnsafe(12);
  buf.writeUInt16BE(NBD_INFO_EXPORT, 0);
  buf.writeBigUInt64BE(BigInt(size), 2);
  buf.writeUInt16BE(flags, 10);
  return buf;
}

export function encodeInfoBlockSize(minimum: number, preferred: number, maximum: number): Buffer {
  const buf = Buffer.allocUnsafe(14);
  buf.writeUInt16BE(NBD_INFO_BLOCK_SIZE, 0);
  buf.writeUInt32BE(minimum, 2);
  buf.writeUInt32BE(preferred, 6);
  buf.writeUInt32BE(maximum, 10);
  return buf;
}

export function encodeInfoName(name: string): Buffer {
  const n = nbdString(name, 'export name');
  const buf = Buffer.allocUnsafe(2 + n.length);
  buf.writeUInt16BE(NBD_INFO_NAME, 0);
  n.copy(buf, 2);
  return buf;
}

export function encodeInfoDescription(description: string): Buffer {
  const d = nbdString(description, 'export description');
  const buf = Buffer.allocUnsafe(2 + d.length);
  buf.writeUInt16BE(NBD_INFO_DESCRIPTION, 0);
  d.copy(buf, 2);
  return buf;
}
