// Test helpers for the store: temporary repositories that are always removed, and chunk data
// of the three kinds that matter (random, compressible text, zeros).
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Repository, type InitOptions } from '../../src/store/index.js';

export const KiB = 1024;
export const MiB = 1024 * 1024;

export function tempDir(prefix = 'pullback-store-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Collects warnings instead of printing them. */
export function quietInit(dir: string, opts: InitOptions = {}, warnings: string[] = []): Promise<Repository> {
  return Repository.init(dir, { onWarning: (m) => warnings.push(m), ...opts });
}

export function randomChunk(n: number): Buffer {
  return randomBytes(n);
}

const WORDS = 'the quick brown fox jumps over lazy dog backup chunk store disk image sector block '.split(' ');

/** Text that zstd compresses several-fold, unique per `seed`. */
export function textChunk(n: number, seed: number): Buffer {
  const parts: string[] = [`seed ${seed}\n`];
  let len = parts[0]?.length ?? 0;
  let x = seed * 2654435761 + 1;
  while (len < n) {
    x = (x * 1103515245 + 12345) >>> 0;
    const w = `${WORDS[x % WORDS.length] ?? 'x'}${x % 7 === 0 ? '\n' : ' '}`;
    parts.push(w);
    len += w.length;
  }
  return Buffer.from(parts.join('')).subarray(0, n);
}

/** Total bytes of all chunk files. */
export function chunkBytes(repoDir: string): { files: number; bytes: number } {
  let files = 0;
  let bytes = 0;
  const root = join(repoDir, 'chunks');
  for (const d of readdirSync(root)) {
    for (const f of readdirSync(join(root, d))) {
      files++;
      bytes += statSync(join(root, d, f)).size;
    }
  }
  return { files, bytes };
}

export function chunkFiles(repoDir: string): string[] {
  const root = join(repoDir, 'chunks');
  const out: string[] = [];
  for (const d of readdirSync(root)) for (const f of readdirSync(join(root, d))) out.push(join(root, d, f));
  return out;
}
