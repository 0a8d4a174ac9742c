// Protocol constants of the NBD protocol, named exactly as in doc/proto.md of
// NetworkBlockDevice/nbd ("Values" section) so that code reads like the spec.
// Magic numbers above 2^53 cannot be JS numbers, so 64-bit magics are bigints.

// ---- Handshake magics (proto.md "Newstyle negotiation", "Fixed newstyle negotiation")
export const NBDMAGIC = 0x4e42444d41474943n; // ASCII 'NBDMAGIC' (INIT_PASSWD)
export const IHAVEOPT = 0x49484156454f5054n; // ASCII 'IHAVEOPT'
export const CLISERV_MAGIC = 0x00420281861253n; // oldstyle negotiation (unsupported)
export const NBD_REP_MAGIC = 0x3e889045565a9n; // option reply magic

// ---- Transmission magics (proto.md "Request message", "Simple reply", "Structured reply chunk")
export const NBD_REQUEST_MAGIC = 0x25609513;
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;
export const NBD_STRUCTURED_REPLY_MAGIC = 0x668e33ef;
export const NBD_EXTENDED_REPLY_MAGIC = 0x6e8a278c; // never negotiated by us; named for error messages

// ---- Handshake flags (server, 16 bits) and client flags (32 bits)
export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_NO_ZEROES = 1 << 1;
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_C_NO_ZEROES = 1 << 1;

// ---- Transmission flags (16 bits, proto.md "Transmission flags")
export const NBD_FLAG_HAS_FLAGS = 1 << 0;
export const NBD_FLAG_READ_ONLY = 1 << 1;
export const NBD_FLAG_SEND_FLUSH = 1 << 2;
export const NBD_FLAG_SEND_FUA = 1 << 3;
export const NBD_FLAG_ROTATIONAL = 1 << 4;
export const NBD_FLAG_SEND_TRIM = 1 << 5;
export const NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6;
export const NBD_FLAG_SEND_DF = 1 << 7;
export const NBD_FLAG_CAN_MULTI_CONN = 1 << 8;
export const NBD_FLAG_SEND_RESIZE = 1 << 9;
export const NBD_FLAG_SEND_CACHE = 1 << 10;
export const NBD_FLAG_SEND_FAST_ZERO = 1 << 11;
export const NBD_FLAG_BLOCK_STATUS_PAYLOAD = 1 << 12;

/** Transmission flag bits by spec name, for `nbd-info` and error messages. */
export const TRANSMISSION_FLAG_NAMES: ReadonlyArray<readonly [number, string]> = [
  [NBD_FLAG_HAS_FLAGS, 'NBD_FLAG_HAS_FLAGS'],
  [NBD_FLAG_READ_ONLY, 'NBD_FLAG_READ_ONLY'],
  [NBD_FLAG_SEND_FLUSH, 'NBD_FLAG_SEND_FLUSH'],
  [NBD_FLAG_SEND_FUA, 'NBD_FLAG_SEND_FUA'],
  [NBD_FLAG_ROTATIONAL, 'NBD_FLAG_ROTATIONAL'],
  [NBD_FLAG_SEND_TRIM, 'NBD_FLAG_SEND_TRIM'],
  [NBD_FLAG_SEND_WRITE_ZEROES, 'NBD_FLAG_SEND_WRITE_ZEROES'],
  [NBD_FLAG_SEND_DF, 'NBD_FLAG_SEND_DF'],
  [NBD_FLAG_CAN_MULTI_CONN, 'NBD_FLAG_CAN_MULTI_CONN'],
  [NBD_FLAG_SEND_RESIZE, 'NBD_FLAG_SEND_RESIZE'],
  [NBD_FLAG_SEND_CACHE, 'NBD_FLAG_SEND_CACHE'],
  [NBD_FLAG_SEND_FAST_ZERO, 'NBD_FLAG_SEND_FAST_ZERO'],
  [NBD_FLAG_BLOCK_STATUS_PAYLOAD, 'NBD_FLAG_BLOCK_STATUS_PAYLOAD'],
];

// ---- Option types (proto.md "Option types")
export const NBD_OPT_EXPORT_NAME = 1;
export const NBD_OPT_ABORT = 2;
export const NBD_OPT_LIST = 3;
export const NBD_OPT_STARTTLS = 5;
export const NBD_OPT_INFO = 6;
export const NBD_OPT_GO = 7;
export const NBD_OPT_STRUCTURED_REPLY = 8;
export const NBD_OPT_LIST_META_CONTEXT = 9;
export const NBD_OPT_SET_META_CONTEXT = 10;
export const NBD_OPT_EXTENDED_HEADERS = 11;

