import { describe, expect, it } from 'vitest';
import { decideLevel, type DecideInput } from './decide.js';

const base = { id: 'b1', checkpoint: 'pullback.b1', disks: [{ name: 'vda', size: 100 }, { name: 'vdb', size: 200 }] };
const disks = [
  { name: 'vda', size: 100, incrementalCapable: true },
  { name: 'vdb', size: 200, incrementalCapable: true },
];
const input = (over: Partial<DecideInput> = {}): DecideInput => ({
  requested: 'auto',
  base,
  disks,
  checkpoints: new Set(['pullback.b1']),
  ...over,
});

describe('decideLevel', () => {
  it('auto with a usable base is incremental from that base', () => {
    expect(decideLevel(input())).toEqual({
      level: 'incremental',
      reason: 'changes since backup b1 (checkpoint pullback.b1)',
      parentId: 'b1',
      sinceCheckpoint: 'pullback.b1',
    });
  });

  it('auto without a base is full', () => {
    const d = decideLevel(input({ base: undefined }));
    expect(d).toEqual({ level: 'full', reason: 'no complete backup of this domain in the repository' });
  });

  it('auto with a missing checkpoint is full and names it', () => {
    const d = decideLevel(input({ checkpoints: new Set(['other']) }));
    expect(d.level).toBe('full');
    expect(d.reason).toContain('checkpoint pullback.b1 of backup b1 is missing');
  });

  it('a base without a checkpoint (offline, none valid) is full and says so, not "checkpoint  ... missing"', () => {
    const d = decideLevel(input({ base: { ...base, checkpoint: '' } }));
    expect(d).toEqual({ level: 'full', reason: 'backup b1 has no checkpoint to continue from (taken while the domain was shut off, with no valid checkpoint)' });
  });

  it('auto with an unusable bitmap is full with that reason', () => {
    expect(decideLevel(input({ bitmapProblem: 'bitmap pullback.b1 on vda is inconsistent' }))).toEqual({
      level: 'full',
      reason: 'bitmap pullback.b1 on vda is inconsistent',
    });
  });

  it('auto after a disk was added, removed or resized is full', () => {
    expect(decideLevel(input({ disks: [...disks, { name: 'vdc', size: 5, incrementalCapable: true }] })).reason).toBe(
      'the disk set changed since backup b1 (added vdc)',
    );
    expect(decideLevel(input({ disks: [disks[0]!] })).reason).toBe('the disk set changed since backup b1 (removed vdb)');
    expect(decideLevel(input({ disks: [disks[0]!, { name: 'vdb', size: 300, incrementalCapable: true }] })).reason).toBe(
      'disk vdb changed size since backup b1 (200 -> 300 bytes)',
    );
  });

  it('a raw disk beside a qcow2 disk does not force a full (it is read whole on its own)', () => {
    const d = decideLevel(input({ disks: [disks[0]!, { name: 'vdb', size: 200, incrementalCapable: false }] }));
    expect(d.level).toBe('incremental');
  });

  it('auto with only raw disks is full', () => {
    const raw = disks.map((d) => ({ ...d, incrementalCapable: false }));
    expect(decideLevel(input({ disks: raw }))).toEqual({
      level: 'full',
      reason: 'no disk of the domain can carry a dirty bitmap (none is qcow2)',
    });
  });

  it('full requested is full even with a usable base', () => {
    expect(decideLevel(input({ requested: 'full' }))).toEqual({ level: 'full', reason: 'full backup requested' });
  });

  it('incremental requested but impossible is an error that says what to do', () => {
    const d = decideLevel(input({ requested: 'incremental', base: undefined }));
    expect(d.level).toBe('error');
    expect(d.reason).toContain('no complete backup');
    expect(d.reason).toContain('--level full');
  });
});
