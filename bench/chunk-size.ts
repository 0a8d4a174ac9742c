// Chooses the default chunk size by measurement (docs/chunk-size.md). One simulated disk
// image in memory, a full backup, then incrementals of scattered guest writes (64 KiB..4 MiB,
// log-uniform, 4 KiB aligned, 60% of them into a hot 10% of the disk, half random and half
// text data), each ingested through the real store at 256 KiB, 1 MiB and 4 MiB chunks.
// A chunk counts as dirty when any write touched it (what a dirty bitmap at that granularity
// reports); the backup reads whole dirty chunks. Per incremental it reports bytes read,
// bytes stored and index rows; plus the index size at the end.
//
//   npx tsx bench/chunk-size.ts [--dir DIR] [--disk-mib 2048] [--rounds 6] [--writes 60] [--sizes 256K,1M,4M]
import { randomFillSync } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Repository, parseSize, type BackupRecord } from '../src/store/index.js';
import { xorshift } from '../test/helpers/seeded-random.js';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? dflt) : dflt;
}

const KiB = 1024;
const MiB = 1024 * KiB;
const diskSize = Number(arg('disk-mib', '2048')) * MiB;
const rounds = Number(arg('rounds', '6'));
const writesPerRound = Number(arg('writes', '60'));
const sizes = arg('sizes', '256K,1M,4M').split(',').map(parseSize);
const parent = arg('dir', tmpdir());

const WORDS = 'the of and to in is was for on that with as by at from kernel page inode block journal log entry user id'.split(' ');
const textPool = Buffer.alloc(16 * MiB);
{
  const r = xorshift(99);
  let o = 0;
  while (o < textPool.length - 32) {
    const w = WORDS[Math.floor(r() * WORDS.length)] ?? 'x';
    o += textPool.write(r() < 0.1 ? `${w} ${Math.floor(r() * 1e6)}\n` : `${w} `, o);
  }
}

interface Write {
  offset: number;
  length: number;
  random: boolean;
  seed: number;
}

/** The write sets: round 0 fills 60% of the disk (the "installed system"), later rounds are incrementals. */
function plan(): Write[][] {
  const r = xorshift(12345);
  const out: Write[][] = [];
  const align = (n: number): number => Math.floor(n / (4 * KiB)) * 4 * KiB;
  const base: Write[] = [];
  let filled = 0;
  while (filled < diskSize * 0.6) {
    const length = align(64 * KiB * Math.pow(2, r() * 7)); // 64 KiB .. 8 MiB extents
    const offset = align(r() * (diskSize - length));
    base.push({ offset, length, random: r() < 0.4, seed: Math.floor(r() * 1e9) });
    filled += length;
  }
  out.push(base);
  const hotStart = align(diskSize * 0.3);
  const hotLen = align(diskSize * 0.1);
  for (let k = 0; k < rounds; k++) {
    const ws: Write[] = [];
    for (let i = 0; i < writesPerRound; i++) {
      const length = align(64 * KiB * Math.pow(2, r() * 6)); // 64 KiB .. 4 MiB, log-uniform
      const offset = r() < 0.6 ? hotStart + align(r() * (hotLen - length)) : align(r() * (diskSize - length));
      ws.push({ offset, length, random: r() < 0.5, seed: Math.floor(r() * 1e9) });
    }
    out.push(ws);
  }
  return out;
}

function apply(disk: Buffer, w: Write): void {
  const dst = disk.subarray(w.offset, w.offset + w.length);
  if (w.random) {
    randomFillSync(dst);
  } else {
    const start = (w.seed % (textPool.length - w.length - 64)) & ~7;
    textPool.copy(dst, 0, start, start + w.length);
    dst.write(`write ${w.seed}`, 0); // unique, so it never deduplicates by accident
  }
}

interface Row {
  round: number;
  written: number;
  dirty: number;
  read: number;
  stored: number;
  rows: number;
  seconds: number;
}

