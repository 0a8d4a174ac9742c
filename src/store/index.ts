// Public API of the chunk store. Everything else under src/store is internal.
export { Repository, type OpenOptions, type InitOptions } from './repository.js';
export { ChunkMap, KIND_ABSENT, KIND_DATA, KIND_ZERO } from './chunk-map.js';
export {
  FORMAT_VERSION,
  DEFAULT_CHUNK_SIZE,
  DEFAULT_COMPRESSION_LEVEL,
  MIN_CHUNK_SIZE,
  MAX_CHUNK_SIZE,
  parseSize,
  parseCompression,
  formatSize,
  type RepoConfig,
} from './config.js';
export { BACKUP_ID, newBackupId } from './backup-id.js';
export type { CheckOptions } from './check.js';
export type { GcOptions } from './gc.js';
export type { RebuildReport } from './repair.js';
export type { LockKind } from './lock.js';
export type * from './types.js';
export {
  removeBackups,
  removalNodes,
  planRemoval,
  withLock,
  gcHoldingExclusive,
  type RemoveReport,
  type Merge,
  type RemovalNode,
  type RemovalPlan,
  type RemovalStep,
  type StepHook,
} from './remove-backup.js';
