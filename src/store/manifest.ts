// Backup manifests: each complete backup's metadata and its own chunk-map rows, written beside
// the chunks as manifests/<id>.manifest so the index can be rebuilt from storage alone
// (repair.ts) and cross-checked (check.ts). One zstd frame with content checksum holding:
//   "PBMANIF1"  magic (8 bytes)
//   u32 LE n, n bytes of JSON  ManifestMeta (disks in order, each with its row count)
//   per disk, `rows` records in chunk-index order:
//     u8 kind (0 zero, 1 data), u48 LE chunk index, [32-byte digest if data]
//   "PBMEND01"  end magic
// Rows are the backup's own rows, not the resolved chain, so prune can merge a deleted
// backup's rows into its successor and rewrite just that successor's manifest.
import { createReadStream } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { writeAll, writeStreamAtomic } from './atomic-file.js';
import { zstdNapi } from './codec.js';
import { DIGEST_BYTES } from './hash.js';
import type { BackupRow, DB } from './index-db.js';
import type { BackupLevel, DiskStats } from './types.js';

const MAGIC = Buffer.from('PBMANIF1');
const END = Buffer.from('PBMEND01');
const REC_ZERO = 0;
const REC_DATA = 1;
const PAGE = 16384;

export interface ManifestMeta {
  manifestVersion: 1;
  chunkSize: number;
  backup: {
    id: string;
    domain: string;
    time: string;
    level: BackupLevel;
    parentId: string | null;
    checkpoint: string;
    domainXml?: string;
    checkpointXml?: string;
  };
  disks: Array<DiskStats & { rows: number }>;
}

/**
 * A manifest's metadata for a backup, from its index row alone: the completing writer and the
 * rewrite after a removal must produce the same fields, so both call this.
 */
export function manifestMeta(row: BackupRow, chunkSize: number): Omit<ManifestMeta, 'disks'> {
  return {
    manifestVersion: 1,
    chunkSize,
    backup: {
      id: row.id,
      domain: row.domain,
      time: new Date(row.time_ms).toISOString(),
      level: row.level,
      parentId: row.parent_id,
      checkpoint: row.checkpoint,
      ...(row.domain_xml !== null ? { domainXml: row.domain_xml } : {}),
      ...(row.checkpoint_xml !== null ? { checkpointXml: row.checkpoint_xml } : {}),
    },
  };
}

export interface ManifestRow {
  /** Position of the disk in meta.disks. */
  disk: number;
  index: number;
  /** null: zero marker. */
  digest: Buffer | null;
}

/** Pages through one disk's rows in chunk order (each page a finished query, so other statements may run between pages). */
export function* mapRows(db: DB, diskId: number): Generator<Array<[number, number, Buffer | null]>> {
  const page = db
    .prepare(
      `SELECT m.chunk_index, m.chunk_id, c.digest FROM chunk_map m LEFT JOIN chunks c ON c.id = m.chunk_id
       WHERE m.disk_id = ? AND m.chunk_index > ? ORDER BY m.chunk_index LIMIT ${PAGE}`,
    )
    .raw(true);
  let after = -1;
  for (;;) {
    const rows = page.all(diskId, after) as Array<[number, number, Buffer | null]>;
    if (rows.length === 0) return;
    yield rows;
    after = (rows[rows.length - 1] as [number, number, Buffer | null])[0];
    if (rows.length < PAGE) return;
  }
}

function encodeRows(rows: Array<[number, number, Buffer | null]>, where: string): Buffer {
  const out = Buffer.allocUnsafe(rows.length * (7 + DIGEST_BYTES));
  let o = 0;
  for (const [index, chunkId, digest] of rows) {
    if (chunkId === 0) {
      out.writeUInt8(REC_ZERO, o);
      out.writeUIntLE(index, o + 1, 6);
      o += 7;
    } else {
      if (digest === null) throw new Error(`${where}: chunk ${index} references chunk id ${chunkId} missing from the index`);
      out.writeUInt8(REC_DATA, o);
      out.writeUIntLE(index, o + 1, 6);
      digest.copy(out, o + 7);
      o += 7 + DIGEST_BYTES;
    }
  }
  return out.subarray(0, o);
}

/**
 * Writes the manifest of a backup atomically. `disks` gives each disk's id in chunk_map with
 * its stats; rows are read from the index page by page.
 */
