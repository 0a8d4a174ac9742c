// Seeds that found defects, replayed by fidelity.test.ts up to the step where each failed
// (the full history is in docs/fidelity.md). A seed replays the same steps as long as the
// driver's drawing order is unchanged; when a driver change shifts it, re-find a seed that
// reaches the same situation and note it in docs/fidelity.md.
export interface Regression {
  seed: number;
  steps: number;
  defect: string;
  /** The defect needs a libvirtd restart to show. */
  libvirtdRestarts?: boolean;
}

export const REGRESSIONS: Regression[] = [
  // Defect 1: a backup of a shut-off domain killed at step 24 left qemu-nbd holding the
  // image lock; the offline guest write of step 25 failed.
  { seed: 3, steps: 25, defect: 'a killed offline backup must not leave qemu-nbd holding the images' },
];
