// Ingest throughput of the chunk store: 1 GiB random + 1 GiB compressible text + 2 GiB zeros,
// generated in memory, pushed through the real pipeline (Repository.beginBackup -> ingest ->
// complete) into a fresh repository. Prints MB/s and peak RSS beside the single-core
// hash+compress ceiling measured in the same run on the same chunk sequence.
//
//   npx tsc -p tsconfig.build.json && npx tsx bench/store-ingest.ts [--dir DIR] [--chunk-size 1M]
//       [--random MiB] [--text MiB] [--zero MiB] [--workers N] [--src] [--pipeline-only] [--keep]
//
// The store is loaded from dist/ (what bin/pullback runs), so its worker threads run plain
// JavaScript; --src loads src/ instead, whose workers carry the tsx loader (~30 MiB RSS each).
//
// Chunks are made unique cheaply: random chunks are a few random base buffers with a counter
// written into their first bytes; text chunks are windows of a generated text pool at varying
// offsets, also with a counter. The ceiling loop hashes and compresses exactly those chunks.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { blake3 } from '@napi-rs/blake-hash';
import { Compressor } from 'zstd-napi';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

type Store = typeof import('../src/store/index.js');
const fromSrc = process.argv.includes('--src');
const distEntry = new URL('../dist/store/index.js', import.meta.url);
if (!fromSrc && !existsSync(fileURLToPath(distEntry))) {
  console.error('bench: dist/ is not built: run `npx tsc -p tsconfig.build.json` first (or pass --src)');
  process.exit(2);
}
const HEADER_BYTES = 12; // codec.ts: the chunk file header
const { Repository, parseSize, DEFAULT_COMPRESSION_LEVEL } = (await import(fromSrc ? '../src/store/index.js' : distEntry.href)) as Store;

const MiB = 1024 * 1024;

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? dflt) : dflt;
}

const chunkSize = parseSize(arg('chunk-size', '1M'));
const randomMiB = Number(arg('random', '1024'));
const textMiB = Number(arg('text', '1024'));
const zeroMiB = Number(arg('zero', '2048'));
const workers = Number(arg('workers', '0')) || undefined;
const slots = Number(arg('slots', '0')) || undefined;
const parent = arg('dir', tmpdir());

type Kind = 'random' | 'text' | 'zero';
const plan: Array<{ kind: Kind; chunks: number }> = [
  { kind: 'random', chunks: Math.floor((randomMiB * MiB) / chunkSize) },
  { kind: 'text', chunks: Math.floor((textMiB * MiB) / chunkSize) },
  { kind: 'zero', chunks: Math.floor((zeroMiB * MiB) / chunkSize) },
];
const totalChunks = plan.reduce((n, p) => n + p.chunks, 0);
const totalBytes = totalChunks * chunkSize;

// --- generator -------------------------------------------------------------------------
const randomBases = Array.from({ length: 4 }, () => randomBytes(chunkSize));
const WORDS = 'the of and to in is was for on that with as by at from his her they this which disk block sector backup'.split(' ');
function makeText(n: number): Buffer {
  const out = Buffer.alloc(n);
  let o = 0;
  let x = 12345;
  while (o < n) {
    x = (x * 1103515245 + 12345) >>> 0;
    const w = WORDS[x % WORDS.length] ?? 'x';
    o += out.write(x % 11 === 0 ? `${w}.\n` : `${w} `, o);
    if (x % 97 === 0) o += out.write(`${x} `, o);
  }
  return out;
}
const textPool = makeText(4 * MiB + chunkSize);
const textBuf = Buffer.alloc(chunkSize);
const zeroBuf = Buffer.alloc(chunkSize);

/** The n-th chunk of the workload; valid until the next call. */
function* chunks(): Generator<{ kind: Kind; index: number; data: Buffer }> {
  let index = 0;
  for (const p of plan) {
    for (let i = 0; i < p.chunks; i++, index++) {
      let data: Buffer;
      if (p.kind === 'random') {
        data = randomBases[i % randomBases.length] as Buffer;
        data.writeUInt32LE(index, 0);
        data.writeUInt32LE(i, 4);
      } else if (p.kind === 'text') {
        const off = ((i * 7919) % 4096) * 1024;
        textPool.copy(textBuf, 0, off, off + chunkSize);
        textBuf.write(`chunk ${index} `, 0);
        data = textBuf;
      } else {
        data = zeroBuf;
      }
      yield { kind: p.kind, index, data };
    }
  }
}

