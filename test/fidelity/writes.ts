// Random guest writes for the fidelity driver, all through the domain helper (real guest
// writes over HMP qemu-io, or qemu-io on the image of a shut-off domain; the helper mirrors
// each into the disk's reference).
//
// Kinds (one is drawn per operation):
// - random: incompressible bytes at a random, often unaligned offset, 1 byte to 3 MiB;
// - text: compressible bytes (a repeated phrase with a counter);
// - dedup: the same bytes at chunk-aligned offsets of two disks, often of two domains,
//   so the store keeps one copy referenced from several disks;
// - zero: `write -z`, sometimes with `-u` (unmap);
// - discard: guest TRIM/UNMAP of a range (qcow2 drops only whole clusters: domain.ts);
// - tail: a write that ends at the last byte of the disk.
import type { TestDomain } from '../helpers/domain.js';
import { seededBytes } from '../helpers/seeded-random.js';
import type { Rng } from './rng.js';

const KiB = 1024;
const MiB = 1024 * KiB;

export type WriteKind = 'random' | 'text' | 'dedup' | 'zero' | 'discard' | 'tail';

export const WRITE_WEIGHTS: Record<WriteKind, number> = { random: 5, text: 2, dedup: 2, zero: 2, discard: 2, tail: 2 };

/** One random guest write operation; returns its description for the step log. */
export async function randomWrite(rng: Rng, domains: readonly TestDomain[], chunkSize: number): Promise<string> {
  const kind = rng.weighted(WRITE_WEIGHTS);
  const dom = rng.pick(domains);
  const disk = rng.pick(dom.disks);
  const where = `${dom.name}/${disk.target}`;
  const length = (max: number): number => Math.min(max, rng.chance(0.3) ? rng.int(1, 8 * KiB) : rng.int(1, 3 * MiB));
  const offsetFor = (len: number): number => {
    const off = rng.int(0, disk.size - len);
    return rng.chance(0.4) ? off - (off % 4096) : off;
  };
  switch (kind) {
    case 'random': {
      const len = length(disk.size);
      const off = offsetFor(len);
      await dom.write(disk.target, off, seededBytes(`${rng.seed}:${rng.int(0, 1e9)}`, len));
      return `random ${where} @${off}+${len}`;
    }
    case 'text': {
      const len = length(disk.size);
      const off = offsetFor(len);
      await dom.write(disk.target, off, textBytes(len, rng.int(0, 1e6)));
      return `text ${where} @${off}+${len}`;
    }
    case 'dedup': {
      const chunks = rng.int(1, 3);
      const len = chunks * chunkSize;
      const data = seededBytes(`dedup:${rng.seed}:${rng.int(0, 1e9)}`, len);
      const targets: string[] = [];
      for (let i = 0; i < 2; i++) {
        const d2 = i === 0 ? dom : rng.pick(domains);
        const k2 = rng.pick(d2.disks);
        const slots = Math.floor(k2.size / chunkSize) - chunks;
        if (slots < 0) continue;
        const off = rng.int(0, slots) * chunkSize;
        await d2.write(k2.target, off, data);
        targets.push(`${d2.name}/${k2.target}@${off}`);
      }
      return `dedup ${len} bytes to ${targets.join(', ')}`;
    }
    case 'zero': {
      const len = length(disk.size);
      const off = offsetFor(len);
      const unmap = rng.chance(0.5);
      await dom.writeZeroes(disk.target, off, len, { unmap });
      return `zero${unmap ? ' (unmap)' : ''} ${where} @${off}+${len}`;
    }
    case 'discard': {
      const len = length(disk.size);
      const off = rng.chance(0.2) ? disk.size - len : offsetFor(len);
      return `discard ${where} @${off}+${len} (${await dom.discard(disk.target, off, len)})`;
    }
    case 'tail': {
      const len = rng.chance(0.5) ? rng.int(1, 512) : rng.int(1, Math.min(disk.size, 2 * chunkSize));
      const off = disk.size - len;
      await dom.write(disk.target, off, seededBytes(`tail:${rng.seed}:${rng.int(0, 1e9)}`, len));
      return `tail ${where} @${off}+${len} (last byte ${disk.size - 1})`;
    }
  }
}

function textBytes(length: number, n: number): Buffer {
  const phrase = `pullback fidelity line ${n}: the quick brown fox jumps over the lazy dog\n`;
  return Buffer.from(phrase.repeat(Math.ceil(length / phrase.length)).slice(0, length));
}
