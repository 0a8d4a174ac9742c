// Repository configuration: the parameters fixed at `init` that every reader and writer must
// agree on. Stored as config.json at the repository root; `formatVersion` guards the on-disk
// layout (chunk files, manifests, index schema) so an older pullback refuses a newer repository.
import { PullbackError } from '../errors.js';

/** Layout version written by this code. Bump on any incompatible change to files or schema. */
export const FORMAT_VERSION = 1;

export const MIN_CHUNK_SIZE = 64 * 1024;
export const MAX_CHUNK_SIZE = 16 * 1024 * 1024;
/** Chosen by measurement, see docs/chunk-size.md. */
export const DEFAULT_CHUNK_SIZE = 1024 * 1024;
/**
 * zstd level 1, as Proxmox Backup Server uses: measured (1 MiB chunks, zstd-napi, one core of
 * the 2-core machine) 1.8x faster than level 3 on OS data (a tar of /usr/lib and /usr/share/doc:
 * ratio 2.77 vs 3.05) and 1.2x on log text (3.62 vs 4.40). Compression is most of a full
 * backup's CPU; see docs/store.md.
 */
export const DEFAULT_COMPRESSION_LEVEL = 1;
/** zstd accepts negative "fast" levels down to -131072, but levels below -7 gain nothing here. */
export const MIN_COMPRESSION_LEVEL = -7;
export const MAX_COMPRESSION_LEVEL = 22;

export interface RepoConfig {
  formatVersion: number;
  /** Bytes per chunk: a power of two in [64 KiB, 16 MiB]. Chunk i covers [i*chunkSize, (i+1)*chunkSize). */
  chunkSize: number;
  /** Chunk address: BLAKE3-256 of the plaintext (cryptographic, so guests cannot forge collisions). */
  hash: 'blake3';
  compression: { algorithm: 'zstd'; level: number };
}

export function makeConfig(opts: { chunkSize?: number; compressionLevel?: number }): RepoConfig {
  const chunkSize = opts.chunkSize ?? DEFAULT_CHUNK_SIZE;
  const level = opts.compressionLevel ?? DEFAULT_COMPRESSION_LEVEL;
  validateChunkSize(chunkSize);
  validateLevel(level);
  return { formatVersion: FORMAT_VERSION, chunkSize, hash: 'blake3', compression: { algorithm: 'zstd', level } };
}

export function validateChunkSize(n: number): void {
  if (!Number.isInteger(n) || n < MIN_CHUNK_SIZE || n > MAX_CHUNK_SIZE || (n & (n - 1)) !== 0) {
    throw new PullbackError(
      'CONFIG_INVALID',
      `chunk size ${n} is invalid: it must be a power of two from 64 KiB to 16 MiB (e.g. 256K, 1M, 4M)`,
    );
  }
}

function validateLevel(level: number): void {
  if (!Number.isInteger(level) || level < MIN_COMPRESSION_LEVEL || level > MAX_COMPRESSION_LEVEL) {
    throw new PullbackError(
      'CONFIG_INVALID',
      `zstd level ${level} is invalid: use an integer from ${MIN_COMPRESSION_LEVEL} to ${MAX_COMPRESSION_LEVEL}`,
    );
  }
}

/** "1M", "256K", "256KiB", "4MiB", "1048576" -> bytes. */
export function parseSize(text: string): number {
  const m = /^\s*(\d+)\s*([kmg]?)(i?b)?\s*$/i.exec(text);
  if (m === null) {
    throw new PullbackError('CONFIG_INVALID', `cannot parse size "${text}": use e.g. 1M, 256K or 4194304`);
  }
  const unit = (m[2] ?? '').toLowerCase();
  const mult = unit === 'k' ? 1024 : unit === 'm' ? 1024 ** 2 : unit === 'g' ? 1024 ** 3 : 1;
  return Number(m[1]) * mult;
}

/** "zstd:3" -> 3. zstd is the only algorithm; incompressible chunks are stored raw anyway. */
export function parseCompression(text: string): number {
  const m = /^zstd(?::(-?\d+))?$/.exec(text.trim());
  if (m === null) {
    throw new PullbackError('CONFIG_INVALID', `cannot parse compression "${text}": use zstd:LEVEL, e.g. zstd:3`);
  }
  const level = m[1] === undefined ? DEFAULT_COMPRESSION_LEVEL : Number(m[1]);
  validateLevel(level);
  return level;
}

/** Validates a parsed config.json; `where` names the file for error messages. */
export function parseConfig(json: unknown, where: string): RepoConfig {
  const bad = (what: string): PullbackError =>
    new PullbackError('REPO_INVALID', `${where} is not a valid pullback repository config: ${what}`);
  if (typeof json !== 'object' || json === null) throw bad('not a JSON object');
  const o = json as Record<string, unknown>;
  const v = o['formatVersion'];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw bad('formatVersion missing');
  if (v > FORMAT_VERSION) {
    throw new PullbackError(
      'REPO_VERSION',
      `${where} has repository format version ${v}, but this pullback supports only up to ${FORMAT_VERSION}: upgrade pullback to use this repository`,
    );
  }
  const chunkSize = o['chunkSize'];
  if (typeof chunkSize !== 'number') throw bad('chunkSize missing');
  try {
    validateChunkSize(chunkSize);
  } catch (e) {
    throw bad((e as Error).message);
  }
  if (o['hash'] !== 'blake3') throw bad(`unsupported hash ${JSON.stringify(o['hash'])}`);
  const c = o['compression'] as Record<string, unknown> | undefined;
  if (typeof c !== 'object' || c === null || c['algorithm'] !== 'zstd' || typeof c['level'] !== 'number') {
    throw bad('compression must be {"algorithm":"zstd","level":N}');
  }
  try {
    validateLevel(c['level']);
  } catch (e) {
    throw bad((e as Error).message);
  }
  return { formatVersion: v, chunkSize, hash: 'blake3', compression: { algorithm: 'zstd', level: c['level'] } };
}

export function formatSize(n: number): string {
  if (n >= 1024 ** 3 && n % 1024 ** 3 === 0) return `${n / 1024 ** 3} GiB`;
  if (n >= 1024 ** 2 && n % 1024 ** 2 === 0) return `${n / 1024 ** 2} MiB`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024} KiB`;
  return `${n} B`;
}
