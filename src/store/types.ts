// Public types of the store API (re-exported by src/store/index.ts).
export type BackupLevel = 'full' | 'incremental';
export type BackupStatus = 'running' | 'complete' | 'failed';

export interface DiskStats {
  name: string;
  /** Virtual size in bytes at the time of the backup. */
  size: number;
  /** Bytes handed to ingest() (zero chunks included; zero() calls not). */
  bytesRead: number;
  /** Bytes of new chunk files this backup wrote (after compression, with framing). */
  bytesStored: number;
  chunksNew: number;
  chunksDeduped: number;
  chunksZero: number;
}

export interface BackupRecord {
  id: string;
  domain: string;
  time: Date;
  level: BackupLevel;
  parentId: string | null;
  checkpoint: string;
  status: BackupStatus;
  disks: DiskStats[];
  domainXml?: string;
  checkpointXml?: string;
  /** Why the backup failed (status 'failed'). */
  failure?: string;
}

export interface BeginBackupOptions {
  /** A new id from newBackupId(), when the caller must know it first (to name a checkpoint). */
  id?: string;
  domain: string;
  level: BackupLevel;
  /** The backup this incremental is relative to (complete, same domain); null for a full. */
  parentId: string | null;
  checkpoint: string;
  disks: Array<{ name: string; size: number }>;
  domainXml?: string;
  checkpointXml?: string;
  time?: Date;
  /** Called after each batch of chunks is committed to the index. */
  onProgress?: (p: IngestProgress) => void;
}

/** Store-side progress of one backup, over all its disks. */
export interface IngestProgress {
  backupId: string;
  /** Chunks whose rows are committed (data and zero). */
  chunksCommitted: number;
  /** Chunks accepted by ingest() but not yet committed: at most the pool's slot count, plus zeros. */
  chunksInFlight: number;
  bytesRead: number;
  bytesStored: number;
}

export type ChunkEntry = { kind: 'data'; digest: Buffer } | { kind: 'zero' } | { kind: 'absent' };

export interface BackupWriter {
  readonly id: string;
  /**
   * Stores chunk `chunkIndex` of `disk`. Resolves once the chunk is accepted into the bounded
   * in-flight window (not yet durable); the caller may reuse `data` afterwards. `data` is
   * chunkSize bytes, except the disk's last chunk which ends at the disk size. All-zero data
   * becomes a zero marker. Rejects with the first pipeline error if one happened before.
   */
  ingest(disk: string, chunkIndex: number, data: Buffer, opts?: { signal?: AbortSignal }): Promise<void>;
  /**
   * A buffer to read a chunk straight into, saving ingest()'s copy: one of the bounded
   * in-flight input slots (waits for a free one, like ingest). Fill `buffer` (chunkSize bytes),
   * then hand it over with `ingest(disk, chunkIndex, length)`, or give it back with `release()`.
   */
  reserve(opts?: { signal?: AbortSignal }): Promise<ReservedChunk>;
  /** Records a chunk known to read as zeros, without data. */
  zero(disk: string, chunkIndex: number): void;
  /**
   * Starts the ingest worker threads now rather than at the first data chunk (they take
   * 150-200 ms to be ready): for a caller that expects data and is about to wait anyway,
   * e.g. while libvirt starts a full backup's job.
   */
  prepare(): void;
  stats(disk: string): DiskStats;
  /** Totals over all disks; the same value onProgress receives. */
  progress(): IngestProgress;
  /**
   * Waits until every chunk is durable and indexed, writes the manifest, marks complete.
   * `checkpointXml` records the checkpoint as libvirt describes it after the job started.
   */
  complete(opts?: { signal?: AbortSignal; checkpointXml?: string }): Promise<BackupRecord>;
  /** Marks the backup failed; chunks already stored stay until gc. */
  fail(reason: string): Promise<void>;
}

export interface ReservedChunk {
  readonly buffer: Buffer;
  /** Stores the first `length` bytes of `buffer` as chunk `chunkIndex` of `disk` (see ingest). */
  ingest(disk: string, chunkIndex: number, length: number): void;
  /** Gives the slot back unused (a failed read); no-op after ingest or a first release. */
  release(): void;
}

export interface ProgressEvent {
  phase: string;
  done: number;
  total: number;
}

export type CheckProblemKind =
  | 'index-corrupt'
  | 'chunk-missing'
  | 'chunk-corrupt'
  | 'chunk-unindexed'
  | 'manifest-missing'
  | 'manifest-corrupt'
  | 'manifest-mismatch'
  | 'chain-broken';

export interface CheckProblem {
  kind: CheckProblemKind;
  message: string;
  /** Hex digest of the bad chunk, for chunk problems. */
  digest?: string;
  /** Backups and disks whose data the problem affects. */
  affects: Array<{ backup: string; disk: string }>;
}

export interface CheckReport {
  ok: boolean;
  problems: CheckProblem[];
  backupsChecked: number;
  manifestsChecked: number;
  chunksChecked: number;
  /** Chunks re-read and re-hashed (read-data only). */
  chunksVerified: number;
  bytesVerified: number;
  warnings: string[];
}

export interface GcReport {
  dryRun: boolean;
  /** Chunks deleted (or that would be, on a dry run). */
  chunksDeleted: number;
  bytesFreed: number;
  chunksKept: number;
  /** Chunk files with no index row, deleted. */
  orphanFilesDeleted: number;
  /** Temporary files of dead processes, deleted. */
  tmpFilesDeleted: number;
  /** Failed backups whose chunk-map rows were dropped. */
  failedBackupsCleaned: number;
  warnings: string[];
}
