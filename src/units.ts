// Byte units for messages below the CLI (which has its own scaled formatBytes in
// cli/progress.ts): sizes in error messages are given in MiB with one decimal.
export const MiB = 1024 * 1024;

/** 12582912 -> "12.0 MiB". */
export function formatMiB(bytes: number): string {
  return `${(bytes / MiB).toFixed(1)} MiB`;
}
