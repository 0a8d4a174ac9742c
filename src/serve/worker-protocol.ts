// Messages between the serve chunk pool (chunk-pool.ts) and its worker threads
// (chunk-worker.ts). A *slot* is a chunk-sized region of one SharedArrayBuffer that both
// sides see: the worker writes a chunk's verified plaintext there, the main thread sends it
// to clients straight from it. Nothing is copied between threads.
export interface ChunkWorkerData {
  chunksDir: string;
  slots: SharedArrayBuffer;
  slotSize: number;
}

export interface LoadRequest {
  job: number;
  /** Digest, hex: names the chunk file and is checked against the BLAKE3 of the plaintext. */
  hex: string;
  /** Slot of the shared slot buffer to fill; ignored when `target` is given. */
  slot: number;
  /** A one-off shared buffer (chunk-sized) to fill instead of a slot: the cache's overflow path. */
  target?: SharedArrayBuffer;
}

export type LoadFailure = 'chunk-missing' | 'chunk-corrupt' | 'repo-io';

export type LoadReply =
  | { job: number; ok: true; length: number }
  | { job: number; ok: false; kind: LoadFailure; message: string };
