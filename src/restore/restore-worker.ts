// Worker thread of the restore pool (worker-pool.ts); jobs in worker-protocol.ts. Reading,
// decompressing and BLAKE3-hashing a chunk is the CPU-heavy part of a restore; doing it here,
// on as many threads as cores, keeps the main thread free. A chunk is decoded straight into
// its slot of the shared slab (slab.ts) and checked there; the main thread writes the slot out,
// so plaintext is never copied between threads.
// I/O is blocking on purpose (as in the store's ingest worker): one job is one straight line
// of read -> decode -> hash, and a thread blocked on the disk uses no CPU.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { createRequire } from 'node:module';
import { parentPort, workerData } from 'node:worker_threads';
import { ENC_RAW, HEADER_BYTES, parseHeader } from '../store/codec.js';
import { MAX_CHUNK_SIZE } from '../store/config.js';
import { digestOf, isAllZero, toHex } from '../store/hash.js';
import { chunkPath } from '../store/layout.js';
import { slotView } from './slab.js';
import type { RestoreFailure, RestoreReply, RestoreRequest, RestoreWorkerData } from './worker-protocol.js';

const data = workerData as RestoreWorkerData;
const port = parentPort;
if (port === null) throw new Error('restore-worker must run as a worker thread');

// zstd-napi's low-level binding decompresses into a caller's buffer (its high-level
// Decompressor allocates a new one per call). CommonJS with a computed require: no ESM names.
const zstd = createRequire(import.meta.url)('zstd-napi/binding.js') as typeof import('zstd-napi/binding.js');
const dctx = new zstd.DCtx();
/** check-zero reads back in pieces of this size. */
const CHECK_PIECE = 1024 * 1024;
const header = Buffer.alloc(HEADER_BYTES);
let readBuf = Buffer.alloc(0);
/** Compressed chunk bodies (reused: fresh buffers per chunk cost page faults, see docs/restore.md). */
let bodyBuf = Buffer.allocUnsafe(0);
/** Plaintext that cannot be a slot's (a corrupt header claiming more than a chunk). */
let spareBuf = Buffer.allocUnsafe(0);

class JobError extends Error {
  constructor(
    readonly kind: RestoreFailure,
    message: string,
    readonly errno = '',
  ) {
    super(message);
  }
}

function errnoOf(e: unknown): string {
  return (e as NodeJS.ErrnoException).code ?? '';
}

function readFully(fd: number, buf: Buffer, start: number, length: number, offset: number): void {
  let done = 0;
  while (done < length) {
    let n: number;
    try {
      n = readSync(fd, buf, start + done, length - done, offset + done);
    } catch (e) {
      throw new JobError('output-io', `reading back ${length} bytes at offset ${offset} failed: ${(e as Error).message}`, errnoOf(e));
    }
    if (n === 0) throw new JobError('output-io', `reading back at offset ${offset + done}: unexpected end of file`);
    done += n;
  }
}

function scratch(n: number): Buffer {
  if (readBuf.length < n) readBuf = Buffer.allocUnsafe(n);
  return readBuf.subarray(0, n);
}

/** Reads up to `length` bytes at `position` of a chunk file; returns the bytes read. */
function readChunkBytes(fd: number, path: string, buf: Buffer, length: number, position: number): number {
  let done = 0;
  try {
    while (done < length) {
      const n = readSync(fd, buf, done, length - done, position + done);
      if (n === 0) break;
      done += n;
    }
  } catch (e) {
    throw new JobError('repo-io', `reading chunk file ${path} failed: ${(e as Error).message}`, errnoOf(e));
  }
  return done;
}

function spare(n: number): Buffer {
  if (spareBuf.length < n) spareBuf = Buffer.allocUnsafe(n);
  return spareBuf.subarray(0, n);
}

/** Where `n` plaintext bytes go: the slot when they fit (always, for a sound chunk). */
function destination(slot: number, n: number): Buffer {
  return n <= data.slab.chunkSize ? slotView(data.slab, slot, n) : spare(n);
}

/**
 * Decodes chunk `hex` (framing in src/store/codec.ts) into slot `slot` and checks it there:
 * its digest and its length. A stored-raw chunk's body is read straight into the slot; a
 * zstd body is read into a reused buffer and decompressed into the slot. Returns the length.
 */
