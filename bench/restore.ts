// Restore throughput: a synthetic multi-GiB chain (full + 3 incrementals) written through the
// real store, then restored by the built CLI (bin/pullback -> dist/, `npm run build` first)
// as raw and as qcow2, each timed with /usr/bin/time (wall seconds, peak RSS of the whole
// process including worker threads). Reference: `qemu-img convert` of the restored raw file
// (the same content) to raw and to qcow2. Every timed command ends with its output durable
// (restore fsyncs; the qemu-img runs are followed by `sync FILE` inside the timing). Into an
// NBD export (qemu-nbd on a new raw file), the reference is nbdcopy of the restored raw file.
// Before each timed command, `sync` (untimed) flushes what earlier steps wrote.
// Byte-identity: sha256 of the raw restore = sha256 of the qcow2 restore read back through
// qemu-img = sha256 of qemu-img's copies. Page cache is warm for all (the repository was just
// written; the raw file was just restored).
//
//   npm run build && npx tsx bench/restore.ts [--dir DIR] [--size-gib 4] [--chunk-size 1M] [--workers N] [--runs 2] [--keep]
//                                             [--pullback PATH/bin/pullback]
//
// Each timed command runs --runs times; the fastest run is reported. Every timed command
// writes a new file: its output is removed (untimed) before each run, as in
// bench/virtnbdbackup.sh, so no run pays for deleting the previous run's output. --pullback
// times another build (e.g. a `git archive` of an older commit, compiled) on the same chain.
//
// Workload per GiB of virtual disk at the full: 40% random (incompressible), 20% text
// (compresses ~3x), 20% zero markers, 20% never written (absent). Each incremental rewrites
// 5% of the chunks: new random or text data, zeros over data, data where nothing was.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Repository, parseSize, type BackupRecord } from '../src/store/index.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? dflt) : dflt;
}

const root = new URL('..', import.meta.url).pathname;
const bin = arg('pullback', join(root, 'bin/pullback'));
if (!existsSync(join(bin, '../../dist/cli/main.js'))) {
  console.error(`bench/restore.ts runs the built CLI (${bin}): run \`npm run build\` first`);
  process.exit(2);
}
const size = Number(arg('size-gib', '4')) * GiB;
const chunkSize = parseSize(arg('chunk-size', '1M'));
const workers = arg('workers', '');
const keep = process.argv.includes('--keep');
const runs = Math.max(1, Number(arg('runs', '2')));
const dir = mkdtempSync(join(arg('dir', tmpdir()), 'pullback-bench-restore-'));
const chunks = Math.ceil(size / chunkSize);

// --- chain ------------------------------------------------------------------------------
const randomBase = randomBytes(chunkSize);
const WORDS = 'the of and to in is was for on that with as by at from disk block sector backup restore'.split(' ');
const textBase = Buffer.alloc(chunkSize);
{
  let o = 0;
  let x = 7;
  while (o < chunkSize) {
    x = (x * 1103515245 + 12345) >>> 0;
    o += textBase.write(`${WORDS[x % WORDS.length] ?? 'x'}${x % 13 === 0 ? '\n' : ' '}`, o);
  }
}
const buf = Buffer.alloc(chunkSize);
/** Unique chunk content: a base buffer with a serial number stamped every 4 KiB. */
function content(kind: 'random' | 'text', serial: number): Buffer {
  (kind === 'random' ? randomBase : textBase).copy(buf);
  for (let o = 0; o < chunkSize; o += 4096) buf.writeUInt32LE(serial, o);
  return buf;
}

let serial = 1;
let rand = 12345;
const next = (): number => {
  rand = (rand * 1103515245 + 12345) >>> 0;
  return rand / 0x100000000;
};

