// A resolved chunk map: for each chunk index of one disk at one backup, what reads back there.
//   data    the chunk with this BLAKE3 digest
//   zero    recorded as all zeros (never stored)
//   absent  no backup in the chain recorded it (unallocated at the full); reads back as zeros
// Kept as packed typed arrays (1 byte + 32 bytes per chunk: 33 MiB for 1 TiB at 1 MiB chunks),
// so a map of a million chunks costs no per-entry objects.
import { DIGEST_BYTES } from './hash.js';
import type { ChunkEntry } from './types.js';

export const KIND_ABSENT = 0;
export const KIND_ZERO = 1;
export const KIND_DATA = 2;

const ZERO: ChunkEntry = { kind: 'zero' };
const ABSENT: ChunkEntry = { kind: 'absent' };

export class ChunkMap {
  readonly disk: string;
  /** Virtual size of the disk at this backup, bytes. */
  readonly size: number;
  readonly chunkSize: number;
  /** ceil(size / chunkSize). */
  readonly count: number;
  private readonly kinds: Uint8Array;
  private readonly digests: Buffer;

  constructor(disk: string, size: number, chunkSize: number) {
    this.disk = disk;
    this.size = size;
    this.chunkSize = chunkSize;
    this.count = Math.ceil(size / chunkSize);
    this.kinds = new Uint8Array(this.count);
    this.digests = Buffer.alloc(this.count * DIGEST_BYTES);
  }

  get(i: number): ChunkEntry {
    const k = this.kinds[i];
    if (k === KIND_DATA) return { kind: 'data', digest: this.digestAt(i) };
    return k === KIND_ZERO ? ZERO : ABSENT;
  }

  /** KIND_ABSENT, KIND_ZERO or KIND_DATA, without allocating. */
  kindAt(i: number): number {
    return this.kinds[i] ?? KIND_ABSENT;
  }

  /** The digest of a data chunk, as a view into the map (copy it to keep it). */
  digestAt(i: number): Buffer {
    return this.digests.subarray(i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES);
  }

  /** Length in bytes of chunk i (the last one may be short). */
  lengthOf(i: number): number {
    return Math.min(this.chunkSize, this.size - i * this.chunkSize);
  }

  setZero(i: number): void {
    this.kinds[i] = KIND_ZERO;
    this.digests.fill(0, i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES);
  }

  setData(i: number, digest: Uint8Array): void {
    this.kinds[i] = KIND_DATA;
    this.digests.set(digest, i * DIGEST_BYTES);
  }

  counts(): { data: number; zero: number; absent: number } {
    let data = 0;
    let zero = 0;
    for (const k of this.kinds) {
      if (k === KIND_DATA) data++;
      else if (k === KIND_ZERO) zero++;
    }
    return { data, zero, absent: this.count - data - zero };
  }

  /** Two maps are equal when every index resolves to the same thing. */
  equals(other: ChunkMap): boolean {
    return (
      this.size === other.size &&
      this.chunkSize === other.chunkSize &&
      Buffer.from(this.kinds.buffer, this.kinds.byteOffset, this.kinds.byteLength).equals(
        Buffer.from(other.kinds.buffer, other.kinds.byteOffset, other.kinds.byteLength),
      ) &&
      this.digests.equals(other.digests)
    );
  }
}
