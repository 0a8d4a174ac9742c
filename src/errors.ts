// One error type for the whole project. `code` is stable (scripts and tests match on it);
// `message` says what failed, where (domain, disk, export, offset) and what to do next.
export type ErrorCode =
  // NBD
  | 'NBD_CONNECT'
  | 'NBD_HANDSHAKE'
  | 'NBD_OPTION'
  | 'NBD_PROTOCOL'
  | 'NBD_SERVER_ERROR'
  | 'NBD_TIMEOUT'
  | 'NBD_CLOSED'
  | 'NBD_ABORTED'
  | 'NBD_INVALID_ARGUMENT'
  | 'NBD_URI'
  // repository
  | 'REPO_NOT_FOUND'
  | 'REPO_EXISTS'
  | 'REPO_INVALID'
  | 'REPO_VERSION'
  | 'REPO_LOCKED'
  | 'REPO_CORRUPT'
  | 'REPO_IO'
  | 'REPO_FULL'
  | 'CHUNK_MISSING'
  | 'CHUNK_CORRUPT'
  | 'BACKUP_NOT_FOUND'
  | 'STORE_INVALID_ARGUMENT'
  // libvirt
  | 'VIRSH_FAILED'
  | 'LIBVIRT_UNAVAILABLE'
  | 'DOMAIN_NOT_FOUND'
  | 'DOMAIN_BUSY'
  | 'XML_INVALID'
  | 'CHECKPOINT_NOT_FOUND'
  | 'CHECKPOINT_BITMAP_MISSING'
  | 'DOMAIN_NOT_RUNNING'
  | 'JOB_NOT_ACTIVE'
  | 'LIBVIRT_TIMEOUT'
  // backup / restore / retention
  | 'BACKUP_FAILED'
  | 'RESTORE_FAILED'
  | 'OUTPUT_EXISTS'
  | 'PRUNE_FAILED'
  | 'CONFIG_INVALID'
  | 'SERVE_FAILED'
  // generic
  | 'USAGE'
  | 'ABORTED'
  | 'INTERNAL';

export interface PullbackErrorOptions {
  cause?: unknown;
}

export class PullbackError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options: PullbackErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PullbackError';
    this.code = code;
  }
}

export function isPullbackError(e: unknown, code?: ErrorCode): e is PullbackError {
  return e instanceof PullbackError && (code === undefined || e.code === code);
}

/** The message of any thrown value, for one-line reports. */
export function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}
