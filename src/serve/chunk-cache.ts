// The cache of decompressed, verified chunks: a fixed set of chunk-sized *slots* in shared
// memory (chunk-pool.ts), keyed by digest, so chunks shared between offsets are held once and
// memory is bounded by slots x chunk size whatever clients do. A *reference* pins a slot while
// its bytes are being sent; only unpinned slots are reused, least recently used first.
// Concurrent readers of one chunk share a single load. When every slot is pinned, a chunk is
// loaded into a private buffer through the fallback loader instead of waiting (waiting could
// deadlock readers that each pin slots while needing more; serve's fallback is a worker
// loading into a one-off shared buffer). Failed loads free their slot.
import { toHex } from '../store/hash.js';

export interface ChunkRef {
  /** The chunk's plaintext: valid until release(). */
  data: Buffer;
  /** Unpins the slot; idempotent. */
  release(): void;
}

/** Where slots live and how a chunk gets into one (ChunkPool). */
export interface SlotSource {
  readonly slotCount: number;
  slot(i: number): Buffer;
  load(hex: string, slot: number): Promise<number>;
}

export interface CacheStats {
  hits: number;
  misses: number;
  /** Reads that joined a load already under way. */
  joined: number;
  /** Loads that found every slot pinned and used a private buffer. */
  overflows: number;
  /** Slots holding a chunk (or loading one). */
  slotsUsed: number;
}

interface Slot {
  index: number;
  view: Buffer;
  key: string | null;
  length: number;
  refs: number;
  loading: Promise<void> | null;
}

const NO_RELEASE = (): void => undefined;

export class ChunkCache {
  private readonly byKey = new Map<string, Slot>();
  private readonly free: Slot[] = [];
  private hits = 0;
  private misses = 0;
  private joined = 0;
  private overflows = 0;

  constructor(
    private readonly source: SlotSource,
    private readonly fallback: (digest: Buffer) => Promise<Buffer>,
  ) {
    for (let i = source.slotCount - 1; i >= 0; i--) {
      this.free.push({ index: i, view: source.slot(i), key: null, length: 0, refs: 0, loading: null });
    }
  }

  async acquire(digest: Buffer): Promise<ChunkRef> {
    const key = digest.toString('latin1');
    const found = this.byKey.get(key);
    if (found !== undefined) {
      // Map order is insertion order: re-inserting makes this the most recently used.
      this.byKey.delete(key);
      this.byKey.set(key, found);
      found.refs++;
      if (found.loading !== null) {
        this.joined++;
        await found.loading; // on failure the slot was already reset: nothing to unpin
      } else {
        this.hits++;
      }
      return this.ref(found);
    }
    const s = this.startLoad(key, digest, 1);
    if (s === undefined) {
      this.overflows++;
      return { data: await this.fallback(digest), release: NO_RELEASE };
    }
    this.misses++;
    await s.loading;
    return this.ref(s);
  }

  /** Starts loading a chunk a reader will probably want next, if a slot is free; never pins. */
  prefetch(digest: Buffer): void {
    const key = digest.toString('latin1');
    if (this.byKey.has(key)) return;
    this.startLoad(key, digest, 0)?.loading?.catch(() => undefined);
  }

  stats(): CacheStats {
    return { hits: this.hits, misses: this.misses, joined: this.joined, overflows: this.overflows, slotsUsed: this.byKey.size };
  }

  private startLoad(key: string, digest: Buffer, refs: number): Slot | undefined {
    const s = this.takeSlot();
    if (s === undefined) return undefined;
    s.key = key;
    s.refs = refs;
    this.byKey.set(key, s);
    s.loading = this.source.load(toHex(digest), s.index).then(
      (length) => {
        s.length = length;
        s.loading = null;
      },
      (e: unknown) => {
        this.byKey.delete(key);
        s.key = null;
        s.refs = 0;
        s.loading = null;
        this.free.push(s);
        throw e;
      },
    );
    return s;
  }

  private takeSlot(): Slot | undefined {
    const f = this.free.pop();
    if (f !== undefined) return f;
    for (const [key, s] of this.byKey) {
      if (s.refs === 0 && s.loading === null) {
        this.byKey.delete(key);
        s.key = null;
        return s;
      }
    }
    return undefined;
  }

  private ref(s: Slot): ChunkRef {
    let released = false;
    return {
      data: s.view.subarray(0, s.length),
      release: () => {
        if (released) return;
        released = true;
        s.refs--;
      },
    };
  }
}
