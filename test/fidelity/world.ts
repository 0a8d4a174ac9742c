// What a fidelity run works on: a fresh repository and a few throwaway libvirt domains.
//
// Terms: the *work dir* (under /var/tmp: snapshots and restores are big) holds the
// repository `repo/`, the backup scratch dir `scratch/`, the domains' images and references
// `domains/`, the model's snapshots `snaps/` and restore outputs `restores/`. Disk sizes are
// multiples of 512 that are mostly not multiples of the chunk size, so the partial last
// chunk of a disk is exercised; one disk in a few is raw (no bitmap: read whole every time).
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createTestDomain, type TestDomain } from '../helpers/domain.js';
import { Pullback, brief } from './pb.js';
import type { Rng } from './rng.js';

const KiB = 1024;
const MiB = 1024 * KiB;

export interface World {
  work: string;
  pb: Pullback;
  chunkSize: number;
  domains: TestDomain[];
  snaps: string;
  restores: string;
}

export async function createWorld(rng: Rng, opts: { domains: number; baseDir: string }): Promise<World> {
  await mkdir(opts.baseDir, { recursive: true });
  const work = await mkdtemp(join(opts.baseDir, `fid-${rng.seed}-`));
  const dirs = ['repo', 'scratch', 'domains', 'snaps', 'restores'].map((d) => join(work, d));
  for (const d of dirs.slice(1)) await mkdir(d, { recursive: true });
  const pb = new Pullback(join(work, 'repo'), join(work, 'scratch'));
  const chunkSize = rng.pick([64 * KiB, 256 * KiB, 1 * MiB]);
  const init = await pb.run(['init', '--repo', pb.repo, '--chunk-size', String(chunkSize)]);
  if (init.code !== 0) throw new Error(`pullback init failed: ${brief(init)}`);
  const world: World = { work, pb, chunkSize, domains: [], snaps: join(work, 'snaps'), restores: join(work, 'restores') };
  try {
    for (let i = 0; i < opts.domains; i++) {
      const disks = Array.from({ length: rng.int(2, 3) }, () => ({
        // 8-40 MiB plus a random number of sectors (usually not a chunk or cluster multiple).
        size: rng.int(8, 40) * MiB + (rng.chance(0.7) ? rng.int(1, 2047) * 512 : 0),
        format: rng.chance(0.15) ? ('raw' as const) : ('qcow2' as const),
      }));
      // At least one qcow2 disk: without one a domain can take no checkpoint at all.
      if (disks.every((d) => d.format === 'raw')) (disks[0] as { format: 'qcow2' | 'raw' }).format = 'qcow2';
      world.domains.push(await createTestDomain({ disks, dir: join(work, 'domains') }));
    }
  } catch (e) {
    await destroyWorld(world, { keepFiles: false });
    throw e;
  }
  return world;
}

/** Destroys the domains always; removes the files unless asked to keep them (post-mortem). */
export async function destroyWorld(world: World, opts: { keepFiles: boolean }): Promise<void> {
  const problems: string[] = [];
  for (const d of world.domains) {
    // Another fidelity run may be restarting libvirtd right now: retry for a while.
    for (let attempt = 1; ; attempt++) {
      try {
        await d.destroy();
        break;
      } catch (e) {
        if (attempt >= 10 || !/failed to connect to the hypervisor/.test(String(e))) {
          problems.push(String(e));
          break;
        }
        await new Promise((r) => setTimeout(r, 3000));
      }
    }
  }
  if (!opts.keepFiles) await rm(world.work, { recursive: true, force: true });
  if (problems.length > 0) throw new Error(`cleanup: ${problems.join('; ')}`);
}
