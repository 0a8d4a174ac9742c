// The server's side of the protocol, byte by byte (proto.md "Fixed newstyle negotiation",
// "Option types", "Transmission", "Request types"), driven by a raw socket client that can
// also misbehave. After every misbehaving client the server must still serve a good one.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_CACHE,
  NBD_CMD_DISC,
  NBD_CMD_FLAG_DF,
  NBD_CMD_FLAG_REQ_ONE,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_EINVAL,
  NBD_EPERM,
  NBD_FLAG_CAN_MULTI_CONN,
  NBD_FLAG_HAS_FLAGS,
  NBD_FLAG_READ_ONLY,
  NBD_FLAG_SEND_DF,
  NBD_OPT_ABORT,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_INFO,
  NBD_OPT_LIST,
  NBD_OPT_LIST_META_CONTEXT,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STARTTLS,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REP_ACK,
  NBD_REP_ERR_INVALID,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP,
  NBD_REP_INFO,
  NBD_REP_META_CONTEXT,
  NBD_REP_SERVER,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_ERROR,
  NBD_REPLY_TYPE_NONE,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_REPLY_TYPE_OFFSET_HOLE,
} from '../../src/nbd/constants.js';
import { decodeRepInfo, decodeRepMetaContext, decodeRepServer, encodeGoData, encodeMetaContextData } from '../../src/nbd/option-codec.js';
import { startServe, type ServeHandle } from '../../src/serve/index.js';
import { buildFixture, CHUNK, type Fixture } from './fixture.js';
import { RawClient } from './raw-client.js';

let f: Fixture;
let h: ServeHandle;
let socket: string;
let img: Buffer;
const clients: RawClient[] = [];

async function connect(): Promise<RawClient> {
  const c = await RawClient.connect(socket);
  clients.push(c);
  return c;
}

/** A well-behaved client still gets correct data. */
async function stillServes(): Promise<void> {
  const c = await connect();
  await c.handshake('vda');
  c.request(NBD_CMD_READ, CHUNK, 4096, { cookie: 77 });
  const chunks = await c.chunks();
  expect(chunks).toHaveLength(1);
  const [d] = chunks;
  expect(d?.type).toBe(NBD_REPLY_TYPE_OFFSET_DATA);
  expect(d?.cookie).toBe(77);
  expect(d?.payload.subarray(8).equals(img.subarray(CHUNK, CHUNK + 4096))).toBe(true);
  c.request(NBD_CMD_DISC, 0, 0);
  expect(await c.closedByServer()).toBe(true);
}

beforeAll(async () => {
  f = await buildFixture('serve-protocol');
  const rec = f.backups[2]?.record;
  if (rec === undefined) throw new Error('fixture');
  img = f.backups[2]?.images.get('vda') as Buffer;
  socket = join(f.dir, 'proto.sock');
  h = await startServe(f.repo, { backupId: rec.id, disk: 'vda', socket, workers: 1 });
});

afterAll(async () => {
  for (const c of clients) c.destroy();
  await h?.close();
  await f?.cleanup();
});

