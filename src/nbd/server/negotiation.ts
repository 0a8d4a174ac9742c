// Server side of option haggling (proto.md "Fixed newstyle negotiation", "Option types",
// "Option reply types", "Metadata querying"). Pure: each option in, option replies and what
// to do next out; the connection does the I/O. Terms:
//   session   what the client negotiated and transmission needs: the export, structured
//             replies on or off, the transmission flags sent, and the selected metadata contexts
//   default   the export an empty name selects (proto.md: "reserved for a default export")
// Only base:allocation exists as a metadata context; the server is read-only and NOTLS
// (NBD_OPT_STARTTLS gets NBD_REP_ERR_UNSUP, as "NOTLS mode" allows).
import {
  BASE_ALLOCATION,
  NBD_FLAG_CAN_MULTI_CONN,
  NBD_FLAG_HAS_FLAGS,
  NBD_FLAG_READ_ONLY,
  NBD_FLAG_SEND_DF,
  NBD_INFO_DESCRIPTION,
  NBD_INFO_NAME,
  NBD_OPT_ABORT,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_INFO,
  NBD_OPT_LIST,
  NBD_OPT_LIST_META_CONTEXT,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REP_ACK,
  NBD_REP_ERR_INVALID,
  NBD_REP_ERR_SHUTDOWN,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP,
  NBD_REP_INFO,
  NBD_REP_META_CONTEXT,
  NBD_REP_SERVER,
} from '../constants.js';
import {
  decodeGoData,
  decodeMetaContextData,
  encodeInfoBlockSize,
  encodeInfoDescription,
  encodeInfoExport,
  encodeInfoName,
  encodeOptionError,
  encodeOptionReply,
  encodeRepMetaContext,
  encodeRepServer,
  optionName,
} from '../option-codec.js';
import { NbdProtocolViolation } from '../violation.js';
import type { NbdExport } from './export.js';

/** Metadata contexts this server offers: name -> id (ids are nonzero and fixed). */
export const SERVER_CONTEXTS: ReadonlyMap<string, number> = new Map([[BASE_ALLOCATION, 1]]);

export interface Session {
  export: NbdExport;
  structured: boolean;
  transmissionFlags: number;
  /** Selected contexts, id -> name (empty unless SET_META_CONTEXT selected some for this export). */
  contexts: Map<number, string>;
}

export type OptionOutcome =
  /** Send the replies, keep haggling. */
  | { kind: 'continue'; replies: Buffer[] }
  /** Send the replies, then close (NBD_OPT_ABORT: a soft disconnect). */
  | { kind: 'abort'; replies: Buffer[] }
  /** Hard disconnect (proto.md: NBD_OPT_EXPORT_NAME the server cannot satisfy). */
  | { kind: 'close'; reason: string }
  /** Send the replies, then enter transmission. */
  | { kind: 'transmission'; replies: Buffer[]; session: Session };

export interface NegotiationConfig {
  exports: readonly NbdExport[];
  /** Name of the export '' selects (default: the only export, if there is exactly one). */
  defaultExport?: string;
  /** Largest request payload accepted (NBD_INFO_BLOCK_SIZE maximum). */
  maxPayload: number;
}

export class Negotiation {
  private structured = false;
  /** Contexts from the last NBD_OPT_SET_META_CONTEXT, and the export they were set for. */
  private contexts = new Map<number, string>();
  private contextsFor: NbdExport | undefined;
  /** Set when the server is closing: options are refused with NBD_REP_ERR_SHUTDOWN. */
  shuttingDown = false;

  constructor(
    private readonly config: NegotiationConfig,
    private readonly noZeroes: boolean,
  ) {}

  handle(option: number, data: Buffer): OptionOutcome {
    if (option === NBD_OPT_EXPORT_NAME) return this.exportName(data);
    if (option === NBD_OPT_ABORT) {
      // "The server MUST reply with NBD_REP_ACK" and SHOULD ignore any data.
      return { kind: 'abort', replies: [encodeOptionReply(option, NBD_REP_ACK)] };
    }
    if (this.shuttingDown) {
      return this.fail(option, NBD_REP_ERR_SHUTDOWN, 'the server is shutting down');
    }
    try {
      switch (option) {
        case NBD_OPT_LIST:
          return this.list(option, data);
        case NBD_OPT_STRUCTURED_REPLY:
          if (data.length !== 0) return this.fail(option, NBD_REP_ERR_INVALID, 'NBD_OPT_STRUCTURED_REPLY takes no data');
          this.structured = true;
          return { kind: 'continue', replies: [encodeOptionReply(option, NBD_REP_ACK)] };
        case NBD_OPT_INFO:
        case NBD_OPT_GO:
          return this.infoOrGo(option, data);
        case NBD_OPT_LIST_META_CONTEXT:
        case NBD_OPT_SET_META_CONTEXT:
          return this.metaContext(option, data);
        default:
          // STARTTLS, EXTENDED_HEADERS and anything unknown (proto.md: NBD_REP_ERR_UNSUP).
          return this.fail(option, NBD_REP_ERR_UNSUP, `${optionName(option)} is not supported by this server`);
      }
    } catch (e) {
      // Lengths that do not add up: "the server MUST fail the request with NBD_REP_ERR_INVALID".
      if (e instanceof NbdProtocolViolation) return this.fail(option, NBD_REP_ERR_INVALID, e.message);
      throw e;
    }
  }

  private fail(option: number, type: number, message: string): OptionOutcome {
    if (option === NBD_OPT_SET_META_CONTEXT) this.clearContexts(); // "including when this command fails"
    return { kind: 'continue', replies: [encodeOptionError(option, type, message)] };
  }

