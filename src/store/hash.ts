// Chunk addressing. A digest is BLAKE3-256 of the chunk's plaintext: cryptographic, because
// guest data is attacker-controlled and a forgeable hash would let one guest make another
// guest's chunk resolve to its own data. BLAKE3 (native, ~3.9 GB/s/core measured here) keeps
// hashing far from being the bottleneck; see docs/store.md.
import { createRequire } from 'node:module';

export const DIGEST_BYTES = 32;

// Loaded at first use: a backup's main thread hashes nothing (its workers do), and module
// loading is on the path to the start of every backup (~10 ms for this addon here).
let blake3: ((data: Uint8Array) => Buffer) | undefined;

export function digestOf(data: Uint8Array): Buffer {
  blake3 ??= (createRequire(import.meta.url)('@napi-rs/blake-hash') as typeof import('@napi-rs/blake-hash')).blake3;
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
