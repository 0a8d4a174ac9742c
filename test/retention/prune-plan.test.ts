// Table tests of the pure planning: which removals are safe and how rows merge forward
// (planRemoval, store), and the per-domain prune decisions on top of the policy
// (planDomainPrune: newest kept, running/failed, safety overrides, mergedInto).
import { describe, expect, test } from 'vitest';
import { NEWEST_REASON, planDomainPrune } from '../../src/retention/prune-plan.js';
import { planRemoval, type BackupRecord, type RemovalNode } from '../../src/store/index.js';

/** A linear chain spec: 'F' full, 'I' incremental, 'R' running incremental, 'X' failed incremental; ids b0, b1, ... */
function chain(spec: string, disks: string[] = ['vda']): RemovalNode[] {
  const out: RemovalNode[] = [];
  let parent: string | null = null;
  for (const [i, c] of [...spec].entries()) {
    const id = `b${i}`;
    const full = c === 'F';
    out.push({
      id,
      parentId: full ? null : parent,
      level: full ? 'full' : 'incremental',
      status: c === 'R' ? 'running' : c === 'X' ? 'failed' : 'complete',
      disks,
    });
    if (c !== 'X' && c !== 'R') parent = id;
  }
  return out;
}

describe('planRemoval', () => {
  const cases: Array<{ name: string; nodes: RemovalNode[]; remove: string[]; merges: unknown; removed: string[]; blocked?: unknown }> = [
    {
      name: 'a middle incremental: its child inherits its rows and its parent',
      nodes: chain('FIII'),
      remove: ['b2'],
      merges: [{ heir: 'b3', sources: ['b2'], newParent: 'b1' }],
      removed: ['b2'],
    },
    {
      name: 'the full: its child becomes the full',
      nodes: chain('FII'),
      remove: ['b0'],
      merges: [{ heir: 'b1', sources: ['b0'], newParent: null }],
      removed: ['b0'],
    },
    {
      name: 'a run from the full: nearest source first',
      nodes: chain('FIIII'),
      remove: ['b0', 'b1', 'b2'],
      merges: [{ heir: 'b3', sources: ['b2', 'b1', 'b0'], newParent: null }],
      removed: ['b0', 'b1', 'b2'],
    },
    {
      name: 'two runs in one chain: two heirs',
      nodes: chain('FIIIII'),
      remove: ['b1', 'b3', 'b4'],
      merges: [
        { heir: 'b2', sources: ['b1'], newParent: 'b0' },
        { heir: 'b5', sources: ['b4', 'b3'], newParent: 'b2' },
      ],
      removed: ['b1', 'b3', 'b4'],
    },
    {
      name: 'the end of a chain: nothing to merge into',
      nodes: [...chain('FII'), ...chain('FI').map((n) => ({ ...n, id: `c${n.id}`, parentId: n.parentId === null ? null : `c${n.parentId}` }))],
      remove: ['b1', 'b2'],
      merges: [],
      removed: ['b1', 'b2'],
    },
    {
      name: 'a full that starts a new chain is not an heir',
      nodes: [...chain('FI'), { id: 'n0', parentId: null, level: 'full', status: 'complete', disks: ['vda'] }],
      remove: ['b0', 'b1'],
      merges: [],
      removed: ['b0', 'b1'],
    },
    {
      name: 'the parent of a running backup stays',
      nodes: chain('FIR'),
      remove: ['b1', 'b0'],
      merges: [{ heir: 'b1', sources: ['b0'], newParent: null }],
      removed: ['b0'],
      blocked: [{ id: 'b1', reason: 'parent of running backup b2' }],
    },
    {
      name: 'a running backup is never removed',
      nodes: chain('FIR'),
      remove: ['b2'],
      merges: [],
      removed: [],
      blocked: [{ id: 'b2', reason: 'running' }],
    },
    {
      name: 'failed backups go, without merging',
      nodes: chain('FIXI'),
      remove: ['b2'],
      merges: [],
      removed: ['b2'],
    },
    {
      name: 'a disk the heir does not have blocks the merge',
      nodes: [
        { id: 'f', parentId: null, level: 'full', status: 'complete', disks: ['vda', 'vdb'] },
        { id: 'i', parentId: 'f', level: 'incremental', status: 'complete', disks: ['vda'] },
      ],
      remove: ['f'],
      merges: [],
      removed: [],
      blocked: [{ id: 'f', reason: 'its disk vdb is not in backup i, which builds on it (cannot merge forward)' }],
    },
    {
      name: 'a branch: both children inherit',
      nodes: [...chain('FI'), { id: 'b2', parentId: 'b1', level: 'incremental', status: 'complete', disks: ['vda'] }, { id: 'b3', parentId: 'b1', level: 'incremental', status: 'complete', disks: ['vda'] }],
      remove: ['b1'],
      merges: [
        { heir: 'b2', sources: ['b1'], newParent: 'b0' },
        { heir: 'b3', sources: ['b1'], newParent: 'b0' },
      ],
      removed: ['b1'],
    },
  ];
  test.each(cases)('$name', ({ nodes, remove, merges, removed, blocked }) => {
    const plan = planRemoval(nodes, remove);
    expect(plan.merges).toEqual(merges);
    expect([...plan.remove].sort()).toEqual([...removed].sort());
    expect(plan.blocked).toEqual(blocked ?? []);
  });

  test('an unknown id is an error', () => {
    expect(() => planRemoval(chain('FI'), ['nope'])).toThrow(/cannot remove backup nope: it is not in the repository/);
  });
});

