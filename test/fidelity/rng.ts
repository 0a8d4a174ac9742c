// The fidelity driver's randomness: every choice of a run comes from one seeded generator, so
// a seed replays the same sequence of steps (timing-dependent outcomes aside: how far a
// killed process got, which backups a time-based prune keeps).
//
// Terms: `int(lo, hi)` is inclusive on both ends; `weighted` picks a key with probability
// proportional to its weight (weights of 0 never win).
import { xorshift } from '../helpers/seeded-random.js';

export class Rng {
  private readonly next: () => number;

  constructor(readonly seed: number) {
    // xorshift32 of a small seed starts with tiny numbers; a mixed seed avoids that.
    this.next = xorshift(Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) >>> 0);
    for (let i = 0; i < 8; i++) this.next();
  }

  float(): number {
    return this.next();
  }

  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('Rng.pick: empty list');
    return items[Math.floor(this.next() * items.length)] as T;
  }

  /** Up to `n` distinct items, in random order. */
  sample<T>(items: readonly T[], n: number): T[] {
    const copy = [...items];
    const out: T[] = [];
    while (out.length < n && copy.length > 0) out.push(copy.splice(Math.floor(this.next() * copy.length), 1)[0] as T);
    return out;
  }

  weighted<K extends string>(weights: Readonly<Record<K, number>>): K {
    const entries = Object.entries(weights) as Array<[K, number]>;
    const total = entries.reduce((a, [, w]) => a + w, 0);
    let x = this.next() * total;
    for (const [k, w] of entries) {
      if (w <= 0) continue;
      if (x < w) return k;
      x -= w;
    }
    const last = entries.filter(([, w]) => w > 0).pop();
    if (last === undefined) throw new Error('Rng.weighted: no positive weight');
    return last[0];
  }
}
