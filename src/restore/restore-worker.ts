// Worker thread of the restore pool (worker-pool.ts); jobs in worker-protocol.ts. Reading,
// decompressing and BLAKE3-hashing a chunk is the CPU-heavy part of a restore; doing it here,
// on as many threads as cores, and writing the plaintext straight to the output fd from the
// same thread keeps the main thread free and copies nothing between threads.
// I/O is blocking on purpose (as in the store's ingest worker): one job is one straight line
// of read -> decode -> hash -> pwrite, and a thread blocked on the disk uses no CPU.
import { readFileSync, readSync, writeSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { Decompressor } from 'zstd-napi';
import { decodeChunk } from '../store/codec.js';
import { digestOf, isAllZero, toHex } from '../store/hash.js';
import { chunkPath } from '../store/layout.js';
import type { RestoreFailure, RestoreReply, RestoreRequest, RestoreWorkerData } from './worker-protocol.js';

const data = workerData as RestoreWorkerData;
const port = parentPort;
if (port === null) throw new Error('restore-worker must run as a worker thread');

const decompressor = new Decompressor();
const ZERO_BUF = Buffer.alloc(1024 * 1024);
let readBuf = Buffer.alloc(0);

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

function loadChunk(hex: string, length: number): Buffer {
  const path = chunkPath(data.chunksDir, hex);
  let file: Buffer;
  try {
    file = readFileSync(path);
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') throw new JobError('chunk-missing', `chunk file ${path} does not exist`);
    throw new JobError('repo-io', `reading chunk file ${path} failed: ${(e as Error).message}`, errnoOf(e));
  }
  const plain = decodeChunk(file, decompressor);
  if (typeof plain === 'string') throw new JobError('chunk-corrupt', `chunk file ${path} is corrupt: ${plain}`);
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