let cpuSeconds = 0;

// Repositories are removed when the script ends, not between its measurements: on a journal-less
// ext4 (this machine's /), creating files within minutes of deleting many costs more CPU (the
// inode allocator skips recently deleted inodes: `recently_deleted` in perf), so deleting the
// pipeline's 2048 chunk files before the I/O floor would slow the floor down. The same holds
// across runs: a run started within ~5 minutes of the last one's cleanup starts slower.
const toRemove: string[] = [];
function removeAtExit(dir: string): void {
  toRemove.push(dir);
}
process.on('exit', () => {
  if (process.argv.includes('--keep')) console.log(`kept ${toRemove.join(' ')}`);
  else for (const d of toRemove) rmSync(d, { recursive: true, force: true });
});

// --- pipeline --------------------------------------------------------------------------
async function runPipeline(): Promise<{ seconds: number; peakRss: number; perKind: Record<Kind, number>; stored: number }> {
  const dir = mkdtempSync(join(parent, 'pullback-bench-'));
  try {
    const repo = await Repository.init(join(dir, 'repo'), {
      chunkSize,
      ...(workers !== undefined ? { workers } : {}),
      ...(slots !== undefined ? { slots } : {}),
    });
    const perKind: Record<Kind, number> = { random: 0, text: 0, zero: 0 };
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const w = await repo.beginBackup({ domain: 'bench', level: 'full', parentId: null, checkpoint: 'b', disks: [{ name: 'vda', size: totalBytes }] });
    let kind: Kind | undefined;
    let kt = t0;
    for (const c of chunks()) {
      if (c.kind !== kind) {
        const now = performance.now();
        if (kind !== undefined) perKind[kind] = (now - kt) / 1000;
        kind = c.kind;
        kt = now;
      }
      await w.ingest('vda', c.index, c.data);
    }
    const rec = await w.complete();
    const t1 = performance.now();
    const cpu = process.cpuUsage(cpu0);
    cpuSeconds = (cpu.user + cpu.system) / 1e6;
    if (kind !== undefined) perKind[kind] = (t1 - kt) / 1000;
    // The kernel's high-water mark of the process: nothing ran before the pipeline that
    // used more, and sampling rss() would cost the main thread ~1 ms per call.
    const peakRss = process.resourceUsage().maxRSS * 1024;
    await repo.close();
    const d = rec.disks[0];
    return { seconds: (t1 - t0) / 1000, peakRss, perKind, stored: d?.bytesStored ?? 0 };
  } finally {
    removeAtExit(dir);
  }
}

// --- single-core ceiling ---------------------------------------------------------------
/** Also returns the size each non-zero chunk's file would have (for the I/O floor below). */
function runCeiling(): { all: number; perKind: Record<Kind, number>; zeroSkip: number; fileSizes: number[] } {
  const c = new Compressor();
  c.setParameters({ compressionLevel: DEFAULT_COMPRESSION_LEVEL });
  const perKind: Record<Kind, number> = { random: 0, text: 0, zero: 0 };
  const fileSizes: number[] = [];
  let sink = 0;
  for (const ch of chunks()) {
    const t = performance.now();
    sink ^= blake3(ch.data)[0] ?? 0;
    const z = c.compress(ch.data).length;
    sink ^= z;
    perKind[ch.kind] += (performance.now() - t) / 1000;
    if (ch.kind !== 'zero') fileSizes.push(HEADER_BYTES + Math.min(z, ch.data.length));
  }
  // The same single core, but skipping zero chunks with a memcmp as the pipeline does.
  let zeroCheck = 0;
  for (const ch of chunks()) {
    if (ch.kind !== 'zero') continue;
    const t = performance.now();
    sink ^= ch.data.equals(zeroBuf) ? 1 : 0;
    zeroCheck += (performance.now() - t) / 1000;
  }
  if (sink === 0.5) console.log('');
  const all = perKind.random + perKind.text + perKind.zero;
  return { all, perKind, zeroSkip: perKind.random + perKind.text + zeroCheck, fileSizes };
}

