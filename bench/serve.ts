// Benchmark: `pullback serve` read throughput with nbdcopy as the client, against nbdcopy
// reading a qemu-nbd export of the same bytes (issue 5 target: serve >= 60% of qemu-nbd).
//
// Fixture (built once in --work, reused when present): a 2 GiB disk backed up into a fresh
// repository (1 MiB chunks, zstd 3) as one full backup: 1 GiB random data (stored raw),
// 512 MiB compressible text (unique per chunk, zstd-compressed, so every read decompresses),
// 512 MiB zeros (half zero markers, half never written); and the same bytes as a sparse raw
// image for qemu-nbd. Both servers run as separate processes: `bin/pullback serve`
// (needs dist/: bench/serve.sh builds it) and `qemu-nbd -r -f raw`. After one untimed warm-up
// each, RUNS alternating timed runs of `nbdcopy URI null:`; medians; ratio = qemu-nbd seconds
// / serve seconds. Then `nbdcopy URI -` through sha256 must equal the raw image's sha256.
//
//   npx tsx bench/serve.ts [--work DIR] [--runs 7] [--keep] [--cache 64M]
// Prints one JSON line; progress goes to stderr.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Repository } from '../src/store/index.js';

const MiB = 1 << 20;
const DISK = 2048 * MiB;
const DOMAIN = 'bench-serve';