export async function writeManifest(
  db: DB,
  tmpDir: string,
  path: string,
  meta: Omit<ManifestMeta, 'disks'>,
  disks: Array<{ id: number; stats: DiskStats }>,
): Promise<void> {
  const count = db.prepare('SELECT count(*) FROM chunk_map WHERE disk_id = ?').pluck(true);
  const full: ManifestMeta = {
    ...meta,
    disks: disks.map((d) => ({ ...d.stats, rows: count.get(d.id) as number })),
  };
  function* content(): Generator<Buffer> {
    const json = Buffer.from(JSON.stringify(full));
    const len = Buffer.alloc(4);
    len.writeUInt32LE(json.length);
    yield Buffer.concat([MAGIC, len, json]);
    for (const d of disks) {
      for (const rows of mapRows(db, d.id)) yield encodeRows(rows, `backup ${meta.backup.id} disk ${d.stats.name}`);
    }
    yield END;
  }
  await writeStreamAtomic(tmpDir, path, async (h: FileHandle) => {
    const zstd = new (zstdNapi().CompressStream)({ compressionLevel: 3, checksumFlag: true });
    // Written through the handle (not handle.createWriteStream, which would keep the handle
    // referenced and make close() wait forever) so the caller can fsync it afterwards.
    await pipeline(Readable.from(content()), zstd, async (source: AsyncIterable<Buffer>) => {
      for await (const piece of source) await writeAll(h, [piece]);
    });
  });
}

/** Incremental reader over a decompressed byte stream. */
class ByteReader {
  private buf: Buffer = Buffer.alloc(0);
  private readonly it: AsyncIterator<Buffer>;
  constructor(src: AsyncIterable<Buffer>) {
    this.it = src[Symbol.asyncIterator]();
  }
  async fill(n: number): Promise<boolean> {
    while (this.buf.length < n) {
      const r = await this.it.next();
      if (r.done === true) return false;
      this.buf = this.buf.length === 0 ? r.value : Buffer.concat([this.buf, r.value]);
    }
    return true;
  }
  available(): number {
    return this.buf.length;
  }
  take(n: number): Buffer {
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }
  async atEnd(): Promise<boolean> {
    return !(await this.fill(1));
  }
}

export class ManifestError extends Error {
  override name = 'ManifestError';
  /** errno code of an underlying I/O error (e.g. ENOENT), if any. */
  readonly code: string | undefined;
  constructor(message: string, code?: string) {
    super(message);
    this.code = code;
  }
}

/** Reads a manifest: meta first, then rows in batches. Throws ManifestError on any damage. */
export class ManifestReader {
  readonly meta: ManifestMeta;
  private readonly reader: ByteReader;

  private constructor(meta: ManifestMeta, reader: ByteReader) {
    this.meta = meta;
    this.reader = reader;
  }

  static async open(path: string): Promise<ManifestReader> {
    const src = createReadStream(path);
    const stream = new (zstdNapi().DecompressStream)();
    // pipe() does not forward errors: a missing or unreadable file must fail the reader.
    src.on('error', (e) => stream.destroy(e));
    src.pipe(stream);
    const reader = new ByteReader(stream as AsyncIterable<Buffer>);
    try {
      if (!(await reader.fill(12)) || !reader.take(8).equals(MAGIC)) throw new ManifestError('bad magic');
      const n = reader.take(4).readUInt32LE(0);
      if (!(await reader.fill(n))) throw new ManifestError('truncated metadata');
      const meta = JSON.parse(reader.take(n).toString('utf8')) as ManifestMeta;
      if (meta.manifestVersion !== 1 || !Array.isArray(meta.disks)) throw new ManifestError('unknown manifest version');
      return new ManifestReader(meta, reader);
    } catch (e) {
      stream.destroy();
      throw asManifestError(e);
    }
  }

  async *rows(): AsyncGenerator<ManifestRow[]> {
    const r = this.reader;
    try {
      for (let disk = 0; disk < this.meta.disks.length; disk++) {
        let left = (this.meta.disks[disk] as { rows: number }).rows;
        while (left > 0) {
          const batch: ManifestRow[] = [];
          if (!(await r.fill(7))) throw new ManifestError(`truncated in rows of disk ${disk}`);
          while (left > 0 && r.available() >= 7) {
            const head = r.take(7);
            const kind = head.readUInt8(0);
            const index = head.readUIntLE(1, 6);
            if (kind === REC_ZERO) {
              batch.push({ disk, index, digest: null });
            } else if (kind === REC_DATA) {
              if (!(await r.fill(DIGEST_BYTES))) throw new ManifestError('truncated digest');
              batch.push({ disk, index, digest: Buffer.from(r.take(DIGEST_BYTES)) });
            } else {
              throw new ManifestError(`bad record kind ${kind}`);
            }
            left--;
          }
          yield batch;
        }
      }
      if (!(await r.fill(END.length)) || !r.take(END.length).equals(END)) throw new ManifestError('missing end marker');
      if (!(await r.atEnd())) throw new ManifestError('trailing data after end marker');
    } catch (e) {
      throw asManifestError(e);
    }
  }
}

function asManifestError(e: unknown): ManifestError {
  if (e instanceof ManifestError) return e;
  return new ManifestError(e instanceof Error ? e.message : String(e), (e as NodeJS.ErrnoException).code);
}
