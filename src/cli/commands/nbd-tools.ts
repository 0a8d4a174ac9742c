// `pullback nbd-info URI [--map [CONTEXT]] [--list] [--json]`: what an NBD export offers (size,
// transmission flags, block sizes, metadata contexts) and optionally its extent map.
// `pullback nbd-read URI [--output FILE] [--connections N] [--sha256] [--json]`: reads the whole
// export with our NBD client (zero ranges skipped, like nbdcopy) and reports bytes, seconds,
// MB/s and optionally the sha256. Both exist for demos and debugging until backup does it all.
// Registered by nbd.ts; this module loads only when one of them runs.
import { constants } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { createHash, type Hash } from 'node:crypto';
import { PullbackError, isPullbackError } from '../../errors.js';
import {
  BASE_ALLOCATION,
  NBD_STATE_HOLE,
  NBD_STATE_ZERO,
  NbdClient,
  NbdPool,
  QEMU_DIRTY_BITMAP_PREFIX,
  formatNbdUri,
  listExports,
  listMetaContexts,
  parseNbdUri,
  readSequential,
  transmissionFlagNames,
  type Extent,
  type NbdTarget,
} from '../../nbd/index.js';
import { UsageError, type CliContext } from '../context.js';

export interface InfoOpts {
  map?: string | boolean;
  list?: boolean;
  json?: boolean;
}

export interface ReadOpts {
  output?: string;
  force?: boolean;
  connections: string;
  sha256?: boolean;
  json?: boolean;
}

function target(uri: string): NbdTarget {
  return parseNbdUri(uri);
}

/** nbdinfo-style words for a context's flags. */
export function describeFlags(context: string, flags: number): string {
  if (context === BASE_ALLOCATION) {
    const words = [(flags & NBD_STATE_HOLE) !== 0 ? 'hole' : 'data'];
    if ((flags & NBD_STATE_ZERO) !== 0) words.push('zero');
    return words.join(',');
  }
  if (context.startsWith(QEMU_DIRTY_BITMAP_PREFIX)) return (flags & 1) !== 0 ? 'dirty' : 'clean';
  return String(flags);
}

