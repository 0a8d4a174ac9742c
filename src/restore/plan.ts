// Restore planning (pure): a resolved chunk map (src/store/chunk-map.ts) becomes a write plan.
//
// Terms: a *data chunk* is an index whose content is a stored chunk (fetched, verified and
// written once, whatever the length of the chain that produced the map); a *zero range* is a
// maximal run of zero or absent chunks, as a byte range [offset, offset+length) of the disk.
// Both read back as zeros: the store never keeps an all-zero data chunk (it becomes a zero
// marker) and an absent chunk was unallocated at the full backup.
import type { ChunkMap } from '../store/index.js';
import { KIND_DATA } from '../store/index.js';

export interface ByteRange {
  offset: number;
  length: number;
}

export interface DiskPlan {
  disk: string;
  /** Virtual size of the disk in bytes. */
  size: number;
  chunkSize: number;
  /** The resolved map the plan was made from (digests are read from it when writing). */
  map: ChunkMap;
  /** Indices of data chunks, ascending. */
  data: Uint32Array;
  /** Coalesced zero/absent ranges, ascending, never adjacent to each other. */
  zeroRanges: ByteRange[];
  /** Sum of the lengths of the data chunks. */
  dataBytes: number;
  /** size - dataBytes. */
  zeroBytes: number;
}

export function planDisk(map: ChunkMap): DiskPlan {
  let dataCount = 0;
  for (let i = 0; i < map.count; i++) if (map.kindAt(i) === KIND_DATA) dataCount++;
  const data = new Uint32Array(dataCount);
  const zeroRanges: ByteRange[] = [];
  let dataBytes = 0;
  let d = 0;
  let runStart = -1;
  for (let i = 0; i < map.count; i++) {
    if (map.kindAt(i) === KIND_DATA) {
      if (runStart >= 0) {
        zeroRanges.push(rangeOf(map, runStart, i));
        runStart = -1;
      }
      data[d++] = i;
      dataBytes += map.lengthOf(i);
    } else if (runStart < 0) {
      runStart = i;
    }
  }
  if (runStart >= 0) zeroRanges.push(rangeOf(map, runStart, map.count));
  return {
    disk: map.disk,
    size: map.size,
    chunkSize: map.chunkSize,
    map,
    data,
    zeroRanges,
    dataBytes,
    zeroBytes: map.size - dataBytes,
  };
}

/** Byte range of chunks [from, to). */
function rangeOf(map: ChunkMap, from: number, to: number): ByteRange {
  const offset = from * map.chunkSize;
  const end = Math.min(map.size, to * map.chunkSize);
  return { offset, length: end - offset };
}

/** Splits ranges into pieces of at most `max` bytes (zero writes use a fixed-size buffer). */
export function* splitRanges(ranges: readonly ByteRange[], max: number): Generator<ByteRange> {
  for (const r of ranges) {
    for (let o = r.offset; o < r.offset + r.length; o += max) {
      yield { offset: o, length: Math.min(max, r.offset + r.length - o) };
    }
  }
}
