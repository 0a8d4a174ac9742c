// Pure construction of transmission-phase replies (proto.md "Simple reply message",
// "Structured reply chunk message", "Structured reply types", NBD_CMD_READ). A reply is a
// list of buffers written together; read data goes out as the pieces' own buffers, no copy.
//   structured  NBD_OPT_STRUCTURED_REPLY was negotiated: reads answer with OFFSET_DATA /
//               OFFSET_HOLE chunks, the last one flagged NBD_REPLY_FLAG_DONE
//   df          NBD_CMD_FLAG_DF ("don't fragment"): a single OFFSET_DATA chunk, zeros explicit
import { NBD_REPLY_FLAG_DONE } from '../constants.js';
import {
  encodeBlockStatus,
  encodeErrorChunk,
  encodeOffsetDataHeader,
  encodeOffsetHole,
  encodeSimpleReply,
} from '../reply-codec.js';
import type { AllocationExtent, ReadPiece } from './export.js';

/** Shared zeros for holes in simple and DF replies; never written to. */
const ZEROS = Buffer.alloc(1 << 20);

function pushZeros(out: Buffer[], length: number): void {
  for (let left = length; left > 0; left -= ZEROS.length) out.push(ZEROS.subarray(0, Math.min(left, ZEROS.length)));
}

/** Adjacent zero pieces as one hole, so a sparse region costs one chunk. */
function mergeHoles(pieces: readonly ReadPiece[]): ReadPiece[] {
  const out: ReadPiece[] = [];
  for (const p of pieces) {
    const last = out[out.length - 1];
    if (p.data === null && last !== undefined && last.data === null && last.offset + last.length === p.offset) {
      out[out.length - 1] = { offset: last.offset, length: last.length + p.length, data: null };
    } else {
      out.push(p);
    }
  }
  return out;
}

/**
 * The reply to a successful NBD_CMD_READ of `length` bytes at `offset`, given pieces covering
 * exactly that range. Every byte is known before the first chunk goes out, so the final
 * content chunk carries NBD_REPLY_FLAG_DONE (allowed: no error can follow it).
 */
export function readReply(
  cookie: Buffer,
  offset: number,
  length: number,
  pieces: readonly ReadPiece[],
  mode: { structured: boolean; df: boolean },
): Buffer[] {
  const out: Buffer[] = [];
  const body = (): void => {
    for (const p of pieces) {
      if (p.data === null) pushZeros(out, p.length);
      else out.push(p.data);
    }
  };
  if (!mode.structured) {
    out.push(encodeSimpleReply(cookie, 0));
    body();
    return out;
  }
  if (mode.df) {
    out.push(encodeOffsetDataHeader(cookie, NBD_REPLY_FLAG_DONE, offset, length));
    body();
    return out;
  }
  const merged = mergeHoles(pieces);
  merged.forEach((p, i) => {
    const flags = i === merged.length - 1 ? NBD_REPLY_FLAG_DONE : 0;
    if (p.data === null) {
      out.push(encodeOffsetHole(cookie, flags, p.offset, p.length));
    } else {
      out.push(encodeOffsetDataHeader(cookie, flags, p.offset, p.length), p.data);
    }
  });
  return out;
}

/**
 * A failed request. Structured: one error chunk, final (ERROR_OFFSET when the offset is
 * known: proto.md lets the client judge partial success by it). Simple: the error in the
 * header and no payload ("it MUST NOT send any payload for this request").
 */
export function errorReply(cookie: Buffer, structured: boolean, errno: number, message: string, offset?: number): Buffer {
  if (!structured) return encodeSimpleReply(cookie, errno);
  return encodeErrorChunk(cookie, NBD_REPLY_FLAG_DONE, errno, message, offset);
}

/** Success without payload: a simple reply is allowed for anything but NBD_CMD_READ even with structured replies. */
export function okReply(cookie: Buffer): Buffer {
  return encodeSimpleReply(cookie, 0);
}

/** NBD_CMD_BLOCK_STATUS: one NBD_REPLY_TYPE_BLOCK_STATUS chunk per selected context, the last one final. */
export function blockStatusReply(cookie: Buffer, perContext: ReadonlyArray<{ id: number; extents: AllocationExtent[] }>): Buffer[] {
  return perContext.map((c, i) => encodeBlockStatus(cookie, i === perContext.length - 1 ? NBD_REPLY_FLAG_DONE : 0, c.id, c.extents));
}
