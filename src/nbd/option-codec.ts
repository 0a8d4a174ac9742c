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
