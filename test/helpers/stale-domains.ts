// Finding and removing what crashed test runs left behind: pbtest-* domains whose creating
// process is gone, and pbtest-* temp directories whose owner file names a dead process.
//
// Terms: the *owner marker* is the <description> of every helper-made domain,
// "pullback-test-domain pid=PID dir=DIR owns-dir=yes|no"; a domain is *stale* when PID is not
// alive (or the marker is missing). Domains of live processes (tests running in parallel)
// are never touched.
import { readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { isPullbackError } from '../../src/errors.js';
import type { ErrorCode } from '../../src/errors.js';
import { VirshLibvirt } from '../../src/libvirt/virsh.js';
import { childText, parseXml } from '../../src/libvirt/xml-tree.js';

export const TEST_DOMAIN_PREFIX = 'pbtest-';
const MARKER = 'pullback-test-domain';

export function ownerMarker(dir: string, ownsDir: boolean): string {
  return `${MARKER} pid=${process.pid} dir=${dir} owns-dir=${ownsDir ? 'yes' : 'no'}`;
}

/** Runs `fn`, treating PullbackErrors with one of `codes` as success. */
export async function ignoring(codes: ErrorCode[], fn: () => Promise<unknown>): Promise<void> {
  try {
    await fn();
  } catch (e) {
    if (codes.some((c) => isPullbackError(e, c))) return;
    throw e;
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Destroys and undefines pbtest-* domains whose creating process is gone (crashed or killed
 * runs) and removes their directories, plus orphaned pbtest-* temp directories.
 */
export async function cleanupStaleTestDomains(): Promise<void> {
  const libvirt = new VirshLibvirt();
  for (const name of await libvirt.listDomains()) {
    if (!name.startsWith(TEST_DOMAIN_PREFIX)) continue;
    let description = '';
    try {
      description = childText(parseXml(await libvirt.dumpXml(name, { inactive: true }), name).root, 'description') ?? '';
    } catch (e) {
      if (isPullbackError(e, 'DOMAIN_NOT_FOUND')) continue; // someone else just removed it
      throw e;
    }
    const m = new RegExp(`^${MARKER} pid=(\\d+) dir=(\\S+) owns-dir=(yes|no)$`).exec(description.trim());
    if (m !== null && pidAlive(Number(m[1]))) continue;
    await ignoring(['DOMAIN_NOT_RUNNING', 'DOMAIN_NOT_FOUND'], () => libvirt.destroy(name));
    await ignoring(['DOMAIN_NOT_FOUND'], () => libvirt.undefine(name, { checkpointsMetadata: true }));
    const dir = m?.[2];
    if (m?.[3] === 'yes' && dir !== undefined && basename(dir).startsWith(TEST_DOMAIN_PREFIX)) {
      await rm(dir, { recursive: true, force: true });
    }
  }
  // Directories of runs that died before (or after) their domain existed.
  for (const entry of await readdir(tmpdir())) {
    if (!entry.startsWith(TEST_DOMAIN_PREFIX)) continue;
    const dir = join(tmpdir(), entry);
    const owner = (await readdir(dir).catch(() => [])).find((f) => f.endsWith('.owner.json'));
    if (owner === undefined) continue;
    try {
      const { pid } = JSON.parse(await readFile(join(dir, owner), 'utf8')) as { pid: number };
      if (!pidAlive(pid)) await rm(dir, { recursive: true, force: true });
    } catch {
      // unreadable or half-written owner file: leave it
    }
  }
}
