// Validation of one transmission request against the session (proto.md "Request types",
// "Command flags", "Size constraints", "Error values"). Pure: the request either passes or
// gets the errno and message of its error reply. Terms: a *bad range* runs past the export
// size (NBD_EINVAL); writes of any kind on this read-only export get NBD_EPERM.
import {
  COMMAND_NAMES,
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_CACHE,
  NBD_CMD_FLAG_DF,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLAG_REQ_ONE,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_EINVAL,
  NBD_EOVERFLOW,
  NBD_EPERM,
  NBD_FLAG_SEND_DF,
} from '../constants.js';
import type { DecodedRequest } from '../request-codec.js';
import type { Session } from './negotiation.js';

export interface RequestError {
  errno: number;
  message: string;
}

export function commandName(type: number): string {
  return COMMAND_NAMES[type] ?? `command ${type}`;
}

function describe(req: DecodedRequest): string {
  return `${commandName(req.type)} at offset ${req.offset} length ${req.length}`;
}

/**
 * Null when the request may proceed. FUA is tolerated on any command ("existing clients are
 * known to set this bit on other commands"; nothing here writes, so there is nothing to persist).
 */
export function checkRequest(req: DecodedRequest, s: Session, maxPayload: number): RequestError | null {
  const size = s.export.size;
  const bad = (errno: number, why: string): RequestError => ({ errno, message: `${describe(req)}: ${why}` });
  const flagsOnly = (allowed: number): RequestError | null =>
    (req.flags & ~(allowed | NBD_CMD_FLAG_FUA)) !== 0 ? bad(NBD_EINVAL, `command flags 0x${req.flags.toString(16)} are not valid here`) : null;
  const inRange = (): RequestError | null =>
    req.offset + req.length > size ? bad(NBD_EINVAL, `the range ends beyond the export size of ${size} bytes`) : null;

  switch (req.type) {
    case NBD_CMD_READ: {
      const dfOk = (s.transmissionFlags & NBD_FLAG_SEND_DF) !== 0;
      const e = flagsOnly(dfOk ? NBD_CMD_FLAG_DF : 0) ?? inRange();
      if (e !== null) return e;
      if (req.length > maxPayload) {
        // Structured replies could carry it, but "the server is also permitted to reject large
        // read requests up front with NBD_EOVERFLOW".
        return bad(s.structured ? NBD_EOVERFLOW : NBD_EINVAL, `longer than the maximum payload of ${maxPayload} bytes`);
      }
      return null;
    }
    case NBD_CMD_BLOCK_STATUS: {
      if (!s.structured || s.contexts.size === 0) {
        return bad(NBD_EINVAL, 'no metadata context was selected (NBD_OPT_SET_META_CONTEXT base:allocation)');
      }
      const e = flagsOnly(NBD_CMD_FLAG_REQ_ONE) ?? inRange();
      if (e !== null) return e;
      return req.length === 0 ? bad(NBD_EINVAL, 'length 0') : null;
    }
    case NBD_CMD_WRITE:
    case NBD_CMD_TRIM:
    case NBD_CMD_WRITE_ZEROES:
      return bad(NBD_EPERM, 'the export is read-only');
    case NBD_CMD_FLUSH:
      return flagsOnly(0);
    case NBD_CMD_CACHE:
      // Not advertised, but "client implementations exist which attempt to send a cache
      // request even when NBD_FLAG_SEND_CACHE was not set": accept it as a no-op.
      return flagsOnly(0) ?? inRange();
    default:
      return bad(NBD_EINVAL, 'unknown command');
  }
}
