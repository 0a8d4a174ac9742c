// Helpers for the serve tests: async child processes (the server runs in the test process,
// so a blocking execFileSync would deadlock it), the expected base:allocation map of a disk
// image, and a serve handle per test that is always closed.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { isAllZero } from '../../src/store/hash.js';
import { CHUNK } from './fixture.js';

export const execFileP = promisify(execFile);

export async function run(cmd: string, args: string[], opts: { timeoutMs?: number } = {}): Promise<string> {
  const { stdout } = await execFileP(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, timeout: opts.timeoutMs ?? 60_000 });
  return stdout;
}

/** [offset, length, flags] runs: a chunk reads as data unless it is all zeros (then hole|zero = 3). */
export function expectedMap(image: Buffer, chunk = CHUNK): Array<[number, number, number]> {
  const out: Array<[number, number, number]> = [];
  for (let off = 0; off < image.length; off += chunk) {
    const len = Math.min(chunk, image.length - off);
    const flags = isAllZero(image.subarray(off, off + len)) ? 3 : 0;
    const last = out[out.length - 1];
    if (last !== undefined && last[2] === flags) last[1] += len;
    else out.push([off, len, flags]);
  }
  return out;
}
