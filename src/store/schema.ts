// The SQLite index schema (index-db.ts opens it). Terms:
//   chunk     a stored chunk file, by BLAKE3 digest; `touched` is the gc epoch of the last
//             writer transaction that referenced it (gc.ts explains the protocol)
//   disk      one disk of one backup: name, virtual size and ingest statistics
//   chunk_map (disk, chunk index) -> chunk id, or 0 for "all zero"; a full backup records
//             every allocated chunk, an incremental only the chunks it read
// chunk_map is WITHOUT ROWID keyed by (disk_id, chunk_index), so one backup's rows of one disk
// are a contiguous range read in chunk order: resolving a chain is a handful of range scans
// (chain.ts). Digests live once in `chunks`; map rows carry a small integer id instead.
export const SCHEMA_VERSION = 1;

export const SCHEMA_SQL = `
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value
) WITHOUT ROWID;

CREATE TABLE domains (
  id   INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE
);

CREATE TABLE backups (
  id             TEXT PRIMARY KEY,
  domain_id      INTEGER NOT NULL REFERENCES domains(id),
  time_ms        INTEGER NOT NULL,
  level          TEXT NOT NULL CHECK (level IN ('full', 'incremental')),
  parent_id      TEXT,
  checkpoint     TEXT NOT NULL,
  status         TEXT NOT NULL CHECK (status IN ('running', 'complete', 'failed')),
  domain_xml     TEXT,
  checkpoint_xml TEXT,
  owner          TEXT,
  finished_ms    INTEGER,
  failure        TEXT
);
CREATE INDEX backups_by_domain ON backups(domain_id, time_ms, id);
CREATE INDEX backups_by_parent ON backups(parent_id);

CREATE TABLE disks (
  id             INTEGER PRIMARY KEY,
  backup_id      TEXT NOT NULL REFERENCES backups(id) ON DELETE CASCADE,
  name           TEXT NOT NULL,
  size           INTEGER NOT NULL,
  bytes_read     INTEGER NOT NULL DEFAULT 0,
  bytes_stored   INTEGER NOT NULL DEFAULT 0,
  chunks_new     INTEGER NOT NULL DEFAULT 0,
  chunks_deduped INTEGER NOT NULL DEFAULT 0,
  chunks_zero    INTEGER NOT NULL DEFAULT 0,
  UNIQUE (backup_id, name)
);

CREATE TABLE chunks (
  id          INTEGER PRIMARY KEY,
  digest      BLOB NOT NULL UNIQUE,
  size        INTEGER,
  stored_size INTEGER,
  touched     INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE chunk_map (
  disk_id     INTEGER NOT NULL,
  chunk_index INTEGER NOT NULL,
  chunk_id    INTEGER NOT NULL,
  PRIMARY KEY (disk_id, chunk_index)
) WITHOUT ROWID;
`;
