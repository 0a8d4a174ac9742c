// Messages between the restore pool (worker-pool.ts) and its workers (restore-worker.ts).
// Chunk plaintext never crosses threads: a worker decodes it into a slot of the shared slab
// (slab.ts) and the main thread writes the slot to the output. Output file descriptors are
// process-wide, so read-back checks (--verify) take the output's fd.
import type { SlabLayout } from './slab.js';

export interface RestoreWorkerData {
  /** The repository's chunks/ directory. */
  chunksDir: string;
  /** The repository's chunk size: the size of the reused buffers. */
  chunkSize: number;
  /** The slots that `load` jobs decode into. */
  slab: SlabLayout;
}

export type RestoreRequest =
  /**
   * Read chunk `hex`, decode it into slot `slot` of the slab and check its length and digest
   * there; the slot then holds the chunk's `length` plaintext bytes.
   */
  | { type: 'load'; job: number; hex: string; length: number; slot: number }
  /**
   * Read back the pieces (fd offset, length), concatenated, and compare their digest with
   * `hex`; offset -1 stands for zeros that are not stored (a hole).
   */
  | { type: 'check'; job: number; hex: string; fd: number; pieces: Array<[number, number]> }
  /** Read back a range and check that it is all zeros. */
  | { type: 'check-zero'; job: number; fd: number; offset: number; length: number };

/**
 * Failure kinds: chunk-missing / chunk-corrupt / chunk-length (the repository's side),
 * repo-io (reading a chunk file failed otherwise), output-io (writing or reading back the
 * output failed), mismatch (read-back data differs from what the backup holds).
 */
export type RestoreFailure = 'chunk-missing' | 'chunk-corrupt' | 'chunk-length' | 'repo-io' | 'output-io' | 'mismatch';

export type RestoreReply =
  | { type: 'done'; job: number; bytes: number }
  | { type: 'error'; job: number; kind: RestoreFailure; message: string; errno: string };
