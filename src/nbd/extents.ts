// Merging two block-status maps into labelled extents (pure). `base:allocation` says what a
// range holds (proto.md "base:allocation": NBD_STATE_HOLE = not allocated, NBD_STATE_ZERO =
// reads as zeros); a `qemu:dirty-bitmap:NAME` map says whether it changed since the bitmap
// was created (flag 1 = dirty, QEMU docs/interop/nbd.txt). A backup reads dirty data, and
// skips or records as zeros the ranges that read as zeros.
import { NBD_STATE_DIRTY, NBD_STATE_HOLE, NBD_STATE_ZERO } from './constants.js';

export interface FlaggedExtent {
  offset: number;
  length: number;
  flags: number;
}

export type ExtentKind = 'data' | 'zero' | 'hole';

export interface LabelledExtent {
  offset: number;
  length: number;
  /** Changed since the dirty bitmap was created (always true without a bitmap: a full backup). */
  dirty: boolean;
  /** 'hole' = NBD_STATE_HOLE set; 'zero' = NBD_STATE_ZERO without HOLE; else 'data'. */
  kind: ExtentKind;
  /** NBD_STATE_ZERO: the range reads as zeros (a 'hole' without it has undefined contents). */
  zero: boolean;
}

export function kindOf(allocationFlags: number): ExtentKind {
  if ((allocationFlags & NBD_STATE_HOLE) !== 0) return 'hole';
  if ((allocationFlags & NBD_STATE_ZERO) !== 0) return 'zero';
  return 'data';
}

/** Index of the extent containing `pos`, starting the search at `i` (lists are sorted). */
function advance(list: readonly FlaggedExtent[], i: number, pos: number): number {
  while (i < list.length) {
    const e = list[i] as FlaggedExtent;
    if (e.offset + e.length > pos) break;
    i++;
  }
  return i;
}

/**
 * Labels [offset, offset+length) from an allocation map and an optional dirty map (both
 * sorted, non-overlapping). Ranges a map does not describe get the safe answer: allocated
 * data (status 0 is always a valid answer, proto.md NBD_CMD_BLOCK_STATUS) and dirty.
 * Adjacent extents with equal labels are coalesced.
 */
export function mergeExtents(
  allocation: readonly FlaggedExtent[],
  dirtyMap: readonly FlaggedExtent[] | null,
  offset: number,
  length: number,
): LabelledExtent[] {
  const out: LabelledExtent[] = [];
  const end = offset + length;
  let i = 0;
  let j = 0;
  let p = offset;
  while (p < end) {
    i = advance(allocation, i, p);
    let segEnd = end;
    let aFlags = 0;
    const a = allocation[i];
    if (a !== undefined && a.offset <= p) {
      aFlags = a.flags;
      segEnd = Math.min(segEnd, a.offset + a.length);
    } else if (a !== undefined) {
      segEnd = Math.min(segEnd, a.offset); // gap before the next extent
    }
    let dirty = true;
    if (dirtyMap !== null) {
      j = advance(dirtyMap, j, p);
      const d = dirtyMap[j];
      if (d !== undefined && d.offset <= p) {
        dirty = (d.flags & NBD_STATE_DIRTY) !== 0;
        segEnd = Math.min(segEnd, d.offset + d.length);
      } else if (d !== undefined) {
        segEnd = Math.min(segEnd, d.offset);
      }
    }
    const kind = kindOf(aFlags);
    const zero = (aFlags & NBD_STATE_ZERO) !== 0;
    const last = out[out.length - 1];
    if (last !== undefined && last.dirty === dirty && last.kind === kind && last.zero === zero && last.offset + last.length === p) {
      last.length += segEnd - p;
    } else {
      out.push({ offset: p, length: segEnd - p, dirty, kind, zero });
    }
    p = segEnd;
  }
  return out;
}
