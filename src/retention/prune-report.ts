// Printing a PruneReport: a table per domain for people, one JSON object for scripts.
import type { PruneReport } from './prune.js';

const MB = 1e6;

function when(d: Date): string {
  return d.toISOString().replace('T', ' ').slice(0, 16);
}

export function pruneText(r: PruneReport): string {
  const out: string[] = [];
  for (const d of r.domains) {
    out.push(`domain ${d.domain}: keep ${d.kept}, remove ${d.removed}`);
    for (const x of d.decisions) {
      const why = [...x.reasons];
      if (x.mergedInto !== undefined) why.push(`rows merged into ${x.mergedInto.join(', ')}`);
      out.push(`  ${x.keep ? 'keep  ' : 'remove'}  ${x.id}  ${when(x.time)}  ${x.level.padEnd(11)}  ${x.status === 'complete' ? '' : `[${x.status}] `}${why.join(', ')}`);
    }
  }
  const verb = r.dryRun ? 'would remove' : 'removed';
  out.push(`${verb} ${r.removed} backup(s), kept ${r.kept}${r.dryRun ? ' (dry run: nothing changed)' : ''}`);
  if (r.gc !== null) {
    out.push(`gc: deleted ${r.gc.chunksDeleted} unreferenced chunk(s), freed ${(r.gc.bytesFreed / MB).toFixed(1)} MB; ${r.gc.chunksKept} chunk(s) kept`);
    for (const w of r.gc.warnings) out.push(`warning: ${w}`);
  } else if (!r.dryRun) {
    out.push('gc: skipped (--no-gc); run `pullback gc` to free the space');
  }
  return `${out.join('\n')}\n`;
}

export function pruneJson(r: PruneReport): object {
  return {
    dryRun: r.dryRun,
    now: r.now.toISOString(),
    removed: r.removed,
    kept: r.kept,
    domains: r.domains.map((d) => ({
      domain: d.domain,
      removed: d.removed,
      kept: d.kept,
      rowsMerged: d.rowsMerged,
      decisions: d.decisions.map((x) => ({
        id: x.id,
        time: x.time.toISOString(),
        level: x.level,
        status: x.status,
        keep: x.keep,
        reasons: x.reasons,
        ...(x.mergedInto !== undefined ? { mergedInto: x.mergedInto } : {}),
      })),
      merges: d.merges,
    })),
    gc: r.gc,
  };
}
