// Deterministic test data for bench/virtnbdbackup.sh (no pullback code: the benchmark must not
// trust the thing it measures).
//
// Terms:
//   random data   AES-256-CTR keystream keyed by a seed: incompressible, never repeats.
//   text data     log-like lines ("<time> host-N svc-N[pid]: LEVEL <message>"), each message
//                 one of 512 templates (format strings of 4..12 words from a 2048-word
//                 vocabulary) with number / hex id / word fields filled in by a seeded PRNG.
//                 It compresses ~4.5x with zstd -3 and ~1.9x with lz4 -1 (the script measures
//                 it) and no two 4 KiB blocks are equal, so chunk-level deduplication gains
//                 nothing from it (all-identical bytes would make dedup trivial).
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

const VOCAB_WORDS = 2048;

/** The word list, flat: word i is vocab[offsets[i] .. offsets[i + 1]), with its leading space. */
function vocabulary(): { bytes: Uint8Array; offsets: Uint32Array } {
  const rnd = prng('vocabulary'); // one vocabulary for every seed, like one language
  const offsets = new Uint32Array(VOCAB_WORDS + 1);
  const bytes = new Uint8Array(VOCAB_WORDS * 12);
  let n = 0;
  for (let i = 0; i < VOCAB_WORDS; i++) {
    offsets[i] = n;
    bytes[n++] = 32;
    for (let j = 3 + (rnd() % 8); j > 0; j--) bytes[n++] = 97 + (rnd() % 26);
  }
  offsets[VOCAB_WORDS] = n;
  return { bytes, offsets };
}

const TEMPLATES = 512;
const FIELD_NUMBER = -1, FIELD_HEX = -2, FIELD_WORD = -3;

/** Message templates, like the format strings behind real logs: template t is
 *  program[offsets[t] .. offsets[t + 1]), each entry a vocabulary word (>= 0) or a field. */
function templates(): { program: Int32Array; offsets: Uint32Array } {
  const rnd = prng('templates');
  const program: number[] = [];
  const offsets = new Uint32Array(TEMPLATES + 1);
  for (let t = 0; t < TEMPLATES; t++) {
    offsets[t] = program.length;
    let fields = 0;
    for (let w = 4 + (rnd() % 9); w > 0; w--) {
      program.push(rnd() % VOCAB_WORDS);
      if (rnd() % 3 === 0) {
        program.push([FIELD_NUMBER, FIELD_HEX, FIELD_WORD][rnd() % 3] as number);
        fields++;
      }
    }
    if (fields === 0) program.push(FIELD_NUMBER);
  }
  offsets[TEMPLATES] = program.length;
  return { program: Int32Array.from(program), offsets };
}

function textSource(seed: string): Source {
  const h = createHash('sha256').update(`vnb-bench:${seed}`).digest();
  // sfc32 state (see prng) and the millisecond clock, kept across pieces.
  const st = new Int32Array([h.readInt32LE(0), h.readInt32LE(4), h.readInt32LE(8), h.readInt32LE(12)]);
  const clock = new Int32Array([h.readUInt32LE(16) % 1_000_000]); // ms; +20/line on average: no overflow below ~100 GiB
  const { bytes: vocab, offsets } = vocabulary();
  const { program, offsets: tOffsets } = templates();
  const fixed = Buffer.from('2026-11-DD HH:MM:SS.mmm host-', 'latin1');
  const levels = [' INFO', ' INFO', ' INFO', ' DEBUG', ' WARN', ' ERROR'].map((x) => Buffer.from(x, 'latin1'));
  const hex = Buffer.from('0123456789abcdef', 'latin1');
  const digits = (buf: Uint8Array, at: number, value: number, width: number): number => {
    let len = 1;
    for (let v = value; v >= 10; v = (v / 10) | 0) len++;
    if (len < width) len = width;
    for (let i = len - 1, v = value; i >= 0; i--, v = (v / 10) | 0) buf[at + i] = 48 + (v % 10);
    return at + len;
  };
  /** Appends lines to buf from `fill` until it passes `limit`; returns the new fill. All state
   *  is in locals while it runs (closure-held uint32s would be boxed: 10x slower). */
  const lines = (buf: Uint8Array, fill: number, limit: number): number => {
    let a = st[0] as number, b = st[1] as number, c = st[2] as number, d = st[3] as number;
    let ms = clock[0] as number;
    let n = fill;
    const next = (): number => {
      const t = (((a + b) | 0) + d) | 0;
      d = (d + 1) | 0;
      a = b ^ (b >>> 9);
      b = (c + (c << 3)) | 0;
      c = (((c << 21) | (c >>> 11)) + t) | 0;
      return t & 0x7fffffff; // int31: stays a small integer (uint32 would be a double)
    };
    while (n < limit) {
      ms = (ms + (next() % 40)) | 0;
      buf.set(fixed, n); // "2026-11-DD HH:MM:SS.mmm host-", then the digits over the letters
      digits(buf, n + 8, 1 + (((ms / 86_400_000) | 0) % 28), 2);
      digits(buf, n + 11, ((ms / 3_600_000) | 0) % 24, 2);
      digits(buf, n + 14, ((ms / 60_000) | 0) % 60, 2);
      digits(buf, n + 17, ((ms / 1000) | 0) % 60, 2);
      digits(buf, n + 20, ms % 1000, 3);
      n = digits(buf, n + fixed.length, next() % 32, 1);
      const svc = next() % 16;
      buf[n++] = 32; buf[n++] = 115; buf[n++] = 118; buf[n++] = 99; buf[n++] = 45; // " svc-"
      n = digits(buf, n, svc, 1);
      buf[n++] = 91; // [
      n = digits(buf, n, 1000 + svc * 37, 1);
      buf[n++] = 93; buf[n++] = 58; // ]:
      const level = levels[next() % levels.length] as Buffer;
      buf.set(level, n);
      n += level.length;
      const t = next() % TEMPLATES;
      for (let p = tOffsets[t] as number, pe = tOffsets[t + 1] as number; p < pe; p++) {
        const op = program[p] as number;
        if (op === FIELD_NUMBER) {
          buf[n++] = 32;
          n = digits(buf, n, next() % 1_000_000, 1);
        } else if (op === FIELD_HEX) {
          buf[n++] = 32;
          const r = next();
          for (let i = 0; i < 8; i++) buf[n++] = hex[(r >>> (i * 4)) & 15] as number;
        } else {
          const i = op === FIELD_WORD ? next() % VOCAB_WORDS : op;
          for (let k = offsets[i] as number, e = offsets[i + 1] as number; k < e; k++) buf[n++] = vocab[k] as number;
        }
      }
      buf[n++] = 10;
    }
    st[0] = a; st[1] = b; st[2] = c; st[3] = d;
    clock[0] = ms;
    return n;
  };
  return (emit, total) => {
    // A line may run past PIECE into the slack; it is carried over to the next piece.
    const buf = new Uint8Array(PIECE + 1024);
    let fill = 0;
    for (let done = 0; done < total; ) {
      fill = lines(buf, fill, PIECE);
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