function humanSize(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]}`;
}

/** Contexts the server lists; empty when it cannot list them (no structured replies). */
async function contextsOf(t: NbdTarget, signal: AbortSignal): Promise<string[]> {
  try {
    return await listMetaContexts(t, [], { signal });
  } catch (e) {
    if (isPullbackError(e, 'NBD_OPTION')) return [];
    throw e;
  }
}

export async function info(uri: string, opts: InfoOpts, ctx: CliContext): Promise<void> {
  const t = target(uri);
  if (opts.list === true) {
    const exports = await listExports(t, { signal: ctx.signal });
    if (opts.json === true) ctx.stdout.write(`${JSON.stringify(exports, null, 2)}\n`);
    else for (const e of exports) ctx.stdout.write(`'${e.name}'${e.description === '' ? '' : `\t${e.description}`}\n`);
    return;
  }
  const mapContext = opts.map === undefined || opts.map === false ? undefined : opts.map === true ? BASE_ALLOCATION : opts.map;
  const contexts = await contextsOf(t, ctx.signal);
  const client = await NbdClient.connect(t, { signal: ctx.signal, ...(mapContext === undefined ? {} : { metaContexts: [mapContext] }) });
  let map: Extent[] | undefined;
  try {
    if (mapContext !== undefined) map = await client.blockStatus(mapContext, 0, client.size, { signal: ctx.signal });
  } finally {
    await client.close();
  }
  const facts = {
    uri: formatNbdUri(t),
    exportName: client.exportName,
    description: client.description ?? null,
    size: client.size,
    transmissionFlags: client.transmissionFlags,
    flags: transmissionFlagNames(client.transmissionFlags),
    readOnly: client.readOnly,
    canMultiConn: client.canMultiConn,
    structuredReplies: client.structuredReplies,
    blockSize: { ...client.blockSize, advertised: client.blockSizeAdvertised },
    contexts,
  };
  if (opts.json === true) {
    const out =
      map === undefined || mapContext === undefined
        ? facts
        : { ...facts, map: { context: mapContext, extents: map.map((e) => ({ ...e, description: describeFlags(mapContext, e.flags) })) } };
    ctx.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    return;
  }
  const bs = client.blockSize;
  const lines = [
    `export:             '${facts.exportName}' (${facts.uri})`,
    ...(facts.description === null ? [] : [`description:        ${facts.description}`]),
    `size:               ${facts.size} (${humanSize(facts.size)})`,
    `flags:              ${facts.flags.join(' ')}`,
    `read-only:          ${facts.readOnly ? 'yes' : 'no'}`,
    `multi-conn:         ${facts.canMultiConn ? 'yes' : 'no'}`,
    `structured replies: ${facts.structuredReplies ? 'yes' : 'no'}`,
    `block size:         minimum ${bs.minimum}, preferred ${bs.preferred}, maximum ${bs.maximum}${client.blockSizeAdvertised ? '' : ' (spec defaults: not advertised)'}`,
    `contexts:           ${contexts.length === 0 ? '(none)' : contexts.join(', ')}`,
  ];
  if (map !== undefined && mapContext !== undefined) {
    lines.push(`map of ${mapContext}:`);
    for (const e of map) {
      lines.push(`${String(e.offset).padStart(14)} ${String(e.length).padStart(14)} ${String(e.flags).padStart(4)}  ${describeFlags(mapContext, e.flags)}`);
    }
  }
  ctx.stdout.write(`${lines.join('\n')}\n`);
}

async function openOutput(path: string, force: boolean, size: number): Promise<{ fh: FileHandle; sparse: boolean }> {
  const st = await stat(path).catch(() => null);
  if (st !== null && st.isFile() && !force) {
    throw new PullbackError('OUTPUT_EXISTS', `output file ${path} already exists; pass --force to overwrite it`);
  }
  if (st === null || st.isFile()) {
    const fh = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC);
    await fh.truncate(size);
    return { fh, sparse: true }; // zero ranges are left as holes of the truncated file
  }
  return { fh: await open(path, constants.O_WRONLY), sparse: false };
}

export async function read(uri: string, opts: ReadOpts, ctx: CliContext): Promise<void> {
  const t = target(uri);
  const connections = Number(opts.connections);
  if (!Number.isInteger(connections) || connections < 1 || connections > 64) {
    throw new UsageError(`--connections must be an integer from 1 to 64, got '${opts.connections}'`);
  }
  const t0 = performance.now();
  const common = { connections, signal: ctx.signal };
  // Prefer base:allocation (zero ranges need not be read); old servers may not offer it.
  let pool: NbdPool;
  try {
    pool = await NbdPool.open(t, { ...common, metaContexts: [BASE_ALLOCATION] });
  } catch (e) {
    if (!isPullbackError(e, 'NBD_OPTION')) throw e;
    pool = await NbdPool.open(t, common);
  }
  const skipZeroes = pool.primary.metaContexts.has(BASE_ALLOCATION);
  const hash: Hash | null = opts.sha256 === true ? createHash('sha256') : null;
  const zeros = Buffer.alloc(1024 * 1024);
  let out: { fh: FileHandle; sparse: boolean } | null = null;
  try {
    if (opts.output !== undefined) out = await openOutput(opts.output, opts.force === true, pool.size);
    const o = out;
    await readSequential(
      pool,
      async (offset, length, data) => {
        if (data !== null) {
          hash?.update(data);
          if (o !== null) await o.fh.write(data, 0, length, offset);
          return;
        }
        for (let p = 0; p < length; p += zeros.length) {
          const n = Math.min(zeros.length, length - p);
          hash?.update(zeros.subarray(0, n));
          if (o !== null && !o.sparse) await o.fh.write(zeros, 0, n, offset + p);
        }
      },
      { skipZeroes, signal: ctx.signal },
    );
  } finally {
    await out?.fh.close();
    await pool.close();
  }
  const seconds = (performance.now() - t0) / 1000;
  const result = {
    bytes: pool.size,
    seconds: Number(seconds.toFixed(3)),
    MBps: Number((pool.size / seconds / 1e6).toFixed(1)),
    connections: pool.connections,
    ...(hash === null ? {} : { sha256: hash.digest('hex') }),
    ...(opts.output === undefined ? {} : { output: opts.output }),
  };
  if (opts.json === true) {
    ctx.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }
  ctx.stdout.write(
    `read ${result.bytes} bytes in ${result.seconds} s (${result.MBps} MB/s) over ${result.connections} connection(s)` +
      `${opts.output === undefined ? '' : ` into ${opts.output}`}\n`,
  );
  if (result.sha256 !== undefined) ctx.stdout.write(`sha256 ${result.sha256}\n`);
}

