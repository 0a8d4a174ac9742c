// Shaping an export's base:allocation extents into a valid NBD_REPLY_TYPE_BLOCK_STATUS
// descriptor list (proto.md NBD_CMD_BLOCK_STATUS and "Structured reply types"): descriptors
// are nonzero, consecutive from the request offset, adjacent equal flags merged ("SHOULD use
// different status values between consecutive descriptors"), the total clipped to the request
// (allowed to be shorter, and our own client treats longer as a violation), exactly one with
// NBD_CMD_FLAG_REQ_ONE, and at most 2^20 per chunk ("SHOULD NOT send more than 2^20").
import { NBD_MAX_BLOCK_STATUS_EXTENTS } from '../constants.js';
import type { AllocationExtent } from './export.js';

/** Throws when the export broke its contract (no extent, or a zero-length one). */
export function shapeExtents(extents: readonly AllocationExtent[], length: number, reqOne: boolean): AllocationExtent[] {
  const out: AllocationExtent[] = [];
  let covered = 0;
  for (const e of extents) {
    if (covered >= length) break;
    if (!(e.length > 0)) throw new Error(`export returned an allocation extent of length ${e.length}`);
    const len = Math.min(e.length, length - covered);
    const last = out[out.length - 1];
    if (last !== undefined && last.flags === e.flags && last.length + len <= 0xffffffff) {
      last.length += len;
    } else {
      if (out.length === NBD_MAX_BLOCK_STATUS_EXTENTS) break;
      out.push({ length: len, flags: e.flags });
    }
    covered += len;
  }
  if (out.length === 0) throw new Error('export returned no allocation extents');
  return reqOne ? out.slice(0, 1) : out;
}