describe('handshake', () => {
  it('greets with NBDMAGIC IHAVEOPT and FIXED_NEWSTYLE | NO_ZEROES', async () => {
    const c = await connect();
    const { handshakeFlags } = await c.greet();
    expect(handshakeFlags).toBe(3);
    c.option(NBD_OPT_ABORT);
    const r = await c.optionReply();
    expect(r).toMatchObject({ option: NBD_OPT_ABORT, type: NBD_REP_ACK });
    expect(await c.closedByServer()).toBe(true);
  });

  it('drops a client that sets unknown client flags', async () => {
    const c = await connect();
    await c.greet(0x10 | 1);
    expect(await c.closedByServer()).toBe(true);
    await stillServes();
  });

  it('drops a client that sends garbage instead of options', async () => {
    const c = await connect();
    await c.greet();
    c.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    expect(await c.closedByServer()).toBe(true);
    await stillServes();
  });

  it('drops an option with an absurd data length', async () => {
    const c = await connect();
    await c.greet();
    const hdr = Buffer.alloc(16);
    hdr.write('IHAVEOPT', 0, 'latin1');
    hdr.writeUInt32BE(NBD_OPT_GO, 8);
    hdr.writeUInt32BE(0x7fffffff, 12);
    c.write(hdr);
    expect(await c.closedByServer()).toBe(true);
  });

  it('NBD_OPT_LIST names the export; unknown options and STARTTLS get NBD_REP_ERR_UNSUP', async () => {
    const c = await connect();
    await c.greet();
    c.option(NBD_OPT_LIST);
    const list = await c.optionReplies();
    expect(list.map((r) => r.type)).toEqual([NBD_REP_SERVER, NBD_REP_ACK]);
    expect(decodeRepServer(list[0]?.payload as Buffer).name).toBe('vda');
    c.option(NBD_OPT_LIST, Buffer.from('x'));
    expect((await c.optionReply()).type).toBe(NBD_REP_ERR_INVALID);
    c.option(NBD_OPT_STARTTLS);
    expect((await c.optionReply()).type).toBe(NBD_REP_ERR_UNSUP);
    c.option(4242, Buffer.from('whatever'));
    const r = await c.optionReply();
    expect(r).toMatchObject({ option: 4242, type: NBD_REP_ERR_UNSUP });
    // Haggling continues after errors.
    c.option(NBD_OPT_GO, encodeGoData('vda', []));
    const go = await c.optionReplies();
    expect(go[go.length - 1]?.type).toBe(NBD_REP_ACK);
  });

  it('NBD_OPT_INFO / GO: export info and block sizes; unknown export is NBD_REP_ERR_UNKNOWN; bad lengths are INVALID', async () => {
    const c = await connect();
    await c.greet();
    c.option(NBD_OPT_INFO, encodeGoData('nope', []));
    expect((await c.optionReply()).type).toBe(NBD_REP_ERR_UNKNOWN);
    c.option(NBD_OPT_INFO, Buffer.from([0, 0, 0, 9, 1]));
    expect((await c.optionReply()).type).toBe(NBD_REP_ERR_INVALID);
    c.option(NBD_OPT_INFO, encodeGoData('vda', [1, 2, 3]));
    const infos = (await c.optionReplies()).filter((r) => r.type === NBD_REP_INFO).map((r) => decodeRepInfo(r.payload));
    expect(infos).toContainEqual({ info: 'export', size: img.length, flags: NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY | NBD_FLAG_CAN_MULTI_CONN });
    expect(infos).toContainEqual({ info: 'block-size', minimum: 1, preferred: CHUNK, maximum: 32 * 1024 * 1024 });
    expect(infos).toContainEqual({ info: 'name', name: 'vda' });
    expect(infos.some((i) => i.info === 'description')).toBe(true);
    // Structured replies make DF available.
    c.option(NBD_OPT_STRUCTURED_REPLY);
    expect((await c.optionReply()).type).toBe(NBD_REP_ACK);
    c.option(NBD_OPT_GO, encodeGoData('', []));
    const go = (await c.optionReplies()).map((r) => (r.type === NBD_REP_INFO ? decodeRepInfo(r.payload) : r.type));
    expect(go).toContainEqual({ info: 'export', size: img.length, flags: NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY | NBD_FLAG_CAN_MULTI_CONN | NBD_FLAG_SEND_DF });
    expect(go[go.length - 1]).toBe(NBD_REP_ACK);
    c.request(NBD_CMD_DISC, 0, 0);
    expect(await c.closedByServer()).toBe(true);
  });

  it('metadata contexts: SET needs structured replies, LIST wildcards, unknown contexts ignored', async () => {
    const c = await connect();
    await c.greet();
    c.option(NBD_OPT_SET_META_CONTEXT, encodeMetaContextData('vda', ['base:allocation']));
    expect((await c.optionReply()).type).toBe(NBD_REP_ERR_INVALID);
    c.option(NBD_OPT_STRUCTURED_REPLY);
    await c.optionReplies();
    const names = async (option: number, queries: string[]): Promise<Array<{ id: number; name: string }>> => {
      c.option(option, encodeMetaContextData('vda', queries));
      const rs = await c.optionReplies();
      expect(rs[rs.length - 1]?.type).toBe(NBD_REP_ACK);
      return rs.filter((r) => r.type === NBD_REP_META_CONTEXT).map((r) => decodeRepMetaContext(r.payload));
    };
    expect(await names(NBD_OPT_LIST_META_CONTEXT, [])).toEqual([{ id: 0, name: 'base:allocation' }]);
    expect(await names(NBD_OPT_LIST_META_CONTEXT, ['base:'])).toEqual([{ id: 0, name: 'base:allocation' }]);
    expect(await names(NBD_OPT_LIST_META_CONTEXT, ['qemu:dirty-bitmap:x'])).toEqual([]);
    expect(await names(NBD_OPT_SET_META_CONTEXT, ['base:'])).toEqual([]);
    const set = await names(NBD_OPT_SET_META_CONTEXT, ['qemu:allocation-depth', 'base:allocation']);
    expect(set).toHaveLength(1);
    expect(set[0]?.name).toBe('base:allocation');
    expect(set[0]?.id).not.toBe(0);
    c.option(NBD_OPT_SET_META_CONTEXT, encodeMetaContextData('other', ['base:allocation']));
    expect((await c.optionReply()).type).toBe(NBD_REP_ERR_UNKNOWN);
    c.option(NBD_OPT_SET_META_CONTEXT, encodeMetaContextData('vda', ['nocolon']));
    expect((await c.optionReply()).type).toBe(NBD_REP_ERR_INVALID);
  });

  it('NBD_OPT_EXPORT_NAME: size and flags (+124 zeros without NO_ZEROES); unknown export hangs up', async () => {
    const a = await connect();
    await a.greet(1); // FIXED_NEWSTYLE only: zeros follow
    a.option(NBD_OPT_EXPORT_NAME, Buffer.from('vda'));
    const r = await a.read(10 + 124);
    expect(Number(r.readBigUInt64BE(0))).toBe(img.length);
    expect(r.readUInt16BE(8)).toBe(NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY | NBD_FLAG_CAN_MULTI_CONN);
    expect(r.subarray(10).every((b) => b === 0)).toBe(true);
    a.request(NBD_CMD_READ, 0, 512, { cookie: 5 });
    const s = await a.simple();
    expect(s).toEqual({ error: 0, cookie: 5 });
    expect((await a.read(512)).equals(img.subarray(0, 512))).toBe(true);
    const b = await connect();
    await b.greet();
    b.option(NBD_OPT_EXPORT_NAME, Buffer.from('nope'));
    expect(await b.closedByServer()).toBe(true);
  });
});

