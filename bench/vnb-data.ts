// Deterministic test data for bench/virtnbdbackup.sh (no pullback code: the benchmark must not
// trust the thing it measures).
//
// Terms:
//   random data   AES-256-CTR keystream keyed by a seed: incompressible, never repeats.
//   text data     log-like lines ("<time> host-NN svc-NN[pid]: LEVEL words... key=N id=HEX")
//                 from a seeded PRNG over a 2048-word vocabulary. It compresses ~4x with zstd
//                 and ~2x with lz4 (measured by the script) and no two 4 KiB blocks are equal,
//                 so chunk-level deduplication gains nothing from it (all-identical bytes
//                 would make dedup trivial and the comparison meaningless).
//   change plan   a seeded list of non-overlapping guest writes "OFFSET LENGTH KIND" with KIND
//                 random | text | zero, 4 KiB-aligned offsets, lengths 64 KiB .. 4 MiB.
//
//   tsx bench/vnb-data.ts random SEED BYTES OUT        # write BYTES of random data to OUT
//   tsx bench/vnb-data.ts text SEED BYTES OUT          # write BYTES of text data to OUT
//   tsx bench/vnb-data.ts plan SEED DISK DATA ZERO DIR # plan DATA bytes of writes (+ZERO bytes of
//                                                      # zero writes) on a DISK-byte disk; one data
//                                                      # file per write in DIR; plan on stdout
import { createCipheriv, createHash } from 'node:crypto';
import { openSync, writeSync, closeSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

const KiB = 1024;
const MiB = 1024 * KiB;
const PIECE = 4 * MiB;

/** sfc32: small, fast, seedable 32-bit PRNG (PractRand-clean); plenty for synthetic data.
 *  State lives in an Int32Array: closure variables holding uint32 values would be boxed. */
function prng(seed: string): () => number {
  const h = createHash('sha256').update(`vnb-bench:${seed}`).digest();
  const st = new Int32Array([h.readInt32LE(0), h.readInt32LE(4), h.readInt32LE(8), h.readInt32LE(12)]);
  return () => {
    const a = st[0] as number, b = st[1] as number, c = st[2] as number, d = st[3] as number;
    const t = (((a + b) | 0) + d) | 0;
    st[3] = (d + 1) | 0;
    st[0] = b ^ (b >>> 9);
    st[1] = (c + (c << 3)) | 0;
    st[2] = (((c << 21) | (c >>> 11)) + t) | 0;
    return t >>> 0;
  };
}

/** Emits `total` bytes in PIECE-sized buffers. */
type Source = (emit: (buf: Buffer) => void, total: number) => void;

function randomSource(seed: string): Source {
  const key = createHash('sha256').update(`vnb-bench-random:${seed}`).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  const zeros = Buffer.alloc(PIECE);
  return (emit, total) => {
    for (let done = 0; done < total; done += PIECE) emit(cipher.update(zeros.subarray(0, Math.min(PIECE, total - done))));
  };
}

function textSource(seed: string): Source {
  const rnd = prng(seed);
  const vrnd = prng('vocabulary'); // one vocabulary for every seed, like one language
  const vocab: Uint8Array[] = [];
  for (let i = 0; i < 2048; i++) {
    const w = new Uint8Array(1 + 3 + (vrnd() % 8));
    w[0] = 32; // each word carries its leading space
    for (let j = 1; j < w.length; j++) w[j] = 97 + (vrnd() % 26);
    vocab.push(w);
  }
  const bytes = (s: string): Uint8Array => Buffer.from(s, 'latin1');
  const levels = [' INFO', ' INFO', ' INFO', ' DEBUG', ' WARN', ' ERROR'].map(bytes);
  const [date, host, svc, close, key, id] = ['2026-11-', ' host-', ' svc-', ']:', ' key=', ' id='].map(bytes) as [
    Uint8Array, Uint8Array, Uint8Array, Uint8Array, Uint8Array, Uint8Array];
  const hex = bytes('0123456789abcdef');
  let ms = rnd() % 1_000_000;
  return (emit, total) => {
    // Lines are written straight into `buf`; a line may run past PIECE into the slack and is
    // carried over to the start of the next piece.
    const buf = new Uint8Array(PIECE + 1024);
    let fill = 0;
    let done = 0;
    const put = (b: Uint8Array): void => {
      for (let i = 0; i < b.length; i++) buf[fill++] = b[i] as number;
    };
    const dec = (value: number, width: number): void => {
      let digits = 1;
      for (let v = value; v >= 10; v = Math.floor(v / 10)) digits++;
      const len = Math.max(digits, width);
      for (let i = len - 1, v = value; i >= 0; i--, v = Math.floor(v / 10)) buf[fill + i] = 48 + (v % 10);
      fill += len;
    };
    while (done < total) {
      while (fill < PIECE) {
        ms += rnd() % 40;
        put(date); // "2026-11-DD HH:MM:SS.mmm" from a millisecond counter
        dec(1 + (Math.floor(ms / 86_400_000) % 28), 2);
        buf[fill++] = 32;
        dec(Math.floor(ms / 3_600_000) % 24, 2);
        buf[fill++] = 58;
        dec(Math.floor(ms / 60_000) % 60, 2);
        buf[fill++] = 58;
        dec(Math.floor(ms / 1000) % 60, 2);
        buf[fill++] = 46;
        dec(ms % 1000, 3);
        const s = rnd() % 16;
        put(host);
        dec(rnd() % 32, 1);
        put(svc);
        dec(s, 1);
        buf[fill++] = 91;
        dec(1000 + s * 37, 1);
        put(close);
        put(levels[rnd() % levels.length] as Uint8Array);
        for (let i = 5 + (rnd() % 8); i > 0; i--) put(vocab[rnd() % vocab.length] as Uint8Array);
        put(key);
        dec(rnd() % 100000, 1);
        put(id);
        const r = rnd();
        for (let i = 0; i < 8; i++) buf[fill++] = hex[(r >>> (i * 4)) & 15] as number;
        buf[fill++] = 10;
      }
      const k = Math.min(PIECE, total - done);
      emit(Buffer.from(buf.slice(0, k)));
      done += k;
      buf.copyWithin(0, k, fill);
      fill -= k;
    }
  };
}

function writeFileFrom(path: string, source: Source, total: number): void {
  const fd = openSync(path, 'w');
  try {
    source((buf) => void writeSync(fd, buf), total);
  } finally {
    closeSync(fd);
  }
}

interface PlannedWrite {
  offset: number;
  length: number;
  kind: 'random' | 'text' | 'zero';
}

const SIZES = [64 * KiB, 128 * KiB, 256 * KiB, 512 * KiB, 1 * MiB, 2 * MiB, 4 * MiB];

/** Non-overlapping writes: `data` bytes of random/text (alternating), then `zero` bytes of zeroes. */
function plan(seed: string, disk: number, data: number, zero: number): PlannedWrite[] {
  const rnd = prng(`plan:${seed}`);
  const taken: PlannedWrite[] = [];
  const free = (o: number, l: number): boolean => taken.every((w) => o + l <= w.offset || w.offset + w.length <= o);
  const place = (budget: number, kind: (i: number) => PlannedWrite['kind']): void => {
    for (let left = budget, i = 0; left > 0; i++) {
      const length = Math.min(left, SIZES[rnd() % SIZES.length] as number);
      for (let tries = 0; ; tries++) {
        if (tries > 10_000) throw new Error(`cannot place a ${length}-byte write on a ${disk}-byte disk`);
        const offset = (rnd() % Math.floor((disk - length) / (4 * KiB))) * 4 * KiB;
        if (!free(offset, length)) continue;
        taken.push({ offset, length, kind: kind(i) });
        break;
      }
      left -= length;
    }
  };
  place(data, (i) => (i % 2 === 0 ? 'random' : 'text'));
  place(zero, () => 'zero');
  return taken;
}

function main(argv: string[]): void {
  const [cmd, seed, ...rest] = argv;
  const num = (s: string | undefined, what: string): number => {
    const n = Number(s);
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${what} must be a byte count, not '${s}'`);
    return n;
  };
  if (seed === undefined) throw new Error('usage: vnb-data.ts random|text|plan SEED ...');
  if (cmd === 'random' || cmd === 'text') {
    const total = num(rest[0], 'BYTES');
    const out = rest[1];
    if (out === undefined) throw new Error(`usage: vnb-data.ts ${cmd} SEED BYTES OUT`);
    writeFileFrom(out, cmd === 'random' ? randomSource(seed) : textSource(seed), total);
    return;
  }
  if (cmd === 'plan') {
    const [disk, data, zero, dir] = [num(rest[0], 'DISK'), num(rest[1], 'DATA'), num(rest[2], 'ZERO'), rest[3]];
    if (dir === undefined) throw new Error('usage: vnb-data.ts plan SEED DISK DATA ZERO DIR');
    mkdirSync(dir, { recursive: true });
    const writes = plan(seed, disk, data, zero);
    const lines: string[] = [];
    writes.forEach((w, i) => {
      const file = join(dir, `w${String(i).padStart(4, '0')}.bin`);
      if (w.kind !== 'zero') writeFileFrom(file, w.kind === 'random' ? randomSource(`${seed}:${i}`) : textSource(`${seed}:${i}`), w.length);
      lines.push(`${w.offset} ${w.length} ${w.kind} ${w.kind === 'zero' ? '-' : file}`);
    });
    process.stdout.write(`${lines.join('\n')}\n`);
    return;
  }
  throw new Error(`unknown command '${cmd}' (random | text | plan)`);
}

main(process.argv.slice(2));