export const OPTION_NAMES: Readonly<Record<number, string>> = {
  [NBD_OPT_EXPORT_NAME]: 'NBD_OPT_EXPORT_NAME',
  [NBD_OPT_ABORT]: 'NBD_OPT_ABORT',
  [NBD_OPT_LIST]: 'NBD_OPT_LIST',
  [NBD_OPT_STARTTLS]: 'NBD_OPT_STARTTLS',
  [NBD_OPT_INFO]: 'NBD_OPT_INFO',
  [NBD_OPT_GO]: 'NBD_OPT_GO',
  [NBD_OPT_STRUCTURED_REPLY]: 'NBD_OPT_STRUCTURED_REPLY',
  [NBD_OPT_LIST_META_CONTEXT]: 'NBD_OPT_LIST_META_CONTEXT',
  [NBD_OPT_SET_META_CONTEXT]: 'NBD_OPT_SET_META_CONTEXT',
  [NBD_OPT_EXTENDED_HEADERS]: 'NBD_OPT_EXTENDED_HEADERS',
};

// ---- Option reply types (proto.md "Option reply types"); errors have bit 31 set
export const NBD_REP_ACK = 1;
export const NBD_REP_SERVER = 2;
export const NBD_REP_INFO = 3;
export const NBD_REP_META_CONTEXT = 4;
export const NBD_REP_FLAG_ERROR = 0x80000000;
export const NBD_REP_ERR_UNSUP = 0x80000001;
export const NBD_REP_ERR_POLICY = 0x80000002;
export const NBD_REP_ERR_INVALID = 0x80000003;
export const NBD_REP_ERR_PLATFORM = 0x80000004;
export const NBD_REP_ERR_TLS_REQD = 0x80000005;
export const NBD_REP_ERR_UNKNOWN = 0x80000006;
export const NBD_REP_ERR_SHUTDOWN = 0x80000007;
export const NBD_REP_ERR_BLOCK_SIZE_REQD = 0x80000008;
export const NBD_REP_ERR_TOO_BIG = 0x80000009;
export const NBD_REP_ERR_EXT_HEADER_REQD = 0x8000000a;

export const OPTION_REPLY_NAMES: Readonly<Record<number, string>> = {
  [NBD_REP_ACK]: 'NBD_REP_ACK',
  [NBD_REP_SERVER]: 'NBD_REP_SERVER',
  [NBD_REP_INFO]: 'NBD_REP_INFO',
  [NBD_REP_META_CONTEXT]: 'NBD_REP_META_CONTEXT',
  [NBD_REP_ERR_UNSUP]: 'NBD_REP_ERR_UNSUP',
  [NBD_REP_ERR_POLICY]: 'NBD_REP_ERR_POLICY',
  [NBD_REP_ERR_INVALID]: 'NBD_REP_ERR_INVALID',
  [NBD_REP_ERR_PLATFORM]: 'NBD_REP_ERR_PLATFORM',
  [NBD_REP_ERR_TLS_REQD]: 'NBD_REP_ERR_TLS_REQD',
  [NBD_REP_ERR_UNKNOWN]: 'NBD_REP_ERR_UNKNOWN',
  [NBD_REP_ERR_SHUTDOWN]: 'NBD_REP_ERR_SHUTDOWN',
  [NBD_REP_ERR_BLOCK_SIZE_REQD]: 'NBD_REP_ERR_BLOCK_SIZE_REQD',
  [NBD_REP_ERR_TOO_BIG]: 'NBD_REP_ERR_TOO_BIG',
  [NBD_REP_ERR_EXT_HEADER_REQD]: 'NBD_REP_ERR_EXT_HEADER_REQD',
};

// ---- NBD_REP_INFO information types (proto.md under NBD_REP_INFO)
export const NBD_INFO_EXPORT = 0;
export const NBD_INFO_NAME = 1;
export const NBD_INFO_DESCRIPTION = 2;
export const NBD_INFO_BLOCK_SIZE = 3;

// ---- Commands (proto.md "Request types")
export const NBD_CMD_READ = 0;
export const NBD_CMD_WRITE = 1;
export const NBD_CMD_DISC = 2;
export const NBD_CMD_FLUSH = 3;
export const NBD_CMD_TRIM = 4;
export const NBD_CMD_CACHE = 5;
export const NBD_CMD_WRITE_ZEROES = 6;
export const NBD_CMD_BLOCK_STATUS = 7;

export const COMMAND_NAMES: Readonly<Record<number, string>> = {
  [NBD_CMD_READ]: 'NBD_CMD_READ',
  [NBD_CMD_WRITE]: 'NBD_CMD_WRITE',
  [NBD_CMD_DISC]: 'NBD_CMD_DISC',
  [NBD_CMD_FLUSH]: 'NBD_CMD_FLUSH',
  [NBD_CMD_TRIM]: 'NBD_CMD_TRIM',
  [NBD_CMD_CACHE]: 'NBD_CMD_CACHE',
  [NBD_CMD_WRITE_ZEROES]: 'NBD_CMD_WRITE_ZEROES',
  [NBD_CMD_BLOCK_STATUS]: 'NBD_CMD_BLOCK_STATUS',
};

