// Public API of `pullback serve`: a backup's disk as a read-only NBD export. See docs/serve.md.
export { startServe, DEFAULT_CACHE_BYTES, type ServeOptions, type ServeHandle } from './serve.js';
export { BackupExport, type BackupExportInfo } from './backup-export.js';
export { ChunkCache, type ChunkRef, type SlotSource, type CacheStats } from './chunk-cache.js';
export { ChunkPool } from './chunk-pool.js';
export { defaultSocketPath, chooseAddress, uriOf, DEFAULT_SOCKET_DIR, DEFAULT_BIND } from './listen-address.js';
