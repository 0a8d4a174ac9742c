// Messages between the ingest pool (worker-pool.ts) and its workers (ingest-worker.ts).
export interface WorkerData {
  chunksDir: string;
  tmpDir: string;
  level: number;
  /** Input slots shared with the main thread: slot i is bytes [i*slotSize, (i+1)*slotSize). */
  slots: SharedArrayBuffer;
  slotSize: number;
}

export type WorkerRequest =
  | { type: 'store'; job: number; slot: number; length: number; force: boolean }
  | { type: 'verify'; job: number; hex: string };

export type WorkerReply =
  /** `existed`: a file of this digest was already there; else `storedSize` bytes were written. */
  | { type: 'stored'; job: number; hex: string; existed: boolean; storedSize: number }
  | { type: 'verified'; job: number; problem: 'missing' | 'corrupt' | null; reason: string; plainLength: number }
  | { type: 'error'; job: number; message: string; errno: string };
