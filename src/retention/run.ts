// `pullback run`: the nightly job (docs/nightly.md).
//
//   1. open the repository, take the run lock (run-lock.ts): runs never overlap;
//   2. pick the domains (run-domains.ts) and back them up, `concurrency` at a time, each at
//      the level the level policy asks for (run-level.ts); a failing domain is recorded and
//      the others go on;
//   3. prune the selected domains with the retention policy, then gc (prune.ts);
//   4. write the Prometheus textfile metrics, if configured (metrics.ts).
// The report says what happened per domain; `ok` only when every domain, the prune and the
// metrics succeeded (the CLI's exit code). Fatal problems (no repository, libvirt down while
// listing domains, the run lock held) throw before anything is backed up.
import { runBackup } from '../backup/run.js';
import { errorMessage, PullbackError } from '../errors.js';
import type { Libvirt } from '../libvirt/libvirt.js';
import { Repository } from '../store/index.js';
import type { RunConfig } from './config.js';
import { durationMs } from './duration.js';
import { writeMetricsFile, type RunMetrics } from './metrics.js';
import type { RetentionPolicy } from './policy.js';
import { pruneRepository, type PruneReport } from './prune.js';
import { selectDomains } from './run-domains.js';
import { chooseLevel, type LevelChoice } from './run-level.js';
import { acquireRunLock } from './run-lock.js';

export interface RunDeps {
  libvirt: Libvirt;
  /** Progress and per-domain messages (the CLI prints them to stderr). */
  log: (message: string) => void;
  signal?: AbortSignal;
  /** The clock (tests pin it). */
  now?: () => Date;
}

export interface RunFailure {
  code: string;
  message: string;
}

export interface DomainRunResult {
  domain: string;
  ok: boolean;
  seconds: number;
  level: LevelChoice;
  backup?: { id: string; level: 'full' | 'incremental'; reason: string; parent: string | null; bytesRead: number; bytesStored: number };
  error?: RunFailure;
}

export interface RunReport {
  ok: boolean;
  started: Date;
  seconds: number;
  repository: string;
  domains: DomainRunResult[];
  prune: PruneReport | null;
  pruneError?: RunFailure;
  metricsFile: string | null;
  metricsError?: RunFailure;
}

function failure(e: unknown): RunFailure {
  return { code: e instanceof PullbackError ? e.code : 'INTERNAL', message: errorMessage(e) };
}

export async function runNightly(config: RunConfig, deps: RunDeps): Promise<RunReport> {
  const clock = deps.now ?? (() => new Date());
  const started = clock();
  const t0 = performance.now();
  const { libvirt, log, signal } = deps;
  const repo = await Repository.open(config.repository, { lockWaitMs: config.lockWaitSeconds * 1000, onWarning: (m) => log(`warning: ${m}`) });
  try {
    const lock = await acquireRunLock(config.repository, config.source, (m) => log(`warning: ${m}`));
    try {
      const known = config.domains.kind === 'all' ? await libvirt.listDomains(signal === undefined ? {} : { signal }) : [];
      const domains = selectDomains(config.domains, known);
      if (domains.length === 0) log('no domain matches the configured selection');
      const results = await backupAll(config, repo, domains, deps);

      const report: RunReport = { ok: false, started, seconds: 0, repository: config.repository, domains: results, prune: null, metricsFile: config.metricsFile ?? null };
      if (signal?.aborted === true) {
        report.pruneError = { code: 'ABORTED', message: 'not pruned: the run was interrupted' };
      } else {
        try {
          report.prune = await pruneSelected(config, repo, domains, clock(), signal);
        } catch (e) {
          report.pruneError = failure(e);
          log(`prune failed: ${report.pruneError.message}`);
        }
      }
      report.seconds = (performance.now() - t0) / 1000;
      report.ok = results.every((r) => r.ok) && report.pruneError === undefined;
      if (config.metricsFile !== undefined) {
        try {
          await writeMetricsFile(config.metricsFile, metricsOf(report, repo));
        } catch (e) {
          report.metricsError = failure(e);
          report.ok = false;
          log(report.metricsError.message);
        }
      }
      return report;
    } finally {
      await lock.release();
    }
  } finally {
    await repo.close();
  }
}

