// Seeds that found defects, replayed by fidelity.test.ts up to the step where each failed
// (the full history is in docs/fidelity.md). A seed's plan (plan.ts: kinds, targets, kill
// moments) does not depend on timing, so it replays the situation; when a change of the
// driver changes plans, find a seed that reaches the same situation again with `planRun`
// (docs/fidelity.md shows how) and check that it fails without the fix.
export interface Regression {
  seed: number;
  steps: number;
  defect: string;
  /** The defect needs a libvirtd restart to show. */
  libvirtdRestarts?: boolean;
}

export const REGRESSIONS: Regression[] = [
  // Defect 1 (found by seed 3): domain 2 is shut off at step 2; at step 6 its offline
  // backup is SIGKILLed 208 ms after qemu-nbd serves; starting it at step 7 failed on the
  // image lock of the qemu-nbd left behind (checked: fails without the fix).
  { seed: 358, steps: 7, defect: 'a killed offline backup must not leave qemu-nbd holding the images' },
];