describe('planDomainPrune', () => {
  const day = (d: number, h = 2): Date => new Date(Date.UTC(2026, 2, d, h));
  const rec = (id: string, time: Date, level: 'full' | 'incremental', parentId: string | null, status: BackupRecord['status'] = 'complete'): BackupRecord => ({
    id,
    domain: 'vm',
    time,
    level,
    parentId,
    checkpoint: `pullback.${id}`,
    status,
    disks: [{ name: 'vda', size: 1, bytesRead: 0, bytesStored: 0, chunksNew: 0, chunksDeduped: 0, chunksZero: 0 }],
  });

  test('the newest complete backup is kept when no rule keeps it', () => {
    const bs = [rec('a', day(1), 'full', null), rec('b', day(2), 'incremental', 'a'), rec('c', day(3), 'incremental', 'b')];
    const plan = planDomainPrune('vm', bs, { keepWithin: 3_600_000 }, day(20));
    expect(plan.decisions.map((d) => [d.id, d.keep, d.reasons])).toEqual([
      ['c', true, [NEWEST_REASON]],
      ['b', false, ['not matched by any rule']],
      ['a', false, ['not matched by any rule']],
    ]);
    expect(plan.merges).toEqual([{ heir: 'c', sources: ['b', 'a'], newParent: null }]);
    expect(plan.decisions.find((d) => d.id === 'a')?.mergedInto).toEqual(['c']);
  });

  test('a running backup is kept and keeps its parent; failed backups go', () => {
    const bs = [
      rec('a', day(1), 'full', null),
      rec('b', day(2), 'incremental', 'a'),
      rec('x', day(3), 'incremental', 'b', 'failed'),
      rec('r', day(4), 'incremental', 'b', 'running'),
    ];
    const plan = planDomainPrune('vm', bs, { keepLast: 1 }, day(5));
    const got = Object.fromEntries(plan.decisions.map((d) => [d.id, `${d.keep ? 'keep' : 'remove'}: ${d.reasons.join(', ')}`]));
    expect(got).toEqual({
      r: 'keep: running',
      x: 'remove: failed',
      b: 'keep: last 1',
      a: 'remove: not matched by any rule',
    });
    expect(plan.remove.sort()).toEqual(['a', 'x']);
  });

  test('a removal the store must refuse is kept with the reason', () => {
    // b has a complete child c (the newest) and a running child r (a second branch).
    const bs3 = [rec('a', day(1), 'full', null), rec('b', day(2), 'incremental', 'a'), rec('c', day(3), 'incremental', 'b'), rec('r', day(4), 'incremental', 'b', 'running')];
    const plan3 = planDomainPrune('vm', bs3, { keepWithin: 1 }, day(5));
    expect(plan3.decisions.find((d) => d.id === 'b')).toMatchObject({ keep: true, reasons: ['kept: parent of running backup r'] });
    expect(plan3.decisions.find((d) => d.id === 'c')).toMatchObject({ keep: true, reasons: [NEWEST_REASON] });
    expect(plan3.merges).toEqual([{ heir: 'b', sources: ['a'], newParent: null }]);
  });
});
