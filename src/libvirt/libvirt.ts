// The libvirt operations pullback needs, as an interface: VirshLibvirt (virsh.ts) implements
// it by running virsh; a native binding could replace it without touching callers.
//
// Every call takes CallOptions: an AbortSignal (rejects with code ABORTED) and a timeout
// (rejects with LIBVIRT_TIMEOUT). Failures are PullbackErrors with a stable code:
// LIBVIRT_UNAVAILABLE (daemon unreachable), DOMAIN_NOT_FOUND, CHECKPOINT_NOT_FOUND,
// CHECKPOINT_BITMAP_MISSING (its bitmap is gone from the image), DOMAIN_BUSY (another job holds the domain), DOMAIN_NOT_RUNNING, JOB_NOT_ACTIVE, and
// VIRSH_FAILED for everything else. XML goes in and out as text; xml builders/parsers
// live in the pure *-xml.ts modules.
import type { PullbackError } from '../errors.js';
import type { DomainState, JobInfo, LibvirtVersion } from './virsh-output.js';

export type { DomainState, JobInfo, LibvirtVersion };

/**
 * A read-only question prefetch can answer ahead: version (ping), domain state, live and
 * inactive XML, the current job, the checkpoint list, a disk's capacity.
 */
export type PrefetchQuery = 'version' | 'state' | 'xml' | 'inactiveXml' | 'job' | 'checkpoints' | { capacity: string };

export interface CallOptions {
  signal?: AbortSignal;
  /** Milliseconds before the call is abandoned (the virsh process is killed). */
  timeoutMs?: number;
}

export interface Libvirt {
  /** Connection URI every call uses, e.g. qemu:///system. */
  readonly uri: string;

  version(opts?: CallOptions): Promise<LibvirtVersion>;
  /** Resolves when the daemon answers; rejects LIBVIRT_UNAVAILABLE when it does not. */
  ping(opts?: CallOptions): Promise<void>;
  /** Names of all domains, running or not. */
  listDomains(opts?: CallOptions): Promise<string[]>;
  domainState(domain: string, opts?: CallOptions): Promise<DomainState>;
  /** Domain XML: the live definition, or with `inactive` the one used at next start. */
  dumpXml(domain: string, opts?: CallOptions & { inactive?: boolean }): Promise<string>;
  /** Defines (or redefines) a persistent domain from XML. */
  define(xml: string, opts?: CallOptions): Promise<void>;
  /** Removes a shut-off domain's definition; `checkpointsMetadata` also drops its checkpoint metadata. */
  undefine(domain: string, opts?: CallOptions & { checkpointsMetadata?: boolean }): Promise<void>;
  /** Virtual size (capacity) of a disk in bytes, by target name (vda); `domblkinfo`. */
  blockCapacity(domain: string, target: string, opts?: CallOptions): Promise<number>;
  start(domain: string, opts?: CallOptions): Promise<void>;
  /** Hard power-off (the guest gets no say). */
  destroy(domain: string, opts?: CallOptions): Promise<void>;

  /**
   * Starts a backup job (backup XML from buildBackupXml) and optionally creates a checkpoint
   * atomically with it. Unless `checkActiveJob` is false, first asks domjobinfo and fails
   * DOMAIN_BUSY at once if a job is running (libvirt itself would wait 30 s for its lock).
   */
  backupBegin(
    domain: string,
    backupXml: string,
    checkpointXml: string | null,
    opts?: CallOptions & { checkActiveJob?: boolean },
  ): Promise<void>;
  /** XML of the running backup job (parse with parseBackupXml); JOB_NOT_ACTIVE if none. */
  backupDumpXml(domain: string, opts?: CallOptions): Promise<string>;
  /** The domain's current job (`completed`: the last finished one). A shut-off domain has none. */
  jobInfo(domain: string, opts?: CallOptions & { completed?: boolean }): Promise<JobInfo>;
  /** Ends the running job; for a pull backup this is how the client says it is done. */
  jobAbort(domain: string, opts?: CallOptions): Promise<void>;

  /**
   * checkpointDelete of each of `checkpoints` in order, in one round trip where the
   * implementation can. Never rejects for a step: each step's error is returned (null: done),
   * so the cleanup after a backup goes on whatever fails.
   */
  deleteCheckpoints(domain: string, checkpoints: readonly string[], opts?: CallOptions): Promise<Array<PullbackError | null>>;

  /** Checkpoint names, parents before children. */
  checkpointList(domain: string, opts?: CallOptions): Promise<string[]>;
  checkpointDumpXml(
    domain: string,
    checkpoint: string,
    opts?: CallOptions & { noDomain?: boolean; size?: boolean },
  ): Promise<string>;
  /** Creates a checkpoint, or with `redefine` re-registers one from checkpoint-dumpxml output. */
  checkpointCreate(
    domain: string,
    xml: string,
    opts?: CallOptions & { redefine?: boolean; /** with redefine: libvirt checks the bitmaps exist */ validate?: boolean },
  ): Promise<void>;
  /** Deletes a checkpoint and its bitmaps, or with `metadataOnly` only libvirt's record of it. */
  checkpointDelete(domain: string, checkpoint: string, opts?: CallOptions & { metadataOnly?: boolean }): Promise<void>;

  /**
   * Asks several read-only questions about `domain` at once, so that the matching calls that
   * follow (ping, domainState, dumpXml, jobInfo, checkpointList, blockCapacity) answer without
   * another round trip. Each answer is used once, and any call that changes something drops
   * them all. Failures are not reported here: the call that uses the answer reports them.
   */
  prefetch(domain: string, queries: readonly PrefetchQuery[], opts?: CallOptions): Promise<void>;

  /** Runs a QEMU monitor command (QMP JSON, or HMP text with `hmp`) and returns its output. */
  monitorCommand(domain: string, command: string, opts?: CallOptions & { hmp?: boolean }): Promise<string>;
}

/** The connection URI: an explicit option, else LIBVIRT_DEFAULT_URI, else qemu:///system. */
export function resolveLibvirtUri(option?: string, env: NodeJS.ProcessEnv = process.env): string {
  if (option !== undefined && option !== '') return option;
  const fromEnv = env['LIBVIRT_DEFAULT_URI'];
  return fromEnv !== undefined && fromEnv !== '' ? fromEnv : 'qemu:///system';
}
