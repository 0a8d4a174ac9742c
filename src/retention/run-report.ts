// Printing a RunReport: a summary table for the journal (systemd captures stdout), or one
// JSON object for scripts.
import type { RunReport } from './run.js';

const MB = 1e6;

function bytes(n: number): string {
  return n >= 1e9 ? `${(n / 1e9).toFixed(2)} GB` : `${(n / MB).toFixed(1)} MB`;
}

function table(rows: string[][]): string[] {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd());
}

export function runText(r: RunReport): string {
  const rows = [['DOMAIN', 'RESULT', 'LEVEL', 'BACKUP', 'READ', 'STORED', 'TIME']];
  for (const d of r.domains) {
    rows.push([
      d.domain,
      d.ok ? 'ok' : 'FAILED',
      d.backup?.level ?? '-',
      d.backup?.id ?? '-',
      d.backup === undefined ? '-' : bytes(d.backup.bytesRead),
      d.backup === undefined ? '-' : bytes(d.backup.bytesStored),
      `${d.seconds.toFixed(1)} s`,
    ]);
  }
  const out = table(rows);
  for (const d of r.domains) if (d.error !== undefined) out.push(`${d.domain}: [${d.error.code}] ${d.error.message}`);
  if (r.prune !== null) {
    const gc = r.prune.gc;
    out.push(`prune: removed ${r.prune.removed} backup(s), kept ${r.prune.kept}${gc === null ? '' : `; gc deleted ${gc.chunksDeleted} chunk(s), freed ${bytes(gc.bytesFreed)}`}`);
  }
  if (r.pruneError !== undefined) out.push(`prune FAILED: [${r.pruneError.code}] ${r.pruneError.message}`);
  if (r.metricsError !== undefined) out.push(`metrics FAILED: ${r.metricsError.message}`);
  else if (r.metricsFile !== null) out.push(`metrics written to ${r.metricsFile}`);
  const failed = r.domains.filter((d) => !d.ok).length;
  out.push(`${r.domains.length} domain(s): ${r.domains.length - failed} ok, ${failed} failed; ${r.ok ? 'run OK' : 'run FAILED'} in ${r.seconds.toFixed(1)} s`);
  return `${out.join('\n')}\n`;
}

export function runJson(r: RunReport): object {
  return {
    ok: r.ok,
    started: r.started.toISOString(),
    seconds: r.seconds,
    repository: r.repository,
    domains: r.domains,
    prune:
      r.prune === null
        ? null
        : { removed: r.prune.removed, kept: r.prune.kept, domains: r.prune.domains.map((d) => ({ domain: d.domain, removed: d.removed, kept: d.kept })), gc: r.prune.gc },
    ...(r.pruneError !== undefined ? { pruneError: r.pruneError } : {}),
    metricsFile: r.metricsFile,
    ...(r.metricsError !== undefined ? { metricsError: r.metricsError } : {}),
  };
}
