// Public API of restore: backups from the store back into disk images (docs/restore.md).
export {
  restoreBackup,
  type RestoreOptions,
  type RestoreResult,
  type RestoredDisk,
  type RestoreProgressEvent,
} from './restore.js';
export { resolveBackupSpec } from './backup-spec.js';
export { defineRestoredDomain, checkDefinable, type DefineResult } from './define.js';
export { planDisk, type DiskPlan, type ByteRange } from './plan.js';
export { isNbdUri } from './nbd-output.js';
export type { ImageFormat } from './write-disk.js';
