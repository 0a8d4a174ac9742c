// Where things live inside a repository directory. Everything except index.db can be read
// without the database, which is what makes `repair --rebuild-index` possible:
//   config.json            format version and parameters (config.ts)
//   index.db (+wal, shm)   SQLite index (index-db.ts), rebuildable
//   chunks/abcd/<hex64>    chunk files, fanned out by the first 4 hex digits of the digest
//   manifests/<id>.manifest one per complete backup (manifest.ts)
//   locks/                 lock files (lock.ts)
//   tmp/                   temporary files before their atomic rename
//   reserve                space kept for prune and gc on a full filesystem (reserve.ts)
import { join } from 'node:path';

export const CONFIG_FILE = 'config.json';
export const DB_FILE = 'index.db';

export interface Layout {
  root: string;
  config: string;
  db: string;
  chunks: string;
  manifests: string;
  locks: string;
  tmp: string;
  reserve: string;
}

export function layout(root: string): Layout {
  return {
    root,
    config: join(root, CONFIG_FILE),
    db: join(root, DB_FILE),
    chunks: join(root, 'chunks'),
    manifests: join(root, 'manifests'),
    locks: join(root, 'locks'),
    tmp: join(root, 'tmp'),
    reserve: join(root, 'reserve'),
  };
}

/** 65,536 fan-out directories keep directories small: 1M chunks is ~16 files per directory. */
export function chunkDir(chunksDir: string, hex: string): string {
  return join(chunksDir, hex.slice(0, 4));
}

export function chunkPath(chunksDir: string, hex: string): string {
  return join(chunksDir, hex.slice(0, 4), hex);
}

export function manifestPath(manifestsDir: string, backupId: string): string {
  return join(manifestsDir, `${backupId}.manifest`);
}

export const HEX64 = /^[0-9a-f]{64}$/;
