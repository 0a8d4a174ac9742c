// Classifying a failed virsh run by its "error: ..." lines (virsh run with LC_ALL=C).
// Pure: no I/O. The phrases are libvirt's own (virerror.c messages as printed by libvirt 9.0;
// fixtures/libvirt/errors/ holds real captures) and have been stable for many releases.
import type { ErrorCode } from '../errors.js';

/** virsh's error lines without the "error: " prefix, in order. */
export function virshErrorLines(stderr: string): string[] {
  return (
    stderr
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l.startsWith('error: '))
      .map((l) => l.slice('error: '.length))
      // A long-lived virsh (virsh-session.ts) whose libvirtd restarted reconnects before its next
      // command and reports that as "error: Reconnected to the hypervisor"; the command then runs
      // normally. (A failed reconnect says "Failed to reconnect", which stays an error.)
      .filter((l) => l !== 'Reconnected to the hypervisor')
  );
}

const RULES: Array<{ code: ErrorCode; pattern: RegExp }> = [
  // The daemon is not reachable at all (socket missing, refused, auth, remote host down).
  { code: 'LIBVIRT_UNAVAILABLE', pattern: /failed to (re)?connect to the hypervisor|no valid connection|Failed to connect socket|Cannot recv data|End of file while reading data|no connection driver available/i },
  { code: 'DOMAIN_NOT_FOUND', pattern: /failed to get domain|Domain not found|no domain with matching (name|uuid|id)/i },
  { code: 'CHECKPOINT_NOT_FOUND', pattern: /Domain checkpoint not found|no domain checkpoint with matching name/i },
  // The checkpoint exists but its bitmap is gone from the image (removed behind libvirt's back):
  // backup-begin refuses it as a base, checkpoint-delete cannot delete it.
  { code: 'CHECKPOINT_BITMAP_MISSING', pattern: /checkpoint inconsistent: missing or broken bitmap|bitmap .* not found in backing chain/i },
  // Another job holds the domain: libvirt waits 30 s for the lock, then gives up.
  { code: 'DOMAIN_BUSY', pattern: /cannot acquire state change lock|another (job|migration job) is already active|job .* is already active|domain has active block job/i },
  { code: 'DOMAIN_NOT_RUNNING', pattern: /domain is not running|for inactive domain/i },
  { code: 'JOB_NOT_ACTIVE', pattern: /no job is active on the domain|no domain backup job present/i },
];

/** The error code a virsh failure maps to; VIRSH_FAILED when no rule matches. */
export function classifyVirshError(stderr: string): ErrorCode {
  const text = virshErrorLines(stderr).join('\n') || stderr;
  for (const rule of RULES) if (rule.pattern.test(text)) return rule.code;
  return 'VIRSH_FAILED';
}