  private clearContexts(): void {
    this.contexts = new Map();
    this.contextsFor = undefined;
  }

  private find(name: string): NbdExport | undefined {
    const exports = this.config.exports;
    if (name === '') {
      const dflt = this.config.defaultExport ?? (exports.length === 1 ? exports[0]?.name : undefined);
      return dflt === undefined ? undefined : exports.find((e) => e.name === dflt);
    }
    return exports.find((e) => e.name === name);
  }

  private unknownExport(option: number, name: string): OptionOutcome {
    const known = this.config.exports.map((e) => `'${e.name}'`).join(', ');
    return this.fail(option, NBD_REP_ERR_UNKNOWN, `no export named '${name}' (this server exports ${known})`);
  }

  private transmissionFlags(): number {
    // Read-only; one shared, immutable backing for every connection, so multi-conn is safe.
    // SEND_DF only with structured replies ("MUST leave this flag clear if structured replies
    // have not been negotiated").
    return NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY | NBD_FLAG_CAN_MULTI_CONN | (this.structured ? NBD_FLAG_SEND_DF : 0);
  }

  private session(exp: NbdExport): Session {
    // Contexts count only if the last SET_META_CONTEXT named the export now selected.
    const contexts = this.contextsFor === exp ? this.contexts : new Map<number, string>();
    return { export: exp, structured: this.structured, transmissionFlags: this.transmissionFlags(), contexts };
  }

  private exportName(data: Buffer): OptionOutcome {
    const name = data.toString('utf8');
    const exp = this.find(name);
    if (exp === undefined) return { kind: 'close', reason: `NBD_OPT_EXPORT_NAME asked for unknown export '${name}'` };
    if (this.shuttingDown) return { kind: 'close', reason: 'the server is shutting down' };
    // S: 64-bit size, 16-bit transmission flags, 124 zero bytes unless NBD_FLAG_C_NO_ZEROES.
    const reply = Buffer.alloc(10 + (this.noZeroes ? 0 : 124));
    reply.writeBigUInt64BE(BigInt(exp.size), 0);
    const s = this.session(exp);
    reply.writeUInt16BE(s.transmissionFlags, 8);
    return { kind: 'transmission', replies: [reply], session: s };
  }

  private list(option: number, data: Buffer): OptionOutcome {
    if (data.length !== 0) return this.fail(option, NBD_REP_ERR_INVALID, 'NBD_OPT_LIST takes no data');
    const replies = this.config.exports.map((e) => encodeOptionReply(option, NBD_REP_SERVER, encodeRepServer(e.name, e.description)));
    replies.push(encodeOptionReply(option, NBD_REP_ACK));
    return { kind: 'continue', replies };
  }

  private infoOrGo(option: number, data: Buffer): OptionOutcome {
    const { exportName, infos } = decodeGoData(data);
    const exp = this.find(exportName);
    if (exp === undefined) return this.unknownExport(option, exportName);
    const s = this.session(exp);
    const info = (payload: Buffer): Buffer => encodeOptionReply(option, NBD_REP_INFO, payload);
    // NBD_INFO_EXPORT is mandatory; block sizes are always sent (a client that did not ask
    // may ignore them: minimum 1 and maximum >= 32 MiB are the defaults anyway).
    const replies = [
      info(encodeInfoExport(exp.size, s.transmissionFlags)),
      info(encodeInfoBlockSize(1, exp.preferredBlockSize, this.config.maxPayload)),
    ];
    if (infos.includes(NBD_INFO_NAME)) replies.push(info(encodeInfoName(exp.name)));
    if (infos.includes(NBD_INFO_DESCRIPTION) && exp.description !== '') replies.push(info(encodeInfoDescription(exp.description)));
    replies.push(encodeOptionReply(option, NBD_REP_ACK));
    if (option === NBD_OPT_INFO) return { kind: 'continue', replies };
    return { kind: 'transmission', replies, session: s };
  }

  private metaContext(option: number, data: Buffer): OptionOutcome {
    const set = option === NBD_OPT_SET_META_CONTEXT;
    if (set && !this.structured) {
      return this.fail(option, NBD_REP_ERR_INVALID, 'NBD_OPT_SET_META_CONTEXT needs NBD_OPT_STRUCTURED_REPLY first');
    }
    const { exportName, queries } = decodeMetaContextData(data);
    const exp = this.find(exportName);
    if (exp === undefined) return this.unknownExport(option, exportName);
    for (const q of queries) {
      if (!q.includes(':')) return this.fail(option, NBD_REP_ERR_INVALID, `metadata context query '${q}' has no namespace (e.g. 'base:allocation')`);
    }
    const selected = new Map<number, string>();
    for (const [name, id] of SERVER_CONTEXTS) {
      const wanted = set
        ? queries.includes(name) // "base:" is ignored by SET; unknown names are ignored
        : queries.length === 0 || queries.some((q) => q === name || (q.endsWith(':') && name.startsWith(q)));
      if (wanted) selected.set(id, name);
    }
    const replies: Buffer[] = [];
    for (const [id, name] of selected) {
      // LIST: "The metadata context ID in these replies is reserved and SHOULD be set to zero".
      replies.push(encodeOptionReply(option, NBD_REP_META_CONTEXT, encodeRepMetaContext(set ? id : 0, name)));
    }
    replies.push(encodeOptionReply(option, NBD_REP_ACK));
    if (set) {
      this.contexts = selected;
      this.contextsFor = exp;
    }
    return { kind: 'continue', replies };
  }
}
