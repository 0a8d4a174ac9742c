// Synthetic backup chains written through the real store API, with a model of what the guest
// held at each backup's instant (until src/backup lands, this stands in for backup runs).
//
// Terms: the *model* is one Buffer per disk, the guest's content now; a *step* mutates the
// model and records a backup: the full records every chunk (data, or a zero marker via
// zero() or via ingest of zeros, or nothing at all for "absent" chunks that were never
// written), an incremental records only the chunks the step changed. Mutations cover what
// restore must get right: new data, zeros over earlier data, duplicated chunks (dedup),
// compressible text, partial writes inside a chunk, the short last chunk.
import { createHash } from 'node:crypto';
import type { BackupRecord, Repository } from '../../src/store/index.js';
import { seededChunk, textChunk } from '../store/helpers.js';
import { xorshift } from '../helpers/seeded-random.js';

export interface ChainDisk {
  name: string;
  size: number;
}

export interface ChainStep {
  record: BackupRecord;
  /** Disk name -> the guest content at this backup (copies). */
  images: Record<string, Buffer>;
}

export function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

export interface ChainOptions {
  domain: string;
  disks: ChainDisk[];
  /** Incrementals after the full. */
  incrementals: number;
  seed: number;
  domainXml?: string;
}

export async function buildChain(repo: Repository, opts: ChainOptions): Promise<ChainStep[]> {
  const cs = repo.config.chunkSize;
  const rand = xorshift(opts.seed);
  const pick = (n: number): number => Math.floor(rand() * n);
  let serial = opts.seed * 1000;
  const models = new Map(opts.disks.map((d) => [d.name, Buffer.alloc(d.size)]));
  const steps: ChainStep[] = [];
  const lengthOf = (d: ChainDisk, i: number): number => Math.min(cs, d.size - i * cs);

  // Full: about half the chunks random, some text, some zeros, the rest never written.
  const fullKinds = new Map<string, string[]>();
  for (const d of opts.disks) {
    const model = models.get(d.name) as Buffer;
    const n = Math.ceil(d.size / cs);
    const kinds: string[] = [];
    for (let i = 0; i < n; i++) {
      const r = rand();
      const dup = n > 4 && (i === 1 || i === 2);
      kinds.push(i === n - 1 || dup ? 'random' : r < 0.45 ? 'random' : r < 0.6 ? 'text' : r < 0.7 ? 'zero-marker' : r < 0.8 ? 'zero-ingest' : 'absent');
    }
    for (let i = 0; i < n; i++) {
      if (kinds[i] === 'random') seededChunk(cs, opts.seed, serial++).copy(model, i * cs, 0, lengthOf(d, i));
      if (kinds[i] === 'text') textChunk(cs, serial++).copy(model, i * cs, 0, lengthOf(d, i));
    }
    // Chunks 1 and 2 identical: dedup inside one backup.
    if (n > 4) model.copy(model, 2 * cs, 1 * cs, 2 * cs);
    fullKinds.set(d.name, kinds);
  }
  const full = await repo.beginBackup({
    domain: opts.domain,
    level: 'full',
    parentId: null,
    checkpoint: 'cp0',
    disks: opts.disks,
    ...(opts.domainXml !== undefined ? { domainXml: opts.domainXml } : {}),
  });
  for (const d of opts.disks) {
    const model = models.get(d.name) as Buffer;
    const kinds = fullKinds.get(d.name) as string[];
    for (let i = 0; i < kinds.length; i++) {
      const chunk = model.subarray(i * cs, i * cs + lengthOf(d, i));
      if (kinds[i] === 'absent') {
        chunk.fill(0);
        continue;
      }
      if (kinds[i] === 'zero-marker') {
        chunk.fill(0);
        full.zero(d.name, i);
      } else {
        if (kinds[i] === 'zero-ingest') chunk.fill(0);
        await full.ingest(d.name, i, chunk);
      }
    }
  }
  steps.push({ record: await full.complete(), images: snapshot(models) });

  for (let k = 1; k <= opts.incrementals; k++) {
    const changed = new Map<string, Set<number>>();
    for (const d of opts.disks) {
      const model = models.get(d.name) as Buffer;
      const n = Math.ceil(d.size / cs);
      const set = new Set<number>();
      const touches = 2 + pick(Math.max(2, Math.floor(n / 4)));
      for (let t = 0; t < touches; t++) {
        const i = t === 0 && k % 2 === 0 ? n - 1 : pick(n); // the short last chunk changes every other step
        const len = lengthOf(d, i);
        const base = i * cs;
        const what = pick(5);
        if (what === 0) {
          seededChunk(cs, opts.seed + k, serial++).copy(model, base, 0, len); // whole chunk new
        } else if (what === 1) {
          const off = pick(len);
          const piece = seededChunk(4096, opts.seed + k, serial++);
          piece.copy(model, base + off, 0, Math.min(4096, len - off)); // partial write inside a chunk
        } else if (what === 2) {
          model.fill(0, base, base + len); // zeros over earlier data
        } else if (what === 3) {
          const j = pick(n - 1); // duplicate of another full-length chunk
          if (j !== i) model.copy(model, base, j * cs, j * cs + len);
        } else {
          textChunk(cs, serial++).copy(model, base, 0, len);
        }
        set.add(i);
      }
      changed.set(d.name, set);
    }
    const prev = steps[steps.length - 1] as ChainStep;
    const w = await repo.beginBackup({
      domain: opts.domain,
      level: 'incremental',
      parentId: prev.record.id,
      checkpoint: `cp${k}`,
      disks: opts.disks,
      ...(opts.domainXml !== undefined ? { domainXml: opts.domainXml } : {}),
    });
    for (const d of opts.disks) {
      const model = models.get(d.name) as Buffer;
      for (const i of [...(changed.get(d.name) as Set<number>)].sort((a, b) => a - b)) {
        const chunk = model.subarray(i * cs, i * cs + lengthOf(d, i));
        // Zeros arrive both ways a backup can record them.
        if (chunk.every((b) => b === 0) && i % 2 === 0) w.zero(d.name, i);
        else await w.ingest(d.name, i, chunk);
      }
    }
    steps.push({ record: await w.complete(), images: snapshot(models) });
  }
  return steps;
}

function snapshot(models: Map<string, Buffer>): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (const [name, b] of models) out[name] = Buffer.from(b);
  return out;
}
