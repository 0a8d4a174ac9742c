// Chunk addressing. A digest is BLAKE3-256 of the chunk's plaintext: cryptographic, because
// guest data is attacker-controlled and a forgeable hash would let one guest make another
// guest's chunk resolve to its own data. BLAKE3 (native, ~3.9 GB/s/core measured here) keeps
// hashing far from being the bottleneck; see docs/store.md.
import { blake3 } from '@napi-rs/blake-hash';

export const DIGEST_BYTES = 32;

export function digestOf(data: Uint8Array): Buffer {
  return blake3(data);
}

export function toHex(digest: Uint8Array): string {
  return Buffer.from(digest.buffer, digest.byteOffset, digest.byteLength).toString('hex');
}

export function fromHex(hex: string): Buffer {
  return Buffer.from(hex, 'hex');
}

const zeroCache = new Map<number, Buffer>();

/** True if every byte is zero: a memcmp against a cached zero buffer (~10 GB/s). */
export function isAllZero(data: Buffer): boolean {
  let zeros = zeroCache.get(data.length);
  if (zeros === undefined) {
    zeros = Buffer.alloc(data.length);
    if (zeroCache.size < 8) zeroCache.set(data.length, zeros);
  }
  return data.equals(zeros);
}
