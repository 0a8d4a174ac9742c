// Messages between the restore pool (worker-pool.ts) and its workers (restore-worker.ts).
// Output file descriptors are process-wide, so the main thread opens the output and workers
// write to it by fd with positional writes; plaintext never crosses threads.
export interface RestoreWorkerData {
  /** The repository's chunks/ directory. */
  chunksDir: string;
  /** The repository's chunk size: the size of the reused decode buffers. */
  chunkSize: number;
}

export type RestoreRequest =
  /** Read chunk `hex`, check its length and digest, write it at `offset` of `fd`. */
  | { type: 'write'; job: number; hex: string; length: number; fd: number; offset: number }
  /** Write `length` zero bytes at `offset` of `fd` (block devices: never leave stale data). */
  | { type: 'zero'; job: number; fd: number; offset: number; length: number }
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
