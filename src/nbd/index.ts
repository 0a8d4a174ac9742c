// Public API of the NBD client (our own implementation of the client side of the NBD
// protocol, doc/proto.md of NetworkBlockDevice/nbd). See docs/nbd.md.
export { NbdClient, type NbdConnectOptions, type Extent, type RequestOptions, type ReadHandle } from './client.js';
export { NbdPool, type NbdPoolOptions } from './pool.js';
export { getExtents, type GetExtentsOptions } from './get-extents.js';
export { readSequential, type SequentialReadOptions, type PieceConsumer } from './read-sequential.js';
export { mergeExtents, kindOf, type LabelledExtent, type ExtentKind, type FlaggedExtent } from './extents.js';
export { listExports, listMetaContexts, type DiscoveryOptions } from './discovery.js';
export { parseNbdUri, formatNbdUri, describeTarget, NBD_DEFAULT_PORT, type NbdTarget } from './uri.js';
export { NbdServerError } from './server-error.js';
export {
  BASE_ALLOCATION,
  QEMU_ALLOCATION_DEPTH,
  QEMU_DIRTY_BITMAP_PREFIX,
  NBD_STATE_HOLE,
  NBD_STATE_ZERO,
  NBD_STATE_DIRTY,
  transmissionFlagNames,
} from './constants.js';