async function makeChain(repo: Repository): Promise<BackupRecord[]> {
  const disks = [{ name: 'vda', size }];
  const out: BackupRecord[] = [];
  const full = await repo.beginBackup({ domain: 'bench', level: 'full', parentId: null, checkpoint: 'c0', disks });
  for (let i = 0; i < chunks; i++) {
    const r = next();
    const len = Math.min(chunkSize, size - i * chunkSize);
    if (r < 0.4) await full.ingest('vda', i, content('random', serial++).subarray(0, len));
    else if (r < 0.6) await full.ingest('vda', i, content('text', serial++).subarray(0, len));
    else if (r < 0.8) full.zero('vda', i);
  }
  out.push(await full.complete());
  for (let k = 1; k <= 3; k++) {
    const w = await repo.beginBackup({ domain: 'bench', level: 'incremental', parentId: (out[k - 1] as BackupRecord).id, checkpoint: `c${k}`, disks });
    for (let i = 0; i < chunks; i++) {
      if (next() >= 0.05) continue;
      const r = next();
      const len = Math.min(chunkSize, size - i * chunkSize);
      if (r < 0.5) await w.ingest('vda', i, content('random', serial++).subarray(0, len));
      else if (r < 0.8) await w.ingest('vda', i, content('text', serial++).subarray(0, len));
      else w.zero('vda', i);
    }
    out.push(await w.complete());
  }
  return out;
}

// --- measuring --------------------------------------------------------------------------
interface Timed {
  seconds: number;
  /** User + system CPU seconds (all threads): less sensitive than wall time to a busy machine. */
  cpu: number;
  maxRssMiB: number;
  stdout: string;
}

/**
 * Runs a command under /usr/bin/time (its report goes to stderr, marked with @@), after a
 * `sync` outside the timing so no run pays for the previous one's writeback.
 */
function timed(cmd: string, args: string[], output: string): Timed {
  rmSync(output, { force: true });
  execFileSync('sync');
  const r = spawnSync('/usr/bin/time', ['-f', '@@%e %M %U %S', cmd, ...args], { encoding: 'utf8', maxBuffer: 64 * MiB });
  const m = /@@([\d.]+) (\d+) ([\d.]+) ([\d.]+)/.exec(r.stderr);
  if (r.status !== 0 || m === null) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return { seconds: Number(m[1]), maxRssMiB: Number(m[2]) / 1024, cpu: Number(m[3]) + Number(m[4]), stdout: r.stdout };
}

const timedShell = (script: string, output: string): Timed => best(() => timed('sh', ['-c', script], output));

/** The fastest of `runs` runs: on a shared machine the slower ones measure the neighbours. */
function best(fn: () => Timed): Timed {
  let b: Timed | undefined;
  for (let i = 0; i < runs; i++) {
    const t = fn();
    if (b === undefined || t.seconds < b.seconds) b = t;
  }
  return b as Timed;
}

async function sha256(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path, { highWaterMark: 8 * MiB })) h.update(c as Buffer);
  return h.digest('hex');
}

const mb = (bytes: number, s: number): string => `${(bytes / 1e6 / s).toFixed(0)} MB/s`;