function loadChunk(hex: string, length: number, slot: number): number {
  const path = chunkPath(data.chunksDir, hex);
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') throw new JobError('chunk-missing', `chunk file ${path} does not exist`);
    throw new JobError('repo-io', `opening chunk file ${path} failed: ${(e as Error).message}`, errnoOf(e));
  }
  let plain: Buffer;
  try {
    let size: number;
    try {
      size = fstatSync(fd).size;
    } catch (e) {
      throw new JobError('repo-io', `reading chunk file ${path} failed: ${(e as Error).message}`, errnoOf(e));
    }
    const h = parseHeader(header.subarray(0, readChunkBytes(fd, path, header, HEADER_BYTES, 0)));
    if (typeof h === 'string') throw new JobError('chunk-corrupt', `chunk file ${path} is corrupt: ${h}`);
    if (h.plainLength > MAX_CHUNK_SIZE) {
      throw new JobError('chunk-corrupt', `chunk file ${path} is corrupt: its header claims ${h.plainLength} bytes`);
    }
    const bodySize = Math.max(0, size - HEADER_BYTES);
    if (h.encoding === ENC_RAW) {
      const dest = destination(slot, bodySize);
      plain = dest.subarray(0, readChunkBytes(fd, path, dest, bodySize, HEADER_BYTES));
    } else {
      if (bodyBuf.length < bodySize) bodyBuf = Buffer.allocUnsafe(bodySize);
      const body = bodyBuf.subarray(0, readChunkBytes(fd, path, bodyBuf, bodySize, HEADER_BYTES));
      const dest = destination(slot, h.plainLength);
      let n: number;
      try {
        n = dctx.decompress(dest, body);
      } catch (e) {
        throw new JobError('chunk-corrupt', `chunk file ${path} is corrupt: zstd frame does not decompress (${(e as Error).message})`);
      }
      plain = dest.subarray(0, n);
    }
    if (plain.length !== h.plainLength) {
      throw new JobError('chunk-corrupt', `chunk file ${path} is corrupt: plaintext is ${plain.length} bytes but the header says ${h.plainLength}`);
    }
  } finally {
    closeSync(fd);
  }
  const actual = toHex(digestOf(plain));
  if (actual !== hex) throw new JobError('chunk-corrupt', `chunk file ${path} is corrupt: its content hashes to ${actual}`);
  if (plain.length !== length) {
    throw new JobError('chunk-length', `chunk ${hex} holds ${plain.length} bytes where the backup needs ${length}`);
  }
  return length;
}

function run(req: RestoreRequest): number {
  switch (req.type) {
    case 'load':
      return loadChunk(req.hex, req.length, req.slot);
    case 'check': {
      const total = req.pieces.reduce((n, [, len]) => n + len, 0);
      const buf = scratch(total);
      let at = 0;
      for (const [off, len] of req.pieces) {
        if (off < 0) buf.fill(0, at, at + len);
        else readFully(req.fd, buf, at, len, off);
        at += len;
      }
      const actual = toHex(digestOf(buf));
      if (actual !== req.hex) throw new JobError('mismatch', `read back data hashes to ${actual}, the backup holds ${req.hex}`);
      return total;
    }
    case 'check-zero': {
      for (let o = 0; o < req.length; o += CHECK_PIECE) {
        const n = Math.min(CHECK_PIECE, req.length - o);
        const buf = scratch(n);
        readFully(req.fd, buf, 0, n, req.offset + o);
        if (!isAllZero(buf)) {
          const firstBad = buf.findIndex((x) => x !== 0);
          throw new JobError('mismatch', `byte ${req.offset + o + firstBad} reads non-zero where the backup holds zeros`);
        }
      }
      return req.length;
    }
  }
}

port.on('message', (req: RestoreRequest) => {
  let reply: RestoreReply;
  try {
    reply = { type: 'done', job: req.job, bytes: run(req) };
  } catch (e) {
    const kind: RestoreFailure = e instanceof JobError ? e.kind : 'output-io';
    const errno = e instanceof JobError ? e.errno : errnoOf(e);
    reply = { type: 'error', job: req.job, kind, message: (e as Error).message ?? String(e), errno };
  }
  port.postMessage(reply);
});
