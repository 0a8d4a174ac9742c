// kill -9 of a prune at several points: the repository passes check (read-data), every
// retained backup still reads back as the model, a second prune finishes the job, and the
// end state is the one an uninterrupted prune reaches.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { pruneRepository } from '../../src/retention/prune.js';
import { Repository } from '../../src/store/index.js';
import { buildFixture, KEPT_A, KEPT_B, NOW, POLICY, restoreShas, type Fixture } from './fixture.js';
import { contentSha, type HistoryBackup } from './history.js';

const CHILD = new URL('./prune-child.ts', import.meta.url).pathname;

let work: string;
let golden: string;
let fx: Fixture;
const running = new Set<ReturnType<typeof spawn>>();

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'pullback-prune-crash-'));
  golden = join(work, 'golden');
  fx = await buildFixture(golden);
});
afterEach(() => {
  for (const c of running) c.kill('SIGKILL');
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

interface ChildRun {
  lines: string[];
  signal: NodeJS.Signals | null;
  code: number | null;
}

/** Runs the prune child; with `externalKillOn`, this process sends SIGKILL when that line appears. */
function runChild(repo: string, killAt: string, externalKillOn?: RegExp): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, ['--import', 'tsx', CHILD, repo, killAt], { stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(proc);
    const lines: string[] = [];
    let buf = '';
    let err = '';
    proc.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      const parts = buf.split('\n');
      buf = parts.pop() ?? '';
      for (const l of parts) {
        lines.push(l);
        if (externalKillOn?.test(l) === true) proc.kill('SIGKILL');
      }
    });
    proc.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    proc.on('error', reject);
    proc.on('exit', (code, signal) => {
      running.delete(proc);
      if (signal === null && code !== 0) reject(new Error(`prune child failed (${code}): ${err}`));
      else resolve({ lines, signal, code });
    });
  });
}

const keptIds = (): HistoryBackup[] => [...fx.a.filter((h) => KEPT_A.includes(h.day)), ...fx.b.filter((h) => KEPT_B.includes(h.day))];

async function expectHealthy(dir: string, label: string): Promise<{ warnings: string[]; present: string[] }> {
  const warnings: string[] = [];
  const repo = await Repository.open(dir, { workers: 2, onWarning: (m) => warnings.push(m) });
  try {
    const report = await repo.check();
    expect(report.problems, label).toEqual([]);
    const present = repo.listBackups().map((b) => b.id);
    // Every backup the policy retains is still there and reads back as it did.
    for (const h of keptIds()) {
      expect(present, `${label}: ${h.day} present`).toContain(h.id);
      for (const [disk, sha] of Object.entries(h.sha)) expect(await contentSha(repo, h.id, disk), `${label}: ${h.day} ${disk}`).toBe(sha);
    }
    // So does every backup not removed yet (a sample of the oldest: they are the heirs' sources).
    const all = new Map([...fx.a, ...fx.b].map((h) => [h.id, h]));
    for (const id of present.slice(0, 4)) {
      const h = all.get(id) as HistoryBackup;
      for (const [disk, sha] of Object.entries(h.sha)) expect(await contentSha(repo, id, disk), `${label}: ${h.day} ${disk}`).toBe(sha);
    }
    return { warnings, present };
  } finally {
    await repo.close();
  }
}

describe('kill -9 during prune', () => {
  // Kill point -> whether the interrupted removal's manifests must be finished on the next open.
  const points: Array<[string, boolean]> = [
    ['in-transaction#1', false], // vm-a's index transaction not committed: rolled back
    ['committed#1', true], // vm-a committed, no manifest touched yet
    ['manifest-rewritten#2', true], // two heirs rewritten of five
    ['manifest-deleted#40', true], // half of the removed manifests gone
    ['journal-cleared#1', false], // vm-a finished, vm-b untouched
    ['committed#2', true], // vm-b committed
    ['gc-progress#1', false], // during the sweep
  ];

  test.each(points)('killed at %s', async (killAt, finishes) => {
    const dir = join(work, `case-${killAt.replace('#', '-')}`);
    execFileSync('cp', ['-a', golden, dir]);
    try {
      const run = await runChild(dir, killAt);
      expect(run.signal, run.lines.join('\n')).toBe('SIGKILL');
      expect(run.lines[run.lines.length - 1]).toMatch(new RegExp(`^step ${killAt} `));

      const { warnings, present } = await expectHealthy(dir, killAt);
      const finished = warnings.filter((w) => w.startsWith('finished a prune that was interrupted'));
      expect(finished, warnings.join('\n')).toHaveLength(finishes ? 1 : 0);
      // The dead prune's exclusive lock was reclaimed, loudly.
      expect(warnings.some((w) => /stale exclusive lock of prune/.test(w))).toBe(true);
      if (killAt === 'in-transaction#1') expect(present).toHaveLength(100);

      // A second prune completes the job: the same end state as an uninterrupted one.
      const repo = await Repository.open(dir, { workers: 2, onWarning: () => undefined });
      try {
        await pruneRepository(repo, { policy: POLICY, now: NOW, orphanGraceMs: 0 });
        const left = repo.listBackups().map((b) => b.id).sort();
        expect(left).toEqual(keptIds().map((h) => h.id).sort());
        expect((await repo.check()).problems).toEqual([]);
        // One real restore per case: the merged full of vm-a's first chain.
        const heir = fx.a.find((h) => h.day === '2026-01-31') as HistoryBackup;
        expect(await restoreShas(dir, 'vm-a', heir.id, work)).toEqual(heir.sha);
      } finally {
        await repo.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('a real kill -9 from outside while manifests are being rewritten', async () => {
    const dir = join(work, 'case-external');
    execFileSync('cp', ['-a', golden, dir]);
    try {
      const run = await runChild(dir, 'none', /^step manifest-rewritten#1 /);
      expect(run.signal).toBe('SIGKILL');
      const { present } = await expectHealthy(dir, 'external kill');
      expect(present.length).toBeLessThan(100); // vm-a's removal had committed
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
