// A memory-bounded LRU of decompressed, verified chunks, keyed by digest (so chunks shared
// between offsets or disks are held once). Concurrent requests for a chunk share one load;
// at most `maxLoads` loads run at once, the rest wait their turn. A chunk larger than the
// whole budget is returned but not kept. Failed loads are not cached: the next read retries.
export type ChunkLoader = (digest: Buffer) => Promise<Buffer>;

export interface CacheStats {
  hits: number;
  misses: number;
  /** Reads that joined a load already under way. */
  joined: number;
  bytes: number;
  entries: number;
}

export class ChunkCache {
  private readonly entries = new Map<string, Buffer>();
  private readonly loading = new Map<string, Promise<Buffer>>();
  private readonly waiting: Array<() => void> = [];
  private running = 0;
  private bytes = 0;
  private hits = 0;
  private misses = 0;
  private joined = 0;

  constructor(
    private readonly load: ChunkLoader,
    private readonly maxBytes: number,
    private readonly maxLoads = 8,
  ) {}

  get(digest: Buffer): Promise<Buffer> {
    const key = digest.toString('latin1');
    const hit = this.entries.get(key);
    if (hit !== undefined) {
      this.hits++;
      // Map order is insertion order: re-inserting makes this the most recently used.
      this.entries.delete(key);
      this.entries.set(key, hit);
      return Promise.resolve(hit);
    }
    const pending = this.loading.get(key);
    if (pending !== undefined) {
      this.joined++;
      return pending;
    }
    this.misses++;
    const p = this.run(Buffer.from(digest)).then(
      (buf) => {
        this.loading.delete(key);
        this.insert(key, buf);
        return buf;
      },
      (e: unknown) => {
        this.loading.delete(key);
        throw e;
      },
    );
    this.loading.set(key, p);
    return p;
  }

  /** True when the chunk is cached or being loaded (read-ahead skips those). */
  has(digest: Buffer): boolean {
    const key = digest.toString('latin1');
    return this.entries.has(key) || this.loading.has(key);
  }

  stats(): CacheStats {
    return { hits: this.hits, misses: this.misses, joined: this.joined, bytes: this.bytes, entries: this.entries.size };
  }

  private async run(digest: Buffer): Promise<Buffer> {
    if (this.running >= this.maxLoads) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.running++;
    try {
      return await this.load(digest);
    } finally {
      this.running--;
      this.waiting.shift()?.();
    }
  }

  private insert(key: string, buf: Buffer): void {
    if (buf.length > this.maxBytes) return;
    this.entries.set(key, buf);
    this.bytes += buf.length;
    for (const [k, b] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(k);
      this.bytes -= b.length;
    }
  }
}