// ---- Command flags (proto.md "Command flags")
export const NBD_CMD_FLAG_FUA = 1 << 0;
export const NBD_CMD_FLAG_NO_HOLE = 1 << 1;
export const NBD_CMD_FLAG_DF = 1 << 2;
export const NBD_CMD_FLAG_REQ_ONE = 1 << 3;
export const NBD_CMD_FLAG_FAST_ZERO = 1 << 4;

// ---- Structured reply flags and types (proto.md "Structured reply flags/types")
export const NBD_REPLY_FLAG_DONE = 1 << 0;
export const NBD_REPLY_TYPE_NONE = 0;
export const NBD_REPLY_TYPE_OFFSET_DATA = 1;
export const NBD_REPLY_TYPE_OFFSET_HOLE = 2;
export const NBD_REPLY_TYPE_BLOCK_STATUS = 5;
export const NBD_REPLY_TYPE_BLOCK_STATUS_EXT = 6;
export const NBD_REPLY_TYPE_ERROR_BIT = 1 << 15;
export const NBD_REPLY_TYPE_ERROR = (1 << 15) + 1;
export const NBD_REPLY_TYPE_ERROR_OFFSET = (1 << 15) + 2;

export const REPLY_TYPE_NAMES: Readonly<Record<number, string>> = {
  [NBD_REPLY_TYPE_NONE]: 'NBD_REPLY_TYPE_NONE',
  [NBD_REPLY_TYPE_OFFSET_DATA]: 'NBD_REPLY_TYPE_OFFSET_DATA',
  [NBD_REPLY_TYPE_OFFSET_HOLE]: 'NBD_REPLY_TYPE_OFFSET_HOLE',
  [NBD_REPLY_TYPE_BLOCK_STATUS]: 'NBD_REPLY_TYPE_BLOCK_STATUS',
  [NBD_REPLY_TYPE_BLOCK_STATUS_EXT]: 'NBD_REPLY_TYPE_BLOCK_STATUS_EXT',
  [NBD_REPLY_TYPE_ERROR]: 'NBD_REPLY_TYPE_ERROR',
  [NBD_REPLY_TYPE_ERROR_OFFSET]: 'NBD_REPLY_TYPE_ERROR_OFFSET',
};

// ---- Error values (proto.md "Error values")
export const NBD_EPERM = 1;
export const NBD_EIO = 5;
export const NBD_ENOMEM = 12;
export const NBD_EINVAL = 22;
export const NBD_ENOSPC = 28;
export const NBD_EOVERFLOW = 75;
export const NBD_ENOTSUP = 95;
export const NBD_ESHUTDOWN = 108;

export const ERROR_NAMES: Readonly<Record<number, string>> = {
  [NBD_EPERM]: 'EPERM',
  [NBD_EIO]: 'EIO',
  [NBD_ENOMEM]: 'ENOMEM',
  [NBD_EINVAL]: 'EINVAL',
  [NBD_ENOSPC]: 'ENOSPC',
  [NBD_EOVERFLOW]: 'EOVERFLOW',
  [NBD_ENOTSUP]: 'ENOTSUP',
  [NBD_ESHUTDOWN]: 'ESHUTDOWN',
};

// ---- Metadata contexts (proto.md "base:allocation metadata context"; QEMU docs/interop/nbd.txt)
export const BASE_ALLOCATION = 'base:allocation';
export const QEMU_DIRTY_BITMAP_PREFIX = 'qemu:dirty-bitmap:';
export const QEMU_ALLOCATION_DEPTH = 'qemu:allocation-depth';
export const NBD_STATE_HOLE = 1 << 0;
export const NBD_STATE_ZERO = 1 << 1;
/** qemu:dirty-bitmap:NAME flag: the extent was written since the bitmap was created. */
export const NBD_STATE_DIRTY = 1 << 0;

// ---- Size constraints (proto.md "Size constraints"): defaults when not advertised
export const DEFAULT_MINIMUM_BLOCK = 1;
export const DEFAULT_PREFERRED_BLOCK = 4096;
export const DEFAULT_MAXIMUM_PAYLOAD = 1 << 25; // 32 MiB

// ---- Wire sizes
export const REQUEST_HEADER_SIZE = 28;
export const SIMPLE_REPLY_HEADER_SIZE = 16;
export const STRUCTURED_REPLY_HEADER_SIZE = 20;
export const OPTION_REPLY_HEADER_SIZE = 20;
/** Strings (names, messages) MUST be no longer than 4096 bytes (proto.md "Conventions"). */
export const NBD_MAX_STRING = 4096;
/** Servers SHOULD NOT send more than 2^20 extents per block status chunk (proto.md). */
export const NBD_MAX_BLOCK_STATUS_EXTENTS = 1 << 20;

/** Spec name of an errno sent by a server, e.g. 'EIO', or 'errno 42' for unknown ones. */
export function errnoName(errno: number): string {
  return ERROR_NAMES[errno] ?? `errno ${errno}`;
}

/** Spec names of the set bits of a transmission flags word. */
export function transmissionFlagNames(flags: number): string[] {
  return TRANSMISSION_FLAG_NAMES.filter(([bit]) => (flags & bit) !== 0).map(([, name]) => name);
}
