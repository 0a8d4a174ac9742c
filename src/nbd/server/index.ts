// Public API of the NBD server (the server side of doc/proto.md, sharing constants and
// codecs with the client in src/nbd). See docs/serve.md.
export { NbdServer, DEFAULT_LIMITS, type NbdServerOptions, type ListenAddress } from './server.js';
export { ExportReadError, type NbdExport, type ReadPiece, type AllocationExtent } from './export.js';
export type { ServerEvent, ConnectionLimits } from './connection.js';
export { SERVER_CONTEXTS } from './negotiation.js';