function log(m: string): void {
  process.stderr.write(`bench/serve: ${m}\n`);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** Chunk i of the fixture: random, text (unique per chunk), or null (zeros). */
function chunkOf(i: number, base: Buffer): { kind: 'data' | 'zero-marker' | 'absent'; data: Buffer | null } {
  if (i < 1024) return { kind: 'data', data: randomBytes(MiB) };
  if (i < 1536) {
    const b = Buffer.from(base);
    for (let p = 0; p < MiB; p += 4096) b.write(` chunk ${i} block ${p} ${randomBytes(6).toString('hex')} `, p, 'latin1');
    return { kind: 'data', data: b };
  }
  return { kind: i % 2 === 0 ? 'zero-marker' : 'absent', data: null };
}

async function buildFixture(work: string): Promise<void> {
  const repoDir = join(work, 'repo');
  const image = join(work, 'disk.raw');
  if (existsSync(join(work, 'fixture.done'))) {
    log(`reusing fixture in ${work}`);
    return;
  }
  await rm(repoDir, { recursive: true, force: true });
  log('building fixture: 2 GiB disk (1 GiB random, 512 MiB text, 512 MiB zeros)');
  const t0 = performance.now();
  const line = 'pullback serve benchmark: the quick brown fox jumps over the lazy dog 0123456789\n';
  const base = Buffer.from(line.repeat(Math.ceil(MiB / line.length))).subarray(0, MiB);
  const repo = await Repository.init(repoDir, { onWarning: log });
  const fh = await open(image, 'w');
  try {
    await fh.truncate(DISK);
    const w = await repo.beginBackup({ domain: DOMAIN, level: 'full', parentId: null, checkpoint: 'bench', disks: [{ name: 'vda', size: DISK }] });
    for (let i = 0; i < DISK / MiB; i++) {
      const c = chunkOf(i, base);
      if (c.data !== null) {
        await fh.write(c.data, 0, MiB, i * MiB);
        await w.ingest('vda', i, c.data);
      } else if (c.kind === 'zero-marker') {
        w.zero('vda', i);
      }
    }
    await w.complete();
  } finally {
    await fh.close();
    await repo.close();
  }
  await (await open(join(work, 'fixture.done'), 'w')).close();
  log(`fixture built in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

/** CPU seconds (user + system, all threads) a process has used so far, from /proc/PID/stat. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15)
  return ticks / 100; // USER_HZ is 100 on Linux
}

/** One timed `nbdcopy URI null:`: wall seconds, and CPU seconds of the server process meanwhile. */
function nbdcopyNull(uri: string, serverPid: number): { wall: number; cpu: number } {
  const c0 = cpuSeconds(serverPid);
  const t0 = performance.now();
  const r = spawnSync('nbdcopy', [uri, 'null:'], { stdio: ['ignore', 'ignore', 'inherit'] });
  if (r.status !== 0) throw new Error(`nbdcopy ${uri} null: exited with ${r.status}`);
  return { wall: (performance.now() - t0) / 1000, cpu: cpuSeconds(serverPid) - c0 };
}

async function sha256Of(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const b of createReadStream(path, { highWaterMark: 4 * MiB })) h.update(b as Buffer);
  return h.digest('hex');
}

function nbdcopySha256(uri: string): string {
  const r = spawnSync('bash', ['-c', `nbdcopy '${uri}' - | sha256sum`], { encoding: 'utf8', maxBuffer: 1 << 20 });
  if (r.status !== 0) throw new Error(`nbdcopy ${uri} - | sha256sum failed: ${r.stderr}`);
  return r.stdout.split(' ')[0] ?? '';
}

function peakRssMB(pid: number | undefined): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? NaN : Math.round(Number(m[1]) / 1024);
  } catch {
    return NaN;
  }
}

async function startServe(work: string, cache: string): Promise<{ child: ChildProcess; uri: string }> {
  const sock = join(work, 'serve.sock');
  const child = spawn(
    'bin/pullback',
    ['serve', '--repo', join(work, 'repo'), '--domain', DOMAIN, '--disk', 'vda', '--socket', sock, '--cache', cache, '--json'],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const uri = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (b: Buffer) => {
      out += b.toString();
      const nl = out.indexOf('\n');
      if (nl >= 0) resolve((JSON.parse(out.slice(0, nl)) as { serve: { uri: string } }).serve.uri);
    });
    child.once('exit', (code) => reject(new Error(`pullback serve exited with ${code}`)));
  });
  return { child, uri };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      work: { type: 'string' },
      runs: { type: 'string', default: '7' },
      keep: { type: 'boolean', default: false },
      cache: { type: 'string', default: '64M' },
    },
  });
  const runs = Number(values.runs);
  const work = values.work ?? (await mkdtemp(join(process.env['TMPDIR'] ?? '/var/tmp', 'pullback-serve-bench-')));
  await mkdir(work, { recursive: true });
  let serve: ChildProcess | undefined;
  const qemuPid = join(work, 'qemu-nbd.pid');
  try {
    await buildFixture(work);
    const qsock = join(work, 'qemu-nbd.sock');
    spawnSync('qemu-nbd', ['-r', '-t', '-e', '0', '-f', 'raw', '-k', qsock, '--fork', '--pid-file', qemuPid, join(work, 'disk.raw')], { stdio: 'inherit' });
    const qemuUri = `nbd+unix:///?socket=${qsock}`;
    const qpid = Number(readFileSync(qemuPid, 'utf8').trim());
    const s = await startServe(work, values.cache);
    serve = s.child;
    const spid = s.child.pid as number;
    log(`serve at ${s.uri}, qemu-nbd at ${qemuUri}; ${runs} runs each after a warm-up`);
    nbdcopyNull(s.uri, spid);
    nbdcopyNull(qemuUri, qpid);
    const ours: number[] = [];
    const theirs: number[] = [];
    const oursCpu: number[] = [];
    const theirsCpu: number[] = [];
    for (let r = 0; r < runs; r++) {
      const a = nbdcopyNull(s.uri, spid);
      const b = nbdcopyNull(qemuUri, qpid);
      ours.push(a.wall);
      theirs.push(b.wall);
      oursCpu.push(a.cpu);
      theirsCpu.push(b.cpu);
      log(`run ${r + 1}: serve ${a.wall.toFixed(3)} s (server CPU ${a.cpu.toFixed(2)} s), qemu-nbd ${b.wall.toFixed(3)} s (server CPU ${b.cpu.toFixed(2)} s)`);
    }
    const want = await sha256Of(join(work, 'disk.raw'));
    const got = nbdcopySha256(s.uri);
    const sOurs = median(ours);
    const sTheirs = median(theirs);
    const result = {
      bytes: DISK,
      dataBytes: 1536 * MiB,
      runs,
      serve: {
        seconds: +sOurs.toFixed(3),
        MBps: Math.round(DISK / 1e6 / sOurs),
        all: ours.map((x) => +x.toFixed(3)),
        serverCpuSeconds: +median(oursCpu).toFixed(2),
        peakRssMB: peakRssMB(serve.pid),
      },
      qemuNbd: {
        seconds: +sTheirs.toFixed(3),
        MBps: Math.round(DISK / 1e6 / sTheirs),
        all: theirs.map((x) => +x.toFixed(3)),
        serverCpuSeconds: +median(theirsCpu).toFixed(2),
      },
      ratio: +(sTheirs / sOurs).toFixed(3),
      loadAverage: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
      sha256: { expected: want, served: got, ok: want === got },
      machine: `${spawnSync('nproc', { encoding: 'utf8' }).stdout.trim()} cores`,
    };
    process.stdout.write(`${JSON.stringify(result)}\n`);
    if (!result.sha256.ok) process.exitCode = 1;
  } finally {
    serve?.kill('SIGTERM');
    if (existsSync(qemuPid)) {
      try {
        process.kill(Number(readFileSync(qemuPid, 'utf8').trim()), 'SIGTERM');
      } catch {
        // already gone
      }
    }
    if (values.keep !== true && values.work === undefined) await rm(work, { recursive: true, force: true });
  }
}

await main();