// --- the I/O floor ------------------------------------------------------------------------
// What the kernel alone charges for the chunk files the format prescribes (temporary
// file, write, fsync, rename, directory fsync; writeFileAtomicDeferred, the function the
// workers use), for files of exactly the sizes the pipeline stores, on the same filesystem:
// no hashing, no compression, no worker threads. Its CPU plus the zero-skipping ceiling's is
// work any pipeline of this format has to do, so (sum / 2 cores) bounds the pipeline's time
// from below even with perfect parallelism.
async function runIoFloor(fileSizes: readonly number[]): Promise<{ seconds: number; cpu: number }> {
  const { writeFileAtomicDeferred } = (await import(
    fromSrc ? '../src/store/atomic-file.js' : new URL('../dist/store/atomic-file.js', import.meta.url).href
  )) as typeof import('../src/store/atomic-file.js');
  const dir = mkdtempSync(join(parent, 'pullback-bench-io-'));
  try {
    mkdirSync(join(dir, 'tmp'));
    const content = randomBytes(chunkSize + HEADER_BYTES);
    const known = new Set<string>();
    const inFlight: Array<Promise<void>> = [];
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    for (let i = 0; i < fileSizes.length; i++) {
      const name = createHash('sha256').update(String(i)).digest('hex');
      const path = join(dir, 'chunks', name.slice(0, 2), name);
      inFlight.push(writeFileAtomicDeferred(join(dir, 'tmp'), path, [content.subarray(0, fileSizes[i])], known));
      // As many files in flight as the pool has slots by default (32 MiB of 1 MiB chunks).
      if (inFlight.length >= 32) await inFlight.shift();
    }
    await Promise.all(inFlight);
    const cpu = process.cpuUsage(cpu0);
    return { seconds: (performance.now() - t0) / 1000, cpu: (cpu.user + cpu.system) / 1e6 };
  } finally {
    removeAtExit(dir);
  }
}

// --- what two threads can do ------------------------------------------------------------
// The same hash+compress loop over the random and text chunks, split across two threads at
// once: how far this machine's cores scale in parallel, independent of the pipeline's design.
const PARALLEL_SRC = `
const { workerData, parentPort } = require('node:worker_threads');
const { createRequire } = require('node:module');
const req = createRequire(workerData.root + '/package.json');
const { blake3 } = req('@napi-rs/blake-hash');
const { Compressor } = req('zstd-napi');
const c = new Compressor();
const { bases, text, chunkSize, random, texts, part, parts, level } = workerData;
c.setParameters({ compressionLevel: level });
const buf = Buffer.alloc(chunkSize);
const t0 = performance.now();
let sink = 0;
for (let i = part; i < random; i += parts) {
  const d = Buffer.from(bases[i % bases.length]);
  d.writeUInt32LE(i, 0);
  sink ^= blake3(d)[0] ^ c.compress(d).length;
}
for (let i = part; i < texts; i += parts) {
  const off = ((i * 7919) % 4096) * 1024;
  Buffer.from(text.buffer, text.byteOffset + off, chunkSize).copy(buf);
  sink ^= blake3(buf)[0] ^ c.compress(buf).length;
}
parentPort.postMessage({ seconds: (performance.now() - t0) / 1000, sink });
`;

async function runParallel(threads: number): Promise<number> {
  const { Worker } = await import('node:worker_threads');
  const root = fileURLToPath(new URL('..', import.meta.url));
  const random = plan[0]?.chunks ?? 0;
  const texts = plan[1]?.chunks ?? 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: threads }, (_, part) => {
      const w = new Worker(PARALLEL_SRC, {
        eval: true,
        workerData: { root, bases: randomBases, text: textPool, chunkSize, random, texts, part, parts: threads, level: DEFAULT_COMPRESSION_LEVEL },
      });
      return new Promise((resolve, reject) => {
        w.once('message', resolve);
        w.once('error', reject);
      }).finally(() => void w.terminate());
    }),
  );
  return (performance.now() - t0) / 1000;
}

function mbps(bytes: number, s: number): string {
  return `${(bytes / 1e6 / s).toFixed(0)} MB/s`;
}

