// The handshake phase (proto.md "Handshake", "Option types"): fixed newstyle greeting, then
// option haggling — NBD_OPT_STRUCTURED_REPLY, NBD_OPT_SET_META_CONTEXT, NBD_OPT_GO (with
// NBD_INFO_BLOCK_SIZE) or, on old servers, NBD_OPT_EXPORT_NAME; plus NBD_OPT_LIST,
// NBD_OPT_LIST_META_CONTEXT and NBD_OPT_ABORT for discovery. Each step is one function over an
// OptionChannel so NBD_OPT_STARTTLS can slot in after `greet()` later (it must come first:
// STARTTLS resets all negotiated state, proto.md "NBD_OPT_STARTTLS").
import { PullbackError } from '../errors.js';
import {
  CLISERV_MAGIC,
  DEFAULT_MAXIMUM_PAYLOAD,
  DEFAULT_MINIMUM_BLOCK,
  DEFAULT_PREFERRED_BLOCK,
  IHAVEOPT,
  NBDMAGIC,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_NO_ZEROES,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_DESCRIPTION,
  NBD_INFO_NAME,
  NBD_OPT_ABORT,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_LIST,
  NBD_OPT_LIST_META_CONTEXT,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REP_ACK,
  NBD_REP_ERR_TLS_REQD,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP,
  NBD_REP_FLAG_ERROR,
  NBD_REP_INFO,
  NBD_REP_META_CONTEXT,
  NBD_REP_SERVER,
  OPTION_REPLY_HEADER_SIZE,
} from './constants.js';
import type { OptionChannel } from './handshake-channel.js';
import {
  decodeOptionReplyHeader,
  decodeRepInfo,
  decodeRepMetaContext,
  decodeRepServer,
  encodeExportNameData,
  encodeGoData,
  encodeMetaContextData,
  encodeOption,
  optionName,
  optionReplyName,
} from './option-codec.js';
import { readUInt64 } from './request-codec.js';
import { NbdProtocolViolation } from './violation.js';

/** Option replies longer than this are treated as hostile (strings are at most 4 KiB). */
const MAX_OPTION_REPLY = 1 << 20;

export interface Greeting {
  fixedNewstyle: boolean;
  noZeroes: boolean;
}

export interface BlockSize {
  minimum: number;
  preferred: number;
  maximum: number;
}

export interface ExportInfo {
  exportName: string;
  size: number;
  transmissionFlags: number;
  blockSize: BlockSize;
  /** True when the server sent NBD_INFO_BLOCK_SIZE (else spec defaults are used). */
  blockSizeAdvertised: boolean;
  description: string | undefined;
}

interface OptionReply {
  type: number;
  payload: Buffer;
}

function protocolError(ch: OptionChannel, e: NbdProtocolViolation): PullbackError {
  return new PullbackError('NBD_HANDSHAKE', `NBD handshake with ${ch.where} failed: ${e.message}`, { cause: e });
}

async function guarded<T>(ch: OptionChannel, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (e instanceof NbdProtocolViolation) throw protocolError(ch, e);
    throw e;
  }
}

/** S: NBDMAGIC, IHAVEOPT, 16-bit handshake flags; C: 32-bit client flags. */
export function greet(ch: OptionChannel): Promise<Greeting> {
  return guarded(ch, async () => {
    const hello = await ch.read(18);
    const magic = hello.readBigUInt64BE(0);
    if (magic !== NBDMAGIC) {
      throw new NbdProtocolViolation(`the server's greeting starts with 0x${magic.toString(16)}, not NBDMAGIC; is this an NBD server?`);
    }
    const second = hello.readBigUInt64BE(8);
    if (second === CLISERV_MAGIC) {
      throw new PullbackError('NBD_HANDSHAKE', `${ch.where} uses oldstyle negotiation, which pullback does not support; use a newstyle server`);
    }
    if (second !== IHAVEOPT) {
      throw new NbdProtocolViolation(`the server's greeting has magic 0x${second.toString(16)} where IHAVEOPT was expected`);
    }
    const flags = hello.readUInt16BE(16);
    const fixedNewstyle = (flags & NBD_FLAG_FIXED_NEWSTYLE) !== 0;
    const noZeroes = (flags & NBD_FLAG_NO_ZEROES) !== 0;
    const client = Buffer.allocUnsafe(4);
    client.writeUInt32BE((fixedNewstyle ? NBD_FLAG_C_FIXED_NEWSTYLE : 0) | (noZeroes ? NBD_FLAG_C_NO_ZEROES : 0), 0);
    ch.write(client);
    return { fixedNewstyle, noZeroes };
  });
}

