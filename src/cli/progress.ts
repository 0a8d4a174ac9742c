// Progress display for per-disk work: on a terminal one bar per disk (bytes, MB/s, ETA)
// through cli-progress; otherwise nothing while running and one line per disk at the end
// (printed by the command), so logs stay readable.
import { createRequire } from 'node:module';
import type { CliContext } from './context.js';

type CliProgress = typeof import('cli-progress');

export interface DiskProgressEvent {
  disk: string;
  bytesDone: number;
  bytesTotal: number;
}

export interface ProgressDisplay {
  update(e: DiskProgressEvent): void;
  stop(): void;
}

const MB = 1e6;

export function diskProgress(ctx: CliContext, enabled: boolean): ProgressDisplay {
  if (!enabled || !ctx.interactive) return { update: () => undefined, stop: () => undefined };
  // Loaded only for a terminal: it and its dependencies are ~20 ms of start-up (CommonJS).
  const cliProgress = createRequire(import.meta.url)('cli-progress') as CliProgress;
  const multi = new cliProgress.MultiBar(
    {
      stream: ctx.stderr as NodeJS.WriteStream,
      hideCursor: true,
      clearOnComplete: false,
      format: ' {disk} [{bar}] {percentage}% | {doneMB}/{totalMB} MB | {speed} MB/s | ETA {eta_formatted}',
      barsize: 30,
    },
    cliProgress.Presets.shades_classic,
  );
  const bars = new Map<string, { bar: InstanceType<CliProgress['SingleBar']>; started: number }>();
  return {
    update(e) {
      let b = bars.get(e.disk);
      if (b === undefined) {
        b = { bar: multi.create(Math.max(1, e.bytesTotal), 0, { disk: e.disk, doneMB: '0', totalMB: '0', speed: '0' }), started: Date.now() };
        bars.set(e.disk, b);
      }
      const secs = Math.max(0.001, (Date.now() - b.started) / 1000);
      b.bar.setTotal(Math.max(1, e.bytesTotal));
      b.bar.update(e.bytesTotal === 0 ? 1 : e.bytesDone, {
        disk: e.disk,
        doneMB: (e.bytesDone / MB).toFixed(0),
        totalMB: (e.bytesTotal / MB).toFixed(0),
        speed: (e.bytesDone / MB / secs).toFixed(0),
      });
    },
    stop() {
      multi.stop();
    },
  };
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}
