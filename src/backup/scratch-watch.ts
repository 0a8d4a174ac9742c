// The scratch watch. In a pull-mode backup QEMU keeps the data the guest overwrites during the
// job in scratch files (copy-before-write), so that the export still shows the disk as it was
// when the backup began. When the scratch filesystem fills up, QEMU fails the guest's write
// instead (seen here, QEMU 7.2 / libvirt 9.0: "write failed: No space left on device" for a
// write through the disk's own block backend; a guest's virtio write with QEMU's default
// werror=enospc would pause the VM). A backup must never do that to the guest: this watch polls
// the free space of the scratch directory while the job runs and, when it falls below the
// floor, reports it so the caller ends the job (after which guest writes no longer copy).
//   floor: the free space kept untouched; a guest must write that much within one poll
//          interval to get past the watch.
import { statfs } from 'node:fs/promises';
import { usableBytes } from '../store/no-space.js';
import { MiB } from '../units.js';

export interface ScratchSpace {
  /** Bytes this process may still write there. */
  free: number;
  /** Size of the filesystem in bytes. */
  total: number;
}

/** Default floor: 5% of the scratch filesystem, at least 64 MiB, at most 1 GiB. */
export function defaultScratchFloor(totalBytes: number): number {
  return Math.min(1024 * MiB, Math.max(64 * MiB, Math.floor(totalBytes * 0.05)));
}

export async function scratchSpace(dir: string): Promise<ScratchSpace> {
  const s = await statfs(dir);
  return { free: usableBytes(s), total: s.blocks * s.bsize };
}

export interface ScratchWatch {
  stop(): void;
}

/**
 * Polls `dir` every `intervalMs` and calls `onLow(space)` once when its free space is below
 * `floorBytes`; then stops. A failing statfs is not a reason to stop a backup: it is ignored.
 */
export function watchScratch(dir: string, floorBytes: number, intervalMs: number, onLow: (space: ScratchSpace) => void): ScratchWatch {
  let stopped = false;
  let busy = false;
  const timer = setInterval(() => {
    if (busy || stopped) return;
    busy = true;
    scratchSpace(dir).then(
      (space) => {
        busy = false;
        if (stopped || space.free >= floorBytes) return;
        stop();
        onLow(space);
      },
      () => {
        busy = false;
      },
    );
  }, intervalMs);
  timer.unref();
  const stop = (): void => {
    stopped = true;
    clearInterval(timer);
  };
  return { stop };
}
