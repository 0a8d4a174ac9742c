// Worker thread of the ingest pool (worker-pool.ts). Jobs:
//   store   hash the plaintext in a shared slot; unless a chunk file of that digest already
//           exists (and not `force`), compress it and write the file atomically and durably
//           (atomic-file.ts); reply with the digest and whether it existed. Hashing comes
//           first so a chunk that is already stored costs no compression.
//   verify  read a chunk file, decode it and re-hash it (check --read-data)
// A chunk's bytes are written synchronously (into the page cache); its fsync, rename and
// directory fsync run on libuv's thread pool while the worker hashes the next chunk, so the
// disk's latency overlaps the CPU work. Jobs are taken one per event-loop turn: a message
// port delivers every queued message in one go, and running them all back to back would hold
// the finished fsyncs' continuations until the whole batch was hashed.
import { existsSync, readFileSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { Decompressor } from 'zstd-napi';
import { writeFileAtomicDeferred } from './atomic-file.js';
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
  writeFileAtomicDeferred(data.tmpDir, path, [enc.header, enc.body], knownDirs).then(
    () => reply({ type: 'stored', job: req.job, hex, existed: false, storedSize: enc.storedSize }),
    (e: unknown) => reply(errorReply(req.job, e)),
  );
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

const queue: WorkerRequest[] = [];
let scheduled = false;

function runOne(): void {
  scheduled = false;
  const req = queue.shift();
  if (req === undefined) return;
  try {
    if (req.type === 'store') store(req);
    else verify(req);
  } catch (e) {
    reply(errorReply(req.job, e));
  }
  if (queue.length > 0) {
    scheduled = true;
    setImmediate(runOne);
  }
}

port.on('message', (req: WorkerRequest) => {
  queue.push(req);
  if (!scheduled) {
    scheduled = true;
    setImmediate(runOne);
  }
});