async function measure(chunkSize: number, writes: Write[][]): Promise<{ rows: Row[]; dbBytes: number; files: number }> {
  const root = mkdtempSync(join(parent, 'pullback-chunksize-'));
  try {
    const dir = join(root, 'repo');
    const repo = await Repository.init(dir, { chunkSize });
    const disk = Buffer.alloc(diskSize);
    const count = diskSize / chunkSize;
    const out: Row[] = [];
    let parentId: string | null = null;
    for (const [round, ws] of writes.entries()) {
      const dirty = new Set<number>();
      let written = 0;
      for (const w of ws) {
        apply(disk, w);
        written += w.length;
        for (let c = Math.floor(w.offset / chunkSize); c <= Math.floor((w.offset + w.length - 1) / chunkSize); c++) dirty.add(c);
      }
      const t = performance.now();
      const writer = await repo.beginBackup({
        domain: 'sim',
        level: round === 0 ? 'full' : 'incremental',
        parentId,
        checkpoint: `r${round}`,
        disks: [{ name: 'vda', size: diskSize }],
      });
      // The full reads every allocated chunk (here: every chunk any write touched).
      for (const c of [...dirty].sort((a, b) => a - b)) {
        if (c >= count) continue;
        await writer.ingest('vda', c, disk.subarray(c * chunkSize, (c + 1) * chunkSize));
      }
      const rec: BackupRecord = await writer.complete();
      const st = rec.disks[0];
      out.push({
        round,
        written,
        dirty: dirty.size,
        read: st?.bytesRead ?? 0,
        stored: st?.bytesStored ?? 0,
        rows: st === undefined ? 0 : st.chunksNew + st.chunksDeduped + st.chunksZero,
        seconds: (performance.now() - t) / 1000,
      });
      parentId = rec.id;
    }
    await repo.close();
    const dbBytes = statSync(join(dir, 'index.db')).size + (statSync(join(dir, 'index.db-wal'), { throwIfNoEntry: false })?.size ?? 0);
    let files = 0;
    for (const r of out) files += r.rows;
    return { rows: out, dbBytes, files };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

const writes = plan();
const mb = (n: number): string => (n / 1e6).toFixed(1);
console.log(`disk ${diskSize / MiB} MiB; full = ${writes[0]?.length} extents (60% of the disk); ${rounds} incrementals of ${writesPerRound} writes (64 KiB..4 MiB)`);
const summary: string[] = [];
for (const cs of sizes) {
  const r = await measure(cs, writes);
  const inc = r.rows.slice(1);
  const avg = (f: (x: Row) => number): number => inc.reduce((n, x) => n + f(x), 0) / inc.length;
  const full = r.rows[0] as Row;
  console.log(`\nchunk ${cs / KiB} KiB: full read ${mb(full.read)} MB, stored ${mb(full.stored)} MB, ${full.rows} rows, ${full.seconds.toFixed(1)} s`);
  console.log('  round  written MB  dirty chunks  read MB  stored MB  rows   read/written');
  for (const x of inc) {
    console.log(
      `  ${String(x.round).padStart(5)}  ${mb(x.written).padStart(10)}  ${String(x.dirty).padStart(12)}  ${mb(x.read).padStart(7)}  ${mb(x.stored).padStart(9)}  ${String(x.rows).padStart(5)}   ${(x.read / x.written).toFixed(2)}`,
    );
  }
  console.log(`  index database at the end: ${mb(r.dbBytes)} MB`);
  summary.push(
    `| ${cs / KiB} KiB | ${mb(avg((x) => x.written))} | ${mb(avg((x) => x.read))} | ${(avg((x) => x.read) / avg((x) => x.written)).toFixed(2)} | ${mb(avg((x) => x.stored))} | ${avg((x) => x.rows).toFixed(0)} | ${full.rows} | ${mb(r.dbBytes)} |`,
  );
}
console.log('\n| chunk | written MB/inc | read MB/inc | read/written | stored MB/inc | rows/inc | rows (full) | index MB |');
console.log('|---|---|---|---|---|---|---|---|');
for (const s of summary) console.log(s);
