// Test helpers for the store: temporary repositories that are always removed, and chunk data
// of the three kinds that matter (random, compressible text, zeros).
import { spawn, type ChildProcess } from 'node:child_process';
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

/** Deterministic pseudo-random chunk: same (seed, index) -> same bytes, in any process. */
export function seededChunk(size: number, seed: number, index: number): Buffer {
  const buf = Buffer.allocUnsafe(size);
  let x = (seed * 0x9e3779b1) ^ (index * 0x85ebca6b) ^ 0x27d4eb2f;
  x >>>= 0;
  if (x === 0) x = 1;
  const words = size >>> 2;
  for (let i = 0; i < words; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    buf.writeUInt32LE(x, i * 4);
  }
  return buf;
}

export const CHILD = new URL('./child.ts', import.meta.url).pathname;

export interface Child {
  proc: ChildProcess;
  lines: string[];
  stderr: () => string;
  /** Resolves with the first stdout line matching `re` (rejects on exit or timeout). */
  waitFor(re: RegExp, timeoutMs?: number): Promise<string>;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const children = new Set<ChildProcess>();

/** Starts test/store/child.ts in a new node process (tsx loader). Killed by killChildren(). */
export function spawnChild(args: string[]): Child {
  const proc = spawn(process.execPath, ['--import', 'tsx', CHILD, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(proc);
  const lines: string[] = [];
  let err = '';
  const listeners = new Set<() => void>();
  let buf = '';
  proc.stdout?.on('data', (d: Buffer) => {
    buf += d.toString();
    const parts = buf.split('\n');
    buf = parts.pop() ?? '';
    lines.push(...parts);
    for (const l of listeners) l();
  });
  proc.stderr?.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.on('exit', (code, signal) => {
      children.delete(proc);
      for (const l of listeners) l();
      resolve({ code, signal });
    });
  });
  const waitFor = (re: RegExp, timeoutMs = 60_000): Promise<string> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const hit = lines.find((l) => re.test(l));
        if (hit !== undefined) {
          done();
          resolve(hit);
        } else if (proc.exitCode !== null || proc.signalCode !== null) {
          done();
          reject(new Error(`child exited before printing ${re}: stdout ${lines.join(' | ')} stderr ${err}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out waiting for ${re}; stdout: ${lines.slice(-5).join(' | ')} stderr: ${err}`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        listeners.delete(check);
      };
      listeners.add(check);
      check();
    });
  return { proc, lines, stderr: () => err, waitFor, exit };
}

export async function killChildren(): Promise<void> {
  const waits: Array<Promise<unknown>> = [];
  for (const c of children) {
    waits.push(new Promise((r) => c.once('exit', r)));
    c.kill('SIGKILL');
  }
  await Promise.all(waits);
}
