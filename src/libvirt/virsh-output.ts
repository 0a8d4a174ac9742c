// Parsers for virsh's plain-text output (run with LC_ALL=C, so the labels are English).
// Pure: no I/O.
//
// Terms: a domain *job* is libvirt's long-running operation on a domain (backup, migration,
// dump...). `domjobinfo` reports its *type*: None (no job), Unbounded (open-ended, e.g. a
// pull-mode backup that lasts until the client ends it), Bounded, or, with --completed,
// Completed / Failed / Cancelled for the last finished job.
import { PullbackError } from '../errors.js';

export const DOMAIN_STATES = [
  'no state',
  'running',
  'idle',
  'paused',
  'in shutdown',
  'shut off',
  'crashed',
  'pmsuspended',
] as const;
export type DomainState = (typeof DOMAIN_STATES)[number];

/** `virsh domstate DOM` (optionally with --reason: "shut off (destroyed)"). */
export function parseDomState(stdout: string): DomainState {
  const line = stdout.trim().replace(/\s*\(.*\)$/, '');
  const state = DOMAIN_STATES.find((s) => s === line);
  if (state === undefined) throw new PullbackError('VIRSH_FAILED', `virsh domstate printed an unknown state '${line}'`);
  return state;
}

export const JOB_TYPES = ['None', 'Bounded', 'Unbounded', 'Completed', 'Failed', 'Cancelled'] as const;
export type JobType = (typeof JOB_TYPES)[number];

export interface JobInfo {
  type: JobType;
  /** True for a job still running (Bounded or Unbounded). */
  active: boolean;
  /** e.g. 'Backup', 'Outgoing migration'; null when virsh does not say. */
  operation: string | null;
  /** Libvirt's error message of a finished job, e.g. 'Operation canceled'. */
  errorMessage: string | null;
  /** Every "Label: value" line, value trimmed. */
  fields: Record<string, string>;
}

/** `virsh domjobinfo DOM [--completed]`. */
export function parseJobInfo(stdout: string): JobInfo {
  const fields: Record<string, string> = {};
  for (const line of stdout.split('\n')) {
    const m = /^([^:]+):\s*(.*)$/.exec(line);
    if (m?.[1] !== undefined && m[2] !== undefined) fields[m[1].trim()] = m[2].trim();
  }
  const raw = fields['Job type'];
  const type = JOB_TYPES.find((t) => t === raw);
  if (type === undefined) {
    throw new PullbackError('VIRSH_FAILED', `virsh domjobinfo printed no known job type (got '${raw ?? ''}')`);
  }
  return {
    type,
    active: type === 'Bounded' || type === 'Unbounded',
    operation: fields['Operation'] ?? null,
    errorMessage: fields['Error message'] ?? null,
    fields,
  };
}

/** Output of `--name` listings (list --name, checkpoint-list --name): one name a line. */
export function parseNameList(stdout: string): string[] {
  return stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
}

export interface LibvirtVersion {
  /** Version of the libvirt library virsh uses, e.g. '9.0.0'. */
  library: string;
  /** Hypervisor name and version as the daemon reports it, e.g. { name: 'QEMU', version: '7.2.22' }. */
  hypervisor: { name: string; version: string } | null;
}

/** `virsh version`. */
export function parseVersion(stdout: string): LibvirtVersion {
  const lib = /^Using library: libvirt (\S+)/m.exec(stdout);
  const hv = /^Running hypervisor: (\S+) (\S+)/m.exec(stdout);
  if (lib?.[1] === undefined) throw new PullbackError('VIRSH_FAILED', 'virsh version printed no library version');
  return {
    library: lib[1],
    hypervisor: hv?.[1] === undefined || hv[2] === undefined ? null : { name: hv[1], version: hv[2] },
  };
}

/** `virsh domblkinfo DOM DEV`: the Capacity line, in bytes. */
export function parseBlockCapacity(stdout: string, domain: string, target: string): number {
  const m = /^Capacity:\s*(\d+)\s*$/m.exec(stdout);
  if (m?.[1] === undefined) {
    throw new PullbackError('VIRSH_FAILED', `virsh domblkinfo ${domain} ${target} printed no Capacity line`);
  }
  return Number(m[1]);
}