try {
  const repoDir = join(dir, 'repo');
  const t0 = performance.now();
  const repo = await Repository.init(repoDir, { chunkSize, onWarning: () => undefined });
  const chain = await makeChain(repo);
  const last = chain[chain.length - 1] as BackupRecord;
  const counts = repo.resolveChunkMap(last.id, 'vda').counts();
  await repo.close();
  const dataBytes = counts.data * chunkSize;
  const stored = Number(execFileSync('du', ['-sb', join(repoDir, 'chunks')], { encoding: 'utf8' }).split('\t')[0]);
  console.log(
    `chain: full + 3 incrementals of a ${(size / GiB).toFixed(1)} GiB disk, chunk ${chunkSize / 1024} KiB, written in ${((performance.now() - t0) / 1000).toFixed(1)} s; ` +
      `last backup resolves to ${counts.data} data / ${counts.zero} zero / ${counts.absent} absent chunks (${(dataBytes / GiB).toFixed(2)} GiB data); chunk files ${(stored / GiB).toFixed(2)} GiB`,
  );

  const restore = (backup: string, format: string, out: string): Timed =>
    best(() => timed(bin, ['restore', '--repo', repoDir, '--domain', 'bench', '--backup', backup, '--output', out, '--disk', 'vda', '--format', format, '--force', '--json', ...(workers === '' ? [] : ['--workers', workers])], out));

  const raw = join(dir, 'restored.raw');
  const qcow = join(dir, 'restored.qcow2');
  const rRaw = restore(last.id, 'raw', raw);
  const rQcow = restore(last.id, 'qcow2', qcow);
  const rFull = restore((chain[0] as BackupRecord).id, 'raw', join(dir, 'full-only.raw'));

  const ref = join(dir, 'ref.raw');
  const refQ = join(dir, 'ref.qcow2');
  const cRaw = timedShell(`qemu-img convert -f raw -O raw -S 4k ${raw} ${ref} && sync ${ref}`, ref);
  const cQcow = timedShell(`qemu-img convert -f raw -O qcow2 -S 4k ${raw} ${refQ} && sync ${refQ}`, refQ);

  // Into an NBD export: qemu-nbd serving a new sparse raw file, started and stopped inside the
  // timing for both (the same overhead); reference: nbdcopy of the restored raw file into the
  // same kind of export, --flush so both end with NBD_CMD_FLUSH (restore always flushes).
  const nbdFile = join(dir, 'nbd-export.raw');
  const sock = join(dir, 'nbd.sock');
  const pidFile = join(dir, 'nbd.pid');
  const intoExport = (cmd: string): Timed =>
    timedShell(
      `truncate -s ${size} ${nbdFile} && qemu-nbd -t -f raw --fork --pid-file ${pidFile} -k ${sock} ${nbdFile} && ` +
        `{ ${cmd}; rc=$?; p=$(cat ${pidFile}); kill $p; while kill -0 $p 2>/dev/null; do sleep 0.01; done; sync ${nbdFile}; exit $rc; }`,
      nbdFile,
    );
  const uri = `nbd+unix:///?socket=${sock}`;
  const wArgs = workers === '' ? '' : ` --workers ${workers}`;
  const rNbd = intoExport(`${bin} restore --repo ${repoDir} --domain bench --backup ${last.id} --disk vda --output '${uri}' --json${wArgs} >/dev/null`);
  const nbdSum = await sha256(nbdFile);
  const cNbd = intoExport(`nbdcopy --flush ${raw} '${uri}'`);

  const back = join(dir, 'qcow2-read-back.raw');
  execFileSync('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', qcow, back]);
  execFileSync('qemu-img', ['check', '-q', '-f', 'qcow2', qcow]);
  const sums = { raw: await sha256(raw), qcow2: await sha256(back), ref: await sha256(ref) };
  const identical = sums.raw === sums.qcow2 && sums.raw === sums.ref && sums.raw === nbdSum;
  const alloc = (p: string): string => `${((statSync(p).blocks * 512) / GiB).toFixed(2)} GiB allocated`;

  const line = (what: string, t: Timed, extra = ''): void =>
    console.log(`${what.padEnd(34)} ${t.seconds.toFixed(2).padStart(6)} s  ${mb(size, t.seconds).padStart(10)} of disk  ${mb(dataBytes, t.seconds).padStart(10)} of data  CPU ${t.cpu.toFixed(2).padStart(6)} s  peak RSS ${t.maxRssMiB.toFixed(0).padStart(4)} MiB${extra}`);
  console.log(`pullback: ${bin}`);
  console.log(`best of ${runs} runs; workers: ${workers === '' ? 'default (one per core)' : workers}; load average before: ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
  line('pullback restore (chain) -> raw', rRaw, `  ${alloc(raw)}`);
  line('pullback restore (chain) -> qcow2', rQcow, `  ${alloc(qcow)}`);
  line('pullback restore (full only) -> raw', rFull);
  line('pullback restore (chain) -> NBD', rNbd);
  line('qemu-img convert raw -> raw', cRaw, `  ${alloc(ref)}`);
  line('qemu-img convert raw -> qcow2', cQcow, `  ${alloc(refQ)}`);
  line('nbdcopy raw -> NBD', cNbd);
  console.log(
    `restore/reference time: raw ${(rRaw.seconds / cRaw.seconds).toFixed(2)}x, qcow2 ${(rQcow.seconds / cQcow.seconds).toFixed(2)}x, NBD ${(rNbd.seconds / cNbd.seconds).toFixed(2)}x`,
  );
  console.log(
    `sha256 raw restore ${sums.raw}; qcow2 restore read back ${sums.qcow2 === sums.raw ? 'identical' : sums.qcow2}; ` +
      `NBD export ${nbdSum === sums.raw ? 'identical' : nbdSum}; qemu-img copy ${sums.ref === sums.raw ? 'identical' : sums.ref}`,
  );
  if (!identical) process.exitCode = 1;
} finally {
  if (keep) console.log(`kept ${dir}`);
  else rmSync(dir, { recursive: true, force: true });
}