/** Backs up every domain, `concurrency` at a time; never throws for one domain's failure. */
async function backupAll(config: RunConfig, repo: Repository, domains: string[], deps: RunDeps): Promise<DomainRunResult[]> {
  const results: DomainRunResult[] = new Array<DomainRunResult>(domains.length);
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < domains.length) {
      const i = next++;
      results[i] = await backupOne(config, repo, domains[i] as string, deps);
    }
  };
  await Promise.all(Array.from({ length: Math.min(config.concurrency, domains.length) }, lane));
  return results;
}

async function backupOne(config: RunConfig, repo: Repository, domain: string, deps: RunDeps): Promise<DomainRunResult> {
  const t0 = performance.now();
  const seconds = (): number => (performance.now() - t0) / 1000;
  let level: LevelChoice = { level: 'auto', reason: 'not decided' };
  try {
    deps.signal?.throwIfAborted();
    const latest = repo.latestComplete(domain);
    level = chooseLevel(latest === undefined ? [] : repo.chain(latest.id), config.level, (deps.now ?? (() => new Date()))());
    deps.log(`${domain}: starting (${level.level === 'full' ? `full: ${level.reason}` : level.reason})`);
    const exclude = config.excludeDisks[domain];
    const r = await runBackup(
      {
        domain,
        level: level.level,
        ...(exclude !== undefined ? { excludeDisks: exclude } : {}),
        ...(config.scratchDir !== undefined ? { scratchDir: config.scratchDir } : {}),
        ...(config.scratchKeepFreeBytes !== undefined ? { scratchFloorBytes: config.scratchKeepFreeBytes } : {}),
        ...(config.connections !== undefined ? { connections: config.connections } : {}),
        ...(deps.signal !== undefined ? { signal: deps.signal } : {}),
        log: (m) => deps.log(`${domain}: ${m}`),
      },
      { libvirt: deps.libvirt, repo },
    );
    const bytesRead = r.disks.reduce((n, d) => n + d.bytesRead, 0);
    const bytesStored = r.disks.reduce((n, d) => n + d.bytesStored, 0);
    deps.log(`${domain}: ${r.level} backup ${r.id} done`);
    return { domain, ok: true, seconds: seconds(), level, backup: { id: r.id, level: r.level, reason: r.reason, parent: r.parent, bytesRead, bytesStored } };
  } catch (e) {
    const error = deps.signal?.aborted === true && !(e instanceof PullbackError) ? { code: 'ABORTED', message: 'interrupted' } : failure(e);
    deps.log(`${domain}: FAILED: ${error.message}`);
    return { domain, ok: false, seconds: seconds(), level, error };
  }
}

/** Prunes the selected domains that have backups, then gc (also when none has any). */
async function pruneSelected(config: RunConfig, repo: Repository, domains: string[], now: Date, signal: AbortSignal | undefined): Promise<PruneReport> {
  const present = new Set(repo.listBackups().map((b) => b.domain));
  const policy: RetentionPolicy = { ...config.retention.counts };
  if (config.retention.keepWithin !== undefined) policy.keepWithin = durationMs(config.retention.keepWithin, now, { timeZone: config.retention.timeZone });
  return pruneRepository(repo, {
    policy,
    now,
    timeZone: config.retention.timeZone,
    domains: domains.filter((d) => present.has(d)),
    ...(signal !== undefined ? { signal } : {}),
  });
}

function metricsOf(report: RunReport, repo: Repository): RunMetrics {
  return {
    started: report.started,
    seconds: report.seconds,
    success: report.ok,
    pruneRemoved: report.prune?.removed ?? 0,
    gcFreedBytes: report.prune?.gc?.bytesFreed ?? 0,
    domains: report.domains.map((d) => {
      const last = repo.latestComplete(d.domain);
      return {
        domain: d.domain,
        ...(last !== undefined ? { lastSuccess: last.time } : {}),
        success: d.ok,
        seconds: d.seconds,
        bytesRead: d.backup?.bytesRead ?? 0,
        bytesStored: d.backup?.bytesStored ?? 0,
      };
    }),
  };
}