const loadBefore = loadavg().map((x) => x.toFixed(2)).join(' ');
const genStart = performance.now();
for (const c of chunks()) void c;
const genSeconds = (performance.now() - genStart) / 1000;

const p = await runPipeline();
if (process.argv.includes('--pipeline-only')) {
  // For profiling (perf record) the pipeline alone.
  console.log(`pipeline: ${p.seconds.toFixed(2)} s, CPU ${cpuSeconds.toFixed(2)} s, peak RSS ${(p.peakRss / MiB).toFixed(0)} MiB`);
  process.exit(0);
}
const ceil = runCeiling();
const io = await runIoFloor(ceil.fileSizes);
const par1 = await runParallel(1);
const par2 = await runParallel(2);
const bytesOf = (k: Kind): number => (plan.find((x) => x.kind === k)?.chunks ?? 0) * chunkSize;

console.log(`load average before/after: ${loadBefore} / ${loadavg().map((x) => x.toFixed(2)).join(' ')} (2 cores: other processes skew every number)`);
console.log(`store loaded from ${fromSrc ? 'src/ (tsx)' : 'dist/'}`);
console.log(`workload: ${randomMiB} MiB random + ${textMiB} MiB text + ${zeroMiB} MiB zeros, chunk ${chunkSize / 1024} KiB, repo under ${parent}`);
console.log(`generator alone: ${genSeconds.toFixed(2)} s for all chunks`);
console.log(`pipeline: ${p.seconds.toFixed(2)} s = ${mbps(totalBytes, p.seconds)} overall; stored ${(p.stored / 1e6).toFixed(0)} MB`);
for (const k of ['random', 'text', 'zero'] as const) console.log(`  ${k.padEnd(6)} ${mbps(bytesOf(k), p.perKind[k])}`);
console.log(`pipeline CPU: ${cpuSeconds.toFixed(2)} s (all threads) = ${((100 * cpuSeconds) / p.seconds).toFixed(0)}% of one core`);
console.log(`peak RSS of the process up to the end of the pipeline (maxRSS): ${(p.peakRss / MiB).toFixed(0)} MiB = ${(p.peakRss / 1e6).toFixed(0)} MB`);
console.log(`single-core hash+compress ceiling (blake3 + zstd level ${DEFAULT_COMPRESSION_LEVEL}, every chunk): ${ceil.all.toFixed(2)} s = ${mbps(totalBytes, ceil.all)}`);
for (const k of ['random', 'text', 'zero'] as const) console.log(`  ${k.padEnd(6)} ${mbps(bytesOf(k), ceil.perKind[k])}`);
console.log(`single-core ceiling with zero chunks skipped by memcmp: ${ceil.zeroSkip.toFixed(2)} s = ${mbps(totalBytes, ceil.zeroSkip)}`);
console.log(`pipeline / ceiling: ${(ceil.all / p.seconds).toFixed(2)}x; pipeline / zero-skipping ceiling: ${(ceil.zeroSkip / p.seconds).toFixed(2)}x`);
const nonZero = bytesOf('random') + bytesOf('text');
console.log(
  `I/O floor, the same ${ceil.fileSizes.length} chunk files (${(ceil.fileSizes.reduce((a, b) => a + b, 0) / 1e6).toFixed(0)} MB) written atomically ` +
    `and durably with nothing computed: ${io.seconds.toFixed(2)} s, CPU ${io.cpu.toFixed(2)} s`,
);
const floor = (ceil.zeroSkip + io.cpu) / 2;
console.log(
  `lower bound of any pipeline of this format on 2 cores: (zero-skipping ceiling ${ceil.zeroSkip.toFixed(2)} + I/O CPU ${io.cpu.toFixed(2)}) / 2 = ` +
    `${floor.toFixed(2)} s = ${(ceil.all / floor).toFixed(2)}x the ceiling at best (target 1.6x: ${(ceil.all / 1.6).toFixed(2)} s)`,
);
console.log(
  `hardware check, hash+compress of the random and text chunks in worker threads: 1 thread ${mbps(nonZero, par1)}, ` +
    `2 threads at once ${mbps(nonZero, par2)} (${(par1 / par2).toFixed(2)}x)`,
);
