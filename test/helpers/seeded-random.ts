// Deterministic pseudo-random bytes for tests: the same seed always gives the same data
// (AES-256-CTR keystream keyed by the seed), fast enough for tens of MiB.
import { createCipheriv, createHash } from 'node:crypto';

export function seededBytes(seed: number | string, length: number): Buffer {
  const key = createHash('sha256').update(`pullback-test-seed:${seed}`).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  return Buffer.concat([cipher.update(Buffer.alloc(length)), cipher.final()]);
}

/** xorshift32: a deterministic number generator in [0, 1) for plans of writes and chains. */
export function xorshift(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x100000000;
  };
}
