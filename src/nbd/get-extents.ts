// getExtents: the labelled extent map of an export (thin I/O shell over mergeExtents).
// Needs a client connected with metaContexts including 'base:allocation' and, for an
// incremental backup, the dirty bitmap context ('qemu:dirty-bitmap:NAME').
import { PullbackError } from '../errors.js';
import type { NbdClient } from './client.js';
import { BASE_ALLOCATION } from './constants.js';
import { mergeExtents, type LabelledExtent } from './extents.js';

export interface GetExtentsOptions {
  /** Full context name, e.g. 'qemu:dirty-bitmap:backup-vda'; without it every extent is dirty. */
  dirtyBitmap?: string;
  offset?: number;
  length?: number;
  signal?: AbortSignal;
}

export async function getExtents(client: NbdClient, opts: GetExtentsOptions = {}): Promise<LabelledExtent[]> {
  const offset = opts.offset ?? 0;
  const length = opts.length ?? client.size - offset;
  if (!client.metaContexts.has(BASE_ALLOCATION)) {
    throw new PullbackError(
      'NBD_INVALID_ARGUMENT',
      `getExtents needs '${BASE_ALLOCATION}', which was not negotiated with export '${client.exportName}'; connect with metaContexts: ['${BASE_ALLOCATION}'${opts.dirtyBitmap === undefined ? '' : `, '${opts.dirtyBitmap}'`}]`,
    );
  }
  const bsOpts = opts.signal === undefined ? {} : { signal: opts.signal };
  const [allocation, dirty] = await Promise.all([
    client.blockStatus(BASE_ALLOCATION, offset, length, bsOpts),
    opts.dirtyBitmap === undefined ? Promise.resolve(null) : client.blockStatus(opts.dirtyBitmap, offset, length, bsOpts),
  ]);
  return mergeExtents(allocation, dirty, offset, length);
}
