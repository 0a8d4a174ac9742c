// A simulated 90-day history written through the real store (chosen timestamps), pruned
// with keep-daily 7 / keep-weekly 4 / keep-monthly 3: exactly the expected backups survive,
// chains are re-linked by merge forward, every kept backup restores byte-identical to what
// it read back before (the model), the repository shrinks on disk, and check passes.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { NEWEST_REASON } from '../../src/retention/prune-plan.js';
import { pruneRepository } from '../../src/retention/prune.js';
import { Repository } from '../../src/store/index.js';
import { buildFixture, diskUsage, KEPT_A, KEPT_B, NOW, POLICY, restoreShas, treeState, type Fixture } from './fixture.js';
import { contentSha } from './history.js';

let work: string;
let dir: string;
let fx: Fixture;
const warnings: string[] = [];
const open = (): Promise<Repository> => Repository.open(dir, { workers: 2, onWarning: (m) => warnings.push(m) });

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'pullback-prune-history-'));
  dir = join(work, 'repo');
  fx = await buildFixture(dir);
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('90-day history, keep-daily 7 / keep-weekly 4 / keep-monthly 3', () => {
  test('the history is what the model says, before any prune', async () => {
    expect(fx.a).toHaveLength(90);
    expect(fx.b).toHaveLength(10);
    const repo = await open();
    try {
      expect(repo.listBackups({ status: 'complete' })).toHaveLength(100);
      // Every backup reads back as the model: resolve + readChunk in-process, the data path
      // restore takes (restoring all 100 through worker pools would cost ~1.4 s each).
      for (const h of [...fx.a, ...fx.b]) {
        for (const [disk, sha] of Object.entries(h.sha)) expect(await contentSha(repo, h.id, disk), `${h.day} ${disk}`).toBe(sha);
      }
    } finally {
      await repo.close();
    }
  });

  test('--dry-run decides exactly the expected set and changes nothing on disk', async () => {
    const state = treeState(dir);
    const repo = await open();
    try {
      const r = await pruneRepository(repo, { policy: POLICY, now: NOW, dryRun: true });
      expect(r.dryRun).toBe(true);
      expect(r.gc).toBeNull();
      const a = r.domains.find((d) => d.domain === 'vm-a');
      const keptDays = (a?.decisions ?? []).filter((d) => d.keep).map((d) => d.time.toISOString().slice(0, 10)).sort();
      expect(keptDays).toEqual(KEPT_A);
      expect(a?.removed).toBe(79);
      const reasons = Object.fromEntries((a?.decisions ?? []).map((d) => [d.time.toISOString().slice(0, 10), d.reasons.join(', ')]));
      expect(reasons['2026-03-31']).toBe('daily 2026-03-31, weekly 2026-W14, monthly 2026-03');
      expect(reasons['2026-03-22']).toBe('weekly 2026-W12');
      expect(reasons['2026-01-31']).toBe('monthly 2026-01');
      expect(reasons['2026-03-21']).toBe('not matched by any rule');
      // The removed full of the first chain hands its rows to 01-31, the first kept backup after it.
      const first = a?.decisions.find((d) => d.time.toISOString().startsWith('2026-01-01'));
      expect(first?.mergedInto).toEqual([fx.a.find((h) => h.day === '2026-01-31')?.id]);
      expect(r.domains.find((d) => d.domain === 'vm-b')?.removed).toBe(2);
    } finally {
      await repo.close();
    }
    expect(treeState(dir)).toEqual(state);
  });

  test('prune keeps exactly the expected set; kept backups restore byte-identical; the repository shrinks', async () => {
    const duBefore = diskUsage(dir);
    const repo = await open();
    try {
      const r = await pruneRepository(repo, { policy: POLICY, now: NOW, orphanGraceMs: 0 });
      expect(r.removed).toBe(79 + 2);
      expect(r.kept).toBe(11 + 8);
      expect(r.gc?.chunksDeleted).toBeGreaterThan(0);

      const left = repo.listBackups();
      const days = (dom: string): string[] => left.filter((b) => b.domain === dom).map((b) => b.time.toISOString().slice(0, 10));
      expect(days('vm-a')).toEqual(KEPT_A);
      expect(days('vm-b')).toEqual(KEPT_B);

      // Chains re-linked: the first kept backup after a removed full becomes its chain's full.
      const byDay = new Map(left.filter((b) => b.domain === 'vm-a').map((b) => [b.time.toISOString().slice(0, 10), b]));
      const shape = KEPT_A.map((d) => {
        const b = byDay.get(d);
        const parent = left.find((x) => x.id === b?.parentId);
        return `${d} ${b?.level} ${parent === undefined ? '-' : parent.time.toISOString().slice(0, 10)}`;
      });
      expect(shape).toEqual([
        '2026-01-31 full -',
        '2026-02-28 full -',
        '2026-03-15 full -',
        '2026-03-22 incremental 2026-03-15',
        '2026-03-25 incremental 2026-03-22',
        '2026-03-26 incremental 2026-03-25',
        '2026-03-27 incremental 2026-03-26',
        '2026-03-28 incremental 2026-03-27',
        '2026-03-29 incremental 2026-03-28',
        '2026-03-30 incremental 2026-03-29',
        '2026-03-31 incremental 2026-03-30',
      ]);
      const vmb = left.filter((b) => b.domain === 'vm-b');
      expect(vmb.find((b) => b.time.toISOString().startsWith('2026-03-25'))?.parentId).toBe(vmb[0]?.id);

      // Every kept backup restores (real restore path) to what it read back before the prune.
      const kept = [...fx.a.filter((h) => KEPT_A.includes(h.day)), ...fx.b.filter((h) => KEPT_B.includes(h.day))];
      expect(kept).toHaveLength(19);
      for (const h of kept) expect(await restoreShas(dir, fx.b.includes(h) ? 'vm-b' : 'vm-a', h.id, work), h.day).toEqual(h.sha);
      const check = await repo.check({ readData: true });
      expect(check.problems).toEqual([]);
      expect(check.manifestsChecked).toBe(19);
    } finally {
      await repo.close();
    }
    const duAfter = diskUsage(dir);
    // Measured: most chunks belonged to removed backups only.
    console.log(`repository on disk: ${duBefore} bytes before prune, ${duAfter} after (${((1 - duAfter / duBefore) * 100).toFixed(0)}% smaller)`);
    expect(duAfter).toBeLessThan(duBefore * 0.7);
  });

  test('pruning again with the same policy removes nothing', async () => {
    const repo = await open();
    try {
      const r = await pruneRepository(repo, { policy: POLICY, now: NOW });
      expect(r.removed).toBe(0);
      expect(r.kept).toBe(19);
    } finally {
      await repo.close();
    }
  });

  test('the newest complete backup survives a policy that keeps nothing', async () => {
    const repo = await open();
    try {
      // keep-within 1 day, ten days later: no rule keeps anything.
      const r = await pruneRepository(repo, { policy: { keepWithin: 86_400_000 }, now: new Date('2026-04-10T00:00:00Z'), domains: ['vm-b'] });
      const kept = r.domains[0]?.decisions.filter((d) => d.keep) ?? [];
      expect(kept.map((d) => d.reasons)).toEqual([[NEWEST_REASON]]);
      const left = repo.listBackups({ domain: 'vm-b' });
      expect(left).toHaveLength(1);
      const newest = fx.b[fx.b.length - 1];
      expect(left[0]?.id).toBe(newest?.id);
      expect(left[0]?.level).toBe('full');
      expect(left[0]?.checkpoint).toBe('pullback.day9');
      expect(await restoreShas(dir, 'vm-b', left[0]?.id ?? '', work)).toEqual(newest?.sha);
      expect((await repo.check()).problems).toEqual([]);
    } finally {
      await repo.close();
    }
    expect(warnings.filter((w) => !/reclaimed|removed stale/.test(w))).toEqual([]);
  });
});
