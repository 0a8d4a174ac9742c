// A separate process for multi-process store tests (crash, concurrency, locks). Run with
// `node --import tsx test/store/child.ts MODE REPO ...`; it reports progress as lines on stdout.
//   ingest DOMAIN CHUNKS SEED [SHARED [PAUSE_AT FILE]]
//                                       full backup of disk vda (CHUNKS chunks of the repo's chunk
//                                       size); chunks < SHARED use seed 0, so two children share
//                                       them; before chunk PAUSE_AT, print "paused" and wait for FILE
//   hold-lock KIND                      take a lock and wait to be killed
// The store comes from dist/ (built from src/ by test/global-setup.ts before every run), so
// the child's worker threads start as plain JavaScript instead of each loading tsx.
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { seededChunk } from './helpers.js';

type Store = typeof import('../../src/store/index.js');
type Locks = typeof import('../../src/store/lock.js');
const { Repository } = (await import(new URL('../../dist/store/index.js', import.meta.url).href)) as Store;
const { acquireLock } = (await import(new URL('../../dist/store/lock.js', import.meta.url).href)) as Locks;
type LockKind = Parameters<Locks['acquireLock']>[1];

const [mode, repoDir, ...rest] = process.argv.slice(2);
const say = (s: string): void => {
  process.stdout.write(`${s}\n`);
};

if (mode === 'ingest' && repoDir !== undefined) {
  const [domain = 'vm', chunksArg = '10', seedArg = '1', sharedArg = '0', pauseAtArg = '-1', pauseFile = ''] = rest;
  const pauseAt = Number(pauseAtArg);
  const chunks = Number(chunksArg);
  const seed = Number(seedArg);
  const shared = Number(sharedArg);
  const repo = await Repository.open(repoDir, { workers: 2, lockWaitMs: 30_000, onWarning: (m) => say(`warning ${m}`) });
  const cs = repo.config.chunkSize;
  const w = await repo.beginBackup({ domain, level: 'full', parentId: null, checkpoint: 'c', disks: [{ name: 'vda', size: chunks * cs }] });
  say(`begun ${w.id}`);
  for (let i = 0; i < chunks; i++) {
    if (i === pauseAt) {
      say('paused');
      while (!existsSync(pauseFile)) await sleep(20);
    }
    await w.ingest('vda', i, seededChunk(cs, i < shared ? 0 : seed, i));
    say(`ingested ${i}`);
  }
  say('completing');
  const rec = await w.complete();
  say(`complete ${rec.id}`);
  await repo.close();
} else if (mode === 'hold-lock' && repoDir !== undefined) {
  await acquireLock(`${repoDir}/locks`, (rest[0] ?? 'gc') as LockKind, 'test child', { onWarning: (m) => say(`warning ${m}`) });
  say('locked');
  setInterval(() => undefined, 1000);
} else {
  process.stderr.write('usage: child.ts ingest REPO DOMAIN CHUNKS SEED [SHARED] | hold-lock REPO KIND\n');
  process.exit(2);
}
