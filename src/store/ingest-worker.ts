// Worker thread of the ingest pool (worker-pool.ts). Jobs:
//   store   hash the plaintext in a shared slot; unless a chunk file of that digest already
//           exists (and not `force`), compress it and write the file atomically and durably
//           (atomic-file.ts); reply with the digest and whether it existed. Hashing comes
//           first so a chunk that is already stored costs no compression.
//   verify  read a chunk file, decode it and re-hash it (check --read-data)
// All I/O here is blocking, on purpose: a worker drains every queued message in one go, so
// multi-step async chains would stall behind queued hashing, and a worker blocked in fsync
// uses no CPU. The pool runs more workers than cores to overlap fsync with hashing.
import { existsSync, readFileSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { Decompressor } from 'zstd-napi';
import { writeFileAtomicSync } from './atomic-file.js';
import { decodeChunk, encodeChunk, zstdCompressor } from './codec.js';
import { digestOf, toHex } from './hash.js';
import { chunkPath } from './layout.js';
import type { WorkerData, WorkerReply, WorkerRequest } from './worker-protocol.js';

const data = workerData as WorkerData;
const port = parentPort;
if (port === null) throw new Error('ingest-worker must run as a worker thread');

const compressor = zstdCompressor(data.level, data.slotSize);
const decompressor = new Decompressor();
const knownDirs = new Set<string>();

function reply(r: WorkerReply): void {
  port?.postMessage(r);
}

function errorReply(job: number, e: unknown): WorkerReply {
  const err = e as NodeJS.ErrnoException;
  return { type: 'error', job, message: err.message ?? String(e), errno: err.code ?? '' };
}

function store(req: Extract<WorkerRequest, { type: 'store' }>): void {
  const plain = Buffer.from(data.slots, req.slot * data.slotSize, req.length);
  const hex = toHex(digestOf(plain));
  const path = chunkPath(data.chunksDir, hex);
  if (!req.force && existsSync(path)) {
    reply({ type: 'stored', job: req.job, hex, existed: true, storedSize: 0 });
    return;
  }
  const enc = encodeChunk(plain, compressor);
  writeFileAtomicSync(data.tmpDir, path, [enc.header, enc.body], knownDirs);
  reply({ type: 'stored', job: req.job, hex, existed: false, storedSize: enc.storedSize });
}

function verify(req: Extract<WorkerRequest, { type: 'verify' }>): void {
  let file: Buffer;
  try {
    file = readFileSync(chunkPath(data.chunksDir, req.hex));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      reply({ type: 'verified', job: req.job, problem: 'missing', reason: 'chunk file does not exist', plainLength: 0 });
      return;
    }
    throw e;
  }
  const plain = decodeChunk(file, decompressor);
  if (typeof plain === 'string') {
    reply({ type: 'verified', job: req.job, problem: 'corrupt', reason: plain, plainLength: 0 });
    return;
  }
  const actual = toHex(digestOf(plain));
  reply({
    type: 'verified',
    job: req.job,
    problem: actual === req.hex ? null : 'corrupt',
    reason: actual === req.hex ? '' : `content hashes to ${actual}`,
    plainLength: plain.length,
  });
}

port.on('message', (req: WorkerRequest) => {
  try {
    if (req.type === 'store') store(req);
    else verify(req);
  } catch (e) {
    reply(errorReply(req.job, e));
  }
});
