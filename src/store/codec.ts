// Chunk file framing. A chunk file is a 12-byte header followed by the body:
//   0  "PBCK"      magic
//   4  u8 1        framing version
//   5  u8 enc      0 = raw plaintext, 1 = one zstd frame
//   6  u16 0       reserved
//   8  u32 LE      plaintext length (<= 16 MiB)
// A chunk is stored raw when zstd does not make it smaller (random or already-compressed
// guest data), so reading it back costs no decompression. Integrity is not the framing's
// job: the digest (BLAKE3 of the plaintext) is the chunk's name and is re-checked on read.
import { createRequire } from 'node:module';
import type { Decompressor } from 'zstd-napi';

type Binding = typeof import('zstd-napi/binding.js');
type ZstdNapi = typeof import('zstd-napi');
const load = createRequire(import.meta.url);
// zstd's addon loads at first use, not with this module: a backup's main thread compresses
// no chunk (its workers do), and module loading is on the path to the start of every backup
// (~10 ms for this addon here). The low-level binding compresses into a caller's buffer;
// zstd-napi's Compressor allocates a new output buffer per call. It is a CommonJS module
// without an exports map: load it by require.
let binding: Binding | undefined;
let napi: ZstdNapi | undefined;
const zstdBinding = (): Binding => (binding ??= load('zstd-napi/binding') as Binding);
/** zstd-napi's high-level API (streams, Decompressor), loaded at first use. */
export const zstdNapi = (): ZstdNapi => (napi ??= load('zstd-napi') as ZstdNapi);

/** Compresses into a reused buffer; the returned view is valid until the next call. */
export interface ChunkCompressor {
  compress(src: Uint8Array): Uint8Array;
}

/** A zstd compressor at `level` for inputs up to `maxInput` bytes, allocating nothing per call. */
export function zstdCompressor(level: number, maxInput: number): ChunkCompressor {
  const zstd = zstdBinding();
  const cctx = new zstd.CCtx();
  const out = Buffer.allocUnsafe(zstd.compressBound(maxInput));
  return {
    compress(src: Uint8Array): Uint8Array {
      return out.subarray(0, cctx.compress(out, src, level));
    },
  };
}

export const HEADER_BYTES = 12;
const MAGIC = 0x4b434250; // "PBCK" little-endian
const VERSION = 1;
export const ENC_RAW = 0;
export const ENC_ZSTD = 1;

export interface EncodedChunk {
  header: Buffer;
  body: Uint8Array;
  encoding: number;
  /** header + body: the chunk file's size. */
  storedSize: number;
}

/** Sampling for incompressibility: SAMPLES windows of SAMPLE_BYTES spread over the chunk. */
const SAMPLES = 8;
const SAMPLE_BYTES = 4096;
/** A sample that zstd cannot shrink below this fraction counts as incompressible. */
const INCOMPRESSIBLE = 0.98;

/**
 * True when evenly spread samples (3% of a 1 MiB chunk) all fail to compress: then the whole
 * chunk almost surely would too (random, encrypted or already-compressed guest data), and
 * the full zstd pass, which costs about as much as hashing and writing together, is skipped.
 * Any compressible sample sends the chunk through zstd as usual. See docs/store.md.
 */
export function looksIncompressible(plain: Uint8Array, compressor: ChunkCompressor): boolean {
  if (plain.length < 4 * SAMPLES * SAMPLE_BYTES) return false;
  const stride = Math.floor((plain.length - SAMPLE_BYTES) / (SAMPLES - 1));
  for (let i = 0; i < SAMPLES; i++) {
    const off = i * stride;
    const out = compressor.compress(plain.subarray(off, off + SAMPLE_BYTES));
    if (out.length < SAMPLE_BYTES * INCOMPRESSIBLE) return false;
  }
  return true;
}

/** `body` may be a view into the compressor's buffer: write it out before the next call. */
export function encodeChunk(plain: Uint8Array, compressor: ChunkCompressor): EncodedChunk {
  if (looksIncompressible(plain, compressor)) {
    return { header: makeHeader(ENC_RAW, plain.length), body: plain, encoding: ENC_RAW, storedSize: HEADER_BYTES + plain.length };
  }
  const compressed = compressor.compress(plain);
  const raw = compressed.length >= plain.length;
  const body = raw ? plain : compressed;
  const header = makeHeader(raw ? ENC_RAW : ENC_ZSTD, plain.length);
  return { header, body, encoding: raw ? ENC_RAW : ENC_ZSTD, storedSize: HEADER_BYTES + body.length };
}

export function makeHeader(encoding: number, plainLength: number): Buffer {
  const h = Buffer.alloc(HEADER_BYTES);
  h.writeUInt32LE(MAGIC, 0);
  h.writeUInt8(VERSION, 4);
  h.writeUInt8(encoding, 5);
  h.writeUInt32LE(plainLength, 8);
  return h;
}

export interface ChunkHeader {
  encoding: number;
  plainLength: number;
}

/** Parses the header; returns a reason string instead of throwing so callers can name the file. */
export function parseHeader(file: Uint8Array): ChunkHeader | string {
  if (file.length < HEADER_BYTES) return `file is ${file.length} bytes, shorter than the ${HEADER_BYTES}-byte header`;
  const b = Buffer.from(file.buffer, file.byteOffset, HEADER_BYTES);
  if (b.readUInt32LE(0) !== MAGIC) return 'bad magic (not a pullback chunk file)';
  if (b.readUInt8(4) !== VERSION) return `unknown chunk framing version ${b.readUInt8(4)}`;
  const encoding = b.readUInt8(5);
  if (encoding !== ENC_RAW && encoding !== ENC_ZSTD) return `unknown encoding ${encoding}`;
  return { encoding, plainLength: b.readUInt32LE(8) };
}

/** File bytes -> plaintext, or a reason string when the framing or length is wrong. */
export function decodeChunk(file: Buffer, decompressor: Decompressor): Buffer | string {
  const h = parseHeader(file);
  if (typeof h === 'string') return h;
  const body = file.subarray(HEADER_BYTES);
  let plain: Buffer;
  if (h.encoding === ENC_RAW) {
    plain = body;
  } else {
    try {
      plain = decompressor.decompress(body);
    } catch (e) {
      return `zstd frame does not decompress (${e instanceof Error ? e.message : String(e)})`;
    }
  }
  if (plain.length !== h.plainLength) {
    return `plaintext is ${plain.length} bytes but the header says ${h.plainLength}`;
  }
  return plain;
}
