// What the store's parts (writer, check, gc, repair) share about one open repository.
import type { RepoConfig } from './config.js';
import type { IndexDb } from './index-db.js';
import type { Layout } from './layout.js';
import type { WorkerPool } from './worker-pool.js';

export interface StoreContext {
  readonly dir: string;
  readonly layout: Layout;
  readonly config: RepoConfig;
  readonly idb: IndexDb;
  /** Reports a condition the user must hear about (stale lock reclaimed, dead backup failed). */
  warn(message: string): void;
  /** The repository's worker pool, started on first use. */
  pool(): WorkerPool;
}
