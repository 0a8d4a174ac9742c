// Worker thread of the restore pool (worker-pool.ts); jobs in worker-protocol.ts. Reading,
// decompressing and BLAKE3-hashing a chunk is the CPU-heavy part of a restore; doing it here,
// on as many threads as cores, and writing the plaintext straight to the output fd from the
// same thread keeps the main thread free and copies nothing between threads.
// I/O is blocking on purpose (as in the store's ingest worker): one job is one straight line
// of read -> decode -> hash -> pwrite, and a thread blocked on the disk uses no CPU.
import { closeSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { parentPort, workerData } from 'node:worker_threads';
import { ENC_RAW, HEADER_BYTES, parseHeader } from '../store/codec.js';
import { MAX_CHUNK_SIZE } from '../store/config.js';
import { digestOf, isAllZero, toHex } from '../store/hash.js';
import { chunkPath } from '../store/layout.js';
import type { RestoreFailure, RestoreReply, RestoreRequest, RestoreWorkerData } from './worker-protocol.js';

const data = workerData as RestoreWorkerData;
const port = parentPort;
if (port === null) throw new Error('restore-worker must run as a worker thread');

// zstd-napi's low-level binding decompresses into a caller's buffer (its high-level
// Decompressor allocates a new one per call). CommonJS with a computed require: no ESM names.
const zstd = createRequire(import.meta.url)('zstd-napi/binding.js') as typeof import('zstd-napi/binding.js');
const dctx = new zstd.DCtx();
const ZERO_BUF = Buffer.alloc(1024 * 1024);
let readBuf = Buffer.alloc(0);
let fileBuf = Buffer.allocUnsafe(data.chunkSize + HEADER_BYTES);
let plainBuf = Buffer.allocUnsafe(data.chunkSize);

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

/** pwrite until done: a write may be short (signals, ENOSPC on the next call reports why). */
function writeFully(fd: number, buf: Uint8Array, offset: number): void {
  let done = 0;
  while (done < buf.length) {
    let n: number;
    try {
      n = writeSync(fd, buf, done, buf.length - done, offset + done);
    } catch (e) {
      throw new JobError('output-io', `writing ${buf.length} bytes at offset ${offset} failed: ${(e as Error).message}`, errnoOf(e));
    }
    if (n === 0) throw new JobError('output-io', `writing at offset ${offset + done} made no progress`);
    done += n;
  }
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

/** Reads a whole chunk file into the reused file buffer; returns the bytes read. */
function readChunkFile(path: string): Buffer {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') throw new JobError('chunk-missing', `chunk file ${path} does not exist`);
    throw new JobError('repo-io', `opening chunk file ${path} failed: ${(e as Error).message}`, errnoOf(e));
  }
  try {
    const size = fstatSync(fd).size;
    if (fileBuf.length < size) fileBuf = Buffer.allocUnsafe(size);
    let done = 0;
    while (done < size) {
      const n = readSync(fd, fileBuf, done, size - done, done);
      if (n === 0) break;
      done += n;
    }
    return fileBuf.subarray(0, done);
  } catch (e) {
    throw new JobError('repo-io', `reading chunk file ${path} failed: ${(e as Error).message}`, errnoOf(e));
  } finally {
    closeSync(fd);
  }
}

/**
 * A chunk's verified plaintext (framing in src/store/codec.ts), decoded into reused buffers:
 * fresh 1 MiB buffers per chunk cost more CPU in page faults than decompression itself
 * (measured, docs/restore.md). Valid until the next call.
 */
function loadChunk(hex: string, length: number): Buffer {
  const path = chunkPath(data.chunksDir, hex);
  const file = readChunkFile(path);
  const h = parseHeader(file);
  if (typeof h === 'string') throw new JobError('chunk-corrupt', `chunk file ${path} is corrupt: ${h}`);
  if (h.plainLength > MAX_CHUNK_SIZE) {
    throw new JobError('chunk-corrupt', `chunk file ${path} is corrupt: its header claims ${h.plainLength} bytes`);
  }
  const body = file.subarray(HEADER_BYTES);
  let plain: Buffer;
  if (h.encoding === ENC_RAW) {
    plain = body;
  } else {
    if (plainBuf.length < h.plainLength) plainBuf = Buffer.allocUnsafe(h.plainLength);
    let n: number;
    try {
      n = dctx.decompress(plainBuf.subarray(0, h.plainLength), body);
    } catch (e) {
      throw new JobError('chunk-corrupt', `chunk file ${path} is corrupt: zstd frame does not decompress (${(e as Error).message})`);
    }
    plain = plainBuf.subarray(0, n);
  }
  if (plain.length !== h.plainLength) {
    throw new JobError('chunk-corrupt', `chunk file ${path} is corrupt: plaintext is ${plain.length} bytes but the header says ${h.plainLength}`);
  }
  const actual = toHex(digestOf(plain));
  if (actual !== hex) throw new JobError('chunk-corrupt', `chunk file ${path} is corrupt: its content hashes to ${actual}`);
  if (plain.length !== length) {
    throw new JobError('chunk-length', `chunk ${hex} holds ${plain.length} bytes where the backup needs ${length}`);
  }
  return plain;
}

function run(req: RestoreRequest): number {
  switch (req.type) {
    case 'write': {
      writeFully(req.fd, loadChunk(req.hex, req.length), req.offset);
      return req.length;
    }
    case 'zero': {
      for (let o = 0; o < req.length; o += ZERO_BUF.length) {
        writeFully(req.fd, ZERO_BUF.subarray(0, Math.min(ZERO_BUF.length, req.length - o)), req.offset + o);
      }
      return req.length;
    }
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
      for (let o = 0; o < req.length; o += ZERO_BUF.length) {
        const n = Math.min(ZERO_BUF.length, req.length - o);
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
