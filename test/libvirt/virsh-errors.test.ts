// Error classification on virsh's real stderr, captured from libvirt 9.0 (fixtures/libvirt/errors).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { classifyVirshError, virshErrorLines } from '../../src/libvirt/virsh-errors.js';

const stderr = (name: string): string =>
  readFileSync(new URL(`../../fixtures/libvirt/errors/${name}.txt`, import.meta.url), 'utf8');

describe('classifyVirshError', () => {
  it.each([
    ['unreachable', 'LIBVIRT_UNAVAILABLE'],
    ['domain-not-found', 'DOMAIN_NOT_FOUND'],
    ['checkpoint-not-found', 'CHECKPOINT_NOT_FOUND'],
    ['backup-busy', 'DOMAIN_BUSY'],
    ['not-running', 'DOMAIN_NOT_RUNNING'],
    ['backup-inactive', 'DOMAIN_NOT_RUNNING'],
    ['no-active-job', 'JOB_NOT_ACTIVE'],
    ['no-backup-job', 'JOB_NOT_ACTIVE'],
    ['already-active', 'VIRSH_FAILED'],
    ['checkpoint-exists', 'VIRSH_FAILED'],
    ['define-malformed', 'VIRSH_FAILED'],
  ] as const)('%s → %s', (file, code) => {
    expect(classifyVirshError(stderr(file))).toBe(code);
  });

  it('keeps only the error lines, without the prefix', () => {
    expect(virshErrorLines(stderr('unreachable'))).toEqual([
      'failed to connect to the hypervisor',
      "Failed to connect socket to '/nonexistent': No such file or directory",
    ]);
    expect(virshErrorLines(stderr('define-malformed'))).toHaveLength(2);
  });

  it('a reconnect after libvirtd restarted is not an error; a failed one is', () => {
    // What an interactive virsh prints before running its next command once libvirtd came back
    // (seen in a fidelity run that restarted libvirtd under a live session).
    expect(virshErrorLines('error: Reconnected to the hypervisor\n')).toEqual([]);
    const failed = 'error: Failed to reconnect to the hypervisor\nerror: no valid connection\n';
    expect(virshErrorLines(failed)).toEqual(['Failed to reconnect to the hypervisor', 'no valid connection']);
    expect(classifyVirshError(failed)).toBe('LIBVIRT_UNAVAILABLE');
  });

  it('a checkpoint whose bitmap is gone from the image has its own code', () => {
    // backup-begin from it, and checkpoint-delete of it (both seen on this machine, libvirt 9.0)
    expect(classifyVirshError("error: checkpoint inconsistent: missing or broken bitmap 'pullback.x' for disk 'vda'\n")).toBe('CHECKPOINT_BITMAP_MISSING');
    expect(
      classifyVirshError("error: Failed to delete checkpoint pullback.x\nerror: internal error: bitmap 'pullback.x' not found in backing chain of 'vda'\n"),
    ).toBe('CHECKPOINT_BITMAP_MISSING');
  });
});