async function readOptionReply(ch: OptionChannel, option: number): Promise<OptionReply> {
  const head = decodeOptionReplyHeader(await ch.read(OPTION_REPLY_HEADER_SIZE), option);
  if (head.length > MAX_OPTION_REPLY) {
    throw new NbdProtocolViolation(`${optionReplyName(head.type)} reply of ${head.length} bytes to ${optionName(option)} is implausibly large`);
  }
  const payload = head.length === 0 ? Buffer.alloc(0) : await ch.read(head.length);
  return { type: head.type, payload };
}

function optionFailed(ch: OptionChannel, option: number, reply: OptionReply, hint = ''): PullbackError {
  const msg = reply.payload.length > 0 ? `: ${reply.payload.toString('utf8')}` : '';
  let advice = hint;
  if (reply.type === NBD_REP_ERR_TLS_REQD) advice = '; the server requires TLS, which pullback does not support yet';
  return new PullbackError('NBD_OPTION', `${optionName(option)} to ${ch.where} failed with ${optionReplyName(reply.type)}${msg}${advice}`);
}

function unexpectedReply(option: number, reply: OptionReply): NbdProtocolViolation {
  return new NbdProtocolViolation(`unexpected ${optionReplyName(reply.type)} in reply to ${optionName(option)}`);
}

/** NBD_OPT_STRUCTURED_REPLY: true on NBD_REP_ACK, false on NBD_REP_ERR_UNSUP (old servers). */
export function optStructuredReply(ch: OptionChannel): Promise<boolean> {
  return guarded(ch, async () => {
    ch.write(encodeOption(NBD_OPT_STRUCTURED_REPLY));
    const r = await readOptionReply(ch, NBD_OPT_STRUCTURED_REPLY);
    if (r.type === NBD_REP_ACK) return true;
    if (r.type === NBD_REP_ERR_UNSUP) return false;
    if ((r.type & NBD_REP_FLAG_ERROR) !== 0) throw optionFailed(ch, NBD_OPT_STRUCTURED_REPLY, r);
    throw unexpectedReply(NBD_OPT_STRUCTURED_REPLY, r);
  });
}

/** Reads NBD_REP_META_CONTEXT replies until NBD_REP_ACK. */
async function readMetaContexts(ch: OptionChannel, option: number, hint: string): Promise<Array<{ id: number; name: string }>> {
  const out: Array<{ id: number; name: string }> = [];
  for (;;) {
    const r = await readOptionReply(ch, option);
    if (r.type === NBD_REP_ACK) return out;
    if (r.type === NBD_REP_META_CONTEXT) out.push(decodeRepMetaContext(r.payload));
    else if ((r.type & NBD_REP_FLAG_ERROR) !== 0) throw optionFailed(ch, option, r, hint);
    else throw unexpectedReply(option, r);
  }
}

/** NBD_OPT_SET_META_CONTEXT: selects contexts; returns name -> id of those the server selected. */
export function optSetMetaContext(ch: OptionChannel, exportName: string, queries: readonly string[]): Promise<Map<string, number>> {
  return guarded(ch, async () => {
    ch.write(encodeOption(NBD_OPT_SET_META_CONTEXT, encodeMetaContextData(exportName, queries)));
    const got = await readMetaContexts(ch, NBD_OPT_SET_META_CONTEXT, '');
    const map = new Map<string, number>();
    for (const { id, name } of got) {
      if ([...map.values()].includes(id)) {
        throw new NbdProtocolViolation(`NBD_OPT_SET_META_CONTEXT returned context id ${id} twice`);
      }
      map.set(name, id);
    }
    return map;
  });
}

/** NBD_OPT_LIST_META_CONTEXT: names of contexts matching `queries` (all of them when empty). */
export function optListMetaContext(ch: OptionChannel, exportName: string, queries: readonly string[]): Promise<string[]> {
  return guarded(ch, async () => {
    ch.write(encodeOption(NBD_OPT_LIST_META_CONTEXT, encodeMetaContextData(exportName, queries)));
    return (await readMetaContexts(ch, NBD_OPT_LIST_META_CONTEXT, '')).map((c) => c.name);
  });
}

/** NBD_OPT_LIST: the server's exports (NBD_REP_SERVER replies until NBD_REP_ACK). */
export function optList(ch: OptionChannel): Promise<Array<{ name: string; description: string }>> {
  return guarded(ch, async () => {
    ch.write(encodeOption(NBD_OPT_LIST));
    const out: Array<{ name: string; description: string }> = [];
    for (;;) {
      const r = await readOptionReply(ch, NBD_OPT_LIST);
      if (r.type === NBD_REP_ACK) return out;
      if (r.type === NBD_REP_SERVER) out.push(decodeRepServer(r.payload));
      else if ((r.type & NBD_REP_FLAG_ERROR) !== 0) throw optionFailed(ch, NBD_OPT_LIST, r);
      else throw unexpectedReply(NBD_OPT_LIST, r);
    }
  });
}

