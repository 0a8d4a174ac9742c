// Benchmark: read a whole NBD export as fast as possible with our client and print one JSON
// line {"bytes","seconds","MBps","connections","inflight",...}. `--sha256` adds the digest of
// the export. `--runs N` repeats and reports the median; `--compare` also times
// `nbdcopy URI null:` N times in this same script (alternating with ours) and reports its
// median and our ratio (nbdcopy seconds / our seconds). Like nbdcopy, ranges that
// base:allocation reports as zero are not read (--no-extents reads everything).
// Peak RSS is this process's VmHWM from /proc/self/status (covers every run).
//
//   npx tsx bench/nbd-read.ts 'nbd+unix:///?socket=/tmp/x.sock' [--connections 2]
//       [--inflight 8] [--request-size 256K] [--sha256] [--runs 5] [--warmup 1] [--compare] [--no-extents]
//
// seconds = connect (handshake of every connection) + reading every byte + NBD_CMD_DISC.
import { spawnSync } from 'node:child_process';
import { createHash, type Hash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { BASE_ALLOCATION, NbdPool, parseNbdUri, readSequential, type NbdTarget } from '../src/nbd/index.js';

interface RunResult {
  bytes: number;
  seconds: number;
  sha256?: string;
}

function parseSize(s: string): number {
  const m = /^(\d+)([kKmMgG]?)$/.exec(s);
  if (m === null) throw new Error(`bad size '${s}' (e.g. 256K, 2M)`);
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[(m[2] ?? '').toLowerCase()] ?? 1;
  return Number(m[1]) * mult;
}

function peakRssMB(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m === null ? NaN : Math.round(Number(m[1]) / 1024);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

interface Config {
  connections: number;
  inflight: number;
  requestSize: number;
  sha256: boolean;
  extents: boolean;
}


const ZEROS = Buffer.alloc(1024 * 1024);

async function readAll(target: NbdTarget, cfg: Config): Promise<RunResult> {
  const t0 = performance.now();
  const pool = await NbdPool.open(target, {
    connections: cfg.connections,
    maxInflight: cfg.inflight,
    requestSize: cfg.requestSize,
    ...(cfg.extents ? { metaContexts: [BASE_ALLOCATION] } : {}),
  });
  const hash: Hash | null = cfg.sha256 ? createHash('sha256') : null;
  // In offset order, up to connections × inflight reads in flight (src/nbd/read-sequential.ts).
  await readSequential(
    pool,
    (_offset, length, data) => {
      if (hash === null) return;
      if (data !== null) hash.update(data);
      else for (let n = length; n > 0; n -= ZEROS.length) hash.update(ZEROS.subarray(0, Math.min(n, ZEROS.length)));
    },
    { skipZeroes: cfg.extents },
  );
  await pool.close();
  const seconds = (performance.now() - t0) / 1000;
  return hash === null ? { bytes: pool.size, seconds } : { bytes: pool.size, seconds, sha256: hash.digest('hex') };
}

function timeNbdcopy(uri: string): number {
  const t0 = performance.now();
  const r = spawnSync('nbdcopy', [uri, 'null:'], { stdio: ['ignore', 'ignore', 'inherit'] });
  if (r.status !== 0) throw new Error(`nbdcopy failed with status ${r.status}`);
  return (performance.now() - t0) / 1000;
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      connections: { type: 'string', default: '2' },
      inflight: { type: 'string', default: '8' },
      'request-size': { type: 'string', default: '256K' },
      sha256: { type: 'boolean', default: false },
      runs: { type: 'string', default: '1' },
      compare: { type: 'boolean', default: false },
      'no-extents': { type: 'boolean', default: false },
      warmup: { type: 'string', default: '1' },
    },
  });
  const uri = positionals[0];
  if (uri === undefined) throw new Error('usage: nbd-read.ts URI [--connections N] [--inflight N] [--request-size 2M] [--sha256] [--runs N] [--compare]');
  const target = parseNbdUri(uri);
  const cfg: Config = {
    connections: Number(values.connections),
    inflight: Number(values.inflight),
    requestSize: parseSize(values['request-size']),
    sha256: values.sha256,
    extents: !values['no-extents'],
  };
  const runs = Number(values.runs);

  // Untimed warm-up of both (page cache, JIT, buffer pages), then the timed runs.
  for (let i = 0; i < Number(values.warmup); i++) {
    if (values.compare) timeNbdcopy(uri);
    await readAll(target, cfg);
  }
  const ours: RunResult[] = [];
  const theirs: number[] = [];
  for (let i = 0; i < runs; i++) {
    // Alternate so page-cache and CPU-frequency effects hit both the same way.
    if (values.compare) theirs.push(timeNbdcopy(uri));
    ours.push(await readAll(target, cfg));
  }
  const first = ours[0] as RunResult;
  const seconds = median(ours.map((r) => r.seconds));
  const out: Record<string, unknown> = {
    bytes: first.bytes,
    seconds: Number(seconds.toFixed(4)),
    MBps: Number((first.bytes / seconds / 1e6).toFixed(1)),
    connections: cfg.connections,
    inflight: cfg.inflight,
    requestSize: cfg.requestSize,
    extents: cfg.extents,
    runs,
    peakRssMB: peakRssMB(),
  };
  if (first.sha256 !== undefined) {
    out['sha256'] = first.sha256;
    if (ours.some((r) => r.sha256 !== first.sha256)) out['sha256Mismatch'] = true;
  }
  if (runs > 1) out['allSeconds'] = ours.map((r) => Number(r.seconds.toFixed(4)));
  if (values.compare) {
    const t = median(theirs);
    out['nbdcopy'] = {
      seconds: Number(t.toFixed(4)),
      MBps: Number((first.bytes / t / 1e6).toFixed(1)),
      allSeconds: theirs.map((s) => Number(s.toFixed(4))),
    };
    out['ratio'] = Number((t / seconds).toFixed(3));
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`nbd-read: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
