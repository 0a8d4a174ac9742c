import { describe, expect, it } from 'vitest';
import { batchComplete, buildBatch, splitBatch } from './virsh-batch.js';

describe('virsh batch', () => {
  it('quotes every argument the way virsh parses it, a quote included, and marks each command', () => {
    const s = buildBatch([['domstate', '--domain', "it's; a name"], ['version']], '@@t');
    expect(s).toBe(
      `echo '@@t' 's@@' ; echo --err '@@t' 's@@' ; ` +
        `'domstate' '--domain' 'it'\\''s; a name' ; echo '@@t' '0@@' ; echo --err '@@t' '0@@' ; ` +
        `'version' ; echo '@@t' '1@@' ; echo --err '@@t' '1@@'`,
    );
    // The line itself never contains a printed mark, so an echo of it cannot be mistaken for one.
    expect(s).not.toContain('@@t 0@@');
  });

  it("cuts each command's stdout and stderr out of the two streams, ignoring what came before", () => {
    const line = buildBatch([['a'], ['b'], ['c']], '@@t');
    const stdout = `virsh # ${line}\n@@t s@@running\n@@t 0@@@@t 1@@pullback.1\npullback.2\n@@t 2@@`;
    const stderr = "error: stale\nerror: @@t s@@\nerror: @@t 0@@\nerror: failed to get domain 'x'\nerror: @@t 1@@\nerror: @@t 2@@\n";
    expect(batchComplete(stdout, stderr, 3, '@@t')).toBe(true);
    expect(splitBatch(stdout, stderr, 3, '@@t')).toEqual([
      { stdout: 'running\n', stderr: '' },
      { stdout: '', stderr: "error: failed to get domain 'x'\n" },
      { stdout: 'pullback.1\npullback.2\n', stderr: '' },
    ]);
  });

  it('attributes nothing when virsh stopped before the end (no connection)', () => {
    const stderr = 'error: failed to connect to the hypervisor\n';
    expect(splitBatch('', stderr, 2, '@@t')).toBeUndefined();
    expect(batchComplete('@@t s@@x@@t 0@@', 'error: @@t s@@\nerror: @@t 0@@\n', 2, '@@t')).toBe(false);
    expect(splitBatch('@@t s@@x@@t 0@@', 'error: @@t s@@\nerror: @@t 0@@\n', 2, '@@t')).toBeUndefined();
  });
});