/**
 * NBD_OPT_ABORT: soft disconnect during haggling. The server SHOULD ack, but older ones just
 * close (proto.md "NBD_OPT_ABORT"), so any outcome of the read is fine.
 */
export async function optAbort(ch: OptionChannel): Promise<void> {
  ch.write(encodeOption(NBD_OPT_ABORT));
  try {
    await readOptionReply(ch, NBD_OPT_ABORT);
  } catch {
    // closed without an ack, or a garbled ack: we are leaving either way
  }
}

function validateBlockSize(bs: BlockSize): void {
  const pow2 = (n: number): boolean => n > 0 && (n & (n - 1)) === 0;
  if (!pow2(bs.minimum) || bs.minimum > 65536) {
    throw new NbdProtocolViolation(`NBD_INFO_BLOCK_SIZE minimum ${bs.minimum} is not a power of 2 up to 65536`);
  }
  if (bs.maximum < bs.minimum) {
    throw new NbdProtocolViolation(`NBD_INFO_BLOCK_SIZE maximum ${bs.maximum} is below the minimum ${bs.minimum}`);
  }
}

/**
 * NBD_OPT_GO with NBD_INFO_BLOCK_SIZE (so the server may rely on us honouring its size
 * constraints, proto.md "Size constraints"); falls back to NBD_OPT_EXPORT_NAME when the server
 * answers NBD_REP_ERR_UNSUP. On success the connection is in the transmission phase.
 */
export function optGo(ch: OptionChannel, exportName: string, greeting: Greeting): Promise<ExportInfo> {
  return guarded(ch, async () => {
    if (!greeting.fixedNewstyle) return optExportName(ch, exportName, greeting);
    ch.write(encodeOption(NBD_OPT_GO, encodeGoData(exportName, [NBD_INFO_BLOCK_SIZE, NBD_INFO_NAME, NBD_INFO_DESCRIPTION])));
    let size: number | undefined;
    let flags = 0;
    let blockSize: BlockSize | undefined;
    let description: string | undefined;
    for (;;) {
      const r = await readOptionReply(ch, NBD_OPT_GO);
      if (r.type === NBD_REP_INFO) {
        const info = decodeRepInfo(r.payload);
        if (info.info === 'export') {
          size = info.size;
          flags = info.flags;
        } else if (info.info === 'block-size') {
          blockSize = { minimum: info.minimum, preferred: info.preferred, maximum: info.maximum };
          validateBlockSize(blockSize);
        } else if (info.info === 'description') {
          description = info.description;
        }
        continue;
      }
      if (r.type === NBD_REP_ACK) {
        if (size === undefined) throw new NbdProtocolViolation('NBD_OPT_GO succeeded without NBD_INFO_EXPORT');
        return {
          exportName,
          size,
          transmissionFlags: flags,
          blockSize: blockSize ?? {
            minimum: DEFAULT_MINIMUM_BLOCK,
            preferred: DEFAULT_PREFERRED_BLOCK,
            maximum: DEFAULT_MAXIMUM_PAYLOAD,
          },
          blockSizeAdvertised: blockSize !== undefined,
          description,
        };
      }
      if (r.type === NBD_REP_ERR_UNSUP) return optExportName(ch, exportName, greeting);
      if (r.type === NBD_REP_ERR_UNKNOWN) {
        throw optionFailed(ch, NBD_OPT_GO, r, `; export '${exportName}' does not exist there (list exports with 'pullback nbd-info --list URI')`);
      }
      if ((r.type & NBD_REP_FLAG_ERROR) !== 0) throw optionFailed(ch, NBD_OPT_GO, r);
      throw unexpectedReply(NBD_OPT_GO, r);
    }
  });
}

/** NBD_OPT_EXPORT_NAME: S: 64-bit size, 16-bit flags, 124 zero bytes unless NO_ZEROES. */
async function optExportName(ch: OptionChannel, exportName: string, greeting: Greeting): Promise<ExportInfo> {
  ch.write(encodeOption(NBD_OPT_EXPORT_NAME, encodeExportNameData(exportName)));
  const b = await ch.read(10 + (greeting.noZeroes ? 0 : 124));
  const size = readUInt64(b, 0);
  if (size > Number.MAX_SAFE_INTEGER) throw new NbdProtocolViolation(`export size ${size} is beyond 2^53 bytes`);
  return {
    exportName,
    size,
    transmissionFlags: b.readUInt16BE(8),
    blockSize: { minimum: DEFAULT_MINIMUM_BLOCK, preferred: DEFAULT_PREFERRED_BLOCK, maximum: DEFAULT_MAXIMUM_PAYLOAD },
    blockSizeAdvertised: false,
    description: undefined,
  };
}