describe('transmission', () => {
  it('structured reads: data and hole chunks cover the range; DF gives one data chunk with zeros', async () => {
    const c = await connect();
    await c.handshake('vda');
    // Chunks 20-21 of vda are absent (zeros), 19 and 22 hold data in the last backup? Use the map.
    const map = f.repo.resolveChunkMap(f.backups[2]?.record.id as string, 'vda');
    const z = [...Array(map.count).keys()].find((i) => i > 0 && map.kindAt(i) !== 2 && map.kindAt(i - 1) === 2) as number;
    const off = (z - 1) * CHUNK + 1000;
    const len = 2 * CHUNK;
    c.request(NBD_CMD_READ, off, len, { cookie: 9 });
    const chunks = await c.chunks();
    const got = Buffer.alloc(len, 0xff);
    let covered = 0;
    const types = new Set<number>();
    for (const ch of chunks) {
      expect(ch.cookie).toBe(9);
      types.add(ch.type);
      const o = Number(ch.payload.readBigUInt64BE(0)) - off;
      if (ch.type === NBD_REPLY_TYPE_OFFSET_DATA) {
        ch.payload.subarray(8).copy(got, o);
        covered += ch.payload.length - 8;
      } else {
        expect(ch.type).toBe(NBD_REPLY_TYPE_OFFSET_HOLE);
        got.fill(0, o, o + ch.payload.readUInt32BE(8));
        covered += ch.payload.readUInt32BE(8);
      }
    }
    expect(types).toEqual(new Set([NBD_REPLY_TYPE_OFFSET_DATA, NBD_REPLY_TYPE_OFFSET_HOLE]));
    expect(covered).toBe(len);
    expect(got.equals(img.subarray(off, off + len))).toBe(true);

    c.request(NBD_CMD_READ, off, len, { cookie: 10, flags: NBD_CMD_FLAG_DF });
    const df = await c.chunks();
    expect(df).toHaveLength(1);
    expect(df[0]?.type).toBe(NBD_REPLY_TYPE_OFFSET_DATA);
    expect(df[0]?.payload.subarray(8).equals(img.subarray(off, off + len))).toBe(true);
  });

  it('block status: merged extents within the request, REQ_ONE gives one', async () => {
    const c = await connect();
    await c.handshake('vda');
    c.request(NBD_CMD_BLOCK_STATUS, 0, img.length, { cookie: 3 });
    const [bs] = await c.chunks();
    expect(bs?.type).toBe(NBD_REPLY_TYPE_BLOCK_STATUS);
    const n = ((bs?.payload.length ?? 0) - 4) / 8;
    let total = 0;
    let prev = -1;
    for (let i = 0; i < n; i++) {
      const len = bs?.payload.readUInt32BE(4 + 8 * i) as number;
      const flags = bs?.payload.readUInt32BE(8 + 8 * i) as number;
      expect(flags === 0 || flags === 3).toBe(true);
      expect(flags).not.toBe(prev);
      prev = flags;
      total += len;
    }
    expect(total).toBe(img.length);
    c.request(NBD_CMD_BLOCK_STATUS, 100, img.length - 100, { cookie: 4, flags: NBD_CMD_FLAG_REQ_ONE });
    const [one] = await c.chunks();
    expect(one?.payload.length).toBe(12);
  });

  it('refuses writes (EPERM, staying in sync after the payload), bad ranges and commands (EINVAL)', async () => {
    const c = await connect();
    await c.handshake('vda');
    const errnoOf = async (): Promise<number> => {
      const chunks = await c.chunks();
      const last = chunks[chunks.length - 1];
      expect(last?.type).toBe(NBD_REPLY_TYPE_ERROR);
      return last?.payload.readUInt32BE(0) as number;
    };
    c.request(NBD_CMD_WRITE, 0, 8192, { cookie: 1 });
    c.write(Buffer.alloc(8192, 0x42)); // the payload must be consumed, not parsed as requests
    expect(await errnoOf()).toBe(NBD_EPERM);
    for (const t of [NBD_CMD_TRIM, NBD_CMD_WRITE_ZEROES]) {
      c.request(t, 0, 4096);
      expect(await errnoOf()).toBe(NBD_EPERM);
    }
    c.request(NBD_CMD_READ, img.length - 10, 20);
    expect(await errnoOf()).toBe(NBD_EINVAL);
    c.request(NBD_CMD_READ, 0, 64 * 1024 * 1024); // beyond the end (and the maximum payload)
    expect(await errnoOf()).toBe(NBD_EINVAL);
    c.request(99, 0, 0);
    expect(await errnoOf()).toBe(NBD_EINVAL);
    c.request(NBD_CMD_READ, 0, 4096, { flags: 1 << 9 });
    expect(await errnoOf()).toBe(NBD_EINVAL);
    c.request(NBD_CMD_BLOCK_STATUS, 0, 0);
    expect(await errnoOf()).toBe(NBD_EINVAL);
    // Flush and cache are harmless no-ops (simple replies); a zero-length read succeeds.
    c.request(NBD_CMD_FLUSH, 0, 0, { cookie: 21 });
    expect(await c.simple()).toEqual({ error: 0, cookie: 21 });
    c.request(NBD_CMD_CACHE, 0, 4096, { cookie: 22 });
    expect(await c.simple()).toEqual({ error: 0, cookie: 22 });
    c.request(NBD_CMD_READ, 0, 0, { cookie: 23 });
    expect((await c.chunk())).toMatchObject({ type: NBD_REPLY_TYPE_NONE, flags: 1, cookie: 23 });
    // Still in sync.
    c.request(NBD_CMD_READ, 0, 4096, { cookie: 24 });
    const [d] = await c.chunks();
    expect(d?.payload.subarray(8).equals(img.subarray(0, 4096))).toBe(true);
  });

  it('block status without a selected context is EINVAL', async () => {
    const c = await connect();
    await c.handshake('vda', { contexts: [] });
    c.request(NBD_CMD_BLOCK_STATUS, 0, 4096, { cookie: 2 });
    const [e] = await c.chunks();
    expect(e?.type).toBe(NBD_REPLY_TYPE_ERROR);
    expect(e?.payload.readUInt32BE(0)).toBe(NBD_EINVAL);
  });

  it('simple replies: errors carry no payload, the stream stays in sync', async () => {
    const c = await connect();
    await c.handshake('vda', { structured: false });
    c.request(NBD_CMD_READ, img.length, 512, { cookie: 1 });
    expect(await c.simple()).toEqual({ error: NBD_EINVAL, cookie: 1 });
    c.request(NBD_CMD_READ, img.length - 512, 512, { cookie: 2 });
    expect(await c.simple()).toEqual({ error: 0, cookie: 2 });
    expect((await c.read(512)).equals(img.subarray(img.length - 512))).toBe(true);
  });

  it('pipelined reads may complete out of order; every cookie is answered once', async () => {
    const c = await connect();
    await c.handshake('vda');
    const want = new Map<number, number>();
    for (let k = 0; k < 40; k++) {
      const off = (k * 7919 * 13) % (img.length - 70000);
      want.set(1000 + k, off);
      c.request(NBD_CMD_READ, off, 70000, { cookie: 1000 + k, flags: NBD_CMD_FLAG_DF });
    }
    for (let k = 0; k < 40; k++) {
      const [ch] = await c.chunks();
      const off = want.get(ch?.cookie as number);
      expect(off).toBeDefined();
      want.delete(ch?.cookie as number);
      expect(ch?.payload.subarray(8).equals(img.subarray(off as number, (off as number) + 70000))).toBe(true);
    }
    expect(want.size).toBe(0);
  });

  it('drops a client that sends a request with a bad magic, and keeps serving others', async () => {
    const c = await connect();
    await c.handshake('vda');
    c.write(Buffer.alloc(28, 0xab));
    expect(await c.closedByServer()).toBe(true);
    await stillServes();
  });

  it('drops a silent client after the handshake timeout', async () => {
    const { NbdServer } = await import('../../src/nbd/server/index.js');
    const { BackupExport, ChunkCache, ChunkPool } = await import('../../src/serve/index.js');
    const rec = f.backups[0]?.record;
    const map = f.repo.resolveChunkMap(rec?.id as string, 'vdb');
    const pool = new ChunkPool({ chunksDir: join(f.repoDir, 'chunks'), slotSize: CHUNK, slotCount: 8, workers: 1 });
    const exp = new BackupExport(map, new ChunkCache(pool, (d) => f.repo.readChunk(d)), { name: 'vdb', description: '', backupId: rec?.id as string });
    const srv = await NbdServer.listen({ socketPath: join(f.dir, 'timeout.sock') }, { exports: [exp], limits: { handshakeTimeoutMs: 300 } });
    try {
      const c = await RawClient.connect(join(f.dir, 'timeout.sock'));
      clients.push(c);
      await c.read(18);
      expect(await c.closedByServer(3000)).toBe(true);
    } finally {
      await srv.close();
      await pool.close();
    }
  });
});
