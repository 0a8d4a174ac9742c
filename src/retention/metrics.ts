// Prometheus metrics of a nightly run for node_exporter's textfile collector (text
// exposition format 0.0.4). The file is written to a temporary name in the same directory
// and renamed over the old one, so the collector never reads a half-written file (it only
// reads *.prom; the temporary name does not end in .prom).
//
// Per domain (label domain="..."):
//   pullback_last_success_timestamp_seconds  time of the newest complete backup in the repository
//   pullback_last_run_success                1 if this run backed the domain up, else 0
//   pullback_duration_seconds                how long this run's backup of the domain took
//   pullback_bytes_read                      bytes this run read from the domain's disks
//   pullback_bytes_stored                    bytes of new chunk files this run stored for it
// Per run: pullback_run_timestamp_seconds, pullback_run_duration_seconds, pullback_run_success,
// pullback_prune_removed_backups, pullback_gc_freed_bytes.
import { rename, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { PullbackError } from '../errors.js';

export interface DomainMetrics {
  domain: string;
  /** Newest complete backup's time, if the domain has one. */
  lastSuccess?: Date;
  success: boolean;
  seconds: number;
  bytesRead: number;
  bytesStored: number;
}

export interface RunMetrics {
  started: Date;
  seconds: number;
  success: boolean;
  pruneRemoved: number;
  gcFreedBytes: number;
  domains: DomainMetrics[];
}

const PER_DOMAIN: Array<[string, string, (d: DomainMetrics) => number | undefined]> = [
  ['pullback_last_success_timestamp_seconds', 'Time of the newest complete backup of the domain (Unix seconds).', (d) => (d.lastSuccess === undefined ? undefined : d.lastSuccess.getTime() / 1000)],
  ['pullback_last_run_success', 'Whether the last run backed the domain up (1) or failed (0).', (d) => (d.success ? 1 : 0)],
  ['pullback_duration_seconds', 'Duration of the domain backup in the last run.', (d) => d.seconds],
  ['pullback_bytes_read', 'Bytes read from the domain disks in the last run.', (d) => d.bytesRead],
  ['pullback_bytes_stored', 'Bytes of new chunk files stored for the domain in the last run.', (d) => d.bytesStored],
];

/** Label value escaping of the exposition format: backslash, double quote, newline. */
function label(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function num(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toFixed(3);
}

export function metricsText(m: RunMetrics): string {
  const out: string[] = [];
  for (const [name, help, get] of PER_DOMAIN) {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`);
    for (const d of m.domains) {
      const v = get(d);
      if (v !== undefined) out.push(`${name}{domain="${label(d.domain)}"} ${num(v)}`);
    }
  }
  const run: Array<[string, string, number]> = [
    ['pullback_run_timestamp_seconds', 'When the last run started (Unix seconds).', m.started.getTime() / 1000],
    ['pullback_run_duration_seconds', 'Duration of the last run.', m.seconds],
    ['pullback_run_success', 'Whether every domain, the prune and gc of the last run succeeded (1) or not (0).', m.success ? 1 : 0],
    ['pullback_prune_removed_backups', 'Backups the last run pruned.', m.pruneRemoved],
    ['pullback_gc_freed_bytes', 'Bytes of chunk files the last run garbage-collected.', m.gcFreedBytes],
  ];
  for (const [name, help, v] of run) out.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`, `${name} ${num(v)}`);
  return `${out.join('\n')}\n`;
}

/** Writes the metrics file atomically (temporary file in the same directory, then rename). */
export async function writeMetricsFile(path: string, m: RunMetrics): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  try {
    await writeFile(tmp, metricsText(m), { mode: 0o644 });
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw new PullbackError('REPO_IO', `cannot write metrics file ${path}: ${(e as Error).message}`, { cause: e });
  }
}
